// x86/avx512.cpp — AVX-512 (F, BW, VL) + VNNI kernels over the x16 layouts of quant/repack.h;
// references: gemm_x16_*_reference in quant/repack.cpp (and through them the row kernels).
// GCC 12's AVX-512 headers start some conversions from a self-initialised "undefined"
// register, which -W(maybe-)uninitialized reports once inlined here (GCC bug 105593).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "engine/quant/k_quants.h"
#include "engine/kernels/kernels.h"
#include "engine/quant/repack.h"

namespace woolly::avx512 {
namespace {

// Registers 2j and 2j+1 of a block of 16 rows (columns 8j..8j+7): lane i of each holds four
// of row i's columns, as unsigned bytes.
inline void load_pair_q4_0(const uint8_t* block, int j, __m512i& even, __m512i& odd) {
    const __m512i low4 = _mm512_set1_epi8(0x0f);
    const __m512i v = _mm512_loadu_si512(block + 32 + 64 * j);
    even = _mm512_and_si512(v, low4);
    odd = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
}

inline void load_pair_q8_0(const uint8_t* block, int j, __m512i& even, __m512i& odd) {
    even = _mm512_loadu_si512(block + 32 + 128 * j);
    odd = _mm512_loadu_si512(block + 32 + 128 * j + 64);
}

// Asks for the cache lines that start within [p, p + bytes) to be brought into L2: called for
// consecutive ranges of a stream, it asks for every line once (blocks are not whole lines).
inline void prefetch_lines(const uint8_t* p, uint64_t bytes) {
    const uintptr_t begin = reinterpret_cast<uintptr_t>(p);
    for (uintptr_t line = (begin + 63) & ~uintptr_t(63); line < begin + bytes; line += 64)
        _mm_prefetch(reinterpret_cast<const char*>(line), _MM_HINT_T1);
}

// One 32-bit activation group broadcast to all 16 lanes, straight from memory (a load-port
// broadcast, leaving the vector ports to the dot products).
inline __m512i broadcast32(const uint8_t* p) {
    return _mm512_broadcastd_epi32(_mm_loadu_si32(p));
}

// M activation vectors against G adjacent groups of 16 rows (group_bytes apart): a register
// tile of G x M accumulators, each broadcast activation feeding G dot products. Per row and
// vector the blocks are added in order, each as float(isum) * (d_w * d_x) with a separate
// multiply and add (no FMA): the row reference's arithmetic exactly, so any tile gives the
// reference's bits.
template <void (*LoadPair)(const uint8_t*, int, __m512i&, __m512i&), int Offset, int TypeSize,
          int G, int M>
void gemm_tile(const uint8_t* group, uint64_t group_bytes, int64_t n_blocks, const uint8_t* x,
               uint64_t x_stride, float* y, int64_t y_stride, bool prefetch) {
    constexpr uint64_t kGroupBlock = kRepackRows * TypeSize;
    __m512 acc[G][M];
    for (int g = 0; g < G; ++g)
        for (int m = 0; m < M; ++m) acc[g][m] = _mm512_setzero_ps();
    for (int64_t b = 0; b < n_blocks; ++b) {
        const uint8_t* block[G];
        for (int g = 0; g < G; ++g) block[g] = group + g * group_bytes + uint64_t(b) * kGroupBlock;
        // The stream runs ahead of the hardware prefetcher: ask for the block 2 KiB on (the
        // next group's first blocks, past the end of this one, are what comes next anyway).
        for (int g = 0; g < G && prefetch; ++g) prefetch_lines(block[g] + 2048, kGroupBlock);
        const uint8_t* xb[M];
        for (int m = 0; m < M; ++m)
            xb[m] = x + uint64_t(m) * x_stride + uint64_t(b) * kQ8SumBlockBytes;
        // Each sum starts from the correction -Offset * sum(x) for the weights' unsigned storage.
        __m512i isum[G][M];
        for (int m = 0; m < M; ++m) {
            const __m512i correction = broadcast32(xb[m] + q8_sum_correction_offset(Offset));
            for (int g = 0; g < G; ++g) isum[g][m] = correction;
        }
        for (int j = 0; j < 4; ++j) {
            __m512i even[G], odd[G];
            for (int g = 0; g < G; ++g) LoadPair(block[g], j, even[g], odd[g]);
            for (int m = 0; m < M; ++m) {
                const uint8_t* xq = xb[m] + kQ8SumQsOffset + 8 * j;
                const __m512i x_even = broadcast32(xq), x_odd = broadcast32(xq + 4);
                for (int g = 0; g < G; ++g) {
                    isum[g][m] = _mm512_dpbusd_epi32(isum[g][m], even[g], x_even);
                    isum[g][m] = _mm512_dpbusd_epi32(isum[g][m], odd[g], x_odd);
                }
            }
        }
        for (int g = 0; g < G; ++g) {
            const __m512 dw =
                _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(block[g])));
            for (int m = 0; m < M; ++m) {
                float dx;
                std::memcpy(&dx, xb[m], 4);
                const __m512 scale = _mm512_mul_ps(dw, _mm512_set1_ps(dx));
                acc[g][m] =
                    _mm512_add_ps(acc[g][m], _mm512_mul_ps(_mm512_cvtepi32_ps(isum[g][m]), scale));
            }
        }
    }
    for (int g = 0; g < G; ++g)
        for (int m = 0; m < M; ++m) _mm512_storeu_ps(y + m * y_stride + g * kRepackRows, acc[g][m]);
}

