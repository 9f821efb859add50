// chat.h — chat templates: a conversation rendered into the prompt text a model was trained on.
// No C++ Jinja engine is packaged in Debian, so each family the models use has a formatter that
// gives, byte for byte, what Jinja renders from the family's template (as Hugging Face renders
// it: trim_blocks and lstrip_blocks); the family is recognised in tokenizer.chat_template.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace woolly {

// A function call the assistant made (OpenAI's tool_calls entry).
struct ToolCall {
    std::string id;
    std::string name;
    std::string arguments; // a JSON object's text, as the API carries it
};

struct ChatMessage {
    std::string role; // "system", "user", "assistant" or "tool"
    std::string content;
    std::vector<ToolCall> tool_calls = {}; // an assistant's calls
    std::string tool_call_id = {};         // a tool's result: the call it answers
};

enum class ChatTemplate {
    Llama3,      // <|start_header_id|>role<|end_header_id|>
    Llama31,     // Llama 3.1-3.3's, with tools as JSON ("Environment: ipython")
    ChatMl,      // <|im_start|>role (OpenHermes, Qwen2)
    Qwen3,       // ChatML with Qwen3's <think> handling of assistant turns
    Phi3,        // <|user|> ... <|end|>, user and assistant turns only
    Gemma,       // <start_of_turn>user|model, a system message prefixed to the first turn
    Llama2,      // [INST] ... [/INST] (Llama 2, Mistral v0.2): user and assistant only
    MistralV1,   // " [INST] " with an optional system message in the first turn
    MistralNemo, // [INST]...[/INST] with [AVAILABLE_TOOLS] and [TOOL_CALLS] (Mistral Nemo)
    Zephyr,      // <|user|>, <|system|>, <|assistant|>, each ended by EOS
    DeepSeek,    // ### Instruction: / ### Response: (DeepSeek Coder)
};

// The names --chat-template takes, one per ChatTemplate.
std::string_view chat_template_name(ChatTemplate t);
std::optional<ChatTemplate> chat_template_from_name(std::string_view name);
std::string chat_template_names(); // "llama3, chatml, ..." for messages
// The family of a tokenizer.chat_template text, by the markers its turns use; nullopt when it
// is none Woolly has.
std::optional<ChatTemplate> detect_chat_template(std::string_view jinja);

struct ChatTokens {
    std::string bos; // the texts of the BOS and EOS tokens (bos_token, eos_token in Jinja)
    std::string eos;
};

// The prompt for `messages`, with the turn that opens the assistant's reply when
// `add_generation_prompt` (templates that always open it, or never, do as their Jinja does).
// `tools` (null: none) is OpenAI's array of {"type": "function", "function": {...}}, rendered
// by the families that take tools (llama3.1, qwen3, mistral-nemo; the others refuse them), and
// a call's arguments are given to the template as the object they hold, as Hugging Face's
// convention has them. Throws Error where the template raises (roles out of order, a role it
// does not take).
// `enable_thinking` false is the template variable of that name set to false (Qwen3's closes the
// generation prompt's reasoning empty; the other families have no such variable).
std::string apply_chat_template(ChatTemplate t, const std::vector<ChatMessage>& messages,
                                bool add_generation_prompt, const ChatTokens& tokens,
                                const nlohmann::ordered_json* tools = nullptr,
                                bool enable_thinking = true);
// Whether a family renders tools.
bool chat_template_takes_tools(ChatTemplate t);

// Python's json.dumps(value, ensure_ascii=False) (Jinja's tojson in Hugging Face's
// templates), or with `indent` >= 0 json.dumps(value, ensure_ascii=False, indent=indent).
std::string python_json(const nlohmann::ordered_json& value, int indent = -1);

class GgufFile;
class Vocab;

// A model's chat format: the family of its tokenizer.chat_template (or the one named by
// `override_name`, e.g. --chat-template), and the BOS and EOS texts its template uses. Throws
// Error when the file has no template and none is named, when the template is none Woolly
// has (the message names --chat-template and the families), or when the name is unknown.
struct ChatFormat {
    ChatTemplate family;
    ChatTokens tokens;
};
ChatFormat chat_format(const GgufFile& file, const Vocab& vocab,
                       std::string_view override_name = {});

// The conversation rendered and tokenized for generation: special tokens in the rendered text
// become tokens (the template's own markers), and BOS is added when the model asks for it and
// the template did not already write it.
std::vector<int32_t> tokenize_chat(const Vocab& vocab, const ChatFormat& format,
                                   const std::vector<ChatMessage>& messages,
                                   const nlohmann::ordered_json* tools = nullptr,
                                   bool enable_thinking = true);

// str.strip() as Python (and Jinja's trim filter) does it: Unicode whitespace at both ends.
std::string python_strip(std::string_view s);

} // namespace woolly
