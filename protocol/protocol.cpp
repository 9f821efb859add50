// protocol.cpp — strict decoding of woolly/1 requests and encoding of replies and messages.
#include "protocol.h"

#include <cfloat>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <set>

#include "engine/text/chat.h"
#include "fields.h"

namespace woolly::protocol {
namespace {

using nlohmann::json;

RequestError bad(std::string message) {
    return {ErrorCode::BadRequest, std::move(message)};
}

using detail::Fields;

// The id of a stream, `[A-Za-z0-9_-]{1,64}`.
std::string stream_id(Fields& f, const char* name, bool required) {
    auto id = f.string(name);
    if (!id) {
        if (required && !f.error) f.fail(std::string("'") + name + "' is required", name);
        return "";
    }
    if (!is_valid_stream_id(*id))
        f.fail(std::string("'") + name + "' must match [A-Za-z0-9_-]{1,64}", name);
    return *id;
}

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
        ChatTurn turn;
        turn.role = r;
        turn.content = content->get<std::string>();
        turns.push_back(std::move(turn));
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
    if (std::string why = detail::parse_strict(frame, object, "request"); !why.empty())
        return bad(why);
    if (!object.is_object()) return bad("request must be a JSON object");
    Fields f{object, std::nullopt, {}};
    const auto op = f.string("op");
    if (f.error) return bad(*f.error);
    if (!op) return bad("'op' is required (generate, cancel, status or replay)");