template <void (*LoadPair)(const uint8_t*, int, __m512i&, __m512i&), int Offset, int TypeSize>
void gemm_x16(const uint8_t* groups, int64_t n_groups, int64_t n_blocks, const uint8_t* x,
              uint64_t x_stride, int64_t count, float* y, int64_t y_stride) {
    // Vectors per tile: 7 measured fastest of 4..8 (pp128, tinyllama Q4_0/Q8_0). The 2 x 7
    // accumulators spill, but they are touched once per block; the 2 x 7 sums are not.
    constexpr int kTile = 7;
    static_assert(kTile <= 4 + 2 + 1 + 1, "the remainder tiles below cover kTile - 1 vectors");
    const uint64_t group_bytes = uint64_t(n_blocks) * kRepackRows * TypeSize;
    // Only the first tile of vectors prefetches: it brings the groups in from memory, the
    // others find them in L2.
    auto tiles = [&](auto group_count) {
        constexpr int G = decltype(group_count)::value;
        int64_t m = 0;
        auto tile = [&](auto tile_size) {
            constexpr int T = decltype(tile_size)::value;
            gemm_tile<LoadPair, Offset, TypeSize, G, T>(groups, group_bytes, n_blocks,
                                                        x + uint64_t(m) * x_stride, x_stride,
                                                        y + m * y_stride, y_stride, m == 0);
            m += T;
        };
        while (count - m >= kTile) tile(std::integral_constant<int, kTile>{});
        if (count - m >= 4) tile(std::integral_constant<int, 4>{}); // then at most 3 are left
        if (count - m >= 2) tile(std::integral_constant<int, 2>{});
        if (count - m >= 1) tile(std::integral_constant<int, 1>{});
        groups += G * group_bytes;
        y += G * kRepackRows;
    };
    for (int64_t g = 0; g + 2 <= n_groups; g += 2) tiles(std::integral_constant<int, 2>{});
    if (n_groups % 2 == 1) tiles(std::integral_constant<int, 1>{});
}

// k_block_term (k_quants.h) in 16 lanes, one per row: the same steps, so the same bits.
inline __m512 k_block_terms(float xd, __m512 d, __m512 dmin, __m512i isum, __m512i imin) {
    const __m512 dx = _mm512_set1_ps(xd);
    return _mm512_sub_ps(_mm512_mul_ps(_mm512_mul_ps(dx, d), _mm512_cvtepi32_ps(isum)),
                         _mm512_mul_ps(_mm512_mul_ps(dx, dmin), _mm512_cvtepi32_ps(imin)));
}

// M Q8_K activation vectors against one Q4_K group (repack.h). Per super-block: each
// sub-block's 32 products are summed by dot products over the nibbles and scaled by the row's
// 6-bit scale in integers; the mins are weighted by the activations' sub-block sums (16-bit
// pairs); then the row reference's float steps, in its order: its bits.
template <int M>
void gemm_tile_q4_k(const uint8_t* group, int64_t n_blocks, const uint8_t* x, uint64_t x_stride,
                    float* y, int64_t y_stride, bool prefetch) {
    const __m512i low4 = _mm512_set1_epi8(0x0f);
    __m512 acc[M];
    for (int m = 0; m < M; ++m) acc[m] = _mm512_setzero_ps();
    for (int64_t b = 0; b < n_blocks; ++b) {
        const uint8_t* w = group + uint64_t(b) * kQ4KGroupBlockBytes;
        if (prefetch) prefetch_lines(w + 2 * kQ4KGroupBlockBytes, kQ4KGroupBlockBytes);
        const uint8_t* xq[M];
        __m512i isum[M], imin[M];
        for (int m = 0; m < M; ++m) {
            const uint8_t* xb = x + uint64_t(m) * x_stride + uint64_t(b) * kQ8KBlockBytes;
            xq[m] = xb + 4;
            // The activations' sub-block sums as 16-bit pairs: element p holds 2p and 2p + 1.
            alignas(16) uint32_t pair_sums[4];
            const __m256i bsums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb + 260));
            _mm_store_si128(reinterpret_cast<__m128i*>(pair_sums),
                            _mm256_cvtepi32_epi16(_mm256_madd_epi16(bsums, _mm256_set1_epi16(1))));
            imin[m] = _mm512_setzero_si512();
            for (int p = 0; p < 4; ++p) {
                const __m512i mins = _mm512_cvtepu8_epi16(
                    _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 192 + 32 * p)));
                imin[m] = _mm512_dpwssd_epi32(imin[m], mins, _mm512_set1_epi32(int(pair_sums[p])));
            }
            isum[m] = _mm512_setzero_si512();
        }
        for (int p = 0; p < 4; ++p) { // sub-blocks 2p (low nibbles) and 2p + 1 (high)
            __m512i low_sum[M], high_sum[M];
            for (int m = 0; m < M; ++m) low_sum[m] = high_sum[m] = _mm512_setzero_si512();
            for (int k = 0; k < 8; ++k) {
                const __m512i v = _mm512_loadu_si512(w + 320 + 512 * p + 64 * k);
                const __m512i low = _mm512_and_si512(v, low4);
                const __m512i high = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
                for (int m = 0; m < M; ++m) {
                    low_sum[m] =
                        _mm512_dpbusd_epi32(low_sum[m], low, broadcast32(xq[m] + 64 * p + 4 * k));
                    high_sum[m] = _mm512_dpbusd_epi32(high_sum[m], high,
                                                      broadcast32(xq[m] + 64 * p + 32 + 4 * k));
                }
            }
            const __m512i scale_low = _mm512_cvtepu8_epi32(
                _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 64 + 32 * p)));
            const __m512i scale_high = _mm512_cvtepu8_epi32(
                _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 64 + 32 * p + 16)));
            for (int m = 0; m < M; ++m)
                isum[m] = _mm512_add_epi32(
                    isum[m], _mm512_add_epi32(_mm512_mullo_epi32(low_sum[m], scale_low),
                                              _mm512_mullo_epi32(high_sum[m], scale_high)));
        }
        const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w)));
        const __m512 dmin =
            _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 32)));
        for (int m = 0; m < M; ++m)
            acc[m] = _mm512_add_ps(acc[m],
                                   k_block_terms(q8_k_scale(xq[m] - 4), d, dmin, isum[m], imin[m]));
    }
    for (int m = 0; m < M; ++m) _mm512_storeu_ps(y + m * y_stride, acc[m]);
}

