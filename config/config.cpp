// config.cpp — strict YAML reading: unknown keys, wrong types and bad values are refused with
// the key and the line.
#include "config.h"

#include "engine/text/chat.h"

#include <yaml-cpp/yaml.h>

#include <cfloat>
#include <charconv>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <vector>

namespace woolly::config {
namespace {

std::string where(const std::string& name, const YAML::Node& node) {
    return name + ":" + std::to_string(node.Mark().line + 1);
}

struct IntKey {
    int64_t* target;
    int64_t min;
    int64_t max;
};

void read_int(const std::string& name, const std::string& key, const YAML::Node& node, IntKey k) {
    if (!node.IsScalar())
        throw ConfigError(where(name, node) + ": key '" + key + "': expected an integer");
    const std::string text = node.Scalar();
    int64_t value = 0;
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || ptr != text.data() + text.size() || text.empty()) {
        throw ConfigError(where(name, node) + ": key '" + key + "': expected an integer, got '" +
                          text + "'");
    }
    if (value < k.min || value > k.max) {
        throw ConfigError(where(name, node) + ": key '" + key + "': " + text +
                          " is out of range (expected " + std::to_string(k.min) + " to " +
                          std::to_string(k.max) + ")");
    }
    *k.target = value;
}

void read_string(const std::string& name, const std::string& key, const YAML::Node& node,
                 std::string* target) {
    if (!node.IsScalar()) {
        throw ConfigError(where(name, node) + ": key '" + key + "': expected a string");
    }
    *target = node.Scalar();
}

void read_bool(const std::string& name, const std::string& key, const YAML::Node& node,
               bool* target) {
    const std::string text = node.IsScalar() ? node.Scalar() : "";
    if (text == "true")
        *target = true;
    else if (text == "false")
        *target = false;
    else
        throw ConfigError(where(name, node) + ": key '" + key + "': expected true or false" +
                          (text.empty() ? "" : ", got '" + text + "'"));
}

struct RealKey {
    float* target;
    double min;
    double max;
};

void read_real(const std::string& name, const std::string& key, const YAML::Node& node, RealKey k) {
    const std::string text = node.IsScalar() ? node.Scalar() : "";
    double value = 0;
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || ec != std::errc() || ptr != text.data() + text.size())
        throw ConfigError(where(name, node) + ": key '" + key + "': expected a number" +
                          (text.empty() ? "" : ", got '" + text + "'"));
    if (!(value >= k.min && value <= k.max)) {
        std::ostringstream range;
        range << k.min << " to " << k.max;
        throw ConfigError(where(name, node) + ": key '" + key + "': " + text +
                          " is out of range (expected " + range.str() + ")");
    }
    *k.target = float(value);
}

// String keys with a fixed set of values.
const std::map<std::string, std::vector<std::string>> kChoices = {
    {"engine.kv_cache_type", {"f16", "f32", "q8_0"}},
    {"log_level", {"error", "warning", "info", "debug"}},
};

void check_choice(const std::string& name, const std::string& key, const YAML::Node& node,
                  const std::string& value) {
    if (key == "engine.chat_template") { // the model's own, or a family the engine formats
        if (value == "auto" || chat_template_from_name(value)) return;
        throw ConfigError(where(name, node) + ": key '" + key + "': '" + value +
                          "' is not one of: auto, " + chat_template_names());
    }
    auto it = kChoices.find(key);
    if (it == kChoices.end()) return;
    for (const auto& allowed : it->second)
        if (value == allowed) return;
    std::string list;
    for (const auto& allowed : it->second) list += (list.empty() ? "" : ", ") + allowed;
    throw ConfigError(where(name, node) + ": key '" + key + "': '" + value +
                      "' is not one of: " + list);
}

// Every key the file may hold, by its dotted path.
struct Schema {
    std::map<std::string, IntKey> ints;
    std::map<std::string, std::string*> strings;
    std::map<std::string, bool*> bools;
    std::map<std::string, RealKey> reals;
    std::map<std::string, std::vector<std::string>> sections; // section -> its keys
};

