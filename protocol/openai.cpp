// openai.cpp — OpenAI's request and response bodies for the HTTP API, read strictly.
#include "openai.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <set>

#include "engine/grammar/compile.h"
#include "engine/text/tool_calls.h"
#include "fields.h"

namespace woolly::protocol::openai {
namespace {

using detail::Fields;
using nlohmann::json;

constexpr size_t kMaxTools = 128;

Error invalid(std::string message, std::string param = "", std::string code = "") {
    return Error{400, std::move(message), "invalid_request_error", std::move(param),
                 std::move(code)};
}

std::string dump(const json& j) {
    return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

// Fields of OpenAI's API that Woolly does not serve, each with why: refused by name rather
// than ignored, so that no client believes it got what it asked for.
const std::map<std::string, std::string>& refused_fields(Endpoint endpoint) {
    static const std::string later = " is not supported (the deprecated form of function calls; "
                                     "use 'tools' and 'tool_choice')";
    static const std::map<std::string, std::string> chat = {
        {"functions", "'functions'" + later},
        {"function_call", "'function_call'" + later},
        {"logit_bias", "'logit_bias' is not supported"},
        {"audio", "'audio' is not supported: text only"},
        {"modalities", "'modalities' is not supported: text only"},
        {"prediction", "'prediction' is not supported"},
        {"service_tier", "'service_tier' is not supported"},
        {"store", "'store' is not supported: nothing is stored"},
        {"metadata", "'metadata' is not supported: nothing is stored"},
        {"reasoning_effort", "'reasoning_effort' is not supported"},
        {"web_search_options", "'web_search_options' is not supported"},
    };
    static const std::map<std::string, std::string> completion = {
        {"echo", "'echo' is not supported"},
        {"suffix", "'suffix' is not supported (no fill-in-the-middle)"},
        {"best_of", "'best_of' is not supported: one completion per request"},
        {"logprobs", "'logprobs' is not supported on /v1/completions (its legacy shape); "
                     "/v1/chat/completions reports log-probabilities"},
        {"logit_bias", "'logit_bias' is not supported"},
    };
    return endpoint == Endpoint::Chat ? chat : completion;
}

// A message's content: a string, or an array of text parts (joined).
std::variant<std::string, Error> content_text(const json& content, const std::string& where) {
    if (content.is_string()) return content.get<std::string>();
    if (!content.is_array())
        return invalid(where + " must be a string or an array of text parts", where);
    std::string text;
    for (size_t j = 0; j < content.size(); ++j) {
        const json& part = content[j];
        const std::string at = where + "[" + std::to_string(j) + "]";
        if (!part.is_object()) return invalid(at + " must be an object", at);
        const auto type = part.find("type");
        if (type == part.end() || !type->is_string())
            return invalid(at + ".type must be a string", at + ".type");
        if (*type != "text")
            return invalid(at + ".type is '" + type->get<std::string>() +
                               "': only text parts are supported",
                           at + ".type");
        for (auto it = part.begin(); it != part.end(); ++it)
            if (it.key() != "type" && it.key() != "text")
                return invalid(at + " has unknown field '" + it.key() + "'", at + "." + it.key());
        const auto t = part.find("text");
        if (t == part.end() || !t->is_string())
            return invalid(at + ".text must be a string", at + ".text");
        text += t->get<std::string>();
    }
    return text;
}

// One entry of an assistant's tool_calls.
std::variant<ToolCall, Error> tool_call_of(const json& c, const std::string& where) {
    if (!c.is_object()) return invalid(where + " must be an object", where);
    for (auto it = c.begin(); it != c.end(); ++it)
        if (it.key() != "id" && it.key() != "type" && it.key() != "function")
            return invalid(where + " has unknown field '" + it.key() + "'", where + "." + it.key());
    ToolCall call;
    const auto id = c.find("id");
    if (id == c.end() || !id->is_string() || id->get_ref<const std::string&>().empty())
        return invalid(where + ".id must be a non-empty string", where + ".id");
    call.id = id->get<std::string>();
    if (const auto type = c.find("type"); type != c.end() && *type != "function")
        return invalid(where + ".type must be 'function'", where + ".type");
    const auto f = c.find("function");
    if (f == c.end() || !f->is_object())
        return invalid(where + ".function must be an object with 'name' and 'arguments'",
                       where + ".function");
    for (auto it = f->begin(); it != f->end(); ++it)
        if (it.key() != "name" && it.key() != "arguments" && it.key() != "parsed_arguments")
            return invalid(where + ".function has unknown field '" + it.key() + "'",
                           where + ".function." + it.key());
    const auto name = f->find("name");
    if (name == f->end() || !name->is_string())
        return invalid(where + ".function.name must be a string", where + ".function.name");
    call.name = name->get<std::string>();
    const auto arguments = f->find("arguments");
    if (arguments == f->end() || !arguments->is_string())
        return invalid(where + ".function.arguments must be a string (a JSON object's text)",
                       where + ".function.arguments");
    call.arguments = arguments->get<std::string>();
    json parsed;
    if (!detail::parse_strict(call.arguments, parsed, "arguments").empty() || !parsed.is_object())
        return invalid(where + ".function.arguments must be a JSON object's text",
                       where + ".function.arguments");
    return call;
}

} // namespace

std::variant<std::vector<ChatTurn>, Error> decode_messages(const json* messages) {
    if (!messages) return invalid("'messages' is required", "messages");
    if (!messages->is_array() || messages->empty())
        return invalid("'messages' must be a non-empty array of messages", "messages");
    std::vector<ChatTurn> turns;
    for (size_t i = 0; i < messages->size(); ++i) {
        const json& m = (*messages)[i];
        const std::string where = "messages[" + std::to_string(i) + "]";
        if (!m.is_object()) return invalid(where + " must be an object", where);
        const auto role = m.find("role");
        if (role == m.end() || !role->is_string())
            return invalid(where + ".role must be a string", where + ".role");
        std::string r = role->get<std::string>();
        if (r == "developer") r = "system"; // OpenAI's newer name for the system turn
        if (r != "system" && r != "user" && r != "assistant" && r != "tool")
            return invalid(where + ".role is '" + r +
                               "' (expected system, developer, user, assistant or tool)",
                           where + ".role");
        for (auto it = m.begin(); it != m.end(); ++it) {
            const std::string& key = it.key();
            if (key == "role" || key == "content" || (key == "tool_calls" && r == "assistant") ||
                (key == "tool_call_id" && r == "tool"))
                continue;
            // What a response's message carries besides, so that clients (the OpenAI SDK's
            // stream helper) can send a reply back as they got it: nothing the template uses.
            if (r == "assistant" && (key == "refusal" || key == "parsed" || key == "annotations" ||
                                     ((key == "function_call" || key == "audio") && it->is_null())))
                continue;
            return invalid(where + "." + key + " is not supported in a " + r + " message (" +
                               (r == "assistant" ? "it has 'role', 'content' and 'tool_calls')"
                                : r == "tool"    ? "it has 'role', 'content' and 'tool_call_id')"
                                                 : "it has 'role' and 'content')"),
                           where + "." + key);
        }
        ChatTurn turn;
        turn.role = r;
        if (const auto calls = m.find("tool_calls"); calls != m.end() && !calls->is_null()) {
            if (!calls->is_array() || calls->empty())
                return invalid(where + ".tool_calls must be a non-empty array",
                               where + ".tool_calls");
            for (size_t j = 0; j < calls->size(); ++j) {
                auto call =
                    tool_call_of((*calls)[j], where + ".tool_calls[" + std::to_string(j) + "]");
                if (auto* e = std::get_if<Error>(&call)) return *e;
                turn.tool_calls.push_back(std::move(std::get<ToolCall>(call)));
            }
        }
        if (r == "tool") {
            const auto id = m.find("tool_call_id");
            if (id == m.end() || !id->is_string())
                return invalid(where + ".tool_call_id must be a string (the call it answers)",
                               where + ".tool_call_id");
            turn.tool_call_id = id->get<std::string>();
        }
        const auto content = m.find("content");
        if (content == m.end() || content->is_null()) {
            if (turn.tool_calls.empty())
                return invalid(where + ".content is required", where + ".content");
        } else {
            auto text = content_text(*content, where + ".content");
            if (auto* e = std::get_if<Error>(&text)) return *e;
            turn.content = std::move(std::get<std::string>(text));
        }
        turns.push_back(std::move(turn));
    }
    return turns;
}

namespace {

// The request's tools, checked: each a function with a name (OpenAI's [A-Za-z0-9_-]{1,64}, no
// two alike), an optional description, parameters (an object schema, compiled here so that a
// bad one is refused with its path) and strict.
std::optional<Error> check_tools(const nlohmann::ordered_json& tools) {
    if (!tools.is_array() || tools.empty())
        return invalid("'tools' must be a non-empty array of functions", "tools");
    if (tools.size() > kMaxTools)
        return invalid("'tools' holds more than " + std::to_string(kMaxTools) + " functions",
                       "tools");
    std::set<std::string> names;
    for (size_t i = 0; i < tools.size(); ++i) {
        const auto& t = tools[i];
        const std::string where = "tools[" + std::to_string(i) + "]";
        if (!t.is_object()) return invalid(where + " must be an object", where);
        for (auto it = t.begin(); it != t.end(); ++it)
            if (it.key() != "type" && it.key() != "function")
                return invalid(where + " has unknown field '" + it.key() + "'",
                               where + "." + it.key());
        if (!t.contains("type") || t["type"] != "function")
            return invalid(where + ".type must be 'function'", where + ".type");
        if (!t.contains("function") || !t["function"].is_object())
            return invalid(where + ".function must be an object", where + ".function");
        const auto& f = t["function"];
        for (auto it = f.begin(); it != f.end(); ++it)
            if (it.key() != "name" && it.key() != "description" && it.key() != "parameters" &&
                it.key() != "strict")
                return invalid(where + ".function has unknown field '" + it.key() +
                                   "' (expected name, description, parameters, strict)",
                               where + ".function." + it.key());
        const std::string at = where + ".function";
        if (!f.contains("name") || !f["name"].is_string())
            return invalid(at + ".name must be a string", at + ".name");
        const std::string name = f["name"].get<std::string>();
        const bool name_ok =
            !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char c) {
                return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
            });
        if (!name_ok)
            return invalid(at + ".name '" + name + "' must be 1 to 64 of a-z, A-Z, 0-9, _ and -",
                           at + ".name");
        if (!names.insert(name).second)
            return invalid(at + ".name '" + name + "' is given twice", at + ".name");
        if (f.contains("description") && !f["description"].is_string())
            return invalid(at + ".description must be a string", at + ".description");
        if (f.contains("strict") && !f["strict"].is_boolean())
            return invalid(at + ".strict must be true or false", at + ".strict");
        if (f.contains("parameters")) {
            const bool strict = f.value("strict", false);
            grammar::ToolSchema schema{name, &f["parameters"], at + ".parameters"};
            try {
                grammar::compile_tool_calls(ToolSyntax::Hermes, {schema}, false, strict);
            } catch (const std::exception& e) {
                return invalid(e.what(), at + ".parameters");
            }
        }
    }
    return std::nullopt;
}

json usage_json(const Totals& t) {
    return {{"prompt_tokens", t.prompt_tokens},
            {"completion_tokens", t.completion_tokens},
            {"total_tokens", t.prompt_tokens + t.completion_tokens},
            {"prompt_tokens_details", {{"cached_tokens", t.cached_tokens}}}};
}

json head_json(const Head& h, bool chunk) {
    const char* object = h.endpoint == Endpoint::Chat
                             ? (chunk ? "chat.completion.chunk" : "chat.completion")
                             : "text_completion";
    return {{"id", h.id}, {"object", object}, {"created", h.created}, {"model", h.model}};
}

json finish_json(std::string_view finish) {
    return finish.empty() ? json(nullptr) : json(finish);
}

} // namespace