// M Q8_K activation vectors against one Q6_K group (repack.h): each 16-value sub-block's sum
// starts from -32 x its activation sum (the values are stored plus 32), takes its products by
// dot products over whole bytes, and is scaled by the row's 8-bit scale in integers; then the
// row reference's float steps, in its order (its min term is zero): its bits.
template <int M>
void gemm_tile_q6_k(const uint8_t* group, int64_t n_blocks, const uint8_t* x, uint64_t x_stride,
                    float* y, int64_t y_stride, bool prefetch) {
    __m512 acc[M];
    for (int m = 0; m < M; ++m) acc[m] = _mm512_setzero_ps();
    for (int64_t b = 0; b < n_blocks; ++b) {
        const uint8_t* w = group + uint64_t(b) * kQ6KGroupBlockBytes;
        if (prefetch) prefetch_lines(w + 2 * kQ6KGroupBlockBytes, kQ6KGroupBlockBytes);
        const uint8_t* xq[M];
        alignas(64) int32_t offset[M][16]; // -32 x each sub-block's activation sum
        __m512i isum[M];
        for (int m = 0; m < M; ++m) {
            const uint8_t* xb = x + uint64_t(m) * x_stride + uint64_t(b) * kQ8KBlockBytes;
            xq[m] = xb + 4;
            const __m512i bsums = _mm512_cvtepi16_epi32(
                _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb + 260)));
            _mm512_store_si512(offset[m], _mm512_mullo_epi32(bsums, _mm512_set1_epi32(-32)));
            isum[m] = _mm512_setzero_si512();
        }
        for (int j = 0; j < 16; ++j) {
            __m512i sub[M];
            for (int m = 0; m < M; ++m) sub[m] = _mm512_set1_epi32(offset[m][j]);
            for (int k = 4 * j; k < 4 * j + 4; ++k) {
                const __m512i v = _mm512_loadu_si512(w + 288 + 64 * k);
                for (int m = 0; m < M; ++m)
                    sub[m] = _mm512_dpbusd_epi32(sub[m], v, broadcast32(xq[m] + 4 * k));
            }
            const __m512i scale = _mm512_cvtepi8_epi32(
                _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 32 + 16 * j)));
            for (int m = 0; m < M; ++m)
                isum[m] = _mm512_add_epi32(isum[m], _mm512_mullo_epi32(sub[m], scale));
        }
        const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w)));
        for (int m = 0; m < M; ++m) // no mins
            acc[m] =
                _mm512_add_ps(acc[m], k_block_terms(q8_k_scale(xq[m] - 4), d, _mm512_setzero_ps(),
                                                    isum[m], _mm512_setzero_si512()));
    }
    for (int m = 0; m < M; ++m) _mm512_storeu_ps(y + m * y_stride, acc[m]);
}

// Groups one by one through tiles of 4 vectors (then 2, 1); only a group's first tile
// prefetches (the others find it in L2).
template <void (*Tile4)(const uint8_t*, int64_t, const uint8_t*, uint64_t, float*, int64_t, bool),
          void (*Tile2)(const uint8_t*, int64_t, const uint8_t*, uint64_t, float*, int64_t, bool),
          void (*Tile1)(const uint8_t*, int64_t, const uint8_t*, uint64_t, float*, int64_t, bool),
          uint64_t GroupBlockBytes>
void gemm_x16_k(const uint8_t* groups, int64_t n_groups, int64_t n_blocks, const uint8_t* x,
                uint64_t x_stride, int64_t count, float* y, int64_t y_stride) {
    for (int64_t g = 0; g < n_groups; ++g, y += kRepackRows) {
        const uint8_t* group = groups + uint64_t(g) * uint64_t(n_blocks) * GroupBlockBytes;
        int64_t m = 0;
        for (; m + 4 <= count; m += 4)
            Tile4(group, n_blocks, x + uint64_t(m) * x_stride, x_stride, y + m * y_stride, y_stride,
                  m == 0);
        if (count - m >= 2) {
            Tile2(group, n_blocks, x + uint64_t(m) * x_stride, x_stride, y + m * y_stride, y_stride,
                  m == 0);
            m += 2;
        }
        if (count - m >= 1)
            Tile1(group, n_blocks, x + uint64_t(m) * x_stride, x_stride, y + m * y_stride, y_stride,
                  m == 0);
    }
}

} // namespace

void gemm_x16_q4_0(const uint8_t* groups, int64_t n_groups, int64_t n_blocks, const uint8_t* x,
                   uint64_t x_stride, int64_t count, float* y, int64_t y_stride) {
    gemm_x16<load_pair_q4_0, 8, 18>(groups, n_groups, n_blocks, x, x_stride, count, y, y_stride);
}

