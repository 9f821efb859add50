// sampler.h — picks the next token from logits through a chain of small steps.
#pragma once

#include <array>
#include <cstdint>
#include <random>
#include <vector>

#include "engine/text/vocab.h"

namespace woolly {

struct SamplingParams {
    float temperature = 0.8f;    // <= 0: greedy (argmax)
    int32_t top_k = 40;          // <= 0: off
    float top_p = 0.95f;         // >= 1: off
    float min_p = 0.05f;         // <= 0: off
    float repeat_penalty = 1.0f; // 1: off
    int32_t repeat_last_n = 64;  // how many recent tokens the penalties look at
    float presence_penalty = 0;  // subtracted once from a recent token's logit; 0: off
    float frequency_penalty = 0; // subtracted per occurrence among the recent tokens; 0: off
    uint64_t seed = 0xffffffff;  // same seed, same tokens

    // Throws Error naming the parameter and its allowed range.
    void validate() const;
};

// A token's log-probability under the model's distribution (the softmax of the raw logits:
// before penalties, truncation and temperature), and the most likely tokens' beside it.
struct TokenLogprobs {
    static constexpr int32_t kMaxTop = 20;
    float logprob = 0;
    int32_t n_top = 0; // of top_ids/top_logprobs, most likely first
    std::array<TokenId, kMaxTop> top_ids{};
    std::array<float, kMaxTop> top_logprobs{};
};
// Fills `out` for `chosen` from `logits` [n_vocab], with the `top` (0 to kMaxTop) most likely
// tokens. Allocates nothing.
void log_softmax_top(const float* logits, int32_t n_vocab, TokenId chosen, int32_t top,
                     TokenLogprobs& out);

struct Candidate {
    TokenId id;
    float logit;
    float p;
};

// The chain, in llama.cpp's order: penalties (repetition, frequency, presence) -> top-k -> top-p ->
// min-p -> temperature -> draw from the distribution (or argmax when greedy). All buffers are sized
// at construction; sample() allocates nothing.
class Sampler {
public:
    Sampler(const SamplingParams& params, int32_t n_vocab);

    // `allowed` (a bit per token id, or null for all): only those tokens are candidates, as if
    // the others' logits were minus infinity before the chain. -1 when none is allowed.
    TokenId sample(const float* logits, const uint64_t* allowed = nullptr);
    // Records a token of the context (prompt or generated) for the repetition penalty.
    void accept(TokenId token);
    void reset();

    const SamplingParams& params() const { return params_; }

private:
    void apply_penalties();
    void top_k(int32_t k);
    void top_p(float p);
    void min_p(float p);
    void softmax(); // sorts by logit, fills p
    TokenId draw();

    SamplingParams params_;
    int32_t n_vocab_;
    std::vector<Candidate> candidates_; // [n_vocab] working set, shrinks along the chain
    size_t n_candidates_ = 0;
    bool sorted_ = false;
    std::vector<TokenId> recent_; // ring buffer of the last repeat_last_n tokens
    size_t recent_next_ = 0;
    size_t recent_count_ = 0;
    std::vector<uint32_t> seen_; // [n_vocab] counts in the window, zero between calls
    std::mt19937_64 rng_;
};

} // namespace woolly
