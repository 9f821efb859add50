// woollyd.cpp — the Woolly daemon's supervisor: reads the config, binds the sockets, loads the
// model (requests meanwhile answered `loading`), serves, and answers systemd and signals. Its
// main thread is one CAF scoped actor that hears everything as a message: signals (forwarded by
// a thread that only waits for them), the loader's progress and result, and pipelines that
// drained; between messages it probes the pipeline for the watchdog. Signals: SIGTERM/SIGINT
// drain within shutdown_grace_seconds (a second one ends streams at once); SIGHUP rereads the
// config file.
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <string>
#include <thread>

#include "actors/actors.h"
#include "actors/log.h"
#include "actors/messages.h"
#include "config/args.h"
#include "config/bundled_model.h"
#include "config/config.h"
#include "engine/model/loader.h"
#include "engine/serve/batch.h"
#include "notify.h"

namespace {

using namespace woolly;
using namespace woolly::actors;
using Clock = std::chrono::steady_clock;

const char* kUsage =
    "usage: woollyd [--config FILE] [--model FILE] [--requests ENDPOINT] [--tokens ENDPOINT]\n"
    "               [--http HOST:PORT] [--threads N] [--log-level error|warning|info|debug]\n"
    "               [--print-config] [--version]\n"
    "Serves generation over ZeroMQ: requests on a ROUTER socket (default tcp://127.0.0.1:5555),\n"
    "tokens on a PUB socket (default tcp://127.0.0.1:5556); and over HTTP, OpenAI's API\n"
    "(default 127.0.0.1:8080; --http '' turns it off). See protocol/SPEC.md.\n"
    "Flags override the config file's keys. Exit codes: 0 clean shutdown, 1 start-up failure\n"
    "(model, sockets, memory), 2 bad configuration or flags.\n"
    "The sockets are bound before the model loads: a bad or busy endpoint fails at once, and\n"
    "requests during the load are answered 'loading' with its progress.\n"
    "Signals: SIGTERM/SIGINT stop admitting and let running streams finish within\n"
    "shutdown_grace_seconds (a second signal ends them at once); SIGHUP rereads the config\n"
    "file. Under systemd (Type=notify) it reports readiness, status and watchdog pings.\n";

// The flags that set a config key, each checked as the key is in the file.
const std::pair<const char*, const char*> kKeyFlags[] = {
    {"--model", "model"},      {"--requests", "requests"}, {"--tokens", "tokens"},
    {"--http", "http.listen"}, {"--threads", "threads"},   {"--log-level", "log_level"},
};

// The command line: a config file and the flags that override its keys, kept so that a
// reload reads the file again and applies the same flags.
struct Override {
    const char* flag; // as given: "--threads"
    const char* key;  // the config key it sets: "threads"
    std::string value;
};
struct CommandLine {
    std::string config_path;
    std::vector<Override> overrides; // in kKeyFlags' order, each flag's values as given
    bool print_config = false;
};

config::DaemonConfig effective_config(const CommandLine& cl) {
    config::DaemonConfig config;
    if (!cl.config_path.empty()) config = config::load_config_file(cl.config_path);
    for (const Override& o : cl.overrides)
        config::set_key(config, o.key, o.value, std::string("flag ") + o.flag);
    if (config.model.empty()) config.model = bundled_model_path();
    config::validate(config, "flags");
    return config;
}

LoadOptions load_options(const config::DaemonConfig& config) {
    LoadOptions options;
    options.memory.n_ctx = config.engine.context;
    options.memory.sessions = config.engine.max_sessions;
    options.memory.kv_type = kv_cache_type_from_name(config.engine.kv_cache_type);
    options.memory.cache_budget = uint64_t(config.engine.weight_cache_mib) << 20;
    options.memory.threads = int(config.threads); // 0: the model's default
    options.memory.scratches = config.engine.layer_executors;
    options.memory.max_batch =
        Batcher::max_step_tokens(config.engine.prompt_chunk, config.engine.max_sessions);
    options.mmap = config.engine.mmap;
    options.mlock = config.engine.mlock;
    options.names = {"engine.context", "engine.max_sessions", "engine.kv_cache_type",
                     "engine.weight_cache_mib"};
    return options;
}

std::string utc_now() {
    const std::time_t t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char text[32];
    std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return text;
}

std::string base_name(const std::string& path) {
    const size_t slash = path.rfind('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

// Starts the loader; it reports to `self` with progress_atom, then loaded_atom or failed_atom.
void start_loading(caf::actor_system& system, caf::scoped_actor& self,
                   const config::DaemonConfig& config) {
    auto loader = system.spawn<caf::detached>(
        loader_actor, config.model, load_options(config),
        config.engine.chat_template == "auto" ? std::string() : config.engine.chat_template);
    self->send(loader, load_atom::value, caf::actor_cast<caf::actor>(self));
}

// The signals woollyd handles, blocked in every thread and taken by sigwait in one.
sigset_t handled_signals(bool test_hooks) {
    sigset_t set;
    sigemptyset(&set);
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGUSR1}) sigaddset(&set, sig);
    if (test_hooks) sigaddset(&set, SIGUSR2);
    return set;
}

class Supervisor {
public:
    Supervisor(caf::actor_system& system, CommandLine cl, config::DaemonConfig config)
        : system_(system), self_(system), cl_(std::move(cl)) {
        live_ = std::make_shared<LiveConfig>(LiveConfig{std::move(config), 1, utc_now()});
    }

