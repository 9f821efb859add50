// kernels.h — the dot and activation-quantize kernels in use, chosen once from the CPU's features.
//
// Each SIMD kernel has the scalar reference of tensor_types.cpp beside it as its oracle; a level
// without a kernel for some type falls back to the reference for that type.
#pragma once

#include <string>

#include "engine/quant/repack.h"
#include "engine/quant/tensor_types.h"

namespace woolly {

// Each level includes the kernels of the levels below it.
// Each x86 level includes the kernels of the levels below it; Neon is AArch64's.
enum class KernelLevel { Scalar = 0, Avx2 = 1, Avx512 = 2, Neon = 3 };
constexpr KernelLevel kAllKernelLevels[] = {KernelLevel::Scalar, KernelLevel::Avx2,
                                            KernelLevel::Avx512, KernelLevel::Neon};

const char* kernel_level_name(KernelLevel level);
// The best level this CPU runs.
KernelLevel detect_kernel_level();
bool cpu_supports(KernelLevel level);

// One weight row against `count` activation vectors `stride` bytes apart:
// out[i * out_stride] = dot(row, x + i * stride). Reads the row once for the whole batch.
using VecDotRowsFn = void (*)(const void* row, const uint8_t* x, uint64_t stride, int64_t count,
                              int64_t n, float* out, int64_t out_stride);

// n_rows consecutive weight rows (`row_bytes` apart) against `count` activation vectors
// (`stride` bytes apart): out[v * out_stride + r]. Gives each pair the bits of vec_dot.
using GemmRowsFn = void (*)(const void* rows, uint64_t row_bytes, int64_t n_rows, const uint8_t* x,
                            uint64_t stride, int64_t count, int64_t n, float* out,
                            int64_t out_stride);

// c [m][n] = (accumulate ? c : 0) + a [m][k] · b [k][n]: see gemm_f32_reference (ops.h).
using GemmF32Fn = void (*)(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                           const float* b, int64_t ldb, float* c, int64_t ldc, bool accumulate);

struct KernelTable {
    KernelLevel level;
    VecDotFn vec_dot[64];          // by weight type id; null where the type has no dot
    VecDotRowsFn vec_dot_rows[64]; // batched form where a level has one (else: vec_dot per vector)
    GemmRowsFn gemm_rows[64];      // several rows x several vectors, where a level has one
    QuantizeRowFn quantize[64];    // by activation type id
    GemmX16Fn gemm_x16[64];        // by weight type id: kernels over the x16 layout (repack.h)
    DequantizeRowFn to_float[64];  // by type id: values back to float32 (KV-cache rows)
    void (*swiglu)(float* gate, const float* up, int64_t n); // gate = silu(gate) * up
    double (*exp_sum)(float* x, int64_t n, float shift);     // x = exp(x - shift), sum
    GemmF32Fn gemm_f32; // small float products (attention), as gemm_f32_reference

