// test_tokenizer.cpp — SentencePiece tokenization against llama.cpp's own test vectors, and
// whole-character streaming of pieces.
#include <algorithm>
#include <sstream>

#include "engine/error.h"
#include "engine/gguf.h"
#include "engine/vocab.h"
#include "test_support.h"

using namespace woolly;

namespace {

std::vector<std::string> split_vocab_inputs(const std::string& content) {
    const std::string separator = "\n__ggml_vocab_test__\n";
    std::vector<std::string> out;
    size_t start = 0;
    for (size_t at; (at = content.find(separator, start)) != std::string::npos;
         start = at + separator.size())
        out.push_back(content.substr(start, at - start));
    return out;
}

void check_vocab_vectors(const std::string& name) {
    const std::string base = test::shared_file("vocab/ggml-vocab-" + name + ".gguf");
    WOOLLY_REQUIRE_SHARED(base);
    auto file = GgufFile::open(base);
    Vocab vocab(*file);
    const auto inputs_bytes = test::read_bytes(base + ".inp");
    const auto inputs = split_vocab_inputs(std::string(inputs_bytes.begin(), inputs_bytes.end()));
    std::ifstream expected(base + ".out");
    std::string line;
    size_t passed = 0;
    for (const auto& input : inputs) {
        REQUIRE(std::getline(expected, line));
        std::istringstream ids(line);
        std::vector<TokenId> want;
        for (TokenId id; ids >> id;) want.push_back(id);
        INFO(name << " input: '" << input << "'");
        const auto got = vocab.tokenize(input, /*add_special=*/false);
        CHECK(got == want);
        if (got == want) ++passed;
    }
    CHECK(inputs.size() > 30);
    MESSAGE(name << ": " << passed << "/" << inputs.size() << " vectors pass");
}

} // namespace

TEST_CASE("llama-spm tokenizer vectors pass") {
    check_vocab_vectors("llama-spm");
}
TEST_CASE("phi-3 tokenizer vectors pass") {
    check_vocab_vectors("phi-3");
}

TEST_CASE("BOS, the space prefix and control tokens on the bundled vocabulary") {
    auto file = GgufFile::open(test::bundled_model());
    Vocab vocab(*file);
    CHECK(vocab.bos() == 1);
    CHECK(vocab.eos() == 2);
    // The golden file's prompt tokens for "Once upon a time" (llama.cpp).
    CHECK(vocab.tokenize("Once upon a time", true) == std::vector<TokenId>{1, 403, 407, 261, 378});
    CHECK(vocab.tokenize("", true) == std::vector<TokenId>{1});
    CHECK(vocab.tokenize("", false).empty());
    // "<s>" typed by a user is text, not BOS, unless special parsing is asked for.
    const auto plain = vocab.tokenize("<s>", false);
    CHECK(std::find(plain.begin(), plain.end(), 1) == plain.end());
    CHECK(vocab.tokenize("<s>", false, /*parse_special=*/true) == std::vector<TokenId>{1});
    // Detokenizing the tokens gives the text back, with the prefix space.
    std::string text;
    for (TokenId t : vocab.tokenize("Once upon a time", false)) text += vocab.piece(t);
    CHECK(text == " Once upon a time");
    CHECK(vocab.piece(1).empty()); // control tokens print nothing
}

TEST_CASE("a non-SentencePiece vocabulary is refused with what was expected") {
    const std::string path = test::shared_file("vocab/ggml-vocab-gpt-2.gguf");
    WOOLLY_REQUIRE_SHARED(path);
    auto file = GgufFile::open(path);
    CHECK_THROWS_WITH_AS(Vocab{*file}, doctest::Contains("expected 'llama'"), Error);
}

TEST_CASE("byte fallback round-trips characters outside the vocabulary") {
    auto file = GgufFile::open(test::bundled_model());
    Vocab vocab(*file);
    const std::string text = "naïve 日本 🦙";
    const auto tokens = vocab.tokenize(text, false);
    std::string bytes;
    for (TokenId t : tokens) bytes += vocab.piece(t);
    CHECK(bytes == " " + text);
    // Streamed a piece at a time, every chunk is whole UTF-8 and the total is the same.
    Utf8Stream stream;
    std::string streamed;
    for (TokenId t : tokens) {
        std::string chunk;
        stream.push(vocab.piece(t), chunk);
        CHECK(is_valid_utf8(chunk));
        streamed += chunk;
    }
    stream.finish(streamed);
    CHECK(streamed == " " + text);
}

TEST_CASE("Utf8Stream holds split characters and replaces invalid bytes") {
    Utf8Stream s;
    std::string out;
    s.push("\xe6", out);
    CHECK(out.empty());
    s.push("\x97", out);
    CHECK(out.empty());
    s.push("\xa5x", out);
    CHECK(out == "\xe6\x97\xa5x");
    out.clear();
    s.push("a\xff"
           "b",
           out); // a byte that never starts a character
    CHECK(out == "a\xef\xbf\xbd"
                 "b");
    out.clear();
    s.push("\xe6\x97", out); // cut off, then something else arrives
    s.push("z", out);
    CHECK(out == "\xef\xbf\xbd\xef\xbf\xbdz");
    out.clear();
    s.push("\xf0\x9f", out);
    s.finish(out);
    CHECK(out == "\xef\xbf\xbd");
    CHECK(is_valid_utf8("\xf0\x9f\xa6\x99"));
    CHECK_FALSE(is_valid_utf8("\xed\xa0\x80")); // a surrogate
    CHECK_FALSE(is_valid_utf8("\xc0\xaf"));     // overlong
}
