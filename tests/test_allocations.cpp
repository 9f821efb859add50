// test_allocations.cpp — steady-state generation allocates nothing, alone or batched: a global
// operator new hook counts heap allocations while 32 tokens (or steps) are generated.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <atomic>
#include <cstdlib>
#include <new>

#include "engine/model/context.h"
#include "engine/serve/batch.h"
#include "engine/text/generation.h"
#include "test_support.h"

namespace {
std::atomic<long> g_allocations{0};
}

// Every form is replaced, so that each allocation is counted and new/delete stay paired
// (AddressSanitizer checks that they do).
namespace {
void* counted_malloc(std::size_t size) noexcept {
    g_allocations.fetch_add(1, std::memory_order_relaxed);
    return std::malloc(size ? size : 1);
}
void* counted_or_throw(std::size_t size) {
    if (void* p = counted_malloc(size)) return p;
    throw std::bad_alloc();
}
} // namespace

void* operator new(std::size_t size) {
    return counted_or_throw(size);
}
void* operator new[](std::size_t size) {
    return counted_or_throw(size);
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
    return counted_malloc(size);
}
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
    return counted_malloc(size);
}
void operator delete(void* p) noexcept {
    std::free(p);
}
void operator delete[](void* p) noexcept {
    std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
    std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
    std::free(p);
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
    std::free(p);
}
void operator delete[](void* p, const std::nothrow_t&) noexcept {
    std::free(p);
}

using namespace woolly;

TEST_CASE("generating 32 tokens allocates nothing after the prompt") {
    auto model = LlamaModel::load(test::bundled_model());
    Vocab vocab(model->gguf());
    LlamaContext context(*model);
    for (float temperature : {0.0f, 0.8f}) {
        GenerationParams params;
        params.max_tokens = 40;
        params.sampling.temperature = temperature;
        params.sampling.repeat_penalty = 1.1f;
        params.sampling.seed = 7;
        params.stop = {"no such stop string"};
        const long at_start = g_allocations.load();
        Generation generation(context, vocab, "Once upon a time", params);
        CHECK(g_allocations.load() > at_start); // the hook is live: set-up does allocate
        generation.ingest_prompt();
        GeneratedToken token;
        REQUIRE(generation.step(token)); // warm-up: first-use paths
        const long before = g_allocations.load();
        int steps = 0;
        while (steps < 32 && generation.step(token)) ++steps;
        const long allocations = g_allocations.load() - before;
        INFO("temperature " << temperature);
        CHECK(steps == 32);
        CHECK(allocations == 0);
    }
}

TEST_CASE("steps of four batched sequences allocate nothing once their prompts are read") {
    auto model = LlamaModel::load(test::bundled_model());
    Vocab vocab(model->gguf());
    const LlamaHyperParams& hp = model->hparams();
    constexpr int64_t kSlots = 4, kChunk = 8, kContext = 256;
    KvCachePool kv(hp.n_layer, kContext, hp.n_head_kv, hp.head_dim, kSlots, TensorType::F16);
    Batcher batcher(vocab, kContext, kChunk);
    ForwardScratch scratch(*model, kContext, nullptr, Batcher::max_step_tokens(kChunk, kSlots));
    StepScratch buffers;
    Step step;
    std::vector<BatchEvent> events;
    const char* prompts[] = {"Once upon a time", "The little dog", "Lily and Tom went to the park",
                             "A cat"};
    for (int i = 0; i < kSlots; ++i) {
        GenerationParams params;
        params.max_tokens = 100;
        params.sampling.temperature = i % 2 ? 0.8f : 0.0f;
        params.sampling.repeat_penalty = 1.1f;
        params.sampling.seed = uint64_t(i);
        batcher.open(uint64_t(i), vocab.tokenize(prompts[i], true), params);
        batcher.start(uint64_t(i), i, 0);
    }
    auto one_step = [&] {
        REQUIRE(batcher.plan(step));
        run_step(*model, kv, 0, hp.n_layer, step, scratch, buffers);
        batcher.finish(step, events);
        for (const BatchEvent& e : events) REQUIRE(e.kind == BatchEvent::Kind::Token);
    };
    for (int i = 0; i < 8; ++i) one_step(); // the prompts, then first-use paths
    REQUIRE(step.segments.size() == size_t(kSlots));
    const long before = g_allocations.load();
    for (int i = 0; i < 32; ++i) one_step();
    CHECK(g_allocations.load() - before == 0);
}