void gemm_x16_q4_k(const uint8_t* groups, int64_t n_groups, int64_t n_blocks, const uint8_t* x,
                   uint64_t x_stride, int64_t count, float* y, int64_t y_stride) {
    gemm_x16_k<gemm_tile_q4_k<4>, gemm_tile_q4_k<2>, gemm_tile_q4_k<1>, kQ4KGroupBlockBytes>(
        groups, n_groups, n_blocks, x, x_stride, count, y, y_stride);
}

void gemm_x16_q6_k(const uint8_t* groups, int64_t n_groups, int64_t n_blocks, const uint8_t* x,
                   uint64_t x_stride, int64_t count, float* y, int64_t y_stride) {
    gemm_x16_k<gemm_tile_q6_k<4>, gemm_tile_q6_k<2>, gemm_tile_q6_k<1>, kQ6KGroupBlockBytes>(
        groups, n_groups, n_blocks, x, x_stride, count, y, y_stride);
}

void gemm_x16_q8_0(const uint8_t* groups, int64_t n_groups, int64_t n_blocks, const uint8_t* x,
                   uint64_t x_stride, int64_t count, float* y, int64_t y_stride) {
    gemm_x16<load_pair_q8_0, 128, 34>(groups, n_groups, n_blocks, x, x_stride, count, y, y_stride);
}

} // namespace woolly::avx512

// ---- k-quant rows against Q8_K activations {f32 d; i8 qs[256]; i16 bsums[16]} ----
// Integer sums per super-block are exact, as in the row reference; they are scaled and added
// in float lanes (no horizontal sum per block), so only the order of float additions differs.

namespace woolly::avx512 {
namespace {

inline float f16_at(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

// Two 32-byte pieces of memory as one 512-bit register.
inline __m512i load_2x256(const uint8_t* lo, const uint8_t* hi) {
    return _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(lo))),
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(hi)), 1);
}

// 32 int16 lanes: lane i holds scale[first + i / 16 * step] (for 16-lane halves).
inline __m512i spread_scales(__m512i scales16, int first, int step) {
    const __m512i index = _mm512_set_epi16(
        first + step, first + step, first + step, first + step, first + step, first + step,
        first + step, first + step, first + step, first + step, first + step, first + step,
        first + step, first + step, first + step, first + step, first, first, first, first, first,
        first, first, first, first, first, first, first, first, first, first, first);
    return _mm512_permutexvar_epi16(index, scales16);
}

} // namespace

using DotManyFn = void (*)(const uint8_t* w, const uint8_t* x, uint64_t stride, int64_t n,
                           float* out, int64_t out_stride);

// One row against `count` vectors: four at a time through Four, the rest one by one.
template <DotManyFn Four, DotManyFn One>
void rows_by_four(const void* row, const uint8_t* x, uint64_t stride, int64_t count, int64_t n,
                  float* out, int64_t out_stride) {
    const auto* w = static_cast<const uint8_t*>(row);
    int64_t v = 0;
    for (; v + 4 <= count; v += 4)
        Four(w, x + uint64_t(v) * stride, stride, n, out + v * out_stride, out_stride);
    for (; v < count; ++v) One(w, x + uint64_t(v) * stride, 0, n, out + v * out_stride, 0);
}

// Q4_K {f16 d; f16 dmin; u8 scales[12]; u8 qs[128]}: chunk c of 32 bytes holds sub-block 2c
// in its low nibbles and 2c+1 in its high nibbles. M activation vectors (`stride` bytes apart)
// against one row: the scales and nibbles of a block are unpacked once for all M, and each
// vector's sums see the same operations whatever M is (a batch gives one vector's bits).
template <int M>
void dot_q4_k_m(const uint8_t* w, const uint8_t* x, uint64_t stride, int64_t n, float* out,
                int64_t out_stride) {
    const __m512i low4 = _mm512_set1_epi8(0x0f);
    __m512 acc[M];
    __m128 acc_min[M];
    for (int m = 0; m < M; ++m) {
        acc[m] = _mm512_setzero_ps();
        acc_min[m] = _mm_setzero_ps();
    }
    for (int64_t b = 0; b < n / 256; ++b, w += 144, x += kQ8KBlockBytes) {
        if (M == 1) prefetch_lines(w + 3072, 144); // generation: ahead of the hardware
        // The 6-bit scales and mins, unpacked to bytes as get_scale_min_k4 reads them.
        uint32_t u[4];
        std::memcpy(u, w + 4, 12);
        constexpr uint32_t m6 = 0x3f3f3f3f, m4 = 0x0f0f0f0f, m2 = 0x03030303;
        u[3] = ((u[2] >> 4) & m4) | (((u[1] >> 6) & m2) << 4);
        const uint32_t mins_lo = u[1] & m6;
        u[1] = (u[2] & m4) | (((u[0] >> 6) & m2) << 4);
        u[2] = mins_lo;
        u[0] &= m6;
        const __m128i scales_mins = _mm_loadu_si128(reinterpret_cast<const __m128i*>(u));
        const __m512i scales16 = _mm512_castsi256_si512(_mm256_cvtepu8_epi16(scales_mins));
        const __m128i mins16 = _mm_cvtepu8_epi16(_mm_srli_si128(scales_mins, 8));
        const float d = f16_at(w), dmin = f16_at(w + 2);
        // Register lo of step h holds sub-blocks 4h and 4h+2, hi 4h+1 and 4h+3.
        __m512i lo[2], hi[2], scale_lo[2], scale_hi[2];
        for (int h = 0; h < 2; ++h) {
            const __m512i packed = _mm512_loadu_si512(w + 16 + 64 * h);
            lo[h] = _mm512_and_si512(packed, low4);
            hi[h] = _mm512_and_si512(_mm512_srli_epi16(packed, 4), low4);
            scale_lo[h] = spread_scales(scales16, 4 * h, 2);
            scale_hi[h] = spread_scales(scales16, 4 * h + 1, 2);
        }
        for (int m = 0; m < M; ++m) {
            const uint8_t* xm = x + uint64_t(m) * stride;
            // imin = sum over sub-blocks of min * (bsum of its two halves).
            const __m256i bsums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xm + 260));
            const __m128i pair_sums =
                _mm_hadd_epi16(_mm256_castsi256_si128(bsums), _mm256_extracti128_si256(bsums, 1));
            const __m128i imin = _mm_madd_epi16(mins16, pair_sums); // 4 partial sums
            __m512i isum = _mm512_setzero_si512();
            for (int h = 0; h < 2; ++h) {
                const uint8_t* xq = xm + 4 + 128 * h;
                const __m512i p_lo = _mm512_maddubs_epi16(lo[h], load_2x256(xq, xq + 64));
                const __m512i p_hi = _mm512_maddubs_epi16(hi[h], load_2x256(xq + 32, xq + 96));
                isum = _mm512_add_epi32(isum, _mm512_madd_epi16(p_lo, scale_lo[h]));
                isum = _mm512_add_epi32(isum, _mm512_madd_epi16(p_hi, scale_hi[h]));
            }
            float xd;
            std::memcpy(&xd, xm, 4);
            acc[m] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(xd * d), acc[m]);
            acc_min[m] = _mm_fmadd_ps(_mm_cvtepi32_ps(imin), _mm_set1_ps(xd * dmin), acc_min[m]);
        }
    }
    for (int m = 0; m < M; ++m) {
        __m128 mn = _mm_add_ps(acc_min[m], _mm_movehl_ps(acc_min[m], acc_min[m]));
        mn = _mm_add_ss(mn, _mm_movehdup_ps(mn));
        out[m * out_stride] = _mm512_reduce_add_ps(acc[m]) - _mm_cvtss_f32(mn);
    }
}

