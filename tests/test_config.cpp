// test_config.cpp — woollyd's YAML config: defaults, overrides, and errors with key and line.
#include "config/config.h"
#include "test_support.h"

#include <fstream>
#include <iterator>

using namespace woolly::config;

namespace {
std::string error_of(const std::string& yaml) {
    try {
        parse_config(yaml, "w.yaml");
    } catch (const ConfigError& e) {
        return e.what();
    }
    return "";
}
} // namespace

TEST_CASE("an empty file is all defaults; keys override them") {
    const DaemonConfig d = parse_config("", "w.yaml");
    CHECK(d.requests == "tcp://127.0.0.1:5555");
    CHECK(d.tokens == "tcp://127.0.0.1:5556");
    CHECK(d.limits.queue_depth == 8);
    const DaemonConfig c = parse_config(
        "requests: ipc:///tmp/r\nengine:\n  max_sessions: 2\nlimits:\n  queue_depth: 3\n",
        "w.yaml");
    CHECK(c.requests == "ipc:///tmp/r");
    CHECK(c.engine.max_sessions == 2);
    CHECK(c.engine.kv_cache_type == "f16");
    CHECK(c.limits.queue_depth == 3);
    CHECK(d.threads == 0); // the physical cores
    CHECK(d.engine.weight_cache_mib == 4096);
    const DaemonConfig k = parse_config("engine:\n  kv_cache_type: q8_0\n", "w.yaml");
    CHECK(k.engine.kv_cache_type == "q8_0");
}

TEST_CASE("engine.kv_cache_type takes f16, f32 or q8_0, and threads no negative count") {
    CHECK(error_of("engine:\n  kv_cache_type: q4_0\n") ==
          "w.yaml:2: key 'engine.kv_cache_type': 'q4_0' is not one of: f16, f32, q8_0");
    CHECK(error_of("threads: -1\n").find("w.yaml:1: key 'threads'") == 0);
}

TEST_CASE("the sampling defaults take exactly what the engine's sampler takes") {
    // Each boundary: the config accepts a value if and only if SamplingParams::validate does
    // (a default the engine refuses would make every request that leaves it out fail).
    struct Case {
        const char* key;
        const char* text;
    };
    for (const Case& c : {Case{"top_p", "0"}, Case{"top_p", "1"}, Case{"top_p", "1.5"},
                          Case{"repeat_penalty", "0"}, Case{"repeat_penalty", "100"},
                          Case{"repeat_last_n", "-1"}, Case{"repeat_last_n", "1048576"},
                          Case{"repeat_last_n", "1048577"}, Case{"top_k", "-1"},
                          Case{"top_k", "0"}, Case{"temperature", "100.5"},
                          Case{"temperature", "0"}, Case{"min_p", "1"}, Case{"min_p", "-0.1"}}) {
        INFO(c.key << " = " << c.text);
        const std::string yaml =
            std::string("sampling:\n  top_k: 40\n  ") + c.key + ": " + c.text + "\n";
        std::string config_error;
        DaemonConfig parsed;
        try {
            parsed = parse_config(yaml, "w.yaml");
        } catch (const ConfigError& e) {
            config_error = e.what();
        }
        DaemonConfig manual;
        const double v = std::stod(c.text);
        const std::string key = c.key;
        if (key == "top_p") manual.sampling.top_p = float(v);
        if (key == "repeat_penalty") manual.sampling.repeat_penalty = float(v);
        if (key == "repeat_last_n") manual.sampling.repeat_last_n = int64_t(v);
        if (key == "top_k") manual.sampling.top_k = int64_t(v);
        if (key == "temperature") manual.sampling.temperature = float(v);
        if (key == "min_p") manual.sampling.min_p = float(v);
        bool engine_accepts = true;
        try {
            sampling_params(manual).validate();
        } catch (const std::exception&) {
            engine_accepts = false;
        }
        CHECK(config_error.empty() == engine_accepts);
        if (!engine_accepts)
            CHECK(config_error.find("w.yaml:3: key 'sampling." + key + "': ") == 0);
    }
}

TEST_CASE("engine.prompt_chunk is 1 to 4096 tokens; engine.prefix_cache true or false") {
    const DaemonConfig d;
    CHECK(d.engine.prompt_chunk == 128);
    CHECK(d.engine.prefix_cache);
    const DaemonConfig c =
        parse_config("engine:\n  prompt_chunk: 32\n  prefix_cache: false\n", "w.yaml");
    CHECK(c.engine.prompt_chunk == 32);
    CHECK(!c.engine.prefix_cache);
    CHECK(error_of("engine:\n  prompt_chunk: 0\n").find("w.yaml:2: key 'engine.prompt_chunk'") ==
          0);
    CHECK(error_of("engine:\n  max_sessions: 2\n  prefix_cache: maybe\n") ==
          "w.yaml:3: key 'engine.prefix_cache': expected true or false, got 'maybe'");
    // The effective config prints them.
    const std::string yaml = to_yaml(c);
    CHECK(yaml.find("prompt_chunk: 32") != std::string::npos);
    CHECK(yaml.find("prefix_cache: false") != std::string::npos);
}

