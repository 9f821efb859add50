// test_tokenizer.cpp — SentencePiece and byte-level BPE tokenization against llama.cpp's test
// vectors, special tokens, end of generation, refusals of vocabularies Woolly cannot run, and
// whole-character streaming of pieces.
#include <algorithm>
#include <functional>
#include <sstream>

#include "engine/error.h"
#include "engine/gguf/gguf.h"
#include "engine/gguf/gguf_writer.h"
#include "engine/text/chat.h"
#include "engine/text/tokenizer.h"
#include "engine/text/vocab.h"
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

// Every vocabulary in ../shared/vocab, SentencePiece and BPE: 100 % of llama.cpp's vectors.
TEST_CASE("llama-spm tokenizer vectors pass") {
    check_vocab_vectors("llama-spm");
}
TEST_CASE("phi-3 tokenizer vectors pass") {
    check_vocab_vectors("phi-3");
}
TEST_CASE("gemma tokenizer vectors pass") {
    check_vocab_vectors("gemma");
}
TEST_CASE("BPE tokenizer vectors pass: gpt-2, starcoder, deepseek-coder, llama3, qwen2") {
    if (!BpeTokenizer::available()) {
        MESSAGE("skipped: this build has no PCRE2");
        return;
    }
    for (const char* name : {"gpt-2", "starcoder", "deepseek-coder", "llama3", "qwen2"}) {
        SUBCASE(name) {
            check_vocab_vectors(name);
        }
    }
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

namespace {

// A vocabulary-only GGUF file: tokens, and whatever `more` adds.
std::unique_ptr<GgufFile> vocab_file(const std::string& model,
                                     const std::vector<std::string>& tokens,
                                     const std::function<void(GgufWriter&)>& more = {}) {
    GgufWriter w;
    w.add_string("tokenizer.ggml.model", model);
    w.add_string_array("tokenizer.ggml.tokens", tokens);
    if (more) more(w);
    const std::string path = test::temp_path("vocab.gguf");
    w.write_file(path);
    auto file = GgufFile::open(path);
    std::filesystem::remove(path); // the mapping stays; the next file gets a new inode
    return file;
}

} // namespace

TEST_CASE("a vocabulary Woolly cannot run is refused with what was expected") {
    auto bert = vocab_file("bert", {"a", "b", "c"});
    CHECK_THROWS_WITH_AS(Vocab{*bert},
                         doctest::Contains("is 'bert' (expected 'llama', SentencePiece, or 'gpt2'"),
                         Error);
    if (!BpeTokenizer::available()) return;
    auto pre = vocab_file("gpt2", {"a", "b", "ab"}, [](GgufWriter& w) {
        w.add_string("tokenizer.ggml.pre", "klingon");
        w.add_string_array("tokenizer.ggml.merges", {"a b"});
    });
    CHECK_THROWS_WITH_AS(Vocab{*pre},
                         doctest::Contains("tokenizer.ggml.pre is 'klingon', a pre-tokenizer "
                                           "Woolly does not have (it has default, gpt-2"),
                         Error);
    auto no_merges = vocab_file("gpt2", {"a", "b", "ab"});
    CHECK_THROWS_WITH_AS(Vocab{*no_merges},
                         doctest::Contains("missing metadata key 'tokenizer.ggml.merges'"), Error);
    auto bad_merge = vocab_file("gpt2", {"a", "b", "ab"}, [](GgufWriter& w) {
        w.add_string_array("tokenizer.ggml.merges", {"a b", "ab"});
    });
    CHECK_THROWS_WITH_AS(
        Vocab{*bad_merge},
        doctest::Contains("tokenizer.ggml.merges[1] is 'ab' (expected two token texts"), Error);
    auto bad_bos = vocab_file("gpt2", {"a", "b", "ab"}, [](GgufWriter& w) {
        w.add_string_array("tokenizer.ggml.merges", {"a b"});
        w.add_u32("tokenizer.ggml.bos_token_id", 3);
    });
    CHECK_THROWS_WITH_AS(
        Vocab{*bad_bos},
        doctest::Contains("bos_token_id is 3 (expected less than the vocabulary size 3)"), Error);
}

TEST_CASE("BPE merges by rank, leftmost first on a tie, through the byte map") {
    if (!BpeTokenizer::available()) return;
    // "Ġ" is the space's character in GPT-2's byte map. Ranks: "b c" before "a b".
    auto file =
        vocab_file("gpt2", {"a", "b", "c", "Ġ", "bc", "ab", "abc", "Ġa"}, [](GgufWriter& w) {
            w.add_string("tokenizer.ggml.pre", "gpt-2");
            w.add_string_array("tokenizer.ggml.merges", {"b c", "a b", "a bc", "Ġ a"});
        });
    Vocab vocab(*file);
    CHECK(vocab.kind() == VocabKind::BytePairs);
    CHECK(vocab.tokenize("abc", false) == std::vector<TokenId>{6});    // b c, then a bc
    CHECK(vocab.tokenize("ab", false) == std::vector<TokenId>{5});     // a b
    CHECK(vocab.tokenize("cab", false) == std::vector<TokenId>{2, 5}); // c, a b
    CHECK(vocab.tokenize(" a", false) == std::vector<TokenId>{7});     // Ġ a: one word
    CHECK(vocab.piece(7) == " a");
    CHECK(vocab.tokenize("abc", true).front() == 6); // gpt-2 adds no BOS
}

TEST_CASE("BPE vocabularies: BOS rules, special tokens, end of generation, round trips") {
    if (!BpeTokenizer::available()) return;
    const std::string llama3_path = test::shared_file("vocab/ggml-vocab-llama3.gguf");
    const std::string qwen2_path = test::shared_file("vocab/ggml-vocab-qwen2.gguf");
    WOOLLY_REQUIRE_SHARED(llama3_path);
    WOOLLY_REQUIRE_SHARED(qwen2_path);
    auto llama3_file = GgufFile::open(llama3_path);
    auto qwen2_file = GgufFile::open(qwen2_path);
    Vocab llama3(*llama3_file), qwen2(*qwen2_file);
    CHECK(llama3.pre_tokenizer() == "llama-bpe");
    CHECK(llama3.tokenize("Hello", true).front() == 128000); // Llama 3 adds <|begin_of_text|>
    CHECK(qwen2.tokenize("Hello", true) == qwen2.tokenize("Hello", false)); // Qwen adds nothing
    // A control token typed by a user is text unless special parsing is asked for.
    const TokenId im_start = qwen2.find("<|im_start|>");
    REQUIRE(im_start >= 0);
    const auto typed = qwen2.tokenize("<|im_start|>user", false);
    CHECK(std::find(typed.begin(), typed.end(), im_start) == typed.end());
    CHECK(qwen2.tokenize("<|im_start|>user", false, true).front() == im_start);
    // End of generation: EOS and the end-of-turn tokens llama.cpp knows by their text.
    CHECK(qwen2.is_eog(qwen2.find("<|im_end|>")));
    CHECK(qwen2.is_eog(qwen2.find("<|endoftext|>")));
    CHECK(llama3.is_eog(llama3.find("<|eot_id|>")));
    CHECK(llama3.is_eog(128001));
    CHECK_FALSE(llama3.is_eog(llama3.find("<|start_header_id|>")));
    CHECK(llama3.piece(llama3.find("<|eot_id|>")).empty()); // control tokens print nothing
    // Pieces undo the byte map: any text comes back byte for byte, invalid UTF-8 as U+FFFD.
    const std::string text = "Hello, wörld!\n\t  naïve 日本語 🦙 ١٢٣ 12345 don't";
    for (const Vocab* v : {&llama3, &qwen2}) {
        std::string back;
        for (TokenId t : v->tokenize(text, false)) back += v->piece(t);
        CHECK(back == text);
        back.clear();
        // Each byte that begins no character is one U+FFFD, as in llama.cpp.
        for (TokenId t : v->tokenize("a\xff"
                                     "b\xe6\x97",
                                     false))
            back += v->piece(t);
        CHECK(back == "a\xef\xbf\xbd"
                      "b\xef\xbf\xbd\xef\xbf\xbd");
    }
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

// The family of each template the chat tests render with Jinja is recognised from its text.
TEST_CASE("chat templates are recognised by their markers, and a stranger is refused by name") {
    const std::string dir = std::string(WOOLLY_SOURCE_DIR) + "/tests/chat_templates/";
    for (const char* name : {"chatml", "llama2", "mistral-v1", "zephyr", "deepseek"}) {
        const auto bytes = test::read_bytes(dir + name + ".jinja");
        const auto family = detect_chat_template(std::string(bytes.begin(), bytes.end()));
        REQUIRE(family);
        CHECK(chat_template_name(*family) == name);
    }
    for (const auto& [vocab, name] : std::vector<std::pair<std::string, std::string>>{
             {"llama3", "llama3"}, {"qwen2", "qwen3"}, {"phi-3", "phi3"}, {"gemma", "gemma"}}) {
        const std::string path = test::shared_file("vocab/ggml-vocab-" + vocab + ".gguf");
        WOOLLY_REQUIRE_SHARED(path);
        auto file = GgufFile::open(path);
        const auto family = detect_chat_template(*file->get_string("tokenizer.chat_template"));
        REQUIRE(family);
        CHECK(chat_template_name(*family) == name);
    }
    CHECK_FALSE(detect_chat_template("{{ messages[0]['content'] }}"));
    auto bundled = GgufFile::open(test::bundled_model());
    Vocab vocab(*bundled);
    CHECK_THROWS_WITH_AS(chat_format(*bundled, vocab),
                         doctest::Contains("has no chat template (tokenizer.chat_template)"),
                         Error);
    CHECK_THROWS_WITH_AS(
        chat_format(*bundled, vocab, "klingon"),
        doctest::Contains("unknown chat template 'klingon' (expected one of: llama3"), Error);
    const ChatFormat zephyr = chat_format(*bundled, vocab, "zephyr");
    CHECK(zephyr.tokens.bos == "<s>");
    CHECK(zephyr.tokens.eos == "</s>");
    // A conversation's tokens: the template's text, BOS once.
    const auto tokens = tokenize_chat(vocab, zephyr, {{"user", "hi"}});
    CHECK(tokens.front() == vocab.bos());
    CHECK(std::count(tokens.begin(), tokens.end(), vocab.bos()) == 1);
    CHECK_THROWS_WITH_AS(apply_chat_template(ChatTemplate::Llama2, {{"system", "x"}}, true, {}),
                         doctest::Contains("Conversation roles must alternate"), Error);
    CHECK(python_strip("\xe3\x80\x80 a b\t\x1f") ==
          "a b"); // U+3000 and U+001F are spaces to Python
}

// Every pre-tokenizer's regexes compile and cut text (deepseek-llm's did not, once: its code
// points had been normalised into ranges out of order; the fuzzer found it).
TEST_CASE("every pre-tokenizer compiles and round-trips text") {
    if (!BpeTokenizer::available()) return;
    std::vector<std::string> tokens; // every byte's character
    for (int b = 0; b < 256; ++b) tokens.emplace_back(gpt2_byte_text(uint8_t(b)));
    int checked = 0;
    for (const std::string_view name : pre_tokenizer_names()) {
        INFO("pre-tokenizer " << name);
        auto file = vocab_file("gpt2", tokens, [&](GgufWriter& w) {
            w.add_string("tokenizer.ggml.pre", name);
            w.add_string_array("tokenizer.ggml.merges", {"a b"});
        });
        Vocab vocab(*file);
        const std::string text = "Hello, World 123 ÀÖ ώ ΐ Ω K 一龥 가 ！～ \r\n  x";
        std::string back;
        for (TokenId t : vocab.tokenize(text, false)) back += vocab.piece(t);
        CHECK(back == text);
        ++checked;
    }
    CHECK(checked >= 20);
}