std::string encode_error(const Error& e) {
    return dump({{"error",
                  {{"message", e.message},
                   {"type", e.type},
                   {"param", e.param.empty() ? json(nullptr) : json(e.param)},
                   {"code", e.code.empty() ? json(nullptr) : json(e.code)}}}});
}

Error error_from(ErrorCode code, std::string message) {
    switch (code) {
    case ErrorCode::Busy:
        return {429, std::move(message), "rate_limit_error", "", "busy"};
    case ErrorCode::ShuttingDown:
        return {503, std::move(message), "server_error", "", "shutting_down"};
    case ErrorCode::Loading:
        return {503, std::move(message), "server_error", "", "loading"};
    case ErrorCode::Internal:
        return {500, std::move(message), "server_error", "", "internal"};
    case ErrorCode::NotFound:
        return {404, std::move(message), "invalid_request_error", "", "not_found"};
    case ErrorCode::TooLarge:
        return {400, std::move(message), "invalid_request_error", "", "context_length_exceeded"};
    case ErrorCode::BadRequest:
    case ErrorCode::DuplicateId:
        break;
    }
    return {400, std::move(message), "invalid_request_error", "", error_code_name(code)};
}

std::variant<CompletionRequest, Error> decode_completion(std::string_view body, Endpoint endpoint,
                                                         const DecodeLimits& limits) {
    json object;
    if (std::string why = detail::parse_strict(body, object, "the body"); !why.empty())
        return invalid(why);
    if (!object.is_object()) return invalid("the body must be a JSON object");
    const bool chat = endpoint == Endpoint::Chat;
    static const std::set<std::string> common = {"model",
                                                 "max_tokens",
                                                 "temperature",
                                                 "top_p",
                                                 "seed",
                                                 "stop",
                                                 "stream",
                                                 "stream_options",
                                                 "presence_penalty",
                                                 "frequency_penalty",
                                                 "user",
                                                 "n",
                                                 "top_k",
                                                 "min_p",
                                                 "repeat_penalty",
                                                 "repeat_last_n",
                                                 "response_format"};
    const auto& refused = refused_fields(endpoint);
    for (auto it = object.begin(); it != object.end(); ++it) {
        const std::string& key = it.key();
        if (common.count(key)) continue;
        if (chat && (key == "messages" || key == "max_completion_tokens" || key == "logprobs" ||
                     key == "top_logprobs" || key == "tools" || key == "tool_choice" ||
                     key == "parallel_tool_calls" || key == "chat_template_kwargs"))
            continue;
        if (!chat && key == "prompt") continue;
        // false and null ask for nothing Woolly lacks (`logprobs: false`, `tools: null`).
        if (auto r = refused.find(key); r != refused.end()) {
            if (it->is_null() || (it->is_boolean() && !it->get<bool>())) continue;
            return invalid(r->second, key, "unsupported_parameter");
        }
        if (!chat && key == "messages")
            return invalid("'messages' belongs to /v1/chat/completions; this endpoint takes "
                           "'prompt'",
                           key);
        if (chat && key == "prompt")
            return invalid("'prompt' belongs to /v1/completions; this endpoint takes 'messages'",
                           key);
        return invalid("unknown field '" + key + "'", key, "unknown_parameter");
    }
    Fields f{object, std::nullopt, {}};
    CompletionRequest r;
    r.endpoint = endpoint;
    if (auto model = f.string("model")) r.model = *model;
    if (chat) {
        auto turns = decode_messages(f.get("messages"));
        if (auto* e = std::get_if<Error>(&turns)) return *e;
        r.messages = std::move(std::get<std::vector<ChatTurn>>(turns));
    } else {
        const json* prompt = f.get("prompt");
        if (!prompt) return invalid("'prompt' is required", "prompt");
        if (prompt->is_array())
            return invalid("'prompt' as an array (several prompts, or token ids) is not "
                           "supported: give one string",
                           "prompt");
        if (!prompt->is_string()) return invalid("'prompt' must be a string", "prompt");
        r.prompt = prompt->get<std::string>();
    }
    // chat_template_kwargs (vLLM's and llama.cpp's server's): the template's variables; Woolly's
    // templates have one, enable_thinking.
    if (const json* kwargs = chat ? f.get("chat_template_kwargs") : nullptr;
        kwargs && !kwargs->is_null()) {
        if (!kwargs->is_object())
            return invalid("'chat_template_kwargs' must be an object", "chat_template_kwargs");
        for (auto it = kwargs->begin(); it != kwargs->end(); ++it) {
            if (it.key() != "enable_thinking")
                return invalid("'chat_template_kwargs." + it.key() +
                                   "' is not a variable of Woolly's templates (they take "
                                   "enable_thinking)",
                               "chat_template_kwargs." + it.key());
            if (!it->is_boolean())
                return invalid("'chat_template_kwargs.enable_thinking' must be true or false",
                               "chat_template_kwargs.enable_thinking");
            r.enable_thinking = it->get<bool>();
        }
    }
    if (auto n = f.integer("n", 1, INT32_MAX); n && *n != 1)
        return invalid("'n' must be 1: one choice per request", "n");
    // max_tokens (and chat's newer max_completion_tokens): above the daemon's cap is refused.
    GenerationParams& p = r.params = limits.defaults;
    std::optional<int64_t> max_tokens;
    for (const char* name : {"max_tokens", "max_completion_tokens"}) {
        const json* v = f.get(name);
        if (!v || v->is_null()) continue;
        if (v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(limits.max_tokens))
            return invalid(std::string("'") + name + "' exceeds the limit of " +
                               std::to_string(limits.max_tokens),
                           name);
        auto value = f.integer(name, 1, limits.max_tokens);
        if (value && max_tokens && *value != *max_tokens)
            return invalid("'max_tokens' and 'max_completion_tokens' differ", name);
        if (value) max_tokens = value;
    }
    if (max_tokens) p.max_tokens = int32_t(*max_tokens);
    f.sampling(p.sampling);
    r.seed_given = f.seed("seed", p.sampling.seed);
    if (const json* stop = f.get("stop"); stop && !stop->is_null())
        f.stop("stop", p.stop, limits.max_stop_strings, limits.max_stop_bytes, true);
    if (auto v = f.get("user"); v && !v->is_string()) f.fail("'user' must be a string", "user");
    if (auto stream = f.boolean("stream")) r.stream = *stream;
    if (const json* options = f.get("stream_options"); options && !options->is_null() && !f.error) {
        if (!r.stream)
            return invalid("'stream_options' goes with 'stream': true", "stream_options");
        if (!options->is_object())
            return invalid("'stream_options' must be an object", "stream_options");
        for (auto it = options->begin(); it != options->end(); ++it)
            if (it.key() != "include_usage")
                return invalid("stream_options." + it.key() + " is not supported",
                               "stream_options." + it.key());
        if (auto usage = options->find("include_usage"); usage != options->end()) {
            if (!usage->is_boolean())
                return invalid("stream_options.include_usage must be true or false",
                               "stream_options.include_usage");
            r.include_usage = usage->get<bool>();
        }
    }
    if (chat) {
        if (auto v = f.boolean("logprobs")) r.logprobs = *v;
        if (const json* top = f.get("top_logprobs"); top && !top->is_null()) {
            if (!r.logprobs && !f.error)
                return invalid("'top_logprobs' goes with 'logprobs': true", "top_logprobs");
            if (auto v = f.integer("top_logprobs", 0, TokenLogprobs::kMaxTop))
                p.logprobs = int32_t(*v);
        }
        if (r.logprobs && p.logprobs < 0) p.logprobs = 0;
    }
    const json* format = f.get("response_format");
    const json* tools = chat ? f.get("tools") : nullptr;
    const bool has_tools = tools && !tools->is_null();
    // Schemas keep their properties' order: those parts are read again, in order.
    nlohmann::ordered_json ordered;
    if ((format && !format->is_null()) || has_tools) ordered = nlohmann::ordered_json::parse(body);
    if (format && !format->is_null()) {
        if (has_tools)
            return invalid("'response_format' with 'tools' is not supported: ask for one of them",
                           "response_format");
        f.grammar(ordered, false, p.constraint);
    }
    if (chat) {
        const json* choice = f.get("tool_choice");
        const json* parallel = f.get("parallel_tool_calls");
        if (!has_tools && choice && !choice->is_null())
            return invalid("'tool_choice' goes with 'tools'", "tool_choice");
        if (has_tools) {
            if (auto e = check_tools(ordered["tools"])) return *e;
            r.tools = ordered["tools"];
            if (r.logprobs) return invalid("'logprobs' with 'tools' is not supported", "logprobs");
        }
        if (choice && !choice->is_null()) {
            if (*choice == "none")
                r.tool_choice = ToolChoice::None;
            else if (*choice == "auto")
                r.tool_choice = ToolChoice::Auto;
            else if (*choice == "required")
                r.tool_choice = ToolChoice::Required;
            else if (choice->is_object() && choice->value("type", "") == "function" &&
                     choice->contains("function") && (*choice)["function"].is_object() &&
                     (*choice)["function"].contains("name") &&
                     (*choice)["function"]["name"].is_string() && choice->size() == 2 &&
                     (*choice)["function"].size() == 1) {
                r.tool_choice = ToolChoice::Named;
                r.tool_name = (*choice)["function"]["name"].get<std::string>();
                bool known = false;
                for (const auto& t : r.tools) known = known || t["function"]["name"] == r.tool_name;
                if (!known)
                    return invalid("tool_choice names '" + r.tool_name +
                                       "', which is not among the tools",
                                   "tool_choice");
            } else {
                return invalid("'tool_choice' must be 'none', 'auto', 'required' or "
                               "{\"type\": \"function\", \"function\": {\"name\": NAME}}",
                               "tool_choice");
            }
        }
        if (parallel && !parallel->is_null()) {
            if (!parallel->is_boolean())
                return invalid("'parallel_tool_calls' must be true or false",
                               "parallel_tool_calls");
            if (!has_tools)
                return invalid("'parallel_tool_calls' goes with 'tools'", "parallel_tool_calls");
            r.parallel_tool_calls = parallel->get<bool>();
        }
    }
    f.validate(p);
    if (f.error) return invalid(*f.error, f.param);
    return r;
}

