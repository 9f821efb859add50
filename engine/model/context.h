// context.h — the Llama forward pass, in parts that can run on different threads (embedding,
// a range of layers, the output head), and LlamaContext, which runs them all for one sequence.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/model/kv_cache.h"
#include "engine/model/matmul.h"
#include "engine/runtime/memory_pool.h"
#include "engine/model/model.h"
#include "engine/runtime/thread_pool.h"
#include "engine/model/weight_cache.h"

namespace woolly {

struct BatchSegment;

// Buffers one thread needs to run layers or the head; sized once for the model.
class ForwardScratch {
public:
    // `pool` (may be null: one thread) splits the matmuls; it must outlive the scratch.
    // `max_batch` is the most tokens one run_layers call may take. `cache` (may be null: read
    // every weight from the file) holds the model's repacked weights, shared between scratches.
    ForwardScratch(const LlamaModel& model, int64_t max_ctx, ThreadPool* pool = nullptr,
                   int64_t max_batch = 1, WeightCache* cache = nullptr);

    // Bytes a scratch of these sizes holds (the arrays below and the matmul input's forms),
    // and this one's.
    static size_t bytes_for(const LlamaModel& model, int64_t max_ctx, int threads,
                            int64_t max_batch);
    size_t bytes() const { return bytes_; }
    // Experts whose weights a mixture's layers have read so far (once a step per expert chosen
    // by any of the step's tokens).
    uint64_t experts_read() const { return experts_read_; }

private:
    friend void run_layers(const LlamaModel&, int64_t, int64_t, const BatchSegment*,
                           int64_t, float*, ForwardScratch&);
    friend void compute_logits(const LlamaModel&, const float*, const int64_t*, int64_t, float*,
                               ForwardScratch&);
    friend void mixture_of_experts(const LlamaHyperParams&, const LlamaLayer&, int64_t, float*,
                                   ForwardScratch&);

    // Bytes of memory_ for these sizes (the sum of the arrays below).
    static size_t pool_bytes(const LlamaModel& model, int64_t max_ctx, int threads,
                             int64_t max_batch);
    // The longest vector a matmul of the model takes.
    static int64_t max_input(const LlamaModel& model);