float vec_dot_q4_k_q8_k(const void* row, const void* activations, int64_t n) {
    float out;
    dot_q4_k_m<1>(static_cast<const uint8_t*>(row), static_cast<const uint8_t*>(activations), 0, n,
                  &out, 0);
    return out;
}

void vec_dot_rows_q4_k_q8_k(const void* row, const uint8_t* x, uint64_t stride, int64_t count,
                            int64_t n, float* out, int64_t out_stride) {
    rows_by_four<dot_q4_k_m<4>, dot_q4_k_m<1>>(row, x, stride, count, n, out, out_stride);
}

// Q6_K {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}: q = 4 low bits from ql, 2 high bits from
// qh, minus 32; one scale per 16 values.
// M activation vectors (`stride` bytes apart) against one Q6_K row: a block's 6-bit values and
// scales are built once for all M, each vector's sums see the same operations whatever M is.
template <int M>
void dot_q6_k_m(const uint8_t* w, const uint8_t* x, uint64_t stride, int64_t n, float* out,
                int64_t out_stride) {
    const __m512i low4 = _mm512_set1_epi8(0x0f);
    const __m512i two_bits = _mm512_set1_epi8(0x03);
    // qh bits for values l (shift 0) and l + 32 (shift 2); then l + 64 (4) and l + 96 (6).
    auto halves = [](int16_t lo, int16_t hi) {
        return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16(lo)),
                                  _mm256_set1_epi16(hi), 1);
    };
    const __m512i shift_lo = halves(0, 2), shift_hi = halves(4, 6); // per 16-bit lane
    __m512 acc[M];
    for (int m = 0; m < M; ++m) acc[m] = _mm512_setzero_ps();
    for (int64_t b = 0; b < n / 256; ++b, w += 210, x += kQ8KBlockBytes) {
        if (M == 1) prefetch_lines(w + 3072, 210); // generation: ahead of the hardware
        const __m128i scales8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 192));
        const __m512i scales16 = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(scales8));
        const float d = f16_at(w + 208);
        __m512i q_lo[2], q_hi[2], scale_lo[2], scale_hi[2];
        for (int h = 0; h < 2; ++h) {
            const __m512i ql = _mm512_loadu_si512(w + 64 * h);
            const __m256i qh256 =
                _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 128 + 32 * h));
            const __m512i qh = _mm512_broadcast_i64x4(qh256);
            // Values 0..63 of this half in q_lo (l, l + 32), 64..127 in q_hi (l + 64, l + 96).
            q_lo[h] = _mm512_or_si512(
                _mm512_and_si512(ql, low4),
                _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, shift_lo), two_bits), 4));
            q_hi[h] = _mm512_or_si512(
                _mm512_and_si512(_mm512_srli_epi16(ql, 4), low4),
                _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, shift_hi), two_bits), 4));
            // 16 values per scale: int16 lanes 8k..8k+7 take scale 8h + k (+4 for q_hi).
            const __m512i index_lo =
                _mm512_set_epi16(8 * h + 3, 8 * h + 3, 8 * h + 3, 8 * h + 3, 8 * h + 3, 8 * h + 3,
                                 8 * h + 3, 8 * h + 3, 8 * h + 2, 8 * h + 2, 8 * h + 2, 8 * h + 2,
                                 8 * h + 2, 8 * h + 2, 8 * h + 2, 8 * h + 2, 8 * h + 1, 8 * h + 1,
                                 8 * h + 1, 8 * h + 1, 8 * h + 1, 8 * h + 1, 8 * h + 1, 8 * h + 1,
                                 8 * h, 8 * h, 8 * h, 8 * h, 8 * h, 8 * h, 8 * h, 8 * h);
            scale_lo[h] = _mm512_permutexvar_epi16(index_lo, scales16);
            scale_hi[h] = _mm512_permutexvar_epi16(_mm512_add_epi16(index_lo, _mm512_set1_epi16(4)),
                                                   scales16);
        }
        for (int m = 0; m < M; ++m) {
            const uint8_t* xm = x + uint64_t(m) * stride;
            // The -32 of every value: -32 * sum over sub-blocks of scale * bsum.
            const __m256i bsums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xm + 260));
            const __m256i sb = _mm256_madd_epi16(_mm512_castsi512_si256(scales16), bsums);
            __m512i isum = _mm512_castsi256_si512(
                _mm256_slli_epi32(_mm256_sub_epi32(_mm256_setzero_si256(), sb), 5));
            for (int h = 0; h < 2; ++h) {
                const uint8_t* xq = xm + 4 + 128 * h;
                const __m512i p_lo = _mm512_maddubs_epi16(q_lo[h], _mm512_loadu_si512(xq));
                const __m512i p_hi = _mm512_maddubs_epi16(q_hi[h], _mm512_loadu_si512(xq + 64));
                isum = _mm512_add_epi32(isum, _mm512_madd_epi16(p_lo, scale_lo[h]));
                isum = _mm512_add_epi32(isum, _mm512_madd_epi16(p_hi, scale_hi[h]));
            }
            float xd;
            std::memcpy(&xd, xm, 4);
            acc[m] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(xd * d), acc[m]);
        }
    }
    for (int m = 0; m < M; ++m) out[m * out_stride] = _mm512_reduce_add_ps(acc[m]);
}

