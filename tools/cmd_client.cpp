// cmd_client.cpp — the daemon's clients: `woolly generate`, `subscribe`, `cancel`, `status`.
// They speak woolly/1 (protocol/SPEC.md) over ZeroMQ.
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "cli_args.h"
#include "commands.h"
#include "engine/text/vocab.h"
#include "protocol/curve.h"
#include "protocol/protocol.h"

namespace woolly::cli {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr const char* kDefaultRequests = "tcp://127.0.0.1:5555";
constexpr const char* kDefaultTokens = "tcp://127.0.0.1:5556";

// CurveZMQ on the client's sockets: the server's public key and this client's key pair
// (--server-key FILE, --client-key FILE: both or neither).
struct ClientKeys {
    std::string server_public;
    protocol::CurveKeyPair client;

    static ClientKeys from(const Args& args) {
        const auto server = args.get("--server-key");
        const auto client = args.get("--client-key");
        if (server.has_value() != client.has_value())
            throw Error("--server-key FILE and --client-key FILE go together (CurveZMQ)");
        ClientKeys keys;
        if (!server) return keys;
        try {
            keys.server_public = protocol::read_public_key_file(*server);
            keys.client = protocol::read_secret_key_file(*client);
        } catch (const protocol::KeyError& e) {
            throw Error(e.what());
        }
        return keys;
    }
    // Before connect: the socket is a CURVE client of the server.
    void apply(zmq::socket_t& socket) const {
        if (server_public.empty()) return;
        socket.set(zmq::sockopt::curve_serverkey, server_public);
        socket.set(zmq::sockopt::curve_publickey, client.public_key);
        socket.set(zmq::sockopt::curve_secretkey, client.secret_key);
    }
};

// One REQ conversation at a time, with a timeout on every reply.
class RequestClient {
public:
    RequestClient(zmq::context_t& ctx, std::string endpoint, double timeout_s,
                  const ClientKeys& keys)
        : ctx_(ctx), endpoint_(std::move(endpoint)), timeout_s_(timeout_s), keys_(keys) {
        connect();
    }

    json call(const json& request) {
        // A REQ socket with no peer (the daemon gone) would wait in send: sndtimeo bounds it
        // like the reply.
        if (!socket_->send(zmq::buffer(request.dump()), zmq::send_flags::none)) {
            connect();
            throw Error("could not reach " + endpoint_ + " within " +
                        std::to_string(int(timeout_s_)) + " s (is woollyd running there?)");
        }
        zmq::pollitem_t items[] = {{socket_->handle(), 0, ZMQ_POLLIN, 0}};
        zmq::poll(items, 1, std::chrono::milliseconds(int64_t(timeout_s_ * 1000)));
        if (!(items[0].revents & ZMQ_POLLIN)) {
            connect(); // a REQ socket that got no reply cannot send again
            throw Error("no reply from " + endpoint_ + " within " +
                        std::to_string(int(timeout_s_)) + " s (is woollyd running there?)");
        }
        zmq::message_t reply;
        (void)socket_->recv(reply);
        try {
            return json::parse(reply.to_string_view());
        } catch (const json::exception&) {
            throw Error("the daemon's reply is not JSON");
        }
    }

private:
    void connect() {
        socket_ = std::make_unique<zmq::socket_t>(ctx_, zmq::socket_type::req);
        socket_->set(zmq::sockopt::linger, 0);
        socket_->set(zmq::sockopt::sndtimeo, int(timeout_s_ * 1000));
        keys_.apply(*socket_);
        socket_->connect(endpoint_);
    }
    zmq::context_t& ctx_;
    std::string endpoint_;
    double timeout_s_;
    const ClientKeys& keys_;
    std::unique_ptr<zmq::socket_t> socket_;
};

[[noreturn]] void fail_with_reply(const json& reply) {
    const json& e = reply.value("error", json::object());
    throw Error("the daemon refused: " + e.value("code", std::string("?")) + ": " +
                e.value("message", std::string("")));
}

// Orders one stream's messages by seq, filling gaps (late join, PUB drops) with replay.
class StreamFollower {
public:
    StreamFollower(std::string id, RequestClient& requests)
        : id_(std::move(id)), requests_(requests) {}

