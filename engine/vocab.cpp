// vocab.cpp — SentencePiece tokenization as llama.cpp does it: score-ordered bigram merges over
// UTF-8 characters, byte fallback, and special tokens split out first.
#include "vocab.h"

#include <algorithm>
#include <cstdio>
#include <list>
#include <map>
#include <queue>

#include "error.h"

namespace woolly {
namespace {

constexpr std::string_view kSpace = "\xe2\x96\x81";       // U+2581 '▁', SentencePiece's space
constexpr std::string_view kReplacement = "\xef\xbf\xbd"; // U+FFFD
constexpr std::string_view kUnknownPiece =
    "\xe2\x96\x85"; // U+2585, what llama.cpp prints for <unk>

size_t utf8_char_len(uint8_t lead) {
    static constexpr uint8_t kLengths[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return kLengths[lead >> 4];
}

std::string escape_whitespace(std::string_view text) {
    std::string out;
    out.reserve(text.size() * 3);
    for (char c : text) {
        if (c == ' ')
            out += kSpace;
        else
            out += c;
    }
    return out;
}

std::string unescape_whitespace(std::string_view text) {
    std::string out;
    for (size_t i = 0; i < text.size();) {
        if (text.substr(i, 3) == kSpace) {
            out += ' ';
            i += 3;
        } else {
            out += text[i++];
        }
    }
    return out;
}

// One symbol of the SentencePiece merge: a span of the text in a doubly linked list.
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

Vocab::Vocab(const GgufFile& file) {
    const std::string model = file.get_string("tokenizer.ggml.model").value_or("");
    if (model != "llama") {
        throw Error(file.name() + ": tokenizer.ggml.model is '" + model +
                    "' (expected 'llama', the SentencePiece tokenizer)");
    }
    const auto* tokens = file.get_string_array("tokenizer.ggml.tokens");
    if (!tokens || tokens->empty()) {
        throw Error(file.name() + ": missing metadata key 'tokenizer.ggml.tokens'");
    }
    if (tokens->size() > size_t(INT32_MAX)) throw Error(file.name() + ": vocabulary too large");
    const uint64_t n = tokens->size();
    scores_ = file.get_f32_array("tokenizer.ggml.scores", n);
    if (scores_.empty()) scores_.assign(n, 0.0f);
    const std::vector<int32_t> types = file.get_i32_array("tokenizer.ggml.token_type", n);
    types_.assign(n, TokenType::Normal);
    for (size_t i = 0; i < types.size(); ++i) {
        if (types[i] < 0 || types[i] > int32_t(TokenType::Byte)) {
            throw Error(file.name() + ": tokenizer.ggml.token_type[" + std::to_string(i) + "] is " +
                        std::to_string(types[i]) + " (expected 0 to 6)");
        }
        types_[i] = TokenType(types[i]);
    }

    tokens_.assign(tokens->begin(), tokens->end());
    token_to_id_.reserve(tokens_.size());
    for (size_t i = 0; i < tokens_.size(); ++i)
        token_to_id_.insert_or_assign(tokens_[i], TokenId(i));

    auto token_id = [&](const char* key, TokenId fallback) -> TokenId {
        const auto value = file.get_uint(key);
        if (!value) return fallback;
        if (*value >= n) {
            throw Error(file.name() + ": " + key + " is " + std::to_string(*value) +
                        " (expected less than the vocabulary size " + std::to_string(n) + ")");
        }
        return TokenId(*value);
    };
    bos_ = token_id("tokenizer.ggml.bos_token_id", n > 1 ? 1 : -1);
    eos_ = token_id("tokenizer.ggml.eos_token_id", n > 2 ? 2 : -1);
    unk_ = token_id("tokenizer.ggml.unknown_token_id", 0);
    eot_ = token_id("tokenizer.ggml.eot_token_id", -1);
    add_bos_ = file.get_bool("tokenizer.ggml.add_bos_token").value_or(true);
    add_eos_ = file.get_bool("tokenizer.ggml.add_eos_token").value_or(false);
    add_space_prefix_ = file.get_bool("tokenizer.ggml.add_space_prefix").value_or(true);

    for (int b = 0; b < 256; ++b) {
        char name[8];
        std::snprintf(name, sizeof name, "<0x%02X>", b);
        const TokenId id = find(name);
        byte_tokens_[b] = id >= 0 ? id : unk_;
    }

    pieces_.resize(n);
    for (size_t i = 0; i < n; ++i) {
        switch (types_[i]) {
        case TokenType::Normal:
        case TokenType::UserDefined:
        case TokenType::Undefined:
            pieces_[i] = unescape_whitespace(tokens_[i]);
            break;
        case TokenType::Unknown:
            pieces_[i] = std::string(kUnknownPiece);
            break;
        case TokenType::Byte: {
            unsigned value = 0;
            if (tokens_[i].size() == 6 && std::sscanf(tokens_[i].c_str(), "<0x%2X>", &value) == 1)
                pieces_[i] = std::string(1, char(value));
            break;
        }
        case TokenType::Control:
        case TokenType::Unused:
            break; // print nothing
        }
        if (types_[i] == TokenType::Control || types_[i] == TokenType::UserDefined ||
            types_[i] == TokenType::Unknown) {
            if (!tokens_[i].empty()) special_tokens_.push_back(TokenId(i));
        }
    }
    std::stable_sort(special_tokens_.begin(), special_tokens_.end(), [&](TokenId a, TokenId b) {
        return tokens_[size_t(a)].size() > tokens_[size_t(b)].size();
    });
}

TokenId Vocab::find(std::string_view text) const {
    auto it = token_to_id_.find(text);
    return it == token_to_id_.end() ? -1 : it->second;
}

TokenId Vocab::byte_token(uint8_t byte) const {
    return byte_tokens_[byte];
}

std::string_view Vocab::piece(TokenId id) const {
    if (id < 0 || id >= size()) return {};
    return pieces_[size_t(id)];
}

std::vector<TokenId> Vocab::tokenize(std::string_view text, bool add_special,
                                     bool parse_special) const {
    // Split the text around special tokens (longest first). A fragment is either raw text
    // (token < 0) or one special token.
    struct Fragment {
        TokenId token;
        std::string_view text;
    };
    std::list<Fragment> fragments;
    if (!text.empty()) fragments.push_back({-1, text});
    for (TokenId special : special_tokens_) {
        const TokenType type = types_[size_t(special)];
        if (!parse_special && type != TokenType::UserDefined) continue;
        const std::string& needle = tokens_[size_t(special)];
        for (auto it = fragments.begin(); it != fragments.end(); ++it) {
            if (it->token >= 0) continue;
            const size_t at = it->text.find(needle);
            if (at == std::string_view::npos) continue;
            const std::string_view before = it->text.substr(0, at);
            const std::string_view after = it->text.substr(at + needle.size());
            if (!before.empty()) fragments.insert(it, {-1, before});
            it->token = special;
            it->text = needle;
            if (!after.empty()) fragments.insert(std::next(it), {-1, after}); // searched next
        }
    }

    std::vector<TokenId> out;
    if (add_special && add_bos_ && bos_ >= 0) out.push_back(bos_);
    bool previous_was_special = true; // the first fragment gets the space prefix
    for (const Fragment& fragment : fragments) {
        if (fragment.token >= 0) {
            out.push_back(fragment.token);
            previous_was_special = true;
            continue;
        }
        std::string raw;
        if (add_space_prefix_ && previous_was_special) raw = " ";
        raw += fragment.text;
        tokenize_fragment(escape_whitespace(raw), out);
        previous_was_special = false;
    }
    if (add_special && add_eos_ && eos_ >= 0) out.push_back(eos_);
    return out;
}

void Vocab::tokenize_fragment(std::string_view text, std::vector<TokenId>& out) const {
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
        const TokenId id = find(pair);
        // Control tokens are never built from a user's characters.
        if (id < 0 || types_[size_t(id)] == TokenType::Control) return;
        queue.push({left, right, scores_[size_t(id)], pair.size()});
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
        const TokenId id = find(s);
        if (id >= 0 && types_[size_t(id)] != TokenType::Control) {
            out.push_back(id);
            return;
        }
        auto it = merged_from.find(s);
        if (it == merged_from.end()) {
            for (char c : s) out.push_back(byte_token(uint8_t(c)));
            return;
        }
        self(self, symbols[size_t(it->second.first)]);
        self(self, symbols[size_t(it->second.second)]);
    };
    for (int i = 0; i != -1; i = symbols[size_t(i)].next) emit(emit, symbols[size_t(i)]);
}

namespace {

// Length of the UTF-8 character at p[0..n): > 0 when complete and valid, 0 when valid so far
// but cut short, -1 when invalid.
int utf8_sequence(const uint8_t* p, size_t n) {
    const uint8_t lead = p[0];
    int len;
    uint8_t lo = 0x80, hi = 0xbf; // allowed range of the second byte
    if (lead < 0x80) return 1;
    if (lead >= 0xc2 && lead <= 0xdf)
        len = 2;
    else if (lead >= 0xe0 && lead <= 0xef) {
        len = 3;
        if (lead == 0xe0)
            lo = 0xa0; // no overlong forms
        else if (lead == 0xed)
            hi = 0x9f; // no surrogates
    } else if (lead >= 0xf0 && lead <= 0xf4) {
        len = 4;
        if (lead == 0xf0)
            lo = 0x90;
        else if (lead == 0xf4)
            hi = 0x8f; // nothing past U+10FFFF
    } else {
        return -1;
    }
    for (int i = 1; i < len; ++i) {
        if (size_t(i) >= n) return 0;
        const uint8_t lo_i = i == 1 ? lo : 0x80, hi_i = i == 1 ? hi : 0xbf;
        if (p[i] < lo_i || p[i] > hi_i) return -1;
    }
    return len;
}

} // namespace

bool is_valid_utf8(std::string_view s) {
    const auto* p = reinterpret_cast<const uint8_t*>(s.data());
    for (size_t i = 0; i < s.size();) {
        const int len = utf8_sequence(p + i, s.size() - i);
        if (len <= 0) return false;
        i += size_t(len);
    }
    return true;
}

void Utf8Stream::push(std::string_view bytes, std::string& out) {
    // First finish a character left over from earlier pieces, one byte at a time.
    while (n_pending_ > 0 && !bytes.empty()) {
        pending_[n_pending_++] = bytes.front();
        bytes.remove_prefix(1);
        const int len =
            utf8_sequence(reinterpret_cast<const uint8_t*>(pending_), size_t(n_pending_));
        if (len == 0) continue;
        if (len > 0) {
            out.append(pending_, size_t(len));
            n_pending_ = 0;
        } else {
            // The lead byte is bad: replace it and re-read what followed it.
            out += kReplacement;
            char rest[4];
            const int n_rest = n_pending_ - 1;
            std::copy(pending_ + 1, pending_ + n_pending_, rest);
            n_pending_ = 0;
            push(std::string_view(rest, size_t(n_rest)), out);
        }
    }
    const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
    for (size_t i = 0; i < bytes.size();) {
        const int len = utf8_sequence(p + i, bytes.size() - i);
        if (len > 0) {
            out.append(bytes.data() + i, size_t(len));
            i += size_t(len);
        } else if (len == 0) {
            n_pending_ = int(bytes.size() - i);
            std::copy(bytes.data() + i, bytes.data() + bytes.size(), pending_);
            return;
        } else {
            out += kReplacement;
            ++i;
        }
    }
}

void Utf8Stream::finish(std::string& out) {
    if (n_pending_ > 0) out += kReplacement;
    n_pending_ = 0;
}

} // namespace woolly
