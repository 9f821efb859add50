// context.cpp — the Llama forward pass for one token, written to read like the paper.
#include "context.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "error.h"
#include "kernels.h"
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

// Attention of query head h over positions 0..pos (grouped-query: it reads KV head
// h / (n_head / n_head_kv)). q [head_dim], scores [>= pos + 1], out [head_dim].
void attention_head(const LlamaHyperParams& hp, const KvCache& cache, int64_t layer, int64_t pos,
                    int64_t h, const float* q, float* scores, float* out, VecDotFn dot_f32) {
    const int64_t head_dim = hp.head_dim;
    const int64_t kv_offset = (h / (hp.n_head / hp.n_head_kv)) * head_dim;
    const float scale = 1.0f / std::sqrt(float(head_dim));
    float max_score = -INFINITY;
    for (int64_t t = 0; t <= pos; ++t) {
        scores[t] = dot_f32(cache.key(layer, t) + kv_offset, q, head_dim) * scale;
        max_score = std::max(max_score, scores[t]);
    }
    double sum = 0.0;
    for (int64_t t = 0; t <= pos; ++t) {
        scores[t] = std::exp(scores[t] - max_score);
        sum += scores[t];
    }
    const float inv_sum = float(1.0 / sum);
    for (int64_t i = 0; i < head_dim; ++i) out[i] = 0.0f;
    for (int64_t t = 0; t <= pos; ++t) {
        const float* v = cache.value(layer, t) + kv_offset;
        const float p = scores[t] * inv_sum;
        for (int64_t i = 0; i < head_dim; ++i) out[i] += p * v[i];
    }
}

} // namespace

ForwardScratch::ForwardScratch(const LlamaModel& model, int64_t max_ctx, ThreadPool* pool,
                               int64_t max_batch, WeightCache* cache)
    : max_batch_(max_batch), xb_(size_t(max_batch * model.hparams().n_embd)),
      q_(size_t(max_batch * model.hparams().n_head * model.hparams().head_dim)),
      att_out_(size_t(max_batch * model.hparams().n_head * model.hparams().head_dim)),
      scores_(size_t(max_ctx) * size_t(pool ? pool->size() : 1)),
      sub_out_(size_t(max_batch * model.hparams().n_embd)),
      gate_(size_t(max_batch * model.hparams().n_ff)),
      up_(size_t(max_batch * model.hparams().n_ff)),
      rope_cache_(size_t(max_batch * model.hparams().n_rot)),
      input_(std::max({model.hparams().n_embd, model.hparams().n_ff,
                       model.hparams().n_head * model.hparams().head_dim}),
             max_batch),
      pool_(pool), cache_(cache) {}

void embed_token(const LlamaModel& model, int32_t token, float* x) {
    const int64_t n_vocab = model.hparams().n_vocab;
    if (token < 0 || token >= n_vocab) {
        throw Error("token id " + std::to_string(token) + " is out of range (expected 0 to " +
                    std::to_string(n_vocab - 1) + ")");
    }
    model.token_embd.traits->dequantize_row(model.token_embd.row(token), x, model.hparams().n_embd);
}