    // Feeds one received message; returns those now in order (maybe none, maybe several).
    std::vector<json> accept(json message) {
        std::vector<json> ready;
        const uint64_t seq = message.value("seq", uint64_t(0));
        if (seq < next_) return ready; // already seen (a replay covered it)
        if (seq > next_) fill_gap(ready);
        if (seq == next_) deliver(std::move(message), ready);
        return ready;
    }
    // Asks for everything from next_ on (used when nothing arrives: the stream may have started
    // before we subscribed, or finished already).
    std::vector<json> catch_up() {
        std::vector<json> ready;
        fill_gap(ready);
        return ready;
    }
    bool done() const { return done_; }

private:
    void deliver(json message, std::vector<json>& ready) {
        ++next_;
        done_ = message.value("done", false);
        ready.push_back(std::move(message));
    }
    void fill_gap(std::vector<json>& ready) {
        json reply = requests_.call({{"op", "replay"}, {"id", id_}, {"from_seq", next_}});
        if (!reply.value("ok", false)) fail_with_reply(reply);
        for (json& m : reply["messages"]) {
            const uint64_t seq = m.value("seq", uint64_t(0));
            if (seq != next_) {
                if (seq > next_)
                    throw Error("messages " + std::to_string(next_) + " to " +
                                std::to_string(seq - 1) + " of stream " + id_ +
                                " are lost (beyond the replay buffer)");
                continue;
            }
            deliver(std::move(m), ready);
        }
    }
    std::string id_;
    RequestClient& requests_;
    uint64_t next_ = 0;
    bool done_ = false;
};

std::string random_id() {
    std::random_device rd;
    std::mt19937_64 rng((uint64_t(rd()) << 32) ^ rd());
    char buf[24];
    std::snprintf(buf, sizeof buf, "c%016llx", (unsigned long long)rng());
    return buf;
}

// Prints one stream message: its text, or the JSON line with --json. Returns the exit code
// when the message is the final one (0, or 1 for a stream that ended in error).
std::optional<int> print_message(const json& m, bool as_json) {
    if (as_json) {
        std::fputs((m.dump() + "\n").c_str(), stdout);
    } else {
        const std::string text = m.value("text", std::string());
        std::fwrite(text.data(), 1, text.size(), stdout);
    }
    std::fflush(stdout);
    if (!m.value("done", false)) return std::nullopt;
    if (!as_json) std::fputc('\n', stdout);
    const std::string reason = m.value("finish_reason", std::string());
    if (reason == "error") {
        std::fprintf(stderr, "woolly: the stream ended in error: %s\n",
                     m.value("error", json::object()).value("message", std::string("?")).c_str());
        return 1;
    }
    return 0;
}

std::atomic<bool> g_interrupted{false};

} // namespace

