// x86/avx2.cpp — AVX2 + FMA + F16C kernels; references: the scalar kernels in quant/tensor_types.cpp.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "engine/quant/k_quants.h"
#include "engine/kernels/kernels.h"

namespace woolly::avx2 {
namespace {

float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

float load_f16(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

} // namespace

float vec_dot_f32(const void* row, const void* activations, int64_t n) {
    const auto* w = static_cast<const float*>(row);
    const auto* x = static_cast<const float*>(activations);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int k = 0; k < 4; ++k)
            acc[k] = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8 * k), _mm256_loadu_ps(x + i + 8 * k),
                                     acc[k]);
    for (; i + 8 <= n; i += 8)
        acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), acc[0]);
    float sum = hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
    for (; i < n; ++i) sum += w[i] * x[i];
    return sum;
}

// F16 weights, float32 activations: F16C widens 8 halves at a time.
float vec_dot_f16_f32(const void* row, const void* activations, int64_t n) {
    const auto* w = static_cast<const uint16_t*>(row);
    const auto* x = static_cast<const float*>(activations);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int k = 0; k < 4; ++k) {
            const __m256 wv =
                _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + i + 8 * k)));
            acc[k] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + i + 8 * k), acc[k]);
        }
    for (; i + 8 <= n; i += 8) {
        const __m256 wv = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + i)));
        acc[0] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + i), acc[0]);
    }
    float sum = hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
    for (; i < n; ++i) sum += _cvtsh_ss(w[i]) * x[i];
    return sum;
}

namespace {

// Q4_0 {f16 d; u8 qs[16]}: low nibbles are values 0..15, high nibbles 16..31, minus 8.
inline __m256i unpack_q4_0(const uint8_t* w) {
    const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 2));
    const __m256i both = _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed);
    return _mm256_sub_epi8(_mm256_and_si256(both, _mm256_set1_epi8(0x0f)), _mm256_set1_epi8(8));
}

inline __m256i load_q8_0(const uint8_t* w) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 2));
}

// M activation vectors (Q8_0 blocks {f16 d; i8 qs[32]}, `stride` bytes apart) against one row:
// each weight block is unpacked once for all M. Per vector the blocks are added in order into
// one accumulator, whatever M is, so a batch gives the same bits as one vector at a time.
template <int WeightBlockBytes, __m256i (*Unpack)(const uint8_t*), int M>
void dot_q8_0_m(const uint8_t* w, const uint8_t* x, uint64_t stride, int64_t n, float* out,
                int64_t out_stride) {
    __m256 acc[M];
    for (int k = 0; k < M; ++k) acc[k] = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t b = 0; b < n / 32; ++b) {
        const uint8_t* wb = w + b * WeightBlockBytes;
        const __m256i qw = Unpack(wb);
        const __m256i abs_w = _mm256_sign_epi8(qw, qw); // maddubs wants an unsigned operand
        const float dw = load_f16(wb);
        for (int k = 0; k < M; ++k) {
            const uint8_t* xb = x + uint64_t(k) * stride + uint64_t(b) * 34;
            const __m256i qx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb + 2));
            const __m256i pairs = _mm256_maddubs_epi16(abs_w, _mm256_sign_epi8(qx, qw));
            const __m256 sums = _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, ones));
            acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(dw * load_f16(xb)), sums, acc[k]);
        }
    }
    for (int k = 0; k < M; ++k) out[k * out_stride] = hsum(acc[k]);
}

template <int WeightBlockBytes, __m256i (*Unpack)(const uint8_t*)>
void dot_rows_q8_0(const void* row, const uint8_t* x, uint64_t stride, int64_t count, int64_t n,
                   float* out, int64_t out_stride) {
    const auto* w = static_cast<const uint8_t*>(row);
    int64_t v = 0;
    for (; v + 4 <= count; v += 4)
        dot_q8_0_m<WeightBlockBytes, Unpack, 4>(w, x + uint64_t(v) * stride, stride, n,
                                                out + v * out_stride, out_stride);
    for (; v < count; ++v)
        dot_q8_0_m<WeightBlockBytes, Unpack, 1>(w, x + uint64_t(v) * stride, stride, n,
                                                out + v * out_stride, out_stride);
}

} // namespace

