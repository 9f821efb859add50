// protocol.cpp — strict decoding of woolly/1 requests and encoding of replies and messages.
#include "protocol.h"

#include <cfloat>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <set>

#include "engine/text/chat.h"

namespace woolly::protocol {
namespace {

using nlohmann::json;

RequestError bad(std::string message) {
    return {ErrorCode::BadRequest, std::move(message)};
}

// Field readers: each returns an error message when the value has the wrong type or range.
struct Fields {
    const json& object;
    std::optional<RequestError> error;

    const json* get(const char* name) {
        auto it = object.find(name);
        return it == object.end() ? nullptr : &*it;
    }
    void fail(std::string message) {
        if (!error) error = bad(std::move(message));
    }
    std::optional<int64_t> integer(const char* name, int64_t min, int64_t max) {
        const json* v = get(name);
        if (!v) return std::nullopt;
        if (!v->is_number_integer()) {
            fail(std::string("'") + name + "' must be an integer");
            return std::nullopt;
        }
        if (v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(INT64_MAX)) {
            fail(std::string("'") + name + "' is out of range");
            return std::nullopt;
        }
        const int64_t value = v->get<int64_t>();
        if (value < min || value > max) {
            fail(std::string("'") + name + "' must be between " + std::to_string(min) + " and " +
                 std::to_string(max) + ", got " + std::to_string(value));
            return std::nullopt;
        }
        return value;
    }
    // A number a float holds (its range is the engine's to check).
    std::optional<double> number(const char* name) {
        const json* v = get(name);
        if (!v) return std::nullopt;
        if (!v->is_number()) {
            fail(std::string("'") + name + "' must be a number");
            return std::nullopt;
        }
        const double value = v->get<double>();
        if (!std::isfinite(value) || std::fabs(value) > double(FLT_MAX)) {
            fail(std::string("'") + name + "' is out of range");
            return std::nullopt;
        }
        return value;
    }
    std::optional<std::string> string(const char* name) {
        const json* v = get(name);
        if (!v) return std::nullopt;
        if (!v->is_string()) {
            fail(std::string("'") + name + "' must be a string");
            return std::nullopt;
        }
        return v->get<std::string>();
    }
    std::string stream_id(const char* name, bool required) {
        auto id = string(name);
        if (!id) {
            if (required && !error) fail(std::string("'") + name + "' is required");
            return "";
        }
        if (!is_valid_stream_id(*id))
            fail(std::string("'") + name + "' must match [A-Za-z0-9_-]{1,64}");
        return *id;
    }
};

std::optional<RequestError> check_known_fields(const json& object, std::set<std::string> allowed) {
    for (const auto& [key, value] : object.items()) {
        (void)value;
        if (!allowed.count(key)) return bad("unknown field '" + key + "' for this op");
    }
    return std::nullopt;
}

} // namespace

std::variant<std::vector<ChatTurn>, std::string> decode_chat_turns(const json& value) {
    if (!value.is_array() || value.empty())
        return std::string(
            "'messages' must be a non-empty array of {\"role\", \"content\"} objects");
    std::vector<ChatTurn> turns;
    for (size_t i = 0; i < value.size(); ++i) {
        const json& m = value[i];
        const std::string where = "messages[" + std::to_string(i) + "]";
        if (!m.is_object()) return where + " must be an object with 'role' and 'content'";
        for (const auto& [key, v] : m.items()) {
            (void)v;
            if (key != "role" && key != "content")
                return where + " has unknown field '" + key + "' (expected role and content)";
        }
        const auto role = m.find("role");
        const auto content = m.find("content");
        if (role == m.end() || !role->is_string())
            return where + ".role must be a string: system, user or assistant";
        const std::string& r = role->get_ref<const std::string&>();
        if (r != "system" && r != "user" && r != "assistant")
            return where + ".role is '" + r + "' (expected system, user or assistant)";
        if (content == m.end() || !content->is_string()) return where + ".content must be a string";
        turns.push_back({r, content->get<std::string>()});
    }
    return turns;
}

const char* error_code_name(ErrorCode code) {
    switch (code) {
    case ErrorCode::BadRequest:
        return "bad_request";
    case ErrorCode::TooLarge:
        return "too_large";
    case ErrorCode::Busy:
        return "busy";
    case ErrorCode::NotFound:
        return "not_found";
    case ErrorCode::DuplicateId:
        return "duplicate_id";
    case ErrorCode::ShuttingDown:
        return "shutting_down";
    case ErrorCode::Internal:
        return "internal";
    case ErrorCode::Loading:
        return "loading";
    }
    return "internal";
}

bool is_valid_stream_id(std::string_view id) {
    if (id.empty() || id.size() > 64) return false;
    for (char c : id) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '_' || c == '-';
        if (!ok) return false;
    }
    return true;
}