void run_layers(const LlamaModel& model, int64_t first, int64_t last, int64_t pos, int64_t n_tokens,
                float* x, KvCache& cache, ForwardScratch& s) {
    const LlamaHyperParams& hp = model.hparams();
    if (n_tokens < 1 || n_tokens > s.max_batch_) {
        throw Error("a batch of " + std::to_string(n_tokens) + " tokens (expected 1 to " +
                    std::to_string(s.max_batch_) + ")");
    }
    const int n_threads = s.pool_ ? s.pool_->size() : 1;
    const int64_t scores_per_thread = int64_t(s.scores_.size()) / n_threads;
    if (pos < 0 || pos + n_tokens > cache.n_ctx() || scores_per_thread < pos + n_tokens) {
        throw Error("context is full (" + std::to_string(cache.n_ctx()) + " tokens)");
    }
    const int64_t n_embd = hp.n_embd, n_q = hp.n_head * hp.head_dim, n_kv = hp.n_embd_kv();
    const int64_t n_ff = hp.n_ff, n = n_tokens;
    const VecDotFn dot_f32 = active_kernels().dot(TensorType::F32);
    for (int64_t t = 0; t < n; ++t)
        rope_angles(&s.rope_cache_[size_t(t * hp.n_rot)], pos + t, hp.n_rot, hp.rope_freq_base,
                    hp.rope_freq_scale);
    // Buffers hold one row per token: x [n][n_embd], q [n][n_q], gate/up [n][n_ff], ...
    auto row = [](std::vector<float>& v, int64_t t, int64_t width) { return v.data() + t * width; };

    for (int64_t l = first; l < last; ++l) {
        const LlamaLayer& layer = model.layers[size_t(l)];

        // Attention block: x += wo · attention(rope(wq·n), rope(wk·n), wv·n), n = rmsnorm(x).
        // Keys and values go straight into the cache, whose positions are contiguous.
        for (int64_t t = 0; t < n; ++t)
            rmsnorm(row(s.xb_, t, n_embd), x + t * n_embd, layer.attn_norm.data(), n_embd,
                    hp.rms_eps);
        s.input_.set(s.xb_.data(), n_embd, n);
        matmul(layer.wq, s.input_, s.q_.data(), s.pool_, s.cache_);
        matmul(layer.wk, s.input_, cache.key(l, pos), s.pool_, s.cache_);
        matmul(layer.wv, s.input_, cache.value(l, pos), s.pool_, s.cache_);
        for (int64_t t = 0; t < n; ++t) {
            const float* angles = &s.rope_cache_[size_t(t * hp.n_rot)];
            rope(row(s.q_, t, n_q), hp.n_head, hp.head_dim, hp.n_rot, angles);
            rope(cache.key(l, pos + t), hp.n_head_kv, hp.head_dim, hp.n_rot, angles);
        }
        (void)n_kv;
        // Every (token, head) pair on its own, split over the threads; token t sees
        // positions up to its own (pos + t): causal within the batch.
        auto attend = [&](int index, int count) {
            float* scores = s.scores_.data() + index * scores_per_thread;
            const int64_t pairs = n * hp.n_head;
            for (int64_t p = pairs * index / count; p < pairs * (index + 1) / count; ++p) {
                const int64_t t = p / hp.n_head, h = p % hp.n_head;
                attention_head(hp, cache, l, pos + t, h, row(s.q_, t, n_q) + h * hp.head_dim,
                               scores, row(s.att_out_, t, n_q) + h * hp.head_dim, dot_f32);
            }
        };
        if (n_threads > 1)
            s.pool_->run(attend);
        else
            attend(0, 1);
        s.input_.set(s.att_out_.data(), n_q, n);
        matmul(layer.wo, s.input_, s.sub_out_.data(), s.pool_, s.cache_);
        for (int64_t i = 0; i < n * n_embd; ++i) x[i] += s.sub_out_[size_t(i)];

        // Feed-forward block (SwiGLU): x += w_down · (silu(w_gate·n) * w_up·n), n = rmsnorm(x).
        for (int64_t t = 0; t < n; ++t)
            rmsnorm(row(s.xb_, t, n_embd), x + t * n_embd, layer.ffn_norm.data(), n_embd,
                    hp.rms_eps);
        s.input_.set(s.xb_.data(), n_embd, n);
        matmul(layer.w_gate, s.input_, s.gate_.data(), s.pool_, s.cache_);
        matmul(layer.w_up, s.input_, s.up_.data(), s.pool_, s.cache_);
        for (int64_t i = 0; i < n * n_ff; ++i)
            s.gate_[size_t(i)] = silu(s.gate_[size_t(i)]) * s.up_[size_t(i)];
        s.input_.set(s.gate_.data(), n_ff, n);
        matmul(layer.w_down, s.input_, s.sub_out_.data(), s.pool_, s.cache_);
        for (int64_t i = 0; i < n * n_embd; ++i) x[i] += s.sub_out_[size_t(i)];
    }
}

void compute_logits(const LlamaModel& model, const float* x, float* logits, ForwardScratch& s) {
    const LlamaHyperParams& hp = model.hparams();
    rmsnorm(s.xb_.data(), x, model.output_norm.data(), hp.n_embd, hp.rms_eps);
    s.input_.set(s.xb_.data(), hp.n_embd, 1);
    matmul(model.output, s.input_, logits, s.pool_, s.cache_);
}

LlamaContext::LlamaContext(const LlamaModel& model, int64_t n_ctx, ThreadPool* pool,
                           int64_t max_batch, WeightCache* cache)
    : model_(model),
      cache_(model.hparams().n_layer, n_ctx > 0 ? n_ctx : model.hparams().n_ctx_train,
             model.hparams().n_embd_kv()),
      scratch_(model, cache_.n_ctx(), pool, max_batch, cache), max_batch_(max_batch),
      x_(size_t(max_batch * model.hparams().n_embd)), logits_(size_t(model.hparams().n_vocab)) {}

const float* LlamaContext::decode(int32_t token) {
    return decode_batch(&token, 1);
}

const float* LlamaContext::decode_batch(const int32_t* tokens, int64_t n_tokens) {
    const int64_t n_embd = model_.hparams().n_embd;
    if (n_tokens < 1) throw Error("decode_batch needs at least one token");
    if (n_past_ + n_tokens > cache_.n_ctx()) {
        throw Error("context is full (" + std::to_string(cache_.n_ctx()) + " tokens)");
    }
    for (int64_t done = 0; done < n_tokens; done += max_batch_) {
        const int64_t n = std::min(max_batch_, n_tokens - done);
        for (int64_t t = 0; t < n; ++t)
            embed_token(model_, tokens[done + t], x_.data() + t * n_embd);
        run_layers(model_, 0, model_.hparams().n_layer, n_past_, n, x_.data(), cache_, scratch_);
        n_past_ += n;
        if (done + n == n_tokens)
            compute_logits(model_, x_.data() + (n - 1) * n_embd, logits_.data(), scratch_);
    }
    return logits_.data();
}

} // namespace woolly
