// woollyd.cpp — the Woolly daemon: reads its config, loads the model, serves until SIGINT/SIGTERM.
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>

#include "actors/actors.h"
#include "actors/messages.h"
#include "config/config.h"

namespace {

std::atomic<bool> g_stop{false};

void on_signal(int) {
    g_stop.store(true);
}

const char* kUsage =
    "usage: woollyd [--config FILE] [--model FILE] [--requests ENDPOINT] [--tokens ENDPOINT]\n"
    "               [--threads N] [--print-config]\n"
    "Serves generation over ZeroMQ: requests on a ROUTER socket (default tcp://127.0.0.1:5555),\n"
    "tokens on a PUB socket (default tcp://127.0.0.1:5556). See protocol/SPEC.md.\n"
    "Flags override the config file's keys. Exit codes: 0 clean shutdown, 1 start-up failure\n"
    "(model, sockets), 2 bad configuration or flags.\n";

} // namespace

int main(int argc, char** argv) {
    using woolly::config::ConfigError;
    woolly::config::DaemonConfig config;
    bool print_config = false;
    try {
        std::string config_path;
        std::vector<std::pair<std::string, std::string>> overrides;
        for (int i = 1; i < argc; ++i) {
            const std::string arg = argv[i];
            if (arg == "--help" || arg == "-h") {
                std::fputs(kUsage, stdout);
                return 0;
            }
            if (arg == "--print-config") {
                print_config = true;
                continue;
            }
            if (arg != "--config" && arg != "--model" && arg != "--requests" && arg != "--tokens" &&
                arg != "--threads") {
                throw ConfigError("unknown flag " + arg + " (see woollyd --help)");
            }
            if (i + 1 >= argc) throw ConfigError("flag " + arg + " needs a value");
            if (arg == "--config")
                config_path = argv[++i];
            else
                overrides.emplace_back(arg, argv[++i]);
        }
        if (!config_path.empty()) config = woolly::config::load_config_file(config_path);
        for (const auto& [flag, value] : overrides) {
            if (flag == "--model")
                config.model = value;
            else if (flag == "--requests")
                config.requests = value;
            else if (flag == "--tokens")
                config.tokens = value;
            else {
                char* end = nullptr;
                const long threads = std::strtol(value.c_str(), &end, 10);
                if (value.empty() || *end || threads < 0 || threads > 256)
                    throw ConfigError("flag --threads: expected an integer from 0 to 256, got '" +
                                      value + "'");
                config.threads = threads;
            }
        }
        if (config.model.empty()) config.model = WOOLLY_DEFAULT_MODEL;
        woolly::config::validate(config, "flags");
    } catch (const std::exception& e) {
        std::fprintf(stderr, "woollyd: config error: %s\n", e.what());
        return 2;
    }
    if (print_config) {
        std::fputs(woolly::config::to_yaml(config).c_str(), stdout);
        return 0;
    }

    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    std::signal(SIGPIPE, SIG_IGN);

    caf::actor_system_config cfg;
    woolly::actors::register_message_types(cfg);
    // Every woollyd actor is detached; CAF's scheduler keeps one thread for CAF's own needs.
    cfg.set("scheduler.max-threads", size_t{1});
    caf::actor_system system{cfg};

    std::shared_ptr<woolly::actors::Runtime> runtime;
    std::string load_error;
    {
        caf::scoped_actor self{system};
        woolly::LoadOptions options;
        options.memory.n_ctx = config.engine.context;
        options.memory.sessions = config.engine.max_sessions;
        options.memory.kv_type = woolly::kv_cache_type_from_name(config.engine.kv_cache_type);
        options.memory.cache_budget = uint64_t(config.engine.weight_cache_mib) << 20;
        options.memory.threads = int(config.threads); // 0: the model's default
        options.memory.scratches = config.engine.layer_executors;
        options.mmap = config.engine.mmap;
        options.mlock = config.engine.mlock;
        options.names = {"engine.context", "engine.max_sessions", "engine.kv_cache_type",
                         "engine.weight_cache_mib"};
        auto loader = system.spawn<caf::detached>(woolly::actors::loader_actor, config.model,
                                                  options);
        self->request(loader, caf::infinite, woolly::actors::load_atom::value)
            .receive([&](std::shared_ptr<woolly::actors::Runtime>& r) { runtime = std::move(r); },
                     [&](caf::error& e) {
                         // The loader's message as it wrote it, not CAF's rendering around it.
                         const caf::message& context = e.context();
                         load_error = context.match_elements<std::string>()
                                          ? context.get_as<std::string>(0)
                                          : system.render(e);
                     });
    }
    if (!runtime) {
        std::fprintf(stderr, "woollyd: cannot load the model: %s\n", load_error.c_str());
        return 1;
    }
    const auto& hp = runtime->model->hparams();
    if (!runtime->load_note.empty()) std::fprintf(stderr, "woollyd: %s\n", runtime->load_note.c_str());
    std::fprintf(stderr, "woollyd: loaded %s in %.0f ms; memory planned %s; held %s\n",
                 config.model.c_str(), runtime->load_ms,
                 woolly::describe(runtime->memory_plan).c_str(),
                 woolly::describe(woolly::memory_usage(*runtime->model, runtime->weight_cache.get(),
                                                       runtime->kv->bytes(), 0))
                     .c_str());
    std::fprintf(stderr,
                 "woollyd: serving %s (%lld layers, vocab %lld, context %lld) on requests %s, "
                 "tokens %s\n",
                 config.model.c_str(), (long long)hp.n_layer, (long long)hp.n_vocab,
                 (long long)runtime->kv->n_ctx(), config.requests.c_str(), config.tokens.c_str());

    zmq::context_t zmq_context;
    int code = 0;
    try {
        code =
            woolly::actors::run_daemon(system, runtime, config, zmq_context,
                                       std::shared_ptr<std::atomic<bool>>(&g_stop, [](auto*) {}));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "woollyd: %s\n", e.what());
        return 1;
    }
    std::fprintf(stderr, "woollyd: stopped\n");
    return code;
}