void write_topic(std::string& out, std::string_view id) {
    out.assign(kTopicPrefix).append(id);
}

std::string topic_for(std::string_view id) {
    std::string out;
    write_topic(out, id);
    return out;
}

std::variant<Request, RequestError> decode_request(std::string_view frame,
                                                   const DecodeLimits& limits) {
    if (frame.size() > limits.max_request_bytes) {
        return RequestError{ErrorCode::TooLarge, "request of " + std::to_string(frame.size()) +
                                                     " bytes exceeds the limit of " +
                                                     std::to_string(limits.max_request_bytes)};
    }
    json object;
    // nlohmann keeps the last of two equal keys; a request that says a field twice is refused
    // instead, so that no two readers of it can disagree on what it asked.
    std::vector<std::set<std::string>> keys; // of each object being parsed, innermost last
    std::string duplicate;
    auto check_keys = [&](int, json::parse_event_t event, json& parsed) {
        if (event == json::parse_event_t::object_start) {
            keys.emplace_back();
        } else if (event == json::parse_event_t::object_end) {
            keys.pop_back();
        } else if (event == json::parse_event_t::key && !keys.empty() &&
                   !keys.back().insert(parsed.get<std::string>()).second && duplicate.empty()) {
            duplicate = parsed.get<std::string>();
        }
        return true;
    };
    try {
        object = json::parse(frame, check_keys);
    } catch (const json::exception& e) {
        // parse_error, and out_of_range for a number too large for a double (1E999): either
        // way the frame is not a request the daemon can read.
        return bad(std::string("request is not valid JSON (") + e.what() + ")");
    }
    if (!duplicate.empty()) return bad("field '" + duplicate + "' appears more than once");
    if (!object.is_object()) return bad("request must be a JSON object");
    Fields f{object, std::nullopt};
    const auto op = f.string("op");
    if (f.error) return *f.error;
    if (!op) return bad("'op' is required (generate, cancel, status or replay)");

    if (*op == "generate") {
        if (auto e = check_known_fields(object,
                                        {"op", "id", "prompt", "messages", "max_tokens",
                                         "temperature", "top_k", "top_p", "min_p", "repeat_penalty",
                                         "repeat_last_n", "seed", "stop", "chat_template"}))
            return *e;
        GenerateRequest r;
        r.id = f.stream_id("id", false);
        auto prompt = f.string("prompt");
        const json* messages = f.get("messages");
        if (!f.error && prompt.has_value() == (messages != nullptr))
            f.fail("give exactly one of 'prompt' (text) and 'messages' (a conversation)");
        if (messages && !f.error) {
            auto turns = decode_chat_turns(*messages);
            if (auto* why = std::get_if<std::string>(&turns))
                f.fail(*why);
            else
                r.messages = std::move(std::get<std::vector<ChatTurn>>(turns));
            r.chat = true;
        }
        if (auto name = f.string("chat_template")) {
            if (!messages)
                f.fail("'chat_template' goes with 'messages' (a prompt is not templated)");
            else if (!chat_template_from_name(*name))
                f.fail("'chat_template' is '" + *name +
                       "' (expected one of: " + chat_template_names() + ")");
            else
                r.chat_template = *name;
        }
        // Asking for more tokens than the daemon allows is "too large"; a negative count or a
        // non-integer is a bad request (below).
        if (const json* max = f.get("max_tokens");
            max && max->is_number_unsigned() &&
            max->get<uint64_t>() > uint64_t(limits.max_tokens)) {
            return RequestError{ErrorCode::TooLarge, "'max_tokens' exceeds the limit of " +
                                                         std::to_string(limits.max_tokens)};
        }
        // Types here; ranges are the engine's (GenerationParams::validate), checked once below.
        GenerationParams& p = r.params = limits.defaults;
        if (auto v = f.integer("max_tokens", 0, limits.max_tokens)) p.max_tokens = int32_t(*v);
        if (auto v = f.number("temperature")) p.sampling.temperature = float(*v);
        if (auto v = f.integer("top_k", INT32_MIN, INT32_MAX)) p.sampling.top_k = int32_t(*v);
        if (auto v = f.number("top_p")) p.sampling.top_p = float(*v);
        if (auto v = f.number("min_p")) p.sampling.min_p = float(*v);
        if (auto v = f.number("repeat_penalty")) p.sampling.repeat_penalty = float(*v);
        if (auto v = f.integer("repeat_last_n", INT32_MIN, INT32_MAX))
            p.sampling.repeat_last_n = int32_t(*v);
        if (const json* seed = f.get("seed")) {
            if (seed->is_number_unsigned()) {
                p.sampling.seed = seed->get<uint64_t>();
                r.seed_given = true;
            } else {
                f.fail("'seed' must be a non-negative integer");
            }
        }
        if (const json* stop = f.get("stop")) {
            p.stop.clear();
            if (!stop->is_array()) {
                f.fail("'stop' must be an array of strings");
            } else if (stop->size() > limits.max_stop_strings) {
                f.fail("'stop' has more than " + std::to_string(limits.max_stop_strings) +
                       " strings");
            } else {
                for (const json& s : *stop) {
                    if (!s.is_string() || s.get_ref<const std::string&>().empty() ||
                        s.get_ref<const std::string&>().size() > limits.max_stop_bytes) {
                        f.fail("each 'stop' entry must be a string of 1 to " +
                               std::to_string(limits.max_stop_bytes) + " bytes");
                        break;
                    }
                    p.stop.push_back(s.get<std::string>());
                }
            }
        }
        if (!f.error) {
            try {
                p.validate();
            } catch (const std::exception& e) {
                f.fail(e.what());
            }
        }
        if (f.error) return *f.error;
        if (prompt) r.prompt = std::move(*prompt);
        return Request{std::move(r)};
    }
    if (*op == "cancel") {
        if (auto e = check_known_fields(object, {"op", "id"})) return *e;
        CancelRequest r{f.stream_id("id", true)};
        if (f.error) return *f.error;
        return Request{std::move(r)};
    }
    if (*op == "status") {
        if (auto e = check_known_fields(object, {"op"})) return *e;
        return Request{StatusRequest{}};
    }
    if (*op == "replay") {
        if (auto e = check_known_fields(object, {"op", "id", "from_seq"})) return *e;
        ReplayRequest r;
        r.id = f.stream_id("id", true);
        r.from_seq = uint64_t(f.integer("from_seq", 0, INT64_MAX).value_or(0));
        if (f.error) return *f.error;
        return Request{std::move(r)};
    }
    return bad("unknown op '" + *op + "' (expected generate, cancel, status or replay)");
}

