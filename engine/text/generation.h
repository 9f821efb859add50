// generation.h — turning logits into a stream of tokens and text (TokenStream: sampling, stop
// rules, whole-UTF-8 text), and Generation, which drives a LlamaContext with it. TokenStream is
// what the daemon's batcher (engine/serve/batch.h) holds per session; Generation is what
// `woolly run` uses.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/model/context.h"
#include "engine/text/constraint.h"
#include "engine/text/sampler.h"
#include "engine/text/vocab.h"

namespace woolly {

enum class FinishReason { None, Length, Stop, Eos };
const char* finish_reason_name(FinishReason reason);

struct GenerationParams {
    int32_t max_tokens = 128;
    SamplingParams sampling;
    std::vector<std::string> stop; // non-empty, valid UTF-8; the text ends before the first match
    int32_t logprobs = -1;         // -1: none; 0 to 20: each token's log-probability and this many
                                   // most likely tokens beside it
    // A grammar the output must follow (null: none), shared by every stream that uses it.
    std::shared_ptr<const Constraint> constraint;

    // Throws Error naming the bad parameter.
    void validate() const;
};

struct GeneratedToken {
    TokenId id = -1;
    std::string_view text; // whole UTF-8 characters newly safe to show; valid until the next call
    const TokenLogprobs* logprobs = nullptr; // with GenerationParams::logprobs; as `text`
};

class TokenStream {
public:
    TokenStream(const Vocab& vocab, const GenerationParams& params);

    // Starts over: the prompt's tokens feed the repetition penalty.
    void start(const std::vector<TokenId>& prompt_tokens);
    // Samples the next token from `logits`. Returns false when the stream ends without a token
    // (EOS, or max_tokens = 0); otherwise fills `out`, and finished() tells whether this was the
    // last token. `context_full` says the token could not be fed back.
    bool next(const float* logits, bool context_full, GeneratedToken& out);
    // next() in two halves, so that a batch's grammar masks can be made side by side: propose()
    // draws the unconstrained choice from `logits` and says whether the grammar refuses it (the
    // mask is then needed); prepare_mask() makes that mask, touching nothing but this stream's
    // grammar state. next() with the same logits then goes on from the proposal.
    bool propose(const float* logits);
    void prepare_mask();

    bool finished() const { return finish_ != FinishReason::None; }
    FinishReason finish_reason() const { return finish_; }
    // Text held back at the end (a partial stop-string match that never completed).
    std::string_view tail() const { return tail_; }
    int32_t n_generated() const { return n_generated_; }
    // With a grammar: whether the output so far completes it.
    bool constrained() const { return constraint_ != nullptr; }
    bool grammar_complete() const { return constraint_ && constraint_->complete(); }
    const GenerationParams& params() const { return params_; }

private:
    // Text held back goes to tail() unless a stop string ended the stream (`keep_held` false).
    void finish(FinishReason reason, bool keep_held);
    size_t safe_prefix_length() const;

    const Vocab& vocab_;
    GenerationParams params_;
    Sampler sampler_;
    Utf8Stream utf8_;
    std::string held_;  // decoded text not yet shown (could begin a stop string)
    std::string shown_; // text returned by the current call
    std::string tail_;
    TokenLogprobs logprobs_;
    std::unique_ptr<ConstraintState> constraint_;
    int32_t n_generated_ = 0;
    FinishReason finish_ = FinishReason::None;
    TokenId proposed_ = -1; // from propose(), for the next call of next()
};

class Generation {
public:
    // Checks the parameters, tokenizes the prompt (with BOS when the model wants it) and checks
    // it fits the context; throws Error otherwise. Nothing is evaluated yet.
    Generation(LlamaContext& context, const Vocab& vocab, std::string_view prompt,
               const GenerationParams& params);
    // From prompt tokens already made (a chat template's); checks they fit the context.
    Generation(LlamaContext& context, const Vocab& vocab, std::vector<TokenId> prompt_tokens,
               const GenerationParams& params);

    // Evaluates the prompt from an empty context.
    void ingest_prompt();
    // Samples one token and evaluates it. Returns false once finished (then see finish_reason()
    // and tail()). `out.text` may be empty while a stop string might still be forming.
    bool step(GeneratedToken& out);

    FinishReason finish_reason() const { return stream_.finish_reason(); }
    std::string_view tail() const { return stream_.tail(); }
    const std::vector<TokenId>& prompt_tokens() const { return prompt_tokens_; }
    int32_t n_generated() const { return stream_.n_generated(); }
    double prompt_ms() const { return prompt_ms_; }
    double generation_ms() const { return generation_ms_; }

private:
    LlamaContext& context_;
    TokenStream stream_;
    std::vector<TokenId> prompt_tokens_;
    const float* logits_ = nullptr;
    double prompt_ms_ = 0.0;
    double generation_ms_ = 0.0;
};

// The prompt's tokens with BOS as the model asks; throws Error when it is empty or does not
// leave room for one generated token in `n_ctx`.
std::vector<TokenId> tokenize_prompt(const Vocab& vocab, std::string_view prompt, int64_t n_ctx);
// Throws Error when `tokens` are empty or leave no room for one generated token in `n_ctx`.
void check_prompt_fits(const std::vector<TokenId>& tokens, int64_t n_ctx);

} // namespace woolly
