// regex.cpp — the pattern subset parsed straight into grammar rules.
#include "engine/grammar/regex.h"

#include <algorithm>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/text/utf8.h"

namespace woolly::grammar {
namespace {

using Seq = Builder::Seq;

class RegexParser {
public:
    RegexParser(Builder& b, std::string_view p, uint32_t max_repeat)
        : b_(b), p_(p), max_repeat_(max_repeat) {}

    uint32_t parse() {
        bool start = false, end = false;
        if (!p_.empty() && p_[0] == '^') {
            start = true;
            ++pos_;
        }
        size_t stop = p_.size();
        if (stop > pos_ && p_[stop - 1] == '$' && (stop < 2 || p_[stop - 2] != '\\')) {
            end = true;
            --stop;
        }
        limit_ = stop;
        const uint32_t body = alternatives();
        if (pos_ != limit_) fail(pos_, "unexpected ')'");
        Seq seq;
        const uint32_t any = json_chars({{0x20, 0x10ffff}});
        if (!start) seq.push_back(Builder::repeat(any, 0, max_repeat_));
        seq.push_back(Builder::rule(body));
        if (!end) seq.push_back(Builder::repeat(any, 0, max_repeat_));
        return b_.group("pattern-body", std::move(seq));
    }

private:
    [[noreturn]] void fail(size_t at, const std::string& why) const {
        throw Error("pattern offset " + std::to_string(at) + ": " + why);
    }
    bool more() const { return pos_ < limit_; }
    char peek() const { return more() ? p_[pos_] : '\0'; }

    // Characters of `ranges` as JSON writes them: plain ones as they are, '"' and '\' and
    // control characters escaped.
    uint32_t json_chars(std::vector<CodeRange> ranges) {
        std::vector<CodeRange> plain;
        std::vector<uint32_t> escaped;
        for (auto [lo, hi] : ranges) {
            for (uint32_t c = lo; c <= hi && c < 0x20; ++c) escaped.push_back(c);
            if (lo <= '"' && hi >= '"') escaped.push_back('"');
            if (lo <= '\\' && hi >= '\\') escaped.push_back('\\');
            if (hi >= 0x20) plain.emplace_back(std::max<uint32_t>(lo, 0x20), hi);
        }
        // The plain ones without '"' and '\\', which are written escaped.
        std::vector<CodeRange> unescaped;
        for (auto [lo, hi] : plain) {
            for (uint32_t cut : {uint32_t('"'), uint32_t('\\')}) {
                if (lo <= cut && hi >= cut) {
                    if (lo < cut) unescaped.emplace_back(lo, cut - 1);
                    lo = cut + 1;
                }
            }
            if (lo <= hi) unescaped.emplace_back(lo, hi);
        }
        const uint32_t r = b_.add_rule("pattern-char");
        if (!unescaped.empty()) b_.add_alt(r, {Builder::rule(b_.char_class(unescaped, false))});
        std::sort(escaped.begin(), escaped.end());
        escaped.erase(std::unique(escaped.begin(), escaped.end()), escaped.end());
        for (uint32_t c : escaped) {
            static const char* kHex = "0123456789abcdef";
            std::string text;
            switch (c) {
            case '"':
                text = "\\\"";
                break;
            case '\\':
                text = "\\\\";
                break;
            case '\n':
                text = "\\n";
                break;
            case '\t':
                text = "\\t";
                break;
            case '\r':
                text = "\\r";
                break;
            case '\b':
                text = "\\b";
                break;
            case '\f':
                text = "\\f";
                break;
            default:
                text = std::string("\\u00") + kHex[c >> 4] + kHex[c & 15];
            }
            Seq seq;
            b_.literal(seq, text);
            b_.add_alt(r, std::move(seq));
        }
        if (!b_.has_alts(r)) fail(pos_, "a class that matches no character");
        return r;
    }

