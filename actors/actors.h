// actors.h — the actors of woollyd and how they are spawned. Every actor is detached (a thread
// of its own): compute and socket I/O never run on CAF's scheduler threads, and a detached
// actor wakes on a condition variable, faster than a sleeping scheduler worker would.
#pragma once

#include <caf/all.hpp>

#include <atomic>
#include <memory>
#include <string>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "config/config.h"
#include "runtime.h"

namespace woolly::actors {

struct Actors {
    caf::actor tokenizer;
    caf::actor cache;
    std::vector<caf::actor> executors; // in layer order
    caf::actor sampler;
    caf::actor publisher;
    caf::actor scheduler;
    caf::actor ingress;
};

// loader: loads the model as `options` say (engine/loader.h: memory planned and checked first,
// the weight cache built), makes the KV caches of options.memory.sessions slots, and replies
// to load_atom with the runtime (and a line for the log in `note`) or an error, then quits.
caf::behavior loader_actor(caf::event_based_actor* self, std::string path, LoadOptions options);
// tokenizer: prompt -> token ids (with BOS), refusing prompts that leave no room to generate.
caf::behavior tokenizer_actor(caf::event_based_actor* self, std::shared_ptr<Runtime> runtime);
// cache: hands out KV-cache slots (one per running session) and reports their use.
caf::behavior cache_actor(caf::event_based_actor* self, std::shared_ptr<Runtime> runtime);
// layer executor: runs layers [first, last) of each activation on `threads` compute threads,
// then passes it on (to `next`, or, from the last executor, logits to `sampler`).
caf::behavior executor_actor(caf::event_based_actor* self, std::shared_ptr<Runtime> runtime,
                             int64_t first, int64_t last, int64_t threads, caf::actor next,
                             caf::actor sampler);
// sampler: owns each stream from admission to its final message: samples, publishes, and
// sends a running stream's next step to the first executor; tells the scheduler when it ends.
caf::behavior sampler_actor(caf::event_based_actor* self, std::shared_ptr<Runtime> runtime,
                            caf::actor publisher, caf::actor scheduler);
// publisher: owns the PUB socket and the replay buffers.
void publisher_actor(caf::blocking_actor* self, std::shared_ptr<zmq::socket_t> socket,
                     config::DaemonConfig config);
// scheduler: admission, the queue, starting sessions as slots free up, cancel, status, shutdown.
caf::behavior scheduler_actor(caf::event_based_actor* self, std::shared_ptr<Runtime> runtime,
                              config::DaemonConfig config);
// ingress: owns the ROUTER socket; decodes requests and replies.
void ingress_actor(caf::blocking_actor* self, std::shared_ptr<zmq::socket_t> socket,
                   config::DaemonConfig config, caf::actor tokenizer, caf::actor scheduler,
                   caf::actor publisher);

// Starts everything on the runtime and sockets given, runs until *stop is set, then shuts down
// in order (streams end with finish_reason "shutdown"). Returns the process exit code.
int run_daemon(caf::actor_system& system, std::shared_ptr<Runtime> runtime,
               const config::DaemonConfig& config, zmq::context_t& zmq_context,
               std::shared_ptr<std::atomic<bool>> stop);

// Wiring sent once after spawning, where two actors need each other: the scheduler gets the
// sampler and the cache, the sampler gets the first executor.
using wire_atom = caf::atom_constant<caf::atom("wire")>;

} // namespace woolly::actors
