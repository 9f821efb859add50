// test_synth.cpp — `woolly synth` files load back through Woolly's own reader and run; the
// Q4_0 weight quantizer stays within one step of its input.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>

#include "engine/error.h"
#include "engine/gguf/gguf_writer.h"
#include "engine/gguf/synthetic_model.h"
#include "engine/model/context.h"
#include "engine/quant/tensor_types.h"
#include "engine/text/generation.h"
#include "test_support.h"

using namespace woolly;

TEST_CASE("synthetic models of every type load, tokenize and decode") {
    for (TensorType type :
         {TensorType::F32, TensorType::F16, TensorType::BF16, TensorType::Q8_0, TensorType::Q4_0}) {
        INFO(type_traits(type).name);
        const std::string path =
            test::temp_path("synth-test-" + std::string(type_traits(type).name) + ".gguf");
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
        // Q4_0 files keep the output matrix in Q6_K, as llama.cpp's do; Q8_0 where its rows
        // are not whole super-blocks of 256.
        const TensorType output_type = type != TensorType::Q4_0  ? type
                                       : shape.n_embd % 256 == 0 ? TensorType::Q6_K
                                                                 : TensorType::Q8_0;
        CHECK(model->output.traits->type == output_type);
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
    // Q4_K_M: llama.cpp's mix on a shape whose rows are whole k-quant blocks.
    {
        const std::string path = test::temp_path("synth-test-Q4_K_M.gguf");
        SynthOptions options;
        options.shape = "test-tiny-k";
        options.type = TensorType::Q4_K;
        options.q4_k_m = true;
        write_synthetic_model(options, path);
        auto model = LlamaModel::load(path);
        CHECK(model->gguf().get_uint("general.file_type").value_or(0) == 15);
        CHECK(model->layers[0].wq.traits->type == TensorType::Q4_K);
        CHECK(model->layers[0].w_down.traits->type == TensorType::Q4_K);
        CHECK(model->layers[1].w_down.traits->type == TensorType::Q6_K); // the last eighth
        CHECK(model->layers[1].wv.traits->type == TensorType::Q6_K);
        CHECK(model->output.traits->type == TensorType::Q6_K);
        LlamaContext context(*model);
        const float* logits = context.decode(1);
        for (int64_t i = 0; i < model->hparams().n_vocab; ++i) REQUIRE(std::isfinite(logits[i]));
        std::filesystem::remove(path);
    }
    SynthOptions bad;
    bad.shape = "llama-900b";
    CHECK_THROWS_WITH_AS(write_synthetic_model(bad, test::temp_path("x.gguf")),
                         doctest::Contains("unknown shape 'llama-900b'"), Error);
}

TEST_CASE("synthetic files of each architecture carry its layout and run") {
    for (const char* name : {"test-tiny-llama3", "test-tiny-qwen2", "test-tiny-qwen3",
                             "test-tiny-phi3", "test-tiny-qwen3moe", "test-tiny-gemma3"}) {
        INFO(name);
        const std::string path = test::temp_path(std::string(name) + ".gguf");
        SynthOptions options;
        options.shape = name;
        options.type = TensorType::Q8_0;
        write_synthetic_model(options, path);
        auto model = LlamaModel::load(path);
        const ModelShape& shape = *find_model_shape(name);
        CHECK(std::string(model->hparams().arch->name) == shape.arch);
        CHECK(model->hparams().rope_freq_base == shape.rope_base);
        CHECK((model->output.data == model->token_embd.data) == shape.tied);
        CHECK(model->layers[0].bq.empty() != shape.qkv_bias);
        CHECK(model->rope_freqs.empty() != shape.rope_freqs);
        CHECK(model->layers[0].q_norm.empty() != shape.qk_norm);
        if (shape.head_dim) CHECK(model->hparams().head_dim == shape.head_dim);
        CHECK(model->layers[0].gate_exps.size() == size_t(shape.n_expert));
        CHECK(model->layers[0].post_attn_norm.empty() != shape.post_norms);
        CHECK(model->hparams().n_swa == shape.n_swa);
        CHECK((model->gguf().find_tensor("blk.0.attn_qkv.weight") != nullptr) == shape.fused);
        // Fused matrices are row ranges of one tensor: q, k, v and gate, up follow each other.
        if (shape.fused) {
            const LlamaLayer& l = model->layers[0];
            CHECK(l.wk.data == l.wq.data + l.wq.bytes());
            CHECK(l.wv.data == l.wk.data + l.wk.bytes());
            CHECK(l.w_up.data == l.w_gate.data + l.w_gate.bytes());
        }
        LlamaContext context(*model);
        // Longer than test-tiny-gemma3's window of 8, so that its local layers forget.
        std::vector<int32_t> prompt = {1, 5, 9, 77, 3, 200, 41, 41, 17, 300, 8, 9, 10};
        const float* batched = context.decode_batch(prompt.data(), int64_t(prompt.size()));
        std::vector<float> a(batched, batched + model->hparams().n_vocab);
        LlamaContext one_by_one(*model);
        const float* logits = nullptr;
        for (int32_t t : prompt) logits = one_by_one.decode(t);
        for (int64_t i = 0; i < model->hparams().n_vocab; ++i) {
            REQUIRE(std::isfinite(a[size_t(i)]));
            REQUIRE(a[size_t(i)] == logits[i]); // a batch gives the same bits as one at a time
        }
        std::filesystem::remove(path);
    }
}

// Gemma 3's local layers keep a ring of window + max_batch - 1 positions: a sixth of the
// memory of a full cache for gemma3-1b's shape, and the same bits as a full cache whatever the
// chunks, including a sequence cut back as far as the rings allow and extended again.
TEST_CASE("sliding-window layers keep a ring: less memory, the same logits as a full cache") {
    const std::string path = test::temp_path("synth-ring-gemma3.gguf");
    SynthOptions options;
    options.shape = "test-tiny-gemma3";
    options.type = TensorType::F16;
    write_synthetic_model(options, path);
    const auto model = LlamaModel::load(path);
    const LlamaHyperParams& hp = model->hparams();
    REQUIRE(hp.n_swa == 8);
    const std::vector<int64_t> windows = hp.kv_windows();
    REQUIRE(std::count(windows.begin(), windows.end(), 8) == 6); // 5 local, 1 global, 1 local
    const int64_t n_ctx = 128, max_batch = 5;
    KvCache ring(hp.n_layer, n_ctx, hp.n_head_kv, hp.head_dim, TensorType::F16, windows, max_batch);
    KvCache full(hp.n_layer, n_ctx, hp.n_head_kv, hp.head_dim, TensorType::F16);
    CHECK(ring.kept(0) == 8 + 4);
    CHECK(ring.kept(5) == n_ctx);
    CHECK(ring.rewind_limit() == max_batch);
    CHECK(full.rewind_limit() == INT64_MAX);
    CHECK(ring.bytes() == full.bytes() / 7 * 1 + full.bytes() / 7 * 6 * 12 / n_ctx);
    CHECK(ring.bytes() == KvCache::bytes_for(hp.n_layer, n_ctx, hp.n_head_kv, hp.head_dim,
                                             TensorType::F16, windows, max_batch));
    // gemma3-1b's shape: 26 layers, 4 of them global, a window of 512, a 32768 context.
    std::vector<int64_t> gemma3_1b(26, 512);
    for (int64_t l = 5; l < 26; l += 6) gemma3_1b[size_t(l)] = 0;
    const uint64_t one_b_full = KvCache::bytes_for(26, 32768, 1, 256, TensorType::F16);
    const uint64_t one_b_ring =
        KvCache::bytes_for(26, 32768, 1, 256, TensorType::F16, gemma3_1b, 512);
    // 4/26 + 22/26 x 1023/32768 = 0.180 of the full cache (a sixth, and the rings' batch room).
    CHECK(double(one_b_ring) / double(one_b_full) == doctest::Approx(0.1801).epsilon(0.001));

    ForwardScratch scratch(*model, n_ctx, nullptr, max_batch);
    std::vector<float> x_ring(size_t(max_batch * hp.n_embd)), x_full(x_ring.size());
    std::vector<float> logits_ring(size_t(hp.n_vocab)), logits_full(logits_ring.size());
    std::mt19937 rng(9);
    std::uniform_int_distribution<int32_t> token(1, int32_t(hp.n_vocab - 1));
    std::uniform_int_distribution<int64_t> chunk(1, max_batch);
    // Feeds n tokens at `pos` to both caches, in chunks of 1 to max_batch; the last logits
    // must be the same bits.
    auto feed = [&](int64_t pos, int64_t n) {
        for (int64_t done = 0; done < n;) {
            const int64_t k = std::min(chunk(rng), n - done);
            for (int64_t t = 0; t < k; ++t) {
                const int32_t id = token(rng);
                embed_token(*model, id, x_ring.data() + t * hp.n_embd);
                embed_token(*model, id, x_full.data() + t * hp.n_embd);
            }
            run_layers(*model, 0, hp.n_layer, pos + done, k, x_ring.data(), ring, scratch);
            run_layers(*model, 0, hp.n_layer, pos + done, k, x_full.data(), full, scratch);
            done += k;
            compute_logits(*model, x_ring.data() + (k - 1) * hp.n_embd, logits_ring.data(),
                           scratch);
            compute_logits(*model, x_full.data() + (k - 1) * hp.n_embd, logits_full.data(),
                           scratch);
            REQUIRE(std::memcmp(logits_ring.data(), logits_full.data(),
                                logits_ring.size() * sizeof(float)) == 0);
        }
    };
    feed(0, 60);  // the rings wrap several times
    feed(55, 30); // cut back by the limit (5) and extended
    feed(85, 40); // extended at the end
    // A step of more tokens than the rings were sized for is refused.
    ForwardScratch wider(*model, n_ctx, nullptr, max_batch + 1);
    std::vector<float> x_wide(size_t((max_batch + 1) * hp.n_embd));
    CHECK_THROWS_WITH_AS(
        run_layers(*model, 0, hp.n_layer, 100, max_batch + 1, x_wide.data(), ring, wider),
        doctest::Contains("sliding-window rings take at most 5"), Error);
    std::filesystem::remove(path);
}

// The factors llama.cpp's converter wrote into synth-llama3-F16 (rope base 500000, 16 rotated
// dimensions) are the ones synth writes for Llama 3.1 shapes.
TEST_CASE("Llama 3.1 rope factors as convert_hf_to_gguf writes them") {
    const std::string path = test::shared_file("golden/synth-llama3-F16.gguf");
    WOOLLY_REQUIRE_SHARED(path);
    auto file = GgufFile::open(path);
    const GgufTensorInfo* t = file->find_tensor("rope_freqs.weight");
    REQUIRE(t);
    REQUIRE(t->dims == std::vector<uint64_t>{8});
    std::vector<float> want(8);
    std::memcpy(want.data(), t->data, 32);
    const std::vector<float> got = llama31_rope_factors(16, 500000.0f);
    REQUIRE(got.size() == 8);
    for (size_t i = 0; i < 8; ++i) CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-6));
}

