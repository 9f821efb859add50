// arm/neon.cpp — AArch64 NEON (+dotprod) kernels; references: the scalar kernels in
// quant/tensor_types.cpp. Built by Debian's aarch64 cross compiler and tested under qemu-user.
#include <arm_neon.h>

#include <cstring>

#include "engine/quant/k_quants.h"
#include "engine/kernels/kernels.h"

namespace woolly::neon {
namespace {

float load_f16(const uint8_t* p) {
    float16_t h;
    std::memcpy(&h, p, 2);
    return float(h);
}

} // namespace

float vec_dot_f32(const void* row, const void* activations, int64_t n) {
    const auto* w = static_cast<const float*>(row);
    const auto* x = static_cast<const float*>(activations);
    float32x4_t acc[4] = {vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0)};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int k = 0; k < 4; ++k)
            acc[k] = vfmaq_f32(acc[k], vld1q_f32(w + i + 4 * k), vld1q_f32(x + i + 4 * k));
    for (; i + 4 <= n; i += 4) acc[0] = vfmaq_f32(acc[0], vld1q_f32(w + i), vld1q_f32(x + i));
    float sum = vaddvq_f32(vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3])));
    for (; i < n; ++i) sum += w[i] * x[i];
    return sum;
}

// F16 weights widened to f32 four at a time (FCVTL, in every ARMv8 core).
float vec_dot_f16_f32(const void* row, const void* activations, int64_t n) {
    const auto* w = static_cast<const uint8_t*>(row);
    const auto* x = static_cast<const float*>(activations);
    float32x4_t acc[2] = {vdupq_n_f32(0), vdupq_n_f32(0)};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const float16x8_t h = vreinterpretq_f16_u8(vld1q_u8(w + 2 * i));
        acc[0] = vfmaq_f32(acc[0], vcvt_f32_f16(vget_low_f16(h)), vld1q_f32(x + i));
        acc[1] = vfmaq_f32(acc[1], vcvt_high_f32_f16(h), vld1q_f32(x + i + 4));
    }
    float sum = vaddvq_f32(vaddq_f32(acc[0], acc[1]));
    for (; i < n; ++i) sum += load_f16(w + 2 * i) * x[i];
    return sum;
}

namespace {

// The 32 weights of a block as int8 in two registers (values 0..15 and 16..31).
inline void unpack_q4_0(const uint8_t* block, int8x16_t& lo, int8x16_t& hi) {
    const uint8x16_t packed = vld1q_u8(block + 2);
    const int8x16_t eight = vdupq_n_s8(8);
    lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(packed, vdupq_n_u8(0x0f))), eight);
    hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(packed, 4)), eight);
}

inline void unpack_q8_0(const uint8_t* block, int8x16_t& lo, int8x16_t& hi) {
    lo = vld1q_s8(reinterpret_cast<const int8_t*>(block + 2));
    hi = vld1q_s8(reinterpret_cast<const int8_t*>(block + 18));
}

// Per block: the exact integer dot (SDOT), then float(isum) * (d_w * d_x) added in block
// order, as the reference does: the same bits.
template <int TypeSize, void (*Unpack)(const uint8_t*, int8x16_t&, int8x16_t&)>
float dot_q8_0(const void* row, const void* activations, int64_t n) {
    const auto* w = static_cast<const uint8_t*>(row);
    const auto* x = static_cast<const uint8_t*>(activations);
    float sum = 0.0f;
    for (int64_t b = 0; b < n / 32; ++b, w += TypeSize, x += 34) {
        int8x16_t lo, hi;
        Unpack(w, lo, hi);
        int32x4_t isum = vdupq_n_s32(0);
        isum = vdotq_s32(isum, lo, vld1q_s8(reinterpret_cast<const int8_t*>(x + 2)));
        isum = vdotq_s32(isum, hi, vld1q_s8(reinterpret_cast<const int8_t*>(x + 18)));
        sum += float(vaddvq_s32(isum)) * (load_f16(w) * load_f16(x));
    }
    return sum;
}

} // namespace

float vec_dot_q8_0_q8_0(const void* row, const void* activations, int64_t n) {
    return dot_q8_0<34, unpack_q8_0>(row, activations, n);
}