int generate_command(int argc, char** argv) {
    Args args(argc, argv, 2,
              {"-p", "--prompt", "--requests", "--tokens", "-n", "--n-predict", "--temp", "--top-k",
               "--top-p", "--min-p", "--repeat-penalty", "--repeat-last-n", "--seed", "--stop",
               "--id", "--timeout", "--server-key", "--client-key"},
              {"--json", "--help", "-h"});
    if (args.has("--help") || args.has("-h")) {
        std::fputs(
            "usage: woolly generate [-p PROMPT] [--requests E] [--tokens E] [-n N] [--temp T]\n"
            "       [--top-k K] [--top-p P] [--min-p M] [--repeat-penalty R] [--repeat-last-n N]\n"
            "       [--seed S] [--stop TEXT]... [--id ID] [--timeout SECONDS] [--json]\n"
            "       [--server-key SERVER.pub --client-key CLIENT.key]   (CurveZMQ)\n"
            "Sends the prompt (stdin when -p is absent) to woollyd and prints the stream as it\n"
            "arrives. Exit 0 at the end of the stream; 1 with the daemon's error or a timeout.\n",
            stdout);
        return 0;
    }
    const std::string prompt = read_prompt(args);
    const std::string id = args.get("--id").value_or(random_id());
    if (!protocol::is_valid_stream_id(id)) throw Error("--id must match [A-Za-z0-9_-]{1,64}");
    const double timeout = args.number<double>("--timeout").value_or(60.0);
    if (!(timeout > 0)) throw Error("--timeout must be positive");
    const bool as_json = args.has("--json");

    json request = {{"op", "generate"}, {"id", id}, {"prompt", prompt}};
    if (auto n = args.number<int64_t>("-n", "--n-predict")) request["max_tokens"] = *n;
    if (auto v = args.number<double>("--temp")) request["temperature"] = *v;
    if (auto v = args.number<int64_t>("--top-k")) request["top_k"] = *v;
    if (auto v = args.number<double>("--top-p")) request["top_p"] = *v;
    if (auto v = args.number<double>("--min-p")) request["min_p"] = *v;
    if (auto v = args.number<double>("--repeat-penalty")) request["repeat_penalty"] = *v;
    if (auto v = args.number<int64_t>("--repeat-last-n")) request["repeat_last_n"] = *v;
    if (auto v = args.number<uint64_t>("--seed")) request["seed"] = *v;
    if (args.has("--stop")) request["stop"] = args.all("--stop");

    zmq::context_t ctx;
    const ClientKeys keys = ClientKeys::from(args);
    zmq::socket_t sub(ctx, zmq::socket_type::sub);
    sub.set(zmq::sockopt::linger, 0);
    keys.apply(sub);
    sub.connect(args.get("--tokens").value_or(kDefaultTokens));
    sub.set(zmq::sockopt::subscribe, protocol::topic_for(id));
    RequestClient requests(ctx, args.get("--requests").value_or(kDefaultRequests), timeout, keys);

    const json reply = requests.call(request);
    if (!reply.value("ok", false)) fail_with_reply(reply);

    StreamFollower stream(id, requests);
    auto last_progress = Clock::now();
    while (true) {
        zmq::pollitem_t items[] = {{sub.handle(), 0, ZMQ_POLLIN, 0}};
        zmq::poll(items, 1, std::chrono::milliseconds(200));
        std::vector<json> ready;
        if (items[0].revents & ZMQ_POLLIN) {
            std::vector<zmq::message_t> frames;
            (void)zmq::recv_multipart(sub, std::back_inserter(frames));
            if (frames.size() != 2) continue;
            json m = json::parse(frames[1].to_string_view(), nullptr, false);
            if (m.is_discarded() || m.value("id", std::string()) != id) continue;
            ready = stream.accept(std::move(m));
        } else {
            // Quiet for a while: the subscription may have joined after the stream's start (or
            // end); replay covers both.
            ready = stream.catch_up();
        }
        if (!ready.empty()) last_progress = Clock::now();
        for (const json& m : ready)
            if (auto code = print_message(m, as_json)) return *code;
        if (std::chrono::duration<double>(Clock::now() - last_progress).count() > timeout)
            throw Error("no tokens for " + std::to_string(int(timeout)) + " s on stream " + id);
    }
}

