// tool_calls.cpp — each family's call syntax, and the streaming parser of replies.
#include "engine/text/tool_calls.h"

#include <algorithm>
#include <cctype>

namespace woolly {

ToolSyntax tool_syntax(ChatTemplate t) {
    switch (t) {
    case ChatTemplate::Llama31:
        return ToolSyntax::Llama31;
    case ChatTemplate::Qwen3:
        return ToolSyntax::Hermes;
    case ChatTemplate::MistralNemo:
        return ToolSyntax::MistralNemo;
    default:
        return ToolSyntax::None;
    }
}

// As each family's template renders an assistant's calls (engine/text/chat.cpp).
const ToolSyntaxText& tool_syntax_text(ToolSyntax s) {
    static const ToolSyntaxText none{};
    static const ToolSyntaxText llama31{.trigger = "{\"name\": \"",
                                        .first_open = "{\"name\": \"",
                                        .open = "",
                                        .name_close = ", \"parameters\": ",
                                        .call_close = "}",
                                        .separator = "",
                                        .end = "",
                                        .parallel = false};
    static const ToolSyntaxText hermes{.trigger = "<tool_call>",
                                       .first_open = "<tool_call>\n{\"name\": \"",
                                       .open = "<tool_call>\n{\"name\": \"",
                                       .name_close = ", \"arguments\": ",
                                       .call_close = "}\n</tool_call>",
                                       .separator = "\n",
                                       .end = "",
                                       .parallel = true};
    static const ToolSyntaxText mistral{.trigger = "[TOOL_CALLS]",
                                        .first_open = "[TOOL_CALLS][{\"name\": \"",
                                        .open = "{\"name\": \"",
                                        .name_close = ", \"arguments\": ",
                                        .call_close = ", \"id\": \"",
                                        .separator = ", ",
                                        .end = "]",
                                        .parallel = true,
                                        .id_after = true};
    switch (s) {
    case ToolSyntax::Llama31:
        return llama31;
    case ToolSyntax::Hermes:
        return hermes;
    case ToolSyntax::MistralNemo:
        return mistral;
    case ToolSyntax::None:
        break;
    }
    return none;
}

ToolCallParser::ToolCallParser(ToolSyntax syntax) : text_(tool_syntax_text(syntax)) {}

void ToolCallParser::push(std::string_view text, std::vector<Event>& out) {
    buffer_.append(text);
    run(out);
}

void ToolCallParser::finish(std::vector<Event>& out) {
    if (phase_ == Phase::Content && !buffer_.empty())
        out.push_back({Event::Kind::Content, 0, std::move(buffer_)});
    buffer_.clear();
}

bool ToolCallParser::expect(std::string_view want) {
    size_t used = 0;
    while (matched_ < want.size() && used < buffer_.size()) {
        if (buffer_[used] != want[matched_]) {
            failed_ = true;
            return false;
        }
        ++used;
        ++matched_;
    }
    buffer_.erase(0, used);
    if (matched_ < want.size()) return false;
    matched_ = 0;
    return true;
}

void ToolCallParser::run(std::vector<Event>& out) {
    const std::string_view trigger = text_.trigger;
    while (!failed_ && !buffer_.empty()) {
        switch (phase_) {
        case Phase::Content: {
            const size_t at = trigger.empty() ? std::string::npos : buffer_.find(trigger);
            if (at == std::string::npos) {
                // Keep back the longest end that could begin the trigger.
                size_t keep = std::min(buffer_.size(), trigger.empty() ? 0 : trigger.size() - 1);
                while (keep > 0 && std::string_view(buffer_).substr(buffer_.size() - keep) !=
                                       trigger.substr(0, keep))
                    --keep;
                if (buffer_.size() > keep)
                    out.push_back(
                        {Event::Kind::Content, 0, buffer_.substr(0, buffer_.size() - keep)});
                buffer_.erase(0, buffer_.size() - keep);
                return;
            }
            if (at > 0) out.push_back({Event::Kind::Content, 0, buffer_.substr(0, at)});
            buffer_.erase(0, at);
            phase_ = Phase::Open;
            break;
        }
        case Phase::Open:
            if (!expect(calls_ == 0 ? text_.first_open : text_.open)) return;
            in_call_ = true;
            name_.clear();
            phase_ = Phase::Name;
            break;
        case Phase::Name: {
            const size_t quote = buffer_.find('"');
            name_.append(buffer_, 0, std::min(quote, buffer_.size()));
            if (name_.size() > kMaxNameBytes) {
                failed_ = true;
                return;
            }
            if (quote == std::string::npos) {
                buffer_.clear();
                return;
            }
            buffer_.erase(0, quote + 1);
            out.push_back({Event::Kind::Call, calls_, name_});
            ++calls_;
            phase_ = Phase::NameClose;
            break;
        }
        case Phase::NameClose:
            if (!expect(text_.name_close)) return;
            depth_ = 0;
            in_string_ = escaped_ = false;
            phase_ = Phase::Arguments;
            if (buffer_.empty()) return;
            if (buffer_[0] != '{') failed_ = true;
            break;
        case Phase::Arguments: {
            size_t i = 0;
            bool done = false;
            for (; i < buffer_.size() && !done; ++i) {
                const char c = buffer_[i];
                if (in_string_) {
                    if (escaped_)
                        escaped_ = false;
                    else if (c == '\\')
                        escaped_ = true;
                    else if (c == '"')
                        in_string_ = false;
                } else if (c == '"') {
                    in_string_ = true;
                } else if (c == '{' || c == '[') {
                    ++depth_;
                } else if (c == '}' || c == ']') {
                    done = --depth_ == 0;
                }
            }
            out.push_back({Event::Kind::Arguments, calls_ - 1, buffer_.substr(0, i)});
            buffer_.erase(0, i);
            if (done) phase_ = Phase::Close;
            break;
        }
        case Phase::Close:
            if (!expect(text_.call_close)) return;
            id_read_ = 0;
            phase_ = text_.id_after ? Phase::Id : Phase::Between;
            if (!text_.id_after) in_call_ = false;
            break;
        case Phase::Id: {
            size_t i = 0;
            while (i < buffer_.size() && id_read_ < kMistralIdLength) {
                if (!std::isalnum(static_cast<unsigned char>(buffer_[i]))) {
                    failed_ = true;
                    return;
                }
                ++i;
                ++id_read_;
            }
            buffer_.erase(0, i);
            if (id_read_ == kMistralIdLength) phase_ = Phase::IdClose;
            break;
        }
        case Phase::IdClose:
            if (!expect("\"}")) return;
            in_call_ = false;
            phase_ = Phase::Between;
            break;
        case Phase::Between:
            if (!text_.separator.empty() && buffer_[0] == text_.separator[0] && text_.parallel &&
                calls_ < kMaxParallelCalls)
                phase_ = Phase::Separator;
            else if (!text_.end.empty())
                phase_ = Phase::End;
            else
                failed_ = true;
            break;
        case Phase::Separator:
            if (!expect(text_.separator)) return;
            phase_ = Phase::Open;
            break;
        case Phase::End:
            if (!expect(text_.end)) return;
            phase_ = Phase::Done;
            break;
        case Phase::Done:
            failed_ = true;
            break;
        }
    }
}

} // namespace woolly
