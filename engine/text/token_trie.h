// token_trie.h — every token's bytes in two tries (tokens of at most kShortBytes bytes, and the
// longer ones), each laid out in depth-first order so that a walk can skip a whole subtree by
// index: what a grammar matcher walks to find the tokens allowed next without trying them one by
// one. The split lets the matcher reuse the short tokens' answer across states that differ only
// beyond kShortBytes bytes.
#pragma once

#include <algorithm>
#include <bitset>
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
        uint8_t byte = 0;
    };
    struct Part {
        std::vector<Node> nodes;     // all nodes but the root, depth-first: children follow
        std::vector<TokenId> tokens; // in byte order; a node's are [first_token, +n_tokens)
        uint16_t max_depth = 0;      // the longest token's bytes
    };
    const Part& short_tokens() const { return short_; } // at most kShortBytes bytes
    const Part& long_tokens() const { return long_; }
    uint16_t max_depth() const { return std::max(short_.max_depth, long_.max_depth); }
    int32_t n_vocab() const { return n_vocab_; }
    // A token's bytes, empty for a token not in the trie.
    std::string_view bytes(TokenId id) const;
    bool in_trie(TokenId id) const { return !bytes(id).empty(); }

    // For a set of ASCII bytes: which short-token subtrees hold nothing else, and which short
    // tokens are made of them alone. A grammar state that takes any of these bytes and stays as
    // it was (inside a JSON string) allows all those tokens at once, without walking them.
    using AsciiSet = std::bitset<128>;
    struct Shortcut {
        AsciiSet set;
        std::vector<uint64_t> closed; // [short nodes] bit: the node's subtree is all of `set`
        std::vector<uint64_t> tokens; // [n_vocab / 64 + 1] bit: a short token all of `set`
    };
    // Made on first use for a set and kept (a few sets per vocabulary); safe from any thread.
    std::shared_ptr<const Shortcut> shortcut(const AsciiSet& set) const;

    static constexpr size_t kMaxTokenBytes = 1024; // longer tokens are left out
    static constexpr size_t kShortBytes = 16;

private:
    void build(Part& part, std::vector<TokenId> order);

    Part short_, long_;
    std::vector<uint32_t> offsets_; // [n_vocab + 1] into bytes_
    std::string bytes_;
    int32_t n_vocab_ = 0;
    mutable std::mutex shortcuts_mutex_;
    mutable std::vector<std::shared_ptr<const Shortcut>> shortcuts_;
};

} // namespace woolly