float vec_dot_q8_0_q8_0(const void* row, const void* activations, int64_t n) {
    float out;
    dot_q8_0_m<34, load_q8_0, 1>(static_cast<const uint8_t*>(row),
                                 static_cast<const uint8_t*>(activations), 0, n, &out, 0);
    return out;
}

float vec_dot_q4_0_q8_0(const void* row, const void* activations, int64_t n) {
    float out;
    dot_q8_0_m<18, unpack_q4_0, 1>(static_cast<const uint8_t*>(row),
                                   static_cast<const uint8_t*>(activations), 0, n, &out, 0);
    return out;
}

void vec_dot_rows_q8_0_q8_0(const void* row, const uint8_t* x, uint64_t stride, int64_t count,
                            int64_t n, float* out, int64_t out_stride) {
    dot_rows_q8_0<34, load_q8_0>(row, x, stride, count, n, out, out_stride);
}

void vec_dot_rows_q4_0_q8_0(const void* row, const uint8_t* x, uint64_t stride, int64_t count,
                            int64_t n, float* out, int64_t out_stride) {
    dot_rows_q8_0<18, unpack_q4_0>(row, x, stride, count, n, out, out_stride);
}

// Same arithmetic as the reference (amax, 127/amax, round half to even), so the bytes match.
void quantize_row_q8_0(const float* src, void* dst, int64_t n) {
    auto* block = static_cast<uint8_t*>(dst);
    const __m256 sign_bit = _mm256_set1_ps(-0.0f);
    for (int64_t b = 0; b < n / 32; ++b, src += 32, block += 34) {
        __m256 v[4];
        __m256 amax = _mm256_setzero_ps();
        for (int k = 0; k < 4; ++k) {
            v[k] = _mm256_loadu_ps(src + 8 * k);
            amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign_bit, v[k]));
        }
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        const float max_abs = _mm_cvtss_f32(m);
        const float d = max_abs / 127.0f;
        const __m256 id = _mm256_set1_ps(max_abs != 0.0f ? 127.0f / max_abs : 0.0f);
        __m256i q[4];
        for (int k = 0; k < 4; ++k)
            q[k] = _mm256_cvtps_epi32(_mm256_round_ps(
                _mm256_mul_ps(v[k], id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        // Pack 32 int32 -> 32 int8; packs interleave 128-bit lanes, the permute undoes it.
        const __m256i q01 = _mm256_packs_epi32(q[0], q[1]);
        const __m256i q23 = _mm256_packs_epi32(q[2], q[3]);
        __m256i bytes = _mm256_packs_epi16(q01, q23);
        bytes = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        const uint16_t h = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
        std::memcpy(block, &h, 2);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(block + 2), bytes);
    }
}

// F16C: exact conversion, 8 values at a time.
void f16_to_f32_row(const void* src, float* dst, int64_t n) {
    const auto* h = static_cast<const uint16_t*>(src);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i,
                         _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i))));
    for (; i < n; ++i) dst[i] = _cvtsh_ss(h[i]);
}

