// test_synth.cpp — `woolly synth` files load back through Woolly's own reader and run; the
// Q4_0 weight quantizer stays within one step of its input.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>

#include "engine/context.h"
#include "engine/error.h"
#include "engine/generation.h"
#include "engine/synthetic_model.h"
#include "engine/tensor_types.h"
#include "test_support.h"

using namespace woolly;

TEST_CASE("synthetic models of every type load, tokenize and decode") {
    const auto dir = std::filesystem::temp_directory_path();
    for (TensorType type :
         {TensorType::F32, TensorType::F16, TensorType::BF16, TensorType::Q8_0, TensorType::Q4_0}) {
        INFO(type_traits(type).name);
        const std::string path =
            (dir / ("woolly-synth-test-" + std::string(type_traits(type).name) + ".gguf")).string();
        SynthOptions options;
        options.shape = "test-tiny";
        options.type = type;
        write_synthetic_model(options, path);
        auto model = LlamaModel::load(path);
        const ModelShape& shape = *find_model_shape("test-tiny");
        CHECK(model->hparams().n_embd == shape.n_embd);
        CHECK(model->hparams().n_layer == shape.n_layer);
        CHECK(model->hparams().n_head_kv == shape.n_head_kv);
        CHECK(model->layers[0].wq.traits->type == type);
        CHECK(model->output.traits->type == (type == TensorType::Q4_0 ? TensorType::Q8_0 : type));
        Vocab vocab(model->gguf());
        CHECK(vocab.size() == shape.n_vocab);
        const auto tokens = vocab.tokenize("hi", true);
        CHECK(tokens.front() == 1);
        LlamaContext context(*model);
        for (TokenId t : tokens) {
            const float* logits = context.decode(t);
            for (int64_t i = 0; i < model->hparams().n_vocab; ++i)
                REQUIRE(std::isfinite(logits[i]));
        }
        std::filesystem::remove(path);
    }
    SynthOptions bad;
    bad.shape = "llama-900b";
    CHECK_THROWS_WITH_AS(write_synthetic_model(bad, (dir / "x.gguf").string()),
                         doctest::Contains("unknown shape 'llama-900b'"), Error);
}

TEST_CASE("the Q4_0 quantizer's round trip stays within one step per block") {
    std::mt19937 rng(3);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    const TypeTraits& q4 = type_traits(TensorType::Q4_0);
    for (int64_t blocks : {1, 7, 33}) {
        const int64_t n = blocks * 32;
        std::vector<float> x(static_cast<size_t>(n)), back(static_cast<size_t>(n));
        for (auto& v : x) v = normal(rng);
        std::vector<uint8_t> q(size_t(blocks) * 18);
        q4.quantize_row(x.data(), q.data(), n);
        q4.dequantize_row(q.data(), back.data(), n);
        for (int64_t b = 0; b < blocks; ++b) {
            float amax = 0;
            for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[size_t(b * 32 + j)]));
            const float step = amax / 8.0f * 1.001f; // |d|, plus f16 rounding of d
            for (int j = 0; j < 32; ++j)
                REQUIRE(std::fabs(back[size_t(b * 32 + j)] - x[size_t(b * 32 + j)]) <= step);
        }
    }
}
