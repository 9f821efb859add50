// context.h — the Llama forward pass, in parts that can run on different threads (embedding,
// a range of layers, the output head), and LlamaContext, which runs them all for one sequence.
#pragma once

#include <cstdint>
#include <vector>

#include "kv_cache.h"
#include "matmul.h"
#include "model.h"
#include "thread_pool.h"
#include "weight_cache.h"

namespace woolly {

// Buffers one thread needs to run layers or the head; sized once for the model.
class ForwardScratch {
public:
    // `pool` (may be null: one thread) splits the matmuls; it must outlive the scratch.
    // `max_batch` is the most tokens one run_layers call may take. `cache` (may be null: read
    // every weight from the file) holds the model's repacked weights, shared between scratches.
    ForwardScratch(const LlamaModel& model, int64_t max_ctx, ThreadPool* pool = nullptr,
                   int64_t max_batch = 1, WeightCache* cache = nullptr);

private:
    friend void run_layers(const LlamaModel&, int64_t, int64_t, int64_t, int64_t, float*, KvCache&,
                           ForwardScratch&);
    friend void compute_logits(const LlamaModel&, const float*, float*, ForwardScratch&);

    int64_t max_batch_;
    std::vector<float> xb_;         // [n_embd] normed input of a sub-layer
    std::vector<float> q_;          // [n_head * head_dim] queries of this position
    std::vector<float> att_out_;    // [n_head * head_dim] attention output before wo
    std::vector<float> key_;        // [n_embd_kv] keys of this position before the cache
    std::vector<float> value_;      // [n_embd_kv] values of this position before the cache
    int64_t attention_stride_;      // floats of attention_ per thread
    std::vector<float> attention_;  // per thread: [head_dim] q form, [head_dim] value row,
                                    // 16 spare, [max_ctx] scores of one head
    std::vector<float> sub_out_;    // [n_embd] output of wo / w_down, added to x
    std::vector<float> gate_;       // [n_ff] w_gate xb, then silu(gate) * up
    std::vector<float> up_;         // [n_ff] w_up xb
    std::vector<float> rope_cache_; // [n_rot] cos, sin pairs for the current position
    MatmulInput input_;             // the vector being multiplied, in the weights' format
    ThreadPool* pool_;
    WeightCache* cache_;
};

// x [n_embd] = the embedding of `token` (throws Error when out of range).
void embed_token(const LlamaModel& model, int32_t token, float* x);
// Runs layers [first, last) on n_tokens tokens at positions pos, pos+1, ...: x [n_tokens][n_embd]
// in and out; their keys and values go into `cache`. A batch reads each weight row once for all
// its tokens (a prompt); one token is generation. Throws Error when the positions are outside
// the cache or the batch exceeds the scratch's.
void run_layers(const LlamaModel& model, int64_t first, int64_t last, int64_t pos, int64_t n_tokens,
                float* x, KvCache& cache, ForwardScratch& scratch);
// logits [n_vocab] = output · rmsnorm(x).
void compute_logits(const LlamaModel& model, const float* x, float* logits,
                    ForwardScratch& scratch);

// Prompt tokens per forward batch: each weight matrix is read once per batch.
constexpr int64_t kDefaultPromptBatch = 64;

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
    void reset() { n_past_ = 0; }

private:
    const LlamaModel& model_;
    KvCache cache_;
    ForwardScratch scratch_;
    int64_t max_batch_;
    int64_t n_past_ = 0;
    std::vector<float> x_;      // [max_batch][n_embd] residual stream
    std::vector<float> logits_; // [n_vocab]
};

} // namespace woolly