float vec_dot_q6_k_q8_k(const void* row, const void* activations, int64_t n) {
    float out;
    dot_q6_k_m<1>(static_cast<const uint8_t*>(row), static_cast<const uint8_t*>(activations), 0, n,
                  &out, 0);
    return out;
}

void vec_dot_rows_q6_k_q8_k(const void* row, const uint8_t* x, uint64_t stride, int64_t count,
                            int64_t n, float* out, int64_t out_stride) {
    rows_by_four<dot_q6_k_m<4>, dot_q6_k_m<1>>(row, x, stride, count, n, out, out_stride);
}

} // namespace woolly::avx512

// ---- F16 weights against float32 activations ----

namespace woolly::avx512 {
namespace {

// 16 values widened to float32 (all lanes, or the first `mask` lanes, the rest 0).
inline __m512 f16_values(const uint16_t* p, __mmask16 mask) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, p));
}
inline __m512 bf16_values(const uint16_t* p, __mmask16 mask) { // bf16 is float32's top half
    return _mm512_castsi512_ps(
        _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask, p)), 16));
}
inline __m512 f32_values(const float* p, __mmask16 mask) {
    return _mm512_maskz_loadu_ps(mask, p);
}

// R rows (`w_stride` values apart) against M activation vectors (`x_stride` apart) of 16-bit
// float weights (F16 against float32, BF16 against BF16), over values [begin, end) of n: two
// accumulators per pair (even and odd 16-value chunks, the last chunk masked), taken from
// `carry` unless begin is 0, and added up into out[m * out_stride + r] when end is n (else
// left in `carry`). Every pair sees the same operations in the same order whatever R, M and
// the split into ranges are, so a prompt's GEMM gives the bits of generation's GEMV.
template <typename X, __m512 (*Weights)(const uint16_t*, __mmask16),
          __m512 (*Acts)(const X*, __mmask16), int R, int M>
void dot_16bit_rm(const uint16_t* w, uint64_t w_stride, const X* x, uint64_t x_stride, int64_t n,
                  int64_t begin, int64_t end, __m512* carry, float* out, int64_t out_stride) {
    __m512 acc[R][M][2];
    for (int r = 0; r < R; ++r)
        for (int m = 0; m < M; ++m)
            for (int half = 0; half < 2; ++half)
                acc[r][m][half] = begin == 0 ? _mm512_setzero_ps() : carry[(r * M + m) * 2 + half];
    // One step: the 16 values at `at` (those `mask` selects) of every row and vector.
    auto step = [&](int64_t at, int half, __mmask16 mask) {
        __m512 wv[R];
        for (int r = 0; r < R; ++r) wv[r] = Weights(w + r * w_stride + at, mask);
        for (int m = 0; m < M; ++m) {
            const __m512 xv = Acts(x + uint64_t(m) * x_stride + at, mask);
            for (int r = 0; r < R; ++r)
                acc[r][m][half] = _mm512_fmadd_ps(wv[r], xv, acc[r][m][half]);
        }
    };
    int64_t i = begin;
    for (; i + 32 <= end; i += 32) { // whole chunks: full masks, which the compiler drops
        if (M == 1) // generation: one line per row runs ahead of the hardware prefetcher
            for (int r = 0; r < R; ++r)
                _mm_prefetch(reinterpret_cast<const char*>(w + r * w_stride + i + 1536),
                             _MM_HINT_T1);
        step(i, 0, 0xffff);
        step(i + 16, 1, 0xffff);
    }
    if (i < end) { // the tail, zero-filled: the same additions as a full chunk of zeros
        const int64_t left = end - i;
        step(i, 0, left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1));
        if (left > 16) step(i + 16, 1, __mmask16((1u << (left - 16)) - 1));
    }
    for (int r = 0; r < R; ++r)
        for (int m = 0; m < M; ++m) {
            if (end < n) {
                carry[(r * M + m) * 2] = acc[r][m][0];
                carry[(r * M + m) * 2 + 1] = acc[r][m][1];
            } else {
                out[m * out_stride + r] =
                    _mm512_reduce_add_ps(_mm512_add_ps(acc[r][m][0], acc[r][m][1]));
            }
        }
}

