// batch.cpp — planning steps of several sequences, running them through the layers, and
// sampling what comes back.
#include "engine/serve/batch.h"

#include <algorithm>

#include "engine/error.h"

namespace woolly {

void Step::clear() {
    tokens.clear();
    segments.clear();
    n_logits = 0;
}

void run_step(const LlamaModel& model, KvCachePool& kv, int64_t first, int64_t last, Step& step,
              ForwardScratch& scratch, StepScratch& buffers) {
    const LlamaHyperParams& hp = model.hparams();
    const size_t n_embd = size_t(hp.n_embd), n = step.tokens.size();
    buffers.segments.clear();
    buffers.logits_rows.clear();
    int64_t row = 0;
    for (const StepSegment& s : step.segments) {
        if (s.slot < 0 || s.slot >= kv.size())
            throw Error("KV slot " + std::to_string(s.slot) + " (expected 0 to " +
                        std::to_string(kv.size() - 1) + ")");
        buffers.segments.push_back({&kv.slot(s.slot), s.pos, s.n_tokens});
        row += s.n_tokens;
        if (s.logits_row >= 0) buffers.logits_rows.push_back(row - 1);
    }
    if (size_t(row) != n) throw Error("a step's segments do not add up to its tokens");
    if (first == 0) { // x [n][n_embd] = the tokens' embeddings
        step.x.resize(n * n_embd);
        for (size_t i = 0; i < n; ++i) embed_token(model, step.tokens[i], step.x.data() + i * n_embd);
    }
    run_layers(model, first, last, buffers.segments.data(), int64_t(buffers.segments.size()),
               step.x.data(), scratch);
    step.n_logits = int32_t(buffers.logits_rows.size());
    if (last == hp.n_layer && step.n_logits > 0) { // logits [rows][n_vocab]
        step.logits.resize(size_t(step.n_logits) * size_t(hp.n_vocab));
        compute_logits(model, step.x.data(), buffers.logits_rows.data(), step.n_logits,
                       step.logits.data(), scratch);
    }
}

Batcher::Batcher(const Vocab& vocab, int64_t n_ctx, int64_t prompt_chunk)
    : vocab_(vocab), n_ctx_(n_ctx), prompt_chunk_(prompt_chunk) {
    if (prompt_chunk < 1) throw Error("the prompt chunk must be at least 1 token");
}

void Batcher::open(uint64_t id, std::vector<TokenId> prompt, const GenerationParams& params) {
    check_prompt_fits(prompt, n_ctx_);
    Sequence s;
    s.id = id;
    s.stream = std::make_unique<TokenStream>(vocab_, params);
    s.stream->start(prompt);
    s.prompt = std::move(prompt);
    s.cached.reserve(s.prompt.size() + size_t(params.max_tokens));
    sequences_[id] = std::move(s);
}

void Batcher::start(uint64_t id, int32_t slot, int64_t reused) {
    auto it = sequences_.find(id);
    if (it == sequences_.end()) return;
    Sequence& s = it->second;
    if (reused < 0 || reused >= int64_t(s.prompt.size()))
        throw Error("a reused prefix of " + std::to_string(reused) + " tokens (expected 0 to " +
                    std::to_string(s.prompt.size() - 1) + ")");
    s.slot = slot;
    s.cached.assign(s.prompt.begin(), s.prompt.begin() + reused);
    s.started = true;
    s.order = ++started_;
}

bool Batcher::end(uint64_t id) {
    auto it = sequences_.find(id);
    if (it == sequences_.end()) return true;
    if (!it->second.in_flight) {
        it->second.finished = true;
        return true;
    }
    it->second.ending = true;
    return false;
}

bool Batcher::plan(Step& step) {
    step.clear();
    auto add = [&](Sequence& s, const TokenId* tokens, int32_t n, bool logits) {
        StepSegment seg;
        seg.sequence = s.id;
        seg.slot = s.slot;
        seg.pos = int32_t(s.cached.size());
        seg.n_tokens = n;
        seg.logits_row = logits ? step.n_logits++ : -1;
        step.segments.push_back(seg);
        step.tokens.insert(step.tokens.end(), tokens, tokens + n);
        s.in_flight = true;
    };
    prompting_.clear();
    for (auto& entry : sequences_) {
        Sequence& s = entry.second;
        if (!s.started || s.in_flight || s.finished) continue;
        if (s.next >= 0) {
            add(s, &s.next, 1, true); // a generating sequence's next token
        } else {
            prompting_.push_back(&s);
        }
    }
    std::sort(prompting_.begin(), prompting_.end(),
              [](const Sequence* a, const Sequence* b) { return a->order < b->order; });
    int64_t budget = prompt_chunk_;
    for (Sequence* s : prompting_) {
        if (budget == 0) break;
        const int64_t done = int64_t(s->cached.size()), left = int64_t(s->prompt.size()) - done;
        const int64_t n = std::min(left, budget);
        budget -= n;
        add(*s, s->prompt.data() + done, int32_t(n), n == left);
    }
    return !step.segments.empty();
}

void Batcher::finish(const Step& step, std::vector<BatchEvent>& events, ThreadPool* pool) {
    events.clear();
    const size_t n_vocab = size_t(vocab_.size());
    // The unconstrained choices first; the masks for those a grammar refuses, on the pool.
    masking_.clear();
    for (const StepSegment& seg : step.segments) {
        if (seg.logits_row < 0) continue;
        auto it = sequences_.find(seg.sequence);
        if (it == sequences_.end() || it->second.ending || !it->second.stream->constrained())
            continue;
        const float* logits = step.logits.data() + size_t(seg.logits_row) * n_vocab;
        if (it->second.stream->propose(logits)) masking_.push_back(it->second.stream.get());
    }
    if (masking_.size() > 1 && pool) {
        auto make = [this](int index, int count) {
            for (size_t i = size_t(index); i < masking_.size(); i += size_t(count))
                masking_[i]->prepare_mask();
        };
        pool->run(make);
    }
    size_t token = 0;
    for (const StepSegment& seg : step.segments) {
        const TokenId* fed = step.tokens.data() + token;
        token += size_t(seg.n_tokens);
        auto it = sequences_.find(seg.sequence);
        if (it == sequences_.end()) continue;
        Sequence& s = it->second;
        s.in_flight = false;
        s.cached.insert(s.cached.end(), fed, fed + seg.n_tokens);
        if (s.ending) { // end() was asked while the step ran
            s.finished = true;
            events.push_back({BatchEvent::Kind::Finished, seg.sequence, {}});
            continue;
        }
        if (seg.logits_row < 0) continue; // more of the prompt to read
        const float* logits = step.logits.data() + size_t(seg.logits_row) * n_vocab;
        GeneratedToken out;
        const bool full = int64_t(s.cached.size()) >= n_ctx_;
        const bool got = s.stream->next(logits, full, out);
        if (got) events.push_back({BatchEvent::Kind::Token, seg.sequence, out});
        if (!got || s.stream->finished()) {
            s.finished = true;
            s.next = -1;
            events.push_back({BatchEvent::Kind::Finished, seg.sequence, {}});
        } else {
            s.next = out.id;
        }
    }
}

void Batcher::fail(const Step& step, std::vector<BatchEvent>& events) {
    events.clear();
    for (const StepSegment& seg : step.segments) {
        auto it = sequences_.find(seg.sequence);
        if (it == sequences_.end()) continue;
        it->second.in_flight = false;
        it->second.finished = true;
        events.push_back({BatchEvent::Kind::Finished, seg.sequence, {}});
    }
}

const Batcher::Sequence* Batcher::sequence(uint64_t id) const {
    auto it = sequences_.find(id);
    return it == sequences_.end() ? nullptr : &it->second;
}

std::vector<TokenId> Batcher::remove(uint64_t id) {
    auto it = sequences_.find(id);
    if (it == sequences_.end()) return {};
    std::vector<TokenId> cached = std::move(it->second.cached);
    sequences_.erase(it);
    return cached;
}

} // namespace woolly
