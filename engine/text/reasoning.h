// reasoning.h — a reply's reasoning told from its answer as the text streams in: what a thinking
// model (Qwen3's template family) writes between <think> and </think> at the start of its reply
// is reasoning, the rest the answer (the HTTP API's reasoning_content and content).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace woolly {

class ReasoningSplitter {
public:
    struct Event {
        enum class Kind { Reasoning, Content } kind;
        std::string text;
    };
    // More of the reply, cut anywhere (inside a tag too); what is known appended to `out`. A
    // reply that opens with <think> (after blanks) reasons until </think>; the newlines just
    // inside the tags and just after </think> are not text. Any other reply is all content.
    void push(std::string_view text, std::vector<Event>& out);
    // The reply ended: what was held back (a reasoning never closed stays reasoning).
    void finish(std::vector<Event>& out);

private:
    enum class Phase { Start, Reasoning, AfterEnd, Content };
    void emit(Event::Kind kind, std::string_view text, std::vector<Event>& out);
    Phase phase_ = Phase::Start;
    bool reasoning_begun_ = false; // text other than newlines seen since <think>
    std::string held_;             // what may still turn out a tag, or newlines before one
};

} // namespace woolly