const char* finish_reason(std::string_view reason) {
    if (reason == "stop" || reason == "eos") return "stop";
    if (reason == "length") return "length";
    if (reason == "cancelled") return "cancelled";
    return "error";
}

std::string encode_response(const Head& head, std::string_view text, std::string_view finish,
                            const Totals& totals, const std::string* logprobs,
                            const std::vector<ToolCall>* calls, std::string_view reasoning) {
    json choice = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", finish_json(finish)}};
    if (logprobs) choice["logprobs"] = json::parse("{\"content\":[" + *logprobs + "]}");
    if (head.endpoint == Endpoint::Chat && calls && !calls->empty()) {
        json list = json::array();
        for (const ToolCall& c : *calls)
            list.push_back({{"id", c.id},
                            {"type", "function"},
                            {"function", {{"name", c.name}, {"arguments", c.arguments}}}});
        choice["message"] = {{"role", "assistant"},
                             {"content", text.empty() ? json(nullptr) : json(text)},
                             {"tool_calls", std::move(list)}};
    } else if (head.endpoint == Endpoint::Chat)
        choice["message"] = {{"role", "assistant"}, {"content", text}};
    else
        choice["text"] = text;
    if (head.endpoint == Endpoint::Chat && !reasoning.empty())
        choice["message"]["reasoning_content"] = reasoning;
    json out = head_json(head, false);
    out["choices"] = json::array({std::move(choice)});
    out["usage"] = usage_json(totals);
    return dump(out);
}

