// config.cpp — woollyd's configuration as one table of keys (name, type, range, default, doc
// line, whether a reload applies it live), and what the table drives: strict YAML reading
// (unknown keys, wrong types and bad values refused with the key and the line), flags, the
// effective config as YAML, and the reload comparison.
#include "config.h"

#include "engine/text/chat.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cfloat>
#include <charconv>
#include <cstring>
#include <fstream>
#include <sstream>
#include <variant>

namespace woolly::config {
namespace {

using IntField = int64_t* (*)(DaemonConfig&);
using RealField = float* (*)(DaemonConfig&);
using BoolField = bool* (*)(DaemonConfig&);
using StringField = std::string* (*)(DaemonConfig&);

// One key of the file. Numbers are checked against [min, max]; a string against `choices`
// when there are any; then `check` (when set) sees the whole config with the new value and
// throws std::exception with the reason when it refuses.
struct Key {
    const char* name;
    std::variant<IntField, RealField, BoolField, StringField> field;
    double min = 0, max = 0;
    std::vector<std::string> choices = {};
    void (*check)(const DaemonConfig&) = nullptr;
    bool live = false; // a reload applies it without loading the model again
    const char* doc = "";
};

// Request defaults: a value the engine would refuse in every request is refused here, by the
// engine's own check (each key is read on its own, so the one just read is the one at fault).
void check_sampling(const DaemonConfig& c) {
    sampling_params(c).validate();
}

void check_chat_template(const DaemonConfig& c) {
    const std::string& v = c.engine.chat_template;
    if (v == "auto" || chat_template_from_name(v)) return;
    throw std::runtime_error("'" + v + "' is not one of: auto, " + chat_template_names());
}

#define WOOLLY_FIELD(path) +[](DaemonConfig& c) { return &c.path; }

// A key to a line or two, as the table it is.
// clang-format off
const std::vector<Key>& table() {
    static const std::vector<Key> keys = {
        {.name = "model", .field = WOOLLY_FIELD(model),
         .doc = "the GGUF file to serve; empty: the bundled model (stories260K)"},
        {.name = "model_name", .field = WOOLLY_FIELD(model_name), .live = true,
         .doc = "the model's id in the HTTP API (/v1/models); empty: the file's name"},
        {.name = "requests", .field = WOOLLY_FIELD(requests), .live = true,
         .doc = "ZeroMQ ROUTER endpoint for requests: tcp://HOST:PORT, ipc://PATH or inproc://NAME"},
        {.name = "tokens", .field = WOOLLY_FIELD(tokens), .live = true,
         .doc = "ZeroMQ PUB endpoint the token streams are published on"},
        {.name = "threads", .field = WOOLLY_FIELD(threads), .min = 0, .max = 256,
         .doc = "compute threads per layer executor; 0: the physical cores, shared among them"},
        {.name = "log_level", .field = WOOLLY_FIELD(log_level),
         .choices = {"error", "warning", "info", "debug"}, .live = true,
         .doc = "error, warning, info (requests, refusals, reloads) or debug (request text too)"},
        {.name = "shutdown_grace_seconds", .field = WOOLLY_FIELD(shutdown_grace_seconds),
         .min = 0, .max = 3600, .live = true,
         .doc = "SIGTERM: running streams finish within this, then end with 'shutdown'"},
        {.name = "engine.layer_executors", .field = WOOLLY_FIELD(engine.layer_executors),
         .min = 1, .max = 64, .doc = "actors, each owning a contiguous range of layers"},
        {.name = "engine.context", .field = WOOLLY_FIELD(engine.context), .min = 0,
         .max = 1 << 24, .doc = "tokens per session; 0: the model's context length"},
        {.name = "engine.max_sessions", .field = WOOLLY_FIELD(engine.max_sessions), .min = 1,
         .max = 1024, .doc = "sessions generating at once, batched in every step; KV slots"},
        {.name = "engine.prompt_chunk", .field = WOOLLY_FIELD(engine.prompt_chunk), .min = 1,
         .max = 4096, .doc = "prompt tokens a step takes at most, besides the generating ones"},
        {.name = "engine.prefix_cache", .field = WOOLLY_FIELD(engine.prefix_cache),
         .doc = "a finished session's slot keeps its tokens' keys and values for later requests"},
        {.name = "engine.weight_cache_mib", .field = WOOLLY_FIELD(engine.weight_cache_mib),
         .min = 0, .max = 1 << 30, .doc = "repacked weights for the fast kernels, MiB; 0: off"},
        {.name = "engine.kv_cache_type", .field = WOOLLY_FIELD(engine.kv_cache_type),
         .choices = {"f16", "f32", "q8_0"}, .doc = "keys and values as f16, f32 or q8_0"},
        {.name = "engine.chat_template", .field = WOOLLY_FIELD(engine.chat_template),
         .check = check_chat_template,
         .doc = "for `messages`: auto (the model's own) or a family name"},
        {.name = "engine.mmap", .field = WOOLLY_FIELD(engine.mmap),
         .doc = "false: read the model into memory instead of mapping it"},
        {.name = "engine.mlock", .field = WOOLLY_FIELD(engine.mlock),
         .doc = "lock the weights and the weight cache in RAM (RLIMIT_MEMLOCK)"},
        {.name = "limits.queue_depth", .field = WOOLLY_FIELD(limits.queue_depth), .min = 1,
         .max = 1 << 20, .live = true, .doc = "requests admitted and unfinished; past it: busy"},
        {.name = "limits.max_tokens", .field = WOOLLY_FIELD(limits.max_tokens), .min = 1,
         .max = 1 << 24, .live = true, .doc = "the largest max_tokens a request may ask"},
        {.name = "limits.default_max_tokens", .field = WOOLLY_FIELD(limits.default_max_tokens),
         .min = 0, .max = 1 << 24, .live = true, .doc = "max_tokens of a request that does not say"},
        {.name = "limits.max_request_bytes", .field = WOOLLY_FIELD(limits.max_request_bytes),
         .min = 64, .max = 1 << 30, .live = true, .doc = "one request frame, at most"},
        {.name = "sampling.temperature", .field = WOOLLY_FIELD(sampling.temperature),
         .min = -FLT_MAX, .max = FLT_MAX, .check = check_sampling, .live = true,
         .doc = "0 to 100; 0: greedy"},
        {.name = "sampling.top_k", .field = WOOLLY_FIELD(sampling.top_k), .min = INT32_MIN,
         .max = INT32_MAX, .check = check_sampling, .live = true, .doc = ">= 0; 0: off"},
        {.name = "sampling.top_p", .field = WOOLLY_FIELD(sampling.top_p), .min = -FLT_MAX,
         .max = FLT_MAX, .check = check_sampling, .live = true, .doc = "(0, 1]; 1: off"},
        {.name = "sampling.min_p", .field = WOOLLY_FIELD(sampling.min_p), .min = -FLT_MAX,
         .max = FLT_MAX, .check = check_sampling, .live = true, .doc = "[0, 1]; 0: off"},
        {.name = "sampling.repeat_penalty", .field = WOOLLY_FIELD(sampling.repeat_penalty),
         .min = -FLT_MAX, .max = FLT_MAX, .check = check_sampling, .live = true,
         .doc = "(0, 100]; 1: off"},
        {.name = "sampling.repeat_last_n", .field = WOOLLY_FIELD(sampling.repeat_last_n),
         .min = INT32_MIN, .max = INT32_MAX, .check = check_sampling, .live = true,
         .doc = "tokens the penalty looks back over, 0 to 1048576"},
        {.name = "publisher.high_water_mark", .field = WOOLLY_FIELD(publisher.high_water_mark),
         .min = 0, .max = 1 << 30, .live = true,
         .doc = "messages queued per subscriber before PUB drops (the seq gap shows it)"},
        {.name = "security.curve_secret_key_file",
         .field = WOOLLY_FIELD(security.curve_secret_key_file), .live = true,
         .doc = "CurveZMQ: the server's secret key file (a change needs a restart)"},
        {.name = "security.authorized_keys_file",
         .field = WOOLLY_FIELD(security.authorized_keys_file), .live = true,
         .doc = "CurveZMQ: the client public keys let in, one per line"},
        {.name = "security.allow_plaintext", .field = WOOLLY_FIELD(security.allow_plaintext),
         .live = true, .doc = "true: serve tcp:// beyond loopback without client authentication"},
        {.name = "http.listen", .field = WOOLLY_FIELD(http.listen), .live = true,
         .doc = "the OpenAI-compatible HTTP API, HOST:PORT; empty: off"},
        {.name = "http.api_keys_file", .field = WOOLLY_FIELD(http.api_keys_file), .live = true,
         .doc = "API keys, one per line, asked as Authorization: Bearer KEY; empty: none asked"},
        {.name = "http.tls_cert_file", .field = WOOLLY_FIELD(http.tls_cert_file), .live = true,
         .doc = "HTTPS: the certificate chain (PEM); with http.tls_key_file"},
        {.name = "http.tls_key_file", .field = WOOLLY_FIELD(http.tls_key_file), .live = true,
         .doc = "HTTPS: the private key (PEM, unencrypted)"},
        {.name = "http.max_body_bytes", .field = WOOLLY_FIELD(http.max_body_bytes), .min = 64,
         .max = 1 << 30, .live = true, .doc = "a request body, at most; past it: 413"},
        {.name = "http.max_header_bytes", .field = WOOLLY_FIELD(http.max_header_bytes),
         .min = 1024, .max = 1 << 20, .live = true,
         .doc = "the request line and headers, at most; past it: 431"},
        {.name = "http.idle_timeout_seconds", .field = WOOLLY_FIELD(http.idle_timeout_seconds),
         .min = 1, .max = 86400, .live = true,
         .doc = "a keep-alive connection waiting for its next request is closed after this"},
        {.name = "http.read_timeout_seconds", .field = WOOLLY_FIELD(http.read_timeout_seconds),
         .min = 1, .max = 3600, .live = true,
         .doc = "a request must arrive whole within this of its first byte; else closed"},
        {.name = "http.max_connections", .field = WOOLLY_FIELD(http.max_connections), .min = 1,
         .max = 1 << 20, .live = true, .doc = "connections open at once; past it: 503 and closed"},
        {.name = "replay.max_messages", .field = WOOLLY_FIELD(replay.max_messages), .min = 1,
         .max = 1 << 24, .live = true, .doc = "the most recent messages of a stream kept"},
        {.name = "replay.keep_seconds", .field = WOOLLY_FIELD(replay.keep_seconds), .min = 0,
         .max = 86400 * 7, .live = true, .doc = "how long a finished stream stays replayable"},
        {.name = "replay.max_bytes", .field = WOOLLY_FIELD(replay.max_bytes), .min = 1 << 16,
         .max = double(int64_t(1) << 40), .live = true,
         .doc = "all streams' kept messages together; past it finished streams go first"},
    };
    return keys;
}
// clang-format on

#undef WOOLLY_FIELD

const Key* find_key(std::string_view name) {
    for (const Key& k : table())
        if (name == k.name) return &k;
    return nullptr;
}

std::string section_of(std::string_view name) {
    const size_t dot = name.find('.');
    return dot == std::string_view::npos ? std::string() : std::string(name.substr(0, dot));
}

// The names one level below `section` ("" for the top level: keys and sections), in order.
std::string names_in(const std::string& section) {
    std::vector<std::string> names;
    for (const Key& k : table()) {
        const std::string name = k.name;
        std::string entry;
        if (section.empty())
            entry = section_of(name).empty() ? name : section_of(name);
        else if (section_of(name) == section)
            entry = name.substr(section.size() + 1);
        if (!entry.empty() && std::find(names.begin(), names.end(), entry) == names.end())
            names.push_back(entry);
    }
    std::string out;
    for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
    return out;
}

std::string where(const std::string& name, const YAML::Node& node) {
    return name + ":" + std::to_string(node.Mark().line + 1);
}

std::string format_real(double v) {
    std::ostringstream out;
    out << v;
    return out.str();
}

// Reads `node` into the key's field of `c`; `at` says where ("w.yaml:3", "flag --threads").
void read_key(const Key& k, DaemonConfig& c, const YAML::Node& node, const std::string& at) {
    const std::string prefix = at + ": key '" + k.name + "': ";
    const std::string text = node.IsScalar() ? node.Scalar() : "";
    const std::string got = text.empty() ? "" : ", got '" + text + "'";
    if (auto* f = std::get_if<IntField>(&k.field)) {
        if (!node.IsScalar()) throw ConfigError(prefix + "expected an integer");
        int64_t value = 0;
        auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
        if (ec != std::errc() || ptr != text.data() + text.size() || text.empty())
            throw ConfigError(prefix + "expected an integer" + got);
        if (double(value) < k.min || double(value) > k.max)
            throw ConfigError(prefix + text + " is out of range (expected " +
                              std::to_string(int64_t(k.min)) + " to " +
                              std::to_string(int64_t(k.max)) + ")");
        *(*f)(c) = value;
    } else if (auto* f = std::get_if<RealField>(&k.field)) {
        double value = 0;
        auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
        if (text.empty() || ec != std::errc() || ptr != text.data() + text.size())
            throw ConfigError(prefix + "expected a number" + got);
        if (!(value >= k.min && value <= k.max))
            throw ConfigError(prefix + text + " is out of range (expected " + format_real(k.min) +
                              " to " + format_real(k.max) + ")");
        *(*f)(c) = float(value);
    } else if (auto* f = std::get_if<BoolField>(&k.field)) {
        if (text == "true")
            *(*f)(c) = true;
        else if (text == "false")
            *(*f)(c) = false;
        else
            throw ConfigError(prefix + "expected true or false" + got);
    } else {
        if (!node.IsScalar()) throw ConfigError(prefix + "expected a string");
        if (!k.choices.empty() &&
            std::find(k.choices.begin(), k.choices.end(), text) == k.choices.end()) {
            std::string list;
            for (const auto& allowed : k.choices) list += (list.empty() ? "" : ", ") + allowed;
            throw ConfigError(prefix + "'" + text + "' is not one of: " + list);
        }
        *(*std::get<StringField>(k.field))(c) = text;
    }
    if (k.check) {
        try {
            k.check(c);
        } catch (const ConfigError&) {
            throw;
        } catch (const std::exception& e) {
            throw ConfigError(prefix + e.what());
        }
    }
}

// The value as the YAML file writes it (and as the reload comparison compares it).
std::string value_text(const Key& k, const DaemonConfig& config) {
    DaemonConfig& c = const_cast<DaemonConfig&>(config); // the fields are only read
    if (auto* f = std::get_if<IntField>(&k.field)) return std::to_string(*(*f)(c));
    if (auto* f = std::get_if<BoolField>(&k.field)) return *(*f)(c) ? "true" : "false";
    if (auto* f = std::get_if<RealField>(&k.field)) {
        char text[32]; // the shortest text that reads back as the same float: 0.8, not 0.800000012
        return std::string(text, std::to_chars(text, text + sizeof text, *(*f)(c)).ptr);
    }
    return *(*std::get<StringField>(k.field))(c);
}

bool is_loopback(const sockaddr* a) {
    if (a->sa_family == AF_INET)
        return (ntohl(reinterpret_cast<const sockaddr_in*>(a)->sin_addr.s_addr) >> 24) == 127;
    if (a->sa_family == AF_INET6) {
        const auto* in6 = reinterpret_cast<const sockaddr_in6*>(a);
        return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) != 0;
    }
    return false;
}

// The host of a tcp:// endpoint, without brackets, and its port text.
std::pair<std::string, std::string> host_and_port(std::string_view e) {
    const std::string_view rest = e.substr(6);
    const size_t colon = rest.rfind(':');
    std::string_view host = rest.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    return {std::string(host), std::string(rest.substr(colon + 1))};
}

// The addresses a host resolves to (numeric ones included); empty when it does not resolve.
std::vector<sockaddr_storage> resolve(const std::string& host) {
    std::vector<sockaddr_storage> out;
    if (host.empty() || host == "*") return out;
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (getaddrinfo(host.c_str(), nullptr, &hints, &found) != 0) return out;
    for (addrinfo* a = found; a; a = a->ai_next) {
        sockaddr_storage s{};
        std::memcpy(&s, a->ai_addr, std::min<size_t>(a->ai_addrlen, sizeof s));
        out.push_back(s);
    }
    freeaddrinfo(found);
    return out;
}

} // namespace

