// generation.cpp — sampling, stop rules and streaming text; the generate loop over a context.
#include "engine/text/generation.h"

#include <algorithm>
#include <chrono>

#include "engine/error.h"

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

void GenerationParams::validate() const {
    if (max_tokens < 0) throw Error("max_tokens must be >= 0");
    if (logprobs < -1 || logprobs > TokenLogprobs::kMaxTop)
        throw Error("logprobs must be between 0 and 20 (the alternatives reported per token)");
    for (const auto& s : stop) {
        if (s.empty()) throw Error("stop strings must not be empty");
        if (!is_valid_utf8(s)) throw Error("stop strings must be valid UTF-8");
    }
    sampling.validate();
}

void check_prompt_fits(const std::vector<TokenId>& tokens, int64_t n_ctx) {
    if (tokens.empty()) throw Error("the prompt is empty and the model adds no BOS token");
    if (int64_t(tokens.size()) >= n_ctx) {
        throw Error("the prompt has " + std::to_string(tokens.size()) +
                    " tokens (expected fewer than the context size " + std::to_string(n_ctx) + ")");
    }
}

std::vector<TokenId> tokenize_prompt(const Vocab& vocab, std::string_view prompt, int64_t n_ctx) {
    std::vector<TokenId> tokens = vocab.tokenize(prompt, /*add_special=*/true);
    check_prompt_fits(tokens, n_ctx);
    return tokens;
}

TokenStream::TokenStream(const Vocab& vocab, const GenerationParams& params)
    : vocab_(vocab), params_(params), sampler_(params.sampling, vocab.size()) {
    params_.validate();
    size_t longest_stop = 0;
    for (const auto& stop : params_.stop) longest_stop = std::max(longest_stop, stop.size());
    // Reserve for the worst case so that next() does not allocate.
    held_.reserve(longest_stop + 256);
    shown_.reserve(longest_stop + 256);
}

void TokenStream::start(const std::vector<TokenId>& prompt_tokens) {
    sampler_.reset();
    for (TokenId t : prompt_tokens) sampler_.accept(t);
    utf8_ = Utf8Stream();
    held_.clear();
    tail_.clear();
    n_generated_ = 0;
    finish_ = FinishReason::None;
    if (params_.constraint) constraint_ = params_.constraint->start(vocab_);
    if (params_.max_tokens == 0) finish(FinishReason::Length, true);
}

void TokenStream::finish(FinishReason reason, bool keep_held) {
    finish_ = reason;
    if (keep_held) {
        std::string rest;
        utf8_.finish(rest);
        tail_ = held_ + rest;
    }
    held_.clear();
}

// The longest prefix of held_ that cannot be the start of a stop string.
size_t TokenStream::safe_prefix_length() const {
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

bool TokenStream::propose(const float* logits) {
    if (finished()) return false;
    proposed_ = sampler_.sample(logits);
    return constraint_ && !constraint_->allows(proposed_);
}

void TokenStream::prepare_mask() {
    if (constraint_ && !finished()) constraint_->mask();
}

bool TokenStream::next(const float* logits, bool context_full, GeneratedToken& out) {
    out = {};
    if (finished()) return false;
    TokenId token = proposed_ >= 0 ? proposed_ : sampler_.sample(logits);
    proposed_ = -1;
    // With a grammar, llama.cpp's order: the unconstrained choice stands when the grammar allows
    // it (so greedy output is unchanged wherever it can be); otherwise the chain runs again over
    // the allowed tokens alone, the mask applied before every other step.
    if (constraint_ && !constraint_->allows(token)) {
        token = sampler_.sample(logits, constraint_->mask());
        if (token < 0) { // nothing can follow: the grammar allows no token here
            finish(FinishReason::Stop, true);
            return false;
        }
    }
    if (params_.logprobs >= 0) {
        log_softmax_top(logits, vocab_.size(), token, params_.logprobs, logprobs_);
        out.logprobs = &logprobs_;
    }
    if (vocab_.is_eog(token)) {
        finish(FinishReason::Eos, true);
        return false;
    }
    sampler_.accept(token);
    ++n_generated_;
    if (constraint_) constraint_->accept(token);

    shown_.clear();
    utf8_.push(vocab_.piece(token), held_);
    size_t stop_at = std::string::npos;
    for (const auto& stop : params_.stop) stop_at = std::min(stop_at, held_.find(stop));
    if (stop_at != std::string::npos) {
        shown_.assign(held_, 0, stop_at);
        finish(FinishReason::Stop, false);
    } else {
        const size_t safe = safe_prefix_length();
        shown_.assign(held_, 0, safe);
        held_.erase(0, safe);
        if (constraint_ && constraint_->closed())
            finish(FinishReason::Stop, true); // the grammar is complete; nothing may follow
        else if (n_generated_ >= params_.max_tokens || context_full)
            finish(FinishReason::Length, true);
    }
    out.id = token;
    out.text = shown_;
    return true;
}

Generation::Generation(LlamaContext& context, const Vocab& vocab, std::string_view prompt,
                       const GenerationParams& params)
    : context_(context), stream_(vocab, params),
      prompt_tokens_(tokenize_prompt(vocab, prompt, context.n_ctx())) {}

Generation::Generation(LlamaContext& context, const Vocab& vocab,
                       std::vector<TokenId> prompt_tokens, const GenerationParams& params)
    : context_(context), stream_(vocab, params), prompt_tokens_(std::move(prompt_tokens)) {
    check_prompt_fits(prompt_tokens_, context.n_ctx());
}

void Generation::ingest_prompt() {
    const auto start = Clock::now();
    context_.reset();
    stream_.start(prompt_tokens_);
    logits_ = context_.decode_batch(prompt_tokens_.data(), int64_t(prompt_tokens_.size()));
    prompt_ms_ = ms_since(start);
}

bool Generation::step(GeneratedToken& out) {
    const auto start = Clock::now();
    const bool got = stream_.next(logits_, context_.n_past() >= context_.n_ctx(), out);
    if (got && !stream_.finished()) logits_ = context_.decode(out.id);
    generation_ms_ += ms_since(start);
    return got;
}

} // namespace woolly
