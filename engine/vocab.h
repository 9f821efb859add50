// vocab.h — the SentencePiece (llama) tokenizer and detokenizer, read from GGUF metadata.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "gguf.h"

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

class Vocab {
public:
    // Reads tokenizer.ggml.* from `file`; throws Error when the tokenizer is not SentencePiece
    // ("llama") or its arrays disagree.
    explicit Vocab(const GgufFile& file);

    int32_t size() const { return int32_t(tokens_.size()); }
    TokenId bos() const { return bos_; }
    TokenId eos() const { return eos_; }
    bool add_bos() const { return add_bos_; }

    // Text -> ids. `add_special` prepends BOS when the model asks for it; `parse_special`
    // lets control-token texts such as "</s>" in the input become those tokens (user-defined
    // tokens always match, as in llama.cpp); by default a user's text never yields a control token.
    std::vector<TokenId> tokenize(std::string_view text, bool add_special,
                                  bool parse_special = false) const;

    // The bytes a token stands for: "▁" becomes a space, <0xNN> the byte NN, control tokens
    // nothing. May be an incomplete UTF-8 sequence (byte tokens); see Utf8Stream.
    std::string_view piece(TokenId id) const;
    TokenType type(TokenId id) const { return types_[size_t(id)]; }
    bool is_eog(TokenId id) const { return id == eos_ || id == eot_; }

private:
    void tokenize_fragment(std::string_view text, std::vector<TokenId>& out) const;
    TokenId byte_token(uint8_t byte) const;
    TokenId find(std::string_view text) const;

    std::vector<std::string> tokens_;
    std::vector<float> scores_;
    std::vector<TokenType> types_;
    std::vector<std::string> pieces_;
    std::unordered_map<std::string_view, TokenId> token_to_id_; // views into tokens_
    std::vector<TokenId> special_tokens_; // user-defined and control, longest text first
    TokenId byte_tokens_[256];
    TokenId bos_ = -1, eos_ = -1, eot_ = -1, unk_ = -1;
    bool add_bos_ = true;
    bool add_eos_ = false;
    bool add_space_prefix_ = true;
};

// Turns a stream of token pieces into text that is always whole, valid UTF-8: a character
// split across byte tokens is held back until it is complete; invalid bytes become U+FFFD.
class Utf8Stream {
public:
    // Appends the complete characters of `pending + bytes` to `out`; keeps an incomplete tail.
    void push(std::string_view bytes, std::string& out);
    // Emits whatever is left (an unfinished sequence becomes U+FFFD).
    void finish(std::string& out);

private:
    char pending_[4] = {};
    int n_pending_ = 0;
};

bool is_valid_utf8(std::string_view s);

} // namespace woolly
