// token_trie.cpp — building the token trie from sorted token bytes.
#include "engine/text/token_trie.h"

#include <algorithm>
#include <numeric>

namespace woolly {

TokenTrie::TokenTrie(const Vocab& vocab) : n_vocab_(vocab.size()) {
    offsets_.resize(size_t(n_vocab_) + 1);
    for (TokenId id = 0; id < n_vocab_; ++id) {
        offsets_[size_t(id)] = uint32_t(bytes_.size());
        const TokenType type = vocab.type(id);
        if (type == TokenType::Control || type == TokenType::Unused || vocab.is_eog(id)) continue;
        const std::string_view piece = vocab.piece(id);
        if (piece.size() > kMaxTokenBytes) continue;
        bytes_ += piece;
    }
    offsets_[size_t(n_vocab_)] = uint32_t(bytes_.size());

    std::vector<TokenId> order;
    for (TokenId id = 0; id < n_vocab_; ++id)
        if (in_trie(id)) order.push_back(id);
    std::sort(order.begin(), order.end(), [&](TokenId a, TokenId b) {
        const std::string_view x = bytes(a), y = bytes(b);
        return x != y ? x < y : a < b;
    });
    tokens_ = order;

    // Sorted bytes make the trie a walk: keep the path shared with the previous token, close the
    // nodes past it, and open new ones for the rest.
    std::vector<uint32_t> open; // node indices along the current path
    std::string_view previous;
    for (size_t i = 0; i < order.size(); ++i) {
        const std::string_view b = bytes(order[i]);
        size_t common = 0;
        while (common < b.size() && common < previous.size() && b[common] == previous[common])
            ++common;
        while (open.size() > common) {
            nodes_[open.back()].subtree_end = uint32_t(nodes_.size());
            open.pop_back();
        }
        for (size_t d = common; d < b.size(); ++d) {
            Node n;
            n.byte = uint8_t(b[d]);
            n.depth = uint16_t(d + 1);
            n.first_token = uint32_t(i);
            open.push_back(uint32_t(nodes_.size()));
            nodes_.push_back(n);
        }
        Node& last = nodes_[open.back()];
        if (last.n_tokens == 0) last.first_token = uint32_t(i);
        ++last.n_tokens;
        max_depth_ = std::max(max_depth_, uint16_t(b.size()));
        previous = b;
    }
    while (!open.empty()) {
        nodes_[open.back()].subtree_end = uint32_t(nodes_.size());
        open.pop_back();
    }
}

std::string_view TokenTrie::bytes(TokenId id) const {
    if (id < 0 || id >= n_vocab_) return {};
    const uint32_t a = offsets_[size_t(id)], b = offsets_[size_t(id) + 1];
    return std::string_view(bytes_).substr(a, b - a);
}

} // namespace woolly
