// vocab.cpp — the token tables from GGUF metadata, special tokens split out of the text before
// the tokenizer sees it, pieces for output, and the end-of-generation set.
#include "engine/text/vocab.h"
#include "engine/text/token_trie.h"

#include <algorithm>
#include <cstdio>
#include <list>

#include "engine/error.h"
#include "engine/text/tokenizer.h"

namespace woolly {
namespace {

constexpr std::string_view kUnknownPiece =
    "\xe2\x96\x85"; // U+2585, what llama.cpp prints for <unk>

// Texts of the tokens that end a generation besides EOS, as llama.cpp recognises them.
constexpr std::string_view kEndOfTurnTexts[] = {
    "<|eot_id|>", "<|im_end|>",      "<|end|>", "<end_of_turn>",      "<|endoftext|>",
    "<|eom_id|>", "<|end_of_text|>", "<EOT>",   "<end_of_utterance>",
};

} // namespace

Vocab::Vocab(const GgufFile& file) {
    const std::string model = file.get_string("tokenizer.ggml.model").value_or("");
    if (model == "llama") {
        kind_ = VocabKind::SentencePiece;
    } else if (model == "gpt2") {
        kind_ = VocabKind::BytePairs;
    } else {
        throw Error(file.name() + ": tokenizer.ggml.model is '" + model +
                    "' (expected 'llama', SentencePiece, or 'gpt2', byte-level BPE)");
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
    for (size_t i = 0; i < n; ++i) // as llama.cpp names an empty token, so that none is ""
        if (tokens_[i].empty()) tokens_[i] = "[EMPTY_" + std::to_string(i) + "]";
    token_to_id_.reserve(tokens_.size());
    for (size_t i = 0; i < tokens_.size(); ++i)
        token_to_id_.insert_or_assign(tokens_[i], TokenId(i));

    auto token_id = [&](const char* key, TokenId fallback) -> TokenId {
        const auto value = file.get_uint(key);
        if (!value) return fallback < TokenId(n) ? fallback : -1;
        if (*value >= n) {
            throw Error(file.name() + ": " + key + " is " + std::to_string(*value) +
                        " (expected less than the vocabulary size " + std::to_string(n) + ")");
        }
        return TokenId(*value);
    };
    const PreTokenizerRules* rules = nullptr;
    if (kind_ == VocabKind::SentencePiece) {
        bos_ = token_id("tokenizer.ggml.bos_token_id", 1);
        eos_ = token_id("tokenizer.ggml.eos_token_id", 2);
        unk_ = token_id("tokenizer.ggml.unknown_token_id", 0);
        add_bos_ = file.get_bool("tokenizer.ggml.add_bos_token").value_or(true);
        add_space_prefix_ = file.get_bool("tokenizer.ggml.add_space_prefix").value_or(true);
    } else {
        pre_ = file.get_string("tokenizer.ggml.pre").value_or("default");
        rules = find_pre_tokenizer(pre_);
        if (!rules) {
            throw Error(file.name() + ": tokenizer.ggml.pre is '" + pre_ +
                        "', a pre-tokenizer Woolly does not have (it has " +
                        known_pre_tokenizers() + ")");
        }
        bos_ = token_id("tokenizer.ggml.bos_token_id", 11);
        eos_ = token_id("tokenizer.ggml.eos_token_id", 11);
        unk_ = token_id("tokenizer.ggml.unknown_token_id", -1);
        add_bos_ = file.get_bool("tokenizer.ggml.add_bos_token").value_or(rules->add_bos);
        add_space_prefix_ = file.get_bool("tokenizer.ggml.add_space_prefix").value_or(false);
    }
    add_eos_ = file.get_bool("tokenizer.ggml.add_eos_token").value_or(false);

    for (int b = 0; b < 256; ++b) {
        char name[8];
        std::snprintf(name, sizeof name, "<0x%02X>", b);
        const TokenId id = find(name);
        byte_tokens_[b] = id >= 0 ? id : unk_;
    }

    if (kind_ == VocabKind::SentencePiece)
        tokenizer_ = std::make_unique<SpmTokenizer>(*this, add_space_prefix_);
    else
        tokenizer_ = std::make_unique<BpeTokenizer>(*this, file, *rules);

    pieces_.resize(n);
    for (size_t i = 0; i < n; ++i) {
        switch (types_[i]) {
        case TokenType::Normal:
        case TokenType::UserDefined:
        case TokenType::Undefined:
            pieces_[i] = tokenizer_->decode(tokens_[i], types_[i]);
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
            types_[i] == TokenType::Unknown)
            special_tokens_.push_back(TokenId(i));
    }
    std::stable_sort(special_tokens_.begin(), special_tokens_.end(), [&](TokenId a, TokenId b) {
        return tokens_[size_t(a)].size() > tokens_[size_t(b)].size();
    });

    // End of generation: EOS, the end-of-turn and end-of-message tokens named by key, and
    // the tokens llama.cpp recognises by their text.
    for (const char* key : {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"})
        if (const TokenId id = token_id(key, -1); id >= 0) eog_.push_back(id);
    if (eos_ >= 0) eog_.push_back(eos_);
    for (std::string_view text : kEndOfTurnTexts)
        if (const TokenId id = find(text); id >= 0) eog_.push_back(id);
    std::sort(eog_.begin(), eog_.end());
    eog_.erase(std::unique(eog_.begin(), eog_.end()), eog_.end());
}

Vocab::~Vocab() = default;

const TokenTrie& Vocab::trie() const {
    std::call_once(trie_once_, [this] { trie_ = std::make_unique<TokenTrie>(*this); });
    return *trie_;
}

TokenId Vocab::find(std::string_view text) const {
    auto it = token_to_id_.find(text);
    return it == token_to_id_.end() ? -1 : it->second;
}

std::string_view Vocab::piece(TokenId id) const {
    if (id < 0 || id >= size()) return {};
    return pieces_[size_t(id)];
}

bool Vocab::is_eog(TokenId id) const {
    return std::binary_search(eog_.begin(), eog_.end(), id);
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
    bool after_special = true; // the first fragment counts as following one
    for (const Fragment& fragment : fragments) {
        if (fragment.token >= 0) {
            out.push_back(fragment.token);
            after_special = true;
            continue;
        }
        tokenizer_->encode(fragment.text, after_special, out);
        after_special = false;
    }
    if (add_special && add_eos_ && eos_ >= 0) out.push_back(eos_);
    return out;
}

} // namespace woolly
