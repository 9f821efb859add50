// grammar.h — a context-free grammar over bytes: what GBNF text and JSON Schemas compile to, and
// what the matcher (matcher.h) runs against tokens. Characters are UTF-8 byte sequences, so a
// token that ends inside a character is judged by its bytes like any other.
#pragma once

#include <array>
#include <bitset>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace woolly::grammar {

using ByteSet = std::bitset<256>;

// One item of an alternative. Alternatives are runs of symbols in Grammar::symbols, each ended by
// an End symbol.
struct Symbol {
    enum class Kind : uint8_t {
        End,    // the alternative is complete
        Bytes,  // one byte from byte_sets[index]
        Rule,   // rule `index`, once
        Repeat, // rule `index`, between min and max times (max kUnbounded: no limit)
    };
    Kind kind = Kind::End;
    uint32_t index = 0;
    uint32_t min = 0;
    uint32_t max = 0;
};

constexpr uint32_t kUnbounded = UINT32_MAX;

// A code point range, both ends included.
using CodeRange = std::pair<uint32_t, uint32_t>;

struct Grammar {
    std::vector<Symbol> symbols;             // every alternative's run, End-terminated
    std::vector<std::vector<uint32_t>> alts; // [rule] where each of its alternatives starts
    std::vector<std::string> names;          // [rule] for messages
    std::vector<ByteSet> byte_sets;
    uint32_t root = 0;
    std::vector<uint8_t> nullable; // [rule] 1 when it can match the empty string
    // Bytes no byte set tells apart share a class: byte_class[b] is b's, class_byte[c] one byte
    // of class c.
    std::array<uint8_t, 256> byte_class{};
    std::vector<uint8_t> class_byte;
    std::vector<std::string> warnings; // what a relaxed (strict: false) schema left unenforced
};

// Builds a Grammar rule by rule, then checks it whole (finish()).
class Builder {
public:
    using Seq = std::vector<Symbol>;

    // A new rule named `name` (made unique with a suffix when taken), with no alternatives yet.
    uint32_t add_rule(std::string_view name);
    void add_alt(uint32_t rule, Seq seq);
    bool has_alts(uint32_t rule) const { return !rules_[rule].empty(); }
    const std::string& name(uint32_t rule) const { return names_[rule]; }

    // Symbols for the items of a sequence.
    Symbol bytes(const ByteSet& set);
    Symbol byte(uint8_t b);
    static Symbol rule(uint32_t r) { return {Symbol::Kind::Rule, r, 1, 1}; }
    static Symbol repeat(uint32_t r, uint32_t min, uint32_t max) {
        return {Symbol::Kind::Repeat, r, min, max};
    }
    // Appends the bytes of `text` one by one.
    void literal(Seq& seq, std::string_view text);
    // A rule matching one character from `ranges` (or, negated, any character outside them)
    // as its UTF-8 bytes; the same class gives the same rule.
    uint32_t char_class(std::vector<CodeRange> ranges, bool negated);
    // A rule of one alternative: `seq` (for groups and repeated items).
    uint32_t group(std::string_view name, Seq seq);

    // Flattens the rules into a Grammar with `root` first. Throws Error for a rule with no
    // alternatives (naming it) and for left recursion (naming the cycle), which a top-down
    // matcher cannot run.
    Grammar finish(uint32_t root);

private:
    std::vector<std::vector<Seq>> rules_;
    std::vector<std::string> names_;
    std::vector<ByteSet> byte_sets_;
    std::vector<std::pair<std::string, uint32_t>> class_rules_; // key -> rule
    std::vector<uint32_t> continuation_rules_; // [n - 1] the rule of n bytes 80..BF

    uint32_t continuation_bytes(size_t n);
};

// The code points from `from` to U+10FFFF that none of `ranges` holds (in any order).
std::vector<CodeRange> complement(std::vector<CodeRange> ranges, uint32_t from = 0);

// The UTF-8 byte-range sequences that together match exactly the code points lo..hi (surrogates
// excluded); each sequence is one range per byte.
std::vector<std::vector<std::pair<uint8_t, uint8_t>>> utf8_sequences(uint32_t lo, uint32_t hi);

} // namespace woolly::grammar
