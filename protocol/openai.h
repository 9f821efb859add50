// openai.h — the HTTP API's bodies (SPEC.md, "HTTP"): OpenAI's chat and text completion
// requests read as strictly as woolly/1's (an unsupported field is refused by name), their
// responses, stream chunks and error objects, and llama-server's /tokenize and /detokenize.
// No sockets here: bodies in, bodies out.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "protocol.h"

namespace woolly::protocol::openai {

// OpenAI's error object, {"error": {"message", "type", "param", "code"}}, and its HTTP status.
struct Error {
    int status = 400;
    std::string message;
    std::string type = "invalid_request_error";
    std::string param; // empty: null
    std::string code;  // empty: null
};
std::string encode_error(const Error& error);
// The error for a woolly/1 refusal (the scheduler's or the tokenizer's): busy is 429,
// shutting_down and loading 503, internal 500, the rest 400.
Error error_from(ErrorCode code, std::string message);

enum class Endpoint { Chat, Completion };

// tool_choice: none (the tools are described, never called), auto (the model decides), required
// (at least one call), or one named function (exactly one call of it).
enum class ToolChoice : uint8_t { None, Auto, Required, Named };

struct CompletionRequest {
    Endpoint endpoint = Endpoint::Chat;
    std::string model;              // as asked; empty: not given
    std::vector<ChatTurn> messages; // Chat
    std::string prompt;             // Completion
    GenerationParams params;        // the request's fields over the daemon's defaults, checked
    bool seed_given = false;
    bool stream = false;
    bool include_usage = false; // stream_options.include_usage
    bool logprobs = false;      // chat's logprobs (with params.logprobs = top_logprobs)
    // Chat: `tools` as given (null: none), each {"type": "function", "function": {"name",
    // "description", "parameters", "strict"}}, checked and each schema compiled once.
    nlohmann::ordered_json tools;
    ToolChoice tool_choice = ToolChoice::Auto;
    std::string tool_name; // ToolChoice::Named
    bool parallel_tool_calls = true;
    bool enable_thinking = true; // chat_template_kwargs.enable_thinking
};

// OpenAI's messages, as /v1/chat/completions takes them (also `woolly template` and
// `woolly run --messages`): system (or developer), user, assistant (content, and tool_calls
// whose arguments are JSON objects' text) and tool (content, tool_call_id). Content is a string
// or an array of text parts.
std::variant<std::vector<ChatTurn>, Error> decode_messages(const nlohmann::json* messages);

// Decodes a POST /v1/chat/completions or /v1/completions body.
std::variant<CompletionRequest, Error> decode_completion(std::string_view body, Endpoint endpoint,
                                                         const DecodeLimits& limits);

// What the response says of the request, besides the text.
struct Head {
    std::string id;      // chatcmpl-... or cmpl-...
    int64_t created = 0; // Unix seconds
    std::string model;
    Endpoint endpoint = Endpoint::Chat;
};

struct Totals {
    int64_t prompt_tokens = 0, completion_tokens = 0, cached_tokens = 0;
};

// woolly/1's finish_reason as OpenAI's: stop and eos are "stop", length "length", cancelled
// "cancelled". shutdown and error are not finish reasons here: they end the response with an
// error (see SPEC.md).
const char* finish_reason(std::string_view woolly_reason);

// A whole (non-streamed) response; `logprobs`, when given, is the JSON of the entries of
// choices[0].logprobs.content, comma-separated (logprob_entry's). With `calls` (non-empty), the
// message has tool_calls, and content null when `text` is empty.
// `reasoning` (empty: none) is the message's reasoning_content.
std::string encode_response(const Head& head, std::string_view text, std::string_view finish,
                            const Totals& totals, const std::string* logprobs = nullptr,
                            const std::vector<ToolCall>* calls = nullptr,
                            std::string_view reasoning = {});
// One SSE chunk's JSON: `text` as the delta's content (Chat: `role` too, for the first chunk),
// `finish` empty while the stream goes on; `logprobs` as encode_response's.
std::string encode_chunk(const Head& head, std::string_view text, bool role,
                         std::string_view finish, const std::string* logprobs = nullptr);
// A chat chunk whose delta is `text` of the reply's reasoning (reasoning_content, as vLLM and
// llama.cpp's server send it), with the role for the first chunk.
std::string encode_reasoning_chunk(const Head& head, std::string_view text, bool role);
// OpenAI's logprobs entry of one woolly/1 token message that has them (SPEC.md, `logprobs`):
// {"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob", "bytes"}]}; a token's
// text is its bytes as UTF-8 (U+FFFD where they are part of a character).
std::string logprob_entry(const nlohmann::json& message);
// A chunk of a streamed tool call (chat): its first (`call` has id and name, the arguments
// begun empty) or more of its arguments (id empty), at `index` among the reply's calls.
std::string encode_tool_call_chunk(const Head& head, size_t index, const ToolCall& call);
// The usage chunk (include_usage): no choices, the totals.
std::string encode_usage_chunk(const Head& head, const Totals& totals);

// GET /v1/models and /v1/models/{id}.
nlohmann::json model_object(const std::string& id, int64_t created);

// POST /tokenize: {"content": TEXT, "add_special": BOOL (false), "with_pieces": BOOL (false)}.
struct TokenizeRequest {
    std::string content;
    bool add_special = false;
    bool with_pieces = false;
};
std::variant<TokenizeRequest, Error> decode_tokenize(std::string_view body);
// POST /detokenize: {"tokens": [ID, ...]}, each 0 to n_vocab - 1.
std::variant<std::vector<int32_t>, Error> decode_detokenize(std::string_view body, int32_t n_vocab);

} // namespace woolly::protocol::openai