float vec_dot_q4_0_q8_0(const void* row, const void* activations, int64_t n) {
    return dot_q8_0<18, unpack_q4_0>(row, activations, n);
}

// Same arithmetic as the reference (amax, 127/amax, round half to even): the same bytes.
void quantize_row_q8_0(const float* src, void* dst, int64_t n) {
    auto* block = static_cast<uint8_t*>(dst);
    for (int64_t b = 0; b < n / 32; ++b, src += 32, block += 34) {
        float32x4_t v[8];
        float32x4_t amax = vdupq_n_f32(0);
        for (int k = 0; k < 8; ++k) {
            v[k] = vld1q_f32(src + 4 * k);
            amax = vmaxq_f32(amax, vabsq_f32(v[k]));
        }
        const float max_abs = vmaxvq_f32(amax);
        const float d = max_abs / 127.0f;
        const float id = max_abs != 0.0f ? 127.0f / max_abs : 0.0f;
        int8_t q[32];
        for (int k = 0; k < 8; ++k) {
            const int32x4_t i = vcvtnq_s32_f32(vmulq_f32(v[k], vdupq_n_f32(id)));
            const int16x4_t s = vqmovn_s32(i);
            const int8x8_t c = vqmovn_s16(vcombine_s16(s, s));
            std::memcpy(q + 4 * k, &c, 4);
        }
        const float16_t h = float16_t(d);
        std::memcpy(block, &h, 2);
        std::memcpy(block + 2, q, 32);
    }
}

// FCVTL: exact conversion, 4 values at a time.
void f16_to_f32_row(const void* src, float* dst, int64_t n) {
    const auto* h = static_cast<const uint8_t*>(src);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        vst1q_f32(dst + i, vcvt_f32_f16(vreinterpret_f16_u8(vld1_u8(h + 2 * i))));
    for (; i < n; ++i) dst[i] = load_f16(h + 2 * i);
}

// ---- k-quant rows against Q8_K {f32 d; i8 qs[256]; i16 bsums[16]} ----
// As the AVX2 kernels: exact integer sums per super-block (SDOT over the unsigned values, which
// fit in signed bytes), then the reference's float steps in its order: its bits.

float vec_dot_q4_k_q8_k(const void* row, const void* activations, int64_t n) {
    const auto* w = static_cast<const uint8_t*>(row);
    const auto* x = static_cast<const uint8_t*>(activations);
    const uint8x16_t low4 = vdupq_n_u8(0x0f);
    float sum = 0.0f;
    for (int64_t b = 0; b < n / 256; ++b, w += 144, x += kQ8KBlockBytes) {
        uint8_t scale[8], min[8];
        for (int j = 0; j < 8; ++j) get_scale_min_k4(j, w + 4, &scale[j], &min[j]);
        const auto* xq = reinterpret_cast<const int8_t*>(x + 4);
        int32_t isum = 0;
        for (int c = 0; c < 4; ++c) { // sub-blocks 2c (low nibbles) and 2c + 1 (high)
            int32x4_t low_sum = vdupq_n_s32(0), high_sum = vdupq_n_s32(0);
            for (int half = 0; half < 2; ++half) {
                const uint8x16_t q = vld1q_u8(w + 16 + 32 * c + 16 * half);
                low_sum = vdotq_s32(low_sum, vreinterpretq_s8_u8(vandq_u8(q, low4)),
                                    vld1q_s8(xq + 64 * c + 16 * half));
                high_sum = vdotq_s32(high_sum, vreinterpretq_s8_u8(vshrq_n_u8(q, 4)),
                                     vld1q_s8(xq + 64 * c + 32 + 16 * half));
            }
            isum += scale[2 * c] * vaddvq_s32(low_sum) + scale[2 * c + 1] * vaddvq_s32(high_sum);
        }
        sum +=
            k_block_term(q8_k_scale(x), load_f16(w), load_f16(w + 2), isum, q4_k_min_sum(min, x));
    }
    return sum;
}

