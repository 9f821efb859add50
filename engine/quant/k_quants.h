// k_quants.h — the scalar steps every Q4_K/Q6_K/IQ4_XS dot shares with the reference: the
// activations' sums weighed by mins or scales, the float step that ends a super-block, and the
// IQ4 value table and IQ4_XS block.
#pragma once

#include <cstdint>
#include <cstring>

namespace woolly {

// A Q8_K activation block {f32 d; i8 qs[256]; i16 bsums[16]}: its bytes, its scale and its
// sums of 16.
constexpr uint64_t kQ8KBlockBytes = 4 + 256 + 32;
inline float q8_k_scale(const uint8_t* block) {
    float d;
    std::memcpy(&d, block, 4);
    return d;
}
inline void q8_k_sums(const uint8_t* block, int16_t sums[16]) {
    std::memcpy(sums, block + 4 + 256, 16 * sizeof(int16_t));
}

// Q4_K: the mins of its 8 sub-blocks of 32 times the activations' sums over them.
inline int32_t q4_k_min_sum(const uint8_t min[8], const uint8_t* q8_k_block) {
    int16_t sums[16];
    q8_k_sums(q8_k_block, sums);
    int32_t total = 0;
    for (int j = 0; j < 8; ++j) total += min[j] * (int32_t(sums[2 * j]) + sums[2 * j + 1]);
    return total;
}

// Q6_K: the scales of its 16 sub-blocks of 16 times the activations' sums over them (the
// kernels that store values plus 32 take 32 times this back).
inline int32_t q6_k_scale_sum(const int8_t scale[16], const uint8_t* q8_k_block) {
    int16_t sums[16];
    q8_k_sums(q8_k_block, sums);
    int32_t total = 0;
    for (int j = 0; j < 16; ++j) total += int32_t(scale[j]) * sums[j];
    return total;
}

// IQ4_NL's and IQ4_XS's 16 values, which a 4-bit index picks (ggml's kvalues_iq4nl).
inline constexpr int8_t kIq4nlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                            1,    13,   25,  38,  53,  69,  89,  113};

// IQ4_XS: 256 values as 8 sub-blocks of 32, each with a 6-bit scale. Sub-block ib's scale is
// ((scales_l[ib/2] >> 4*(ib%2)) & 15) | (bits 2ib, 2ib+1 of scales_h) << 4, minus 32;
// qs[16ib + l] holds its values l (low nibble) and 16 + l (high nibble).
struct Iq4XsBlock {
    uint16_t d; // f16
    uint16_t scales_h;
    uint8_t scales_l[4];
    uint8_t qs[128];
};
static_assert(sizeof(Iq4XsBlock) == 136, "ggml's block_iq4_xs");

inline int iq4_xs_scale(const Iq4XsBlock& b, int ib) {
    return (((b.scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0f) |
            (((b.scales_h >> (2 * ib)) & 3) << 4)) -
           32;
}

// A super-block's part of a row's dot, as ggml's reference adds it: from the exact integer sums
// of scale x products (isum) and of min x activation sums (imin). Every kernel that ends a
// super-block with this gives the reference's bits.
inline float k_block_term(float xd, float d, float dmin, int32_t isum, int32_t imin) {
    return xd * d * float(isum) - xd * dmin * float(imin);
}

} // namespace woolly
