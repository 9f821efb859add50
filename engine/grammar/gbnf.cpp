// gbnf.cpp — the GBNF parser: llama.cpp's grammar text to a byte grammar, with the line and
// column of whatever is wrong.
#include <map>
#include <string>

#include "engine/error.h"
#include "engine/grammar/compile.h"
#include "engine/text/utf8.h"

namespace woolly::grammar {
namespace {

class Parser {
public:
    explicit Parser(std::string_view text) : text_(text) {}

    Grammar parse() {
        if (text_.size() > kMaxGrammarBytes)
            throw Error("grammar: " + std::to_string(text_.size()) + " bytes is more than the " +
                        std::to_string(kMaxGrammarBytes) + " accepted");
        skip_space(true);
        while (!at_end()) {
            parse_rule();
            skip_space(true);
        }
        auto root = rules_.find("root");
        if (root == rules_.end() || !defined_.count("root"))
            throw Error("grammar: no 'root' rule (the rule generation starts from)");
        for (const auto& [name, where] : first_use_)
            if (!defined_.count(name))
                fail_at(where, "rule '" + name + "' is used but never defined");
        return builder_.finish(root->second);
    }

private:
    bool at_end() const { return pos_ >= text_.size(); }
    char peek(size_t ahead = 0) const {
        return pos_ + ahead < text_.size() ? text_[pos_ + ahead] : '\0';
    }

    [[noreturn]] void fail_at(size_t at, const std::string& why) const {
        size_t line = 1, column = 1;
        for (size_t i = 0; i < at && i < text_.size(); ++i) {
            if (text_[i] == '\n') {
                ++line;
                column = 1;
            } else {
                ++column;
            }
        }
        throw Error("grammar line " + std::to_string(line) + ", column " + std::to_string(column) +
                    ": " + why);
    }
    [[noreturn]] void fail(const std::string& why) const { fail_at(pos_, why); }

    static bool is_word_char(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '-' || c == '_';
    }

    // Spaces, tabs and comments; newlines too where a rule may continue.
    void skip_space(bool newlines) {
        while (!at_end()) {
            const char c = peek();
            if (c == ' ' || c == '\t') {
                ++pos_;
            } else if (c == '#') {
                while (!at_end() && peek() != '\n' && peek() != '\r') ++pos_;
            } else if (newlines && (c == '\n' || c == '\r')) {
                ++pos_;
            } else {
                break;
            }
        }
    }

    std::string parse_name() {
        const size_t start = pos_;
        while (!at_end() && is_word_char(peek())) ++pos_;
        if (pos_ == start) fail("expected a rule name");
        return std::string(text_.substr(start, pos_ - start));
    }

    uint32_t rule_id(const std::string& name) {
        auto it = rules_.find(name);
        if (it != rules_.end()) return it->second;
        const uint32_t id = builder_.add_rule(name);
        rules_.emplace(name, id);
        return id;
    }

    uint32_t hex(int digits) {
        uint32_t v = 0;
        for (int i = 0; i < digits; ++i) {
            const char c = peek();
            int d = -1;
            if (c >= '0' && c <= '9') d = c - '0';
            if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
            if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
            if (d < 0)
                fail("expected " + std::to_string(digits) + " hexadecimal digits in an escape");
            v = v * 16 + uint32_t(d);
            ++pos_;
        }
        return v;
    }

    // One character of a literal or class: a UTF-8 character or an escape, as a code point.
    uint32_t parse_char() {
        if (at_end()) fail("unexpected end of the grammar");
        const size_t start = pos_;
        if (peek() == '\\') {
            ++pos_;
            const char e = peek();
            ++pos_;
            uint32_t cp = 0;
            switch (e) {
            case 'x':
                cp = hex(2);
                break;
            case 'u':
                cp = hex(4);
                break;
            case 'U':
                cp = hex(8);
                break;
            case 't':
                return '\t';
            case 'r':
                return '\r';
            case 'n':
                return '\n';
            case '\\':
                return '\\';
            case '"':
                return '"';
            case '[':
                return '[';
            case ']':
                return ']';
            case '-':
                return '-';
            case '^':
                return '^';
            default:
                fail_at(start, std::string("unknown escape '\\") + e + "'");
            }
            if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                fail_at(start, "escape is not a Unicode character");
            return cp;
        }
        const auto lead = uint8_t(peek());
        const int len = lead < 0x80    ? 1
                        : lead >= 0xf0 ? 4
                        : lead >= 0xe0 ? 3
                        : lead >= 0xc0 ? 2
                                       : 0;
        if (len == 0 || pos_ + size_t(len) > text_.size()) fail("invalid UTF-8");
        uint32_t cp = len == 1   ? lead
                      : len == 2 ? lead & 0x1f
                      : len == 3 ? lead & 0x0f
                                 : lead & 0x07;
        for (int i = 1; i < len; ++i) {
            const auto c = uint8_t(text_[pos_ + size_t(i)]);
            if ((c & 0xc0) != 0x80) fail("invalid UTF-8");
            cp = (cp << 6) | (c & 0x3f);
        }
        pos_ += size_t(len);
        return cp;
    }

