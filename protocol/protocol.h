// protocol.h — the woolly/1 wire protocol (see SPEC.md): strict request decoding and the
// encoding of replies and stream messages. No sockets here: frames in, frames out.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/text/chat.h"
#include "engine/text/generation.h"

namespace woolly::protocol {

inline constexpr const char* kVersion = "woolly/1";
inline constexpr const char* kTopicPrefix = "tok.";

enum class ErrorCode {
    BadRequest,
    TooLarge,
    Busy,
    NotFound,
    DuplicateId,
    ShuttingDown,
    Internal,
    Loading, // the daemon is up and its model is still loading
};
const char* error_code_name(ErrorCode code);

// What decoding a request (or admitting it) refuses with: a code and a message for the client.
struct RequestError {
    ErrorCode code;
    std::string message;
};

struct DecodeLimits {
    size_t max_request_bytes = 1 << 20;
    int64_t max_tokens = 4096; // the largest max_tokens a request may ask for
    size_t max_stop_strings = 16;
    size_t max_stop_bytes = 256;
    GenerationParams defaults; // what a generate request gets for a field it does not give
};

// One turn of a conversation (the daemon applies the model's chat template to them).
// A conversation's turn: woolly/1 takes system, user and assistant turns with content; the HTTP
// API also assistant tool calls and tool results.
using ChatTurn = ChatMessage;

struct GenerateRequest {
    std::string id;     // empty: the daemon chooses one
    std::string prompt; // exactly one of prompt and messages is given
    std::vector<ChatTurn> messages;
    bool chat = false; // messages were given
    std::string chat_template; // with messages: a template family instead of the model's own
    // The engine's parameters: the request's fields over DecodeLimits::defaults, checked by
    // GenerationParams::validate (the one range check).
    GenerationParams params;
    bool seed_given = false; // without a seed the daemon draws one
};
struct CancelRequest {
    std::string id;
};
struct StatusRequest {};
struct ReplayRequest {
    std::string id;
    uint64_t from_seq = 0;
};
using Request = std::variant<GenerateRequest, CancelRequest, StatusRequest, ReplayRequest>;

// A conversation: [{"role": "system"|"user"|"assistant", "content": STRING}, ...], at least
// one turn, nothing else in a turn. Returns the turns or why not (naming the entry). Shared by
// the generate request and `woolly run --messages FILE`.
std::variant<std::vector<ChatTurn>, std::string> decode_chat_turns(const nlohmann::json& value);

// Decodes one request frame. Every field is checked for type and range; unknown fields, bad
// UTF-8 and oversized frames are refused. Returns the request or the error to reply with.
std::variant<Request, RequestError> decode_request(std::string_view frame,
                                                   const DecodeLimits& limits);

// `[A-Za-z0-9_-]{1,64}`
bool is_valid_stream_id(std::string_view id);
std::string topic_for(std::string_view id);
// The same into `out` (replacing what it held; its memory is kept, for the per-token path).
void write_topic(std::string& out, std::string_view id);

std::string encode_error(const RequestError& error);
// The `loading` error while the model `model` loads: the message names it and the percentage,
// and the error object carries `progress` (0 to 1).
std::string encode_loading(std::string_view model, double progress);
std::string encode_ok(nlohmann::json fields); // {"ok":true, ...fields}

struct Usage {
    int64_t prompt_tokens = 0;
    int64_t completion_tokens = 0;
    double ttft_ms = 0.0;
    double tokens_per_second = 0.0;
    int64_t cached_tokens = 0; // prompt tokens the prefix cache held (not computed again)
};

// Stream messages (the second frame; the first is topic_for(id)).
// A token message's text, written straight into `out` (replacing what it held; its memory is
// kept): {"id":...,"seq":...,"text":...,"token":...}, byte for byte what nlohmann::json would
// write, without building a JSON value per token. `text` must be valid UTF-8.
void write_token_message(std::string& out, std::string_view id, uint64_t seq, int32_t token,
                         std::string_view text);
// Adds a token's log-probabilities to the token message `out` (write_token_message's):
// "logprob", "bytes" (the token's bytes, which may be part of a character) and "top_logprobs":
// [{"token", "logprob", "bytes"}, ...], most likely first.
void append_logprobs(std::string& out, const TokenLogprobs& logprobs, int32_t token,
                     const Vocab& vocab);
// The inverse of write_token_message, for a message it wrote: its seq and text. False for any
// other message (a final one, or JSON written otherwise): read those with a JSON parser.
bool read_token_message(std::string_view message, uint64_t& seq, std::string& text);
// `text` as a JSON string appended to `out`, escaped as nlohmann::json::dump does: the
// two-character escapes for \b \f \n \r \t, \u00xx for other control characters, UTF-8 as
// it is.
void append_json_string(std::string& out, std::string_view text);
// A constrained stream's end: whether its output completed the grammar, and what a relaxed
// schema left unenforced.
struct GrammarOutcome {
    bool complete = false;
    const std::vector<std::string>* warnings = nullptr;
};
nlohmann::json done_message(std::string_view id, uint64_t seq, std::string_view finish_reason,
                            const Usage& usage, const RequestError* error = nullptr,
                            std::string_view text = {}, const GrammarOutcome* grammar = nullptr);

} // namespace woolly::protocol