const std::vector<KeyInfo>& keys() {
    static const std::vector<KeyInfo> infos = [] {
        std::vector<KeyInfo> out;
        for (const Key& k : table()) out.push_back({k.name, k.doc, k.live});
        return out;
    }();
    return infos;
}

std::vector<std::string> runtime_keys_changed(const DaemonConfig& a, const DaemonConfig& b) {
    std::vector<std::string> changed;
    for (const Key& k : table())
        if (!k.live && value_text(k, a) != value_text(k, b)) changed.push_back(k.name);
    return changed;
}

void set_key(DaemonConfig& config, const std::string& key, const std::string& text,
             const std::string& source) {
    const Key* k = find_key(key);
    if (!k) throw ConfigError(source + ": no key '" + key + "'");
    read_key(*k, config, YAML::Node(text), source);
}

std::string endpoint_problem(std::string_view e) {
    auto starts = [&](std::string_view p) { return e.substr(0, p.size()) == p; };
    if (starts("ipc://")) return e.size() > 6 ? "" : "ipc:// needs a path";
    if (starts("inproc://")) return e.size() > 9 ? "" : "inproc:// needs a name";
    if (!starts("tcp://")) return "expected tcp://HOST:PORT, ipc://PATH or inproc://NAME";
    const std::string_view rest = e.substr(6);
    const size_t colon = rest.rfind(':');
    if (colon == std::string_view::npos || colon == 0) return "expected tcp://HOST:PORT";
    const std::string_view port = rest.substr(colon + 1);
    if (port == "*") return "";
    int value = 0;
    auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc() || ptr != port.data() + port.size() || value < 1 || value > 65535)
        return "the port must be 1 to 65535";
    return "";
}

