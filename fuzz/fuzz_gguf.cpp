// fuzz_gguf.cpp — the GGUF reader, the model loader and the vocabulary on arbitrary bytes: an
// input is refused with an Error or loads; nothing else (no crash, no leak, no other exception).
#include <cstddef>
#include <cstdint>
#include <memory>

#include "engine/error.h"
#include "engine/gguf/gguf.h"
#include "engine/model/model.h"
#include "engine/text/vocab.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace woolly;
    std::shared_ptr<const GgufFile> file;
    try {
        file = GgufFile::parse("fuzz.gguf", data, size);
    } catch (const Error&) {
        return 0;
    }
    try {
        auto model = LlamaModel::from_gguf(file);
        (void)model->weight_bytes_per_token();
    } catch (const Error&) {
    }
    try {
        Vocab vocab(*file);
        for (TokenId id : vocab.tokenize("Hello, world! <s> 12345 naïve", true, true))
            (void)vocab.piece(id);
    } catch (const Error&) {
    }
    return 0;
}
