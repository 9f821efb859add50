// vocab.h — a model's vocabulary read from GGUF metadata: the token tables, the special tokens,
// and the tokenizer its algorithm calls for (SentencePiece or byte-level BPE, tokenizer.h).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/gguf/gguf.h"
#include "engine/text/utf8.h"

namespace woolly {

using TokenId = int32_t;

// Token types as GGUF stores them in tokenizer.ggml.token_type.
enum class TokenType : int32_t {
    Undefined = 0,
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
};

// tokenizer.ggml.model: the algorithm.
enum class VocabKind {
    SentencePiece, // "llama"
    BytePairs,     // "gpt2": byte-level BPE with a pre-tokenizer
};

class Tokenizer;
class TokenTrie;

class Vocab {
public:
    // Reads tokenizer.ggml.* from `file`; throws Error naming the key when the tokenizer is
    // not one Woolly has, or its arrays disagree.
    explicit Vocab(const GgufFile& file);
    ~Vocab();

    VocabKind kind() const { return kind_; }
    // The pre-tokenizer's name for BPE vocabularies (tokenizer.ggml.pre as understood), else "".
    const std::string& pre_tokenizer() const { return pre_; }
    int32_t size() const { return int32_t(tokens_.size()); }
    TokenId bos() const { return bos_; }
    TokenId eos() const { return eos_; }
    bool add_bos() const { return add_bos_; }

    // Text -> ids. `add_special` prepends BOS when the model asks for it; `parse_special`
    // lets control-token texts such as "</s>" in the input become those tokens (user-defined
    // tokens always match, as in llama.cpp); by default a user's text never yields a control token.
    std::vector<TokenId> tokenize(std::string_view text, bool add_special,
                                  bool parse_special = false) const;

    // The bytes a token stands for (SentencePiece: "▁" a space, <0xNN> the byte NN; BPE: the
    // GPT-2 byte map undone); control tokens give nothing. May be an incomplete UTF-8
    // sequence; see Utf8Stream.
    std::string_view piece(TokenId id) const;
    TokenType type(TokenId id) const { return types_[size_t(id)]; }
    // End of generation: EOS, the end-of-turn and end-of-message tokens.
    bool is_eog(TokenId id) const;

    // The end-of-generation tokens, sorted.
    const std::vector<TokenId>& eog_tokens() const { return eog_; }
    // Every token's bytes in a trie, for grammars (built on first use; safe from any thread).
    const TokenTrie& trie() const;

    // For the tokenizers: the token tables.
    TokenId find(std::string_view text) const;
    const std::string& text(TokenId id) const { return tokens_[size_t(id)]; }
    float score(TokenId id) const { return scores_[size_t(id)]; }
    TokenId byte_token(uint8_t byte) const { return byte_tokens_[byte]; }

private:
    VocabKind kind_ = VocabKind::SentencePiece;
    std::string pre_;
    std::vector<std::string> tokens_;
    std::vector<float> scores_;
    std::vector<TokenType> types_;
    std::vector<std::string> pieces_;
    std::unordered_map<std::string_view, TokenId> token_to_id_; // views into tokens_
    std::vector<TokenId> special_tokens_; // user-defined and control, longest text first
    std::vector<TokenId> eog_;            // sorted
    TokenId byte_tokens_[256];
    TokenId bos_ = -1, eos_ = -1, unk_ = -1;
    bool add_bos_ = true;
    bool add_eos_ = false;
    bool add_space_prefix_ = true;
    std::unique_ptr<Tokenizer> tokenizer_;
    mutable std::once_flag trie_once_;
    mutable std::unique_ptr<TokenTrie> trie_;
};

} // namespace woolly
