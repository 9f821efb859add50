// cmd_client.cpp — the daemon's clients: `woolly generate`, `chat`, `subscribe`, `cancel` and
// `status`. They speak woolly/1 (protocol/SPEC.md) over ZeroMQ. Endpoints come from
// --requests/--tokens, else $WOOLLY_REQUESTS/$WOOLLY_TOKENS, else loopback's defaults. A reply
// that does not come within a few seconds is an error naming the endpoint; SIGINT and SIGTERM
// end a command quietly with 130 and 143 (`subscribe --all`: 0).
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <unistd.h>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "cli_args.h"
#include "commands.h"
#include "engine/text/chat.h"
#include "engine/text/utf8.h"
#include "protocol/curve.h"
#include "protocol/protocol.h"

namespace woolly::cli {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr const char* kDefaultRequests = "tcp://127.0.0.1:5555";
constexpr const char* kDefaultTokens = "tcp://127.0.0.1:5556";
// How long a reply may take: the daemon answers every request at once (while its model loads,
// with `loading`), so silence this long means nobody is there.
constexpr double kReplySeconds = 5.0;
constexpr double kStatusSeconds = 2.0; // `woolly status` probes quickly

// The flags every client command takes.
const std::set<std::string> kClientFlags = {"--requests", "--tokens", "--server-key",
                                            "--client-key"};

std::set<std::string> with_client_flags(std::set<std::string> flags) {
    flags.insert(kClientFlags.begin(), kClientFlags.end());
    return flags;
}

const char* kEndpointsHelp =
    "  --requests E / --tokens E   the daemon's endpoints (else $WOOLLY_REQUESTS and\n"
    "                              $WOOLLY_TOKENS, else tcp://127.0.0.1:5555 and :5556)\n"
    "  --server-key SERVER.pub --client-key CLIENT.key   CurveZMQ\n";

std::string endpoint(const Args& args, const char* flag, const char* env, const char* fallback) {
    if (auto value = args.get(flag)) return *value;
    if (const char* value = std::getenv(env); value && *value) return value;
    return fallback;
}
std::string requests_endpoint(const Args& args) {
    return endpoint(args, "--requests", "WOOLLY_REQUESTS", kDefaultRequests);
}
std::string tokens_endpoint(const Args& args) {
    return endpoint(args, "--tokens", "WOOLLY_TOKENS", kDefaultTokens);
}

// SIGINT/SIGTERM: the signal taken, for the exit code; every wait below returns early.
std::atomic<int> g_signal{0};
struct Interrupted {};

void take_signals() {
    struct sigaction action {};
    action.sa_handler = [](int sig) { g_signal = sig; };
    sigemptyset(&action.sa_mask);
    action.sa_flags = 0; // no SA_RESTART: zmq_poll returns EINTR at once
    sigaction(SIGINT, &action, nullptr);
    sigaction(SIGTERM, &action, nullptr);
}

int interrupted_exit_code() {
    return 128 + g_signal.load();
}

// zmq::poll that throws Interrupted when a signal came (EINTR, or just before the wait).
int poll_items(zmq::pollitem_t* items, size_t n, std::chrono::milliseconds timeout) {
    if (g_signal) throw Interrupted{};
    try {
        return zmq::poll(items, n, timeout);
    } catch (const zmq::error_t& e) {
        if (e.num() == EINTR) throw Interrupted{};
        throw;
    }
}

// Before connect: an endpoint with an IPv6 address needs ZMQ_IPV6.
void connect_to(zmq::socket_t& socket, const std::string& e) {
    if (e.find('[') != std::string::npos) socket.set(zmq::sockopt::ipv6, true);
    socket.connect(e);
}

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

// One REQ conversation at a time, with a deadline on every reply (the Lazy Pirate pattern of
// the ZeroMQ guide, without retries: a REQ that got no reply is closed and opened again).
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
        bool sent = false;
        try {
            sent = socket_->send(zmq::buffer(request.dump()), zmq::send_flags::none).has_value();
        } catch (const zmq::error_t& e) {
            if (e.num() == EINTR) throw Interrupted{};
            throw;
        }
        if (!sent) {
            connect();
            throw Error(no_reply());
        }
        zmq::pollitem_t items[] = {{socket_->handle(), 0, ZMQ_POLLIN, 0}};
        poll_items(items, 1, std::chrono::milliseconds(int64_t(timeout_s_ * 1000)));
        if (!(items[0].revents & ZMQ_POLLIN)) {
            connect(); // a REQ socket that got no reply cannot send again
            throw Error(no_reply());
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
    std::string no_reply() const {
        char seconds[16];
        std::snprintf(seconds, sizeof seconds, "%g", timeout_s_);
        return "no reply from " + endpoint_ + " within " + seconds +
               " s (is woollyd running there?)";
    }
    void connect() {
        socket_ = std::make_unique<zmq::socket_t>(ctx_, zmq::socket_type::req);
        socket_->set(zmq::sockopt::linger, 0);
        socket_->set(zmq::sockopt::sndtimeo, int(timeout_s_ * 1000));
        keys_.apply(*socket_);
        connect_to(*socket_, endpoint_);
    }
    zmq::context_t& ctx_;
    std::string endpoint_;
    double timeout_s_;
    const ClientKeys& keys_;
    std::unique_ptr<zmq::socket_t> socket_;
};

std::string error_code_of(const json& reply) {
    return reply.value("error", json::object()).value("code", std::string("?"));
}

// The daemon's refusal, with its code.
class Refused : public Error {
public:
    Refused(std::string code, const std::string& message)
        : Error("the daemon refused: " + code + ": " + message), code(std::move(code)) {}
    std::string code;
};

[[noreturn]] void fail_with_reply(const json& reply) {
    const json& e = reply.value("error", json::object());
    throw Refused(e.value("code", std::string("?")), e.value("message", std::string("")));
}

// A request answered `loading` is sent again until the model is loaded or `timeout_s` passes;
// the progress goes to stderr once, then on a terminal as it changes.
json call_when_loaded(RequestClient& requests, const json& request, double timeout_s,
                      const char* command) {
    const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
    bool said = false;
    while (true) {
        json reply = requests.call(request);
        if (reply.value("ok", false) || error_code_of(reply) != "loading") return reply;
        if (!said || isatty(STDERR_FILENO)) {
            std::fprintf(stderr, "%swoolly %s: %s; waiting\n", said ? "\x1b[1A\r" : "", command,
                         reply["error"].value("message", std::string("loading")).c_str());
            said = true;
        }
        if (Clock::now() > deadline) fail_with_reply(reply);
        zmq::pollitem_t none[1] = {};
        poll_items(none, 0, std::chrono::milliseconds(250)); // a pause the signals can end
    }
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
    // Asks for everything from next_ on: the stream may have started before we subscribed, or
    // finished already. An id the daemon does not know is `not_found`, an Error.
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

// A SUB socket on one stream (or all with an empty id), subscribed before anything is asked.
zmq::socket_t subscriber(zmq::context_t& ctx, const Args& args, const ClientKeys& keys,
                         const std::string& id) {
    zmq::socket_t sub(ctx, zmq::socket_type::sub);
    sub.set(zmq::sockopt::linger, 0);
    keys.apply(sub);
    connect_to(sub, tokens_endpoint(args));
    sub.set(zmq::sockopt::subscribe,
            id.empty() ? std::string(protocol::kTopicPrefix) : protocol::topic_for(id));
    return sub;
}

// One message from `sub` for stream `id` (any stream when empty), or nothing within `wait`.
std::optional<json> receive_message(zmq::socket_t& sub, const std::string& id,
                                    std::chrono::milliseconds wait) {
    zmq::pollitem_t items[] = {{sub.handle(), 0, ZMQ_POLLIN, 0}};
    poll_items(items, 1, wait);
    if (!(items[0].revents & ZMQ_POLLIN)) return std::nullopt;
    std::vector<zmq::message_t> frames;
    (void)zmq::recv_multipart(sub, std::back_inserter(frames));
    if (frames.size() != 2) return json(); // not a stream message: nothing to show
    json m = json::parse(frames[1].to_string_view(), nullptr, false);
    if (m.is_discarded() || !m.is_object()) return json();
    if (!id.empty() && m.value("id", std::string()) != id) return json();
    return m;
}

// Follows stream `id` to its end from `sub`, filling the beginning and any gap with replay;
// prints each message and appends its text to `text` when given. With `replay_first` it asks
// for the stream's beginning at once, and an id the daemon does not know is waited for
// `wait_unknown_s` seconds (0: not_found at once). Returns the exit code.
int follow(zmq::socket_t& sub, RequestClient& requests, const std::string& id, bool as_json,
           double timeout_s, bool replay_first, std::string* text, double wait_unknown_s = 0) {
    StreamFollower stream(id, requests);
    auto last_progress = Clock::now();
    const auto unknown_until = last_progress + std::chrono::duration<double>(wait_unknown_s);
    bool known = !replay_first; // generate's own stream is known once admitted
    auto catch_up = [&]() -> std::vector<json> {
        try {
            auto ready = stream.catch_up();
            known = true;
            return ready;
        } catch (const Refused& e) {
            if (known || e.code != "not_found" || Clock::now() > unknown_until) throw;
            return {};
        }
    };
    auto show = [&](const std::vector<json>& ready) -> std::optional<int> {
        if (!ready.empty()) last_progress = Clock::now();
        for (const json& m : ready) {
            if (text) *text += m.value("text", std::string());
            if (auto code = print_message(m, as_json)) return code;
        }
        return std::nullopt;
    };
    if (replay_first)
        if (auto code = show(catch_up())) return *code;
    while (true) {
        std::optional<json> m = receive_message(sub, id, std::chrono::milliseconds(500));
        std::optional<int> code;
        if (!m)
            code = show(catch_up()); // quiet: a start before we joined, a gap, not known yet
        else if (!m->is_null())
            code = show(stream.accept(std::move(*m)));
        if (code) return *code;
        if (std::chrono::duration<double>(Clock::now() - last_progress).count() > timeout_s)
            throw Error("no tokens for " + std::to_string(int(timeout_s)) + " s on stream " + id);
    }
}

// The generate request of the flags that `generate` and `chat` share (no prompt).
json generation_fields(const Args& args) {
    json request = {{"op", "generate"}};
    if (auto n = args.number<int64_t>("-n", "--n-predict")) request["max_tokens"] = *n;
    if (auto v = args.number<double>("--temp")) request["temperature"] = *v;
    if (auto v = args.number<int64_t>("--top-k")) request["top_k"] = *v;
    if (auto v = args.number<double>("--top-p")) request["top_p"] = *v;
    if (auto v = args.number<double>("--min-p")) request["min_p"] = *v;
    if (auto v = args.number<double>("--repeat-penalty")) request["repeat_penalty"] = *v;
    if (auto v = args.number<int64_t>("--repeat-last-n")) request["repeat_last_n"] = *v;
    if (auto v = args.number<uint64_t>("--seed")) request["seed"] = *v;
    if (args.has("--stop")) request["stop"] = args.all("--stop");
    if (auto name = args.get("--chat-template")) {
        if (!chat_template_from_name(*name))
            throw Error("--chat-template '" + *name + "' is not one of: " + chat_template_names());
        request["chat_template"] = *name;
    }
    return request;
}

const std::set<std::string> kGenerationFlags = {
    "-n",        "--n-predict",      "--temp",          "--top-k", "--top-p",
    "--min-p",   "--repeat-penalty", "--repeat-last-n", "--seed",  "--stop",
    "--timeout", "--chat-template",  "--messages"};

const char* kGenerationHelp =
    "  -n N, --temp T, --top-k K, --top-p P, --min-p M, --repeat-penalty R,\n"
    "  --repeat-last-n N, --seed S, --stop TEXT (repeatable)   as in `woolly run`; unset: the\n"
    "                              daemon's defaults\n"
    "  --chat-template NAME        the template family for the conversation, instead of the\n"
    "                              model's own\n"
    "  --timeout SECONDS           how long to wait for the next token (default 60), and for a\n"
    "                              daemon still loading its model\n";

json messages_json(const std::vector<ChatMessage>& messages) {
    json out = json::array();
    for (const ChatMessage& m : messages) out.push_back({{"role", m.role}, {"content", m.content}});
    return out;
}

// Sends a generate request and follows its stream; on SIGINT/SIGTERM once admitted, the stream
// is cancelled before the command ends. Returns the exit code.
int generate_and_follow(zmq::context_t& ctx, const Args& args, const ClientKeys& keys, json request,
                        bool as_json, double timeout_s, const char* command,
                        std::string* text = nullptr) {
    const std::string id = request["id"];
    zmq::socket_t sub = subscriber(ctx, args, keys, id); // subscribe first, then ask
    RequestClient requests(ctx, requests_endpoint(args), kReplySeconds, keys);
    const json reply = call_when_loaded(requests, request, timeout_s, command);
    if (!reply.value("ok", false)) fail_with_reply(reply);
    try {
        return follow(sub, requests, id, as_json, timeout_s, false, text);
    } catch (const Interrupted&) {
        // The user stopped it: the daemon stops generating too.
        const int sig = g_signal.exchange(0);
        try {
            RequestClient quick(ctx, requests_endpoint(args), 1.0, keys);
            (void)quick.call({{"op", "cancel"}, {"id", id}});
        } catch (const std::exception&) {
        }
        g_signal = sig;
        throw;
    }
}

double timeout_from(const Args& args, double fallback) {
    const double timeout = args.number<double>("--timeout").value_or(fallback);
    if (!(timeout > 0) || timeout > 1e6) throw Error("--timeout must be between 0 and 1e6 seconds");
    return timeout;
}

bool wants_help(const Args& args) {
    return args.has("--help") || args.has("-h");
}

// Runs a client command's body: Interrupted becomes the signal's exit code.
template <typename Body> int client_main(Body body, int interrupted_code = -1) {
    take_signals();
    try {
        return body();
    } catch (const Interrupted&) {
        return interrupted_code >= 0 ? interrupted_code : interrupted_exit_code();
    }
}

} // namespace

int generate_command(int argc, char** argv) {
    std::set<std::string> flags = with_client_flags(kGenerationFlags);
    flags.insert({"-p", "--prompt", "--id"});
    Args args(argc, argv, 2, flags, {"--json", "--help", "-h"});
    if (wants_help(args)) {
        std::printf(
            "usage: woolly generate [-p PROMPT | --messages FILE.json] [options]\n"
            "Sends the prompt (stdin when -p and --messages are absent), or the conversation in\n"
            "FILE.json ([{\"role\": ..., \"content\": ...}, ...], rendered with the model's chat\n"
            "template by the daemon), to woollyd and prints the stream as it arrives. Exit 0 at\n"
            "the end of the stream; 1 with the daemon's error or a timeout; 130/143 on\n"
            "SIGINT/SIGTERM, after cancelling the stream.\n"
            "%s"
            "  --id ID                     the stream's id ([A-Za-z0-9_-]{1,64}; default random)\n"
            "  --json                      one JSON line per message, as published\n"
            "%s",
            kGenerationHelp, kEndpointsHelp);
        return 0;
    }
    args.refuse_extra();
    return client_main([&] {
        json request = generation_fields(args);
        const auto messages = args.get("--messages");
        if (messages && args.get("-p", "--prompt"))
            throw Error("give -p PROMPT or --messages FILE, not both");
        if (!messages && request.contains("chat_template"))
            throw Error("--chat-template goes with --messages (a prompt is not templated)");
        if (messages)
            request["messages"] = messages_json(read_chat_messages(*messages));
        else
            request["prompt"] = read_prompt(args);
        const std::string id = args.get("--id").value_or(random_id());
        if (!protocol::is_valid_stream_id(id)) throw Error("--id must match [A-Za-z0-9_-]{1,64}");
        request["id"] = id;
        zmq::context_t ctx;
        const ClientKeys keys = ClientKeys::from(args);
        return generate_and_follow(ctx, args, keys, request, args.has("--json"),
                                   timeout_from(args, 60.0), "generate");
    });
}

int chat_command(int argc, char** argv) {
    Args args(argc, argv, 2, with_client_flags(kGenerationFlags), {"--help", "-h"});
    if (wants_help(args)) {
        std::printf(
            "usage: woolly chat [--messages FILE.json] [options]\n"
            "A conversation with woollyd: each line read from stdin is a user turn; the reply\n"
            "streams to stdout. The daemon gets the whole conversation every turn (its prefix\n"
            "cache keeps what it computed for the turns before). --messages starts from a\n"
            "conversation in a file (a system turn, say). Ends at the end of input (exit 0).\n"
            "%s%s",
            kGenerationHelp, kEndpointsHelp);
        return 0;
    }
    args.refuse_extra();
    return client_main([&] {
        const json fields = generation_fields(args);
        std::vector<ChatMessage> messages;
        if (auto path = args.get("--messages")) messages = read_chat_messages(*path);
        const double timeout = timeout_from(args, 60.0);
        zmq::context_t ctx;
        const ClientKeys keys = ClientKeys::from(args);
        std::string line;
        while (true) {
            std::fputs("> ", stderr);
            std::fflush(stderr);
            if (!std::getline(std::cin, line)) {
                if (g_signal) throw Interrupted{}; // the read was interrupted, not at its end
                break;
            }
            if (!is_valid_utf8(line)) {
                std::fputs("woolly chat: that line is not valid UTF-8; say it again\n", stderr);
                continue;
            }
            messages.push_back({"user", line});
            json request = fields;
            request["messages"] = messages_json(messages);
            request["id"] = random_id();
            std::string reply;
            if (int code =
                    generate_and_follow(ctx, args, keys, request, false, timeout, "chat", &reply))
                return code;
            messages.push_back({"assistant", reply});
        }
        return 0;
    });
}

int subscribe_command(int argc, char** argv) {
    Args args(argc, argv, 2, with_client_flags({"--timeout"}), {"--all", "--json", "--help", "-h"});
    const bool help = wants_help(args);
    if (help || (args.positional().empty() == !args.has("--all"))) {
        std::fprintf(
            help ? stdout : stderr,
            "usage: woolly subscribe (ID | --all) [--json] [--timeout SECONDS]\n"
            "ID: prints that stream from its first message (replayed when it began before),\n"
            "then live, until it ends (exit 0; 1 when it ended in error). A stream still queued\n"
            "is waited for, 60 s at most without a token. An id the daemon does not know is\n"
            "not_found (exit 1) at once, or after --timeout SECONDS of waiting for a stream of\n"
            "that id to be admitted (subscribe first, then generate).\n"
            "--all: prints every stream as it arrives until interrupted (exit 0); each stream's\n"
            "text on a line of its own, after its id.\n"
            "%s",
            kEndpointsHelp);
        return help ? 0 : 2;
    }
    args.refuse_extra(1);
    const bool all = args.has("--all");
    const bool as_json = args.has("--json");
    const double wait_unknown = args.has("--timeout") ? timeout_from(args, 0) : 0.0;
    const double timeout = std::max(60.0, wait_unknown);
    const std::string id = all ? "" : args.positional()[0];
    if (!all && !protocol::is_valid_stream_id(id))
        throw Error("the stream id must match [A-Za-z0-9_-]{1,64}");
    zmq::context_t ctx;
    const ClientKeys keys = ClientKeys::from(args);
    if (!all) {
        return client_main([&] {
            zmq::socket_t sub = subscriber(ctx, args, keys, id);
            RequestClient requests(ctx, requests_endpoint(args), kReplySeconds, keys);
            return follow(sub, requests, id, as_json, timeout, true, nullptr, wait_unknown);
        });
    }
    return client_main(
        [&] {
            zmq::socket_t sub = subscriber(ctx, args, keys, "");
            std::map<std::string, uint64_t> next_seq; // gaps are reported, not filled
            std::string open_line;                    // the stream whose text the line shows
            while (true) {
                std::optional<json> m = receive_message(sub, "", std::chrono::milliseconds(-1));
                if (!m || m->is_null()) continue;
                const std::string stream_id = m->value("id", std::string());
                const uint64_t seq = m->value("seq", uint64_t(0));
                auto [it, fresh] = next_seq.emplace(stream_id, seq);
                if (!fresh && seq != it->second)
                    std::fprintf(stderr, "woolly: stream %s: messages %llu to %llu missed\n",
                                 stream_id.c_str(), (unsigned long long)it->second,
                                 (unsigned long long)seq - 1);
                it->second = seq + 1;
                const bool done = m->value("done", false);
                if (done) next_seq.erase(it);
                if (as_json) {
                    print_message(*m, true);
                    continue;
                }
                // One line per stream while it runs; another stream's text starts a new line.
                if (open_line != stream_id) {
                    std::printf("%s[%s] ", open_line.empty() ? "" : "\n", stream_id.c_str());
                    open_line = stream_id;
                }
                std::fputs(m->value("text", std::string()).c_str(), stdout);
                if (done) {
                    std::printf(" <%s>\n", m->value("finish_reason", std::string()).c_str());
                    open_line.clear();
                }
                std::fflush(stdout);
            }
            return 0;
        },
        0);
}

int cancel_command(int argc, char** argv) {
    Args args(argc, argv, 2, with_client_flags({}), {"--help", "-h"});
    const bool help = wants_help(args);
    if (help || args.positional().size() != 1) {
        std::fprintf(help ? stdout : stderr,
                     "usage: woolly cancel ID\nEnds a running or queued stream (its final message "
                     "says finish_reason cancelled).\n%s",
                     kEndpointsHelp);
        return help ? 0 : 2;
    }
    return client_main([&] {
        zmq::context_t ctx;
        const ClientKeys keys = ClientKeys::from(args);
        RequestClient requests(ctx, requests_endpoint(args), kReplySeconds, keys);
        const json reply = requests.call({{"op", "cancel"}, {"id", args.positional()[0]}});
        if (!reply.value("ok", false)) fail_with_reply(reply);
        std::printf("cancelled %s\n", args.positional()[0].c_str());
        return 0;
    });
}

int status_command(int argc, char** argv) {
    Args args(argc, argv, 2, with_client_flags({"--timeout"}), {"--help", "-h"});
    if (wants_help(args)) {
        std::printf("usage: woolly status [--timeout SECONDS]\nPrints the daemon's status as "
                    "JSON; no reply within --timeout (default 2) is an error (exit 1).\n%s",
                    kEndpointsHelp);
        return 0;
    }
    args.refuse_extra();
    return client_main([&] {
        zmq::context_t ctx;
        const ClientKeys keys = ClientKeys::from(args);
        RequestClient requests(ctx, requests_endpoint(args), timeout_from(args, kStatusSeconds),
                               keys);
        const json reply = requests.call({{"op", "status"}});
        if (!reply.value("ok", false)) fail_with_reply(reply);
        std::printf("%s\n", reply.dump(2).c_str());
        return 0;
    });
}

} // namespace woolly::cli
