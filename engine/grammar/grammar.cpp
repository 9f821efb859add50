// grammar.cpp — building a byte grammar: character classes as UTF-8 sequences, and the checks a
// grammar passes before it runs (every rule defined, no left recursion).
#include "engine/grammar/grammar.h"

#include <algorithm>

#include "engine/error.h"

namespace woolly::grammar {
namespace {

constexpr uint32_t kMaxCodePoint = 0x10ffff;

void encode(uint32_t cp, uint8_t* out, int& n) {
    if (cp < 0x80) {
        out[0] = uint8_t(cp);
        n = 1;
    } else if (cp < 0x800) {
        out[0] = uint8_t(0xc0 | (cp >> 6));
        out[1] = uint8_t(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        out[0] = uint8_t(0xe0 | (cp >> 12));
        out[1] = uint8_t(0x80 | ((cp >> 6) & 0x3f));
        out[2] = uint8_t(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        out[0] = uint8_t(0xf0 | (cp >> 18));
        out[1] = uint8_t(0x80 | ((cp >> 12) & 0x3f));
        out[2] = uint8_t(0x80 | ((cp >> 6) & 0x3f));
        out[3] = uint8_t(0x80 | (cp & 0x3f));
        n = 4;
    }
}

// Russ Cox's split (RE2's utf8 ranges): cut lo..hi where the encoded length changes, then where
// the trailing bytes stop spanning their whole range, until each piece is one range per byte.
void split(uint32_t lo, uint32_t hi, std::vector<std::vector<std::pair<uint8_t, uint8_t>>>& out) {
    if (lo > hi) return;
    // Surrogates are not characters.
    if (lo <= 0xdfff && hi >= 0xd800) {
        if (lo < 0xd800) split(lo, 0xd7ff, out);
        if (hi > 0xdfff) split(0xe000, hi, out);
        return;
    }
    for (uint32_t max : {0x7fu, 0x7ffu, 0xffffu}) {
        if (lo <= max && hi > max) {
            split(lo, max, out);
            split(max + 1, hi, out);
            return;
        }
    }
    for (int i = 1; i < 4; ++i) {
        const uint32_t m = (1u << (6 * i)) - 1;
        if ((lo & ~m) != (hi & ~m)) {
            if ((lo & m) != 0) {
                split(lo, lo | m, out);
                split((lo | m) + 1, hi, out);
                return;
            }
            if ((hi & m) != m) {
                split(lo, (hi & ~m) - 1, out);
                split(hi & ~m, hi, out);
                return;
            }
        }
    }
    uint8_t a[4], b[4];
    int na = 0, nb = 0;
    encode(lo, a, na);
    encode(hi, b, nb);
    std::vector<std::pair<uint8_t, uint8_t>> seq;
    for (int i = 0; i < na; ++i) seq.emplace_back(a[i], b[i]);
    out.push_back(std::move(seq));
}

} // namespace

std::vector<std::vector<std::pair<uint8_t, uint8_t>>> utf8_sequences(uint32_t lo, uint32_t hi) {
    std::vector<std::vector<std::pair<uint8_t, uint8_t>>> out;
    split(lo, std::min(hi, kMaxCodePoint), out);
    return out;
}

std::vector<CodeRange> complement(std::vector<CodeRange> ranges, uint32_t from) {
    std::sort(ranges.begin(), ranges.end());
    std::vector<CodeRange> out;
    uint32_t next = from;
    for (const auto& [lo, hi] : ranges) {
        if (lo > next) out.emplace_back(next, lo - 1);
        next = std::max(next, hi + 1);
    }
    if (next <= kMaxCodePoint) out.emplace_back(next, kMaxCodePoint);
    return out;
}

uint32_t Builder::add_rule(std::string_view name) {
    std::string unique(name);
    for (int n = 2; std::find(names_.begin(), names_.end(), unique) != names_.end(); ++n)
        unique = std::string(name) + "-" + std::to_string(n);
    names_.push_back(std::move(unique));
    rules_.emplace_back();
    return uint32_t(rules_.size() - 1);
}

void Builder::add_alt(uint32_t rule, Seq seq) {
    rules_[rule].push_back(std::move(seq));
}

Symbol Builder::bytes(const ByteSet& set) {
    for (size_t i = 0; i < byte_sets_.size(); ++i)
        if (byte_sets_[i] == set) return {Symbol::Kind::Bytes, uint32_t(i), 1, 1};
    byte_sets_.push_back(set);
    return {Symbol::Kind::Bytes, uint32_t(byte_sets_.size() - 1), 1, 1};
}

Symbol Builder::byte(uint8_t b) {
    ByteSet set;
    set.set(b);
    return bytes(set);
}

void Builder::literal(Seq& seq, std::string_view text) {
    for (char c : text) seq.push_back(byte(uint8_t(c)));
}

uint32_t Builder::char_class(std::vector<CodeRange> ranges, bool negated) {
    for (auto& [lo, hi] : ranges) {
        lo = std::min(lo, kMaxCodePoint);
        hi = std::min(hi, kMaxCodePoint);
        if (lo > hi) std::swap(lo, hi);
    }
    std::sort(ranges.begin(), ranges.end());
    std::vector<CodeRange> merged;
    for (const auto& r : ranges) {
        if (!merged.empty() && r.first <= merged.back().second + 1)
            merged.back().second = std::max(merged.back().second, r.second);
        else
            merged.push_back(r);
    }
    if (negated) merged = complement(std::move(merged));
    std::string key;
    for (const auto& [lo, hi] : merged) key += std::to_string(lo) + "-" + std::to_string(hi) + ",";
    for (const auto& [k, rule] : class_rules_)
        if (k == key) return rule;

    const uint32_t rule = add_rule("char");
    // Sequences of one byte merge into one set; longer ones stay alternatives of their own.
    ByteSet single;
    for (const auto& [lo, hi] : merged) {
        for (const auto& seq : utf8_sequences(lo, hi)) {
            if (seq.size() == 1) {
                for (unsigned b = seq[0].first; b <= seq[0].second; ++b) single.set(b);
                continue;
            }
            // Trailing continuation bytes that may be any (80..BF) go through one shared rule, so
            // that every character needing k more such bytes is in the same state.
            size_t tail = 0;
            while (tail + 1 < seq.size() &&
                   seq[seq.size() - 1 - tail] == std::make_pair(uint8_t(0x80), uint8_t(0xbf)))
                ++tail;
            Seq alt;
            for (size_t i = 0; i + tail < seq.size(); ++i) {
                ByteSet set;
                for (unsigned x = seq[i].first; x <= seq[i].second; ++x) set.set(x);
                alt.push_back(bytes(set));
            }
            if (tail > 0) alt.push_back(Builder::rule(continuation_bytes(tail)));
            add_alt(rule, std::move(alt));
        }
    }
    if (single.any()) add_alt(rule, {bytes(single)});
    // A class with no characters at all (such as [^\x00-\U0010FFFF]) matches nothing: the rule
    // keeps no alternative and finish() reports it.
    class_rules_.emplace_back(std::move(key), rule);
    return rule;
}

uint32_t Builder::continuation_bytes(size_t n) {
    if (continuation_rules_.size() < n) continuation_rules_.resize(n, UINT32_MAX);
    uint32_t& made = continuation_rules_[n - 1];
    if (made != UINT32_MAX) return made;
    ByteSet any;
    for (unsigned x = 0x80; x <= 0xbf; ++x) any.set(x);
    Seq seq{bytes(any)};
    if (n > 1) seq.push_back(rule(continuation_bytes(n - 1)));
    made = group("utf8-tail", std::move(seq));
    return made;
}

uint32_t Builder::group(std::string_view name, Seq seq) {
    const uint32_t rule = add_rule(name);
    add_alt(rule, std::move(seq));
    return rule;
}

Grammar Builder::finish(uint32_t root) {
    const size_t n = rules_.size();
    for (size_t r = 0; r < n; ++r)
        if (rules_[r].empty())
            throw Error("grammar: rule '" + names_[r] + "' matches nothing (no alternatives)");

    // Which rules can match the empty string (a fixed point).
    std::vector<bool> nullable(n, false);
    auto symbol_nullable = [&](const Symbol& s) {
        switch (s.kind) {
        case Symbol::Kind::Bytes:
            return false;
        case Symbol::Kind::Rule:
            return bool(nullable[s.index]);
        case Symbol::Kind::Repeat:
            return s.min == 0 || nullable[s.index];
        case Symbol::Kind::End:
            return true;
        }
        return true;
    };
    // A work list over the rules' uses: each alternative counts the symbols that are not yet
    // known to match nothing, and a rule found nullable counts down the alternatives that use
    // it. Linear in the grammar's size.
    struct Use {
        uint32_t rule, alt;
    };
    std::vector<std::vector<Use>> uses(n);
    std::vector<std::vector<uint32_t>> pending(n);
    std::vector<uint32_t> found;
    auto mark_nullable = [&](uint32_t r) {
        if (!nullable[r]) {
            nullable[r] = true;
            found.push_back(r);
        }
    };
    for (size_t r = 0; r < n; ++r) {
        pending[r].assign(rules_[r].size(), 0);
        for (size_t a = 0; a < rules_[r].size(); ++a) {
            bool dead = false;
            for (const Symbol& s : rules_[r][a]) {
                if (s.kind == Symbol::Kind::Bytes) dead = true;
                if (s.kind == Symbol::Kind::Rule || (s.kind == Symbol::Kind::Repeat && s.min > 0)) {
                    uses[s.index].push_back({uint32_t(r), uint32_t(a)});
                    ++pending[r][a];
                }
            }
            if (dead) pending[r][a] = UINT32_MAX; // never nullable
            else if (pending[r][a] == 0) mark_nullable(uint32_t(r));
        }
    }
    while (!found.empty()) {
        const uint32_t s = found.back();
        found.pop_back();
        for (const Use& u : uses[s]) {
            uint32_t& left = pending[u.rule][u.alt];
            if (left == UINT32_MAX || left == 0) continue;
            if (--left == 0) mark_nullable(u.rule);
        }
    }
    // Left corners: rule r can begin with rule s without reading a byte. A cycle is left
    // recursion.
    std::vector<std::vector<uint32_t>> corners(n);
    for (size_t r = 0; r < n; ++r) {
        for (const Seq& alt : rules_[r]) {
            for (const Symbol& s : alt) {
                if (s.kind == Symbol::Kind::Rule || s.kind == Symbol::Kind::Repeat)
                    corners[r].push_back(s.index);
                if (!symbol_nullable(s)) break;
            }
        }
    }
    // Depth-first search for a cycle, with its own stack (grammars may chain many rules).
    std::vector<uint8_t> mark(n, 0); // 0 new, 1 on the path, 2 done
    std::vector<std::pair<uint32_t, size_t>> path; // rule, next corner to look at
    for (size_t start = 0; start < n; ++start) {
        if (mark[start] != 0) continue;
        mark[start] = 1;
        path.emplace_back(uint32_t(start), 0);
        while (!path.empty()) {
            auto& [r, next] = path.back();
            if (next == corners[r].size()) {
                mark[r] = 2;
                path.pop_back();
                continue;
            }
            const uint32_t s = corners[r][next++];
            if (mark[s] == 1) {
                std::string cycle;
                size_t from = 0;
                while (path[from].first != s) ++from;
                for (size_t i = from; i < path.size(); ++i) cycle += names_[path[i].first] + " -> ";
                throw Error("grammar: rule '" + names_[s] + "' is left-recursive (" + cycle +
                            names_[s] + "); write the repetition with * or + instead");
            }
            if (mark[s] == 0) {
                mark[s] = 1;
                path.emplace_back(s, 0);
            }
        }
    }

    Grammar g;
    g.nullable.assign(nullable.begin(), nullable.end());
    // Byte classes by refinement: each set splits every class it cuts in two.
    uint32_t n_classes = 1;
    for (const ByteSet& set : byte_sets_) {
        std::array<int16_t, 512> split; // [class * 2 + in set] -> new class
        split.fill(-1);
        uint32_t next = 0;
        for (int b = 0; b < 256; ++b) {
            int16_t& c = split[size_t(g.byte_class[size_t(b)]) * 2 + (set.test(size_t(b)) ? 1 : 0)];
            if (c < 0) c = int16_t(next++);
            g.byte_class[size_t(b)] = uint8_t(c);
        }
        n_classes = next;
    }
    g.class_byte.assign(n_classes, 0);
    for (int b = 255; b >= 0; --b) g.class_byte[g.byte_class[size_t(b)]] = uint8_t(b);
    g.byte_sets = byte_sets_;
    g.names = names_;
    g.alts.resize(n);
    g.root = root;
    for (size_t r = 0; r < n; ++r) {
        for (const Seq& alt : rules_[r]) {
            g.alts[r].push_back(uint32_t(g.symbols.size()));
            g.symbols.insert(g.symbols.end(), alt.begin(), alt.end());
            g.symbols.push_back({Symbol::Kind::End, 0, 0, 0});
        }
    }
    return g;
}

} // namespace woolly::grammar