    VecDotFn dot(TensorType t) const { return vec_dot[uint32_t(t)]; }
    VecDotRowsFn dot_rows(TensorType t) const { return vec_dot_rows[uint32_t(t)]; }
    GemmRowsFn rows_gemm(TensorType t) const { return gemm_rows[uint32_t(t)]; }
    QuantizeRowFn quantizer(TensorType t) const { return quantize[uint32_t(t)]; }
    GemmX16Fn x16(TensorType t) const { return gemm_x16[uint32_t(t)]; }
    DequantizeRowFn dequantizer(TensorType t) const { return to_float[uint32_t(t)]; }
};

// The table for one level (throws Error if the CPU cannot run it).
KernelTable make_kernel_table(KernelLevel level);

// The process-wide table: the level in $WOOLLY_KERNELS (scalar, avx2, avx512, neon) if set, else
// the best the CPU runs. Built on first use; throws Error naming the variable on a bad or
// unsupported value.
const KernelTable& active_kernels();

namespace avx2 {
// Defined in x86/avx2.cpp, compiled for AVX2+FMA+F16C; only called when the CPU has them.
float vec_dot_f32(const void* row, const void* activations, int64_t n);
float vec_dot_f16_f32(const void* row, const void* activations, int64_t n);
float vec_dot_q8_0_q8_0(const void* row, const void* activations, int64_t n);
float vec_dot_q4_0_q8_0(const void* row, const void* activations, int64_t n);
void vec_dot_rows_q8_0_q8_0(const void* row, const uint8_t* x, uint64_t stride, int64_t count,
                            int64_t n, float* out, int64_t out_stride);
void vec_dot_rows_q4_0_q8_0(const void* row, const uint8_t* x, uint64_t stride, int64_t count,
                            int64_t n, float* out, int64_t out_stride);
void quantize_row_q8_0(const float* src, void* dst, int64_t n);
void f16_to_f32_row(const void* src, float* dst, int64_t n);
void quantize_row_f16(const float* src, void* dst, int64_t n);
void gemm_f32(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
              int64_t ldb, float* c, int64_t ldc, bool accumulate);
float vec_dot_q4_k_q8_k(const void* row, const void* activations, int64_t n);
float vec_dot_q6_k_q8_k(const void* row, const void* activations, int64_t n);
float vec_dot_iq4_xs_q8_k(const void* row, const void* activations, int64_t n);
} // namespace avx2

namespace avx512 {
// Defined in x86/avx512.cpp, compiled for AVX-512 F/BW/VL + VNNI.
void gemm_x16_q4_0(const uint8_t* groups, int64_t n_groups, int64_t n_blocks, const uint8_t* x,
                   uint64_t x_stride, int64_t count, float* y, int64_t y_stride);
void quantize_row_q8_k(const float* src, void* dst, int64_t n);
void gemm_x16_q4_k(const uint8_t* groups, int64_t n_groups, int64_t n_blocks, const uint8_t* x,
                   uint64_t x_stride, int64_t count, float* y, int64_t y_stride);
void gemm_x16_q6_k(const uint8_t* groups, int64_t n_groups, int64_t n_blocks, const uint8_t* x,
                   uint64_t x_stride, int64_t count, float* y, int64_t y_stride);
void gemm_x16_q8_0(const uint8_t* groups, int64_t n_groups, int64_t n_blocks, const uint8_t* x,
                   uint64_t x_stride, int64_t count, float* y, int64_t y_stride);
float vec_dot_q4_k_q8_k(const void* row, const void* activations, int64_t n);
void vec_dot_rows_q4_k_q8_k(const void* row, const uint8_t* x, uint64_t stride, int64_t count,
                            int64_t n, float* out, int64_t out_stride);
void swiglu(float* gate, const float* up, int64_t n);
double exp_sum(float* x, int64_t n, float shift);
void gemm_f32(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
              int64_t ldb, float* c, int64_t ldc, bool accumulate);
float vec_dot_f16_f32(const void* row, const void* activations, int64_t n);
float vec_dot_bf16_bf16(const void* row, const void* activations, int64_t n);
void gemm_rows_f16_f32(const void* rows, uint64_t row_bytes, int64_t n_rows, const uint8_t* x,
                       uint64_t stride, int64_t count, int64_t n, float* out, int64_t out_stride);
void gemm_rows_bf16_bf16(const void* rows, uint64_t row_bytes, int64_t n_rows, const uint8_t* x,
                         uint64_t stride, int64_t count, int64_t n, float* out, int64_t out_stride);
float vec_dot_q6_k_q8_k(const void* row, const void* activations, int64_t n);
void vec_dot_rows_q6_k_q8_k(const void* row, const uint8_t* x, uint64_t stride, int64_t count,
                            int64_t n, float* out, int64_t out_stride);
} // namespace avx512

namespace neon {
// Defined in arm/neon.cpp, compiled for ARMv8.2-A + dotprod (SDOT).
float vec_dot_f32(const void* row, const void* activations, int64_t n);
float vec_dot_f16_f32(const void* row, const void* activations, int64_t n);
float vec_dot_q8_0_q8_0(const void* row, const void* activations, int64_t n);
float vec_dot_q4_0_q8_0(const void* row, const void* activations, int64_t n);
void quantize_row_q8_0(const float* src, void* dst, int64_t n);
void f16_to_f32_row(const void* src, float* dst, int64_t n);
float vec_dot_q4_k_q8_k(const void* row, const void* activations, int64_t n);
float vec_dot_q6_k_q8_k(const void* row, const void* activations, int64_t n);
float vec_dot_iq4_xs_q8_k(const void* row, const void* activations, int64_t n);
} // namespace neon

} // namespace woolly