float vec_dot_q6_k_q8_k(const void* row, const void* activations, int64_t n) {
    const auto* w = static_cast<const uint8_t*>(row);
    const auto* x = static_cast<const uint8_t*>(activations);
    const uint8x16_t low4 = vdupq_n_u8(0x0f), two_bits = vdupq_n_u8(0x03);
    float sum = 0.0f;
    for (int64_t b = 0; b < n / 256; ++b, w += 210, x += kQ8KBlockBytes) {
        const auto* scale = reinterpret_cast<const int8_t*>(w + 192);
        const auto* xq = reinterpret_cast<const int8_t*>(x + 4);
        int32_t isum = 0;
        for (int h = 0; h < 2; ++h) { // 128 values from ql[64h..], qh[32h..]
            for (int l = 0; l < 32; l += 16) {
                const uint8x16_t q0 = vld1q_u8(w + 64 * h + l);
                const uint8x16_t q1 = vld1q_u8(w + 64 * h + 32 + l);
                const uint8x16_t qh = vld1q_u8(w + 128 + 32 * h + l);
                // The stored 6-bit values (value + 32) of columns l, l + 32, l + 64, l + 96.
                const uint8x16_t u[4] = {
                    vorrq_u8(vandq_u8(q0, low4), vshlq_n_u8(vandq_u8(qh, two_bits), 4)),
                    vorrq_u8(vandq_u8(q1, low4),
                             vshlq_n_u8(vandq_u8(vshrq_n_u8(qh, 2), two_bits), 4)),
                    vorrq_u8(vshrq_n_u8(q0, 4),
                             vshlq_n_u8(vandq_u8(vshrq_n_u8(qh, 4), two_bits), 4)),
                    vorrq_u8(vshrq_n_u8(q1, 4), vshlq_n_u8(vshrq_n_u8(qh, 6), 4))};
                for (int k = 0; k < 4; ++k) {
                    const int column = 128 * h + 32 * k + l; // 16 columns of sub-block column/16
                    const int32x4_t dot =
                        vdotq_s32(vdupq_n_s32(0), vreinterpretq_s8_u8(u[k]), vld1q_s8(xq + column));
                    isum += scale[column / 16] * vaddvq_s32(dot);
                }
            }
        }
        // The stored values are value + 32: take 32 x each sub-block's activation sum back.
        isum -= 32 * q6_k_scale_sum(scale, x);
        sum += k_block_term(q8_k_scale(x), load_f16(w + 208), 0.0f, isum, 0); // no mins
    }
    return sum;
}

// IQ4_XS: each nibble picks one of the 16 IQ4 values (a table lookup); SDOT sums each
// sub-block's 32 products exactly, times its scale, so the reference's bits come out.
float vec_dot_iq4_xs_q8_k(const void* row, const void* activations, int64_t n) {
    const auto* w = static_cast<const uint8_t*>(row);
    const auto* x = static_cast<const uint8_t*>(activations);
    const int8x16_t values = vld1q_s8(kIq4nlValues);
    const uint8x16_t low4 = vdupq_n_u8(0x0f);
    float sum = 0.0f;
    for (int64_t b = 0; b < n / 256; ++b, w += sizeof(Iq4XsBlock), x += kQ8KBlockBytes) {
        Iq4XsBlock block;
        std::memcpy(&block, w, sizeof block);
        const auto* xq = reinterpret_cast<const int8_t*>(x + 4);
        int32_t isum = 0;
        for (int ib = 0; ib < 8; ++ib) {
            const uint8x16_t qs = vld1q_u8(block.qs + 16 * ib);
            const int8x16_t lo = vqtbl1q_s8(values, vandq_u8(qs, low4));
            const int8x16_t hi = vqtbl1q_s8(values, vshrq_n_u8(qs, 4));
            int32x4_t dot = vdotq_s32(vdupq_n_s32(0), lo, vld1q_s8(xq + 32 * ib));
            dot = vdotq_s32(dot, hi, vld1q_s8(xq + 32 * ib + 16));
            isum += iq4_xs_scale(block, ib) * vaddvq_s32(dot);
        }
        sum += k_block_term(q8_k_scale(x), load_f16(w), 0.0f, isum, 0);
    }
    return sum;
}

} // namespace woolly::neon