TEST_CASE("engine.mmap and engine.mlock take true or false") {
    const DaemonConfig d;
    CHECK(d.engine.mmap);
    CHECK(!d.engine.mlock);
    const DaemonConfig c = parse_config("engine:\n  mmap: false\n  mlock: true\n", "w.yaml");
    CHECK(!c.engine.mmap);
    CHECK(c.engine.mlock);
    CHECK(error_of("engine:\n  mlock: 1\n") ==
          "w.yaml:2: key 'engine.mlock': expected true or false, got '1'");
    CHECK(error_of("engine:\n  mmap: [true]\n") ==
          "w.yaml:2: key 'engine.mmap': expected true or false");
}

TEST_CASE("an endpoint reachable from other machines needs security.allow_plaintext") {
    CHECK(!leaves_machine("tcp://127.0.0.1:5555"));
    CHECK(!leaves_machine("tcp://127.3.2.1:5555"));
    CHECK(!leaves_machine("tcp://localhost:5555"));
    CHECK(!leaves_machine("tcp://[::1]:5555"));
    CHECK(!leaves_machine("ipc:///run/woolly/req"));
    CHECK(leaves_machine("tcp://*:5555"));
    CHECK(leaves_machine("tcp://0.0.0.0:5555"));
    CHECK(leaves_machine("tcp://192.168.1.5:5555"));
    CHECK(leaves_machine("tcp://eth0:5555"));
    CHECK(leaves_machine("tcp://[::]:5555"));
    CHECK(error_of("tokens: tcp://0.0.0.0:5556\n")
              .find("w.yaml: key 'tokens': tcp://0.0.0.0:5556 is reachable from other machines") ==
          0);
    const DaemonConfig open =
        parse_config("tokens: tcp://*:5556\nsecurity:\n  allow_plaintext: true\n", "w.yaml");
    CHECK(open.security.allow_plaintext);
    // With CURVE the network is allowed; its two files go together.
    const DaemonConfig curve =
        parse_config("tokens: tcp://*:5556\nsecurity:\n  curve_secret_key_file: /k/s.key\n"
                     "  authorized_keys_file: /k/authorized_keys\n",
                     "w.yaml");
    CHECK(curve.security.curve());
    CHECK(error_of("security:\n  curve_secret_key_file: /k/s.key\n")
              .find("keys 'security.curve_secret_key_file' and 'security.authorized_keys_file' "
                    "go together") != std::string::npos);
}

TEST_CASE("the shipped config/woolly.yaml parses to the defaults, and print-config reads back") {
    const DaemonConfig shipped =
        load_config_file(std::string(WOOLLY_SOURCE_DIR) + "/config/woolly.yaml");
    const DaemonConfig defaults;
    CHECK(to_yaml(shipped) == to_yaml(defaults));
    DaemonConfig changed;
    changed.engine.layer_executors = 3;
    changed.tokens = "ipc:///tmp/t";
    changed.engine.mlock = true;
    changed.security.allow_plaintext = true;
    changed.engine.mmap = false;
    CHECK(to_yaml(parse_config(to_yaml(changed), "printed")) == to_yaml(changed));
}

TEST_CASE("bad configs are refused with the file, line, key and expectation") {
    CHECK(error_of("threads: 1\nengin:\n  x: 1\n") ==
          "w.yaml:2: unknown key 'engin' (expected one of: model, model_name, requests, tokens, "
          "threads, "
          "log_level, shutdown_grace_seconds, engine, limits, sampling, publisher, security, http, "
          "replay)");
    CHECK(error_of("engine:\n  layer_executors: two\n") ==
          "w.yaml:2: key 'engine.layer_executors': expected an integer, got 'two'");
    CHECK(error_of("engine:\n  colour: 1\n").find("w.yaml:2: unknown key 'engine.colour'") == 0);
    CHECK(error_of("limits:\n  queue_depth: 0\n")
              .find("w.yaml:2: key 'limits.queue_depth': 0 is out of range") == 0);
    CHECK(error_of("requests: http://x\n").find("key 'requests': bad endpoint 'http://x'") !=
          std::string::npos);
    CHECK(error_of("tokens: tcp://127.0.0.1:99999\n").find("the port must be 1 to 65535") !=
          std::string::npos);
    CHECK(error_of("requests: [1, 2]\n") == "w.yaml:1: key 'requests': expected a string");
    CHECK(error_of("engine: 5\n") == "w.yaml:1: key 'engine': expected a mapping");
    CHECK(error_of("a: [\n").find("w.yaml:") == 0);
    CHECK(error_of("- 1\n- 2\n") == "w.yaml:1: expected a mapping of keys at the top level");
}