std::string encode_tool_call_chunk(const Head& head, size_t index, const ToolCall& call) {
    json entry = {{"index", index}};
    if (!call.id.empty()) {
        entry["id"] = call.id;
        entry["type"] = "function";
        entry["function"] = {{"name", call.name}, {"arguments", call.arguments}};
    } else {
        entry["function"] = {{"arguments", call.arguments}};
    }
    json out = head_json(head, true);
    out["choices"] = json::array({{{"index", 0},
                                   {"delta", {{"tool_calls", json::array({std::move(entry)})}}},
                                   {"logprobs", nullptr},
                                   {"finish_reason", nullptr}}});
    return dump(out);
}

namespace {

// A chunk whose chat delta puts `text` in `field` (content or reasoning_content), written
// straight into the string (a chunk per token): the JSON nlohmann would write.
std::string chunk(const Head& head, const char* field, std::string_view text, bool role,
                  std::string_view finish, const std::string* logprobs) {
    std::string out = "{\"id\":";
    append_json_string(out, head.id);
    out += head.endpoint == Endpoint::Chat ? ",\"object\":\"chat.completion.chunk\""
                                           : ",\"object\":\"text_completion\"";
    out += ",\"created\":" + std::to_string(head.created) + ",\"model\":";
    append_json_string(out, head.model);
    out += ",\"choices\":[{\"index\":0,";
    if (head.endpoint == Endpoint::Chat) {
        out += "\"delta\":{";
        if (role) out += "\"role\":\"assistant\"";
        if (!text.empty() || (role && finish.empty())) {
            if (role) out += ',';
            out += '"';
            out += field;
            out += "\":";
            append_json_string(out, text);
        }
        out += "},";
    } else {
        out += "\"text\":";
        append_json_string(out, text);
        out += ',';
    }
    if (logprobs)
        out += "\"logprobs\":{\"content\":[" + *logprobs + "]},\"finish_reason\":";
    else
        out += "\"logprobs\":null,\"finish_reason\":";
    if (finish.empty())
        out += "null";
    else
        append_json_string(out, finish);
    out += "}]}";
    return out;
}

} // namespace

