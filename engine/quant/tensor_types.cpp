// tensor_types.cpp — block layouts and scalar reference kernels for every supported ggml type.
//
// These are the reference: written for clarity, matching ggml's (and gguf-py's) dequantization
// bit for bit. SIMD kernels elsewhere are tested against them.
#include "engine/quant/tensor_types.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <string>

#include "engine/quant/fp16.h"
#include "engine/quant/k_quants.h"

namespace woolly {
namespace {

constexpr int QK = 32;    // values per block of the legacy quants
constexpr int QK_K = 256; // values per super-block of the k-quants

uint16_t load_u16(const uint8_t* p) {
    uint16_t v;
    std::memcpy(&v, p, 2);
    return v;
}
float load_f16(const uint8_t* p) {
    return f16_to_f32(load_u16(p));
}

// ---- F32 / F16 / BF16 ----------------------------------------------------------------------

void dequantize_f32(const void* src, float* dst, int64_t n) {
    std::memcpy(dst, src, size_t(n) * sizeof(float));
}
void dequantize_f16(const void* src, float* dst, int64_t n) {
    const auto* p = static_cast<const uint8_t*>(src);
    for (int64_t i = 0; i < n; ++i) dst[i] = load_f16(p + 2 * i);
}
void dequantize_bf16(const void* src, float* dst, int64_t n) {
    const auto* p = static_cast<const uint8_t*>(src);
    for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(load_u16(p + 2 * i));
}

// ---- Legacy quants: blocks of 32 values, w = d * q (+ m) -----------------------------------
// Each layout is decoded in exactly one place, its unpack function, into integers q with the
// block's scale d and min m; dequantization and the dot kernels both start from there.
//   Q4_0   {f16 d; u8 qs[16]}                 q = nibble - 8 (low nibbles: values 0..15)
//   Q4_1   {f16 d; f16 m; u8 qs[16]}          q = nibble
//   Q5_0   {f16 d; u8 qh[4]; u8 qs[16]}       q = nibble | bit j of qh << 4, minus 16
//   Q5_1   {f16 d; f16 m; u8 qh[4]; u8 qs[16]}
//   Q8_0   {f16 d; i8 qs[32]}
//   IQ4_NL {f16 d; u8 qs[16]}                 q = kIq4nlValues[nibble]
// (kIq4nlValues: k_quants.h, shared with the IQ4_XS kernels.)

struct LegacyBlock {
    int8_t q[QK];
    float d;
    float m; // min added to every weight (Q4_1, Q5_1), else 0
};

void unpack_q4_0(const uint8_t* b, LegacyBlock& out) {
    out.d = load_f16(b);
    out.m = 0.0f;
    for (int j = 0; j < QK / 2; ++j) {
        out.q[j] = int8_t((b[2 + j] & 0x0f) - 8);
        out.q[j + QK / 2] = int8_t((b[2 + j] >> 4) - 8);
    }
}
void unpack_q4_1(const uint8_t* b, LegacyBlock& out) {
    out.d = load_f16(b);
    out.m = load_f16(b + 2);
    for (int j = 0; j < QK / 2; ++j) {
        out.q[j] = int8_t(b[4 + j] & 0x0f);
        out.q[j + QK / 2] = int8_t(b[4 + j] >> 4);
    }
}
template <int Offset, int QhAt> void unpack_q5(const uint8_t* b, LegacyBlock& out) {
    uint32_t qh;
    std::memcpy(&qh, b + QhAt, 4);
    const uint8_t* qs = b + QhAt + 4;
    for (int j = 0; j < QK / 2; ++j) {
        out.q[j] = int8_t(((qs[j] & 0x0f) | (((qh >> j) & 1u) << 4)) - Offset);
        out.q[j + QK / 2] = int8_t(((qs[j] >> 4) | (((qh >> (j + 16)) & 1u) << 4)) - Offset);
    }
}
void unpack_q5_0(const uint8_t* b, LegacyBlock& out) {
    out.d = load_f16(b);
    out.m = 0.0f;
    unpack_q5<16, 2>(b, out);
}
void unpack_q5_1(const uint8_t* b, LegacyBlock& out) {
    out.d = load_f16(b);
    out.m = load_f16(b + 2);
    unpack_q5<0, 4>(b, out);
}
void unpack_q8_0(const uint8_t* b, LegacyBlock& out) {
    out.d = load_f16(b);
    out.m = 0.0f;
    std::memcpy(out.q, b + 2, QK);
}
void unpack_iq4_nl(const uint8_t* b, LegacyBlock& out) {
    out.d = load_f16(b);
    out.m = 0.0f;
    for (int j = 0; j < QK / 2; ++j) {
        out.q[j] = kIq4nlValues[b[2 + j] & 0x0f];
        out.q[j + QK / 2] = kIq4nlValues[b[2 + j] >> 4];
    }
}

// ---- K-quants: super-blocks of 256 values, w = d * scale * q - dmin * min ------------------
// Unpacked into integers with one integer scale and min per 16 values.
//   Q2_K {u8 scales[16]; u8 qs[64]; f16 d; f16 dmin}   2-bit q, 4-bit scale and min
//   Q3_K {u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d}   3-bit q, 6-bit signed scales
//   Q4_K {f16 d; f16 dmin; u8 scales[12]; u8 qs[128]}   4-bit q, 6-bit scales and mins
//   Q5_K {f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]}
//   Q6_K {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}   6-bit q, 8-bit signed scales
//   IQ4_XS {f16 d; u16 scales_h; u8 scales_l[4]; u8 qs[128]}   q = kIq4nlValues[nibble], one
//        6-bit scale (offset by 32) per 32 values, no mins
// Q3_K packs sixteen 6-bit signed scales (offset by 32) into 12 bytes.
void unpack_q3_k_scales(const uint8_t* packed, int8_t* scales) {
    for (int i = 0; i < 16; ++i) {
        const int low = i < 8 ? (packed[i] & 0x0f) : (packed[i - 8] >> 4);
        const int high = (packed[8 + i % 4] >> (2 * (i / 4))) & 3;
        scales[i] = int8_t((low | (high << 4)) - 32);
    }
}

} // namespace

void q6_k_values(const uint8_t* b, int8_t* q) {
    const uint8_t* ql = b;
    const uint8_t* qh = b + 128;
    for (int half = 0; half < 2; ++half, ql += 64, qh += 32) {
        int8_t* dst = q + 128 * half;
        for (int l = 0; l < 32; ++l) {
            dst[l] = int8_t(((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32);
            dst[l + 32] = int8_t(((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32);
            dst[l + 64] = int8_t(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
            dst[l + 96] = int8_t(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
        }
    }
}

void get_scale_min_k4(int j, const uint8_t* q, uint8_t* scale, uint8_t* min) {
    if (j < 4) {
        *scale = q[j] & 63;
        *min = q[j + 4] & 63;
    } else {
        *scale = uint8_t((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4));
        *min = uint8_t((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

namespace {

struct KBlock {
    int8_t q[QK_K];
    int scale[QK_K / 16];
    int min[QK_K / 16];
    float d;
    float dmin;
};

void unpack_q2_k(const uint8_t* b, KBlock& out) {
    const uint8_t* q = b + 16;
    for (int i = 0; i < 16; ++i) {
        out.scale[i] = b[i] & 0x0f;
        out.min[i] = b[i] >> 4;
    }
    int8_t* dst = out.q;
    for (int half = 0; half < 2; ++half, q += 32)
        for (int shift = 0; shift < 8; shift += 2)
            for (int l = 0; l < 32; ++l) *dst++ = int8_t((q[l] >> shift) & 3);
    out.d = load_f16(b + 80);
    out.dmin = load_f16(b + 82);
}

void unpack_q3_k(const uint8_t* b, KBlock& out) {
    const uint8_t* hmask = b;
    const uint8_t* q = b + 32;
    int8_t scales[16];
    unpack_q3_k_scales(b + 96, scales);
    for (int i = 0; i < 16; ++i) {
        out.scale[i] = scales[i];
        out.min[i] = 0;
    }
    int8_t* dst = out.q;
    uint8_t m = 1;
    for (int half = 0; half < 2; ++half, q += 32)
        for (int shift = 0; shift < 8; shift += 2, m = uint8_t(m << 1))
            for (int l = 0; l < 32; ++l)
                *dst++ = int8_t(((q[l] >> shift) & 3) - ((hmask[l] & m) ? 0 : 4));
    out.d = load_f16(b + 108);
    out.dmin = 0.0f;
}

template <bool FiveBit> void unpack_q45_k(const uint8_t* b, KBlock& out) {
    out.d = load_f16(b);
    out.dmin = load_f16(b + 2);
    const uint8_t* scales = b + 4;
    const uint8_t* qh = b + 16;
    const uint8_t* ql = FiveBit ? b + 48 : b + 16;
    for (int j = 0; j < 8; ++j) {
        uint8_t sc, m;
        get_scale_min_k4(j, scales, &sc, &m);
        out.scale[2 * j] = out.scale[2 * j + 1] = sc;
        out.min[2 * j] = out.min[2 * j + 1] = m;
    }
    int8_t* dst = out.q;
    for (int j = 0; j < 4; ++j, ql += 32) {
        for (int l = 0; l < 32; ++l)
            *dst++ = int8_t((ql[l] & 0x0f) + (FiveBit && (qh[l] >> (2 * j)) & 1 ? 16 : 0));
        for (int l = 0; l < 32; ++l)
            *dst++ = int8_t((ql[l] >> 4) + (FiveBit && (qh[l] >> (2 * j + 1)) & 1 ? 16 : 0));
    }
}

void unpack_q6_k(const uint8_t* b, KBlock& out) {
    const auto* sc = reinterpret_cast<const int8_t*>(b + 192);
    for (int i = 0; i < 16; ++i) {
        out.scale[i] = sc[i];
        out.min[i] = 0;
    }
    q6_k_values(b, out.q);
    out.d = load_f16(b + 208);
    out.dmin = 0.0f;
}

void unpack_iq4_xs(const uint8_t* p, KBlock& out) {
    Iq4XsBlock b;
    std::memcpy(&b, p, sizeof b);
    out.d = f16_to_f32(b.d);
    out.dmin = 0.0f;
    for (int ib = 0; ib < QK_K / 32; ++ib) {
        out.scale[2 * ib] = out.scale[2 * ib + 1] = iq4_xs_scale(b, ib);
        out.min[2 * ib] = out.min[2 * ib + 1] = 0;
        for (int l = 0; l < 16; ++l) {
            out.q[32 * ib + l] = kIq4nlValues[b.qs[16 * ib + l] & 0x0f];
            out.q[32 * ib + 16 + l] = kIq4nlValues[b.qs[16 * ib + l] >> 4];
        }
    }
}

using UnpackLegacyFn = void (*)(const uint8_t*, LegacyBlock&);
using UnpackKFn = void (*)(const uint8_t*, KBlock&);

// x = q * d (+ m). The min is added only where the format has one: adding a zero would turn
// a -0.0 into +0.0 and break bit-exactness with gguf-py.
template <UnpackLegacyFn Unpack, int TypeSize, bool WithMin>
void dequantize_legacy(const void* src, float* dst, int64_t n) {
    const auto* block = static_cast<const uint8_t*>(src);
    LegacyBlock b;
    for (int64_t i = 0; i < n / QK; ++i, block += TypeSize, dst += QK) {
        Unpack(block, b);
        for (int j = 0; j < QK; ++j)
            dst[j] = WithMin ? float(b.q[j]) * b.d + b.m : float(b.q[j]) * b.d;
    }
}

// x = (d * scale) * q - (dmin * min), in ggml's order of operations.
template <UnpackKFn Unpack, int TypeSize, bool WithMin>
void dequantize_k(const void* src, float* dst, int64_t n) {
    const auto* block = static_cast<const uint8_t*>(src);
    KBlock b;
    for (int64_t i = 0; i < n / QK_K; ++i, block += TypeSize) {
        Unpack(block, b);
        for (int j = 0; j < QK_K / 16; ++j) {
            const float dl = b.d * float(b.scale[j]);
            const float ml = b.dmin * float(b.min[j]);
            for (int l = 0; l < 16; ++l)
                *dst++ = WithMin ? dl * float(b.q[16 * j + l]) - ml : dl * float(b.q[16 * j + l]);
        }
    }
}

// ---- Activation formats -------------------------------------------------------------------
// ggml multiplies quantized weights by activations quantized to 8 bits per matmul; doing the
// same keeps Woolly's logits next to llama.cpp's. These match ggml's x86 quantizers: scale
// 127/amax, round half to even.

int nearest_int(float value) {
    return int(std::nearbyint(value));
}

void quantize_f16(const float* src, void* dst, int64_t n) {
    auto* out = static_cast<uint8_t*>(dst);
    for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = f32_to_f16(src[i]);
        std::memcpy(out + 2 * i, &h, 2);
    }
}

// Q4_0 weights, as ggml's reference quantizer makes them: the value of largest magnitude maps
// to -8, d = max / -8, q = round(x / d) + 8 clamped to 0..15.
void quantize_q4_0(const float* src, void* dst, int64_t n) {
    auto* block = static_cast<uint8_t*>(dst);
    for (int64_t b = 0; b < n / QK; ++b, src += QK, block += 18) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK; ++j) {
            if (std::fabs(src[j]) > amax) {
                amax = std::fabs(src[j]);
                max = src[j];
            }
        }
        const float d = max / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        const uint16_t h = f32_to_f16(d);
        std::memcpy(block, &h, 2);
        for (int j = 0; j < QK / 2; ++j) {
            const int q0 = std::min(15, int(src[j] * id + 8.5f));
            const int q1 = std::min(15, int(src[j + QK / 2] * id + 8.5f));
            block[2 + j] = uint8_t(q0 | (q1 << 4));
        }
    }
}

// Q4_K {f16 d; f16 dmin; u8 scales[12]; u8 qs[128]}: eight sub-blocks of 32, each with a 6-bit
// scale and min, value = d * scale * q - dmin * min. A plain min/max fit per sub-block (not
// llama.cpp's search for the best scale: synth weights are random, and speed does not depend
// on the values).
void quantize_q4_k(const float* src, void* dst, int64_t n) {
    auto* block = static_cast<uint8_t*>(dst);
    for (int64_t b = 0; b < n / QK_K; ++b, src += QK_K, block += 144) {
        float scale[8], min[8], max_scale = 0.0f, max_min = 0.0f;
        for (int j = 0; j < 8; ++j) {
            float lo = 0.0f, hi = -INFINITY;
            for (int l = 0; l < 32; ++l) {
                lo = std::min(lo, src[32 * j + l]);
                hi = std::max(hi, src[32 * j + l]);
            }
            scale[j] = (hi - lo) / 15.0f;
            min[j] = -lo;
            max_scale = std::max(max_scale, scale[j]);
            max_min = std::max(max_min, min[j]);
        }
        const uint16_t d16 = f32_to_f16(max_scale / 63.0f), dmin16 = f32_to_f16(max_min / 63.0f);
        const float d = f16_to_f32(d16), dmin = f16_to_f32(dmin16);
        uint8_t sc[8], m[8];
        for (int j = 0; j < 8; ++j) {
            sc[j] = uint8_t(d > 0 ? std::clamp(nearest_int(scale[j] / d), 0, 63) : 0);
            m[j] = uint8_t(dmin > 0 ? std::clamp(nearest_int(min[j] / dmin), 0, 63) : 0);
        }
        std::memcpy(block, &d16, 2);
        std::memcpy(block + 2, &dmin16, 2);
        uint8_t* packed = block + 4; // the inverse of get_scale_min_k4
        for (int j = 0; j < 4; ++j) {
            packed[j] = uint8_t(sc[j] | ((sc[j + 4] >> 4) << 6));
            packed[j + 4] = uint8_t(m[j] | ((m[j + 4] >> 4) << 6));
            packed[j + 8] = uint8_t((sc[j + 4] & 0x0f) | ((m[j + 4] & 0x0f) << 4));
        }
        uint8_t q[QK_K];
        for (int j = 0; j < 8; ++j) {
            const float step = d * float(sc[j]), offset = dmin * float(m[j]);
            for (int l = 0; l < 32; ++l)
                q[32 * j + l] = uint8_t(
                    step > 0 ? std::clamp(nearest_int((src[32 * j + l] + offset) / step), 0, 15)
                             : 0);
        }
        uint8_t* qs = block + 16;
        for (int c = 0; c < 4; ++c)
            for (int l = 0; l < 32; ++l)
                qs[32 * c + l] = uint8_t(q[64 * c + l] | (q[64 * c + 32 + l] << 4));
    }
}

// Q6_K {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}: sixteen sub-blocks of 16, value =
// d * scale * (q - 32) with q in 0..63; symmetric fit per sub-block.
void quantize_q6_k(const float* src, void* dst, int64_t n) {
    auto* block = static_cast<uint8_t*>(dst);
    for (int64_t b = 0; b < n / QK_K; ++b, src += QK_K, block += 210) {
        float scale[16], max_scale = 0.0f;
        for (int j = 0; j < 16; ++j) {
            float amax = 0.0f;
            for (int l = 0; l < 16; ++l) amax = std::max(amax, std::fabs(src[16 * j + l]));
            scale[j] = amax / 31.0f;
            max_scale = std::max(max_scale, scale[j]);
        }
        const uint16_t d16 = f32_to_f16(max_scale / 127.0f);
        const float d = f16_to_f32(d16);
        auto* scales = reinterpret_cast<int8_t*>(block + 192);
        uint8_t q[QK_K];
        for (int j = 0; j < 16; ++j) {
            scales[j] = int8_t(d > 0 ? std::clamp(nearest_int(scale[j] / d), 0, 127) : 0);
            const float step = d * float(scales[j]);
            for (int l = 0; l < 16; ++l)
                q[16 * j + l] = uint8_t(
                    32 + (step > 0 ? std::clamp(nearest_int(src[16 * j + l] / step), -32, 31) : 0));
        }
        std::memcpy(block + 208, &d16, 2);
        uint8_t* ql = block;
        uint8_t* qh = block + 128;
        for (int half = 0; half < 2; ++half) {
            const uint8_t* h = q + 128 * half;
            for (int l = 0; l < 32; ++l) {
                ql[64 * half + l] = uint8_t((h[l] & 0x0f) | ((h[l + 64] & 0x0f) << 4));
                ql[64 * half + l + 32] = uint8_t((h[l + 32] & 0x0f) | ((h[l + 96] & 0x0f) << 4));
                qh[32 * half + l] = uint8_t((h[l] >> 4) | ((h[l + 32] >> 4) << 2) |
                                            ((h[l + 64] >> 4) << 4) | ((h[l + 96] >> 4) << 6));
            }
        }
    }
}

// IQ4_XS: per sub-block of 32 the scale that maps its value of largest magnitude to -127 (the
// table's end), the super-block's d the largest of them over 31, each value the table's
// nearest (not llama.cpp's search for the best scales: synth weights are random).
void quantize_iq4_xs(const float* src, void* dst, int64_t n) {
    auto* out = static_cast<uint8_t*>(dst);
    for (int64_t blk = 0; blk < n / QK_K; ++blk, src += QK_K, out += sizeof(Iq4XsBlock)) {
        float sub[QK_K / 32], largest = 0.0f;
        for (int ib = 0; ib < QK_K / 32; ++ib) {
            float amax = 0.0f, max = 0.0f;
            for (int l = 0; l < 32; ++l) {
                if (std::fabs(src[32 * ib + l]) > amax) {
                    amax = std::fabs(src[32 * ib + l]);
                    max = src[32 * ib + l];
                }
            }
            sub[ib] = max / float(kIq4nlValues[0]);
            largest = std::max(largest, std::fabs(sub[ib]));
        }
        Iq4XsBlock b{};
        b.d = f32_to_f16(largest / 31.0f);
        const float d = f16_to_f32(b.d);
        for (int ib = 0; ib < QK_K / 32; ++ib) {
            const int ls = d > 0 ? std::clamp(nearest_int(sub[ib] / d), -32, 31) + 32 : 32;
            b.scales_l[ib / 2] = uint8_t(b.scales_l[ib / 2] | ((ls & 0x0f) << (4 * (ib % 2))));
            b.scales_h = uint16_t(b.scales_h | ((ls >> 4) << (2 * ib)));
            const float step = d * float(ls - 32);
            uint8_t q[32];
            for (int l = 0; l < 32; ++l) {
                int best = 0;
                float best_error = INFINITY;
                for (int k = 0; k < 16; ++k) {
                    const float error = std::fabs(step * float(kIq4nlValues[k]) - src[32 * ib + l]);
                    if (error < best_error) {
                        best_error = error;
                        best = k;
                    }
                }
                q[l] = uint8_t(best);
            }
            for (int l = 0; l < 16; ++l) b.qs[16 * ib + l] = uint8_t(q[l] | (q[16 + l] << 4));
        }
        std::memcpy(out, &b, sizeof b);
    }
}

void quantize_bf16(const float* src, void* dst, int64_t n) {
    auto* out = static_cast<uint8_t*>(dst);
    for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = f32_to_bf16(src[i]);
        std::memcpy(out + 2 * i, &h, 2);
    }
}

void store_f16(uint8_t* p, float value) {
    const uint16_t h = f32_to_f16(value);
    std::memcpy(p, &h, 2);
}

// Q8_0: {f16 d; i8 qs[32]}. Q8_1 adds f16 s = d * sum(qs) after d, for weights with a min.
template <bool WithSum> void quantize_q8(const float* src, void* dst, int64_t n) {
    constexpr int kHeader = WithSum ? 4 : 2;
    auto* block = static_cast<uint8_t*>(dst);
    for (int64_t b = 0; b < n / QK; ++b, src += QK, block += kHeader + QK) {
        float amax = 0.0f;
        for (int j = 0; j < QK; ++j) amax = std::max(amax, std::fabs(src[j]));
        const float d = amax / 127.0f;
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        auto* qs = reinterpret_cast<int8_t*>(block + kHeader);
        int sum = 0;
        for (int j = 0; j < QK; ++j) {
            qs[j] = int8_t(nearest_int(src[j] * id));
            sum += qs[j];
        }
        store_f16(block, d);
        if (WithSum) store_f16(block + 2, d * float(sum));
    }
}

// Q8_K: {f32 d; i8 qs[256]; i16 bsums[16]}: the value of largest magnitude maps to -127, and
// bsums hold the sum of each 16 values (for the k-quants' mins).
constexpr int kQ8KSize = 4 + QK_K + 2 * (QK_K / 16);

void quantize_q8_k(const float* src, void* dst, int64_t n) {
    auto* block = static_cast<uint8_t*>(dst);
    for (int64_t b = 0; b < n / QK_K; ++b, src += QK_K, block += kQ8KSize) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK_K; ++j) {
            const float ax = std::fabs(src[j]);
            if (ax > amax) {
                amax = ax;
                max = src[j];
            }
        }
        auto* qs = reinterpret_cast<int8_t*>(block + 4);
        int16_t bsums[QK_K / 16] = {};
        float d = 0.0f;
        if (amax != 0.0f) {
            const float iscale = -127.0f / max;
            for (int j = 0; j < QK_K; ++j)
                qs[j] = int8_t(std::min(127, nearest_int(iscale * src[j])));
            for (int j = 0; j < QK_K; ++j) bsums[j / 16] = int16_t(bsums[j / 16] + qs[j]);
            d = 1.0f / iscale;
        } else {
            std::memset(qs, 0, QK_K);
        }
        std::memcpy(block, &d, 4);
        std::memcpy(block + 4 + QK_K, bsums, sizeof bsums);
    }
}

// ---- Reference dot products --------------------------------------------------------------

float vec_dot_f32(const void* row, const void* activations, int64_t n) {
    const auto* w = static_cast<const float*>(row);
    const auto* x = static_cast<const float*>(activations);
    double sum = 0.0; // ggml's reference accumulates in double too
    for (int64_t i = 0; i < n; ++i) sum += double(w[i] * x[i]);
    return float(sum);
}

float vec_dot_f16_f32(const void* row, const void* activations, int64_t n) {
    const auto* w = static_cast<const uint8_t*>(row);
    const auto* x = static_cast<const float*>(activations);
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) sum += double(load_f16(w + 2 * i) * x[i]);
    return float(sum);
}

float vec_dot_bf16(const void* row, const void* activations, int64_t n) {
    const auto* w = static_cast<const uint8_t*>(row);
    const auto* x = static_cast<const uint8_t*>(activations);
    float wv[32], xv[32];
    double sum = 0.0;
    for (int64_t i = 0; i < n; i += 32) {
        const int64_t len = std::min<int64_t>(32, n - i);
        dequantize_bf16(w + 2 * i, wv, len);
        dequantize_bf16(x + 2 * i, xv, len);
        for (int64_t j = 0; j < len; ++j) sum += double(wv[j] * xv[j]);
    }
    return float(sum);
}

// Activations are Q8_1 (d, s, qs) when the weights have a min, else Q8_0 (d, qs).
template <UnpackLegacyFn Unpack, int TypeSize, bool WithMin>
float vec_dot_legacy(const void* row, const void* activations, int64_t n) {
    constexpr int kActSize = WithMin ? 36 : 34;
    const auto* w = static_cast<const uint8_t*>(row);
    const auto* x = static_cast<const uint8_t*>(activations);
    float sum = 0.0f;
    LegacyBlock block;
    for (int64_t b = 0; b < n / QK; ++b, w += TypeSize, x += kActSize) {
        Unpack(w, block);
        const auto* xq = reinterpret_cast<const int8_t*>(x + (WithMin ? 4 : 2));
        int isum = 0;
        for (int j = 0; j < QK; ++j) isum += int(block.q[j]) * int(xq[j]);
        sum += float(isum) * (block.d * load_f16(x));
        if (WithMin) sum += block.m * load_f16(x + 2);
    }
    return sum;
}

template <UnpackKFn Unpack, int TypeSize>
float vec_dot_k(const void* row, const void* activations, int64_t n) {
    const auto* w = static_cast<const uint8_t*>(row);
    const auto* x = static_cast<const uint8_t*>(activations);
    float sum = 0.0f;
    KBlock block;
    for (int64_t b = 0; b < n / QK_K; ++b, w += TypeSize, x += kQ8KSize) {
        Unpack(w, block);
        const auto* xq = reinterpret_cast<const int8_t*>(x + 4);
        int16_t bsums[QK_K / 16];
        q8_k_sums(x, bsums);
        int isum = 0, imin = 0;
        for (int j = 0; j < QK_K / 16; ++j) {
            int sub = 0;
            for (int l = 0; l < 16; ++l) sub += int(block.q[16 * j + l]) * int(xq[16 * j + l]);
            isum += block.scale[j] * sub;
            imin += block.min[j] * bsums[j];
        }
        sum += k_block_term(q8_k_scale(x), block.d, block.dmin, isum, imin);
    }
    return sum;
}

#define WOOLLY_LEGACY_ROW(T, ts, unpack, with_min)                                                 \
    TypeTraits {                                                                                   \
        TensorType::T, #T, 32, ts, dequantize_legacy<unpack, ts, with_min>,                        \
            with_min ? TensorType::Q8_1 : TensorType::Q8_0, vec_dot_legacy<unpack, ts, with_min>,  \
            nullptr                                                                                \
    }
#define WOOLLY_K_ROW(T, ts, unpack, with_min, quantize)                                            \
    TypeTraits {                                                                                   \
        TensorType::T, #T, 256, ts, dequantize_k<unpack, ts, with_min>, TensorType::Q8_K,          \
            vec_dot_k<unpack, ts>, quantize                                                        \
    }

const TypeTraits kTypeTable[] = {
    {TensorType::F32, "F32", 1, 4, dequantize_f32, TensorType::F32, vec_dot_f32, nullptr},
    // F16 weights meet float32 activations: llama.cpp's logits on F16 files match that form
    // (the golden rows agree to 1e-12 cosine) better than activations rounded to F16.
    {TensorType::F16, "F16", 1, 2, dequantize_f16, TensorType::F32, vec_dot_f16_f32, quantize_f16},
    {TensorType::BF16, "BF16", 1, 2, dequantize_bf16, TensorType::BF16, vec_dot_bf16,
     quantize_bf16},
    {TensorType::Q4_0, "Q4_0", 32, 18, dequantize_legacy<unpack_q4_0, 18, false>, TensorType::Q8_0,
     vec_dot_legacy<unpack_q4_0, 18, false>, quantize_q4_0},
    WOOLLY_LEGACY_ROW(Q4_1, 20, unpack_q4_1, true),
    WOOLLY_LEGACY_ROW(Q5_0, 22, unpack_q5_0, false),
    WOOLLY_LEGACY_ROW(Q5_1, 24, unpack_q5_1, true),
    {TensorType::Q8_0, "Q8_0", 32, 34, dequantize_legacy<unpack_q8_0, 34, false>, TensorType::Q8_0,
     vec_dot_legacy<unpack_q8_0, 34, false>, quantize_q8<false>},
    WOOLLY_K_ROW(Q2_K, 84, unpack_q2_k, true, nullptr),
    WOOLLY_K_ROW(Q3_K, 110, unpack_q3_k, false, nullptr),
    WOOLLY_K_ROW(Q4_K, 144, unpack_q45_k<false>, true, quantize_q4_k),
    WOOLLY_K_ROW(Q5_K, 176, unpack_q45_k<true>, true, nullptr),
    WOOLLY_K_ROW(Q6_K, 210, unpack_q6_k, false, quantize_q6_k),
    WOOLLY_LEGACY_ROW(IQ4_NL, 18, unpack_iq4_nl, false),
    WOOLLY_K_ROW(IQ4_XS, 136, unpack_iq4_xs, false, quantize_iq4_xs),
    // Activation-only formats: Woolly quantizes into them but holds no weights in them.
    {TensorType::Q8_1, "Q8_1", 32, 36, nullptr, TensorType::Q8_1, nullptr, quantize_q8<true>},
    {TensorType::Q8_K, "Q8_K", 256, kQ8KSize, nullptr, TensorType::Q8_K, nullptr, quantize_q8_k},
    // Types a GGUF file may hold that Woolly reads and prints but does not compute with.
    {TensorType::I8, "I8", 1, 1, nullptr, TensorType::I8, nullptr, nullptr},
    {TensorType::I16, "I16", 1, 2, nullptr, TensorType::I16, nullptr, nullptr},
    {TensorType::I32, "I32", 1, 4, nullptr, TensorType::I32, nullptr, nullptr},
    {TensorType::I64, "I64", 1, 8, nullptr, TensorType::I64, nullptr, nullptr},
    {TensorType::F64, "F64", 1, 8, nullptr, TensorType::F64, nullptr, nullptr},
};

#undef WOOLLY_LEGACY_ROW
#undef WOOLLY_K_ROW

} // namespace

const TypeTraits* find_type_traits(uint32_t type_id) {
    for (const auto& row : kTypeTable)
        if (uint32_t(row.type) == type_id) return &row;
    return nullptr;
}

const TypeTraits& type_traits(TensorType type) {
    return *find_type_traits(uint32_t(type));
}

std::optional<TensorType> type_from_name(std::string_view name) {
    for (const auto& row : kTypeTable) {
        const std::string_view row_name = row.name;
        if (row_name.size() != name.size()) continue;
        bool same = true;
        for (size_t i = 0; i < name.size() && same; ++i)
            same = std::toupper(static_cast<unsigned char>(name[i])) == row_name[i];
        if (same) return row.type;
    }
    return std::nullopt;
}

std::optional<uint64_t> row_bytes(const TypeTraits& traits, uint64_t n) {
    if (n % traits.block_size != 0) return std::nullopt;
    const uint64_t blocks = n / traits.block_size;
    if (blocks > UINT64_MAX / traits.type_size) return std::nullopt;
    return blocks * traits.type_size;
}

} // namespace woolly
