// generation.cpp — the generate loop: sample, feed back, decode to text, check stop rules.
#include "generation.h"

#include <algorithm>

#include "error.h"

namespace woolly {
namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point start) {
    return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

} // namespace

const char* finish_reason_name(FinishReason reason) {
    switch (reason) {
    case FinishReason::None:
        return "none";
    case FinishReason::Length:
        return "length";
    case FinishReason::Stop:
        return "stop";
    case FinishReason::Eos:
        return "eos";
    }
    return "none";
}

Generation::Generation(LlamaContext& context, const Vocab& vocab, std::string_view prompt,
                       const GenerationParams& params)
    : context_(context), vocab_(vocab), params_(params),
      sampler_(params.sampling, int32_t(context.model().hparams().n_vocab)) {
    if (params_.max_tokens < 0) throw Error("max_tokens must be >= 0");
    size_t longest_stop = 0;
    for (const auto& stop : params_.stop) {
        if (stop.empty()) throw Error("stop strings must not be empty");
        if (!is_valid_utf8(stop)) throw Error("stop strings must be valid UTF-8");
        longest_stop = std::max(longest_stop, stop.size());
    }
    prompt_tokens_ = vocab_.tokenize(prompt, /*add_special=*/true);
    if (prompt_tokens_.empty()) throw Error("the prompt is empty and the model adds no BOS token");
    if (int64_t(prompt_tokens_.size()) >= context_.n_ctx()) {
        throw Error("the prompt has " + std::to_string(prompt_tokens_.size()) +
                    " tokens (expected fewer than the context size " +
                    std::to_string(context_.n_ctx()) + ")");
    }
    // Reserve for the worst case so that step() does not allocate.
    held_.reserve(longest_stop + 256);
    shown_.reserve(longest_stop + 256);
}

void Generation::ingest_prompt() {
    const auto start = Clock::now();
    context_.reset();
    sampler_.reset();
    for (TokenId t : prompt_tokens_) {
        logits_ = context_.decode(t);
        sampler_.accept(t);
    }
    prompt_ms_ = ms_since(start);
    if (params_.max_tokens == 0) finish(FinishReason::Length);
}

void Generation::finish(FinishReason reason) {
    finish_ = reason;
    if (reason != FinishReason::Stop) {
        std::string rest;
        utf8_.finish(rest);
        tail_ = held_ + rest;
    }
    held_.clear();
}

// The longest prefix of held_ that cannot be the start of a stop string.
size_t Generation::safe_prefix_length() const {
    size_t keep = 0; // bytes at the end that might begin a stop string
    for (const auto& stop : params_.stop) {
        const size_t max_overlap = std::min(stop.size() - 1, held_.size());
        for (size_t overlap = max_overlap; overlap > keep; --overlap) {
            if (std::string_view(held_).substr(held_.size() - overlap) ==
                std::string_view(stop).substr(0, overlap)) {
                keep = overlap;
                break;
            }
        }
    }
    return held_.size() - keep;
}

bool Generation::step(GeneratedToken& out) {
    out = {};
    if (finish_ != FinishReason::None) return false;
    const auto start = Clock::now();
    const TokenId token = sampler_.sample(logits_);
    if (vocab_.is_eog(token)) {
        finish(FinishReason::Eos);
        generation_ms_ += ms_since(start);
        return false;
    }
    sampler_.accept(token);
    ++n_generated_;

    shown_.clear();
    utf8_.push(vocab_.piece(token), held_);
    size_t stop_at = std::string::npos;
    for (const auto& stop : params_.stop) stop_at = std::min(stop_at, held_.find(stop));
    if (stop_at != std::string::npos) {
        shown_.assign(held_, 0, stop_at);
        finish(FinishReason::Stop);
    } else {
        const size_t safe = safe_prefix_length();
        shown_.assign(held_, 0, safe);
        held_.erase(0, safe);
        if (n_generated_ >= params_.max_tokens) {
            finish(FinishReason::Length);
        } else if (context_.n_past() >= context_.n_ctx()) {
            finish(FinishReason::Length);
        } else {
            logits_ = context_.decode(token);
        }
    }
    out.id = token;
    out.text = shown_;
    generation_ms_ += ms_since(start);
    return true;
}

} // namespace woolly