std::string encode_chunk(const Head& head, std::string_view text, bool role,
                         std::string_view finish, const std::string* logprobs) {
    return chunk(head, "content", text, role, finish, logprobs);
}

std::string encode_reasoning_chunk(const Head& head, std::string_view text, bool role) {
    return chunk(head, "reasoning_content", text, role, "", nullptr);
}

std::string encode_usage_chunk(const Head& head, const Totals& totals) {
    json out = head_json(head, true);
    out["choices"] = json::array();
    out["usage"] = usage_json(totals);
    return dump(out);
}

std::string logprob_entry(const json& m) {
    auto entry = [](const json& bytes, const json& logprob) {
        std::string text;
        json list = json::array();
        if (bytes.is_array())
            for (const json& b : bytes) {
                text += char(b.get<int>());
                list.push_back(b);
            }
        return json{{"token", text}, {"logprob", logprob}, {"bytes", list}};
    };
    json out = entry(m.value("bytes", json::array()), m.value("logprob", 0.0));
    json top = json::array();
    for (const json& t : m.value("top_logprobs", json::array()))
        top.push_back(entry(t.value("bytes", json::array()), t.value("logprob", 0.0)));
    out["top_logprobs"] = std::move(top);
    return dump(out);
}

json model_object(const std::string& id, int64_t created) {
    return {{"id", id}, {"object", "model"}, {"created", created}, {"owned_by", "woolly"}};
}

