// fuzz_tokenizer.cpp — arbitrary bytes (UTF-8 or not) through every kind of vocabulary the
// engine has: SentencePiece (the bundled model's) and byte-level BPE under each pre-tokenizer
// (a small vocabulary of the 256 byte characters and a few merges, built here). The first byte
// picks the vocabulary and whether control-token texts are parsed. For BPE the pieces of the
// ids must give the text back, with invalid bytes as U+FFFD (a crash otherwise).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "engine/gguf/gguf.h"
#include "engine/gguf/gguf_writer.h"
#include "engine/text/tokenizer.h"
#include "engine/text/utf8.h"
#include "engine/text/vocab.h"

namespace {

using namespace woolly;

struct Vocabularies {
    std::vector<std::unique_ptr<GgufFile>> files;
    std::vector<std::vector<uint8_t>> bytes; // what the BPE files were parsed from
    std::vector<std::unique_ptr<Vocab>> vocabs;
    std::vector<bool> bpe;

    Vocabularies() {
        files.push_back(GgufFile::open(WOOLLY_SOURCE_MODEL));
        vocabs.push_back(std::make_unique<Vocab>(*files.back()));
        bpe.push_back(false);
        // GPT-2's byte map: every byte's character is a token; a few merges over them.
        std::vector<std::string> tokens;
        for (int b = 0; b < 256; ++b) tokens.emplace_back(gpt2_byte_text(uint8_t(b)));
        for (const char* t :
             {"he", "ll", "hell", "hello", "\xc4\xa0t", "\xc4\xa0th", "\xc4\xa0the", "in", "ing"})
            tokens.push_back(t);
        tokens.push_back("<|endoftext|>");
        const std::vector<std::string> merges = {"h e",          "l l",        "he ll",
                                                 "hell o",       "\xc4\xa0 t", "\xc4\xa0t h",
                                                 "\xc4\xa0th e", "i n",        "in g"};
        for (const char* pre : {"default", "gpt-2", "llama-bpe", "qwen2", "starcoder",
                                "deepseek-coder", "deepseek-llm", "tekken"}) {
            GgufWriter w;
            w.add_string("tokenizer.ggml.model", "gpt2");
            w.add_string("tokenizer.ggml.pre", pre);
            w.add_string_array("tokenizer.ggml.tokens", tokens);
            w.add_string_array("tokenizer.ggml.merges", merges);
            std::vector<int32_t> types(tokens.size(), 1);
            types.back() = 3; // <|endoftext|> is a control token
            w.add_i32_array("tokenizer.ggml.token_type", types);
            w.add_u32("tokenizer.ggml.eos_token_id", uint32_t(tokens.size() - 1));
            w.add_u32("tokenizer.ggml.bos_token_id", uint32_t(tokens.size() - 1));
            bytes.push_back(w.serialize());
            files.push_back(GgufFile::parse(pre, bytes.back().data(), bytes.back().size()));
            vocabs.push_back(std::make_unique<Vocab>(*files.back()));
            bpe.push_back(true);
        }
    }
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    static const Vocabularies v;
    const size_t which = data[0] % v.vocabs.size();
    const bool parse_special = data[0] & 0x80;
    const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
    const Vocab& vocab = *v.vocabs[which];
    const std::vector<TokenId> ids = vocab.tokenize(text, true, parse_special);
    std::string back;
    for (TokenId id : ids) {
        if (id < 0 || id >= vocab.size()) std::abort(); // an id outside the vocabulary
        back += vocab.piece(id);
    }
    if (v.bpe[which] && !parse_special && back != repair_utf8(text)) std::abort();
    return 0;
}
