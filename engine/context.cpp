// context.cpp — the Llama forward pass for one token, written to read like the paper.
#include "context.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "error.h"
#include "matmul.h"

namespace woolly {
namespace {

// y = x / sqrt(mean(x^2) + eps) * weight. The sum of squares is taken in double, as ggml does.
void rmsnorm(float* y, const float* x, const float* weight, int64_t n, float eps) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) sum += double(x[i] * x[i]);
    const float mean = float(sum / double(n));
    const float scale = 1.0f / std::sqrt(mean + eps);
    for (int64_t i = 0; i < n; ++i) y[i] = (x[i] * scale) * weight[i];
}

// cos/sin of pos * base^(-2i/n_rot) for each pair i, computed as ggml does: the angle is
// multiplied down pair by pair in float, so positions match llama.cpp to the last bit.
void rope_angles(float* cache, int64_t pos, int64_t n_rot, float base, float freq_scale) {
    const float theta_scale = std::pow(base, -2.0f / float(n_rot));
    float theta = float(pos);
    for (int64_t i = 0; i < n_rot; i += 2) {
        const float angle = freq_scale * theta;
        cache[i] = std::cos(angle);
        cache[i + 1] = std::sin(angle);
        theta *= theta_scale;
    }
}

// Rotates adjacent pairs (x[2i], x[2i+1]) of each head's first n_rot dimensions.
void rope(float* x, int64_t n_heads, int64_t head_dim, int64_t n_rot, const float* cache) {
    for (int64_t h = 0; h < n_heads; ++h) {
        float* v = x + h * head_dim;
        for (int64_t i = 0; i < n_rot; i += 2) {
            const float c = cache[i], s = cache[i + 1];
            const float x0 = v[i], x1 = v[i + 1];
            v[i] = x0 * c - x1 * s;
            v[i + 1] = x0 * s + x1 * c;
        }
    }
}

float silu(float x) {
    return x / (1.0f + std::exp(-x));
}

} // namespace

LlamaContext::LlamaContext(const LlamaModel& model, int64_t n_ctx)
    : model_(model), hp_(model.hparams()),
      cache_(hp_.n_layer, n_ctx > 0 ? n_ctx : hp_.n_ctx_train, hp_.n_embd_kv()),
      x_(size_t(hp_.n_embd)), xb_(size_t(hp_.n_embd)), q_(size_t(hp_.n_head * hp_.head_dim)),
      att_out_(size_t(hp_.n_head * hp_.head_dim)), scores_(size_t(cache_.n_ctx())),
      sub_out_(size_t(hp_.n_embd)), gate_(size_t(hp_.n_ff)), up_(size_t(hp_.n_ff)),
      rope_cache_(size_t(hp_.n_rot)), logits_(size_t(hp_.n_vocab)),
      input_(std::max(hp_.n_embd, std::max(hp_.n_ff, hp_.n_head * hp_.head_dim))) {}

const float* LlamaContext::decode(int32_t token) {
    if (token < 0 || token >= hp_.n_vocab) {
        throw Error("token id " + std::to_string(token) + " is out of range (expected 0 to " +
                    std::to_string(hp_.n_vocab - 1) + ")");
    }
    if (n_past_ >= cache_.n_ctx()) {
        throw Error("context is full (" + std::to_string(cache_.n_ctx()) + " tokens)");
    }
    const int64_t pos = n_past_;
    const int64_t n_embd = hp_.n_embd;

    model_.token_embd.traits->dequantize_row(model_.token_embd.row(token), x_.data(), n_embd);
    rope_angles(rope_cache_.data(), pos, hp_.n_rot, hp_.rope_freq_base, hp_.rope_freq_scale);

    for (int64_t l = 0; l < hp_.n_layer; ++l) {
        const LlamaLayer& layer = model_.layers[size_t(l)];

        // Attention block: x += wo · attention(rope(wq·n), rope(wk·n), wv·n), n = rmsnorm(x).
        rmsnorm(xb_.data(), x_.data(), layer.attn_norm.data(), n_embd, hp_.rms_eps);
        float* k = cache_.key(l, pos);
        float* v = cache_.value(l, pos);
        input_.set(xb_.data(), n_embd);
        matvec(layer.wq, input_, q_.data());
        matvec(layer.wk, input_, k);
        matvec(layer.wv, input_, v);
        rope(q_.data(), hp_.n_head, hp_.head_dim, hp_.n_rot, rope_cache_.data());
        rope(k, hp_.n_head_kv, hp_.head_dim, hp_.n_rot, rope_cache_.data());
        attention(l, pos);
        input_.set(att_out_.data(), hp_.n_head * hp_.head_dim);
        matvec(layer.wo, input_, sub_out_.data());
        for (int64_t i = 0; i < n_embd; ++i) x_[size_t(i)] += sub_out_[size_t(i)];

        // Feed-forward block (SwiGLU): x += w_down · (silu(w_gate·n) * w_up·n), n = rmsnorm(x).
        rmsnorm(xb_.data(), x_.data(), layer.ffn_norm.data(), n_embd, hp_.rms_eps);
        input_.set(xb_.data(), n_embd);
        matvec(layer.w_gate, input_, gate_.data());
        matvec(layer.w_up, input_, up_.data());
        for (int64_t i = 0; i < hp_.n_ff; ++i)
            gate_[size_t(i)] = silu(gate_[size_t(i)]) * up_[size_t(i)];
        input_.set(gate_.data(), hp_.n_ff);
        matvec(layer.w_down, input_, sub_out_.data());
        for (int64_t i = 0; i < n_embd; ++i) x_[size_t(i)] += sub_out_[size_t(i)];
    }

    rmsnorm(xb_.data(), x_.data(), model_.output_norm.data(), n_embd, hp_.rms_eps);
    input_.set(xb_.data(), n_embd);
    matvec(model_.output, input_, logits_.data());
    ++n_past_;
    return logits_.data();
}

// Grouped-query attention of every query head over positions 0..pos: head h reads KV head
// h / (n_head / n_head_kv).
void LlamaContext::attention(int64_t layer, int64_t pos) {
    const int64_t head_dim = hp_.head_dim;
    const int64_t group = hp_.n_head / hp_.n_head_kv;
    const float scale = 1.0f / std::sqrt(float(head_dim));
    for (int64_t h = 0; h < hp_.n_head; ++h) {
        const float* q = q_.data() + h * head_dim;
        const int64_t kv_offset = (h / group) * head_dim;
        float max_score = -INFINITY;
        for (int64_t t = 0; t <= pos; ++t) {
            const float* k = cache_.key(layer, t) + kv_offset;
            float dot = 0.0f;
            for (int64_t i = 0; i < head_dim; ++i) dot += q[i] * k[i];
            scores_[size_t(t)] = dot * scale;
            if (scores_[size_t(t)] > max_score) max_score = scores_[size_t(t)];
        }
        double sum = 0.0;
        for (int64_t t = 0; t <= pos; ++t) {
            scores_[size_t(t)] = std::exp(scores_[size_t(t)] - max_score);
            sum += scores_[size_t(t)];
        }
        const float inv_sum = float(1.0 / sum);
        float* out = att_out_.data() + h * head_dim;
        for (int64_t i = 0; i < head_dim; ++i) out[i] = 0.0f;
        for (int64_t t = 0; t <= pos; ++t) {
            const float* v = cache_.value(layer, t) + kv_offset;
            const float p = scores_[size_t(t)] * inv_sum;
            for (int64_t i = 0; i < head_dim; ++i) out[i] += p * v[i];
        }
    }
}

} // namespace woolly