Schema schema_for(DaemonConfig& c) {
    Schema s;
    s.strings = {{"model", &c.model},
                 {"requests", &c.requests},
                 {"tokens", &c.tokens},
                 {"log_level", &c.log_level},
                 {"engine.kv_cache_type", &c.engine.kv_cache_type},
                 {"engine.chat_template", &c.engine.chat_template},
                 {"security.curve_secret_key_file", &c.security.curve_secret_key_file},
                 {"security.authorized_keys_file", &c.security.authorized_keys_file}};
    s.ints = {
        {"threads", {&c.threads, 0, 256}},
        {"shutdown_grace_seconds", {&c.shutdown_grace_seconds, 0, 3600}},
        // The sampling section's ranges are the engine's (SamplingParams::validate, below).
        {"sampling.top_k", {&c.sampling.top_k, INT32_MIN, INT32_MAX}},
        {"sampling.repeat_last_n", {&c.sampling.repeat_last_n, INT32_MIN, INT32_MAX}},
        {"engine.layer_executors", {&c.engine.layer_executors, 1, 64}},
        {"engine.context", {&c.engine.context, 0, 1 << 24}},
        {"engine.max_sessions", {&c.engine.max_sessions, 1, 1024}},
        {"engine.prompt_chunk", {&c.engine.prompt_chunk, 1, 4096}},
        {"engine.weight_cache_mib", {&c.engine.weight_cache_mib, 0, 1 << 30}},
        {"limits.queue_depth", {&c.limits.queue_depth, 1, 1 << 20}},
        {"limits.max_tokens", {&c.limits.max_tokens, 1, 1 << 24}},
        {"limits.default_max_tokens", {&c.limits.default_max_tokens, 0, 1 << 24}},
        {"limits.max_request_bytes", {&c.limits.max_request_bytes, 64, 1 << 30}},
        {"publisher.high_water_mark", {&c.publisher.high_water_mark, 0, 1 << 30}},
        {"replay.max_messages", {&c.replay.max_messages, 1, 1 << 24}},
        {"replay.keep_seconds", {&c.replay.keep_seconds, 0, 86400 * 7}},
        {"replay.max_bytes", {&c.replay.max_bytes, 1 << 16, int64_t(1) << 40}},
    };
    s.bools = {{"engine.mmap", &c.engine.mmap},
               {"engine.mlock", &c.engine.mlock},
               {"engine.prefix_cache", &c.engine.prefix_cache},
               {"security.allow_plaintext", &c.security.allow_plaintext}};
    s.reals = {{"sampling.temperature", {&c.sampling.temperature, -FLT_MAX, FLT_MAX}},
               {"sampling.top_p", {&c.sampling.top_p, -FLT_MAX, FLT_MAX}},
               {"sampling.min_p", {&c.sampling.min_p, -FLT_MAX, FLT_MAX}},
               {"sampling.repeat_penalty", {&c.sampling.repeat_penalty, -FLT_MAX, FLT_MAX}}};
    auto add_sections = [&](const auto& keys) {
        for (const auto& entry : keys)
            if (auto dot = entry.first.find('.'); dot != std::string::npos)
                s.sections[entry.first.substr(0, dot)].push_back(entry.first.substr(dot + 1));
    };
    add_sections(s.ints);
    add_sections(s.strings);
    add_sections(s.bools);
    add_sections(s.reals);
    return s;
}

std::string known_keys(const std::vector<std::string>& keys) {
    std::string out;
    for (const auto& k : keys) out += (out.empty() ? "" : ", ") + k;
    return out;
}

} // namespace

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

bool leaves_machine(std::string_view e) {
    if (e.substr(0, 6) != "tcp://") return false;
    std::string_view host = e.substr(6, e.rfind(':') - 6);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    return !(host.substr(0, 4) == "127." || host == "localhost" || host == "::1");
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
    if (c.limits.default_max_tokens > c.limits.max_tokens)
        throw ConfigError(name + ": key 'limits.default_max_tokens' exceeds 'limits.max_tokens'");
}

