// test_golden.cpp — the engine against llama.cpp: greedy tokens and logits at every position.
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "engine/context.h"
#include "engine/error.h"
#include "engine/generation.h"
#include "engine/model.h"
#include "engine/text/vocab.h"
#include "test_support.h"

using namespace woolly;

namespace {

// BOS + "Once upon a time, there was a little girl named Lily. She loved to play".
const std::vector<int32_t> kLogitTokens = {1,   403, 407, 261, 378, 432, 383, 286, 261, 376, 298,
                                           315, 421, 395, 317, 426, 338, 401, 396, 267, 337};

std::vector<float> read_logits(const std::string& path) {
    const auto bytes = test::read_bytes(path);
    std::vector<float> out(bytes.size() / 4);
    std::memcpy(out.data(), bytes.data(), out.size() * 4);
    return out;
}

struct RowComparison {
    double cosine;
    double max_abs;
    bool argmax_agrees;
    double golden_margin; // top-1 minus top-2 of the golden row
};

RowComparison compare_row(const float* got, const float* want, int64_t n) {
    double dot = 0, nw = 0, ng = 0, max_abs = 0;
    int64_t arg_got = 0, arg_want = 0;
    for (int64_t i = 0; i < n; ++i) {
        dot += double(got[i]) * want[i];
        ng += double(got[i]) * got[i];
        nw += double(want[i]) * want[i];
        max_abs = std::max(max_abs, std::fabs(double(got[i]) - want[i]));
        if (got[i] > got[arg_got]) arg_got = i;
        if (want[i] > want[arg_want]) arg_want = i;
    }
    float second = -INFINITY;
    for (int64_t i = 0; i < n; ++i)
        if (i != arg_want) second = std::max(second, want[i]);
    return {dot / std::sqrt(nw * ng), max_abs, arg_got == arg_want,
            double(want[arg_want] - second)};
}

// The golden files come from llama.cpp run with an F32 KV cache: compared like with like unless
// a test asks for another cache type.
std::vector<float> our_logits(const LlamaModel& model, WeightCache* cache = nullptr,
                              TensorType kv_type = TensorType::F32) {
    LlamaContext context(model, 0, nullptr, kDefaultPromptBatch, cache, kv_type);
    const int64_t n_vocab = model.hparams().n_vocab;
    std::vector<float> out;
    for (int32_t t : kLogitTokens) {
        const float* logits = context.decode(t);
        out.insert(out.end(), logits, logits + n_vocab);
    }
    return out;
}

std::vector<TokenId> greedy(const LlamaModel& model, const Vocab& vocab, const std::string& prompt,
                            int32_t n, std::vector<TokenId>* prompt_tokens, std::string* text) {
    LlamaContext context(model, 0, nullptr, kDefaultPromptBatch, nullptr, TensorType::F32);
    GenerationParams params;
    params.max_tokens = n;
    params.sampling.temperature = 0.0f;
    Generation generation(context, vocab, prompt, params);
    generation.ingest_prompt();
    std::vector<TokenId> tokens;
    GeneratedToken token;
    while (generation.step(token)) {
        tokens.push_back(token.id);
        if (text) *text += token.text;
    }
    if (text) *text += generation.tail();
    if (prompt_tokens) *prompt_tokens = generation.prompt_tokens();
    return tokens;
}

} // namespace

TEST_CASE("the bundled model continues 'Once upon a time' as llama2.c's README shows") {
    // The expected text is from the model's provenance note (llama2.c's own output).
    auto model = LlamaModel::load(test::bundled_model());
    Vocab vocab(model->gguf());
    std::string text;
    greedy(*model, vocab, "Once upon a time", 48, nullptr, &text);
    CHECK(text == ", there was a little girl named Lily. She loved to play outside in the park. "
                  "One day, she saw a big, red ball. She wanted to play with it,");
}

TEST_CASE("greedy generation reproduces llama.cpp's tokens for every golden prompt") {
    const std::string path = test::shared_file("golden/stories260K-greedy.jsonl");
    WOOLLY_REQUIRE_SHARED(path);
    auto model = LlamaModel::load(test::shared_file("models/stories260K.gguf"));
    Vocab vocab(model->gguf());
    std::ifstream in(path);
    std::string line;
    int cases = 0;
    while (std::getline(in, line)) {
        if (line.empty()) continue;
        const auto golden = nlohmann::json::parse(line);
        const std::string prompt = golden["prompt"];
        INFO("prompt: " << prompt);
        std::vector<TokenId> prompt_tokens;
        std::string text;
        const auto tokens = greedy(*model, vocab, prompt, golden["n_predict"].get<int32_t>(),
                                   &prompt_tokens, &text);
        CHECK(prompt_tokens == golden["prompt_tokens"].get<std::vector<TokenId>>());
        CHECK(tokens == golden["tokens"].get<std::vector<TokenId>>());
        CHECK(text == golden["text"].get<std::string>());
        ++cases;
    }
    CHECK(cases >= 4);
}

