// iq4xs.c — writes tests/data/iq4_xs-dequant.gguf: IQ4_XS rows of random bytes (sane f16
// scales) as "iq4_xs.raw", and ggml's own dequantization of them as "iq4_xs.expected".
// Built against ik_llama.cpp's ggml (commit 8337e4c), a reference only, outside Woolly's tree.
#include "ggml.h"
#include <stdint.h>
#include <stdio.h>
#include <string.h>
int main(int argc, char** argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: iq4xs OUT.gguf\n");
        return 2;
    }
    enum { ROWS = 8, N = 512 }; // 8 rows of two super-blocks
    struct ggml_init_params params = {64 << 20, NULL, false};
    struct ggml_context* ctx = ggml_init(params);
    struct ggml_tensor* raw = ggml_new_tensor_2d(ctx, GGML_TYPE_IQ4_XS, N, ROWS);
    struct ggml_tensor* expected = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, N, ROWS);
    ggml_set_name(raw, "iq4_xs.raw");
    ggml_set_name(expected, "iq4_xs.expected");
    uint8_t* bytes = raw->data;
    const size_t row_bytes = ggml_row_size(GGML_TYPE_IQ4_XS, N);
    uint32_t s = 12345;
    for (size_t i = 0; i < ROWS * row_bytes; ++i) {
        s = s * 1664525u + 1013904223u;
        bytes[i] = (uint8_t)(s >> 24);
    }
    for (int r = 0; r < ROWS; ++r)
        for (int b = 0; b < N / 256; ++b) {
            s = s * 1664525u + 1013904223u;
            const float d = ((float)(s >> 8) / 16777216.0f - 0.5f) * 0.02f;
            const ggml_fp16_t h = ggml_fp32_to_fp16(d);
            memcpy(bytes + r * row_bytes + b * 136, &h, 2);
        }
    ggml_type_traits_t t = ggml_internal_get_type_traits(GGML_TYPE_IQ4_XS);
    for (int r = 0; r < ROWS; ++r)
        t.to_float(bytes + r * row_bytes, (float*)expected->data + r * N, N);
    struct gguf_context* g = gguf_init_empty();
    gguf_add_tensor(g, raw);
    gguf_add_tensor(g, expected);
    gguf_write_to_file(g, argv[1], false);
    printf("%s: %d rows x %d values\n", argv[1], ROWS, N);
    return 0;
}
