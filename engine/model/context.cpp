// context.cpp — the forward pass of the Llama family, written to read like the paper; where
// architectures differ it reads their traits (rope layout, biases), never their names.
#include "engine/model/context.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "engine/error.h"
#include "engine/kernels/kernels.h"
#include "engine/model/matmul.h"
#include "engine/kernels/ops.h"

namespace woolly {
namespace {

// The kernels attention uses: the cache's rows to float, and float products.
struct AttentionKernels {
    DequantizeRowFn to_float; // a key or value slice of the cache's type -> float
    double (*exp_sum)(float*, int64_t, float);
    GemmF32Fn gemm;
};

AttentionKernels attention_kernels(TensorType cache_type) {
    const KernelTable& k = active_kernels();
    return {k.dequantizer(cache_type), k.exp_sum, k.gemm_f32};
}

// Positions whose keys or values are held as float at a time: 64 x head_dim floats, in L1/L2.
constexpr int64_t kAttentionChunk = 64;
// Tokens of a batch that share each chunk of keys and values once it is converted.
constexpr int64_t kAttentionTokens = 4;

// Per-thread buffers of attention_group.
struct AttentionScratch {
    float* scores; // [kAttentionTokens][group][max_ctx] scores, then probabilities
    int64_t max_ctx;
    float* keys_t; // [head_dim][kAttentionChunk] a chunk of key rows as float, transposed
    float* values; // [kAttentionChunk][head_dim] a chunk of value rows as float
};

// Attention of the query heads that share KV head g (grouped-query: heads g * group ..
// g * group + group - 1) for `n_tokens` consecutive tokens, token i at position pos + i and
// seeing positions 0..pos + i. Keys and values are converted to float once per chunk for all
// of them; then, per token, two small products:
//   scores [group][n_pos] = q [group][head_dim] · keys^T [head_dim][n_pos] / sqrt(head_dim)
//   out [group][head_dim] = softmax(scores) [group][n_pos] · values [n_pos][head_dim]
// q(i) and out(i) are token i's [n_head][head_dim] rows (of a batch, n_q floats apart).
void attention_group(const LlamaHyperParams& hp, const KvCache& cache, const AttentionKernels& k,
                     int64_t layer, int64_t pos, int64_t n_tokens, int64_t g, const float* q_all,
                     int64_t n_q, AttentionScratch s, float* out_all) {
    const int64_t head_dim = hp.head_dim, group = hp.n_head / hp.n_head_kv;
    const uint64_t kv_offset = uint64_t(g) * cache.head_bytes();
    const int64_t last_pos = pos + n_tokens - 1; // the last token sees up to here
    // A local layer's token at p sees positions p - n_swa + 1 .. p; the chunks before the
    // first token's window are not read.
    const int64_t window = hp.is_local(layer) ? hp.n_swa : 0;
    auto first_seen = [&](int64_t i) {
        return window ? std::max<int64_t>(0, pos + i - window + 1) : 0;
    };
    const int64_t first_chunk = first_seen(0) / kAttentionChunk * kAttentionChunk;
    auto query = [&](int64_t i) { return q_all + i * n_q + g * group * head_dim; };
    auto scores = [&](int64_t i) { return s.scores + i * group * s.max_ctx; };
    auto seen = [&](int64_t i, int64_t start) { // of chunk `start`, token i's positions
        return std::min(kAttentionChunk, pos + i + 1 - start);
    };
    for (int64_t start = first_chunk; start <= last_pos; start += kAttentionChunk) {
        const int64_t n = std::min(kAttentionChunk, last_pos + 1 - start);
        for (int64_t t = 0; t < n; ++t) { // s.values serves as the row buffer here
            k.to_float(cache.key(layer, start + t) + kv_offset, s.values, head_dim);
            for (int64_t d = 0; d < head_dim; ++d) s.keys_t[d * kAttentionChunk + t] = s.values[d];
        }
        for (int64_t i = 0; i < n_tokens; ++i)
            if (seen(i, start) > 0)
                k.gemm(group, seen(i, start), head_dim, query(i), head_dim, s.keys_t,
                       kAttentionChunk, scores(i) + start, s.max_ctx, false);
    }
    // Softmax of each head's scaled scores (soft-capped, c * tanh(score / c), where the model
    // caps them) over the positions the token sees; the ones before its window weigh 0.
    const float scale = hp.attn_scale, cap = hp.attn_softcap;
    for (int64_t i = 0; i < n_tokens; ++i) {
        const int64_t lo = first_seen(i);
        for (int64_t j = 0; j < group; ++j) {
            float* row = scores(i) + j * s.max_ctx;
            float max_score = -INFINITY;
            for (int64_t t = lo; t <= pos + i; ++t) {
                row[t] *= scale;
                if (cap > 0.0f) row[t] = cap * std::tanh(row[t] / cap);
                max_score = std::max(max_score, row[t]);
            }
            const float inv_sum = float(1.0 / k.exp_sum(row + lo, pos + i + 1 - lo, max_score));
            for (int64_t t = lo; t <= pos + i; ++t) row[t] *= inv_sum;
            for (int64_t t = first_chunk; t < lo; ++t) row[t] = 0.0f;
        }
    }
    for (int64_t start = first_chunk; start <= last_pos; start += kAttentionChunk) {
        const int64_t n = std::min(kAttentionChunk, last_pos + 1 - start);
        for (int64_t t = 0; t < n; ++t)
            k.to_float(cache.value(layer, start + t) + kv_offset, s.values + t * head_dim,
                       head_dim);
        for (int64_t i = 0; i < n_tokens; ++i)
            if (seen(i, start) > 0)
                k.gemm(group, head_dim, seen(i, start), scores(i) + start, s.max_ctx, s.values,
                       head_dim, out_all + i * n_q + g * group * head_dim, head_dim,
                       start > first_chunk);
    }
}

// Rotates a key row and writes it, with its value row, into the cache's type: one pass over
// each row while it is in L1.
void store_kv(const LlamaHyperParams& hp, KvCache& cache, int64_t layer, int64_t pos, float* key,
              const float* value, const float* angles) {
    rope(key, hp.n_head_kv, hp.head_dim, hp.n_rot, angles, hp.arch->rope == RopeStyle::Neox);
    const int64_t n_kv = hp.n_embd_kv();
    if (cache.type() == TensorType::F32) {
        std::memcpy(cache.key(layer, pos), key, size_t(n_kv) * sizeof(float));
        std::memcpy(cache.value(layer, pos), value, size_t(n_kv) * sizeof(float));
        return;
    }
    const QuantizeRowFn convert = active_kernels().quantizer(cache.type());
    convert(key, cache.key(layer, pos), n_kv);
    convert(value, cache.value(layer, pos), n_kv);
}

} // namespace

// Floats of attention scratch per thread: the scores of a group of query heads for
// kAttentionTokens tokens, a chunk of keys and one of values, and 16 spare.
static int64_t attention_floats(const LlamaHyperParams& hp, int64_t max_ctx) {
    const int64_t group = hp.n_head / hp.n_head_kv;
    return kAttentionTokens * group * max_ctx + 2 * kAttentionChunk * hp.head_dim + 16;
}

// The sizes of the mixture's and the local rope's arrays, for pool_bytes and the constructor:
// the feed-forward's widest rows (an expert's may be wider than n_ff), a batch's expert choices,
// and whether local layers turn by a rope base of their own (no array for either otherwise).
static int64_t ffn_width(const LlamaHyperParams& hp) {
    return std::max(hp.n_ff, hp.n_ff_exp);
}
static int64_t expert_choices(const LlamaHyperParams& hp, int64_t max_batch) {
    return hp.n_expert > 0 ? max_batch * hp.n_expert_used : 0;
}
static bool local_rope(const LlamaHyperParams& hp) {
    return hp.arch->swa_rope_base > 0.0f && hp.n_swa > 0;
}

size_t ForwardScratch::pool_bytes(const LlamaModel& model, int64_t max_ctx, int threads,
                                  int64_t max_batch) {
    const LlamaHyperParams& hp = model.hparams();
    auto floats = [](int64_t n) { return MemoryPool::bytes_for<float>(size_t(n)); };
    auto ints = [](int64_t n) { return MemoryPool::bytes_for<int32_t>(size_t(n)); };
    const int64_t n_q = hp.n_head * hp.head_dim;
    const int64_t choices = expert_choices(hp, max_batch);
    const bool moe = hp.n_expert > 0;
    return floats(max_batch * hp.n_embd) * 2 + floats(max_batch * n_q) * 2 +
           floats(max_batch * hp.n_embd_kv()) * 2 +
           floats(attention_floats(hp, max_ctx) * threads) + floats(max_batch * ffn_width(hp)) * 2 +
           floats(max_batch * hp.n_rot) + floats(local_rope(hp) ? max_batch * hp.n_rot : 0) +
           floats(max_batch * hp.n_expert) + ints(choices) + floats(choices) + ints(choices) +
           ints(moe ? hp.n_expert + 1 : 0) + floats(moe ? max_batch * hp.n_embd : 0);
}

int64_t ForwardScratch::max_input(const LlamaModel& model) {
    const LlamaHyperParams& hp = model.hparams();
    return std::max({hp.n_embd, hp.n_ff, hp.n_ff_exp, hp.n_head * hp.head_dim});
}

size_t ForwardScratch::bytes_for(const LlamaModel& model, int64_t max_ctx, int threads,
                                 int64_t max_batch) {
    return pool_bytes(model, max_ctx, threads, max_batch) +
           MatmulInput::bytes_for(max_input(model), max_batch);
}

ForwardScratch::ForwardScratch(const LlamaModel& model, int64_t max_ctx, ThreadPool* pool,
                               int64_t max_batch, WeightCache* cache)
    : max_batch_(max_batch), bytes_(bytes_for(model, max_ctx, pool ? pool->size() : 1, max_batch)),
      max_ctx_(max_ctx), attention_stride_(attention_floats(model.hparams(), max_ctx)),
      memory_(pool_bytes(model, max_ctx, pool ? pool->size() : 1, max_batch)),
      xb_(memory_.take<float>(size_t(max_batch * model.hparams().n_embd))),
      q_(memory_.take<float>(
          size_t(max_batch * model.hparams().n_head * model.hparams().head_dim))),
      att_out_(memory_.take<float>(
          size_t(max_batch * model.hparams().n_head * model.hparams().head_dim))),
      key_(memory_.take<float>(size_t(max_batch * model.hparams().n_embd_kv()))),
      value_(memory_.take<float>(size_t(max_batch * model.hparams().n_embd_kv()))),
      attention_(memory_.take<float>(size_t(attention_stride_ * (pool ? pool->size() : 1)))),
      sub_out_(memory_.take<float>(size_t(max_batch * model.hparams().n_embd))),
      gate_(memory_.take<float>(size_t(max_batch * ffn_width(model.hparams())))),
      up_(memory_.take<float>(size_t(max_batch * ffn_width(model.hparams())))),
      rope_cache_(memory_.take<float>(size_t(max_batch * model.hparams().n_rot))),
      rope_local_(memory_.take<float>(
          size_t(local_rope(model.hparams()) ? max_batch * model.hparams().n_rot : 0))),
      router_(memory_.take<float>(size_t(max_batch * model.hparams().n_expert))),
      chosen_(memory_.take<int32_t>(size_t(expert_choices(model.hparams(), max_batch)))),
      weights_(memory_.take<float>(size_t(expert_choices(model.hparams(), max_batch)))),
      by_expert_(memory_.take<int32_t>(size_t(expert_choices(model.hparams(), max_batch)))),
      first_of_(memory_.take<int32_t>(
          size_t(model.hparams().n_expert > 0 ? model.hparams().n_expert + 1 : 0))),
      gathered_(memory_.take<float>(
          size_t(model.hparams().n_expert > 0 ? max_batch * model.hparams().n_embd : 0))),
      input_(max_input(model), max_batch), pool_(pool), cache_(cache) {}

void embed_token(const LlamaModel& model, int32_t token, float* x) {
    const int64_t n_vocab = model.hparams().n_vocab;
    if (token < 0 || token >= n_vocab) {
        throw Error("token id " + std::to_string(token) + " is out of range (expected 0 to " +
                    std::to_string(n_vocab - 1) + ")");
    }
    const int64_t n_embd = model.hparams().n_embd;
    model.token_embd.traits->dequantize_row(model.token_embd.row(token), x, n_embd);
    if (model.hparams().arch->gemma) { // Gemma scales its embeddings by sqrt(n_embd)
        const float scale = std::sqrt(float(n_embd));
        for (int64_t i = 0; i < n_embd; ++i) x[i] *= scale;
    }
}

// x [n][n_embd] += out, each row of out RMS-normed by `post_norm` first where the model has one
// (Gemma's post_attention_norm and post_ffw_norm).
void add_sublayer(const NormWeights& post_norm, float eps, int64_t n_embd, int64_t n, float* out,
                  float* x) {
    for (int64_t t = 0; t < n && !post_norm.empty(); ++t)
        rmsnorm(out + t * n_embd, out + t * n_embd, post_norm.data(), n_embd, eps);
    for (int64_t i = 0; i < n * n_embd; ++i) x[i] += out[i];
}

// The feed-forward block as a mixture of experts: n = rmsnorm(x); the router's softmax picks
// each token's n_expert_used likeliest experts, their probabilities renormalised over them as
// weights; then x += sum over chosen e of weight_e · w_down_e · (silu(w_gate_e·n) * w_up_e·n).
// Tokens are grouped by expert, so each expert's weights are read once for all the batch's
// tokens routed to it, and an expert no token chose is not read at all. A token's result is
// the same whatever else is in the batch (its experts are added in expert order either way).
void mixture_of_experts(const LlamaHyperParams& hp, const LlamaLayer& layer, int64_t n, float* x,
                        ForwardScratch& s) {
    const int64_t n_embd = hp.n_embd, n_ff = hp.n_ff_exp, n_expert = hp.n_expert;
    const int64_t used = hp.n_expert_used;
    s.input_.set_rmsnorm(x, layer.ffn_norm.data(), hp.rms_eps, n_embd, n, s.xb_.data(),
                         layer.router.traits->vec_dot_type, s.pool_);
    matmul(layer.router, s.input_, s.router_.data(), s.pool_, s.cache_);

    // Each token's experts: softmax over all, the `used` likeliest (the lower index first on a
    // tie), weighted by their probabilities over the chosen ones' sum.
    std::fill(s.first_of_.data(), s.first_of_.data() + n_expert + 1, 0);
    for (int64_t t = 0; t < n; ++t) {
        float* p = s.router_.data() + t * n_expert;
        const float max_logit = *std::max_element(p, p + n_expert);
        double sum = 0;
        for (int64_t e = 0; e < n_expert; ++e) sum += (p[e] = std::exp(p[e] - max_logit));
        for (int64_t e = 0; e < n_expert; ++e) p[e] = float(p[e] / sum);
        int32_t* chosen = s.chosen_.data() + t * used;
        float* weight = s.weights_.data() + t * used;
        float chosen_sum = 0;
        for (int64_t j = 0; j < used; ++j) {
            int32_t best = -1;
            for (int64_t e = 0; e < n_expert; ++e) {
                if (std::find(chosen, chosen + j, int32_t(e)) != chosen + j) continue;
                if (best < 0 || p[e] > p[best]) best = int32_t(e);
            }
            chosen[j] = best;
            weight[j] = p[best];
            chosen_sum += p[best];
            ++s.first_of_[size_t(best) + 1];
        }
        for (int64_t j = 0; j < used; ++j) weight[j] /= chosen_sum;
    }
    // The choices grouped by expert (a counting sort), token order kept within each.
    for (int64_t e = 0; e < n_expert; ++e) s.first_of_[size_t(e) + 1] += s.first_of_[size_t(e)];
    for (int64_t c = 0; c < n * used; ++c) {
        const int32_t e = s.chosen_[size_t(c)];
        int32_t& next = s.first_of_[size_t(e)];
        s.by_expert_[size_t(next++)] = int32_t(c);
    }
    for (int64_t e = n_expert; e > 0; --e) s.first_of_[size_t(e)] = s.first_of_[size_t(e) - 1];
    s.first_of_[0] = 0;

    for (int64_t e = 0; e < n_expert; ++e) {
        const int32_t begin = s.first_of_[size_t(e)], end = s.first_of_[size_t(e) + 1];
        const int64_t count = end - begin;
        if (count == 0) continue;
        ++s.experts_read_;
        for (int64_t i = 0; i < count; ++i) { // gathered [count][n_embd]: the routed rows
            const int64_t t = s.by_expert_[size_t(begin + i)] / used;
            std::memcpy(s.gathered_.data() + i * n_embd, s.xb_.data() + t * n_embd,
                        size_t(n_embd) * sizeof(float));
        }
        s.input_.set(s.gathered_.data(), n_embd, count);
        matmul_same_input({{&layer.gate_exps[size_t(e)], s.gate_.data()},
                           {&layer.up_exps[size_t(e)], s.up_.data()}},
                          s.input_, s.pool_, s.cache_);
        active_kernels().swiglu(s.gate_.data(), s.up_.data(), count * n_ff);
        s.input_.set(s.gate_.data(), n_ff, count);
        matmul(layer.down_exps[size_t(e)], s.input_, s.sub_out_.data(), s.pool_, s.cache_);
        for (int64_t i = 0; i < count; ++i) { // x[t] += weight · expert output
            const int32_t c = s.by_expert_[size_t(begin + i)];
            const float w = s.weights_[size_t(c)];
            float* row = x + (c / used) * n_embd;
            const float* out = s.sub_out_.data() + i * n_embd;
            for (int64_t d = 0; d < n_embd; ++d) row[d] += w * out[d];
        }
    }
    if (s.cache_) s.cache_->done_with_experts(layer); // streamed: their pages leave memory
}

void run_layers(const LlamaModel& model, int64_t first, int64_t last, const BatchSegment* segments,
                int64_t n_segments, float* x, ForwardScratch& s) {
    const LlamaHyperParams& hp = model.hparams();
    int64_t n = 0; // tokens in the batch
    for (int64_t i = 0; i < n_segments; ++i) {
        const BatchSegment& seg = segments[i];
        if (seg.n_tokens < 1 || seg.n_tokens > s.max_batch_ - n) {
            throw Error("a batch of " + std::to_string(n + seg.n_tokens) +
                        " tokens (expected 1 to " + std::to_string(s.max_batch_) + ")");
        }
        if (seg.pos < 0 || seg.pos + seg.n_tokens > seg.cache->n_ctx() ||
            s.max_ctx_ < seg.pos + seg.n_tokens) {
            throw Error("context is full (" + std::to_string(seg.cache->n_ctx()) + " tokens)");
        }
        if (seg.n_tokens > seg.cache->rewind_limit()) { // its rings were sized for fewer
            throw Error("a sequence's " + std::to_string(seg.n_tokens) +
                        " tokens in one step (its KV cache's sliding-window rings take at most " +
                        std::to_string(seg.cache->rewind_limit()) + ")");
        }
        n += seg.n_tokens;
    }
    if (n < 1) throw Error("a batch of 0 tokens (expected 1 to " + std::to_string(s.max_batch_) + ")");
    const int64_t n_embd = hp.n_embd, n_q = hp.n_head * hp.head_dim, n_kv = hp.n_embd_kv();
    const int64_t n_ff = hp.n_ff;
    const AttentionKernels attention_kernel = attention_kernels(segments[0].cache->type());
    for (int64_t i = 1; i < n_segments; ++i)
        if (segments[i].cache->type() != segments[0].cache->type())
            throw Error("the caches of one batch differ in type");
    const bool neox = hp.arch->rope == RopeStyle::Neox;
    const float* rope_factors = model.rope_freqs.empty() ? nullptr : model.rope_freqs.data();
    // Each segment's rows: [row0, row0 + n_tokens) of the batch.
    auto for_each_token = [&](auto&& f) { // f(segment, row, position)
        int64_t row0 = 0;
        for (int64_t i = 0; i < n_segments; ++i) {
            for (int64_t t = 0; t < segments[i].n_tokens; ++t)
                f(segments[i], row0 + t, segments[i].pos + t);
            row0 += segments[i].n_tokens;
        }
    };
    // Local (sliding-window) layers may turn by a base of their own (Gemma 3's 10,000), unscaled.
    const bool own_local_rope = local_rope(hp);
    for_each_token([&](const BatchSegment&, int64_t t, int64_t pos) {
        rope_angles(&s.rope_cache_[size_t(t * hp.n_rot)], pos, hp.n_rot, hp.rope_freq_base,
                    hp.rope_freq_scale, rope_factors);
        if (own_local_rope)
            rope_angles(&s.rope_local_[size_t(t * hp.n_rot)], pos, hp.n_rot, hp.arch->swa_rope_base,
                        1.0f, nullptr);
    });
    // Attention tiles: up to kAttentionTokens consecutive tokens of one segment, times KV heads.
    int64_t tiles = 0;
    for (int64_t i = 0; i < n_segments; ++i)
        tiles += (segments[i].n_tokens + kAttentionTokens - 1) / kAttentionTokens;
    auto bias = [](const NormWeights& b) { return b.empty() ? nullptr : b.data(); };
    // Buffers hold one row per token: x [n][n_embd], q [n][n_q], gate/up [n][n_ff], ...
    auto row = [](const PoolArray<float>& v, int64_t t, int64_t width) {
        return v.data() + t * width;
    };

    for (int64_t l = first; l < last; ++l) {
        const LlamaLayer& layer = model.layers[size_t(l)];

        // Attention block: x += wo · attention(rope(wq·n + bq), rope(wk·n + bk), wv·n + bv),
        // n = rmsnorm(x); the biases only where the model has them, and where it has QK-norm,
        // each head of wq·n and wk·n RMS-normed before rope. Keys and values go into
        // each segment's cache in its type, at the segment's positions.
        s.input_.set_rmsnorm(x, layer.attn_norm.data(), hp.rms_eps, n_embd, n, s.xb_.data(),
                             layer.wq.traits->vec_dot_type, s.pool_);
        matmul_same_input({{&layer.wq, s.q_.data(), bias(layer.bq)},
                           {&layer.wk, s.key_.data(), bias(layer.bk)},
                           {&layer.wv, s.value_.data(), bias(layer.bv)}},
                          s.input_, s.pool_, s.cache_);
        if (!layer.q_norm.empty()) { // Qwen3: each head's query and key RMS-normed first
            for (int64_t t = 0; t < n; ++t) {
                for (int64_t h = 0; h < hp.n_head; ++h) {
                    float* q = row(s.q_, t, n_q) + h * hp.head_dim;
                    rmsnorm(q, q, layer.q_norm.data(), hp.head_dim, hp.rms_eps);
                }
                for (int64_t h = 0; h < hp.n_head_kv; ++h) {
                    float* k = row(s.key_, t, n_kv) + h * hp.head_dim;
                    rmsnorm(k, k, layer.k_norm.data(), hp.head_dim, hp.rms_eps);
                }
            }
        }
        const PoolArray<float>& rope_of_layer =
            own_local_rope && hp.is_local(l) ? s.rope_local_ : s.rope_cache_;
        for_each_token([&](const BatchSegment& seg, int64_t t, int64_t pos) {
            const float* angles = &rope_of_layer[size_t(t * hp.n_rot)];
            rope(row(s.q_, t, n_q), hp.n_head, hp.head_dim, hp.n_rot, angles, neox);
            store_kv(hp, *seg.cache, l, pos, row(s.key_, t, n_kv), row(s.value_, t, n_kv), angles);
        });
        // Tiles split over the threads; token t sees its own segment's positions up to its own:
        // causal within the batch, blind to the other segments.
        auto attend = [&](int index, int count) {
            float* mine = s.attention_.data() + index * s.attention_stride_;
            const int64_t group = hp.n_head / hp.n_head_kv;
            const int64_t scores = kAttentionTokens * group * s.max_ctx_;
            const AttentionScratch scratch{mine, s.max_ctx_, mine + scores,
                                           mine + scores + kAttentionChunk * hp.head_dim};
            // Tiles dealt round-robin: later tokens see more positions, so contiguous ranges
            // would leave the last thread the most work.
            int64_t segment = 0, first_tile = 0, row0 = 0; // the segment tile p falls in
            for (int64_t p = index; p < tiles * hp.n_head_kv; p += count) {
                const int64_t tile = p / hp.n_head_kv, g = p % hp.n_head_kv;
                for (;;) {
                    const int64_t seg_tiles =
                        (segments[segment].n_tokens + kAttentionTokens - 1) / kAttentionTokens;
                    if (tile < first_tile + seg_tiles) break;
                    first_tile += seg_tiles;
                    row0 += segments[segment].n_tokens;
                    ++segment;
                }
                const BatchSegment& seg = segments[segment];
                const int64_t t = (tile - first_tile) * kAttentionTokens; // within the segment
                attention_group(hp, *seg.cache, attention_kernel, l, seg.pos + t,
                                std::min(kAttentionTokens, seg.n_tokens - t),
                                g, row(s.q_, row0 + t, n_q), n_q, scratch,
                                row(s.att_out_, row0 + t, n_q));
            }
        };
        run_split(s.pool_, attend);
        s.input_.set(s.att_out_.data(), n_q, n);
        matmul(layer.wo, s.input_, s.sub_out_.data(), s.pool_, s.cache_);
        add_sublayer(layer.post_attn_norm, hp.rms_eps, n_embd, n, s.sub_out_.data(), x);

        if (!layer.gate_exps.empty()) {
            mixture_of_experts(hp, layer, n, x, s);
            continue;
        }
        // Feed-forward block (SwiGLU): x += w_down · (silu(w_gate·n) * w_up·n), n = rmsnorm(x).
        s.input_.set_rmsnorm(x, layer.ffn_norm.data(), hp.rms_eps, n_embd, n, s.xb_.data(),
                             layer.w_gate.traits->vec_dot_type, s.pool_);
        matmul_same_input({{&layer.w_gate, s.gate_.data()}, {&layer.w_up, s.up_.data()}}, s.input_,
                          s.pool_, s.cache_);
        const bool gelu = hp.arch->ffn == FfnActivation::GeluTanh;
        auto activate = [&](int index, int count) {
            const int64_t total = n * n_ff;
            const int64_t begin = total * index / count, end = total * (index + 1) / count;
            if (gelu)
                geglu(s.gate_.data() + begin, s.up_.data() + begin, end - begin);
            else
                active_kernels().swiglu(s.gate_.data() + begin, s.up_.data() + begin, end - begin);
        };
        run_split(n > 1 ? s.pool_ : nullptr, activate); // one token's is too small to hand off
        s.input_.set(s.gate_.data(), n_ff, n);
        matmul(layer.w_down, s.input_, s.sub_out_.data(), s.pool_, s.cache_);
        add_sublayer(layer.post_ffn_norm, hp.rms_eps, n_embd, n, s.sub_out_.data(), x);
    }
}

void run_layers(const LlamaModel& model, int64_t first, int64_t last, int64_t pos, int64_t n_tokens,
                float* x, KvCache& cache, ForwardScratch& scratch) {
    const BatchSegment one{&cache, pos, n_tokens};
    run_layers(model, first, last, &one, 1, x, scratch);
}

void compute_logits(const LlamaModel& model, const float* x, const int64_t* rows, int64_t m,
                    float* logits, ForwardScratch& s) {
    const LlamaHyperParams& hp = model.hparams();
    if (m < 1 || m > s.max_batch_)
        throw Error("logits of " + std::to_string(m) + " rows (expected 1 to " +
                    std::to_string(s.max_batch_) + ")");
    for (int64_t i = 0; i < m; ++i)
        rmsnorm(s.xb_.data() + i * hp.n_embd, x + rows[i] * hp.n_embd, model.output_norm.data(),
                hp.n_embd, hp.rms_eps);
    s.input_.set(s.xb_.data(), hp.n_embd, m);
    // The head takes a few rows (one per sequence of a step), never a prompt: it reads the form
    // generation reads, and a form only prompts read (Q6_K's x16) is neither built nor held for
    // it (Model::for_each_matrix counts the head as not batched).
    WeightCache* cache = WeightCache::reads_x16(model.output, false) ? s.cache_ : nullptr;
    matmul(model.output, s.input_, logits, s.pool_, cache);
    if (const float cap = hp.final_softcap; cap > 0.0f) // Gemma 2: logits = c * tanh(logits / c)
        for (int64_t i = 0; i < m * hp.n_vocab; ++i) logits[i] = cap * std::tanh(logits[i] / cap);
}

void compute_logits(const LlamaModel& model, const float* x, float* logits, ForwardScratch& s) {
    const int64_t row0 = 0;
    compute_logits(model, x, &row0, 1, logits, s);
}

size_t LlamaContext::buffer_bytes_for(const LlamaModel& model, int64_t max_batch) {
    return MemoryPool::bytes_for<float>(size_t(max_batch * model.hparams().n_embd)) +
           MemoryPool::bytes_for<float>(size_t(model.hparams().n_vocab));
}

LlamaContext::LlamaContext(const LlamaModel& model, int64_t n_ctx, ThreadPool* pool,
                           int64_t max_batch, WeightCache* cache, TensorType kv_type)
    : model_(model),
      cache_(model.hparams().n_layer, n_ctx > 0 ? n_ctx : model.hparams().n_ctx_train,
             model.hparams().n_head_kv, model.hparams().head_dim, kv_type,
             model.hparams().kv_windows(), max_batch),
      scratch_(model, cache_.n_ctx(), pool, max_batch, cache), max_batch_(max_batch),
      memory_(buffer_bytes_for(model, max_batch)),
      x_(memory_.take<float>(size_t(max_batch * model.hparams().n_embd))),
      logits_(memory_.take<float>(size_t(model.hparams().n_vocab))) {}

int64_t LlamaContext::truncate(int64_t n_past) {
    if (n_past < 0 || n_past > n_past_)
        throw Error("cannot go back to position " + std::to_string(n_past) +
                    " (the context holds " + std::to_string(n_past_) + ")");
    n_past_ = n_past_ - n_past <= cache_.rewind_limit() ? n_past : 0;
    return n_past_;
}

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
