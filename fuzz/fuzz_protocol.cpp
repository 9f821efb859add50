// fuzz_protocol.cpp — request decoding on arbitrary bytes, as a woolly/1 frame and as each HTTP
// body (protocol/openai.h): every input is a request or an error, and an error encodes.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <variant>

#include "protocol/openai.h"
#include "protocol/protocol.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace woolly::protocol;
    DecodeLimits limits;
    limits.max_request_bytes = 1 << 16;
    const auto decoded =
        decode_request(std::string_view(reinterpret_cast<const char*>(data), size), limits);
    if (const auto* error = std::get_if<RequestError>(&decoded)) (void)encode_error(*error);
    const std::string_view body(reinterpret_cast<const char*>(data), size);
    for (auto endpoint : {openai::Endpoint::Chat, openai::Endpoint::Completion}) {
        const auto http = openai::decode_completion(body, endpoint, limits);
        if (const auto* e = std::get_if<openai::Error>(&http)) (void)openai::encode_error(*e);
    }
    (void)openai::decode_tokenize(body);
    (void)openai::decode_detokenize(body, 32000);
    return 0;
}