    caf::actor handle() { return caf::actor_cast<caf::actor>(self_); }

    int run() {
        const config::DaemonConfig& config = live_->config;
        const std::string name = base_name(config.model);
        log::info("starting: config " +
                  (cl_.config_path.empty() ? std::string("(defaults)") : cl_.config_path) +
                  ", loading " + config.model);
        // The sockets first: a bad or busy endpoint fails in milliseconds, not after the load,
        // and clients hear `loading` while it runs.
        try {
            service_.emplace(system_, zmq_context_, live_, name);
        } catch (const std::exception& e) {
            log::error(e.what());
            daemon::notify("STATUS=failed: " + std::string(e.what()));
            return 1;
        }
        log::info("listening on requests " + config.requests + ", tokens " + config.tokens +
                  (config.http.listen.empty()
                       ? std::string()
                       : ", http " + std::string(config.http.tls() ? "https://" : "http://") +
                             config.http.listen) +
                  " (answering 'loading' until the model is loaded)");
        daemon::notify("STATUS=loading " + name);
        start_loading(system_, self_, config);
        std::shared_ptr<Runtime> runtime;
        std::string failure;
        bool stop_requested = false; // a load cannot be interrupted: it stops once done
        const bool terminal = isatty(STDERR_FILENO) == 1;
        int shown = -1; // the whole percentage last reported
        while (!runtime && failure.empty()) {
            self_->receive(
                [&](progress_atom, double fraction) {
                    // The loader reports every step; systemd, the ingress and the terminal hear
                    // of each new whole percentage only.
                    const int percent = int(fraction * 100);
                    if (percent == shown) return;
                    shown = percent;
                    daemon::notify("STATUS=loading " + name + " (" + std::to_string(percent) +
                                   " %)");
                    service_->loading(fraction);
                    if (terminal) {
                        std::fprintf(stderr, "\rwoollyd: loading %s: %d %%", name.c_str(), percent);
                        std::fflush(stderr);
                    }
                },
                [&](loaded_atom, std::shared_ptr<Runtime>& r) { runtime = std::move(r); },
                [&](failed_atom, std::string& why) { failure = std::move(why); },
                [&](signal_atom, int sig) {
                    if (sig == SIGTERM || sig == SIGINT) {
                        log::info("stopping once the model is loaded (a load is not interrupted)");
                        daemon::notify("STOPPING=1\nSTATUS=stopping: the model is still loading");
                        service_->refuse_while_loading();
                        stop_requested = true;
                    } else {
                        log::info("signal ignored while loading");
                    }
                });
        }
        if (terminal && shown >= 0) std::fputc('\n', stderr);
        if (stop_requested) {
            service_.reset();
            log::info("stopped");
            return 0;
        }
        if (!runtime) {
            service_.reset();
            log::error("cannot load the model: " + failure);
            daemon::notify("STATUS=failed: cannot load the model");
            return 1;
        }
        log_loaded(*runtime);
        service_->serve(self_, runtime);
        const auto& hp = runtime->model->hparams();
        log::info("serving " + config.model + " (" + std::to_string(hp.n_layer) +
                  " layers, vocab " + std::to_string(hp.n_vocab) + ", context " +
                  std::to_string(runtime->kv->n_ctx()) + ") on requests " + config.requests +
                  ", tokens " + config.tokens);
        daemon::notify("READY=1\nSTATUS=serving: 0 streams, 0 queued, 0 tokens");
        serve();
        service_.reset(); // every actor stopped, the sockets closed
        log::info("stopped");
        return 0;
    }

private:
    void log_loaded(const Runtime& r) {
        if (!r.load_note.empty()) log::warning(r.load_note);
        char ms[32];
        std::snprintf(ms, sizeof ms, "%.0f", r.load_ms);
        log::info("loaded " + r.model_path + " in " + ms + " ms; memory planned " +
                  describe(r.memory_plan) + "; held " +
                  describe(memory_usage(*r.model, r.weight_cache.get(), r.kv->bytes(), 0)));
        // Said once: sizes the model cannot use well are taken, not refused.
        const int64_t trained = r.model->hparams().n_ctx_train;
        const int64_t context = r.kv->n_ctx();
        if (trained > 0 && context > trained)
            log::warning("engine.context " + std::to_string(context) +
                         " is beyond the model's trained context of " + std::to_string(trained) +
                         " tokens: text past it is unlikely to make sense");
        if (live_->config.limits.max_tokens >= context)
            log::warning("limits.max_tokens " + std::to_string(live_->config.limits.max_tokens) +
                         " is beyond the context of " + std::to_string(context) +
                         " tokens per session: a stream ends at the context with "
                         "finish_reason length");
    }