DaemonConfig parse_config(std::string_view text, const std::string& name) {
    DaemonConfig config;
    Schema schema = schema_for(config);
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
    std::vector<std::string> top;
    for (const auto& [key, value] : schema.strings)
        if (key.find('.') == std::string::npos) top.push_back(key), (void)value;
    for (const auto& [key, value] : schema.ints)
        if (key.find('.') == std::string::npos) top.push_back(key), (void)value;
    for (const auto& [section, keys] : schema.sections) top.push_back(section), (void)keys;

    for (const auto& entry : root) {
        const std::string key = entry.first.Scalar();
        const YAML::Node& value = entry.second;
        if (auto it = schema.strings.find(key); it != schema.strings.end()) {
            read_string(name, key, value, it->second);
            check_choice(name, key, value, *it->second);
        } else if (auto it = schema.ints.find(key); it != schema.ints.end()) {
            read_int(name, key, value, it->second);
        } else if (auto it = schema.sections.find(key); it != schema.sections.end()) {
            if (value.IsNull()) continue;
            if (!value.IsMap())
                throw ConfigError(where(name, value) + ": key '" + key + "': expected a mapping");
            for (const auto& sub : value) {
                const std::string full = key + "." + sub.first.Scalar();
                if (auto text = schema.strings.find(full); text != schema.strings.end()) {
                    read_string(name, full, sub.second, text->second);
                    check_choice(name, full, sub.second, *text->second);
                    continue;
                }
                if (auto flag = schema.bools.find(full); flag != schema.bools.end()) {
                    read_bool(name, full, sub.second, flag->second);
                    continue;
                }
                if (auto real = schema.reals.find(full); real != schema.reals.end()) {
                    read_real(name, full, sub.second, real->second);
                } else if (auto found = schema.ints.find(full); found != schema.ints.end()) {
                    read_int(name, full, sub.second, found->second);
                } else {
                    throw ConfigError(where(name, sub.first) + ": unknown key '" + full +
                                      "' (expected one of: " + known_keys(it->second) + ")");
                }
                // Request defaults: a value the engine would refuse in every request is refused
                // here, by the engine's own check (each parameter is checked on its own, so the
                // one just read is the one at fault).
                if (key == "sampling") {
                    try {
                        sampling_params(config).validate();
                    } catch (const std::exception& e) {
                        throw ConfigError(where(name, sub.second) + ": key '" + full +
                                          "': " + e.what());
                    }
                }
            }

        } else {
            throw ConfigError(where(name, entry.first) + ": unknown key '" + key +
                              "' (expected one of: " + known_keys(top) + ")");
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
    out << YAML::Key << "model" << YAML::Value << c.model;
    out << YAML::Key << "requests" << YAML::Value << c.requests;
    out << YAML::Key << "tokens" << YAML::Value << c.tokens;
    out << YAML::Key << "threads" << YAML::Value << c.threads;
    out << YAML::Key << "log_level" << YAML::Value << c.log_level;
    out << YAML::Key << "shutdown_grace_seconds" << YAML::Value << c.shutdown_grace_seconds;
    out << YAML::Key << "engine" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "layer_executors" << YAML::Value << c.engine.layer_executors;
    out << YAML::Key << "context" << YAML::Value << c.engine.context;
    out << YAML::Key << "max_sessions" << YAML::Value << c.engine.max_sessions;
    out << YAML::Key << "prompt_chunk" << YAML::Value << c.engine.prompt_chunk;
    out << YAML::Key << "prefix_cache" << YAML::Value << c.engine.prefix_cache;
    out << YAML::Key << "weight_cache_mib" << YAML::Value << c.engine.weight_cache_mib;
    out << YAML::Key << "kv_cache_type" << YAML::Value << c.engine.kv_cache_type;
    out << YAML::Key << "chat_template" << YAML::Value << c.engine.chat_template;
    out << YAML::Key << "mmap" << YAML::Value << c.engine.mmap;
    out << YAML::Key << "mlock" << YAML::Value << c.engine.mlock << YAML::EndMap;
    out << YAML::Key << "limits" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "queue_depth" << YAML::Value << c.limits.queue_depth;
    out << YAML::Key << "max_tokens" << YAML::Value << c.limits.max_tokens;
    out << YAML::Key << "default_max_tokens" << YAML::Value << c.limits.default_max_tokens;
    out << YAML::Key << "max_request_bytes" << YAML::Value << c.limits.max_request_bytes
        << YAML::EndMap;
    out << YAML::Key << "sampling" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "temperature" << YAML::Value << c.sampling.temperature;
    out << YAML::Key << "top_k" << YAML::Value << c.sampling.top_k;
    out << YAML::Key << "top_p" << YAML::Value << c.sampling.top_p;
    out << YAML::Key << "min_p" << YAML::Value << c.sampling.min_p;
    out << YAML::Key << "repeat_penalty" << YAML::Value << c.sampling.repeat_penalty;
    out << YAML::Key << "repeat_last_n" << YAML::Value << c.sampling.repeat_last_n << YAML::EndMap;
    out << YAML::Key << "publisher" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "high_water_mark" << YAML::Value << c.publisher.high_water_mark
        << YAML::EndMap;
    out << YAML::Key << "security" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "curve_secret_key_file" << YAML::Value << c.security.curve_secret_key_file;
    out << YAML::Key << "authorized_keys_file" << YAML::Value << c.security.authorized_keys_file;
    out << YAML::Key << "allow_plaintext" << YAML::Value << c.security.allow_plaintext
        << YAML::EndMap;
    out << YAML::Key << "replay" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "max_messages" << YAML::Value << c.replay.max_messages;
    out << YAML::Key << "keep_seconds" << YAML::Value << c.replay.keep_seconds;
    out << YAML::Key << "max_bytes" << YAML::Value << c.replay.max_bytes << YAML::EndMap;
    out << YAML::EndMap;
    return std::string(out.c_str()) + "\n";
}

} // namespace woolly::config
