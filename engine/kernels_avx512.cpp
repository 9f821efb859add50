// kernels_avx512.cpp — AVX-512 (F, BW, VL) + VNNI kernels over the x16 layouts of repack.h;
// references: gemm_x16_*_reference in repack.cpp (and through them the row kernels).
// GCC 12's AVX-512 headers start some conversions from a self-initialised "undefined"
// register, which -Wmaybe-uninitialized reports once inlined here (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstring>

#include "kernels.h"
#include "repack.h"

namespace woolly::avx512 {
namespace {

// Register k of the 8 covering one block of 16 rows: lane i holds row i's columns 4k..4k+3.
struct WeightBlock {
    __m512i reg[8];
    __m512 d; // the 16 rows' scales
};

inline void load_q4_0(const uint8_t* g, WeightBlock& w) {
    const __m512i low4 = _mm512_set1_epi8(0x0f);
    w.d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(g)));
    for (int j = 0; j < 4; ++j) {
        const __m512i v = _mm512_loadu_si512(g + 32 + 64 * j);
        w.reg[2 * j] = _mm512_and_si512(v, low4);
        w.reg[2 * j + 1] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
    }
}

// One 32-bit activation group broadcast to all 16 lanes, straight from memory (a load-port
// broadcast, leaving the vector ports to the dot products).
inline __m512i broadcast32(const uint8_t* p) {
    return _mm512_broadcastd_epi32(_mm_loadu_si32(p));
}

inline void load_q8_0(const uint8_t* g, WeightBlock& w) {
    w.d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(g)));
    for (int k = 0; k < 8; ++k) w.reg[k] = _mm512_loadu_si512(g + 32 + 64 * k);
}

// M activation vectors against one group of 16 rows. Per row and vector the blocks are added
// in order, each as float(isum) * (d_w * d_x) with a separate multiply and add (no FMA): the
// row reference's arithmetic exactly, so any tile size M gives the reference's bits.
template <void (*Load)(const uint8_t*, WeightBlock&), int Offset, int TypeSize, int M>
void gemm_tile(const uint8_t* group, int64_t n_blocks, const uint8_t* x, uint64_t x_stride,
               float* y, int64_t y_stride) {
    __m512 acc[M];
    for (int m = 0; m < M; ++m) acc[m] = _mm512_setzero_ps();
    WeightBlock w;
    constexpr uint64_t kGroupBlock = kRepackRows * TypeSize;
    for (int64_t b = 0; b < n_blocks; ++b) {
        // The stream runs ahead of the hardware prefetcher: ask for the block 2 KiB on (the
        // next group's first blocks, past the end of this one, are what comes next anyway).
        const uint8_t* ahead = group + uint64_t(b) * kGroupBlock + 2048;
        for (uint64_t line = 0; line < kGroupBlock; line += 64)
            _mm_prefetch(reinterpret_cast<const char*>(ahead + line), _MM_HINT_T1);
        Load(group + uint64_t(b) * kGroupBlock, w);
        for (int m = 0; m < M; ++m) {
            const uint8_t* xb = x + uint64_t(m) * x_stride + uint64_t(b) * kQ8SumBlockBytes;
            // Two chains of four so the dot products overlap; one starts from the correction
            // -Offset * sum(x) for the weights' unsigned storage.
            const uint8_t* xq = xb + kQ8SumQsOffset;
            __m512i even = broadcast32(xb + q8_sum_correction_offset(Offset));
            __m512i odd = _mm512_setzero_si512();
            for (int k = 0; k < 8; k += 2) {
                even = _mm512_dpbusd_epi32(even, w.reg[k], broadcast32(xq + 4 * k));
                odd = _mm512_dpbusd_epi32(odd, w.reg[k + 1], broadcast32(xq + 4 * k + 4));
            }
            float dx;
            std::memcpy(&dx, xb, 4);
            const __m512i isum = _mm512_add_epi32(even, odd);
            const __m512 scale = _mm512_mul_ps(w.d, _mm512_set1_ps(dx));
            acc[m] = _mm512_add_ps(acc[m], _mm512_mul_ps(_mm512_cvtepi32_ps(isum), scale));
        }
    }
    for (int m = 0; m < M; ++m) _mm512_storeu_ps(y + m * y_stride, acc[m]);
}

template <void (*Load)(const uint8_t*, WeightBlock&), int Offset, int TypeSize>
void gemm_x16(const uint8_t* group, int64_t n_blocks, const uint8_t* x, uint64_t x_stride,
              int64_t count, float* y, int64_t y_stride) {
    // Tiles of up to 8 vectors: 8 accumulators + 8 weight registers + temporaries < 32 zmm.
    int64_t m = 0;
    auto tile = [&](auto tile_size) {
        constexpr int T = decltype(tile_size)::value;
        gemm_tile<Load, Offset, TypeSize, T>(group, n_blocks, x + uint64_t(m) * x_stride, x_stride,
                                             y + m * y_stride, y_stride);
        m += T;
    };
    while (count - m >= 8) tile(std::integral_constant<int, 8>{});
    if (count - m >= 4) tile(std::integral_constant<int, 4>{});
    if (count - m >= 2) tile(std::integral_constant<int, 2>{});
    if (count - m >= 1) tile(std::integral_constant<int, 1>{});
}

} // namespace

void gemm_x16_q4_0(const uint8_t* group, int64_t n_blocks, const uint8_t* x, uint64_t x_stride,
                   int64_t count, float* y, int64_t y_stride) {
    gemm_x16<load_q4_0, 8, 18>(group, n_blocks, x, x_stride, count, y, y_stride);
}

void gemm_x16_q8_0(const uint8_t* group, int64_t n_blocks, const uint8_t* x, uint64_t x_stride,
                   int64_t count, float* y, int64_t y_stride) {
    gemm_x16<load_q8_0, 128, 34>(group, n_blocks, x, x_stride, count, y, y_stride);
}

} // namespace woolly::avx512