BindAddress bind_address(std::string_view e) {
    BindAddress out{std::string(e), false};
    if (e.substr(0, 6) != "tcp://" || !endpoint_problem(e).empty()) return out;
    const auto [host, port] = host_and_port(e);
    in6_addr v6{};
    if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
        out.endpoint = "tcp://[" + host + "]:" + port;
        out.ipv6 = true;
        return out;
    }
    in_addr v4{};
    if (host == "*" || inet_pton(AF_INET, host.c_str(), &v4) == 1) return out;
    const auto addresses = resolve(host);
    if (addresses.empty()) return out; // an interface name, for ZeroMQ to find
    // The first address getaddrinfo gives (its preference order), as ZeroMQ takes it.
    char text[INET6_ADDRSTRLEN] = {};
    const sockaddr_storage& a = addresses.front();
    if (a.ss_family == AF_INET6) {
        inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(a).sin6_addr, text, sizeof text);
        out.endpoint = "tcp://[" + std::string(text) + "]:" + port;
        out.ipv6 = true;
    } else {
        inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(a).sin_addr, text, sizeof text);
        out.endpoint = "tcp://" + std::string(text) + ":" + port;
    }
    return out;
}

bool leaves_machine(std::string_view e) {
    if (e.substr(0, 6) != "tcp://") return false;
    const auto addresses = resolve(host_and_port(e).first);
    if (addresses.empty()) return true; // a wildcard or an interface name
    for (const sockaddr_storage& a : addresses)
        if (!is_loopback(reinterpret_cast<const sockaddr*>(&a))) return true;
    return false;
}