    int64_t max_batch_;
    size_t bytes_;
    int64_t max_ctx_;             // positions the attention scratch has room for
    int64_t attention_stride_;    // floats of attention_ per thread
    MemoryPool memory_;           // every array below, one allocation; each row is per token:
    PoolArray<float> xb_;         // [batch][n_embd] normed input of a sub-layer
    PoolArray<float> q_;          // [batch][n_head * head_dim] queries
    PoolArray<float> att_out_;    // [batch][n_head * head_dim] attention output before wo
    PoolArray<float> key_;        // [batch][n_embd_kv] keys before the cache
    PoolArray<float> value_;      // [batch][n_embd_kv] values before the cache
    PoolArray<float> attention_;  // [threads][attention_stride_]: [group][head_dim] q forms,
                                  // [head_dim] value row, 16 spare, [group][max_ctx] scores
    PoolArray<float> sub_out_;    // [batch][n_embd] output of wo / w_down, added to x
    PoolArray<float> gate_;       // [batch][n_ff] w_gate xb, then silu(gate) * up (n_ff_exp wide
                                  // when wider, for an expert's rows)
    PoolArray<float> up_;         // [batch][n_ff] w_up xb
    PoolArray<float> rope_cache_; // [batch][n_rot] cos, sin pairs of each position
    PoolArray<float> rope_local_; // [batch][n_rot] the same for local layers' own rope base
    // A mixture of experts' (empty without one):
    PoolArray<float> router_;      // [batch][n_expert] router logits, then probabilities
    PoolArray<int32_t> chosen_;    // [batch][n_expert_used] each token's experts
    PoolArray<float> weights_;     // [batch][n_expert_used] and their weights
    PoolArray<int32_t> by_expert_; // [batch * n_expert_used] choices (token * used + j) by expert
    PoolArray<int32_t> first_of_;  // [n_expert + 1] where each expert's choices start
    PoolArray<float> gathered_;    // [batch][n_embd] the normed rows routed to one expert
    uint64_t experts_read_ = 0;
    MatmulInput input_;           // the vector being multiplied, in the weights' format
    ThreadPool* pool_;
    WeightCache* cache_;
};

// x [n_embd] = the embedding of `token` (throws Error when out of range).
void embed_token(const LlamaModel& model, int32_t token, float* x);

// One sequence's part of a batch: n_tokens consecutive tokens at positions pos, pos+1, ...,
// whose keys and values go into (and whose attention reads) `cache`.
struct BatchSegment {
    KvCache* cache = nullptr;
    int64_t pos = 0;
    int64_t n_tokens = 0;
};

// Runs layers [first, last) on a batch of several sequences' tokens: x [n][n_embd] in and out,
// the rows of segment 0 first, then segment 1's, ... (n = the segments' tokens together). The
// matmuls read each weight row once for the whole batch; attention is per segment, over its own
// cache. A token's result does not depend on what else is in the batch: it is bit for bit what
// it would be alone. Throws Error when a segment's positions are outside its cache or the batch
// exceeds the scratch's.
void run_layers(const LlamaModel& model, int64_t first, int64_t last, const BatchSegment* segments,
                int64_t n_segments, float* x, ForwardScratch& scratch);
// One sequence: n_tokens tokens at positions pos, pos+1, ... (a prompt, or one token).
void run_layers(const LlamaModel& model, int64_t first, int64_t last, int64_t pos, int64_t n_tokens,
                float* x, KvCache& cache, ForwardScratch& scratch);
// logits [m][n_vocab] = output · rmsnorm(x row rows[i]) for i < m (m at most the scratch's batch):
// the head's weights read once for all m rows.
void compute_logits(const LlamaModel& model, const float* x, const int64_t* rows, int64_t m,
                    float* logits, ForwardScratch& scratch);
// logits [n_vocab] = output · rmsnorm(x [n_embd]).
void compute_logits(const LlamaModel& model, const float* x, float* logits,
                    ForwardScratch& scratch);

// Prompt tokens per forward batch: each weight matrix is read once per batch.
constexpr int64_t kDefaultPromptBatch = 128;

class LlamaContext {
public:
    // n_ctx = 0 uses the model's training context length; prompts are processed max_batch
    // tokens at a time. All memory is allocated here: decoding allocates nothing.
    explicit LlamaContext(const LlamaModel& model, int64_t n_ctx = 0, ThreadPool* pool = nullptr,
                          int64_t max_batch = kDefaultPromptBatch, WeightCache* cache = nullptr,
                          TensorType kv_type = TensorType::F16);

    // Feeds `token` at position n_past() and returns the logits for the next token
    // (n_vocab floats, valid until the next call). Throws Error on a bad token or a full context.
    const float* decode(int32_t token);
    // Feeds n_tokens tokens (a prompt) in batches and returns the logits after the last one.
    // Gives the same logits, bit for bit, as feeding them one at a time.
    const float* decode_batch(const int32_t* tokens, int64_t n_tokens);

    int64_t n_past() const { return n_past_; }
    int64_t n_ctx() const { return cache_.n_ctx(); }
    const LlamaModel& model() const { return model_; }
    uint64_t kv_bytes() const { return cache_.bytes(); }
    uint64_t experts_read() const { return scratch_.experts_read(); }
    // The forward scratch and this context's own buffers.
    uint64_t scratch_bytes() const { return scratch_.bytes() + memory_.capacity(); }
    // Bytes of a context's own buffers (a batch's residual stream, the logits).
    static size_t buffer_bytes_for(const LlamaModel& model, int64_t max_batch);
    void reset() { n_past_ = 0; }
    // Forgets the positions from `n_past` on (a conversation resent with a different ending)
    // and returns where the next token goes: `n_past`, or 0 when the cut is longer than the
    // sliding-window rings allow (KvCache::rewind_limit). Throws Error when `n_past` is past
    // what the context holds.
    int64_t truncate(int64_t n_past);

private:
    const LlamaModel& model_;
    KvCache cache_;
    ForwardScratch scratch_;
    int64_t max_batch_;
    int64_t n_past_ = 0;
    MemoryPool memory_;
    PoolArray<float> x_;      // [max_batch][n_embd] residual stream
    PoolArray<float> logits_; // [n_vocab]
};

} // namespace woolly