    // Between messages, at the watchdog's pace (or every 5 s without one): probe, ping, status.
    void serve() {
        const auto interval = daemon::watchdog_interval();
        const auto tick = interval
                              ? std::chrono::duration_cast<std::chrono::milliseconds>(*interval)
                              : std::chrono::milliseconds(5000);
        auto next_tick = Clock::now();
        std::optional<Clock::time_point> grace_end;
        bool ending = false; // streams were told to end with "shutdown"
        bool done = false;
        while (!done) {
            const auto now = Clock::now();
            if (now >= next_tick) {
                on_tick(tick, interval.has_value(), grace_end.has_value());
                next_tick = now + tick;
            }
            if (grace_end && !ending && now >= *grace_end) {
                end_streams("the grace period is over");
                ending = true;
            }
            auto wait = next_tick - Clock::now();
            if (grace_end && !ending) wait = std::min(wait, *grace_end - Clock::now());
            const auto timeout =
                std::max(std::chrono::milliseconds(1),
                         std::chrono::duration_cast<std::chrono::milliseconds>(wait));
            self_->receive(
                [&](signal_atom, int sig) {
                    if (sig == SIGHUP) {
                        if (grace_end)
                            log::info("reload ignored: stopping");
                        else
                            reload();
                    } else if (sig == SIGUSR2) {
                        log::warning("test hook: stalling the scheduler");
                        service_->stall();
                    } else if (!grace_end) {
                        begin_stopping(sig);
                        grace_end = Clock::now() +
                                    std::chrono::seconds(live_->config.shutdown_grace_seconds);
                        if (live_->config.shutdown_grace_seconds == 0) {
                            end_streams("no grace period");
                            ending = true;
                        }
                    } else if (!ending) {
                        end_streams("a second signal");
                        ending = true;
                    }
                },
                [&](drained_atom, uint64_t tag) {
                    if (grace_end && tag == service_->current_tag())
                        done = true;
                    else
                        service_->retire(tag);
                },
                [&](progress_atom, double fraction) {
                    daemon::notify("STATUS=reloading: loading " +
                                   base_name(pending_->config.model) + " (" +
                                   std::to_string(int(fraction * 100)) + " %)");
                },
                [&](loaded_atom, std::shared_ptr<Runtime>& r) {
                    if (!pending_) return;
                    log_loaded(*r);
                    apply(std::move(r));
                },
                [&](failed_atom, std::string& why) {
                    if (!pending_) return;
                    refuse("cannot load the new model: " + why);
                },
                caf::after(timeout) >> [] {});
        }
        log::info("all streams finished");
    }