std::string http_listen_problem(std::string_view listen) {
    if (listen.substr(0, 6) == "tcp://" || listen.find("://") != std::string_view::npos)
        return "expected HOST:PORT without a scheme";
    return endpoint_problem("tcp://" + std::string(listen)).empty() &&
                   listen.substr(listen.rfind(':') + 1) != "*"
               ? ""
               : "expected HOST:PORT, the port 1 to 65535 (an IPv6 address in brackets)";
}

std::pair<std::string, std::string> http_host_and_port(std::string_view listen) {
    return host_and_port("tcp://" + std::string(listen));
}

std::string model_id(const DaemonConfig& c) {
    if (!c.model_name.empty()) return c.model_name;
    std::string name = c.model.substr(c.model.rfind('/') + 1);
    if (name.size() > 5 && name.substr(name.size() - 5) == ".gguf") name.resize(name.size() - 5);
    return name;
}

SamplingParams sampling_params(const DaemonConfig& c) {
    SamplingParams p;
    p.temperature = c.sampling.temperature;
    p.top_k = int32_t(c.sampling.top_k);
    p.top_p = c.sampling.top_p;
    p.min_p = c.sampling.min_p;
    p.repeat_penalty = c.sampling.repeat_penalty;
    p.repeat_last_n = int32_t(c.sampling.repeat_last_n);
    return p;
}

