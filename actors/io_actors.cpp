// io_actors.cpp — the actors that own sockets: ingress (ROUTER, requests) and publisher (PUB,
// tokens and replay). Each socket is used by its one actor only.
#include <algorithm>
#include <chrono>
#include <deque>
#include <map>
#include <random>
#include <set>

#include "actors.h"
#include "engine/error.h"
#include "engine/text/generation.h"
#include "log.h"
#include "messages.h"
#include "protocol/curve.h"
#include "protocol/protocol.h"

namespace woolly::actors {
namespace {

using Clock = std::chrono::steady_clock;

// The recent messages of one stream, for subscribers that joined late or lost some.
struct ReplayBuffer {
    std::deque<std::string> messages; // JSON of seq first_seq, first_seq + 1, ...
    uint64_t first_seq = 0;
    bool done = false;
    Clock::time_point finished;
};

// After a poke on `wake` (the ZeroMQ guide's control socket beside a data socket): empties the
// wake socket, then handles every message in the mailbox with `handlers`, until it is empty or
// `running` turns false.
template <typename... Handlers>
void read_mailbox(caf::blocking_actor* self, zmq::socket_t& wake, const bool& running,
                  Handlers... handlers) {
    zmq::message_t poke;
    while (wake.recv(poke, zmq::recv_flags::dontwait)) {
    }
    bool handled = true;
    while (handled && running)
        self->receive(
            handlers..., caf::after(std::chrono::seconds(0)) >> [&] { handled = false; });
}

} // namespace

protocol::DecodeLimits decode_limits(const config::DaemonConfig& c, int64_t max_request_bytes) {
    protocol::DecodeLimits limits;
    limits.max_request_bytes = size_t(max_request_bytes);
    limits.max_tokens = c.limits.max_tokens;
    limits.defaults.max_tokens = int32_t(c.limits.default_max_tokens);
    limits.defaults.sampling = config::sampling_params(c);
    return limits;
}

std::shared_ptr<zmq::socket_t> server_socket(zmq::context_t& context, zmq::socket_type type,
                                             const std::string& curve_secret) {
    auto socket = std::make_shared<zmq::socket_t>(context, type);
    if (!curve_secret.empty()) {
        socket->set(zmq::sockopt::curve_server, true);
        socket->set(zmq::sockopt::curve_secretkey, curve_secret);
    }
    return socket;
}

void bind_endpoint(zmq::socket_t& socket, const std::string& endpoint) {
    const config::BindAddress address = config::bind_address(endpoint);
    if (address.ipv6) socket.set(zmq::sockopt::ipv6, true);
    socket.bind(address.endpoint);
}

void unbind_endpoint(zmq::socket_t& socket, const std::string& endpoint) {
    socket.unbind(config::bind_address(endpoint).endpoint);
}

// Binds `socket` to `next` and then lets `current` go, so that a bad endpoint leaves the socket
// as it was. Returns why not, or "" when done (or when nothing changed).
std::string rebind(zmq::socket_t& socket, std::string& current, const std::string& next) {
    if (next == current) return "";
    try {
        bind_endpoint(socket, next);
    } catch (const zmq::error_t& e) {
        return "cannot bind " + next + ": " + e.what() + " (still on " + current + ")";
    }
    try {
        unbind_endpoint(socket, current);
    } catch (const zmq::error_t& e) {
        log::warning("could not unbind " + current + ": " + e.what());
    }
    log::info("now on " + next + " (was " + current + ")");
    current = next;
    return "";
}

// A new high-water mark takes a new socket. libzmq 4.3.4 applies ZMQ_SNDHWM set after bind by
// sending it to the peer of every pipe the socket still lists, including a pipe whose peer the
// I/O thread has just freed (a subscriber that left), and the I/O thread crashes; set before
// bind, it is safe. The new socket takes the endpoint (the old one lets it go first when it is
// the same, and takes it back if the new one cannot bind); subscribers reconnect by themselves
// and the gap in seq sends them to the replay buffer for what they missed.
std::string reopen(zmq::context_t& context, std::shared_ptr<zmq::socket_t>& socket,
                   std::string& current, const std::string& next, int high_water_mark,
                   const std::string& curve_secret) {
    auto fresh = server_socket(context, zmq::socket_type::pub, curve_secret);
    fresh->set(zmq::sockopt::sndhwm, high_water_mark);
    const bool same = next == current;
    try {
        if (same) unbind_endpoint(*socket, current);
    } catch (const zmq::error_t& e) {
        return "cannot reopen " + current + ": " + e.what();
    }
    try {
        bind_endpoint(*fresh, next);
    } catch (const zmq::error_t& e) {
        const std::string why = "cannot bind " + next + ": " + e.what();
        if (!same) return why + " (still on " + current + ")";
        try {
            bind_endpoint(*socket, current);
        } catch (const zmq::error_t& again) {
            log::error("cannot bind " + current + " again: " + again.what() +
                       "; no tokens endpoint until a reload binds one");
        }
        return why;
    }
    socket->set(zmq::sockopt::linger, 200); // what is queued for subscribers, briefly
    socket->close();
    socket = std::move(fresh);
    log::info("tokens socket reopened on " + next + " with high-water mark " +
              std::to_string(high_water_mark) + "; subscribers reconnect");
    current = next;
    return "";
}

void publisher_actor(caf::blocking_actor* self, zmq::context_t* context,
                     std::shared_ptr<zmq::socket_t> socket, std::shared_ptr<const LiveConfig> live,
                     std::string curve_secret) {
    std::map<std::string, ReplayBuffer> streams;
    size_t max_messages = size_t(live->config.replay.max_messages);
    auto keep = std::chrono::seconds(live->config.replay.keep_seconds);
    uint64_t max_bytes = uint64_t(live->config.replay.max_bytes);
    uint64_t held = 0; // bytes of every kept message
    auto drop_stream = [&](std::map<std::string, ReplayBuffer>::iterator it) {
        for (const std::string& m : it->second.messages) held -= m.size();
        return streams.erase(it);
    };
    std::string endpoint = live->config.tokens;
    int high_water_mark = int(live->config.publisher.high_water_mark);
    bool running = true;
    auto expire = [&] {
        const auto now = Clock::now();
        for (auto it = streams.begin(); it != streams.end();) {
            if (it->second.done && now - it->second.finished > keep)
                it = drop_stream(it);
            else
                ++it;
        }
    };
    // Past max_bytes: finished streams go, the one finished longest ago first; then the oldest
    // messages of `current` (the stream being published), as max_messages drops them.
    auto trim = [&](ReplayBuffer& current) {
        while (held > max_bytes) {
            auto oldest = streams.end();
            for (auto it = streams.begin(); it != streams.end(); ++it)
                if (it->second.done && &it->second != &current &&
                    (oldest == streams.end() || it->second.finished < oldest->second.finished))
                    oldest = it;
            if (oldest != streams.end()) {
                drop_stream(oldest);
                continue;
            }
            if (current.messages.size() <= 1) break;
            held -= current.messages.front().size();
            current.messages.pop_front();
            ++current.first_seq;
        }
    };
    std::string topic; // the frame being sent, its memory kept from one message to the next
    // Actors in this process that follow streams (the HTTP ingress), by stream id: each gets
    // the stream's messages as they are published, until its last.
    std::map<std::string, std::set<caf::actor>> watchers;
    std::map<caf::actor, outgoing_batch> forwards; // a batch's messages for each watcher
    self->receive_while(running)(
        [&](publish_atom, outgoing_batch& batch) {
            for (outgoing& m : batch) {
                if (!watchers.empty()) {
                    if (auto w = watchers.find(m.id); w != watchers.end()) {
                        for (const caf::actor& a : w->second) forwards[a].push_back(m);
                        if (m.done) watchers.erase(w);
                    }
                }
                protocol::write_topic(topic, m.id);
                // PUB never blocks: past the high-water mark a subscriber misses messages, and
                // the gap in seq tells it to ask for a replay.
                socket->send(zmq::buffer(topic),
                             zmq::send_flags::sndmore | zmq::send_flags::dontwait);
                socket->send(zmq::buffer(m.json), zmq::send_flags::dontwait);
                ReplayBuffer& buffer = streams[m.id];
                if (buffer.messages.empty()) buffer.first_seq = m.seq;
                held += m.json.size();
                buffer.messages.push_back(std::move(m.json));
                if (buffer.messages.size() > max_messages) {
                    held -= buffer.messages.front().size();
                    buffer.messages.pop_front();
                    ++buffer.first_seq;
                }
                if (m.done) {
                    buffer.done = true;
                    buffer.finished = Clock::now();
                }
                trim(buffer);
            }
            for (auto& [watcher, messages] : forwards)
                self->send(watcher, publish_atom::value, std::move(messages));
            forwards.clear();
        },
        // The sender follows stream `id`: the answer is what is kept of it (empty: nothing
        // published yet), and every message published after it follows, up to the last.
        [&](watch_atom, const std::string& id) -> outgoing_batch {
            outgoing_batch kept;
            auto it = streams.find(id);
            if (it != streams.end()) {
                const ReplayBuffer& b = it->second;
                for (size_t i = 0; i < b.messages.size(); ++i)
                    kept.push_back(
                        {id, b.first_seq + i, b.messages[i], b.done && i + 1 == b.messages.size()});
                if (b.done) return kept;
            }
            watchers[id].insert(caf::actor_cast<caf::actor>(self->current_sender()));
            return kept;
        },
        [&](unwatch_atom, const std::string& id) {
            auto it = watchers.find(id);
            if (it == watchers.end()) return;
            it->second.erase(caf::actor_cast<caf::actor>(self->current_sender()));
            if (it->second.empty()) watchers.erase(it);
        },
        // The stream's kept messages from from_seq on, as the reply frame; empty when the
        // publisher has none of it (unknown, expired, or not started).
        [&](replay_atom, const std::string& id, uint64_t from_seq) -> std::string {
            expire();
            auto it = streams.find(id);
            if (it == streams.end()) return std::string();
            const ReplayBuffer& b = it->second;
            nlohmann::json messages = nlohmann::json::array();
            const uint64_t start = std::max(from_seq, b.first_seq);
            for (uint64_t seq = start; seq < b.first_seq + b.messages.size(); ++seq)
                messages.push_back(nlohmann::json::parse(b.messages[size_t(seq - b.first_seq)]));
            return protocol::encode_ok({{"id", id},
                                        {"messages", std::move(messages)},
                                        {"first_available_seq", b.first_seq},
                                        {"finished", b.done}});
        },
        // The scheduler admitted a stream under `id`, before any of its messages can come: a
        // finished stream's buffer under that id goes, so replay never answers with it.
        [&](renew_atom, const std::string& id) {
            if (auto it = streams.find(id); it != streams.end() && it->second.done) drop_stream(it);
        },
        // A reloaded config: replay settings for what comes next, the endpoint, and a new
        // high-water mark (a new socket, see reopen).
        [&](reconfig_atom, std::shared_ptr<const LiveConfig> next) -> std::string {
            const config::DaemonConfig& c = next->config;
            const int hwm = int(c.publisher.high_water_mark);
            std::string why = hwm == high_water_mark
                                  ? rebind(*socket, endpoint, c.tokens)
                                  : reopen(*context, socket, endpoint, c.tokens, hwm, curve_secret);
            if (!why.empty()) return why;
            high_water_mark = hwm;
            max_messages = size_t(c.replay.max_messages);
            keep = std::chrono::seconds(c.replay.keep_seconds);
            max_bytes = uint64_t(c.replay.max_bytes);
            return "";
        },
        [&](shutdown_atom) { running = false; }, [&](caf::exit_msg&) { running = false; },
        caf::after(std::chrono::seconds(1)) >> [&] { expire(); });
    socket->set(zmq::sockopt::linger, 200); // let the last messages out, briefly
    socket->close();
}

namespace {

// A type to ask for (ask's first argument).
template <class T> struct As {
    using type = T;
};

std::string error_reply(protocol::ErrorCode code, std::string message) {
    return protocol::encode_error({code, std::move(message)});
}

// The reply frame of an admission (with the stream's topic) or a cancel.
std::string encode_answer(const answer& a, bool admitted) {
    if (!a.ok()) return error_reply(protocol::ErrorCode(a.error), a.message);
    if (admitted) return protocol::encode_ok({{"id", a.id}, {"topic", protocol::topic_for(a.id)}});
    return protocol::encode_ok({{"id", a.id}});
}

// A mixture's expert-form lookups per layer: [{"hits": h, "misses": m}, ...] ([] without one).
nlohmann::json expert_layers_json(const WeightCacheStats& wc) {
    nlohmann::json layers = nlohmann::json::array();
    for (const ExpertLayerStats& l : wc.expert_layers)
        layers.push_back({{"hits", l.hits}, {"misses", l.misses}});
    return layers;
}

// The status reply (SPEC.md, "status").
std::string encode_status(const status_report& r) {
    const SlotStats& s = r.slots;
    const WeightCacheStats& wc = r.weight_cache;
    const MemoryUsage& m = r.memory;
    return protocol::encode_ok(
        {{"protocol", protocol::kVersion},
         {"model",
          {{"path", r.model_path},
           {"n_vocab", r.n_vocab},
           {"n_layer", r.n_layer},
           {"n_embd", r.n_embd},
           {"context", r.context}}},
         {"uptime_s", r.uptime_s},
         {"config", {{"generation", r.config_generation}, {"loaded_at", r.config_loaded_at}}},
         {"sessions", {{"running", r.running}, {"queued", r.queued}}},
         {"requests_admitted", r.requests_admitted},
         {"tokens_generated", r.tokens_generated},
         {"tokens_per_second", r.tokens_per_second},
         {"cache",
          {{"kv_slots", s.slots},
           {"kv_slots_in_use", s.in_use},
           {"kv_bytes", r.kv_bytes},
           {"kv_context", r.context},
           {"kv_type", r.kv_type},
           {"prompt_chunk", r.prompt_chunk}}},
         {"prefix_cache",
          {{"enabled", r.prefix_cache},
           {"hits", s.hits},
           {"misses", s.misses},
           {"reused_tokens", s.reused_tokens},
           {"held_tokens", s.held_tokens},
           {"held_bytes", s.held_bytes}}},
         {"weight_cache",
          {{"budget_bytes", wc.budget},
           {"bytes", wc.bytes},
           {"entries", wc.entries},
           {"hits", wc.hits},
           {"misses", wc.misses},
           {"evictions", wc.evictions},
           {"bypasses", wc.bypasses},
           {"file_bytes_released", wc.released},
           {"experts_streamed", wc.experts_streamed},
           {"expert_layers", expert_layers_json(wc)}}},
         {"memory",
          {{"file_resident_bytes", m.file_resident},
           {"weight_cache_bytes", m.cache},
           {"kv_bytes", m.kv},
           {"scratch_bytes", m.scratch},
           {"rss_bytes", m.rss},
           {"peak_rss_bytes", m.peak_rss},
           {"planned_bytes", r.planned_bytes}}}});
}

} // namespace

void ingress_actor(caf::blocking_actor* self, std::shared_ptr<zmq::socket_t> socket,
                   std::shared_ptr<zmq::socket_t> wake, std::shared_ptr<const LiveConfig> live,
                   caf::actor publisher, std::string loading_model) {
    caf::actor tokenizer, scheduler; // none until the model is loaded (serve_atom)
    double load_progress = 0;
    bool stopping = false; // stopped while loading: nothing will be served
    config::DaemonConfig config = live->config;
    std::string endpoint = config.requests;
    protocol::DecodeLimits limits = decode_limits(config, config.limits.max_request_bytes);
    std::vector<caf::actor> retiring; // schedulers of replaced models, still finishing streams
    std::mt19937_64 seeds(std::random_device{}());
    bool running = true;

    // Asks another actor and waits for its answer, of type T (the publisher's replay: a reply
    // frame as JSON text; the scheduler's: values), or an error to reply with.
    auto ask = [&](auto type, const caf::actor& who, auto... args) {
        using T = typename decltype(type)::type;
        std::variant<T, std::string> out;
        self->request(who, caf::infinite, args...)
            .receive([&](T& r) { out.template emplace<0>(std::move(r)); },
                     [&](caf::error& e) {
                         out.template emplace<1>(error_reply(protocol::ErrorCode::Internal,
                                                             self->system().render(e)));
                     });
        return out;
    };
    auto reply_of = [](auto&& answered, auto encode) -> std::string {
        if (answered.index() == 1) return std::get<1>(answered);
        return encode(std::get<0>(answered));
    };


    // Whether a scheduler, the current one or one finishing a replaced model's streams, has
    // this stream queued or running.
    auto known = [&](const std::string& id) {
        auto asks = [&](const caf::actor& s) {
            bool found = false;
            self->request(s, caf::infinite, known_atom::value, id)
                .receive([&](bool k) { found = k; }, [](caf::error&) {});
            return found;
        };
        return asks(scheduler) || std::any_of(retiring.begin(), retiring.end(), asks);
    };

    // Before the model is loaded every request gets `loading`, with the load's progress.
    auto not_serving = [&]() -> std::string {
        if (stopping)
            return error_reply(protocol::ErrorCode::ShuttingDown, "the daemon is shutting down");
        return protocol::encode_loading(loading_model, load_progress);
    };

    auto handle = [&](std::string_view frame) -> std::string {
        auto decoded = protocol::decode_request(frame, limits);
        if (auto* error = std::get_if<protocol::RequestError>(&decoded)) {
            log::info(std::string("refused a request: ") + protocol::error_code_name(error->code) +
                      ": " + error->message);
            return protocol::encode_error(*error);
        }
        auto& request = std::get<protocol::Request>(decoded);
        if (!scheduler) return not_serving();
        if (auto* g = std::get_if<protocol::GenerateRequest>(&request)) {
            stream_setup setup;
            setup.id = g->id;
            setup.params = std::move(g->params);
            if (!g->seed_given) setup.params.sampling.seed = seeds();
            std::string failure;
            bool bad_request = false;
            auto take = [&](tokenized& t) {
                setup.prompt_tokens = std::move(t.tokens);
                failure = std::move(t.error);
                bad_request = t.bad_request;
            };
            auto lost = [&](caf::error& e) { failure = self->system().render(e); };
            if (g->chat) { // the model's chat template makes the prompt
                chat_prompt chat;
                chat.chat_template = g->chat_template;
                for (const auto& turn : g->messages) chat.messages.push_back(turn);
                self->request(tokenizer, caf::infinite, tokenize_atom::value, std::move(chat))
                    .receive(take, lost);
            } else {
                self->request(tokenizer, caf::infinite, tokenize_atom::value, g->prompt)
                    .receive(take, lost);
            }
            if (!failure.empty() && bad_request) {
                log::info("refused " + (setup.id.empty() ? std::string("a request") : setup.id) +
                          ": bad_request: " + failure);
                return error_reply(protocol::ErrorCode::BadRequest, failure);
            }
            if (!failure.empty()) {
                log::info("refused " + (setup.id.empty() ? std::string("a request") : setup.id) +
                          ": too_large: " + failure);
                return error_reply(protocol::ErrorCode::TooLarge, failure);
            }
            if (log::enabled(log::Level::debug))
                log::debug("prompt of " + (setup.id.empty() ? std::string("a request") : setup.id) +
                           ": " +
                           (g->chat ? std::to_string(g->messages.size()) + " messages"
                                    : nlohmann::json(g->prompt).dump()));
            return reply_of(ask(As<answer>{}, scheduler, admit_atom::value, std::move(setup)),
                            [](const answer& a) { return encode_answer(a, true); });
        }
        if (auto* c = std::get_if<protocol::CancelRequest>(&request)) {
            // The stream may run on a model a reload replaced: its scheduler knows it.
            auto answered = ask(As<answer>{}, scheduler, cancel_atom::value, c->id);
            for (const caf::actor& old : retiring) {
                if (answered.index() == 0 && std::get<0>(answered).ok()) break;
                answered = ask(As<answer>{}, old, cancel_atom::value, c->id);
            }
            return reply_of(answered, [](const answer& a) { return encode_answer(a, false); });
        }
        if (std::holds_alternative<protocol::StatusRequest>(request))
            return reply_of(ask(As<status_report>{}, scheduler, status_atom::value),
                            encode_status);
        const auto& r = std::get<protocol::ReplayRequest>(request);
        auto replayed = ask(As<std::string>{}, publisher, replay_atom::value, r.id, r.from_seq);
        if (replayed.index() == 1) return std::get<1>(replayed);
        if (!std::get<0>(replayed).empty()) return std::get<0>(replayed);
        // The publisher knows a stream from its first message on; one still queued is known
        // to its scheduler, and has nothing to replay yet.
        if (!known(r.id))
            return error_reply(protocol::ErrorCode::NotFound,
                               "no stream '" + r.id + "' to replay (unknown or expired)");
        return protocol::encode_ok({{"id", r.id},
                                    {"messages", nlohmann::json::array()},
                                    {"first_available_seq", 0},
                                    {"finished", false}});
    };

    // One zmq::poll over the requests and the wake-up socket, without a timeout: whoever sends
    // this actor a message pokes `wake` (ZeroMQ guide: an inproc control socket beside the
    // data socket), and then the mailbox is read until it is empty.
    while (running) {
        zmq::pollitem_t items[] = {{socket->handle(), 0, ZMQ_POLLIN, 0},
                                   {wake->handle(), 0, ZMQ_POLLIN, 0}};
        zmq::poll(items, 2, std::chrono::milliseconds(-1));
        while (items[0].revents & ZMQ_POLLIN) {
            std::vector<zmq::message_t> frames;
            if (!zmq::recv_multipart(*socket, std::back_inserter(frames),
                                     zmq::recv_flags::dontwait))
                break;
            // A ROUTER delivers [identity][empty delimiter][request]; anything else cannot be
            // answered as REQ expects, except a wrong number of request frames.
            if (frames.size() < 3 || frames[1].size() != 0) continue;
            std::string reply;
            try {
                reply =
                    frames.size() == 3
                        ? handle(frames[2].to_string_view())
                        : error_reply(protocol::ErrorCode::BadRequest,
                                      "a request is exactly one frame after the empty delimiter");
            } catch (const std::exception& e) {
                reply = error_reply(protocol::ErrorCode::Internal, e.what());
            }
            socket->send(frames[0], zmq::send_flags::sndmore);
            socket->send(zmq::message_t(), zmq::send_flags::sndmore);
            socket->send(zmq::buffer(reply), zmq::send_flags::none);
        }
        if (!(items[1].revents & ZMQ_POLLIN)) continue;
        read_mailbox(
            self, *wake, running, [&](shutdown_atom) { running = false; },
            [&](caf::exit_msg&) { running = false; },
            // A reloaded config, and the pipeline new requests go to (a new one when the model
            // changed: the old scheduler finishes its streams and retires).
            [&](reconfig_atom, std::shared_ptr<const LiveConfig> next, caf::actor next_tokenizer,
                caf::actor next_scheduler) -> std::string {
                if (std::string why = rebind(*socket, endpoint, next->config.requests);
                    !why.empty())
                    return why;
                config = next->config;
                limits = decode_limits(config, config.limits.max_request_bytes);
                if (next_scheduler != scheduler) retiring.push_back(scheduler);
                tokenizer = next_tokenizer;
                scheduler = next_scheduler;
                return "";
            },
            [&](retire_atom, caf::actor old) {
                retiring.erase(std::remove(retiring.begin(), retiring.end(), old), retiring.end());
            },
            // The model is loaded: requests go to its pipeline from now on.
            [&](serve_atom, caf::actor first_tokenizer, caf::actor first_scheduler) -> bool {
                tokenizer = first_tokenizer;
                scheduler = first_scheduler;
                return true;
            },
            [&](progress_atom, double fraction) { load_progress = fraction; },
            [&](drain_atom) { stopping = true; });
    }
    socket->set(zmq::sockopt::linger, 0);
    socket->close();
    wake->close();
}

void zap_actor(caf::blocking_actor* self, std::shared_ptr<zmq::socket_t> socket,
               std::shared_ptr<zmq::socket_t> wake, AuthorizedKeys keys) {
    bool running = true;
    while (running) {
        zmq::pollitem_t items[] = {{socket->handle(), 0, ZMQ_POLLIN, 0},
                                   {wake->handle(), 0, ZMQ_POLLIN, 0}};
        zmq::poll(items, 2, std::chrono::milliseconds(-1));
        if (items[0].revents & ZMQ_POLLIN) {
            // RFC 27: version, request id, domain, address, identity, mechanism, credentials.
            std::vector<zmq::message_t> request;
            if (!zmq::recv_multipart(*socket, std::back_inserter(request),
                                     zmq::recv_flags::dontwait))
                continue;
            const auto text = [&](size_t i) {
                return i < request.size() ? request[i].to_string() : std::string();
            };
            const std::string mechanism = text(5);
            const std::string key =
                request.size() > 6 ? protocol::z85_of(request[6].data(), request[6].size()) : "";
            const bool admitted = mechanism == "CURVE" && !key.empty() && keys->count(key);
            if (!admitted)
                log::warning("refused a client at " + text(3) + ": " +
                             (mechanism != "CURVE" ? "mechanism " + mechanism
                                                   : "key " + protocol::key_prefix(key) +
                                                         " is not in authorized_keys"));
            std::vector<zmq::message_t> reply;
            reply.emplace_back(std::string("1.0"));
            reply.emplace_back(text(1));
            reply.emplace_back(std::string(admitted ? "200" : "400"));
            reply.emplace_back(std::string(admitted ? "OK" : "not authorized"));
            reply.emplace_back(admitted ? protocol::key_prefix(key) : std::string());
            reply.emplace_back();
            zmq::send_multipart(*socket, reply);
        }
        read_mailbox(
            self, *wake, running,
            [&](reconfig_atom, AuthorizedKeys next) { keys = std::move(next); },
            [&](shutdown_atom) { running = false; });
    }
    socket->set(zmq::sockopt::linger, 0);
    socket->close();
    wake->close();
}

} // namespace woolly::actors
