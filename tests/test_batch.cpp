// test_batch.cpp — continuous batching and the prefix cache: every sequence served in shared
// steps, joining and leaving at different times and reading prompts in chunks, gets the
// greedy tokens it gets alone (a LlamaContext of its own, as `woolly run`), at whatever kernel
// level the suite forces; and a prompt started from a kept prefix gets them too.
#include <filesystem>
#include <map>

#include "engine/error.h"
#include "engine/gguf/synthetic_model.h"
#include "engine/model/loader.h"
#include "engine/runtime/thread_pool.h"
#include "engine/serve/batch.h"
#include "engine/serve/slots.h"
#include "engine/text/generation.h"

#include "test_support.h"

using namespace woolly;

namespace {

constexpr int64_t kContext = 160;

GenerationParams greedy(int32_t max_tokens) {
    GenerationParams p;
    p.max_tokens = max_tokens;
    p.sampling.temperature = 0.0f;
    return p;
}

struct Served {
    std::vector<TokenId> tokens;
    FinishReason finish = FinishReason::None;
    bool operator==(const Served& o) const { return tokens == o.tokens && finish == o.finish; }
};

// A model to serve, with its vocabulary, a weight cache (or none) and two compute threads.
struct Bench {
    LoadedModel loaded;
    std::unique_ptr<Vocab> vocab;
    ThreadPool pool{2};

    Bench(const std::string& path, bool weight_cache) {
        LoadOptions options;
        options.memory.n_ctx = kContext;
        options.memory.cache_budget = weight_cache ? (uint64_t(64) << 20) : 0;
        options.limit = MemoryLimit{uint64_t(1) << 40, "test"};
        loaded = load_model(path, options);
        vocab = std::make_unique<Vocab>(loaded.model->gguf());
    }
    const LlamaModel& model() const { return *loaded.model; }