void validate(const DaemonConfig& c, const std::string& name) {
    for (const auto& [key, value] :
         {std::pair{"requests", c.requests}, std::pair{"tokens", c.tokens}}) {
        if (auto problem = endpoint_problem(value); !problem.empty())
            throw ConfigError(name + ": key '" + key + "': bad endpoint '" + value + "' (" +
                              problem + ")");
    }
    if (c.requests == c.tokens)
        throw ConfigError(name + ": keys 'requests' and 'tokens' name the same endpoint");
    for (const auto& [key, value] :
         {std::pair{"requests", c.requests}, std::pair{"tokens", c.tokens}}) {
        if (leaves_machine(value) && !c.security.allow_plaintext && !c.security.curve())
            throw ConfigError(name + ": key '" + key + "': " + value +
                              " is reachable from other machines without client "
                              "authentication: set security.curve_secret_key_file and "
                              "security.authorized_keys_file (CurveZMQ), bind a loopback or "
                              "ipc:// endpoint, or set security.allow_plaintext: true to serve "
                              "anyone who connects");
    }
    if (c.security.curve_secret_key_file.empty() != c.security.authorized_keys_file.empty())
        throw ConfigError(name + ": keys 'security.curve_secret_key_file' and "
                                 "'security.authorized_keys_file' go together (CurveZMQ needs "
                                 "the server's key and the clients' keys)");
    if (!c.http.listen.empty()) {
        if (auto problem = http_listen_problem(c.http.listen); !problem.empty())
            throw ConfigError(name + ": key 'http.listen': bad address '" + c.http.listen + "' (" +
                              problem + ")");
        if (leaves_machine("tcp://" + c.http.listen) && !c.security.allow_plaintext &&
            c.http.api_keys_file.empty())
            throw ConfigError(name + ": key 'http.listen': " + c.http.listen +
                              " is reachable from other machines without API keys: set "
                              "http.api_keys_file, listen on a loopback address, or set "
                              "security.allow_plaintext: true to serve anyone who connects");
    }
    if (c.http.tls_cert_file.empty() != c.http.tls_key_file.empty())
        throw ConfigError(name + ": keys 'http.tls_cert_file' and 'http.tls_key_file' go "
                                 "together (TLS needs the certificate and its key)");
    if (c.limits.default_max_tokens > c.limits.max_tokens)
        throw ConfigError(name + ": key 'limits.default_max_tokens' exceeds 'limits.max_tokens'");
}

