// token_trie.cpp — building the token trie from sorted token bytes.
#include "engine/text/token_trie.h"

#include <algorithm>
#include <numeric>

#include "engine/error.h"
#include "engine/text/utf8.h"

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

    std::vector<TokenId> order[kParts];
    for (TokenId id = 0; id < n_vocab_; ++id) {
        if (!in_trie(id)) continue;
        size_t p = 0;
        while (bytes(id).size() > kPartBytes[p]) ++p;
        order[p].push_back(id);
    }
    for (size_t p = 0; p < kParts; ++p) build(parts_[p], std::move(order[p]));

    // Every JSON Schema's strings loop on the characters of a JSON string (all but '"', '\\'
    // and the controls): their shortcuts are made with the trie, not in the first masks.
    AsciiSet json_string;
    for (uint32_t b = 0x20; b < 0x80; ++b) json_string.set(b);
    json_string.reset('"');
    json_string.reset('\\');
    shortcut(json_string, true);
    shortcut(json_string, false);
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
    std::vector<uint16_t> chars(kMaxTokenBytes + 1, 0); // [depth] characters begun on the path
    // Closing the deepest open node: its subtree ends here, and its parent's begins as many
    // characters.
    auto close_node = [&] {
        Node& n = nodes[open.back()];
        n.subtree_end = uint32_t(nodes.size());
        open.pop_back();
        if (!open.empty()) {
            uint16_t& up = nodes[open.back()].subtree_chars;
            up = std::max(up, n.subtree_chars);
        }
    };
    std::string_view previous;
    for (size_t i = 0; i < order.size(); ++i) {
        const std::string_view b = bytes(order[i]);
        size_t common = 0;
        while (common < b.size() && common < previous.size() && b[common] == previous[common])
            ++common;
        while (open.size() > common) close_node();
        for (size_t d = common; d < b.size(); ++d) {
            Node n;
            n.byte = uint8_t(b[d]);
            n.depth = uint16_t(d + 1);
            const bool begins = (uint8_t(b[d]) & 0xc0) != 0x80;
            chars[d + 1] = uint16_t(chars[d] + begins);
            n.subtree_chars = chars[d + 1];
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
    while (!open.empty()) close_node();
}

std::shared_ptr<const TokenTrie::Shortcut> TokenTrie::shortcut(const AsciiSet& set,
                                                               bool utf8) const {
    std::lock_guard<std::mutex> lock(shortcuts_mutex_);
    // Kept most recently used last.
    for (size_t i = 0; i < shortcuts_.size(); ++i)
        if (shortcuts_[i]->set == set && shortcuts_[i]->utf8 == utf8) {
            std::rotate(shortcuts_.begin() + long(i), shortcuts_.begin() + long(i) + 1,
                        shortcuts_.end());
            return shortcuts_.back();
        }
    auto made = std::make_shared<Shortcut>();
    made->set = set;
    made->utf8 = utf8;
    const size_t words = size_t(n_vocab_) / 64 + 1;
    made->first_upto.assign(kPartBytes[0] + 1, std::vector<uint64_t>(words, 0));
    for (size_t p = 0; p < kParts; ++p) {
        const Part& part = parts_[p];
        const auto& nodes = part.nodes;
        const size_t n = nodes.size();
        // Forward, depth-first: whether each node's path is all of the set, from its parent's
        // (at[d]: the path's first d bytes) and the character its own byte begins or continues.
        struct Along {
            uint16_t begin = 0; // where the character of the path's last byte begins
            bool open = false;  // and that character is cut short
            uint16_t chars = 0;
            bool good = true;
        };
        std::vector<Along> at(size_t(part.max_depth) + 1);
        std::vector<uint8_t> path(part.max_depth), good(n);
        for (size_t i = 0; i < n; ++i) {
            const Node& node = nodes[i];
            const size_t d = node.depth - 1; // this node's byte is path[d]
            const Along& up = at[d];
            Along& here = at[d + 1];
            path[d] = node.byte;
            here.begin = up.open ? up.begin : uint16_t(d);
            const int len = utf8_sequence(&path[here.begin], d + 1 - here.begin);
            here.open = len == 0;
            here.chars = uint16_t(up.chars + (here.begin == d));
            here.good = up.good && len != -1 && (len == 1 ? set.test(node.byte) : utf8);
            good[i] = here.good;
            if (!here.good) continue;
            for (uint32_t k = 0; k < node.n_tokens; ++k) {
                const TokenId id = part.tokens[node.first_token + k];
                if (p == 0)
                    made->first_upto[here.chars][size_t(id) / 64] |= uint64_t(1)
                                                                     << (size_t(id) % 64);
                else
                    made->tokens[p].emplace_back(here.chars, id);
            }
        }
        // Backward, so that a node's children are known when it is reached; the children are
        // found by hopping from one subtree's end to the next.
        std::vector<uint64_t>& closed = made->closed[p];
        closed.assign((n + 63) / 64, 0);
        for (size_t i = n; i-- > 0;) {
            bool all = good[i];
            for (size_t c = i + 1; all && c < nodes[i].subtree_end; c = nodes[c].subtree_end)
                all = (closed[c / 64] >> (c % 64)) & 1;
            if (all) closed[i / 64] |= uint64_t(1) << (i % 64);
        }
    }
    for (size_t k = 1; k <= kPartBytes[0]; ++k)
        for (size_t w = 0; w < words; ++w) made->first_upto[k][w] |= made->first_upto[k - 1][w];
    for (auto& t : made->tokens) std::sort(t.begin(), t.end());
    if (shortcuts_.size() == kKeptShortcuts) shortcuts_.erase(shortcuts_.begin());
    shortcuts_.push_back(made);
    return made;
}

std::string_view TokenTrie::bytes(TokenId id) const {
    if (id < 0 || id >= n_vocab_) return {};
    const uint32_t a = offsets_[size_t(id)], b = offsets_[size_t(id) + 1];
    return std::string_view(bytes_).substr(a, b - a);
}

} // namespace woolly