// Rows x vectors in tiles of 4 x 3 (24 accumulators, 4 weight registers and one activation
// register of the 32), the remainders one row or one vector at a time. The values go in
// ranges of kRange, each range through every tile before the next, so a tile's rows and
// vectors are read from L1 (16 rows x 12 vectors x 512 values: 40 KiB), not streamed from L2
// whole for each tile; the tiles' accumulators wait in `carry` between ranges.
template <typename X, __m512 (*Weights)(const uint16_t*, __mmask16),
          __m512 (*Acts)(const X*, __mmask16)>
void gemm_16bit(const void* rows, uint64_t row_bytes, int64_t n_rows, const uint8_t* x,
                uint64_t stride, int64_t count, int64_t n, float* out, int64_t out_stride) {
    constexpr int64_t kRange = 512, kMaxRows = 16, kMaxVectors = 12;
    const auto* w = static_cast<const uint16_t*>(rows);
    const auto* xv = reinterpret_cast<const X*>(x);
    const uint64_t ws = row_bytes / sizeof(uint16_t), xs = stride / sizeof(X);
    if (n_rows > kMaxRows || count > kMaxVectors) { // in blocks the carry has room for
        for (int64_t r = 0; r < n_rows; r += kMaxRows)
            for (int64_t m = 0; m < count; m += kMaxVectors)
                gemm_16bit<X, Weights, Acts>(
                    w + r * ws, row_bytes, std::min(kMaxRows, n_rows - r), x + m * stride, stride,
                    std::min(kMaxVectors, count - m), n, out + m * out_stride + r, out_stride);
        return;
    }
    alignas(64) __m512 carry[kMaxRows * kMaxVectors * 2];
    for (int64_t begin = 0; begin < n; begin += kRange) {
        const int64_t end = std::min(n, begin + kRange);
        __m512* next = carry;
        auto tile = [&](auto rows_c, auto vectors_c, int64_t r, int64_t m) {
            constexpr int R = decltype(rows_c)::value, M = decltype(vectors_c)::value;
            dot_16bit_rm<X, Weights, Acts, R, M>(w + r * ws, ws, xv + m * xs, xs, n, begin, end,
                                                 next, out + m * out_stride + r, out_stride);
            next += R * M * 2;
        };
        using One = std::integral_constant<int, 1>;
        using Three = std::integral_constant<int, 3>;
        using Four = std::integral_constant<int, 4>;
        int64_t r = 0;
        for (; r + 4 <= n_rows; r += 4) {
            int64_t m = 0;
            for (; m + 3 <= count; m += 3) tile(Four{}, Three{}, r, m);
            for (; m < count; ++m) tile(Four{}, One{}, r, m);
        }
        for (; r < n_rows; ++r) {
            int64_t m = 0;
            for (; m + 3 <= count; m += 3) tile(One{}, Three{}, r, m);
            for (; m < count; ++m) tile(One{}, One{}, r, m);
        }
    }
}

} // namespace

float vec_dot_f16_f32(const void* row, const void* activations, int64_t n) {
    float out;
    dot_16bit_rm<float, f16_values, f32_values, 1, 1>(static_cast<const uint16_t*>(row), 0,
                                                      static_cast<const float*>(activations), 0, n,
                                                      0, n, nullptr, &out, 0);
    return out;
}

float vec_dot_bf16_bf16(const void* row, const void* activations, int64_t n) {
    float out;
    dot_16bit_rm<uint16_t, bf16_values, bf16_values, 1, 1>(
        static_cast<const uint16_t*>(row), 0, static_cast<const uint16_t*>(activations), 0, n, 0, n,
        nullptr, &out, 0);
    return out;
}

void gemm_rows_f16_f32(const void* rows, uint64_t row_bytes, int64_t n_rows, const uint8_t* x,
                       uint64_t stride, int64_t count, int64_t n, float* out, int64_t out_stride) {
    gemm_16bit<float, f16_values, f32_values>(rows, row_bytes, n_rows, x, stride, count, n, out,
                                              out_stride);
}

void gemm_rows_bf16_bf16(const void* rows, uint64_t row_bytes, int64_t n_rows, const uint8_t* x,
                         uint64_t stride, int64_t count, int64_t n, float* out,
                         int64_t out_stride) {
    gemm_16bit<uint16_t, bf16_values, bf16_values>(rows, row_bytes, n_rows, x, stride, count, n,
                                                   out, out_stride);
}

namespace {

// e^x for 16 lanes: x = n ln2 + r with |r| <= ln2 / 2 (ln2 split in two for exactness), e^r by
// its Taylor polynomial to degree 7 (relative error < 2e-7 there), times 2^n by scalef, which
// gives inf and 0 past the float range as exp does.
inline __m512 exp16(__m512 x) {
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

} // namespace

// SwiGLU gating, 16 values at a time (masked tail): silu(g) * u = g / (1 + e^-g) * u.
void swiglu(float* gate, const float* up, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 mask = n - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - i)) - 1);
        const __m512 g = _mm512_maskz_loadu_ps(mask, gate + i);
        const __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), g));
        const __m512 silu = _mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
        _mm512_mask_storeu_ps(gate + i, mask,
                              _mm512_mul_ps(silu, _mm512_maskz_loadu_ps(mask, up + i)));
    }
}

