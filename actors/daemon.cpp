// daemon.cpp — the Service: spawns woollyd's actors, wires them, swaps in a new pipeline when a
// reload changes the model, and shuts everything down in order.
#include <algorithm>

#include "actors.h"
#include "engine/runtime/thread_pool.h"
#include "http/ingress.h"
#include "log.h"
#include "messages.h"
#include "protocol/curve.h"

namespace woolly::actors {

// A PUSH end connected to a new PULL end (returned), for an actor that waits on sockets.
static std::shared_ptr<zmq::socket_t> wake_pair(zmq::context_t& context, const std::string& name,
                                                const void* owner,
                                                std::unique_ptr<zmq::socket_t>& push) {
    const std::string endpoint =
        "inproc://woolly-" + name + "-wake-" + std::to_string(reinterpret_cast<uintptr_t>(owner));
    auto pull = std::make_shared<zmq::socket_t>(context, zmq::socket_type::pull);
    pull->bind(endpoint);
    push = std::make_unique<zmq::socket_t>(context, zmq::socket_type::push);
    push->set(zmq::sockopt::linger, 0);
    push->connect(endpoint);
    return pull;
}

Service::Service(caf::actor_system& system, zmq::context_t& zmq_context,
                 std::shared_ptr<const LiveConfig> live, const std::string& loading_model)
    : system_(system), live_(live), metrics_(std::make_shared<Metrics>()) {
    const config::DaemonConfig& config = live->config;
    // CurveZMQ: the keys read (a bad file stops the start-up with its reason), and the ZAP
    // handler bound before either socket is, so no handshake finds it missing.
    protocol::CurveKeyPair server;
    if (config.security.curve()) {
        AuthorizedKeys keys;
        try {
            server = protocol::read_secret_key_file(config.security.curve_secret_key_file);
            keys = std::make_shared<const std::set<std::string>>(
                protocol::read_authorized_keys(config.security.authorized_keys_file));
        } catch (const protocol::KeyError& e) {
            throw std::runtime_error(std::string("security: ") + e.what());
        }
        curve_key_file_ = config.security.curve_secret_key_file;
        auto zap = std::make_shared<zmq::socket_t>(zmq_context, zmq::socket_type::rep);
        zap->bind("inproc://zeromq.zap.01");
        auto wake = wake_pair(zmq_context, "zap", this, zap_wake_);
        zap_ = system.spawn<caf::detached>(zap_actor, zap, wake, keys);
        log::info("CURVE: server key " + protocol::key_prefix(server.public_key) + ", " +
                  std::to_string(keys->size()) + " authorized client keys");
    }
    auto router = server_socket(zmq_context, zmq::socket_type::router, server.secret_key);
    router->set(zmq::sockopt::linger, 0);
    try {
        bind_endpoint(*router, config.requests);
    } catch (const zmq::error_t& e) {
        throw std::runtime_error("cannot bind requests endpoint " + config.requests + ": " +
                                 e.what());
    }
    auto pub = server_socket(zmq_context, zmq::socket_type::pub, server.secret_key);
    pub->set(zmq::sockopt::sndhwm, int(config.publisher.high_water_mark));
    try {
        bind_endpoint(*pub, config.tokens);
    } catch (const zmq::error_t& e) {
        throw std::runtime_error("cannot bind tokens endpoint " + config.tokens + ": " + e.what());
    }
    // The ingress's wake-up pair: PULL handed to the ingress, PUSH kept here.
    auto wake = wake_pair(zmq_context, "ingress", this, ingress_wake_);
    publisher_ =
        system.spawn<caf::detached>(publisher_actor, &zmq_context, pub, live, server.secret_key);
    ingress_ =
        system.spawn<caf::detached>(ingress_actor, router, wake, live, publisher_, loading_model);
    http_ =
        system.spawn<caf::detached>(http_ingress_actor, live, publisher_, metrics_, loading_model);
    std::string why;
    caf::scoped_actor self{system};
    self->request(http_, std::chrono::seconds(30), listen_atom::value)
        .receive([&](std::string& r) { why = std::move(r); },
                 [&](caf::error& e) { why = system.render(e); });
    if (!why.empty()) {
        stop();
        throw std::runtime_error("http: " + why);
    }
}

void Service::loading(double fraction) {
    caf::anon_send(http_, progress_atom::value, fraction);
    caf::anon_send(ingress_, progress_atom::value, fraction);
    wake_ingress();
}

void Service::refuse_while_loading() {
    caf::anon_send(http_, drain_atom::value);
    caf::anon_send(ingress_, drain_atom::value);
    wake_ingress();
}

void Service::serve(caf::scoped_actor& self, std::shared_ptr<Runtime> runtime) {
    pipelines_.push_back(spawn_pipeline(std::move(runtime)));
    const Pipeline& p = pipelines_.back();
    self->request(http_, caf::infinite, serve_atom::value, p.tokenizer, p.scheduler,
                  config::model_id(live_->config), p.runtime->vocab->size())
        .receive([](bool) {}, [](caf::error&) {});
    auto answer =
        self->request(ingress_, caf::infinite, serve_atom::value, p.tokenizer, p.scheduler);
    wake_ingress();
    answer.receive([](bool) {}, [](caf::error&) {});
}

Service::~Service() {
    stop();
}

Service::Pipeline Service::spawn_pipeline(std::shared_ptr<Runtime> runtime) {
    const config::DaemonConfig& config = live_->config;
    Pipeline p;
    p.tag = next_tag_++;
    p.runtime = runtime;
    p.tokenizer = system_.spawn<caf::detached>(tokenizer_actor, runtime);
    p.cache = system_.spawn<caf::detached>(cache_actor, runtime, config.engine.prefix_cache);
    p.scheduler = system_.spawn<caf::detached>(scheduler_actor, runtime, live_, publisher_);
    // Executors own contiguous, near-equal ranges of layers; spawn the last first so that each
    // knows the one after it (and the last, which owns the streams).
    const int64_t n_layer = runtime->model->hparams().n_layer;
    const int64_t n_exec = std::min<int64_t>(config.engine.layer_executors, n_layer);
    p.executors.resize(size_t(n_exec));
    // threads 0: the physical cores shared among the executors.
    const int64_t threads =
        config.threads > 0
            ? config.threads
            : std::max<int64_t>(1, default_thread_count(runtime->model->weight_bytes_per_token()) /
                                       n_exec);
    caf::actor next, last_executor; // the last is spawned first
    for (int64_t i = n_exec - 1; i >= 0; --i) {
        ExecutorSetup setup;
        setup.first = n_layer * i / n_exec;
        setup.last = n_layer * (i + 1) / n_exec;
        setup.threads = threads;
        setup.next = next;
        setup.last_executor = last_executor;
        setup.executors = n_exec;
        setup.prompt_chunk = config.engine.prompt_chunk;
        setup.max_sessions = config.engine.max_sessions;
        setup.publisher = publisher_;
        setup.scheduler = p.scheduler;
        setup.metrics = metrics_;
        p.executors[size_t(i)] = system_.spawn<caf::detached>(executor_actor, runtime, setup);
        next = p.executors[size_t(i)];
        if (!last_executor) last_executor = next;
    }
    caf::anon_send(p.scheduler, wire_atom::value, p.executors.back(), p.cache);
    caf::anon_send(p.executors.back(), wire_atom::value, p.executors.front());
    return p;
}

std::optional<health> Service::probe(caf::scoped_actor& self, std::chrono::milliseconds timeout) {
    std::optional<health> out;
    self->request(pipelines_.back().scheduler, timeout, health_atom::value)
        .receive([&](health& h) { out = h; }, [&](caf::error&) {});
    return out;
}

void Service::drain(caf::scoped_actor& self) {
    self->send(http_, drain_atom::value);
    for (const Pipeline& p : pipelines_) self->send(p.scheduler, drain_atom::value, p.tag);
}

void Service::end_streams(caf::scoped_actor& self, std::chrono::milliseconds timeout) {
    for (const Pipeline& p : pipelines_)
        self->request(p.scheduler, timeout, shutdown_atom::value)
            .receive([](const std::string&) {}, [](caf::error&) {});
}

void Service::wake_ingress() {
    ingress_wake_->send(zmq::message_t(), zmq::send_flags::dontwait);
}

void Service::wake_zap() {
    if (zap_wake_) zap_wake_->send(zmq::message_t(), zmq::send_flags::dontwait);
}

std::string Service::reconfigure(caf::scoped_actor& self, std::shared_ptr<const LiveConfig> live,
                                 std::shared_ptr<Runtime> runtime) {
    auto ask = [&](const caf::actor& who, auto... args) {
        std::string why;
        auto answer = self->request(who, std::chrono::seconds(10), args...);
        if (who == ingress_) wake_ingress();
        answer.receive([&](std::string& r) { why = std::move(r); },
                       [&](caf::error& e) { why = system_.render(e); });
        return why;
    };
    // CURVE: the server key stays for the process's life (the sockets hold it); the authorized
    // keys are read again, and a bad file changes nothing.
    const auto& security = live->config.security;
    if (security.curve_secret_key_file != curve_key_file_)
        return "security.curve_secret_key_file changed: turning CURVE on or off, or a new "
               "server key, needs a restart";
    AuthorizedKeys keys;
    if (security.curve()) {
        try {
            keys = std::make_shared<const std::set<std::string>>(
                protocol::read_authorized_keys(security.authorized_keys_file));
        } catch (const protocol::KeyError& e) {
            return std::string("security: ") + e.what();
        }
    }
    const std::shared_ptr<const LiveConfig> before = live_;
    live_ = live;
    if (std::string why = ask(publisher_, reconfig_atom::value, live); !why.empty()) {
        live_ = before;
        return why;
    }
    std::optional<Pipeline> fresh;
    if (runtime) fresh = spawn_pipeline(runtime);
    const Pipeline& target = fresh ? *fresh : pipelines_.back();
    if (std::string why =
            ask(ingress_, reconfig_atom::value, live, target.tokenizer, target.scheduler);
        !why.empty()) {
        live_ = before;
        ask(publisher_, reconfig_atom::value, before); // back to where it was
        if (fresh) stop_pipeline(*fresh);
        return why;
    }
    if (std::string why = ask(http_, reconfig_atom::value, live, target.tokenizer, target.scheduler,
                              config::model_id(live->config), target.runtime->vocab->size());
        !why.empty()) {
        live_ = before;
        const Pipeline& current = pipelines_.back();
        ask(ingress_, reconfig_atom::value, before, current.tokenizer, current.scheduler);
        ask(publisher_, reconfig_atom::value, before);
        if (fresh) stop_pipeline(*fresh);
        return "http: " + why;
    }
    if (keys) {
        caf::anon_send(zap_, reconfig_atom::value, keys);
        wake_zap();
        log::info("CURVE: " + std::to_string(keys->size()) + " authorized client keys");
    }
    if (fresh) {
        // The model's pipeline finishes what it has and retires; the new one serves.
        fresh->runtime->tokens_generated = pipelines_.back().runtime->tokens_generated.load();
        self->send(pipelines_.back().scheduler, drain_atom::value, pipelines_.back().tag);
        pipelines_.push_back(std::move(*fresh));
    } else {
        caf::anon_send(pipelines_.back().scheduler, reconfig_atom::value, live);
    }
    return "";
}

void Service::retire(uint64_t tag) {
    if (tag == current_tag()) return;
    auto it = std::find_if(pipelines_.begin(), pipelines_.end(),
                           [&](const Pipeline& p) { return p.tag == tag; });
    if (it == pipelines_.end()) return;
    caf::anon_send(ingress_, retire_atom::value, it->scheduler);
    wake_ingress();
    caf::anon_send(http_, retire_atom::value, it->scheduler);
    log::info("the model of the previous configuration finished its streams and is unloaded");
    stop_pipeline(*it);
    pipelines_.erase(it);
}

void Service::stall() {
    caf::anon_send(pipelines_.back().scheduler, stall_atom::value);
}

void Service::stop_pipeline(Pipeline& p) {
    for (const auto& actor : {p.tokenizer, p.cache, p.scheduler})
        caf::anon_send_exit(actor, caf::exit_reason::user_shutdown);
    for (const auto& actor : p.executors)
        caf::anon_send_exit(actor, caf::exit_reason::user_shutdown);
}

void Service::stop() {
    if (stopped_) return;
    stopped_ = true;
    // The ingress first (nothing new comes in), then the publisher once the last executors'
    // messages are in its mailbox: an executor that answers flush_atom has sent everything it
    // sent before, and a send is in the receiver's mailbox when it returns.
    // Then it waits for every actor to end: the publisher's last sends are out before the
    // caller terminates the ZeroMQ context (which makes any later send fail).
    caf::scoped_actor self{system_};
    caf::anon_send(ingress_, shutdown_atom::value);
    wake_ingress();
    if (http_) caf::anon_send_exit(http_, caf::exit_reason::user_shutdown);
    for (const Pipeline& p : pipelines_)
        self->request(p.executors.back(), std::chrono::seconds(10), flush_atom::value)
            .receive([](bool) {}, [](caf::error&) {});
    std::vector<caf::actor> all{ingress_, publisher_};
    if (http_) all.push_back(http_);
    if (zap_) {
        caf::anon_send(zap_, shutdown_atom::value);
        wake_zap();
        all.push_back(zap_);
    }
    for (Pipeline& p : pipelines_) {
        stop_pipeline(p);
        for (const auto& actor : {p.tokenizer, p.cache, p.scheduler}) all.push_back(actor);
        all.insert(all.end(), p.executors.begin(), p.executors.end());
    }
    caf::anon_send(publisher_, shutdown_atom::value);
    self->wait_for(all);
    pipelines_.clear();
    ingress_wake_.reset();
    zap_wake_.reset();
}

} // namespace woolly::actors