TEST_CASE("stories260K logits match llama.cpp's within 1e-3 at every position") {
    const std::string path = test::shared_file("golden/stories260K.logits");
    WOOLLY_REQUIRE_SHARED(path);
    auto model = LlamaModel::load(test::shared_file("models/stories260K.gguf"));
    const auto want = read_logits(path);
    const auto got = our_logits(*model);
    REQUIRE(got.size() == want.size());
    const int64_t n_vocab = model->hparams().n_vocab;
    for (size_t row = 0; row < kLogitTokens.size(); ++row) {
        const auto cmp =
            compare_row(&got[row * size_t(n_vocab)], &want[row * size_t(n_vocab)], n_vocab);
        INFO("position " << row);
        CHECK(cmp.max_abs < 1e-3);
    }
}

TEST_CASE("every quantization of synth-small matches llama.cpp's logits") {
    const std::vector<std::pair<std::string, double>> files = {
        {"F16", 0.999},   {"BF16", 0.999},  {"Q8_0", 0.999},  {"Q4_0", 0.99},
        {"Q4_1", 0.99},   {"Q5_0", 0.99},   {"Q5_1", 0.99},   {"Q2_K", 0.99},
        {"Q3_K_M", 0.99}, {"Q4_K_M", 0.99}, {"Q5_K_M", 0.99}, {"Q6_K", 0.99}};
    for (const auto& [type, min_cosine] : files) {
        const std::string model_path = test::shared_file("golden/synth-small-" + type + ".gguf");
        WOOLLY_REQUIRE_SHARED(model_path);
        auto model = LlamaModel::load(model_path);
        const auto want = read_logits(test::shared_file("golden/synth-small-" + type + ".logits"));
        // From the file's layout, and through the weight cache's repacked layouts (where the
        // kernel level has kernels for them).
        for (const bool cached : {false, true}) {
            WeightCache cache(uint64_t(1) << 30);
            const auto got = our_logits(*model, cached ? &cache : nullptr);
            REQUIRE(got.size() == want.size());
            const int64_t n_vocab = model->hparams().n_vocab;
            double worst = 1.0;
            for (size_t row = 0; row < kLogitTokens.size(); ++row) {
                const auto cmp =
                    compare_row(&got[row * size_t(n_vocab)], &want[row * size_t(n_vocab)], n_vocab);
                INFO(type << std::string(cached ? " cached" : "") << " position " << row
                          << " cosine " << cmp.cosine);
                CHECK(cmp.cosine >= min_cosine);
                if (cmp.golden_margin >= 0.1) CHECK(cmp.argmax_agrees);
                worst = std::min(worst, cmp.cosine);
            }
            MESSAGE(type << std::string(cached ? " (weight cache: " : " (") << cache.stats().entries
                         << " repacked matrices): worst cosine " << worst);
        }
    }
}

TEST_CASE("F16 and Q8_0 KV caches stay close to llama.cpp's F32-cache logits") {
    // The cost of the cache's precision, measured against the independent oracle: F16 rounds
    // keys and values to 11 bits, Q8_0 to 8 bits per 32 values.
    const std::string path = test::shared_file("golden/synth-small-F16.gguf");
    WOOLLY_REQUIRE_SHARED(path);
    auto model = LlamaModel::load(path);
    const auto want = read_logits(test::shared_file("golden/synth-small-F16.logits"));
    const int64_t n_vocab = model->hparams().n_vocab;
    for (const auto& [kv_type, min_cosine] :
         {std::pair{TensorType::F16, 0.9999}, std::pair{TensorType::Q8_0, 0.999}}) {
        const auto got = our_logits(*model, nullptr, kv_type);
        REQUIRE(got.size() == want.size());
        double worst = 1.0;
        for (size_t row = 0; row < kLogitTokens.size(); ++row) {
            const auto cmp =
                compare_row(&got[row * size_t(n_vocab)], &want[row * size_t(n_vocab)], n_vocab);
            INFO(std::string(type_traits(kv_type).name) << " cache, position " << row);
            CHECK(cmp.cosine >= min_cosine);
            worst = std::min(worst, cmp.cosine);
        }
        MESSAGE(std::string(type_traits(kv_type).name) << " KV cache: worst cosine " << worst);
    }
    // stories260K's heads are 8 wide: too narrow for Q8_0's blocks of 32, refused clearly.
    auto bundled = LlamaModel::load(test::bundled_model());
    CHECK_THROWS_WITH_AS(
        LlamaContext(*bundled, 0, nullptr, kDefaultPromptBatch, nullptr, TensorType::Q8_0),
        doctest::Contains("multiple of 32 (this model's is 8)"), Error);
}
