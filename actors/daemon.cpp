// daemon.cpp — spawns woollyd's actors, wires them, and shuts them down in order.
#include <thread>

#include "actors.h"
#include "engine/thread_pool.h"
#include "messages.h"

namespace woolly::actors {

int run_daemon(caf::actor_system& system, std::shared_ptr<Runtime> runtime,
               const config::DaemonConfig& config, zmq::context_t& zmq_context,
               std::shared_ptr<std::atomic<bool>> stop) {
    // Bind both sockets before anything starts, so that a bad or busy endpoint is an error at
    // start-up rather than a silent daemon.
    auto router = std::make_shared<zmq::socket_t>(zmq_context, zmq::socket_type::router);
    auto pub = std::make_shared<zmq::socket_t>(zmq_context, zmq::socket_type::pub);
    pub->set(zmq::sockopt::sndhwm, int(config.publisher.high_water_mark));
    router->set(zmq::sockopt::linger, 0);
    try {
        router->bind(config.requests);
    } catch (const zmq::error_t& e) {
        throw std::runtime_error("cannot bind requests endpoint " + config.requests + ": " +
                                 e.what());
    }
    try {
        pub->bind(config.tokens);
    } catch (const zmq::error_t& e) {
        throw std::runtime_error("cannot bind tokens endpoint " + config.tokens + ": " + e.what());
    }

    Actors a;
    a.publisher = system.spawn<caf::detached>(publisher_actor, pub, config);
    a.tokenizer = system.spawn<caf::detached>(tokenizer_actor, runtime);
    a.cache = system.spawn<caf::detached>(cache_actor, runtime);
    a.scheduler = system.spawn<caf::detached>(scheduler_actor, runtime, config);
    a.sampler = system.spawn<caf::detached>(sampler_actor, runtime, a.publisher, a.scheduler);
    // Executors own contiguous, near-equal ranges of layers; spawn the last first so that each
    // knows the one after it.
    const int64_t n_layer = runtime->model->hparams().n_layer;
    const int64_t n_exec = std::min<int64_t>(config.engine.layer_executors, n_layer);
    a.executors.resize(size_t(n_exec));
    // threads 0: the physical cores shared among the executors (executors run one after
    // another on a token, so their pools rarely spin at the same time).
    const int64_t threads =
        config.threads > 0
            ? config.threads
            : std::max<int64_t>(1, default_thread_count(runtime->model->weight_bytes_per_token()) /
                                       n_exec);
    caf::actor next;
    for (int64_t i = n_exec - 1; i >= 0; --i) {
        const int64_t first = n_layer * i / n_exec, last = n_layer * (i + 1) / n_exec;
        a.executors[size_t(i)] = system.spawn<caf::detached>(executor_actor, runtime, first, last,
                                                             threads, next, a.sampler);
        next = a.executors[size_t(i)];
    }
    caf::anon_send(a.scheduler, wire_atom::value, a.sampler, a.cache);
    caf::anon_send(a.sampler, wire_atom::value, a.executors.front());
    a.ingress = system.spawn<caf::detached>(ingress_actor, router, config, a.tokenizer, a.scheduler,
                                            a.publisher);

    while (!stop->load()) std::this_thread::sleep_for(std::chrono::milliseconds(20));

    // Shut down: refuse new work, end every stream with "shutdown", then stop the actors.
    {
        caf::scoped_actor self{system};
        self->request(a.scheduler, std::chrono::seconds(30), shutdown_atom::value)
            .receive([](const std::string&) {}, [](caf::error&) {});
    }
    caf::anon_send(a.ingress, shutdown_atom::value);
    // Give the sampler's last messages time to reach the publisher before it closes.
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    caf::anon_send(a.publisher, shutdown_atom::value);
    for (const auto& actor : {a.tokenizer, a.cache, a.scheduler, a.sampler})
        caf::anon_send_exit(actor, caf::exit_reason::user_shutdown);
    for (const auto& actor : a.executors)
        caf::anon_send_exit(actor, caf::exit_reason::user_shutdown);
    system.await_all_actors_done();
    return 0;
}

} // namespace woolly::actors