    void on_tick(std::chrono::milliseconds tick, bool watchdog, bool stopping) {
        // The probe crosses the scheduler: a wedged pipeline answers nothing, the pings stop,
        // and systemd restarts the service.
        const auto h = service_->probe(self_, std::max(std::chrono::milliseconds(100), tick / 2));
        if (!h) {
            log::warning("the scheduler did not answer the health probe");
            daemon::notify("STATUS=not answering: the scheduler did not answer the health probe");
            return;
        }
        std::string status =
            stopping ? "stopping: " + std::to_string(h->running + h->queued) + " streams finishing"
                     : "serving: " + std::to_string(h->running) + " streams, " +
                           std::to_string(h->queued) + " queued, " + std::to_string(h->tokens) +
                           " tokens";
        if (!stopping && live_->generation > 1)
            status += " (config generation " + std::to_string(live_->generation) + ")";
        if (!refusal_.empty()) status += "; " + refusal_;
        daemon::notify((watchdog ? "WATCHDOG=1\n" : "") + ("STATUS=" + status));
    }

    void begin_stopping(int sig) {
        log::info(std::string("stopping (") + (sig == SIGINT ? "SIGINT" : "SIGTERM") +
                  "): admitting nothing new, running streams have " +
                  std::to_string(live_->config.shutdown_grace_seconds) + " s to finish");
        const auto h = service_->probe(self_, std::chrono::seconds(1));
        daemon::notify("STOPPING=1\nSTATUS=stopping: " +
                       (h ? std::to_string(h->running + h->queued) : std::string("?")) +
                       " streams finishing");
        service_->drain(self_);
        pending_.reset();
    }

    void end_streams(const std::string& why) {
        log::info(why + ": ending the streams still running with finish_reason shutdown");
        daemon::notify("STATUS=stopping: ending the streams still running");
        service_->end_streams(self_, std::chrono::seconds(30));
    }

    // SIGHUP: the config file again, with the same flags. A bad one changes nothing.
    void reload() {
        if (pending_) {
            log::info("reload ignored: the previous one is still loading its model");
            return;
        }
        config::DaemonConfig next;
        try {
            next = effective_config(cl_);
        } catch (const std::exception& e) {
            const std::string line = std::string("reload refused: ") + e.what();
            log::error(line + " (still serving config generation " +
                       std::to_string(live_->generation) + ")");
            refusal_ = line;
            daemon::notify("STATUS=" + line);
            return;
        }
        daemon::notify_reloading();
        pending_ = LiveConfig{std::move(next), live_->generation + 1, utc_now()};
        log::info("reloading " +
                  (cl_.config_path.empty() ? std::string("(no config file)") : cl_.config_path));
        const std::vector<std::string> changed =
            config::runtime_keys_changed(live_->config, pending_->config);
        if (changed.empty()) {
            apply(nullptr);
            return;
        }
        std::string names;
        for (const auto& key : changed) names += (names.empty() ? "" : ", ") + key;
        log::info(names + " changed: loading " + pending_->config.model +
                  " beside the model being served");
        daemon::notify("STATUS=reloading: loading " + base_name(pending_->config.model));
        start_loading(system_, self_, pending_->config);
    }