// F16C, round to nearest even: the reference's bytes (infinities, NaNs and subnormals too).
void quantize_row_f16(const float* src, void* dst, int64_t n) {
    auto* h = static_cast<uint16_t*>(dst);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128(reinterpret_cast<__m128i*>(h + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; ++i) h[i] = _cvtss_sh(src[i], _MM_FROUND_TO_NEAREST_INT);
}

namespace {

// As avx512's gemm_f32_tile, 8 columns a vector: R rows x V vectors (`mask` lanes set for the
// columns each vector covers), every element's k products in order with fused multiply-adds.
template <int R, int V>
void gemm_f32_tile(int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
                   int64_t ldc, bool accumulate, const __m256i* mask) {
    __m256 acc[R][V];
    for (int r = 0; r < R; ++r)
        for (int v = 0; v < V; ++v)
            acc[r][v] =
                accumulate ? _mm256_maskload_ps(c + r * ldc + 8 * v, mask[v]) : _mm256_setzero_ps();
    for (int64_t l = 0; l < k; ++l) {
        __m256 bv[V];
        for (int v = 0; v < V; ++v) bv[v] = _mm256_maskload_ps(b + l * ldb + 8 * v, mask[v]);
        for (int r = 0; r < R; ++r) {
            const __m256 av = _mm256_broadcast_ss(a + r * lda + l);
            for (int v = 0; v < V; ++v) acc[r][v] = _mm256_fmadd_ps(av, bv[v], acc[r][v]);
        }
    }
    for (int r = 0; r < R; ++r)
        for (int v = 0; v < V; ++v) _mm256_maskstore_ps(c + r * ldc + 8 * v, mask[v], acc[r][v]);
}

using GemmF32Tile = void (*)(int64_t, const float*, int64_t, const float*, int64_t, float*, int64_t,
                             bool, const __m256i*);
template <int R> constexpr GemmF32Tile kGemmF32Row[2] = {gemm_f32_tile<R, 1>, gemm_f32_tile<R, 2>};
// [rows - 1][vectors - 1]: tiles of up to 4 rows x 16 columns (8 of the 16 registers).
constexpr const GemmF32Tile* kGemmF32Tiles[4] = {kGemmF32Row<1>, kGemmF32Row<2>, kGemmF32Row<3>,
                                                 kGemmF32Row<4>};

} // namespace

void gemm_f32(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
              int64_t ldb, float* c, int64_t ldc, bool accumulate) {
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int64_t j = 0; j < n; j += 16) {
        const int64_t cols = std::min<int64_t>(16, n - j);
        // A lane is loaded and stored where its column is below cols (its sign bit set).
        const __m256i mask[2] = {_mm256_cmpgt_epi32(_mm256_set1_epi32(int(cols)), lanes),
                                 _mm256_cmpgt_epi32(_mm256_set1_epi32(int(cols) - 8), lanes)};
        const int64_t vectors = (cols + 7) / 8;
        for (int64_t i = 0; i < m; i += 4) {
            const int64_t rows = std::min<int64_t>(4, m - i);
            kGemmF32Tiles[rows - 1][vectors - 1](k, a + i * lda, lda, b + j, ldb, c + i * ldc + j,
                                                 ldc, accumulate, mask);
        }
    }
}

// ---- k-quant rows against Q8_K {f32 d; i8 qs[256]; i16 bsums[16]} ----
// The integer sums of a super-block are exact (unsigned weights times signed activations in
// 16-bit pairs, then by the sub-block scales in 32 bits), and the float steps are the
// reference's, in its order: the reference's bits.

namespace {

int32_t hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

// The scales of two 16-value sub-blocks, one per 128-bit half, as 16-bit lanes.
__m256i two_scales(int first, int second) {
    return _mm256_setr_m128i(_mm_set1_epi16(int16_t(first)), _mm_set1_epi16(int16_t(second)));
}

} // namespace

float vec_dot_q4_k_q8_k(const void* row, const void* activations, int64_t n) {
    const auto* w = static_cast<const uint8_t*>(row);
    const auto* x = static_cast<const uint8_t*>(activations);
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    float sum = 0.0f;
    for (int64_t b = 0; b < n / 256; ++b, w += 144, x += kQ8KBlockBytes) {
        uint8_t scale[8], min[8];
        for (int j = 0; j < 8; ++j) get_scale_min_k4(j, w + 4, &scale[j], &min[j]);
        const uint8_t* xq = x + 4;
        __m256i acc = _mm256_setzero_si256();
        for (int c = 0; c < 4; ++c) { // sub-blocks 2c (low nibbles) and 2c + 1 (high)
            const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 16 + 32 * c));
            const __m256i low = _mm256_and_si256(q, low4);
            const __m256i high = _mm256_and_si256(_mm256_srli_epi16(q, 4), low4);
            const __m256i p_low = _mm256_maddubs_epi16(
                low, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + 64 * c)));
            const __m256i p_high = _mm256_maddubs_epi16(
                high, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + 64 * c + 32)));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p_low, _mm256_set1_epi16(scale[2 * c])));
            acc = _mm256_add_epi32(acc,
                                   _mm256_madd_epi16(p_high, _mm256_set1_epi16(scale[2 * c + 1])));
        }
        sum += k_block_term(q8_k_scale(x), load_f16(w), load_f16(w + 2), hsum_epi32(acc),
                            q4_k_min_sum(min, x));
    }
    return sum;
}

