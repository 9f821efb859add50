// actors.h — the actors of woollyd and how they are spawned. Every actor is detached (a thread
// of its own): compute and socket I/O never run on CAF's scheduler threads, and a detached
// actor wakes on a condition variable, faster than a sleeping scheduler worker would.
#pragma once

#include <caf/all.hpp>

#include <atomic>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "config/config.h"
#include "messages.h"
#include "metrics.h"
#include "protocol/protocol.h"
#include "runtime.h"

namespace woolly::actors {

struct Actors {
    caf::actor tokenizer;
    caf::actor cache;
    std::vector<caf::actor> executors; // in layer order
    caf::actor publisher;
    caf::actor scheduler;
    caf::actor ingress;
};

// loader: on (load_atom, reply_to) loads the model as `options` say (engine/model/loader.h: memory
// planned and checked first, the weight cache built, its progress sent as progress_atom with
// the fraction done), makes the KV caches of options.memory.sessions slots, and sends
// reply_to (loaded_atom, runtime) or (failed_atom, why); then quits.
caf::behavior loader_actor(caf::event_based_actor* self, std::string path, LoadOptions options,
                           std::string chat_template);
// tokenizer: prompt -> token ids (with BOS), refusing prompts that leave no room to generate.
caf::behavior tokenizer_actor(caf::event_based_actor* self, std::shared_ptr<Runtime> runtime);
// cache: hands out KV-cache slots (one per running session), each with the longest prefix of
// the session's prompt it holds (engine/serve/slots.h; none without `prefix_cache`), and
// reports their use.
caf::behavior cache_actor(caf::event_based_actor* self, std::shared_ptr<Runtime> runtime,
                          bool prefix_cache);
// How a layer executor is set up.
struct ExecutorSetup {
    int64_t first = 0, last = 0; // its layers, [first, last)
    int64_t threads = 1;         // compute threads
    caf::actor next;             // the next executor; null: this is the last
    caf::actor last_executor;    // (not the last) where a step that failed goes
    int64_t executors = 1;       // how many there are (steps in flight at most)
    int64_t prompt_chunk = 1;    // prompt tokens a step takes at most
    int64_t max_sessions = 1;    // sessions in a step at most
    caf::actor publisher;        // (the last) where messages go
    caf::actor scheduler;        // (the last) who hears when a stream has ended
    std::shared_ptr<Metrics> metrics; // (the last) counts tokens, finishes and their timing
};
// layer executor: runs layers [first, last) of each step (a batch of every running session's
// next token and a chunk of any prompt; engine/serve/batch.h) on its compute threads, and
// passes it on. The last executor is also the streams' owner from admission to their final
// message: it samples each step's logits on its own thread, publishes the tokens, and sends the
// next step to the first executor (itself, when it is the only one); it tells the scheduler
// when a stream ends.
caf::behavior executor_actor(caf::event_based_actor* self, std::shared_ptr<Runtime> runtime,
                             ExecutorSetup setup);
// What a request may ask, by the config's limits and sampling defaults (both ingresses'; the
// body or frame at most `max_request_bytes`).
protocol::DecodeLimits decode_limits(const config::DaemonConfig& config, int64_t max_request_bytes);
// Binds (unbinds) `endpoint` as config::bind_address resolves it: a host name as its address,
// IPv6 with ZMQ_IPV6 set. Throws zmq::error_t.
void bind_endpoint(zmq::socket_t& socket, const std::string& endpoint);
void unbind_endpoint(zmq::socket_t& socket, const std::string& endpoint);
// A socket that will be bound for clients: a CURVE server with `curve_secret` (Z85) when that is
// not empty. Options like these must be set before bind.
std::shared_ptr<zmq::socket_t> server_socket(zmq::context_t& context, zmq::socket_type type,
                                             const std::string& curve_secret);
// publisher: owns the PUB socket (bound, from `context`) and the replay buffers. A reload that
// changes the high-water mark replaces the socket with one made from `context` (a CURVE server
// with `curve_secret` when that is not empty).
void publisher_actor(caf::blocking_actor* self, zmq::context_t* context,
                     std::shared_ptr<zmq::socket_t> socket, std::shared_ptr<const LiveConfig> live,
                     std::string curve_secret);
// The client public keys (Z85) CURVE lets in.
using AuthorizedKeys = std::shared_ptr<const std::set<std::string>>;
// zap: the ZeroMQ authentication handler (RFC 27 ZAP) on its REP `socket`, bound at
// inproc://zeromq.zap.01 before the CURVE sockets: it admits a CURVE client whose key is in
// `keys`, and refuses (and logs) any other. `wake` as the ingress's: a message to it (new keys
// on reload, shutdown) is followed by a poke.
void zap_actor(caf::blocking_actor* self, std::shared_ptr<zmq::socket_t> socket,
               std::shared_ptr<zmq::socket_t> wake, AuthorizedKeys keys);
// scheduler: admission, the queue, starting sessions as slots free up, cancel, status, shutdown.
// Each admission tells `publisher` (renew_atom, id) first: the id starts a new stream.
caf::behavior scheduler_actor(caf::event_based_actor* self, std::shared_ptr<Runtime> runtime,
                              std::shared_ptr<const LiveConfig> live, caf::actor publisher);
// ingress: owns the ROUTER socket; decodes requests and replies. It waits on the ROUTER and
// `wake` (an inproc PULL socket) at once: a message to it must be followed by a poke on wake.
// Until (serve_atom, tokenizer, scheduler) every request is answered `loading`, with the
// progress that (progress_atom, fraction) last gave and the name `loading_model`; after
// drain_atom (stopped while loading), `shutting_down`.
void ingress_actor(caf::blocking_actor* self, std::shared_ptr<zmq::socket_t> socket,
                   std::shared_ptr<zmq::socket_t> wake, std::shared_ptr<const LiveConfig> live,
                   caf::actor publisher, std::string loading_model);

// woollyd's actors, as its supervisor (the main thread, daemon/woollyd.cpp) drives them: the
// ingresses (ZeroMQ, HTTP) and the publisher, which own the sockets, and one pipeline (tokenizer,
// cache, scheduler, layer executors) per loaded model: the current one, which new requests go to,
// and those a reload replaced, which finish their streams and are then retired. Called from the
// supervisor's thread only; `self` is its scoped actor, which hears drained_atom.
class Service {
public:
    // Binds both sockets and the HTTP listener (throws std::runtime_error naming the endpoint
    // when one cannot be bound: a bad or busy endpoint is an error at start-up, before the
    // model loads), then spawns the ingresses and the publisher. Until serve(), requests are
    // answered `loading`.
    Service(caf::actor_system& system, zmq::context_t& zmq_context,
            std::shared_ptr<const LiveConfig> live, const std::string& loading_model);
    // The load's progress, for the ingress's `loading` replies.
    void loading(double fraction);
    // Stopped while loading: requests get `shutting_down` until the daemon exits.
    void refuse_while_loading();
    // The model is loaded: its pipeline serves the requests from now on. Returns once the
    // ingress has it, so that no request after READY=1 is answered `loading`.
    void serve(caf::scoped_actor& self, std::shared_ptr<Runtime> runtime);
    ~Service();
    Service(const Service&) = delete;
    Service& operator=(const Service&) = delete;