std::variant<TokenizeRequest, Error> decode_tokenize(std::string_view body) {
    json object;
    if (std::string why = detail::parse_strict(body, object, "the body"); !why.empty())
        return invalid(why);
    if (!object.is_object()) return invalid("the body must be a JSON object");
    if (const std::string* key =
            detail::unknown_field(object, {"content", "add_special", "with_pieces"}))
        return invalid("unknown field '" + *key + "' (expected content, add_special, with_pieces)",
                       *key);
    Fields f{object, std::nullopt, {}};
    TokenizeRequest r;
    auto content = f.string("content");
    if (!content && !f.error) f.fail("'content' is required", "content");
    if (auto v = f.boolean("add_special")) r.add_special = *v;
    if (auto v = f.boolean("with_pieces")) r.with_pieces = *v;
    if (f.error) return invalid(*f.error, f.param);
    r.content = std::move(*content);
    return r;
}

std::variant<std::vector<int32_t>, Error> decode_detokenize(std::string_view body,
                                                            int32_t n_vocab) {
    json object;
    if (std::string why = detail::parse_strict(body, object, "the body"); !why.empty())
        return invalid(why);
    if (!object.is_object()) return invalid("the body must be a JSON object");
    if (const std::string* key = detail::unknown_field(object, {"tokens"}))
        return invalid("unknown field '" + *key + "' (expected tokens)", *key);
    const auto tokens = object.find("tokens");
    if (tokens == object.end()) return invalid("'tokens' is required", "tokens");
    if (!tokens->is_array()) return invalid("'tokens' must be an array of token ids", "tokens");
    std::vector<int32_t> out;
    out.reserve(tokens->size());
    for (size_t i = 0; i < tokens->size(); ++i) {
        const json& t = (*tokens)[i];
        if (!t.is_number_unsigned() || t.get<uint64_t>() >= uint64_t(n_vocab))
            return invalid("tokens[" + std::to_string(i) + "] must be a token id, 0 to " +
                               std::to_string(n_vocab - 1),
                           "tokens");
        out.push_back(int32_t(t.get<uint64_t>()));
    }
    return out;
}

} // namespace woolly::protocol::openai