    uint32_t alternatives() {
        const uint32_t r = b_.add_rule("pattern-alt");
        for (;;) {
            b_.add_alt(r, sequence());
            if (peek() != '|') return r;
            ++pos_;
        }
    }

    Seq sequence() {
        Seq seq;
        while (more() && peek() != '|' && peek() != ')') {
            const size_t at = pos_;
            const uint32_t atom = parse_atom();
            uint32_t min = 1, max = 1;
            const char q = peek();
            if (q == '*' || q == '+' || q == '?') {
                ++pos_;
                min = q == '+' ? 1 : 0;
                max = q == '?' ? 1 : max_repeat_;
            } else if (q == '{' && braces_quantifier(min, max)) {
            } else {
                seq.push_back(Builder::rule(atom));
                continue;
            }
            if (peek() == '?') ++pos_; // lazy: the same strings
            if (max < min) fail(at, "{n,m} with m below n");
            seq.push_back(Builder::repeat(atom, min, max));
        }
        return seq;
    }

    bool braces_quantifier(uint32_t& min, uint32_t& max) {
        size_t i = pos_ + 1;
        auto number = [&](uint32_t& v) {
            const size_t s = i;
            uint64_t n = 0;
            while (i < limit_ && p_[i] >= '0' && p_[i] <= '9') {
                n = n * 10 + uint64_t(p_[i] - '0');
                if (n > 100000) fail(s, "repetition count above 100000");
                ++i;
            }
            v = uint32_t(n);
            return i > s;
        };
        if (!number(min)) fail(pos_, "'{' that is not a quantifier (escape it as \\{)");
        max = min;
        if (i < limit_ && p_[i] == ',') {
            ++i;
            if (!number(max)) max = std::max(min, max_repeat_);
        }
        if (i >= limit_ || p_[i] != '}') fail(pos_, "quantifier is not closed with '}'");
        pos_ = i + 1;
        return true;
    }

    uint32_t parse_atom() {
        const size_t at = pos_;
        const char c = peek();
        if (c == '(') {
            if (++depth_ > 200) fail(at, "groups nested more than 200 deep");
            ++pos_;
            if (peek() == '?') {
                if (pos_ + 1 < limit_ && p_[pos_ + 1] == ':') {
                    pos_ += 2;
                } else {
                    fail(at, "lookaround and named groups are not supported");
                }
            }
            const uint32_t r = alternatives();
            if (peek() != ')') fail(at, "group is not closed with ')'");
            ++pos_;
            --depth_;
            return r;
        }
        if (c == '[') return json_chars(parse_class());
        if (c == '.') {
            ++pos_;
            return json_chars({{0x20, 0x10ffff}});
        }
        if (c == '^' || c == '$') fail(at, "anchors are supported only at the ends");
        if (c == '*' || c == '+' || c == '?' || c == '{')
            fail(at, "a quantifier with nothing before it");
        if (c == '\\') {
            std::vector<CodeRange> set;
            escape(set, false);
            return json_chars(set);
        }
        const auto [cp, len] = utf8_code_point(p_, pos_);
        pos_ += len;
        return json_chars({{cp, cp}});
    }

