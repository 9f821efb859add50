// context.h — one running sequence: KV cache, activation buffers and the Llama forward pass.
#pragma once

#include <cstdint>
#include <vector>

#include "kv_cache.h"
#include "matmul.h"
#include "model.h"

namespace woolly {

class LlamaContext {
public:
    // n_ctx = 0 uses the model's training context length. All memory is allocated here:
    // decode() allocates nothing.
    explicit LlamaContext(const LlamaModel& model, int64_t n_ctx = 0);

    // Feeds `token` at position n_past() and returns the logits for the next token
    // (n_vocab floats, valid until the next call). Throws Error on a bad token or a full context.
    const float* decode(int32_t token);

    int64_t n_past() const { return n_past_; }
    int64_t n_ctx() const { return cache_.n_ctx(); }
    const LlamaModel& model() const { return model_; }
    void reset() { n_past_ = 0; }

private:
    void attention(int64_t layer, int64_t pos);

    const LlamaModel& model_;
    const LlamaHyperParams& hp_;
    KvCache cache_;
    int64_t n_past_ = 0;

    std::vector<float> x_;          // [n_embd] residual stream
    std::vector<float> xb_;         // [n_embd] normed input of a sub-layer
    std::vector<float> q_;          // [n_head * head_dim] queries of this position
    std::vector<float> att_out_;    // [n_head * head_dim] attention output before wo
    std::vector<float> scores_;     // [n_ctx] attention scores of one head
    std::vector<float> sub_out_;    // [n_embd] output of wo / w_down, added to x
    std::vector<float> gate_;       // [n_ff] w_gate xb, then silu(gate) * up
    std::vector<float> up_;         // [n_ff] w_up xb
    std::vector<float> rope_cache_; // [n_rot] cos, sin pairs for the current position
    std::vector<float> logits_;     // [n_vocab]
    MatvecInput input_; // the vector being multiplied, in the weights' activation format
};

} // namespace woolly