TEST_CASE("endpoints") {
    CHECK(endpoint_problem("tcp://127.0.0.1:5555").empty());
    CHECK(endpoint_problem("tcp://*:5555").empty());
    CHECK(endpoint_problem("ipc:///tmp/x").empty());
    CHECK_FALSE(endpoint_problem("tcp://127.0.0.1").empty());
    CHECK_FALSE(endpoint_problem("ipc://").empty());
    CHECK_FALSE(endpoint_problem("udp://x:1").empty());
}

TEST_CASE("one table of keys: every key has a doc line, is printed, and is in the shipped file") {
    const std::string printed = to_yaml(DaemonConfig{});
    std::ifstream in(std::string(WOOLLY_SOURCE_DIR) + "/config/woolly.yaml");
    const std::string shipped((std::istreambuf_iterator<char>(in)),
                              std::istreambuf_iterator<char>());
    CHECK(keys().size() >= 30);
    for (const KeyInfo& k : keys()) {
        INFO(k.name);
        CHECK(!k.doc.empty());
        const std::string leaf = k.name.substr(k.name.rfind('.') + 1);
        CHECK(printed.find(leaf + ": ") != std::string::npos);
        CHECK(printed.find("# " + k.doc) != std::string::npos);
        CHECK(shipped.find(leaf + ":") != std::string::npos);
    }
}

TEST_CASE("the effective config prints numbers as they were written") {
    const std::string printed = to_yaml(DaemonConfig{});
    CHECK(printed.find("temperature: 0.8 ") != std::string::npos);
    CHECK(printed.find("top_p: 0.95 ") != std::string::npos);
    CHECK(printed.find("0.800000012") == std::string::npos);
    const DaemonConfig c = parse_config("sampling:\n  temperature: 0.1\n", "w.yaml");
    CHECK(to_yaml(c).find("temperature: 0.1 ") != std::string::npos);
}

TEST_CASE("a reload loads the model again exactly when a key that is not live changed") {
    const DaemonConfig a;
    DaemonConfig b;
    b.limits.queue_depth = 3;
    b.sampling.temperature = 0.2f;
    b.requests = "ipc:///tmp/x";
    CHECK(runtime_keys_changed(a, b).empty());
    b.engine.context = 64;
    b.engine.mlock = true;
    CHECK(runtime_keys_changed(a, b) == std::vector<std::string>{"engine.context", "engine.mlock"});
}

TEST_CASE("flags set keys with the keys' own checks") {
    DaemonConfig c;
    set_key(c, "threads", "3", "flag --threads");
    CHECK(c.threads == 3);
    auto error = [&](const char* key, const char* text) {
        try {
            set_key(c, key, text, "flag --x");
        } catch (const ConfigError& e) {
            return std::string(e.what());
        }
        return std::string();
    };
    CHECK(error("threads", "many") == "flag --x: key 'threads': expected an integer, got 'many'");
    CHECK(error("threads", "999").find("flag --x: key 'threads': 999 is out of range") == 0);
    CHECK(error("log_level", "loud") ==
          "flag --x: key 'log_level': 'loud' is not one of: error, warning, info, debug");
}

TEST_CASE("endpoints bind by address: names resolved, IPv6 in brackets") {
    const BindAddress local = bind_address("tcp://localhost:5555");
    CHECK((local.endpoint == "tcp://127.0.0.1:5555" || local.endpoint == "tcp://[::1]:5555"));
    CHECK(local.ipv6 == (local.endpoint == "tcp://[::1]:5555"));
    const BindAddress v6 = bind_address("tcp://[::1]:5555");
    CHECK(v6.endpoint == "tcp://[::1]:5555");
    CHECK(v6.ipv6);
    CHECK(bind_address("tcp://127.0.0.1:5555").endpoint == "tcp://127.0.0.1:5555");
    CHECK(!bind_address("tcp://127.0.0.1:5555").ipv6);
    CHECK(bind_address("tcp://*:5555").endpoint == "tcp://*:5555");
    CHECK(bind_address("tcp://no-such-interface-x:5555").endpoint ==
          "tcp://no-such-interface-x:5555");
    CHECK(bind_address("ipc:///tmp/w").endpoint == "ipc:///tmp/w");
}
