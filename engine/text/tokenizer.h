// tokenizer.h — the tokenizer strategies over one Vocab: SentencePiece and byte-level BPE. Each
// turns a fragment of text with no special tokens in it into ids, and says what a token's
// bytes are.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/text/vocab.h"

namespace woolly {

class GgufFile;

class Tokenizer {
public:
    virtual ~Tokenizer() = default;
    // Appends the ids of `text`. `after_special` is true for a fragment that starts the text
    // or follows a special token (where SentencePiece adds its space prefix when asked to).
    virtual void encode(std::string_view text, bool after_special,
                        std::vector<TokenId>& out) const = 0;
    // The bytes that a normal or user-defined token's text stands for.
    virtual std::string decode(std::string_view token_text, TokenType type) const = 0;
};

// SentencePiece as llama.cpp runs it: score-ordered bigram merges over UTF-8 characters, byte
// fallback, "▁" for spaces and an optional space prefix.
class SpmTokenizer final : public Tokenizer {
public:
    SpmTokenizer(const Vocab& vocab, bool add_space_prefix)
        : vocab_(vocab), add_space_prefix_(add_space_prefix) {}
    void encode(std::string_view text, bool after_special,
                std::vector<TokenId>& out) const override;
    std::string decode(std::string_view token_text, TokenType type) const override;

private:
    void merge(std::string_view text, std::vector<TokenId>& out) const;
    const Vocab& vocab_;
    bool add_space_prefix_;
};

// A pre-tokenizer's rules: the regexes that cut text into words, applied one after another,
// each cutting the pieces the previous one left (llama.cpp's order and semantics).
struct PreTokenizerRules {
    std::vector<std::string_view> names; // tokenizer.ggml.pre values that select it
    std::vector<std::string_view> regexes;
    bool ignore_merges = false; // a word that is a whole token is taken as it is
    bool add_bos = false;       // unless tokenizer.ggml.add_bos_token says otherwise
};

// The rules for tokenizer.ggml.pre = `name`; nullptr when Woolly does not know it.
const PreTokenizerRules* find_pre_tokenizer(std::string_view name);
// Every tokenizer.ggml.pre value Woolly knows, and the same as one line for error messages.
std::vector<std::string_view> pre_tokenizer_names();
std::string known_pre_tokenizers();

// GPT-2's byte-to-character map: the UTF-8 of the character byte `b` stands for in a byte-level
// BPE vocabulary (printable Latin-1 bytes themselves, the others U+0100 onwards in order).
std::string_view gpt2_byte_text(uint8_t b);

// Byte-level BPE (GPT-2's): the text is cut into words by the pre-tokenizer, each word's bytes
// are mapped to printable characters, and the pairs of the merge list are applied by rank.
class BpeTokenizer final : public Tokenizer {
public:
    // Reads tokenizer.ggml.merges; throws Error naming the key and index of a bad one.
    BpeTokenizer(const Vocab& vocab, const GgufFile& file, const PreTokenizerRules& rules);
    ~BpeTokenizer() override;
    void encode(std::string_view text, bool after_special,
                std::vector<TokenId>& out) const override;
    std::string decode(std::string_view token_text, TokenType type) const override;

    // Whether this build has PCRE2 (the pre-tokenizers need it).
    static bool available();

private:
    struct Regexes;
    void encode_word(std::string_view word, std::string& key, std::vector<TokenId>& out) const;
    const Vocab& vocab_;
    const PreTokenizerRules& rules_;
    std::unordered_map<std::string, int32_t> ranks_; // "left right" -> rank
    std::unique_ptr<Regexes> regexes_;
};

} // namespace woolly