TEST_CASE("the Q4_K and Q6_K quantizers' round trips stay within a step of their input") {
    std::mt19937 rng(4);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (TensorType type : {TensorType::Q4_K, TensorType::Q6_K}) {
        const TypeTraits& t = type_traits(type);
        for (int64_t blocks : {1, 3}) {
            const int64_t n = blocks * 256;
            std::vector<float> x(static_cast<size_t>(n)), back(static_cast<size_t>(n));
            for (auto& v : x) v = normal(rng);
            x[5] = 0.0f; // and a sub-block of zeros
            std::fill(x.begin() + 32, x.begin() + 64, 0.0f);
            std::vector<uint8_t> q(size_t(blocks) * t.type_size);
            t.quantize_row(x.data(), q.data(), n);
            t.dequantize_row(q.data(), back.data(), n); // checked against gguf-py elsewhere
            const int sub = type == TensorType::Q4_K ? 32 : 16;
            for (int64_t s = 0; s < n / sub; ++s) {
                // The sub-block's own step (range / 15, or max|x| / 31), widened for the 6- or
                // 8-bit rounding of the sub-block scales against the block's largest.
                float lo = 0, hi = 0, amax = 0, block_step = 0;
                for (int l = 0; l < sub; ++l) {
                    const float v = x[size_t(s * sub + l)];
                    lo = std::min(lo, v);
                    hi = std::max(hi, v);
                    amax = std::max(amax, std::fabs(v));
                }
                const int64_t b = s * sub / 256;
                for (int64_t i = b * 256; i < (b + 1) * 256; ++i)
                    block_step = std::max(block_step, std::fabs(x[size_t(i)]));
                const float step = type == TensorType::Q4_K ? (hi - lo) / 15.0f : amax / 31.0f;
                const float slack = type == TensorType::Q4_K ? block_step * 2.0f / 63.0f
                                                             : block_step / 31.0f / 127.0f * 32.0f;
                for (int l = 0; l < sub; ++l) {
                    INFO(t.name << " value " << s * sub + l);
                    REQUIRE(std::fabs(back[size_t(s * sub + l)] - x[size_t(s * sub + l)]) <=
                            step * 0.5f + slack + 1e-6f);
                }
            }
        }
    }
}

