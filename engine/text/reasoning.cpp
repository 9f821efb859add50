// reasoning.cpp — splitting a streamed reply at <think> ... </think>.
#include "engine/text/reasoning.h"

#include <algorithm>

namespace woolly {

namespace {

constexpr std::string_view kOpen = "<think>";
constexpr std::string_view kClose = "</think>";

bool blank(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

// The length of the longest suffix of `text` that begins `tag` (a tag cut by the stream).
size_t partial_tag(std::string_view text, std::string_view tag) {
    for (size_t n = std::min(text.size(), tag.size() - 1); n > 0; --n)
        if (text.substr(text.size() - n) == tag.substr(0, n)) return n;
    return 0;
}

} // namespace

void ReasoningSplitter::emit(Event::Kind kind, std::string_view text, std::vector<Event>& out) {
    if (text.empty()) return;
    if (!out.empty() && out.back().kind == kind)
        out.back().text += text;
    else
        out.push_back({kind, std::string(text)});
}

void ReasoningSplitter::push(std::string_view text, std::vector<Event>& out) {
    held_ += text;
    for (;;) {
        const std::string_view h = held_;
        switch (phase_) {
        case Phase::Start: {
            const size_t begin = std::find_if_not(h.begin(), h.end(), blank) - h.begin();
            const std::string_view rest = h.substr(begin);
            if (rest.size() < kOpen.size() && kOpen.substr(0, rest.size()) == rest)
                return; // blanks, maybe the start of <think>: wait
            if (rest.substr(0, kOpen.size()) == kOpen) {
                held_.erase(0, begin + kOpen.size());
                phase_ = Phase::Reasoning;
                continue;
            }
            phase_ = Phase::Content;
            continue;
        }
        case Phase::Reasoning: {
            size_t skip = 0; // newlines just inside <think>
            if (!reasoning_begun_) {
                while (skip < h.size() && h[skip] == '\n') ++skip;
                if (skip == h.size()) {
                    held_.clear();
                    return;
                }
                reasoning_begun_ = true;
            }
            const size_t close = h.find(kClose, skip);
            if (close != std::string_view::npos) {
                std::string_view before = h.substr(skip, close - skip);
                while (!before.empty() && before.back() == '\n') before.remove_suffix(1);
                emit(Event::Kind::Reasoning, before, out);
                held_.erase(0, close + kClose.size());
                phase_ = Phase::AfterEnd;
                continue;
            }
            // Keep back a cut </think>, and the newlines before it (not text if it closes).
            size_t keep = partial_tag(h.substr(skip), kClose);
            while (keep < h.size() - skip && h[h.size() - keep - 1] == '\n') ++keep;
            emit(Event::Kind::Reasoning, h.substr(skip, h.size() - skip - keep), out);
            held_.erase(0, h.size() - keep);
            return;
        }
        case Phase::AfterEnd: {
            const size_t begin = h.find_first_not_of('\n');
            if (begin == std::string_view::npos) {
                held_.clear();
                return;
            }
            held_.erase(0, begin);
            phase_ = Phase::Content;
            continue;
        }
        case Phase::Content:
            emit(Event::Kind::Content, h, out);
            held_.clear();
            return;
        }
    }
}

void ReasoningSplitter::finish(std::vector<Event>& out) {
    if (phase_ == Phase::Start || phase_ == Phase::Content)
        emit(Event::Kind::Content, held_, out);
    else if (phase_ == Phase::Reasoning)
        emit(Event::Kind::Reasoning,
             std::string_view(held_).substr(0, held_.find_last_not_of('\n') + 1), out);
    held_.clear();
}

} // namespace woolly
