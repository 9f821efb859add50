// spm.cpp — SentencePiece tokenization as llama.cpp does it: score-ordered bigram merges over
// UTF-8 characters, then byte fallback for what no token covers.
#include <map>
#include <queue>

#include "engine/text/tokenizer.h"

namespace woolly {
namespace {

constexpr std::string_view kSpace = "\xe2\x96\x81"; // U+2581 '▁', SentencePiece's space

// One symbol of the merge: a span of the text in a doubly linked list.
struct Symbol {
    int prev;
    int next;
    const char* text;
    size_t n;
};

struct Bigram {
    int left;
    int right;
    float score;
    size_t size;
};

// Highest score first; on a tie the leftmost pair.
struct BigramOrder {
    bool operator()(const Bigram& a, const Bigram& b) const {
        return a.score < b.score || (a.score == b.score && a.left > b.left);
    }
};

} // namespace

void SpmTokenizer::encode(std::string_view text, bool after_special,
                          std::vector<TokenId>& out) const {
    std::string escaped;
    escaped.reserve(text.size() * 3 + 3);
    if (add_space_prefix_ && after_special) escaped += kSpace;
    for (char c : text) {
        if (c == ' ')
            escaped += kSpace;
        else
            escaped += c;
    }
    merge(escaped, out);
}

std::string SpmTokenizer::decode(std::string_view token_text, TokenType) const {
    std::string out;
    for (size_t i = 0; i < token_text.size();) {
        if (token_text.substr(i, 3) == kSpace) {
            out += ' ';
            i += 3;
        } else {
            out += token_text[i++];
        }
    }
    return out;
}

void SpmTokenizer::merge(std::string_view text, std::vector<TokenId>& out) const {
    if (text.empty()) return;
    // Start from single UTF-8 characters (a truncated or invalid sequence is one byte each).
    std::vector<Symbol> symbols;
    for (size_t offset = 0; offset < text.size();) {
        const size_t len = std::min(utf8_char_len(uint8_t(text[offset])), text.size() - offset);
        const int index = int(symbols.size());
        symbols.push_back(
            {index - 1, offset + len == text.size() ? -1 : index + 1, text.data() + offset, len});
        offset += len;
    }

    std::priority_queue<Bigram, std::vector<Bigram>, BigramOrder> queue;
    std::map<std::string_view, std::pair<int, int>> merged_from; // for resegmenting
    auto try_add = [&](int left, int right) {
        if (left < 0 || right < 0) return;
        const std::string_view pair(symbols[size_t(left)].text,
                                    symbols[size_t(left)].n + symbols[size_t(right)].n);
        const TokenId id = vocab_.find(pair);
        // Control tokens are never built from a user's characters.
        if (id < 0 || vocab_.type(id) == TokenType::Control) return;
        queue.push({left, right, vocab_.score(id), pair.size()});
        merged_from[pair] = {left, right};
    };
    for (int i = 1; i < int(symbols.size()); ++i) try_add(i - 1, i);

    // Repeatedly merge the best-scoring adjacent pair that is still intact.
    while (!queue.empty()) {
        const Bigram bigram = queue.top();
        queue.pop();
        Symbol& left = symbols[size_t(bigram.left)];
        Symbol& right = symbols[size_t(bigram.right)];
        if (left.n == 0 || right.n == 0 || left.n + right.n != bigram.size) continue;
        left.n += right.n;
        right.n = 0;
        left.next = right.next;
        if (right.next >= 0) symbols[size_t(right.next)].prev = bigram.left;
        try_add(left.prev, bigram.left);
        try_add(bigram.left, left.next);
    }

    // Emit each final symbol: a token if the vocabulary has it, else the pieces it was merged
    // from, else its bytes.
    auto emit = [&](auto&& self, const Symbol& symbol) -> void {
        const std::string_view s(symbol.text, symbol.n);
        const TokenId id = vocab_.find(s);
        if (id >= 0 && vocab_.type(id) != TokenType::Control) {
            out.push_back(id);
            return;
        }
        auto it = merged_from.find(s);
        if (it == merged_from.end()) {
            for (char c : s) out.push_back(vocab_.byte_token(uint8_t(c)));
            return;
        }
        self(self, symbols[size_t(it->second.first)]);
        self(self, symbols[size_t(it->second.second)]);
    };
    for (int i = 0; i != -1; i = symbols[size_t(i)].next) emit(emit, symbols[size_t(i)]);
}

} // namespace woolly