int subscribe_command(int argc, char** argv) {
    Args args(argc, argv, 2, {"--tokens", "--requests", "--server-key", "--client-key"},
              {"--all", "--json", "--help", "-h"});
    if (args.has("--help") || args.has("-h") || (args.positional().empty() == !args.has("--all"))) {
        std::fputs(
            "usage: woolly subscribe (ID | --all) [--tokens E] [--requests E] [--json]\n"
            "       [--server-key SERVER.pub --client-key CLIENT.key]   (CurveZMQ)\n"
            "Prints a stream (until it ends) or every stream (until interrupted) as it arrives.\n"
            "With --all and no --json, each text is prefixed by its stream id.\n",
            args.has("--help") || args.has("-h") ? stdout : stderr);
        return args.has("--help") || args.has("-h") ? 0 : 2;
    }
    const bool all = args.has("--all");
    const bool as_json = args.has("--json");
    const std::string id = all ? "" : args.positional()[0];
    if (!all && !protocol::is_valid_stream_id(id))
        throw Error("the stream id must match [A-Za-z0-9_-]{1,64}");
    std::signal(SIGINT, [](int) { g_interrupted = true; });
    std::signal(SIGTERM, [](int) { g_interrupted = true; });

    zmq::context_t ctx;
    const ClientKeys keys = ClientKeys::from(args);
    zmq::socket_t sub(ctx, zmq::socket_type::sub);
    sub.set(zmq::sockopt::linger, 0);
    keys.apply(sub);
    sub.connect(args.get("--tokens").value_or(kDefaultTokens));
    sub.set(zmq::sockopt::subscribe,
            all ? std::string(protocol::kTopicPrefix) : protocol::topic_for(id));
    RequestClient requests(ctx, args.get("--requests").value_or(kDefaultRequests), 10.0, keys);
    std::optional<StreamFollower> stream;
    if (!all) stream.emplace(id, requests);
    std::map<std::string, uint64_t> next_seq; // --all: gaps are reported, not filled

    while (!g_interrupted) {
        zmq::pollitem_t items[] = {{sub.handle(), 0, ZMQ_POLLIN, 0}};
        zmq::poll(items, 1, std::chrono::milliseconds(200));
        if (!(items[0].revents & ZMQ_POLLIN)) continue;
        std::vector<zmq::message_t> frames;
        (void)zmq::recv_multipart(sub, std::back_inserter(frames));
        if (frames.size() != 2) continue;
        json m = json::parse(frames[1].to_string_view(), nullptr, false);
        if (m.is_discarded()) continue;
        const std::string stream_id = m.value("id", std::string());
        if (all) {
            const uint64_t seq = m.value("seq", uint64_t(0));
            auto [it, fresh] = next_seq.emplace(stream_id, seq);
            if (!fresh && seq != it->second)
                std::fprintf(stderr, "woolly: stream %s: messages %llu to %llu missed\n",
                             stream_id.c_str(), (unsigned long long)it->second,
                             (unsigned long long)seq - 1);
            it->second = seq + 1;
            if (as_json) {
                print_message(m, true);
            } else {
                std::printf("[%s] %s%s\n", stream_id.c_str(),
                            m.value("text", std::string()).c_str(),
                            m.value("done", false)
                                ? (" <" + m.value("finish_reason", std::string()) + ">").c_str()
                                : "");
                std::fflush(stdout);
            }
            continue;
        }
        if (stream_id != id) continue;
        for (const json& ready : stream->accept(std::move(m)))
            if (auto code = print_message(ready, as_json)) return *code;
    }
    return 0;
}

int cancel_command(int argc, char** argv) {
    Args args(argc, argv, 2, {"--requests", "--server-key", "--client-key"}, {"--help", "-h"});
    if (args.has("--help") || args.has("-h") || args.positional().size() != 1) {
        std::fputs("usage: woolly cancel ID [--requests E] [--server-key F --client-key F]\n",
                   args.positional().size() == 1 ? stdout : stderr);
        return args.positional().size() == 1 ? 0 : 2;
    }
    zmq::context_t ctx;
    const ClientKeys keys = ClientKeys::from(args);
    RequestClient requests(ctx, args.get("--requests").value_or(kDefaultRequests), 10.0, keys);
    const json reply = requests.call({{"op", "cancel"}, {"id", args.positional()[0]}});
    if (!reply.value("ok", false)) fail_with_reply(reply);
    std::printf("cancelled %s\n", args.positional()[0].c_str());
    return 0;
}

int status_command(int argc, char** argv) {
    Args args(argc, argv, 2, {"--requests", "--server-key", "--client-key"}, {"--help", "-h"});
    if (args.has("--help") || args.has("-h")) {
        std::fputs("usage: woolly status [--requests E] [--server-key F --client-key F]\nPrints "
                   "the daemon's status as JSON.\n",
                   stdout);
        return 0;
    }
    zmq::context_t ctx;
    const ClientKeys keys = ClientKeys::from(args);
    RequestClient requests(ctx, args.get("--requests").value_or(kDefaultRequests), 10.0, keys);
    const json reply = requests.call({{"op", "status"}});
    if (!reply.value("ok", false)) fail_with_reply(reply);
    std::printf("%s\n", reply.dump(2).c_str());
    return 0;
}

} // namespace woolly::cli
