// ops.cpp — the element-wise steps of the forward pass, written for clarity.
#include "engine/kernels/ops.h"

#include <cmath>

namespace woolly {

// y = x / sqrt(mean(x^2) + eps) * weight. The sum of squares is taken in double, as ggml does.
float rmsnorm_factor(const float* x, int64_t n, float eps) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) sum += double(x[i] * x[i]);
    const float mean = float(sum / double(n));
    return 1.0f / std::sqrt(mean + eps);
}

float gelu_tanh(float x) {
    constexpr float kSqrt2OverPi = 0.79788456080286535588f;
    return 0.5f * x * (1.0f + std::tanh(kSqrt2OverPi * x * (1.0f + 0.044715f * x * x)));
}

void geglu(float* gate, const float* up, int64_t n) {
    for (int64_t i = 0; i < n; ++i) gate[i] = gelu_tanh(gate[i]) * up[i];
}

void rmsnorm(float* y, const float* x, const float* weight, int64_t n, float eps) {
    const float scale = rmsnorm_factor(x, n, eps);
    for (int64_t i = 0; i < n; ++i) y[i] = (x[i] * scale) * weight[i];
}

// cos/sin of pos * base^(-2i/n_rot) for each pair i, computed as ggml does: the angle is
// multiplied down pair by pair in float, so positions match llama.cpp to the last bit; a pair's
// frequency factor divides its angle before the linear scale.
void rope_angles(float* cache, int64_t pos, int64_t n_rot, float base, float freq_scale,
                 const float* factors) {
    const float theta_scale = std::pow(base, -2.0f / float(n_rot));
    float theta = float(pos);
    for (int64_t i = 0; i < n_rot; i += 2) {
        const float angle = freq_scale * (factors ? theta / factors[i / 2] : theta);
        cache[i] = std::cos(angle);
        cache[i + 1] = std::sin(angle);
        theta *= theta_scale;
    }
}

// Rotates pairs of each head's first n_rot dimensions: (x[2i], x[2i+1]), or in the NeoX layout
// (x[i], x[i + n_rot/2]); pair i turns by angle i of `cache` either way.
void rope(float* x, int64_t n_heads, int64_t head_dim, int64_t n_rot, const float* cache,
          bool neox) {
    const int64_t half = n_rot / 2;
    for (int64_t h = 0; h < n_heads; ++h) {
        float* v = x + h * head_dim;
        for (int64_t i = 0; i < half; ++i) {
            const float c = cache[2 * i], s = cache[2 * i + 1];
            float& a = neox ? v[i] : v[2 * i];
            float& b = neox ? v[i + half] : v[2 * i + 1];
            const float x0 = a, x1 = b;
            a = x0 * c - x1 * s;
            b = x0 * s + x1 * c;
        }
    }
}

float silu(float x) {
    return x / (1.0f + std::exp(-x));
}

void swiglu_reference(float* gate, const float* up, int64_t n) {
    for (int64_t i = 0; i < n; ++i) gate[i] = silu(gate[i]) * up[i];
}

double exp_sum_reference(float* x, int64_t n, float shift) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        x[i] = std::exp(x[i] - shift);
        sum += x[i];
    }
    return sum;
}

void gemm_f32_reference(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                        const float* b, int64_t ldb, float* c, int64_t ldc, bool accumulate) {
    for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < n; ++j) {
            float sum = accumulate ? c[i * ldc + j] : 0.0f;
            for (int64_t l = 0; l < k; ++l) sum = std::fma(a[i * lda + l], b[l * ldb + j], sum);
            c[i * ldc + j] = sum;
        }
    }
}

} // namespace woolly