    void apply(std::shared_ptr<Runtime> runtime) {
        auto next = std::make_shared<LiveConfig>(std::move(*pending_));
        pending_.reset();
        if (std::string why = service_->reconfigure(self_, next, runtime); !why.empty()) {
            pending_ = *next; // for refuse()'s message
            refuse(why);
            return;
        }
        live_ = next;
        refusal_.clear();
        log::set_level(*log::level_from_name(live_->config.log_level));
        log::info("reloaded: config generation " + std::to_string(live_->generation) +
                  (runtime ? ", new requests go to " + live_->config.model : std::string()));
        daemon::notify("READY=1\nSTATUS=serving (config generation " +
                       std::to_string(live_->generation) + ")");
    }

    void refuse(const std::string& why) {
        pending_.reset();
        const std::string line = "reload refused: " + why;
        log::error(line + " (still serving config generation " + std::to_string(live_->generation) +
                   ")");
        refusal_ = line;
        daemon::notify("READY=1\nSTATUS=" + line);
    }

    caf::actor_system& system_;
    caf::scoped_actor self_;
    CommandLine cl_;
    zmq::context_t zmq_context_;
    std::shared_ptr<const LiveConfig> live_;
    std::optional<LiveConfig> pending_; // a reload waiting for its model
    std::string refusal_;               // why the last reload was refused, until one takes
    std::optional<Service> service_;
};

} // namespace

int main(int argc, char** argv) {
    using config::ConfigError;
    // Every HTTP connection is a file descriptor: the soft limit (1024 by default) goes up to
    // the hard one (systemd's is 524288).
    if (rlimit files{}; getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
        files.rlim_cur = files.rlim_max;
        setrlimit(RLIMIT_NOFILE, &files);
    }
    log::init_from_environment();
    CommandLine cl;
    config::DaemonConfig config;
    try {
        std::set<std::string> value_flags = {"--config"};
        for (const auto& [flag, key] : kKeyFlags) value_flags.insert(flag);
        const Args args(argc, argv, 1, value_flags,
                        {"--help", "-h", "--print-config", "--version"});
        if (args.has("--help") || args.has("-h")) {
            std::fputs(kUsage, stdout);
            return 0;
        }
        if (args.has("--version")) {
            std::printf("woollyd %s (protocol woolly/1)\n", WOOLLY_VERSION);
            return 0;
        }
        args.refuse_extra(); // the catch below adds " (see woollyd --help)"
        cl.config_path = args.get("--config").value_or("");
        cl.print_config = args.has("--print-config");
        for (const auto& [flag, key] : kKeyFlags)
            for (const std::string& value : args.all(flag))
                cl.overrides.push_back({flag, key, value});
        config = effective_config(cl);
    } catch (const Error& e) { // the command line's own: an unknown flag, a missing value
        log::error(std::string("config error: ") + e.what() + " (see woollyd --help)");
        return 2;
    } catch (const std::exception& e) {
        log::error(std::string("config error: ") + e.what());
        return 2;
    }
    if (cl.print_config) {
        std::fputs(config::to_yaml(config).c_str(), stdout);
        return 0;
    }
    log::set_level(*log::level_from_name(config.log_level));

    // Every thread started from here on inherits the mask: only the signal thread takes them.
    const bool test_hooks = std::getenv("WOOLLY_TEST_HOOKS") != nullptr;
    const sigset_t signals = handled_signals(test_hooks);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    std::signal(SIGPIPE, SIG_IGN);

    caf::actor_system_config cfg;
    register_message_types(cfg);
    // Every woollyd actor is detached; CAF's scheduler keeps one thread for CAF's own needs.
    cfg.set("scheduler.max-threads", size_t{1});
    caf::actor_system system{cfg};
    int code = 0;
    {
        Supervisor supervisor(system, cl, config);
        // Forwards each signal to the supervisor as a message; SIGUSR1 (sent by main, below)
        // ends it.
        std::thread signal_thread([&signals, to = supervisor.handle()] {
            for (;;) {
                int sig = 0;
                if (sigwait(&signals, &sig) != 0 || sig == SIGUSR1) return;
                caf::anon_send(to, signal_atom::value, sig);
            }
        });
        code = supervisor.run();
        pthread_kill(signal_thread.native_handle(), SIGUSR1);
        signal_thread.join();
    }
    return code;
}