    // The current scheduler's counters, or nothing when it does not answer within `timeout`
    // (the watchdog's probe).
    std::optional<health> probe(caf::scoped_actor& self, std::chrono::milliseconds timeout);
    // Every pipeline stops admitting; each sends self (drained_atom, tag) once nothing runs.
    void drain(caf::scoped_actor& self);
    // Ends every stream with finish_reason "shutdown" and waits (at most `timeout`) until they
    // are out.
    void end_streams(caf::scoped_actor& self, std::chrono::milliseconds timeout);
    // Applies a reloaded config: endpoints rebound, limits and defaults for new requests, and,
    // with `runtime`, a new pipeline for new requests while the current one drains. Returns
    // why not ("" when done); on failure nothing changed.
    std::string reconfigure(caf::scoped_actor& self, std::shared_ptr<const LiveConfig> live,
                            std::shared_ptr<Runtime> runtime);
    // A pipeline that said drained_atom(tag): its actors stop (unless it is the current one).
    void retire(uint64_t tag);
    uint64_t current_tag() const { return pipelines_.back().tag; }
    // Test hook: the current scheduler wedges.
    void stall();
    // Stops every actor and closes the sockets.
    void stop();

private:
    struct Pipeline {
        uint64_t tag = 0;
        std::shared_ptr<Runtime> runtime;
        caf::actor tokenizer, cache, scheduler;
        std::vector<caf::actor> executors; // in layer order; the last owns the streams
    };
    Pipeline spawn_pipeline(std::shared_ptr<Runtime> runtime);
    void stop_pipeline(Pipeline& p);
    // The ingress reads its mailbox when poked (after a message to it has been sent).
    void wake_ingress();
    void wake_zap();

    caf::actor_system& system_;
    std::shared_ptr<const LiveConfig> live_;
    std::shared_ptr<Metrics> metrics_; // the daemon's, across reloads
    caf::actor publisher_, ingress_;
    caf::actor http_; // the HTTP ingress (bound or not, as http.listen says)
    std::unique_ptr<zmq::socket_t> ingress_wake_; // PUSH end, this (the supervisor's) thread's
    caf::actor zap_;                              // with CURVE only
    std::unique_ptr<zmq::socket_t> zap_wake_;     // PUSH end, as ingress_wake_
    std::string curve_key_file_;                  // the server key in use (a new one: restart)
    std::vector<Pipeline> pipelines_;             // the current one last
    uint64_t next_tag_ = 1;
    bool stopped_ = false;
};

// Wiring sent once after spawning, where two actors need each other: the scheduler gets the
// last executor (which owns the streams) and the cache; the last executor gets the first.
using wire_atom = caf::atom_constant<caf::atom("wire")>;

} // namespace woolly::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(woolly::actors::AuthorizedKeys)
