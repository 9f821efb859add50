// token_trie.h — every token's bytes in a few tries by length (tokens of at most 16 bytes, of 17
// to 32, and longer), each laid out in depth-first order so that a walk can skip a whole subtree
// by index: what a grammar matcher walks to find the tokens allowed next without trying them one
// by one. The split lets the matcher reuse a part's answer across states that differ only beyond
// that part's longest token.
#pragma once

#include <algorithm>
#include <bitset>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string_view>
#include <vector>

#include "engine/text/vocab.h"

namespace woolly {

class TokenTrie {
public:
    // Tokens with bytes (normal, user-defined, byte and unknown tokens) go in the trie; control
    // tokens, which stand for no text, and the end-of-generation tokens do not.
    explicit TokenTrie(const Vocab& vocab);

    struct Node {
        uint32_t subtree_end = 0; // index just past this node's descendants
        // The token whose bytes end here (the first of them when several share the bytes), or
        // n_vocab() when none does: a walk can set its bit without a branch.
        uint32_t token = 0;
        uint32_t first_token = 0; // into Part::tokens: all the tokens whose bytes end here
        uint16_t n_tokens = 0;
        uint16_t depth = 0; // 1 for a first byte
        // The most characters any path through this node's subtree begins (ASCII and UTF-8 lead
        // bytes: a path that ends inside a character counts it).
        uint16_t subtree_chars = 0;
        uint8_t byte = 0;
    };
    struct Part {
        std::vector<Node> nodes;     // all nodes but the root, depth-first: children follow
        std::vector<TokenId> tokens; // in byte order; a node's are [first_token, +n_tokens)
        uint16_t max_depth = 0;      // the longest token's bytes
    };
    // The parts, shortest tokens first: part p holds the tokens of more than kPartBytes[p - 1]
    // and at most kPartBytes[p] bytes.
    static constexpr size_t kParts = 3;
    static constexpr size_t kPartBytes[kParts] = {16, 32, SIZE_MAX};
    const Part& part(size_t p) const { return parts_[p]; }
    uint16_t max_depth() const {
        uint16_t d = 0;
        for (const Part& p : parts_) d = std::max(d, p.max_depth);
        return d;
    }
    int32_t n_vocab() const { return n_vocab_; }
    // A token's bytes, empty for a token not in the trie.
    std::string_view bytes(TokenId id) const;
    bool in_trie(TokenId id) const { return !bytes(id).empty(); }

    // For a set of ASCII bytes, with or without every other (multi-byte) UTF-8 character:
    // which subtrees hold nothing else on the whole path from the root (a character cut short at
    // the end counts as one of them), and which tokens are made of them alone, by characters. A
    // grammar state that takes any of these characters and is then where it was, or that takes up
    // to k of them in a row (inside a JSON string k characters from its bound), allows all those
    // tokens (of at most k characters) at once, without walking them.
    using AsciiSet = std::bitset<128>;
    struct Shortcut {
        AsciiSet set;
        bool utf8 = false; // every well-formed multi-byte character belongs too
        // [part][nodes] bit: the node's path and subtree are all of it
        std::vector<uint64_t> closed[kParts];
        // [k][n_vocab / 64 + 1] bit: a token of the first part of at most k characters, all of
        // it (k from 0 to kPartBytes[0])
        std::vector<std::vector<uint64_t>> first_upto;
        // [part] for the other parts, their tokens all of it, fewest characters first:
        // (characters, token).
        std::vector<std::pair<uint32_t, TokenId>> tokens[kParts];
    };
    // Made on first use for a set and kept (the kKeptShortcuts used last); safe from any thread.
    // One costs about n_vocab * 2.5 bytes (320 KB for Llama 3's vocabulary).
    std::shared_ptr<const Shortcut> shortcut(const AsciiSet& set, bool utf8) const;
    static constexpr size_t kKeptShortcuts = 32;

    static constexpr size_t kMaxTokenBytes = 1024; // longer tokens are left out

private:
    void build(Part& part, std::vector<TokenId> order);

    Part parts_[kParts];
    std::vector<uint32_t> offsets_; // [n_vocab + 1] into bytes_
    std::string bytes_;
    int32_t n_vocab_ = 0;
    mutable std::mutex shortcuts_mutex_;
    mutable std::vector<std::shared_ptr<const Shortcut>> shortcuts_;
};

} // namespace woolly
