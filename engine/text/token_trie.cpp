// token_trie.cpp — building the token trie from sorted token bytes.
#include "engine/text/token_trie.h"

#include <algorithm>
#include <numeric>

#include "engine/error.h"

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

    std::vector<TokenId> short_order, long_order;
    for (TokenId id = 0; id < n_vocab_; ++id) {
        if (!in_trie(id)) continue;
        (bytes(id).size() <= kShortBytes ? short_order : long_order).push_back(id);
    }
    build(short_, std::move(short_order));
    build(long_, std::move(long_order));
}

void TokenTrie::build(Part& part, std::vector<TokenId> order) {
    std::sort(order.begin(), order.end(), [&](TokenId a, TokenId b) {
        const std::string_view x = bytes(a), y = bytes(b);
        return x != y ? x < y : a < b;
    });
    part.tokens = order;
    auto& nodes = part.nodes;

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
            nodes[open.back()].subtree_end = uint32_t(nodes.size());
            open.pop_back();
        }
        for (size_t d = common; d < b.size(); ++d) {
            Node n;
            n.byte = uint8_t(b[d]);
            n.depth = uint16_t(d + 1);
            n.first_token = uint32_t(i);
            n.token = uint32_t(n_vocab_);
            open.push_back(uint32_t(nodes.size()));
            nodes.push_back(n);
        }
        Node& last = nodes[open.back()];
        if (last.n_tokens == 0) {
            last.first_token = uint32_t(i);
            last.token = uint32_t(order[i]);
        }
        if (last.n_tokens == UINT16_MAX)
            throw Error("vocabulary: too many tokens with the same bytes");
        ++last.n_tokens;
        part.max_depth = std::max(part.max_depth, uint16_t(b.size()));
        previous = b;
    }
    while (!open.empty()) {
        nodes[open.back()].subtree_end = uint32_t(nodes.size());
        open.pop_back();
    }
}

std::shared_ptr<const TokenTrie::Shortcut> TokenTrie::shortcut(const AsciiSet& set) const {
    std::lock_guard<std::mutex> lock(shortcuts_mutex_);
    for (const auto& s : shortcuts_)
        if (s->set == set) return s;
    auto made = std::make_shared<Shortcut>();
    made->set = set;
    const auto& nodes = short_.nodes;
    const size_t n = nodes.size();
    made->closed.assign((n + 63) / 64, 0);
    // From the last node back, so that a node's children are known when it is reached; the
    // children are found by hopping from one subtree's end to the next.
    for (size_t i = n; i-- > 0;) {
        const Node& node = nodes[i];
        bool all = node.byte < 128 && set.test(node.byte);
        for (size_t c = i + 1; all && c < node.subtree_end; c = nodes[c].subtree_end)
            all = (made->closed[c / 64] >> (c % 64)) & 1;
        if (all) made->closed[i / 64] |= uint64_t(1) << (i % 64);
    }
    made->tokens.assign(size_t(n_vocab_) / 64 + 1, 0);
    for (TokenId id : short_.tokens) {
        bool all = true;
        for (char c : bytes(id)) all = all && uint8_t(c) < 128 && set.test(uint8_t(c));
        if (all) made->tokens[size_t(id) / 64] |= uint64_t(1) << (size_t(id) % 64);
    }
    constexpr size_t kKept = 8;
    if (shortcuts_.size() == kKept) shortcuts_.erase(shortcuts_.begin());
    shortcuts_.push_back(made);
    return made;
}

std::string_view TokenTrie::bytes(TokenId id) const {
    if (id < 0 || id >= n_vocab_) return {};
    const uint32_t a = offsets_[size_t(id)], b = offsets_[size_t(id) + 1];
    return std::string_view(bytes_).substr(a, b - a);
}

} // namespace woolly