float vec_dot_q6_k_q8_k(const void* row, const void* activations, int64_t n) {
    const auto* w = static_cast<const uint8_t*>(row);
    const auto* x = static_cast<const uint8_t*>(activations);
    const __m256i low4 = _mm256_set1_epi8(0x0f), two_bits = _mm256_set1_epi8(0x03),
                  bits_45 = _mm256_set1_epi8(0x30);
    float sum = 0.0f;
    for (int64_t b = 0; b < n / 256; ++b, w += 210, x += kQ8KBlockBytes) {
        const auto* scale = reinterpret_cast<const int8_t*>(w + 192);
        __m256i acc = _mm256_setzero_si256();
        for (int h = 0; h < 2; ++h) { // 128 values from ql[64h..], qh[32h..]
            const uint8_t* ql = w + 64 * h;
            const __m256i q0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql));
            const __m256i q1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + 32));
            const __m256i qh =
                _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 128 + 32 * h));
            // The stored 6-bit values (value + 32) of columns 0-31, 32-63, 64-95, 96-127.
            const __m256i u[4] = {
                _mm256_or_si256(_mm256_and_si256(q0, low4),
                                _mm256_slli_epi16(_mm256_and_si256(qh, two_bits), 4)),
                _mm256_or_si256(
                    _mm256_and_si256(q1, low4),
                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), two_bits), 4)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q0, 4), low4),
                                _mm256_and_si256(qh, bits_45)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q1, 4), low4),
                                _mm256_and_si256(_mm256_srli_epi16(qh, 2), bits_45))};
            for (int k = 0; k < 4; ++k) {
                const __m256i p = _mm256_maddubs_epi16(
                    u[k],
                    _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 4 + 128 * h + 32 * k)));
                const int j = 8 * h + 2 * k; // the sub-blocks of 16 these 32 values span
                acc =
                    _mm256_add_epi32(acc, _mm256_madd_epi16(p, two_scales(scale[j], scale[j + 1])));
            }
        }
        // The stored values are value + 32: take 32 x each sub-block's activation sum back.
        const int32_t isum = hsum_epi32(acc) - 32 * q6_k_scale_sum(scale, x);
        sum += k_block_term(q8_k_scale(x), load_f16(w + 208), 0.0f, isum, 0); // no mins
    }
    return sum;
}

// IQ4_XS: each nibble picks one of the 16 IQ4 values (a byte shuffle); signed x signed bytes
// multiply as |q| x (x with q's sign). Sums of pairs stay within int16 (2 x 127 x 127), and
// every sub-block's integer sum times its scale is exact, so the reference's bits come out.
float vec_dot_iq4_xs_q8_k(const void* row, const void* activations, int64_t n) {
    const auto* w = static_cast<const uint8_t*>(row);
    const auto* x = static_cast<const uint8_t*>(activations);
    const __m256i values = _mm256_broadcastsi128_si256(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4nlValues)));
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    float sum = 0.0f;
    for (int64_t b = 0; b < n / 256; ++b, w += sizeof(Iq4XsBlock), x += kQ8KBlockBytes) {
        Iq4XsBlock block;
        std::memcpy(&block, w, sizeof block);
        __m256i acc = _mm256_setzero_si256();
        for (int pair = 0; pair < 4; ++pair) { // sub-blocks 2 pair and 2 pair + 1
            const __m256i qs =
                _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block.qs + 32 * pair));
            const __m256i lo = _mm256_and_si256(qs, low4);
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(qs, 4), low4);
            // Each sub-block's 32 values in order: its 16 low nibbles, then its 16 high ones.
            const __m256i q[2] = {
                _mm256_shuffle_epi8(values, _mm256_permute2x128_si256(lo, hi, 0x20)),
                _mm256_shuffle_epi8(values, _mm256_permute2x128_si256(lo, hi, 0x31))};
            for (int k = 0; k < 2; ++k) {
                const __m256i xv = _mm256_loadu_si256(
                    reinterpret_cast<const __m256i*>(x + 4 + 64 * pair + 32 * k));
                const __m256i p =
                    _mm256_maddubs_epi16(_mm256_sign_epi8(q[k], q[k]), _mm256_sign_epi8(xv, q[k]));
                acc = _mm256_add_epi32(
                    acc, _mm256_madd_epi16(
                             p, _mm256_set1_epi16(int16_t(iq4_xs_scale(block, 2 * pair + k)))));
            }
        }
        sum += k_block_term(q8_k_scale(x), _cvtsh_ss(block.d), 0.0f, hsum_epi32(acc), 0);
    }
    return sum;
}

} // namespace woolly::avx2