    // An escape after '\': its characters into `set`.
    void escape(std::vector<CodeRange>& set, bool in_class) {
        const size_t at = pos_;
        ++pos_;
        if (!more()) fail(at, "'\\' at the end of the pattern");
        const char e = peek();
        ++pos_;
        auto hex = [&](int n) {
            uint32_t v = 0;
            for (int i = 0; i < n; ++i) {
                const char h = peek();
                int d = h >= '0' && h <= '9'   ? h - '0'
                        : h >= 'a' && h <= 'f' ? h - 'a' + 10
                        : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                               : -1;
                if (d < 0) fail(at, "bad hexadecimal escape");
                v = v * 16 + uint32_t(d);
                ++pos_;
            }
            return v;
        };
        const std::vector<CodeRange> digits{{'0', '9'}};
        const std::vector<CodeRange> word{{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}};
        const std::vector<CodeRange> space{{'\t', '\r'}, {' ', ' '}};
        // The negated escapes never yield control characters.
        auto others = [](const std::vector<CodeRange>& r) { return complement(r, 0x20); };
        switch (e) {
        case 'd':
            set.insert(set.end(), digits.begin(), digits.end());
            return;
        case 'w':
            set.insert(set.end(), word.begin(), word.end());
            return;
        case 's':
            set.insert(set.end(), space.begin(), space.end());
            return;
        case 'D':
            for (auto r : others(digits)) set.push_back(r);
            return;
        case 'W':
            for (auto r : others(word)) set.push_back(r);
            return;
        case 'S':
            for (auto r : others(space)) set.push_back(r);
            return;
        case 'n':
            set.emplace_back('\n', '\n');
            return;
        case 't':
            set.emplace_back('\t', '\t');
            return;
        case 'r':
            set.emplace_back('\r', '\r');
            return;
        case 'f':
            set.emplace_back('\f', '\f');
            return;
        case 'v':
            set.emplace_back('\v', '\v');
            return;
        case 'x': {
            const uint32_t v = hex(2);
            set.emplace_back(v, v);
            return;
        }
        case 'u': {
            const uint32_t v = hex(4);
            set.emplace_back(v, v);
            return;
        }
        case 'b':
            if (in_class) {
                set.emplace_back('\b', '\b');
                return;
            }
            fail(at, "word boundaries (\\b) are not supported");
        default:
            break;
        }
        if (e >= '1' && e <= '9') fail(at, "backreferences are not supported");
        if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z') || (e >= '0' && e <= '9'))
            fail(at, std::string("unknown escape '\\") + e + "'");
        set.emplace_back(uint32_t(uint8_t(e)), uint32_t(uint8_t(e)));
    }

    std::vector<CodeRange> parse_class() {
        const size_t at = pos_;
        ++pos_;
        bool negated = false;
        if (peek() == '^') {
            negated = true;
            ++pos_;
        }
        std::vector<CodeRange> set;
        bool first = true;
        while (more() && (peek() != ']' || first)) {
            first = false;
            uint32_t lo;
            if (peek() == '\\') {
                std::vector<CodeRange> one;
                escape(one, true);
                if (one.size() != 1 || one[0].first != one[0].second) {
                    set.insert(set.end(), one.begin(), one.end());
                    continue;
                }
                lo = one[0].first;
            } else {
                const auto [cp, len] = utf8_code_point(p_, pos_);
                lo = cp;
                pos_ += len;
            }
            uint32_t hi = lo;
            if (peek() == '-' && pos_ + 1 < limit_ && p_[pos_ + 1] != ']') {
                ++pos_;
                if (peek() == '\\') {
                    std::vector<CodeRange> one;
                    escape(one, true);
                    if (one.size() != 1 || one[0].first != one[0].second)
                        fail(at, "a class range must end in one character");
                    hi = one[0].first;
                } else {
                    const auto [cp, len] = utf8_code_point(p_, pos_);
                    hi = cp;
                    pos_ += len;
                }
                if (hi < lo) fail(at, "class range runs backwards");
            }
            set.emplace_back(lo, hi);
        }
        if (peek() != ']') fail(at, "class is not closed with ']'");
        ++pos_;
        // A negated class never yields control characters.
        return negated ? complement(std::move(set), 0x20) : set;
    }

    Builder& b_;
    std::string_view p_;
    uint32_t max_repeat_;
    size_t pos_ = 0;
    size_t limit_ = 0;
    int depth_ = 0;
};

} // namespace

uint32_t compile_regex(Builder& b, std::string_view pattern, uint32_t max_repeat) {
    return RegexParser(b, pattern, max_repeat).parse();
}

} // namespace woolly::grammar
