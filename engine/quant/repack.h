// repack.h — row-interleaved weight layouts ("x16"): 16 rows of Q4_0, Q8_0, Q4_K or Q6_K stored
// block by block so one 512-bit VNNI instruction multiplies all 16 rows at once. Same bytes as the
// file.
//
// A group of 16 rows holds, for each block b of 32 columns, 16 * type_size bytes:
//   f16 d[16]             the 16 rows' scales for block b
//   Q4_0: u8 nib[4][64]   chunk j, byte 4i+t: low nibble = row i col 8j+t, high = col 8j+4+t
//   Q8_0: u8 q[8][64]     chunk k, byte 4i+t: row i col 4k+t, stored as q + 128 (unsigned)
// so that register k (a chunk, or a chunk's nibbles) holds columns 4k..4k+3 of every row in
// its 32-bit lane i, and the activation side is one broadcast 32-bit value per register.
// Weights are unsigned there (nibble q, or q + 128), so a kernel subtracts offset * sum(x).
#pragma once

#include <cstdint>

#include "engine/quant/weight_matrix.h"
#include "engine/quant/tensor_types.h"

namespace woolly {

constexpr int64_t kRepackRows = 16;

// Activations for the x16 kernels: the Q8_0 quantization of x (same d and qs, bit for bit),
// with d widened to f32 and the block's sum of qs alongside, also times -8 and -128 (so a
// kernel starts its sum from the offset correction of its weight type, read from memory):
// {f32 d; i32 sum; i32 minus_8_sum; i32 minus_128_sum; i8 qs[32]}.
constexpr uint64_t kQ8SumBlockBytes = 48;
constexpr uint64_t kQ8SumQsOffset = 16;
// Where the block holds -offset * sum for a weight offset of 8 or 128.
constexpr uint64_t q8_sum_correction_offset(int weight_offset) {
    return weight_offset == 8 ? 8 : 12;
}
void q8_0_to_q8_sum(const uint8_t* q8_0, uint8_t* dst, int64_t n);

// The offset the layout adds to every weight (8 for Q4_0 nibbles, 128 for Q8_0); 0 for Q4_K
// (its nibbles are unsigned already, its mins apart) and types without an x16 layout.
int x16_weight_offset(TensorType type);
bool has_x16_layout(TensorType type);
// The activations an x16 kernel reads: Q8_0 for the Q8-sum form above (Q4_0, Q8_0 weights),
// or Q8_K {f32 d; i8 qs[256]; i16 bsums[16]} (Q4_K, Q6_K weights).
TensorType x16_activation_type(TensorType type);
// Whether the x16 form also serves one vector (generation). Q6_K's holds 30 % more bytes than
// the file (whole bytes for 6-bit values): reading them costs generation more than unpacking
// saves (tinyllama Q6_K tg32 28.6 -> 25.1 t/s), so only batches read it.
bool x16_serves_generation(TensorType type);
// Bytes of one block column (32 values, or a super-block of 256 for Q4_K and Q6_K) of a group.
uint64_t x16_group_block_bytes(TensorType type);

// Q4_K: for each super-block of 256 columns, a group holds 2368 bytes:
//   f16 d[16], f16 dmin[16]     the 16 rows' super-block scales
//   u8 scale[8][16]             sub-block j's 6-bit scale for row i
//   u8 min[4][16][2]            pair p: row i's mins of sub-blocks 2p and 2p + 1
//   u8 q[4][8][64]              pair p, register k, byte 4i+t: the file's byte 32p+4k+t of
//                               row i (low nibble: sub-block 2p, high: 2p + 1, column 4k+t)
constexpr uint64_t kQ4KGroupBlockBytes = 2368;
// Q6_K: for each super-block of 256 columns, a group holds 4384 bytes (the file's 6-bit values
// whole in bytes, for the prompt's GEMM to read without unpacking):
//   f16 d[16]                   the 16 rows' super-block scales
//   i8 scale[16][16]            sub-block j's (16 values) scale for row i
//   u8 q[64][64]                register k, byte 4i+t: row i's value at column 4k+t, plus 32
constexpr uint64_t kQ6KGroupBlockBytes = 4384;

// Bytes of the x16 form of w: its whole groups of 16 rows (rows beyond the last whole group
// stay in the original layout).
uint64_t x16_bytes(const WeightMatrix& w);
// Writes the x16 form of w's whole groups into dst (x16_bytes(w) bytes).
void repack_x16(const WeightMatrix& w, uint8_t* dst);
// The same for groups [first_group, end_group) only (dst is still the whole form's start):
// disjoint ranges can be written by different threads.
void repack_x16(const WeightMatrix& w, uint8_t* dst, int64_t first_group, int64_t end_group);

// y[m * y_stride + 16 g + i] = dot(row i of group g, x_m) for n_groups adjacent groups of 16
// rows and `count` activation vectors in the Q8-sum form, `x_stride` bytes apart; n_blocks
// blocks of 32 per row.
using GemmX16Fn = void (*)(const uint8_t* groups, int64_t n_groups, int64_t n_blocks,
                           const uint8_t* x, uint64_t x_stride, int64_t count, float* y,
                           int64_t y_stride);

// Scalar references, the oracle of the SIMD x16 kernels.
void gemm_x16_q4_0_reference(const uint8_t* groups, int64_t n_groups, int64_t n_blocks,
                             const uint8_t* x, uint64_t x_stride, int64_t count, float* y,
                             int64_t y_stride);
void gemm_x16_q6_k_reference(const uint8_t* groups, int64_t n_groups, int64_t n_blocks,
                             const uint8_t* x, uint64_t x_stride, int64_t count, float* y,
                             int64_t y_stride);
// Q4_K (and Q6_K) groups against Q8_K activations: the row reference's integer sums and float steps
// in its order, so its bits.
void gemm_x16_q4_k_reference(const uint8_t* groups, int64_t n_groups, int64_t n_blocks,
                             const uint8_t* x, uint64_t x_stride, int64_t count, float* y,
                             int64_t y_stride);
void gemm_x16_q8_0_reference(const uint8_t* groups, int64_t n_groups, int64_t n_blocks,
                             const uint8_t* x, uint64_t x_stride, int64_t count, float* y,
                             int64_t y_stride);

} // namespace woolly
