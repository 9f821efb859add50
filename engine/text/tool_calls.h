// tool_calls.h — how each chat family writes function calls in its replies (the text its
// template renders a call as), and reading the calls back out of a reply as it streams.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/text/chat.h"

namespace woolly {

enum class ToolSyntax : uint8_t {
    None,
    Llama31,     // {"name": "f", "parameters": {...}}, one call, the whole reply
    Hermes,      // <tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>, "\n" between
    MistralNemo, // [TOOL_CALLS][{"name": "f", "arguments": {...}, "id": "abcdefghi"}, ...]
};

// The syntax of a family's calls; None for families without tools.
ToolSyntax tool_syntax(ChatTemplate t);

// The fixed text around a call. A reply's calls are: first_open (the trigger that opens them),
// then per call [open unless first] name name_close arguments call_close, and between calls
// separator; after the last, end. A Mistral call's id (kMistralIdLength characters of
// [A-Za-z0-9]) and its closing `"}` follow call_close.
struct ToolSyntaxText {
    std::string_view trigger;    // the calls begin with this (a lazy grammar waits for it)
    std::string_view first_open; // from the trigger to the first name
    std::string_view open;       // before each later call's name
    std::string_view name_close; // after the name, before the arguments object
    std::string_view call_close; // after the arguments
    std::string_view separator;  // between calls
    std::string_view end;        // after the last call
    bool parallel = true;        // several calls in one reply
    bool id_after = false;       // call_close is followed by an id and `"}`
};
const ToolSyntaxText& tool_syntax_text(ToolSyntax s);
constexpr size_t kMistralIdLength = 9;
// The most calls a reply may make when parallel calls are on (a bound for the grammar).
constexpr size_t kMaxParallelCalls = 8;

// Splits a reply, as its text arrives, into content and calls. Text before the trigger is
// content (held back while it could be the trigger's start); after it, each call is reported
// when its name is read, and its arguments as they arrive (the JSON text, as it is written).
// Text that does not follow the syntax (a reply cut short) ends the calls; it is not content.
class ToolCallParser {
public:
    struct Event {
        enum class Kind { Content, Call, Arguments } kind;
        size_t index = 0; // Call, Arguments: which call
        std::string text; // Content, Arguments: the new text; Call: the function's name
    };

    explicit ToolCallParser(ToolSyntax syntax);
    void push(std::string_view text, std::vector<Event>& out);
    // The reply is over: content held back is given out.
    void finish(std::vector<Event>& out);
    size_t calls() const { return calls_; }
    // True when every call begun was read to its end.
    bool calls_complete() const { return calls_ > 0 && !in_call_; }

private:
    enum class Phase {
        Content,
        Open,
        Name,
        NameClose,
        Arguments,
        Close,
        Id,
        IdClose,
        Between,
        Separator,
        End,
        Done
    };
    static constexpr size_t kMaxNameBytes = 64; // OpenAI's bound on a function's name
    void run(std::vector<Event>& out);
    // Consumes `want` from the buffer as it arrives: true once all of it is read; sets failed_
    // on a mismatch.
    bool expect(std::string_view want);

    const ToolSyntaxText& text_;
    std::string buffer_; // text not yet consumed
    size_t matched_ = 0; // of the literal expect() is reading
    Phase phase_ = Phase::Content;
    std::string name_;
    size_t calls_ = 0;
    bool in_call_ = false;
    bool failed_ = false;
    // The arguments' JSON value: nesting depth, inside a string, after a backslash.
    int depth_ = 0;
    bool in_string_ = false, escaped_ = false;
    size_t id_read_ = 0;
};

} // namespace woolly
