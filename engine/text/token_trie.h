// token_trie.h — every token's bytes in one trie, laid out in depth-first order so that a walk
// can skip a whole subtree by index: what a grammar matcher walks to find the tokens allowed
// next without trying them one by one.
#pragma once

#include <cstdint>
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
        uint32_t first_token = 0; // into tokens(): the tokens whose bytes end here
        uint32_t n_tokens = 0;
        uint16_t depth = 0; // 1 for a first byte
        uint8_t byte = 0;
    };
    // All nodes but the root, depth-first: a node's children follow it.
    const std::vector<Node>& nodes() const { return nodes_; }
    const TokenId* tokens() const { return tokens_.data(); }
    uint16_t max_depth() const { return max_depth_; }
    int32_t n_vocab() const { return n_vocab_; }
    // A token's bytes, empty for a token not in the trie.
    std::string_view bytes(TokenId id) const;
    bool in_trie(TokenId id) const { return !bytes(id).empty(); }

    static constexpr size_t kMaxTokenBytes = 1024; // longer tokens are left out

private:
    std::vector<Node> nodes_;
    std::vector<TokenId> tokens_;
    std::vector<uint32_t> offsets_; // [n_vocab + 1] into bytes_
    std::string bytes_;
    uint16_t max_depth_ = 0;
    int32_t n_vocab_ = 0;
};

} // namespace woolly