TEST_CASE("the IQ4_XS quantizer's round trip stays within half the table's widest gap") {
    std::mt19937 rng(6);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    const TypeTraits& t = type_traits(TensorType::IQ4_XS);
    for (int64_t blocks : {1, 3}) {
        const int64_t n = blocks * 256;
        std::vector<float> x(static_cast<size_t>(n)), back(static_cast<size_t>(n));
        for (auto& v : x) v = normal(rng);
        std::fill(x.begin() + 32, x.begin() + 64, 0.0f); // a sub-block of zeros
        std::vector<uint8_t> q(size_t(blocks) * t.type_size);
        t.quantize_row(x.data(), q.data(), n);
        t.dequantize_row(q.data(), back.data(), n); // checked against ggml's elsewhere
        for (int64_t s = 0; s < n / 32; ++s) {
            // The sub-block's exact scale maps its largest magnitude to the table's -127; the
            // stored one is a 6-bit multiple of the block's d (largest scale / 31), within d/2.
            // The table's widest gap is 24 (89 to 113), and the far end reaches only 113.
            float amax = 0, block_amax = 0;
            for (int l = 0; l < 32; ++l) amax = std::max(amax, std::fabs(x[size_t(s * 32 + l)]));
            const int64_t b = s * 32 / 256;
            for (int64_t i = b * 256; i < (b + 1) * 256; ++i)
                block_amax = std::max(block_amax, std::fabs(x[size_t(i)]));
            const float d = block_amax / 127.0f / 31.0f * 1.001f; // and its f16 rounding
            const float bound = (amax / 127.0f + d / 2) * 14.0f + 127.0f * d / 2 + 1e-6f;
            for (int l = 0; l < 32; ++l) {
                INFO("value " << s * 32 + l);
                REQUIRE(std::fabs(back[size_t(s * 32 + l)] - x[size_t(s * 32 + l)]) <= bound);
            }
        }
    }
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

// What Woolly cannot run of a mixture of experts yet is refused by the key that says it, before
// any weight is read.
TEST_CASE("a mixture of experts Woolly cannot run yet is refused, naming the key") {
    struct Case {
        const char* key;
        uint32_t value;
        const char* message;
    };
    for (const Case& c :
         {Case{"expert_shared_count", 1, "qwen3moe.expert_shared_count is 1"},
          Case{"expert_gating_func", 2, "qwen3moe.expert_gating_func is 2"},
          Case{"leading_dense_block_count", 1, "qwen3moe.leading_dense_block_count is 1"},
          Case{"expert_used_count", 9, "qwen3moe.expert_used_count' is 9"}}) {
        INFO(c.key);
        GgufWriter w;
        w.add_string("general.architecture", "qwen3moe");
        for (const char* k :
             {"context_length", "embedding_length", "block_count", "feed_forward_length"})
            w.add_u32(std::string("qwen3moe.") + k, 64);
        w.add_u32("qwen3moe.attention.head_count", 4);
        w.add_u32("qwen3moe.expert_count", 8);
        if (std::string(c.key) != "expert_used_count") w.add_u32("qwen3moe.expert_used_count", 2);
        w.add_u32(std::string("qwen3moe.") + c.key, c.value);
        const std::vector<uint8_t> bytes = w.serialize();
        std::shared_ptr<const GgufFile> file =
            GgufFile::parse("moe.gguf", bytes.data(), bytes.size());
        CHECK_THROWS_WITH_AS(LlamaModel::from_gguf(file), doctest::Contains(c.message), Error);
    }
}
