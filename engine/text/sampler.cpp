// sampler.cpp — the sampling steps; each reads and narrows the candidate set.
#include "engine/text/sampler.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "engine/error.h"

namespace woolly {

void SamplingParams::validate() const {
    auto bad = [](const std::string& what) { throw Error(what); };
    if (!std::isfinite(temperature) || temperature < 0.0f || temperature > 100.0f)
        bad("temperature must be between 0 and 100");
    if (top_k < 0) bad("top_k must be >= 0 (0 turns it off)");
    if (!std::isfinite(top_p) || top_p <= 0.0f || top_p > 1.0f) bad("top_p must be in (0, 1]");
    if (!std::isfinite(min_p) || min_p < 0.0f || min_p > 1.0f) bad("min_p must be in [0, 1]");
    if (!std::isfinite(repeat_penalty) || repeat_penalty <= 0.0f || repeat_penalty > 100.0f)
        bad("repeat_penalty must be in (0, 100]");
    if (repeat_last_n < 0 || repeat_last_n > 1 << 20)
        bad("repeat_last_n must be between 0 and 1048576");
    if (!std::isfinite(presence_penalty) || presence_penalty < -2.0f || presence_penalty > 2.0f)
        bad("presence_penalty must be between -2 and 2 (0 turns it off)");
    if (!std::isfinite(frequency_penalty) || frequency_penalty < -2.0f || frequency_penalty > 2.0f)
        bad("frequency_penalty must be between -2 and 2 (0 turns it off)");
}

void log_softmax_top(const float* logits, int32_t n_vocab, TokenId chosen, int32_t top,
                     TokenLogprobs& out) {
    top = std::clamp(top, 0, TokenLogprobs::kMaxTop);
    float max = logits[0];
    for (int32_t i = 1; i < n_vocab; ++i) max = std::max(max, logits[i]);
    double sum = 0;
    for (int32_t i = 0; i < n_vocab; ++i) sum += std::exp(double(logits[i]) - double(max));
    const double lse = double(max) + std::log(sum);
    out.logprob = float(double(logits[chosen]) - lse);
    // The `top` largest logits, kept sorted (descending) by insertion: top is at most 20.
    out.n_top = 0;
    for (int32_t i = 0; i < n_vocab && top > 0; ++i) {
        const float l = logits[i];
        if (out.n_top == top && l <= out.top_logprobs[size_t(top - 1)]) continue;
        int32_t at = out.n_top < top ? out.n_top++ : top - 1;
        while (at > 0 && out.top_logprobs[size_t(at - 1)] < l) {
            out.top_logprobs[size_t(at)] = out.top_logprobs[size_t(at - 1)];
            out.top_ids[size_t(at)] = out.top_ids[size_t(at - 1)];
            --at;
        }
        out.top_logprobs[size_t(at)] = l;
        out.top_ids[size_t(at)] = i;
    }
    for (int32_t i = 0; i < out.n_top; ++i)
        out.top_logprobs[size_t(i)] = float(double(out.top_logprobs[size_t(i)]) - lse);
}

Sampler::Sampler(const SamplingParams& params, int32_t n_vocab)
    : params_(params), n_vocab_(n_vocab), candidates_(size_t(n_vocab)),
      recent_(size_t(std::max(params.repeat_last_n, 0))), seen_(size_t(n_vocab)),
      rng_(params.seed) {
    params_.validate();
}

void Sampler::reset() {
    recent_next_ = recent_count_ = 0;
    rng_.seed(params_.seed);
}

void Sampler::accept(TokenId token) {
    if (recent_.empty()) return;
    recent_[recent_next_] = token;
    recent_next_ = (recent_next_ + 1) % recent_.size();
    recent_count_ = std::min(recent_count_ + 1, recent_.size());
}

TokenId Sampler::sample(const float* logits, const uint64_t* allowed) {
    if (allowed) {
        // Disallowed tokens keep their slot (penalties index candidates by id) at -infinity,
        // then drop out once the chain has sorted or searched.
        bool any = false;
        for (int32_t i = 0; i < n_vocab_; ++i) {
            const bool ok = (allowed[i / 64] >> (i % 64)) & 1;
            any |= ok;
            candidates_[size_t(i)] = {i, ok ? logits[i] : -INFINITY, 0.0f};
        }
        if (!any) return -1;
    } else {
        for (int32_t i = 0; i < n_vocab_; ++i) candidates_[size_t(i)] = {i, logits[i], 0.0f};
    }
    n_candidates_ = size_t(n_vocab_);
    sorted_ = false;

    if (params_.repeat_penalty != 1.0f || params_.frequency_penalty != 0.0f ||
        params_.presence_penalty != 0.0f)
        apply_penalties();
    if (params_.temperature <= 0.0f) {
        const auto best = std::max_element(
            candidates_.begin(), candidates_.begin() + std::ptrdiff_t(n_candidates_),
            [](const Candidate& a, const Candidate& b) { return a.logit < b.logit; });
        return best->id;
    }
    if (params_.top_k > 0) top_k(params_.top_k);
    if (params_.top_p < 1.0f) top_p(params_.top_p);
    if (params_.min_p > 0.0f) min_p(params_.min_p);
    for (size_t i = 0; i < n_candidates_; ++i) candidates_[i].logit /= params_.temperature;
    return draw();
}

// Logits of recently seen tokens are pushed away from being chosen again (llama.cpp's
// penalties): divided by the repeat penalty when positive, multiplied when negative, and then
// lowered by frequency_penalty for each time the token was seen and by presence_penalty once.
void Sampler::apply_penalties() {
    for (size_t i = 0; i < recent_count_; ++i) {
        const TokenId t = recent_[i];
        if (t >= 0 && t < n_vocab_) ++seen_[size_t(t)];
    }
    for (size_t i = 0; i < recent_count_; ++i) {
        const TokenId t = recent_[i];
        if (t < 0 || t >= n_vocab_ || seen_[size_t(t)] == 0) continue;
        const uint32_t count = seen_[size_t(t)];
        seen_[size_t(t)] = 0; // once per token
        float& logit = candidates_[size_t(t)].logit;
        logit = logit > 0.0f ? logit / params_.repeat_penalty : logit * params_.repeat_penalty;
        logit -= float(count) * params_.frequency_penalty + params_.presence_penalty;
    }
}

void Sampler::top_k(int32_t k) {
    const size_t keep = std::min(size_t(k), n_candidates_);
    std::partial_sort(candidates_.begin(), candidates_.begin() + std::ptrdiff_t(keep),
                      candidates_.begin() + std::ptrdiff_t(n_candidates_),
                      [](const Candidate& a, const Candidate& b) { return a.logit > b.logit; });
    n_candidates_ = keep;
    sorted_ = true;
}

void Sampler::softmax() {
    if (!sorted_) {
        std::sort(candidates_.begin(), candidates_.begin() + std::ptrdiff_t(n_candidates_),
                  [](const Candidate& a, const Candidate& b) { return a.logit > b.logit; });
        sorted_ = true;
    }
    // Tokens a grammar refused (at -infinity) are never drawn.
    while (n_candidates_ > 1 && candidates_[n_candidates_ - 1].logit == -INFINITY) --n_candidates_;
    const float max_logit = candidates_[0].logit;
    double sum = 0.0;
    for (size_t i = 0; i < n_candidates_; ++i) {
        candidates_[i].p = std::exp(candidates_[i].logit - max_logit);
        sum += candidates_[i].p;
    }
    for (size_t i = 0; i < n_candidates_; ++i) candidates_[i].p = float(candidates_[i].p / sum);
}

// Keep the smallest set of most likely tokens whose probabilities add up to at least p.
void Sampler::top_p(float p) {
    softmax();
    double cumulative = 0.0;
    size_t keep = n_candidates_;
    for (size_t i = 0; i < n_candidates_; ++i) {
        cumulative += candidates_[i].p;
        if (cumulative >= p) {
            keep = i + 1;
            break;
        }
    }
    n_candidates_ = keep;
}

// Drop tokens whose probability is below p times the most likely token's.
void Sampler::min_p(float p) {
    softmax();
    const float threshold = candidates_[0].p * p;
    size_t keep = 1;
    while (keep < n_candidates_ && candidates_[keep].p >= threshold) ++keep;
    n_candidates_ = keep;
}

TokenId Sampler::draw() {
    softmax();
    // A uniform draw in [0, 1) walked along the cumulative distribution; 53 random bits.
    const double u = double(rng_() >> 11) * 0x1.0p-53;
    double cumulative = 0.0;
    for (size_t i = 0; i < n_candidates_; ++i) {
        cumulative += candidates_[i].p;
        if (u < cumulative) return candidates_[i].id;
    }
    return candidates_[n_candidates_ - 1].id;
}

} // namespace woolly
