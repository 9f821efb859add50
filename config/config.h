// config.h — woollyd's configuration: defaults, the YAML file, and the checks on every key.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "engine/text/sampler.h"

namespace woolly::config {

// A bad config: the message names the file, the line, the key and what was expected.
class ConfigError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct DaemonConfig {
    std::string model;                             // GGUF file; empty: the bundled model
    std::string model_name; // its id in the HTTP API; empty: the file's name without .gguf
    std::string requests = "tcp://127.0.0.1:5555"; // ROUTER endpoint (bind)
    std::string tokens = "tcp://127.0.0.1:5556";   // PUB endpoint (bind)
    int64_t threads = 0; // compute threads per layer executor; 0: physical cores / executors
    std::string log_level = "info";      // error, warning, info or debug
    int64_t shutdown_grace_seconds = 10; // SIGTERM: running streams finish within this
    struct {
        int64_t layer_executors = 1;       // actors, each owning a contiguous range of layers
        int64_t context = 0;               // tokens per session; 0: the model's context length
        int64_t max_sessions = 4;          // sessions generating at once, batched in every step
        int64_t prompt_chunk = 128;        // prompt tokens a step takes at most, besides one
                                           // token of each generating session
        bool prefix_cache = true;          // a finished session's slot keeps its tokens' KV
        int64_t weight_cache_mib = 4096;   // repacked weights (engine/model/weight_cache.h); 0: off
        std::string kv_cache_type = "f16"; // f16, f32 or q8_0
        std::string chat_template = "auto"; // for `messages`: the model's own, or a family
        bool mmap = true;                   // false: read the model into memory (--no-mmap)
        bool mlock = false;                 // lock the weights and the weight cache in RAM
    } engine;
    struct {
        int64_t queue_depth = 8;             // admitted and unfinished requests, at most
        int64_t max_tokens = 4096;           // the largest max_tokens a request may ask
        int64_t default_max_tokens = 256;    // when a request does not say
        int64_t max_request_bytes = 1 << 20; // a request frame, at most
    } limits;
    // Defaults for a request that does not say; unset, the engine's (llama.cpp's). Their ranges
    // are SamplingParams::validate's (see sampling_params).
    struct {
        float temperature = SamplingParams{}.temperature;
        int64_t top_k = SamplingParams{}.top_k;
        float top_p = SamplingParams{}.top_p;
        float min_p = SamplingParams{}.min_p;
        float repeat_penalty = SamplingParams{}.repeat_penalty;
        int64_t repeat_last_n = SamplingParams{}.repeat_last_n;
    } sampling;
    struct {
        int64_t high_water_mark = 100000; // messages queued per subscriber before PUB drops
    } publisher;
    struct {
        // CurveZMQ: both set, or neither. The server's secret key (40 Z85 characters, mode
        // 0600) and the client public keys allowed in (one per line); both sockets are then
        // CURVE servers, and an unlisted or plain-text client gets nothing.
        std::string curve_secret_key_file;
        std::string authorized_keys_file;
        // A tcp:// endpoint on an address other than loopback is refused, without CURVE,
        // unless this says the operator means to serve unauthenticated clients over the network.
        bool allow_plaintext = false;
        bool curve() const { return !curve_secret_key_file.empty(); }
    } security;
    // The OpenAI-compatible HTTP API (protocol/SPEC.md, "HTTP"), beside woolly/1.
    struct {
        std::string listen = "127.0.0.1:8080"; // HOST:PORT; empty: no HTTP
        // API keys, one per line: requests need `Authorization: Bearer KEY` (not /health).
        std::string api_keys_file;
        // TLS: both set, or neither (PEM files; the key unencrypted).
        std::string tls_cert_file;
        std::string tls_key_file;
        int64_t max_body_bytes = 1 << 20;  // a request body, at most (413 past it)
        int64_t max_header_bytes = 16384;  // the request line and headers, at most (431)
        int64_t idle_timeout_seconds = 60; // a keep-alive connection with no request
        int64_t read_timeout_seconds = 30; // a request, from its first byte to its last
        int64_t max_connections = 4096;    // open at once; past it new ones get 503
        bool tls() const { return !tls_cert_file.empty(); }
    } http;
    struct {
        int64_t max_messages = 4096;  // per stream, the most recent kept for replay
        int64_t keep_seconds = 300;   // how long a finished stream stays replayable
        int64_t max_bytes = 64 << 20; // all streams' kept messages together, at most: past it
                                      // the finished streams go first, oldest first
    } replay;
};

// Parses YAML text; `name` is the file name used in messages.
DaemonConfig parse_config(std::string_view text, const std::string& name);
DaemonConfig load_config_file(const std::string& path);
// The effective configuration as YAML that parse_config reads back, each key with its doc line
// as a comment.
std::string to_yaml(const DaemonConfig& config);

// The key table (config.cpp) as the rest of woollyd sees it: one entry per key, in the order
// to_yaml writes them. A reload applies `live` keys to the running pipeline; any other key
// changed loads the model again beside the one serving.
struct KeyInfo {
    std::string name; // dotted path: "engine.context"
    std::string doc;  // one line: what it is and its range
    bool live = false;
};
const std::vector<KeyInfo>& keys();
// The keys whose values differ between `a` and `b`, and that need a new runtime (not live).
std::vector<std::string> runtime_keys_changed(const DaemonConfig& a, const DaemonConfig& b);
// Sets one key from text, as a flag gives it (`source` names the flag in messages): the key's
// own type and range checks. Throws ConfigError.
void set_key(DaemonConfig& config, const std::string& key, const std::string& text,
             const std::string& source);

// Empty when `endpoint` is a usable tcp://HOST:PORT, ipc://PATH or inproc://NAME; else why not.
std::string endpoint_problem(std::string_view endpoint);
// An endpoint as ZeroMQ binds it: a tcp:// host name resolved to its address (ZeroMQ reads a
// name there as a network interface), IPv6 addresses in brackets with `ipv6` set (the socket
// needs ZMQ_IPV6). Wildcards, addresses and names that do not resolve (interface names) stay
// as they are; ipc:// and inproc:// too.
struct BindAddress {
    std::string endpoint;
    bool ipv6 = false;
};
BindAddress bind_address(std::string_view endpoint);
// Whether a (usable) endpoint reaches beyond this machine: tcp:// on any address but
// 127.0.0.0/8 and ::1, after resolving a host name (localhost is loopback; a wildcard or an
// interface name is not).
bool leaves_machine(std::string_view endpoint);
// Empty when `listen` is a usable HTTP HOST:PORT (a name, an IPv4 address or an IPv6 one in
// brackets, and a port 1 to 65535); else why not.
std::string http_listen_problem(std::string_view listen);
// The host (without brackets) and port of a usable `listen`.
std::pair<std::string, std::string> http_host_and_port(std::string_view listen);
// The model's id in the HTTP API: model_name, or the file's name without ".gguf".
std::string model_id(const DaemonConfig& config);
// Checks ranges and endpoints of a config built from flags; throws ConfigError.
void validate(const DaemonConfig& config, const std::string& name);
// The sampling section as the engine's parameters (the defaults of a request that does not say);
// parse_config has checked them with SamplingParams::validate.
SamplingParams sampling_params(const DaemonConfig& config);

} // namespace woolly::config