DaemonConfig parse_config(std::string_view text, const std::string& name) {
    DaemonConfig config;
    YAML::Node root;
    try {
        root = YAML::Load(std::string(text));
    } catch (const YAML::Exception& e) {
        throw ConfigError(name + ":" + std::to_string(e.mark.line + 1) +
                          ": not valid YAML: " + e.msg);
    }
    if (root.IsNull()) return config; // an empty file: all defaults
    if (!root.IsMap())
        throw ConfigError(where(name, root) + ": expected a mapping of keys at the top level");
    for (const auto& entry : root) {
        const std::string key = entry.first.Scalar();
        const YAML::Node& value = entry.second;
        if (const Key* k = find_key(key); k && section_of(key).empty()) {
            read_key(*k, config, value, where(name, value));
            continue;
        }
        const std::string known = names_in(key);
        if (known.empty())
            throw ConfigError(where(name, entry.first) + ": unknown key '" + key +
                              "' (expected one of: " + names_in("") + ")");
        if (value.IsNull()) continue; // a section with nothing in it
        if (!value.IsMap())
            throw ConfigError(where(name, value) + ": key '" + key + "': expected a mapping");
        for (const auto& sub : value) {
            const std::string full = key + "." + sub.first.Scalar();
            const Key* k = find_key(full);
            if (!k)
                throw ConfigError(where(name, sub.first) + ": unknown key '" + full +
                                  "' (expected one of: " + known + ")");
            read_key(*k, config, sub.second, where(name, sub.second));
        }
    }
    validate(config, name);
    return config;
}

DaemonConfig load_config_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw ConfigError(path + ": cannot open the config file");
    std::ostringstream text;
    text << in.rdbuf();
    return parse_config(text.str(), path);
}

std::string to_yaml(const DaemonConfig& c) {
    YAML::Emitter out;
    out << YAML::BeginMap;
    std::string section; // the one open
    for (const Key& k : table()) {
        const std::string name = k.name;
        const std::string s = section_of(name);
        if (s != section) {
            if (!section.empty()) out << YAML::EndMap;
            if (!s.empty()) out << YAML::Key << s << YAML::Value << YAML::BeginMap;
            section = s;
        }
        out << YAML::Key << (s.empty() ? name : name.substr(s.size() + 1)) << YAML::Value;
        if (std::holds_alternative<StringField>(k.field))
            out << value_text(k, c); // yaml-cpp quotes what needs it ("" for empty)
        else
            out << YAML::Flow << YAML::Node(value_text(k, c)); // numbers and booleans plain
        out << YAML::Comment(k.doc);
    }
    if (!section.empty()) out << YAML::EndMap;
    out << YAML::EndMap;
    return std::string(out.c_str()) + "\n";
}

} // namespace woolly::config