double exp_sum(float* x, int64_t n, float shift) {
    __m512 sum = _mm512_setzero_ps();
    const __m512 s = _mm512_set1_ps(shift);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 mask = n - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - i)) - 1);
        const __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(mask, x + i), s));
        _mm512_mask_storeu_ps(x + i, mask, e);
        sum = _mm512_add_ps(sum, _mm512_maskz_mov_ps(mask, e));
    }
    return double(_mm512_reduce_add_ps(sum));
}

// ---- Q8_K activations {f32 d; i8 qs[256]; i16 bsums[16]} ----

// As quantize_q8_k of tensor_types.cpp, byte for byte: the first value of largest magnitude
// sets the scale (-127 / max), products round half to even, capped at 127.
void quantize_row_q8_k(const float* src, void* dst, int64_t n) {
    auto* block = static_cast<uint8_t*>(dst);
    for (int64_t b = 0; b < n / 256; ++b, src += 256, block += 4 + 256 + 32) {
        __m512 v[16];
        __m512 amax = _mm512_setzero_ps();
        for (int k = 0; k < 16; ++k) {
            v[k] = _mm512_loadu_ps(src + 16 * k);
            amax = _mm512_max_ps(amax, _mm512_abs_ps(v[k]));
        }
        const float max_abs = _mm512_reduce_max_ps(amax);
        auto* qs = reinterpret_cast<int8_t*>(block + 4);
        int16_t bsums[16] = {};
        float d = 0.0f;
        if (max_abs != 0.0f) {
            float max = 0.0f;
            for (int k = 0; k < 16; ++k) { // the first value of that magnitude
                const __mmask16 at =
                    _mm512_cmp_ps_mask(_mm512_abs_ps(v[k]), _mm512_set1_ps(max_abs), _CMP_EQ_OQ);
                if (at) {
                    max = src[16 * k + __builtin_ctz(at)];
                    break;
                }
            }
            const float iscale = -127.0f / max;
            const __m512 scale = _mm512_set1_ps(iscale);
            for (int k = 0; k < 16; ++k) {
                const __m512i q = _mm512_min_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(v[k], scale)),
                                                   _mm512_set1_epi32(127));
                _mm_storeu_si128(reinterpret_cast<__m128i*>(qs + 16 * k), _mm512_cvtsepi32_epi8(q));
                bsums[k] = int16_t(_mm512_reduce_add_epi32(q));
            }
            d = 1.0f / iscale;
        } else {
            std::memset(qs, 0, 256);
        }
        std::memcpy(block, &d, 4);
        std::memcpy(block + 4 + 256, bsums, sizeof bsums);
    }
}

// ---- small float products: attention's scores and weighted values ----

namespace {

// R rows of c, V vectors of 16 columns (`mask` selects each vector's columns): every element
// adds its k products in order with fused multiply-adds, as gemm_f32_reference does.
template <int R, int V>
void gemm_f32_tile(int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
                   int64_t ldc, bool accumulate, const __mmask16* mask) {
    __m512 acc[R][V];
    for (int r = 0; r < R; ++r)
        for (int v = 0; v < V; ++v)
            acc[r][v] = accumulate ? _mm512_maskz_loadu_ps(mask[v], c + r * ldc + 16 * v)
                                   : _mm512_setzero_ps();
    for (int64_t l = 0; l < k; ++l) {
        __m512 bv[V];
        for (int v = 0; v < V; ++v) bv[v] = _mm512_maskz_loadu_ps(mask[v], b + l * ldb + 16 * v);
        for (int r = 0; r < R; ++r) {
            const __m512 av = _mm512_set1_ps(a[r * lda + l]);
            for (int v = 0; v < V; ++v) acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
        }
    }
    for (int r = 0; r < R; ++r)
        for (int v = 0; v < V; ++v) _mm512_mask_storeu_ps(c + r * ldc + 16 * v, mask[v], acc[r][v]);
}

using GemmF32Tile = void (*)(int64_t, const float*, int64_t, const float*, int64_t, float*, int64_t,
                             bool, const __mmask16*);
template <int R>
constexpr GemmF32Tile kGemmF32Row[4] = {gemm_f32_tile<R, 1>, gemm_f32_tile<R, 2>,
                                        gemm_f32_tile<R, 3>, gemm_f32_tile<R, 4>};
// [rows - 1][vectors - 1]: tiles of up to 4 rows x 64 columns (16 accumulators).
constexpr const GemmF32Tile* kGemmF32Tiles[4] = {kGemmF32Row<1>, kGemmF32Row<2>, kGemmF32Row<3>,
                                                 kGemmF32Row<4>};

} // namespace

void gemm_f32(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
              int64_t ldb, float* c, int64_t ldc, bool accumulate) {
    for (int64_t j = 0; j < n; j += 64) {
        const int64_t cols = std::min<int64_t>(64, n - j);
        __mmask16 mask[4];
        for (int v = 0; v < 4; ++v) {
            const int64_t left = cols - 16 * v;
            mask[v] = left >= 16 ? __mmask16(0xffff) : left > 0 ? __mmask16((1u << left) - 1) : 0;
        }
        const int64_t vectors = (cols + 15) / 16;
        for (int64_t i = 0; i < m; i += 4) {
            const int64_t rows = std::min<int64_t>(4, m - i);
            kGemmF32Tiles[rows - 1][vectors - 1](k, a + i * lda, lda, b + j, ldb, c + i * ldc + j,
                                                 ldc, accumulate, mask);
        }
    }
}

} // namespace woolly::avx512
