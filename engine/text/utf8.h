// utf8.h — UTF-8 as the tokenizers read it: character lengths, validation, code points, the
// repair of invalid bytes, and a stream that only ever hands out whole characters.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace woolly {

// Length of the UTF-8 sequence a lead byte announces (1 for a stray continuation byte), as
// llama.cpp counts characters: the SentencePiece and BPE symbols start from these.
size_t utf8_char_len(uint8_t lead);

// Length of the character at p[0..n): > 0 when complete and valid, 0 when valid so far but cut
// short, -1 when invalid (overlong forms, surrogates and values past U+10FFFF included).
int utf8_sequence(const uint8_t* p, size_t n);

bool is_valid_utf8(std::string_view s);

// The code point at s[i] and its length in bytes; a byte that begins no valid character is
// itself, length 1.
std::pair<uint32_t, size_t> utf8_code_point(std::string_view s, size_t i);

// `s` with every byte that does not begin a valid character replaced by U+FFFD, as llama.cpp's
// code-point reader does before a BPE pre-tokenizer sees the text.
std::string repair_utf8(std::string_view s);

// Appends code point `cp` (at most U+10FFFF) as UTF-8.
void append_utf8(uint32_t cp, std::string& out);

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

} // namespace woolly