    // What `woolly run` gives: the prompt alone in a context of its own.
    Served alone(const std::vector<TokenId>& prompt, int32_t max_tokens) {
        LlamaContext context(model(), kContext, &pool, kDefaultPromptBatch, loaded.cache.get());
        Generation g(context, *vocab, prompt, greedy(max_tokens));
        g.ingest_prompt();
        Served out;
        GeneratedToken t;
        while (g.step(t)) out.tokens.push_back(t.id);
        out.finish = g.finish_reason();
        return out;
    }
};

struct Request {
    int step;                    // the step before which it arrives
    std::vector<TokenId> prompt; // its tokens
    int32_t max_tokens;
};

struct ServeOptions {
    int64_t slots = 8;
    int64_t prompt_chunk = 7;
    bool prefix_cache = false;
    int64_t split = -1; // run the layers in two parts, [0, split) and [split, n_layer)
};

// Serves `requests` as woollyd does: each starts when it has arrived and a slot is free, every
// step takes one token of each generating sequence and a prompt chunk. Returns each request's
// tokens (by index) and the slot table's figures.
std::map<uint64_t, Served> serve(Bench& b, const std::vector<Request>& requests,
                                 const ServeOptions& o, SlotStats* stats = nullptr) {
    const LlamaHyperParams& hp = b.model().hparams();
    KvCachePool kv(hp.n_layer, kContext, hp.n_head_kv, hp.head_dim, o.slots, TensorType::F16);
    SlotTable slots(o.slots, kv.position_bytes(), o.prefix_cache);
    Batcher batcher(*b.vocab, kContext, o.prompt_chunk);
    ForwardScratch scratch(b.model(), kContext, &b.pool,
                           Batcher::max_step_tokens(o.prompt_chunk, o.slots), b.loaded.cache.get());
    StepScratch buffers;
    Step step;
    std::vector<BatchEvent> events;
    std::map<uint64_t, Served> out;
    std::map<uint64_t, int32_t> slot_of;
    std::vector<uint64_t> waiting;
    size_t arrived = 0;
    for (int n = 0; n < 100000; ++n) {
        while (arrived < requests.size() && requests[arrived].step <= n) {
            batcher.open(arrived, requests[arrived].prompt, greedy(requests[arrived].max_tokens));
            waiting.push_back(arrived++);
        }
        while (!waiting.empty()) {
            const SlotTable::Grant grant = slots.acquire(requests[waiting.front()].prompt);
            if (grant.slot < 0) break;
            batcher.start(waiting.front(), grant.slot, grant.reused);
            slot_of[waiting.front()] = grant.slot;
            waiting.erase(waiting.begin());
        }
        if (!batcher.plan(step)) {
            if (arrived == requests.size() && waiting.empty()) break;
            continue;
        }
        if (o.split > 0) {
            run_step(b.model(), kv, 0, o.split, step, scratch, buffers);
            run_step(b.model(), kv, o.split, hp.n_layer, step, scratch, buffers);
        } else {
            run_step(b.model(), kv, 0, hp.n_layer, step, scratch, buffers);
        }
        batcher.finish(step, events);
        for (const BatchEvent& e : events) {
            if (e.kind == BatchEvent::Kind::Token) {
                out[e.sequence].tokens.push_back(e.token.id);
            } else {
                out[e.sequence].finish = batcher.sequence(e.sequence)->stream->finish_reason();
                slots.release(slot_of.at(e.sequence), batcher.remove(e.sequence));
            }
        }
    }
    REQUIRE(batcher.empty());
    if (stats) *stats = slots.stats();
    return out;
}

// Prompts of different lengths from the model's own vocabulary.
std::vector<TokenId> prompt_of(const Vocab& vocab, int i) {
    static const char* texts[] = {
        "Once upon a time",
        "Tom had a big red ball. He liked to throw it to his dog",
        "The sun",
        "Lily and her mom went to the park. They saw a duck in the pond and",
        "One day, a little bird",
        "Sam wanted to build a tall tower out of blocks. He worked all morning, but every time "
        "the tower fell down. His sister came to help",
        "A cat sat",
        "There was a small boat on a lake. The boat was blue and",
    };
    return vocab.tokenize(texts[i % 8], true);
}

void check_against_alone(Bench& b, const std::vector<Request>& requests, const ServeOptions& o) {
    const auto served = serve(b, requests, o);
    REQUIRE(served.size() == requests.size());
    for (size_t i = 0; i < requests.size(); ++i) {
        INFO("request " << i << " (" << requests[i].prompt.size() << " prompt tokens)");
        const Served expected = b.alone(requests[i].prompt, requests[i].max_tokens);
        CHECK(served.at(i).tokens == expected.tokens);
        CHECK(served.at(i).finish == expected.finish);
    }
}

} // namespace

TEST_CASE("batched sequences get the tokens each gets alone: 1, 3 and 8 at once") {
    Bench b(test::bundled_model(), false);
    const Vocab& v = *b.vocab;
    ServeOptions o;
    SUBCASE("one") { check_against_alone(b, {{0, prompt_of(v, 5), 30}}, o); }
    SUBCASE("three, joining at different steps") {
        check_against_alone(b, {{0, prompt_of(v, 0), 40}, {3, prompt_of(v, 1), 25},
                                {9, prompt_of(v, 5), 33}},
                            o);
    }
    SUBCASE("eight, different lengths, joining and leaving at different times") {
        std::vector<Request> r;
        for (int i = 0; i < 8; ++i) r.push_back({i * 4 % 11, prompt_of(v, i), 12 + 7 * i});
        check_against_alone(b, r, o);
        o.split = 3; // as two layer executors run it
        check_against_alone(b, r, o);
    }
    SUBCASE("more requests than slots: later ones start as slots free up") {
        std::vector<Request> r;
        for (int i = 0; i < 6; ++i) r.push_back({0, prompt_of(v, i), 10 + i});
        o.slots = 2;
        check_against_alone(b, r, o);
    }
    SUBCASE("a prompt chunk of one token, and one longer than any prompt") {
        std::vector<Request> r = {{0, prompt_of(v, 3), 20}, {1, prompt_of(v, 5), 20}};
        o.prompt_chunk = 1;
        check_against_alone(b, r, o);
        o.prompt_chunk = 128;
        check_against_alone(b, r, o);
    }
    SUBCASE("a sequence that fills its context ends with length, as alone") {
        check_against_alone(b, {{0, prompt_of(v, 5), 500}, {2, prompt_of(v, 0), 30}}, o);
    }
}