std::string encode_error(const RequestError& error) {
    return json{{"ok", false},
                {"error", {{"code", error_code_name(error.code)}, {"message", error.message}}}}
        .dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string encode_loading(std::string_view model, double progress) {
    char percent[16];
    std::snprintf(percent, sizeof percent, "%.0f %%", progress * 100);
    return json{{"ok", false},
                {"error",
                 {{"code", error_code_name(ErrorCode::Loading)},
                  {"message", "the model is loading (" + std::string(model) + ", " + percent + ")"},
                  {"progress", progress}}}}
        .dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string encode_ok(json fields) {
    json reply = {{"ok", true}};
    reply.update(fields);
    return reply.dump(-1, ' ', false, json::error_handler_t::replace);
}

namespace {

// `text` as a JSON string, escaped as nlohmann::json::dump does: the two-character escapes
// for \b \f \n \r \t, \u00xx for other control characters, UTF-8 as it is.
void append_json_string(std::string& out, std::string_view text) {
    static const char hex[] = "0123456789abcdef";
    out += '"';
    for (const char c : text) {
        const auto u = static_cast<unsigned char>(c);
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
            if (u < 0x20) {
                out += "\\u00";
                out += hex[u >> 4];
                out += hex[u & 15];
            } else {
                out += c;
            }
        }
    }
    out += '"';
}

} // namespace

void write_token_message(std::string& out, std::string_view id, uint64_t seq, int32_t token,
                         std::string_view text) {
    out.assign("{\"id\":");
    append_json_string(out, id);
    char number[24];
    out += ",\"seq\":";
    out.append(number, std::to_chars(number, number + sizeof number, seq).ptr);
    out += ",\"text\":";
    append_json_string(out, text);
    out += ",\"token\":";
    out.append(number, std::to_chars(number, number + sizeof number, token).ptr);
    out += '}';
}

json done_message(std::string_view id, uint64_t seq, std::string_view finish_reason,
                  const Usage& usage, const RequestError* error, std::string_view text) {
    json message = {{"id", id},
                    {"seq", seq},
                    {"done", true},
                    {"finish_reason", finish_reason},
                    {"usage",
                     {{"prompt_tokens", usage.prompt_tokens},
                      {"completion_tokens", usage.completion_tokens},
                      {"ttft_ms", usage.ttft_ms},
                      {"tokens_per_second", usage.tokens_per_second}}}};
    if (!text.empty()) message["text"] = text;
    if (error)
        message["error"] = {{"code", error_code_name(error->code)}, {"message", error->message}};
    return message;
}

} // namespace woolly::protocol
