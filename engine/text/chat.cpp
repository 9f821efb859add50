// chat.cpp — one formatter per chat-template family, each written from its Jinja template and
// checked byte for byte against Jinja's rendering (tests/test_chat_templates.py).
#include "engine/text/chat.h"

#include <algorithm>
#include <ctime>

#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "engine/gguf/gguf.h"
#include "engine/text/utf8.h"
#include "engine/text/vocab.h"

namespace woolly {
namespace {

struct Named {
    ChatTemplate t;
    std::string_view name;
};
constexpr Named kNames[] = {
    {ChatTemplate::Llama3, "llama3"},
    {ChatTemplate::Llama31, "llama3.1"},
    {ChatTemplate::ChatMl, "chatml"},
    {ChatTemplate::Qwen3, "qwen3"},
    {ChatTemplate::Phi3, "phi3"},
    {ChatTemplate::Gemma, "gemma"},
    {ChatTemplate::Llama2, "llama2"},
    {ChatTemplate::MistralV1, "mistral-v1"},
    {ChatTemplate::Zephyr, "zephyr"},
    {ChatTemplate::DeepSeek, "deepseek"},
    {ChatTemplate::MistralNemo, "mistral-nemo"},
};

using ojson = nlohmann::ordered_json;

bool contains(std::string_view s, std::string_view what) {
    return s.find(what) != std::string_view::npos;
}

// Python's str.isspace() for one code point.
bool python_space(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0d) || (cp >= 0x1c && cp <= 0x20) || cp == 0x85 || cp == 0xa0 ||
           cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 ||
           cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

// Python's s.lstrip(chars) / rstrip(chars) / strip(chars) for a set of ASCII characters.
std::string_view lstrip(std::string_view s, std::string_view chars) {
    const size_t at = s.find_first_not_of(chars);
    return at == std::string_view::npos ? std::string_view() : s.substr(at);
}
std::string_view rstrip(std::string_view s, std::string_view chars) {
    const size_t at = s.find_last_not_of(chars);
    return at == std::string_view::npos ? std::string_view() : s.substr(0, at + 1);
}

[[noreturn]] void raise(const std::string& what) {
    throw Error("chat template: " + what);
}

// The user and assistant turns of templates that take nothing else, alternating from a user.
void check_alternation(const std::vector<ChatMessage>& turns, size_t first, const char* message) {
    for (size_t i = first; i < turns.size(); ++i)
        if ((turns[i].role == "user") != ((i - first) % 2 == 0)) raise(message);
}

std::string llama3(const std::vector<ChatMessage>& m, const ChatTokens& tok) {
    std::string out;
    for (size_t i = 0; i < m.size(); ++i) {
        if (i == 0) out += tok.bos;
        out += "<|start_header_id|>" + m[i].role + "<|end_header_id|>\n\n" +
               python_strip(m[i].content) + "<|eot_id|>";
    }
    return out + "<|start_header_id|>assistant<|end_header_id|>\n\n"; // always opened
}

std::string chatml(const std::vector<ChatMessage>& m, bool add_generation_prompt) {
    std::string out;
    for (const ChatMessage& msg : m)
        out += "<|im_start|>" + msg.role + "\n" + msg.content + "<|im_end|>\n";
    if (add_generation_prompt) out += "<|im_start|>assistant\n";
    return out;
}

// A call's arguments as the template sees them: the object its JSON text holds.
ojson arguments_object(const ToolCall& call) {
    try {
        return ojson::parse(call.arguments);
    } catch (const std::exception&) {
        raise("the arguments of tool call '" + call.id + "' are not JSON");
    }
}

std::string qwen3(const std::vector<ChatMessage>& m, bool add_generation_prompt, const ojson* tools,
                  bool enable_thinking) {
    std::string out;
    if (tools) {
        out += "<|im_start|>system\n";
        if (!m.empty() && m[0].role == "system") out += m[0].content + "\n\n";
        out += "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
               "You are provided with function signatures within <tools></tools> XML tags:\n"
               "<tools>";
        for (const ojson& tool : *tools) {
            out += '\n';
            out += python_json(tool);
        }
        out += "\n</tools>\n\nFor each function call, return a json object with function name "
               "and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": "
               "<function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n";
    } else if (!m.empty() && m[0].role == "system") {
        out += "<|im_start|>system\n" + m[0].content + "<|im_end|>\n";
    }
    // The last user turn that is not a tool's response (the template's last_query_index).
    size_t last_query = m.empty() ? 0 : m.size() - 1;
    for (size_t k = m.size(); k-- > 0;) {
        const std::string& c = m[k].content;
        const bool tool_response =
            c.starts_with("<tool_response>") && c.ends_with("</tool_response>");
        if (m[k].role == "user" && !tool_response) {
            last_query = k;
            break;
        }
    }
    for (size_t i = 0; i < m.size(); ++i) {
        const ChatMessage& msg = m[i];
        if (msg.role == "user" || (msg.role == "system" && i > 0)) {
            out += "<|im_start|>" + msg.role + "\n" + msg.content + "<|im_end|>\n";
        } else if (msg.role == "assistant") {
            std::string content = msg.content;
            std::string reasoning;
            if (const size_t end = msg.content.rfind("</think>"); end != std::string::npos) {
                // content.split('</think>')[-1].lstrip('\n'); the reasoning is what precedes
                // the first '</think>', after its last '<think>', without newlines around it.
                content = std::string(lstrip(std::string_view(msg.content).substr(end + 8), "\n"));
                std::string_view before =
                    std::string_view(msg.content).substr(0, msg.content.find("</think>"));
                before = rstrip(before, "\n");
                if (const size_t open = before.rfind("<think>"); open != std::string_view::npos)
                    before = before.substr(open + 7);
                reasoning = std::string(lstrip(before, "\n"));
            }
            if (i > last_query && (i + 1 == m.size() || !reasoning.empty())) {
                out += "<|im_start|>assistant\n<think>\n" +
                       std::string(rstrip(lstrip(reasoning, "\n"), "\n")) + "\n</think>\n\n" +
                       std::string(lstrip(content, "\n"));
            } else {
                out += "<|im_start|>assistant\n" + content;
            }
            for (size_t j = 0; j < msg.tool_calls.size(); ++j) {
                if (j > 0 || !content.empty()) out += "\n";
                out += "<tool_call>\n{\"name\": \"" + msg.tool_calls[j].name +
                       "\", \"arguments\": " + python_json(arguments_object(msg.tool_calls[j])) +
                       "}\n</tool_call>";
            }
            out += "<|im_end|>\n";
        } else if (msg.role == "tool") {
            if (i == 0 || m[i - 1].role != "tool") out += "<|im_start|>user";
            out += "\n<tool_response>\n" + msg.content + "\n</tool_response>";
            if (i + 1 == m.size() || m[i + 1].role != "tool") out += "<|im_end|>\n";
        }
    }
    if (add_generation_prompt) {
        out += "<|im_start|>assistant\n";
        if (!enable_thinking) out += "<think>\n\n</think>\n\n";
    }
    return out;
}

// Llama 3.1-3.3 Instruct (Meta's template, tools in the first user message as its default
// tools_in_user_message has them; the date as transformers' strftime_now gives it).
std::string llama31(const std::vector<ChatMessage>& all, bool add_generation_prompt,
                    const ChatTokens& tok, const ojson* tools) {
    char date[32];
    const std::time_t now = std::time(nullptr);
    std::tm local{};
    localtime_r(&now, &local);
    std::strftime(date, sizeof date, "%d %b %Y", &local);
    std::vector<ChatMessage> m = all;
    std::string system;
    if (!m.empty() && m[0].role == "system") {
        system = python_strip(m[0].content);
        m.erase(m.begin());
    }
    std::string out = tok.bos + "<|start_header_id|>system<|end_header_id|>\n\n";
    if (tools) out += "Environment: ipython\n";
    out += "Cutting Knowledge Date: December 2023\nToday Date: " + std::string(date) + "\n\n";
    out += system + "<|eot_id|>";
    if (tools) {
        if (m.empty())
            raise("Cannot put tools in the first user message when there's no first user "
                  "message!");
        const std::string first = python_strip(m[0].content);
        m.erase(m.begin());
        out += "<|start_header_id|>user<|end_header_id|>\n\nGiven the following functions, "
               "please respond with a JSON for a function call with its proper arguments that "
               "best answers the given prompt.\n\nRespond in the format {\"name\": function "
               "name, \"parameters\": dictionary of argument name and its value}.Do not use "
               "variables.\n\n";
        for (const ojson& t : *tools) out += python_json(t, 4) + "\n\n";
        out += first + "<|eot_id|>";
    }
    for (const ChatMessage& msg : m) {
        if (msg.role == "tool" || msg.role == "ipython") {
            // A string is iterable to Jinja: the result goes in as JSON text.
            out += "<|start_header_id|>ipython<|end_header_id|>\n\n" + python_json(msg.content) +
                   "<|eot_id|>";
        } else if (!msg.tool_calls.empty()) {
            if (msg.tool_calls.size() != 1)
                raise("This model only supports single tool-calls at once!");
            const ToolCall& call = msg.tool_calls[0];
            out += "<|start_header_id|>assistant<|end_header_id|>\n\n{\"name\": \"" + call.name +
                   "\", \"parameters\": " + python_json(arguments_object(call)) + "}<|eot_id|>";
        } else {
            out += "<|start_header_id|>" + msg.role + "<|end_header_id|>\n\n" +
                   python_strip(msg.content) + "<|eot_id|>";
        }
    }
    if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
    return out;
}

bool same_message(const ChatMessage& a, const ChatMessage& b) {
    if (a.role != b.role || a.content != b.content || a.tool_call_id != b.tool_call_id ||
        a.tool_calls.size() != b.tool_calls.size())
        return false;
    for (size_t i = 0; i < a.tool_calls.size(); ++i)
        if (a.tool_calls[i].id != b.tool_calls[i].id ||
            a.tool_calls[i].name != b.tool_calls[i].name ||
            a.tool_calls[i].arguments != b.tool_calls[i].arguments)
            return false;
    return true;
}

// Mistral Nemo Instruct: the tools before the last user turn, calls with 9-character ids.
std::string mistral_nemo(const std::vector<ChatMessage>& m, const ChatTokens& tok,
                         const ojson* tools) {
    std::optional<std::string> system;
    size_t first = 0;
    if (!m.empty() && m[0].role == "system") {
        system = m[0].content;
        first = 1;
    }
    const ChatMessage* last_user = nullptr;
    size_t index = 0;
    for (size_t i = first; i < m.size(); ++i) {
        if (m[i].role == "user") last_user = &m[i];
        if (m[i].role == "tool" || m[i].role == "tool_results" || !m[i].tool_calls.empty())
            continue;
        if ((m[i].role == "user") != (index % 2 == 0))
            raise("After the optional system message, conversation roles must alternate "
                  "user/assistant/user/assistant/...");
        ++index;
    }
    auto check_id = [](const std::string& id) {
        if (id.size() != 9) raise("Tool call IDs should be alphanumeric strings with length 9!");
    };
    std::string out = tok.bos;
    for (size_t i = first; i < m.size(); ++i) {
        const ChatMessage& msg = m[i];
        if (msg.role == "user") {
            if (tools && same_message(msg, *last_user)) {
                out += "[AVAILABLE_TOOLS][";
                for (size_t t = 0; t < tools->size(); ++t) {
                    out += "{\"type\": \"function\", \"function\": {";
                    const ojson& f = (*tools)[t].at("function");
                    std::vector<std::string> items;
                    for (auto it = f.begin(); it != f.end(); ++it) {
                        if (it.key() == "return") continue;
                        items.push_back(it.value().is_string()
                                            ? "\"" + it.key() + "\": \"" +
                                                  it.value().get<std::string>() + "\""
                                            : "\"" + it.key() + "\": " + python_json(it.value()));
                    }
                    for (size_t k = 0; k < items.size(); ++k)
                        out += items[k] + (k + 1 < items.size() ? ", " : "");
                    out += "}}";
                    out += t + 1 < tools->size() ? ", " : "]";
                }
                out += "[/AVAILABLE_TOOLS]";
            }
            if (i + 1 == m.size() && system)
                out += "[INST]" + *system + "\n\n" + msg.content + "[/INST]";
            else
                out += "[INST]" + msg.content + "[/INST]";
        } else if (!msg.tool_calls.empty()) {
            out += "[TOOL_CALLS][";
            for (size_t j = 0; j < msg.tool_calls.size(); ++j) {
                const ToolCall& call = msg.tool_calls[j];
                ojson function = {{"name", call.name}, {"arguments", arguments_object(call)}};
                const std::string text = python_json(function);
                out += text.substr(0, text.size() - 1);
                check_id(call.id);
                out += ", \"id\": \"" + call.id + "\"}";
                out += j + 1 < msg.tool_calls.size() ? ", " : "]" + tok.eos;
            }
        } else if (msg.role == "assistant") {
            out += msg.content + tok.eos;
        } else if (msg.role == "tool" || msg.role == "tool_results") {
            out += "[TOOL_RESULTS]{\"content\": " + msg.content + ", ";
            check_id(msg.tool_call_id);
            out += "\"call_id\": \"" + msg.tool_call_id + "\"}[/TOOL_RESULTS]";
        } else {
            raise("Only user and assistant roles are supported, with the exception of an "
                  "initial optional system message!");
        }
    }
    return out;
}

std::string phi3(const std::vector<ChatMessage>& m, const ChatTokens& tok) {
    std::string out = tok.bos;
    for (const ChatMessage& msg : m) {
        if (msg.role == "user")
            out += "<|user|>\n" + msg.content + "<|end|>\n<|assistant|>\n";
        else if (msg.role == "assistant")
            out += msg.content + "<|end|>\n";
    }
    return out;
}

std::string gemma(const std::vector<ChatMessage>& m, bool add_generation_prompt,
                  const ChatTokens& tok) {
    std::string out = tok.bos;
    std::string prefix;
    size_t first = 0;
    if (!m.empty() && m[0].role == "system") {
        prefix = m[0].content + "\n\n";
        first = 1;
    }
    check_alternation(m, first,
                      "Conversation roles must alternate user/assistant/user/assistant/...");
    for (size_t i = first; i < m.size(); ++i) {
        const std::string role = m[i].role == "assistant" ? "model" : m[i].role;
        out += "<start_of_turn>" + role + "\n" + (i == first ? prefix : "") +
               python_strip(m[i].content) + "<end_of_turn>\n";
    }
    if (add_generation_prompt) out += "<start_of_turn>model\n";
    return out;
}

std::string llama2(const std::vector<ChatMessage>& m, const ChatTokens& tok) {
    std::string out = tok.bos;
    for (size_t i = 0; i < m.size(); ++i) {
        if ((m[i].role == "user") != (i % 2 == 0))
            raise("Conversation roles must alternate user/assistant/user/assistant/...");
        if (m[i].role == "user")
            out += "[INST] " + m[i].content + " [/INST]";
        else if (m[i].role == "assistant")
            out += m[i].content + tok.eos;
        else
            raise("Only user and assistant roles are supported!");
    }
    return out;
}

std::string mistral_v1(const std::vector<ChatMessage>& m, const ChatTokens& tok) {
    std::optional<std::string> system;
    size_t first = 0;
    if (!m.empty() && m[0].role == "system") {
        system = m[0].content;
        first = 1;
    }
    std::string out = tok.bos;
    for (size_t i = first; i < m.size(); ++i) {
        if ((m[i].role == "user") != ((i - first) % 2 == 0))
            raise("After the optional system message, conversation roles must alternate "
                  "user/assistant/user/assistant/...");
        if (m[i].role == "user") {
            if (i == first && system)
                out += " [INST] " + *system + "\n\n" + m[i].content + " [/INST]";
            else
                out += " [INST] " + m[i].content + " [/INST]";
        } else if (m[i].role == "assistant") {
            out += " " + m[i].content + tok.eos;
        } else {
            raise("Only user and assistant roles are supported, with the exception of an "
                  "initial optional system message!");
        }
    }
    return out;
}

std::string zephyr(const std::vector<ChatMessage>& m, bool add_generation_prompt,
                   const ChatTokens& tok) {
    std::string out;
    for (size_t i = 0; i < m.size(); ++i) {
        if (m[i].role == "user" || m[i].role == "system" || m[i].role == "assistant")
            out += "<|" + m[i].role + "|>\n" + m[i].content + tok.eos + "\n";
        if (i + 1 == m.size() && add_generation_prompt) out += "<|assistant|>\n";
    }
    return out;
}

std::string deepseek(const std::vector<ChatMessage>& m, bool add_generation_prompt,
                     const ChatTokens& tok) {
    std::string out = tok.bos;
    if (std::none_of(m.begin(), m.end(), [](const ChatMessage& x) { return x.role == "system"; }))
        out += "You are an AI programming assistant, utilizing the Deepseek Coder model, "
               "developed by Deepseek Company, and you only answer questions related to computer "
               "science. For politically sensitive questions, security and privacy issues, and "
               "other non-computer science questions, you will refuse to answer\n";
    for (const ChatMessage& msg : m) {
        if (msg.role == "system")
            out += msg.content;
        else if (msg.role == "user")
            out += "### Instruction:\n" + msg.content + "\n";
        else
            out += "### Response:\n" + msg.content + "\n<|EOT|>\n";
    }
    if (add_generation_prompt) out += "### Response:\n";
    return out;
}

} // namespace

std::string python_strip(std::string_view s) {
    size_t begin = 0, end = s.size();
    while (begin < end) {
        const auto [cp, len] = utf8_code_point(s, begin);
        if (!python_space(cp)) break;
        begin += len;
    }
    while (end > begin) { // step back over one character
        size_t start = end - 1;
        while (start > begin && (uint8_t(s[start]) & 0xc0) == 0x80 && end - start < 4) --start;
        const auto [cp, len] = utf8_code_point(s, start);
        if (start + len != end || !python_space(cp)) break;
        end = start;
    }
    return std::string(s.substr(begin, end - begin));
}

namespace {

void python_json_into(const ojson& v, int indent, int depth, std::string& out) {
    auto newline = [&](int d) {
        if (indent < 0) return;
        out += '\n';
        out.append(size_t(indent) * size_t(d), ' ');
    };
    const char* item_sep = indent < 0 ? ", " : ",";
    if (v.is_object()) {
        if (v.empty()) {
            out += "{}";
            return;
        }
        out += '{';
        bool first = true;
        for (auto it = v.begin(); it != v.end(); ++it) {
            if (!first) out += item_sep;
            first = false;
            newline(depth + 1);
            out += ojson(it.key()).dump(-1, ' ', false, ojson::error_handler_t::replace);
            out += ": ";
            python_json_into(it.value(), indent, depth + 1, out);
        }
        newline(depth);
        out += '}';
    } else if (v.is_array()) {
        if (v.empty()) {
            out += "[]";
            return;
        }
        out += '[';
        for (size_t i = 0; i < v.size(); ++i) {
            if (i > 0) out += item_sep;
            newline(depth + 1);
            python_json_into(v[i], indent, depth + 1, out);
        }
        newline(depth);
        out += ']';
    } else {
        out += v.dump(-1, ' ', false, ojson::error_handler_t::replace);
    }
}

} // namespace

std::string python_json(const ojson& value, int indent) {
    std::string out;
    python_json_into(value, indent, 0, out);
    return out;
}

bool chat_template_takes_tools(ChatTemplate t) {
    return t == ChatTemplate::Llama31 || t == ChatTemplate::Qwen3 || t == ChatTemplate::MistralNemo;
}

std::string_view chat_template_name(ChatTemplate t) {
    for (const Named& n : kNames)
        if (n.t == t) return n.name;
    return "?";
}

std::optional<ChatTemplate> chat_template_from_name(std::string_view name) {
    for (const Named& n : kNames)
        if (n.name == name) return n.t;
    return std::nullopt;
}

std::string chat_template_names() {
    std::string out;
    for (const Named& n : kNames) out += (out.empty() ? "" : ", ") + std::string(n.name);
    return out;
}

std::optional<ChatTemplate> detect_chat_template(std::string_view jinja) {
    if (contains(jinja, "<|im_start|>"))
        return contains(jinja, "</think>") ? ChatTemplate::Qwen3 : ChatTemplate::ChatMl;
    if (contains(jinja, "<|start_header_id|>") && contains(jinja, "<|end_header_id|>"))
        return contains(jinja, "Environment: ipython") ? ChatTemplate::Llama31
                                                       : ChatTemplate::Llama3;
    if (contains(jinja, "<start_of_turn>")) return ChatTemplate::Gemma;
    if (contains(jinja, "<|assistant|>") && contains(jinja, "<|end|>")) return ChatTemplate::Phi3;
    if (contains(jinja, "<|user|>") && contains(jinja, "<|assistant|>") &&
        contains(jinja, "eos_token"))
        return ChatTemplate::Zephyr;
    if (contains(jinja, "[AVAILABLE_TOOLS]") && contains(jinja, "[TOOL_CALLS]"))
        return ChatTemplate::MistralNemo;
    if (contains(jinja, "[INST]"))
        return contains(jinja, "' [INST] ' + system_message") ? ChatTemplate::MistralV1
                                                              : ChatTemplate::Llama2;
    if (contains(jinja, "### Instruction:") && contains(jinja, "<|EOT|>"))
        return ChatTemplate::DeepSeek;
    return std::nullopt;
}

ChatFormat chat_format(const GgufFile& file, const Vocab& vocab, std::string_view override_name) {
    ChatFormat format{};
    if (!override_name.empty()) {
        const auto named = chat_template_from_name(override_name);
        if (!named)
            throw Error("unknown chat template '" + std::string(override_name) +
                        "' (expected one of: " + chat_template_names() + ")");
        format.family = *named;
    } else {
        const auto jinja = file.get_string("tokenizer.chat_template");
        if (!jinja)
            throw Error(file.name() +
                        " has no chat template (tokenizer.chat_template); name one "
                        "with --chat-template (engine.chat_template in woollyd's config): " +
                        chat_template_names());
        const auto detected = detect_chat_template(*jinja);
        if (!detected)
            throw Error(file.name() +
                        "'s chat template is none Woolly knows; name the family "
                        "with --chat-template (engine.chat_template in woollyd's config): " +
                        chat_template_names());
        format.family = *detected;
    }
    if (vocab.bos() >= 0) format.tokens.bos = vocab.text(vocab.bos());
    if (vocab.eos() >= 0) format.tokens.eos = vocab.text(vocab.eos());
    return format;
}

std::vector<int32_t> tokenize_chat(const Vocab& vocab, const ChatFormat& format,
                                   const std::vector<ChatMessage>& messages, const ojson* tools,
                                   bool enable_thinking) {
    const std::string text =
        apply_chat_template(format.family, messages, true, format.tokens, tools, enable_thinking);
    const bool has_bos = !format.tokens.bos.empty() && text.starts_with(format.tokens.bos);
    return vocab.tokenize(text, /*add_special=*/!has_bos, /*parse_special=*/true);
}

std::string apply_chat_template(ChatTemplate t, const std::vector<ChatMessage>& messages,
                                bool add_generation_prompt, const ChatTokens& tokens,
                                const ojson* tools, bool enable_thinking) {
    const bool tool_family = chat_template_takes_tools(t);
    if (tools && !tool_family)
        raise("the " + std::string(chat_template_name(t)) +
              " template does not take tools (these do: llama3.1, qwen3, mistral-nemo)");
    for (size_t i = 0; i < messages.size(); ++i) {
        const ChatMessage& msg = messages[i];
        const std::string& r = msg.role;
        const bool tool_turn = r == "tool" || !msg.tool_calls.empty();
        if (r != "system" && r != "user" && r != "assistant" && r != "tool")
            raise("message " + std::to_string(i) + " has role '" + r +
                  "' (expected system, user, assistant or tool)");
        if (tool_turn && !tool_family)
            raise("message " + std::to_string(i) + " is a tool " +
                  (r == "tool" ? "result" : "call") + ", which the " +
                  std::string(chat_template_name(t)) +
                  " template does not take (these do: llama3.1, qwen3, mistral-nemo)");
    }
    switch (t) {
    case ChatTemplate::Llama3:
        return llama3(messages, tokens);
    case ChatTemplate::Llama31:
        return llama31(messages, add_generation_prompt, tokens, tools);
    case ChatTemplate::ChatMl:
        return chatml(messages, add_generation_prompt);
    case ChatTemplate::Qwen3:
        return qwen3(messages, add_generation_prompt, tools, enable_thinking);
    case ChatTemplate::Phi3:
        return phi3(messages, tokens);
    case ChatTemplate::Gemma:
        return gemma(messages, add_generation_prompt, tokens);
    case ChatTemplate::Llama2:
        return llama2(messages, tokens);
    case ChatTemplate::MistralV1:
        return mistral_v1(messages, tokens);
    case ChatTemplate::MistralNemo:
        return mistral_nemo(messages, tokens, tools);
    case ChatTemplate::Zephyr:
        return zephyr(messages, add_generation_prompt, tokens);
    case ChatTemplate::DeepSeek:
        return deepseek(messages, add_generation_prompt, tokens);
    }
    raise("unknown template");
}

} // namespace woolly
