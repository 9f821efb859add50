// fuzz_protocol.cpp — woolly/1 request decoding on arbitrary frames: every frame is a request
// or a RequestError, and an error encodes to a reply.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <variant>

#include "protocol/protocol.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace woolly::protocol;
    DecodeLimits limits;
    limits.max_request_bytes = 1 << 16;
    const auto decoded =
        decode_request(std::string_view(reinterpret_cast<const char*>(data), size), limits);
    if (const auto* error = std::get_if<RequestError>(&decoded)) (void)encode_error(*error);
    return 0;
}
