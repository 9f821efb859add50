// batch.h — continuous batching: many sequences, each in its own KV-cache slot, advanced
// together one step at a time. A step holds the next token of every sequence that is
// generating plus a chunk of any prompt being read, and goes through the layers as one batch,
// so each weight row is read once per step rather than once per sequence. Sequences join and
// leave between steps. The Batcher plans steps and samples their logits; run_step runs a step
// through a range of layers (it may be split over several threads of work, one per range).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "engine/model/context.h"
#include "engine/model/kv_cache.h"
#include "engine/runtime/thread_pool.h"
#include "engine/text/generation.h"

namespace woolly {

// One sequence's part of a step: n_tokens tokens at positions pos, pos+1, ... of its slot.
struct StepSegment {
    uint64_t sequence = 0;
    int32_t slot = 0;
    int32_t pos = 0;
    int32_t n_tokens = 0;
    int32_t logits_row = -1; // its row of the step's logits, or -1 (a prompt chunk before the last)
};

// A step and its buffers. The buffers go round with the step and keep their capacity, so that
// steps after the first allocate nothing.
struct Step {
    std::vector<TokenId> tokens;       // [n] the step's tokens, segment after segment
    std::vector<StepSegment> segments; // in the order of their tokens
    std::vector<float> x;              // [n][n_embd] the residual stream
    std::vector<float> logits;         // [rows][n_vocab], rows = segments with logits_row >= 0
    int32_t n_logits = 0;              // rows
    // Empties the step, keeping its buffers' memory.
    void clear();
};

// Buffers run_step needs besides the forward scratch (kept by whoever runs steps).
struct StepScratch {
    std::vector<BatchSegment> segments;
    std::vector<int64_t> logits_rows;
};

// Runs layers [first, last) of the model on `step`: layer 0 embeds the tokens first, and after
// the model's last layer the logits of every segment with a logits row are computed. Throws
// Error (a bad token, a full context, a batch larger than the scratch's).
void run_step(const LlamaModel& model, KvCachePool& kv, int64_t first, int64_t last, Step& step,
              ForwardScratch& scratch, StepScratch& buffers);

// What a step's logits made of a sequence.
struct BatchEvent {
    enum class Kind { Token, Finished };
    Kind kind = Kind::Token;
    uint64_t sequence = 0;
    GeneratedToken token; // Token: the token and its new text (valid until the next finish())
};

class Batcher {
public:
    // Sequences have `n_ctx` positions; a step holds at most `prompt_chunk` prompt tokens
    // besides one token of each generating sequence.
    Batcher(const Vocab& vocab, int64_t n_ctx, int64_t prompt_chunk);

    // The most tokens a step can hold with `max_sequences` sequences started at once.
    static int64_t max_step_tokens(int64_t prompt_chunk, int64_t max_sequences) {
        return prompt_chunk + max_sequences;
    }

    // A sequence to be: its prompt and parameters (which TokenStream checks; throws Error).
    void open(uint64_t id, std::vector<TokenId> prompt, const GenerationParams& params);
    // It starts in KV slot `slot`, whose first `reused` positions already hold the first
    // `reused` prompt tokens (a prefix kept from an earlier sequence); at most prompt size - 1,
    // since the last prompt token's logits are needed.
    void start(uint64_t id, int32_t slot, int64_t reused);
    // Asks a sequence to end. True: it can go now (no step of it is running). False: the step
    // in flight must come back first; finish() then reports it Finished, with no new token.
    bool end(uint64_t id);

    // Fills `step` with work for the sequences started and not in a step already: one token of
    // each generating sequence, then prompt chunks (at most prompt_chunk tokens together,
    // oldest sequence first). Returns false, with the step empty, when there is nothing to run.
    bool plan(Step& step);
    // Takes a step back after run_step. Prompts advance; each segment's logits are sampled.
    // `events` (cleared first) says which sequences have a new token and which have finished;
    // a finished sequence stays (see sequence()) until remove().
    // With a pool, the grammar masks the step's sequences need are made on its threads side by
    // side (each sequence's grammar state is its own) before the tokens are drawn in order.
    void finish(const Step& step, std::vector<BatchEvent>& events, ThreadPool* pool = nullptr);
    // A step that could not run: its sequences are finished (an error); they are added to
    // `events` as Finished.
    void fail(const Step& step, std::vector<BatchEvent>& events);

    struct Sequence {
        uint64_t id = 0;
        std::unique_ptr<TokenStream> stream;
        std::vector<TokenId> prompt;
        std::vector<TokenId> cached; // tokens whose keys and values are in the slot, in order
        int32_t slot = -1;
        TokenId next = -1;      // a sampled token to feed, once the prompt is read
        bool started = false;
        bool in_flight = false;
        bool ending = false; // end() asked while in flight
        bool finished = false;
        uint64_t order = 0; // when it started (prompts are read oldest first)
    };
    // The sequence, or null.
    const Sequence* sequence(uint64_t id) const;
    // Forgets a sequence (finished, or never started); returns the tokens its slot holds.
    std::vector<TokenId> remove(uint64_t id);
    bool empty() const { return sequences_.empty(); }
    int64_t n_ctx() const { return n_ctx_; }

private:
    const Vocab& vocab_;
    int64_t n_ctx_;
    int64_t prompt_chunk_;
    uint64_t started_ = 0;
    std::map<uint64_t, Sequence> sequences_;
    std::vector<TokenStream*> masking_; // finish(): the streams whose masks are made side by side
    std::vector<Sequence*> prompting_; // plan()'s list of sequences reading a prompt
};

} // namespace woolly