TEST_CASE("batched sequences of a quantized GQA model with the weight cache match alone") {
    for (const char* shape : {"test-tiny-qwen2", "test-tiny-llama3"}) {
        INFO(shape);
        const std::string path = test::temp_path(std::string(shape) + "-batch.gguf");
        SynthOptions options;
        options.shape = shape;
        options.type = TensorType::Q4_0;
        write_synthetic_model(options, path);
        {
            Bench b(path, true);
            std::vector<Request> r;
            for (int i = 0; i < 8; ++i) {
                std::vector<TokenId> prompt;
                for (int t = 0; t < 3 + 9 * i; ++t)
                    prompt.push_back(TokenId((t * 37 + i * 101 + 5) % b.vocab->size()));
                r.push_back({i, prompt, 9 + 2 * i});
            }
            check_against_alone(b, r, ServeOptions{});
        }
        std::filesystem::remove(path);
    }
}

TEST_CASE("the prefix cache: a prompt that begins with a kept one computes only the rest, and "
          "gets the same tokens") {
    Bench b(test::bundled_model(), false);
    const std::vector<TokenId> system = prompt_of(*b.vocab, 5); // the shared beginning
    std::vector<TokenId> longer = system;
    for (TokenId t : b.vocab->tokenize(" Then they ate cake.", false)) longer.push_back(t);
    const std::vector<Request> r = {{0, system, 10}, {200, longer, 20}, {400, system, 10}};
    ServeOptions o;
    o.slots = 3;
    SlotStats with_stats, without_stats;
    o.prefix_cache = true;
    const auto with = serve(b, r, o, &with_stats);
    o.prefix_cache = false;
    const auto without = serve(b, r, o, &without_stats);
    for (size_t i = 0; i < r.size(); ++i) {
        INFO("request " << i);
        CHECK(with.at(i) == without.at(i));
        CHECK(with.at(i) == b.alone(r[i].prompt, r[i].max_tokens));
    }
    // The second request reused the whole first prompt and its fed answer as far as they
    // agree; the third, the first prompt but its last token.
    CHECK(with_stats.hits == 2);
    CHECK(with_stats.reused_tokens >= system.size() + system.size() - 1);
    CHECK(without_stats.hits == 0);
    CHECK(without_stats.reused_tokens == 0);
    CHECK(without_stats.held_tokens == 0);
    CHECK(with_stats.held_tokens > 0);
    CHECK(with_stats.held_bytes ==
          uint64_t(with_stats.held_tokens) * KvCachePool(b.model().hparams().n_layer, 1,
                                                         b.model().hparams().n_head_kv,
                                                         b.model().hparams().head_dim, 1,
                                                         TensorType::F16)
                                                 .position_bytes());
}

