// test_generation.cpp — stop rules and limits of the generate loop, on the bundled model.
#include "engine/model/context.h"
#include "engine/error.h"
#include "engine/text/generation.h"
#include "engine/runtime/thread_pool.h"

#include "test_support.h"
#include <cstring>

using namespace woolly;

namespace {
// llama2.c's README continuation of "Once upon a time" for this model.
const std::string kContinuation = ", there was a little girl named Lily. She loved to play outside";

struct Result {
    std::string text;
    int n_tokens = 0;
    FinishReason finish = FinishReason::None;
};

Result generate(const std::string& prompt, GenerationParams params) {
    static auto model = LlamaModel::load(test::bundled_model());
    static Vocab vocab(model->gguf());
    LlamaContext context(*model);
    Generation g(context, vocab, prompt, params);
    g.ingest_prompt();
    Result r;
    GeneratedToken t;
    while (g.step(t)) {
        r.text += t.text;
        ++r.n_tokens;
    }
    r.text += g.tail();
    r.finish = g.finish_reason();
    return r;
}

GenerationParams greedy(int32_t max_tokens) {
    GenerationParams p;
    p.max_tokens = max_tokens;
    p.sampling.temperature = 0.0f;
    return p;
}
} // namespace

TEST_CASE("a stop string ends the text just before it") {
    auto p = greedy(48);
    p.stop = {"Lily"};
    const auto r = generate("Once upon a time", p);
    CHECK(r.finish == FinishReason::Stop);
    CHECK(r.text == ", there was a little girl named ");
}

TEST_CASE("a stop string that never completes does not swallow text") {
    auto p = greedy(48);
    p.stop = {"Lily and the dragon"};
    const auto r = generate("Once upon a time", p);
    CHECK(r.finish == FinishReason::Length);
    CHECK(r.n_tokens == 48);
    CHECK(r.text.rfind(kContinuation, 0) == 0);
}

TEST_CASE("max_tokens ends with finish reason length") {
    const auto r = generate("Once upon a time", greedy(5));
    CHECK(r.finish == FinishReason::Length);
    CHECK(r.n_tokens == 5);
    CHECK(kContinuation.rfind(r.text, 0) == 0);
    CHECK(generate("Once upon a time", greedy(0)).n_tokens == 0);
}

TEST_CASE("a prompt longer than the context is refused") {
    auto model = LlamaModel::load(test::bundled_model());
    Vocab vocab(model->gguf());
    LlamaContext context(*model, 8);
    CHECK_THROWS_WITH_AS(
        Generation(context, vocab, "Once upon a time there was a very long story", greedy(4)),
        doctest::Contains("expected fewer than the context size 8"), Error);
    auto p = greedy(4);
    p.stop = {""};
    CHECK_THROWS_WITH_AS(Generation(context, vocab, "Hi", p), doctest::Contains("stop"), Error);
}

TEST_CASE("a full context ends generation with length, and decode refuses past it") {
    auto model = LlamaModel::load(test::bundled_model());
    Vocab vocab(model->gguf());
    LlamaContext context(*model, 10);
    Generation g(context, vocab, "Once upon a time", greedy(100));
    g.ingest_prompt();
    GeneratedToken t;
    int n = 0;
    while (g.step(t)) ++n;
    CHECK(g.finish_reason() == FinishReason::Length);
    CHECK(n == 10 - 5 + 1); // 5 prompt tokens; the last sampled token is never fed back
    CHECK_THROWS_WITH_AS(context.decode(1), doctest::Contains("context is full"), Error);
    context.reset();
    CHECK_THROWS_WITH_AS(context.decode(100000), doctest::Contains("out of range"), Error);
}

TEST_CASE("a thread pool changes nothing: the same logits, bit for bit, on 1 and 3 threads") {
    auto model = LlamaModel::load(test::bundled_model());
    ThreadPool pool(3);
    LlamaContext one(*model), three(*model, 0, &pool);
    for (int32_t t : {1, 403, 407, 261, 378, 432}) {
        const float* a = one.decode(t);
        const float* b = three.decode(t);
        CHECK(std::memcmp(a, b, sizeof(float) * size_t(model->hparams().n_vocab)) == 0);
    }
}

TEST_CASE("the thread pool runs every index once per job, job after job") {
    ThreadPool pool(4);
    CHECK(pool.size() == 4);
    std::vector<int> hits(4);
    for (int job = 0; job < 1000; ++job) {
        auto f = [&](int i, int n) {
            REQUIRE(n == 4);
            ++hits[size_t(i)];
        };
        pool.run(f);
    }
    CHECK(hits == std::vector<int>{1000, 1000, 1000, 1000});
}

TEST_CASE("a prompt in batches gives the same logits, bit for bit, as token by token") {
    auto model = LlamaModel::load(test::bundled_model());
    const std::vector<int32_t> tokens = {1,   403, 407, 261, 378, 432, 383, 286, 261, 376, 298,
                                         315, 421, 395, 317, 426, 338, 401, 396, 267, 337};
    const size_t n_vocab = size_t(model->hparams().n_vocab);
    LlamaContext one_by_one(*model, 0, nullptr, 1);
    const float* logits = nullptr;
    for (int32_t t : tokens) logits = one_by_one.decode(t);
    const std::vector<float> want(logits, logits + n_vocab);
    logits = one_by_one.decode(432);
    const std::vector<float> want_next(logits, logits + n_vocab);
    for (int64_t batch : {1, 4, 7, 32}) {
        ThreadPool pool(2);
        LlamaContext batched(*model, 0, &pool, batch);
        const float* got = batched.decode_batch(tokens.data(), int64_t(tokens.size()));
        INFO("batch " << batch);
        CHECK(std::memcmp(got, want.data(), sizeof(float) * n_vocab) == 0);
        CHECK(batched.n_past() == int64_t(tokens.size()));
        // And generation continues from there exactly as it would have.
        CHECK(std::memcmp(batched.decode(432), want_next.data(), sizeof(float) * n_vocab) == 0);
    }
}