    if (*op == "generate") {
        if (auto e = check_known_fields(object, {"op",
                                                 "id",
                                                 "prompt",
                                                 "messages",
                                                 "max_tokens",
                                                 "temperature",
                                                 "top_k",
                                                 "top_p",
                                                 "min_p",
                                                 "repeat_penalty",
                                                 "repeat_last_n",
                                                 "presence_penalty",
                                                 "frequency_penalty",
                                                 "seed",
                                                 "stop",
                                                 "chat_template",
                                                 "logprobs",
                                                 "grammar",
                                                 "json_schema",
                                                 "response_format"}))
            return *e;
        GenerateRequest r;
        r.id = stream_id(f, "id", false);
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
        f.sampling(p.sampling);
        r.seed_given = f.seed("seed", p.sampling.seed);
        f.stop("stop", p.stop, limits.max_stop_strings, limits.max_stop_bytes, false);
        if (auto v = f.integer("logprobs", 0, TokenLogprobs::kMaxTop)) p.logprobs = int32_t(*v);
        if (object.contains("json_schema") || object.contains("response_format")) {
            // Read again with keys in order, for the schema's properties.
            f.grammar(nlohmann::ordered_json::parse(frame), true, p.constraint);
        } else {
            f.grammar(nlohmann::ordered_json::object(), true, p.constraint);
        }
        f.validate(p);
        if (f.error) return bad(*f.error);
        if (prompt) r.prompt = std::move(*prompt);
        return Request{std::move(r)};
    }
    if (*op == "cancel") {
        if (auto e = check_known_fields(object, {"op", "id"})) return *e;
        CancelRequest r{stream_id(f, "id", true)};
        if (f.error) return bad(*f.error);
        return Request{std::move(r)};
    }
    if (*op == "status") {
        if (auto e = check_known_fields(object, {"op"})) return *e;
        return Request{StatusRequest{}};
    }
    if (*op == "replay") {
        if (auto e = check_known_fields(object, {"op", "id", "from_seq"})) return *e;
        ReplayRequest r;
        r.id = stream_id(f, "id", true);
        r.from_seq = uint64_t(f.integer("from_seq", 0, INT64_MAX).value_or(0));
        if (f.error) return bad(*f.error);
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

namespace {

// Reads a JSON string written by append_json_string at `at` (its opening quote), unescaped
// into `out`; moves `at` past its closing quote. False for anything else.
bool read_json_string(std::string_view in, size_t& at, std::string& out) {
    if (at >= in.size() || in[at] != '"') return false;
    out.clear();
    for (size_t i = at + 1; i < in.size(); ++i) {
        const char c = in[i];
        if (c == '"') {
            at = i + 1;
            return true;
        }
        if (c != '\\') {
            out += c;
            continue;
        }
        if (++i >= in.size()) return false;
        switch (in[i]) {
        case '"':
            out += '"';
            break;
        case '\\':
            out += '\\';
            break;
        case 'b':
            out += '\b';
            break;
        case 'f':
            out += '\f';
            break;
        case 'n':
            out += '\n';
            break;
        case 'r':
            out += '\r';
            break;
        case 't':
            out += '\t';
            break;
        case 'u': { // \u00xx only: what append_json_string writes
            if (i + 4 >= in.size() || in[i + 1] != '0' || in[i + 2] != '0') return false;
            unsigned value = 0;
            auto [p, ec] = std::from_chars(in.data() + i + 3, in.data() + i + 5, value, 16);
            if (ec != std::errc() || p != in.data() + i + 5) return false;
            out += char(value);
            i += 4;
            break;
        }
        default:
            return false;
        }
    }
    return false;
}

} // namespace

void append_logprobs(std::string& out, const TokenLogprobs& lp, int32_t token, const Vocab& vocab) {
    char number[32];
    auto real = [&](float v) {
        out.append(number, std::to_chars(number, number + sizeof number, v).ptr);
    };
    auto integer = [&](int64_t v) {
        out.append(number, std::to_chars(number, number + sizeof number, v).ptr);
    };
    auto bytes = [&](int32_t id) {
        out += '[';
        const std::string_view piece = vocab.piece(id);
        for (size_t i = 0; i < piece.size(); ++i) {
            if (i) out += ',';
            integer(static_cast<unsigned char>(piece[i]));
        }
        out += ']';
    };
    if (!out.empty() && out.back() == '}') out.pop_back();
    out += ",\"logprob\":";
    real(lp.logprob);
    out += ",\"bytes\":";
    bytes(token);
    out += ",\"top_logprobs\":[";
    for (int32_t i = 0; i < lp.n_top; ++i) {
        if (i) out += ',';
        out += "{\"token\":";
        integer(lp.top_ids[size_t(i)]);
        out += ",\"logprob\":";
        real(lp.top_logprobs[size_t(i)]);
        out += ",\"bytes\":";
        bytes(lp.top_ids[size_t(i)]);
        out += '}';
    }
    out += "]}";
}

bool read_token_message(std::string_view in, uint64_t& seq, std::string& text) {
    static constexpr std::string_view kId = "{\"id\":", kSeq = ",\"seq\":", kText = ",\"text\":";
    if (in.substr(0, kId.size()) != kId) return false;
    size_t at = kId.size();
    if (!read_json_string(in, at, text)) return false; // the id, not kept
    if (in.substr(at, kSeq.size()) != kSeq) return false;
    at += kSeq.size();
    auto [p, ec] = std::from_chars(in.data() + at, in.data() + in.size(), seq);
    if (ec != std::errc()) return false;
    at = size_t(p - in.data());
    if (in.substr(at, kText.size()) != kText) return false;
    at += kText.size();
    if (!read_json_string(in, at, text) || in.substr(at, 9) != ",\"token\":") return false;
    at += 9;
    int32_t token = 0;
    auto [end, bad] = std::from_chars(in.data() + at, in.data() + in.size(), token);
    // Nothing after the token but the closing brace: a message with more fields (logprobs)
    // is for a JSON parser.
    return bad == std::errc() && end + 1 == in.data() + in.size() && *end == '}';
}

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
                  const Usage& usage, const RequestError* error, std::string_view text,
                  const GrammarOutcome* grammar) {
    json message = {{"id", id},
                    {"seq", seq},
                    {"done", true},
                    {"finish_reason", finish_reason},
                    {"usage",
                     {{"prompt_tokens", usage.prompt_tokens},
                      {"completion_tokens", usage.completion_tokens},
                      {"cached_tokens", usage.cached_tokens},
                      {"ttft_ms", usage.ttft_ms},
                      {"tokens_per_second", usage.tokens_per_second}}}};
    if (!text.empty()) message["text"] = text;
    if (grammar) {
        message["grammar_complete"] = grammar->complete;
        if (grammar->warnings && !grammar->warnings->empty())
            message["warnings"] = *grammar->warnings;
    }
    if (error)
        message["error"] = {{"code", error_code_name(error->code)}, {"message", error->message}};
    return message;
}

} // namespace woolly::protocol
