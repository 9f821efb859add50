// generation.h — one prompt's generation, a token at a time: prompt, sampling, stop rules and
// whole-UTF-8 streaming text. Shared by `woolly run` and the daemon's sessions.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "context.h"
#include "sampler.h"
#include "vocab.h"

namespace woolly {

enum class FinishReason { None, Length, Stop, Eos };
const char* finish_reason_name(FinishReason reason);

struct GenerationParams {
    int32_t max_tokens = 128;
    SamplingParams sampling;
    std::vector<std::string> stop; // non-empty, valid UTF-8; the text ends before the first match
};

struct GeneratedToken {
    TokenId id = -1;
    std::string_view text; // whole UTF-8 characters newly safe to show; valid until next step()
};

class Generation {
public:
    // Checks the parameters, tokenizes the prompt (with BOS when the model wants it) and checks
    // it fits the context; throws Error otherwise. Nothing is evaluated yet.
    Generation(LlamaContext& context, const Vocab& vocab, std::string_view prompt,
               const GenerationParams& params);

    // Evaluates the prompt from an empty context.
    void ingest_prompt();
    // Samples one token and evaluates it. Returns false once finished (then see finish_reason()
    // and tail()). `out.text` may be empty while a stop string might still be forming.
    bool step(GeneratedToken& out);

    FinishReason finish_reason() const { return finish_; }
    // Text held back at the end (a partial stop-string match that never completed).
    std::string_view tail() const { return tail_; }
    const std::vector<TokenId>& prompt_tokens() const { return prompt_tokens_; }
    int32_t n_generated() const { return n_generated_; }
    double prompt_ms() const { return prompt_ms_; }
    double generation_ms() const { return generation_ms_; }

private:
    void finish(FinishReason reason);
    size_t safe_prefix_length() const;

    LlamaContext& context_;
    const Vocab& vocab_;
    GenerationParams params_;
    Sampler sampler_;
    std::vector<TokenId> prompt_tokens_;
    const float* logits_ = nullptr;
    Utf8Stream utf8_;
    std::string held_;  // decoded text not yet shown (could begin a stop string)
    std::string shown_; // text returned by the current step
    std::string tail_;
    int32_t n_generated_ = 0;
    FinishReason finish_ = FinishReason::None;
    double prompt_ms_ = 0.0;
    double generation_ms_ = 0.0;
};

} // namespace woolly