    uint32_t parse_count() {
        const size_t start = pos_;
        uint64_t v = 0;
        while (peek() >= '0' && peek() <= '9') {
            v = v * 10 + uint64_t(peek() - '0');
            if (v > kMaxRepeat)
                fail_at(start, "repetition count above " + std::to_string(kMaxRepeat));
            ++pos_;
        }
        if (pos_ == start) fail("expected a number in {m,n}");
        return uint32_t(v);
    }

    // One item, with its repetition if any, appended to `seq`.
    void parse_item(Builder::Seq& seq, bool nested) {
        Builder::Seq item;
        const size_t start = pos_;
        const char c = peek();
        if (c == '"') {
            ++pos_;
            std::string bytes;
            while (peek() != '"') {
                if (at_end() || peek() == '\n') fail_at(start, "literal is not closed with '\"'");
                append_utf8(parse_char(), bytes);
            }
            ++pos_;
            builder_.literal(item, bytes);
        } else if (c == '[') {
            ++pos_;
            bool negated = false;
            if (peek() == '^') {
                negated = true;
                ++pos_;
            }
            std::vector<CodeRange> ranges;
            while (peek() != ']') {
                if (at_end() || peek() == '\n') fail_at(start, "class is not closed with ']'");
                const uint32_t lo = parse_char();
                uint32_t hi = lo;
                if (peek() == '-' && peek(1) != ']' && peek(1) != '\0' && peek(1) != '\n') {
                    ++pos_;
                    hi = parse_char();
                    if (hi < lo) fail_at(start, "class range runs backwards");
                }
                ranges.emplace_back(lo, hi);
            }
            ++pos_;
            item.push_back(Builder::rule(builder_.char_class(std::move(ranges), negated)));
        } else if (c == '.') {
            ++pos_;
            item.push_back(Builder::rule(builder_.char_class({}, true)));
        } else if (c == '(') {
            if (++depth_ > kMaxNesting)
                fail("parentheses nested more than " + std::to_string(kMaxNesting) + " deep");
            ++pos_;
            skip_space(true);
            const uint32_t group = builder_.add_rule(current_ + "-group");
            parse_alternatives(group, true);
            if (peek() != ')') fail_at(start, "group is not closed with ')'");
            ++pos_;
            --depth_;
            item.push_back(Builder::rule(group));
        } else if (is_word_char(c)) {
            const std::string name = parse_name();
            first_use_.emplace(name, start);
            item.push_back(Builder::rule(rule_id(name)));
        } else {
            fail(std::string("unexpected '") + c + "'");
        }
        skip_space(nested);

        // Repetition applies to the whole item (a literal's bytes as one).
        uint32_t min = 1, max = 1;
        const char op = peek();
        if (op == '*' || op == '+' || op == '?') {
            ++pos_;
            min = op == '+' ? 1 : 0;
            max = op == '?' ? 1 : kUnbounded;
        } else if (op == '{') {
            ++pos_;
            skip_space(nested);
            min = max = parse_count();
            skip_space(nested);
            if (peek() == ',') {
                ++pos_;
                skip_space(nested);
                max = peek() == '}' ? kUnbounded : parse_count();
                skip_space(nested);
            }
            if (peek() != '}') fail("expected '}' closing {m,n}");
            ++pos_;
            if (max < min) fail_at(start, "{m,n} with n below m");
        } else {
            seq.insert(seq.end(), item.begin(), item.end());
            return;
        }
        skip_space(nested);
        const uint32_t body = item.size() == 1 && item[0].kind == Symbol::Kind::Rule
                                  ? item[0].index
                                  : builder_.group(current_ + "-item", std::move(item));
        seq.push_back(Builder::repeat(body, min, max));
    }

    void parse_alternatives(uint32_t rule, bool nested) {
        for (;;) {
            Builder::Seq seq;
            while (!at_end() && peek() != '|' && peek() != ')' && peek() != '\n' && peek() != '\r')
                parse_item(seq, nested);
            builder_.add_alt(rule, std::move(seq));
            if (peek() != '|') return;
            ++pos_;
            skip_space(true);
        }
    }

    void parse_rule() {
        const size_t start = pos_;
        current_ = parse_name();
        skip_space(false);
        if (text_.substr(pos_, 3) != "::=") fail("expected '::=' after the rule name");
        pos_ += 3;
        skip_space(true);
        if (!defined_.emplace(current_, start).second)
            fail_at(start, "rule '" + current_ + "' is defined twice");
        const uint32_t rule = rule_id(current_);
        parse_alternatives(rule, false);
        if (peek() == ')') fail("')' with no '(' before it");
        if (!at_end() && peek() != '\n' && peek() != '\r')
            fail("expected the end of the line after the rule");
    }

    static constexpr int kMaxNesting = 200;
    std::string_view text_;
    size_t pos_ = 0;
    int depth_ = 0;
    Builder builder_;
    std::string current_;
    std::map<std::string, uint32_t> rules_;
    std::map<std::string, size_t> defined_;
    std::map<std::string, size_t> first_use_;
};

} // namespace

Grammar parse_gbnf(std::string_view text) {
    return Parser(text).parse();
}

} // namespace woolly::grammar
