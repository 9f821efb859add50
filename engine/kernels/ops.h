// ops.h — the forward pass's element-wise steps: RMSNorm, rotary embeddings, SiLU.
#pragma once

#include <cstdint>

namespace woolly {

// y [n] = x / sqrt(mean(x^2) + eps) * weight (the sum of squares in double, as ggml does).
void rmsnorm(float* y, const float* x, const float* weight, int64_t n, float eps);
// 1 / sqrt(mean(x^2) + eps), rmsnorm's factor; then y[i] = (x[i] * factor) * weight[i].
float rmsnorm_factor(const float* x, int64_t n, float eps);
// cache [n_rot] = cos, sin pairs of freq_scale * (pos * base^(-2i/n_rot) / factors[i]), as ggml
// computes them; `factors` [n_rot/2] may be null (all 1: no per-pair frequency factors).
void rope_angles(float* cache, int64_t pos, int64_t n_rot, float base, float freq_scale,
                 const float* factors = nullptr);
// Rotates each head's first n_rot dimensions of x [n_heads][head_dim] by the angles of `cache`:
// pair i is (x[2i], x[2i+1]) when `neox` is false (Llama), (x[i], x[i + n_rot/2]) when true.
void rope(float* x, int64_t n_heads, int64_t head_dim, int64_t n_rot, const float* cache,
          bool neox = false);
float silu(float x);
// gate [n] = silu(gate) * up: SwiGLU's gating, the scalar reference of KernelTable::swiglu.
void swiglu_reference(float* gate, const float* up, int64_t n);
// GELU in its tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
float gelu_tanh(float x);
// gate [n] = gelu_tanh(gate) * up: GeGLU's gating (Gemma's feed-forward).
void geglu(float* gate, const float* up, int64_t n);
// x [n] = exp(x - shift); returns the sum (in double). Softmax's middle step.
double exp_sum_reference(float* x, int64_t n, float shift);
// c [m][n] = (accumulate ? c : 0) + a [m][k] · b [k][n], row-major with leading dimensions
// lda, ldb, ldc: each element adds its k products in order, each with a fused multiply-add.
// Attention's two products (scores = q · keys^T, out = probabilities · values).
void gemm_f32_reference(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                        const float* b, int64_t ldb, float* c, int64_t ldc, bool accumulate);

} // namespace woolly