TEST_CASE("the slot table gives the longest kept prefix, else the least recently used slot") {
    SlotTable t(3, 100, true);
    const auto a = t.acquire({1, 2, 3, 4});
    const auto b = t.acquire({9, 9});
    const auto c = t.acquire({7});
    CHECK(a.slot >= 0);
    CHECK(b.slot >= 0);
    CHECK(c.slot >= 0);
    CHECK(t.acquire({1}).slot == -1); // all in use
    CHECK(t.stats().in_use == 3);
    t.release(a.slot, {1, 2, 3, 4, 5});
    t.release(b.slot, {9, 9, 8});
    t.release(c.slot, {7, 7});
    CHECK(t.stats().held_tokens == 10);
    CHECK(t.stats().held_bytes == 1000);
    // The longest common prefix wins, short of the prompt's last token.
    auto g = t.acquire({1, 2, 3, 4, 5, 6});
    CHECK(g.slot == a.slot);
    CHECK(g.reused == 5);
    t.release(g.slot, {1, 2, 3});
    g = t.acquire({9, 9, 8});
    CHECK(g.slot == b.slot);
    CHECK(g.reused == 2); // the whole prompt is held, but its last token must be computed
    t.release(g.slot, {});
    // Nothing in common: the least recently released (c, then a).
    g = t.acquire({42, 43});
    CHECK(g.slot == c.slot);
    CHECK(g.reused == 0);
    CHECK(t.stats().hits == 2);
    CHECK(t.stats().misses == 4);
    CHECK(t.stats().reused_tokens == 7);
    // Off: nothing is kept or reused.
    t.set_prefix_cache(false);
    CHECK(t.stats().held_tokens == 0);
    t.release(g.slot, {1, 2, 3});
    g = t.acquire({1, 2, 3, 4});
    CHECK(g.reused == 0);
}

TEST_CASE("with sliding-window rings a kept sequence is extended, or cut back only as far as "
          "the rings allow") {
    SlotTable t(1, 100, true, /*rewind_limit=*/3);
    auto g = t.acquire({1, 2});
    t.release(g.slot, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
    g = t.acquire({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}); // extended: all 10 reused
    CHECK(g.reused == 10);
    t.release(g.slot, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
    g = t.acquire({1, 2, 3, 4, 5, 6, 7, 99}); // cut back by 3: the rings still hold it
    CHECK(g.reused == 7);
    t.release(g.slot, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
    g = t.acquire({1, 2, 3, 4, 5, 6, 99}); // by 4: gone, computed anew
    CHECK(g.reused == 0);
}

TEST_CASE("a sequence ended while its step runs finishes when the step is back; bad starts "
          "are refused") {
    Bench b(test::bundled_model(), false);
    const LlamaHyperParams& hp = b.model().hparams();
    KvCachePool kv(hp.n_layer, kContext, hp.n_head_kv, hp.head_dim, 2, TensorType::F16);
    Batcher batcher(*b.vocab, kContext, 4);
    ForwardScratch scratch(b.model(), kContext, &b.pool, Batcher::max_step_tokens(4, 2));
    StepScratch buffers;
    const auto prompt = prompt_of(*b.vocab, 1);
    batcher.open(1, prompt, greedy(10));
    CHECK_THROWS_AS(batcher.start(1, 0, int64_t(prompt.size())), Error);
    batcher.start(1, 0, 0);
    Step step;
    REQUIRE(batcher.plan(step));
    CHECK(step.tokens.size() == 4); // the first chunk
    CHECK(step.segments.at(0).logits_row == -1);
    CHECK_FALSE(batcher.end(1)); // in flight
    run_step(b.model(), kv, 0, hp.n_layer, step, scratch, buffers);
    std::vector<BatchEvent> events;
    batcher.finish(step, events);
    REQUIRE(events.size() == 1);
    CHECK(events[0].kind == BatchEvent::Kind::Finished);
    CHECK(batcher.remove(1).size() == 4); // what the slot holds: the chunk read
    CHECK_FALSE(batcher.plan(step));
    // A prompt that leaves no room to generate is refused at open.
    CHECK_THROWS_AS(batcher.open(2, std::vector<TokenId>(kContext, 1), greedy(1)), Error);
    // A step whose slot does not exist fails with an error, not a crash.
    batcher.open(3, prompt, greedy(1));
    batcher.start(3, 7, 0);
    REQUIRE(batcher.plan(step));
    CHECK_THROWS_AS(run_step(b.model(), kv, 0, hp.n_layer, step, scratch, buffers), Error);
    batcher.fail(step, events);
    CHECK(events.size() == 1);
}
