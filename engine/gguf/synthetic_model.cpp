// synthetic_model.cpp — shapes, a generated vocabulary, and weights drawn from a fixed-seed
// generator, quantized row by row while the file is written.
#include "engine/gguf/synthetic_model.h"

#include <cmath>
#include <cstring>
#include <filesystem>

#include "engine/error.h"
#include "engine/gguf/gguf.h"
#include "engine/gguf/gguf_writer.h"

namespace woolly {
namespace {

// splitmix64: small, fast, and the same numbers on every machine.
struct Random {
    uint64_t state;
    uint64_t next() {
        uint64_t z = (state += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    // Uniform in [-a, a): speed does not depend on the distribution, and this one is cheap.
    float uniform(float a) { return (float(next() >> 40) * 0x1.0p-24f * 2.0f - 1.0f) * a; }
};

uint64_t hash_name(const std::string& s, uint64_t seed) {
    uint64_t h = 1469598103934665603ull ^ seed;
    for (char c : s) h = (h ^ uint8_t(c)) * 1099511628211ull;
    return h;
}

// llama.cpp's general.file_type values for the types written here.
uint32_t file_type_of(TensorType t) {
    switch (t) {
    case TensorType::F32:
        return 0;
    case TensorType::F16:
        return 1;
    case TensorType::Q4_0:
        return 2;
    case TensorType::Q8_0:
        return 7;
    case TensorType::BF16:
        return 32;
    case TensorType::Q4_K:
        return 15; // LLAMA_FTYPE_MOSTLY_Q4_K_M: the only Q4_K file synth writes
    case TensorType::Q6_K:
        return 18;
    case TensorType::IQ4_XS:
        return 30;
    default:
        throw Error(std::string("woolly synth cannot write ") + type_traits(t).name);
    }
}

bool copy_vocabulary(const std::string& source, int64_t n_vocab, GgufWriter& w) {
    if (source.empty() || !std::filesystem::exists(source)) return false;
    auto file = GgufFile::open(source);
    const auto* tokens = file->get_string_array("tokenizer.ggml.tokens");
    if (!tokens || int64_t(tokens->size()) != n_vocab) return false;
    auto strings = [&](const char* key) {
        if (const auto* a = file->get_string_array(key))
            w.add_string_array(key, std::vector<std::string>(a->begin(), a->end()));
    };
    for (const char* key :
         {"tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.chat_template"})
        if (auto v = file->get_string(key)) w.add_string(key, *v);
    strings("tokenizer.ggml.tokens");
    strings("tokenizer.ggml.merges");
    if (auto scores = file->get_f32_array("tokenizer.ggml.scores", tokens->size()); !scores.empty())
        w.add_f32_array("tokenizer.ggml.scores", scores);
    if (auto types = file->get_i32_array("tokenizer.ggml.token_type", tokens->size());
        !types.empty())
        w.add_i32_array("tokenizer.ggml.token_type", types);
    for (const char* key : {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                            "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.eot_token_id",
                            "tokenizer.ggml.padding_token_id"}) {
        if (auto v = file->get_uint(key)) w.add_u32(key, uint32_t(*v));
    }
    for (const char* key : {"tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token",
                            "tokenizer.ggml.add_space_prefix"}) {
        if (auto v = file->get_bool(key)) w.add_bool(key, *v);
    }
    return true;
}

// <unk>, <s>, </s>, the 256 byte tokens, then "▁t<i>" pieces.
void generate_vocabulary(int64_t n_vocab, GgufWriter& w) {
    std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
    std::vector<int32_t> types = {2, 3, 3};
    for (int b = 0; b < 256; ++b) {
        char name[8];
        std::snprintf(name, sizeof name, "<0x%02X>", b);
        tokens.push_back(name);
        types.push_back(6);
    }
    for (int64_t i = int64_t(tokens.size()); i < n_vocab; ++i) {
        tokens.push_back("\xe2\x96\x81t" + std::to_string(i));
        types.push_back(1);
    }
    tokens.resize(size_t(n_vocab));
    types.resize(size_t(n_vocab));
    std::vector<float> scores(static_cast<size_t>(n_vocab));
    for (int64_t i = 0; i < n_vocab; ++i) scores[size_t(i)] = -float(i);
    w.add_string("tokenizer.ggml.model", "llama");
    w.add_string_array("tokenizer.ggml.tokens", tokens);
    w.add_f32_array("tokenizer.ggml.scores", scores);
    w.add_i32_array("tokenizer.ggml.token_type", types);
    w.add_u32("tokenizer.ggml.bos_token_id", 1);
    w.add_u32("tokenizer.ggml.eos_token_id", 2);
    w.add_u32("tokenizer.ggml.unknown_token_id", 0);
}

} // namespace

std::vector<float> llama31_rope_factors(int64_t n_rot, float base) {
    const double scale = 32, low = 1, high = 4, original = 8192;
    std::vector<float> out;
    for (int64_t i = 0; i < n_rot; i += 2) {
        const double wavelength = 2 * M_PI * std::pow(double(base), double(i) / double(n_rot));
        if (wavelength < original / high) {
            out.push_back(1.0f);
        } else if (wavelength > original / low) {
            out.push_back(float(scale));
        } else {
            const double smooth = (original / wavelength - low) / (high - low);
            out.push_back(float(1.0 / ((1 - smooth) / scale + smooth)));
        }
    }
    return out;
}

const std::vector<ModelShape>& model_shapes() {
    // A table, a shape a line or two.
    // clang-format off
    static const std::vector<ModelShape> shapes = {
        {"tinyllama-1.1b", 2048, 5632, 22, 32, 4, 2048, 32000, 1e-5f},
        {"llama-3b", 3200, 8640, 26, 32, 32, 2048, 32000, 1e-6f},
        {"llama-7b", 4096, 11008, 32, 32, 32, 4096, 32000, 1e-5f},
        {"stories-15m", 288, 768, 6, 6, 6, 256, 32000, 1e-5f},
        {"llama-3.2-1b", 2048, 8192, 16, 32, 8, 131072, 128256, 1e-5f, "llama", 500000.0f, "llama3",
         /*tied=*/true, false, false, /*rope_freqs=*/true},
        {"qwen2.5-0.5b", 896, 4864, 24, 14, 2, 32768, 151936, 1e-6f, "qwen2", 1000000.0f, "qwen2",
         /*tied=*/true, /*qkv_bias=*/true},
        {"qwen3-0.6b", 1024, 3072, 28, 16, 8, 40960, 151936, 1e-6f, "qwen3", 1000000.0f, "qwen2",
         /*tied=*/true, false, false, false, /*head_dim=*/128, /*qk_norm=*/true},
        {"phi-3-mini", 3072, 8192, 32, 32, 32, 4096, 32064, 1e-5f, "phi3", 10000.0f, "phi-3", false,
         false, /*fused=*/true},
        {"gemma3-1b", 1152, 6912, 26, 4, 1, 32768, 262144, 1e-6f, "gemma3", 1000000.0f, "gemma",
         /*tied=*/true, false, false, false, /*head_dim=*/256, /*qk_norm=*/true, 0, 0, 0,
         /*post_norms=*/true, /*n_swa=*/512},
        {"olmoe-1b-7b", 2048, 1024, 16, 16, 16, 4096, 50304, 1e-5f, "qwen3moe", 10000.0f, "none",
         false, false, false, false, 0, /*qk_norm=*/true, /*n_expert=*/64, /*used=*/8,
         /*n_ff_exp=*/1024},
        {"test-tiny", 64, 128, 2, 4, 2, 128, 320, 1e-5f},
        {"test-tiny-k", 256, 512, 2, 4, 2, 128, 320, 1e-5f}, // rows of whole k-quant blocks
        // The other architectures' layouts at test-tiny's size (generated vocabularies).
        {"test-tiny-llama3", 64, 128, 2, 4, 2, 128, 320, 1e-5f, "llama", 500000.0f, "none",
         /*tied=*/true, false, false, /*rope_freqs=*/true},
        {"test-tiny-qwen2", 64, 128, 2, 4, 2, 128, 320, 1e-6f, "qwen2", 1000000.0f, "none",
         /*tied=*/true, /*qkv_bias=*/true},
        {"test-tiny-qwen3", 64, 128, 2, 4, 2, 128, 320, 1e-6f, "qwen3", 1000000.0f, "none",
         /*tied=*/true, false, false, false, /*head_dim=*/32, /*qk_norm=*/true},
        {"test-tiny-phi3", 64, 128, 2, 4, 4, 128, 320, 1e-5f, "phi3", 10000.0f, "none", false,
         false, /*fused=*/true},
        {"test-tiny-qwen3moe", 64, 128, 2, 4, 2, 128, 320, 1e-6f, "qwen3moe", 1000000.0f, "none",
         false, false, false, false, 0, /*qk_norm=*/true, /*n_expert=*/8, /*used=*/2,
         /*n_ff_exp=*/64},
        // Experts that span many pages each (73 KiB at Q4_0), for the expert cache's tests.
        {"test-moe-paged", 256, 512, 4, 4, 2, 128, 320, 1e-6f, "qwen3moe", 1000000.0f, "none",
         false, false, false, false, 0, /*qk_norm=*/true, /*n_expert=*/16, /*used=*/4,
         /*n_ff_exp=*/512},
        {"test-tiny-gemma3", 64, 128, 7, 4, 1, 128, 320, 1e-6f, "gemma3", 1000000.0f, "none",
         /*tied=*/true, false, false, false, /*head_dim=*/32, /*qk_norm=*/true, 0, 0, 0,
         /*post_norms=*/true, /*n_swa=*/8},
    };
    // clang-format on
    return shapes;
}

const ModelShape* find_model_shape(const std::string& name) {
    for (const auto& s : model_shapes())
        if (name == s.name) return &s;
    return nullptr;
}

std::string write_synthetic_model(const SynthOptions& options, const std::string& path) {
    const ModelShape* shape = find_model_shape(options.shape);
    if (!shape) {
        std::string names;
        for (const auto& s : model_shapes())
            names += std::string(names.empty() ? "" : ", ") + s.name;
        throw Error("unknown shape '" + options.shape + "' (expected one of: " + names + ")");
    }
    const uint32_t file_type = file_type_of(options.type);
    const ModelShape& s = *shape;
    const int64_t head_dim = s.head_dim ? s.head_dim : s.n_embd / s.n_head;

    GgufWriter w;
    const std::string arch = s.arch;
    auto key = [&](const char* k) { return arch + "." + k; };
    w.add_string("general.architecture", arch);
    w.add_string("general.name", std::string("woolly-synth-") + s.name);
    w.add_u32("general.file_type", file_type);
    if (options.q4_k_m != (options.type == TensorType::Q4_K))
        throw Error("woolly synth writes Q4_K only as the Q4_K_M mix");
    if (type_traits(options.type).block_size > 1) w.add_u32("general.quantization_version", 2);
    w.add_u32(key("context_length"), uint32_t(s.n_ctx));
    w.add_u32(key("embedding_length"), uint32_t(s.n_embd));
    w.add_u32(key("block_count"), uint32_t(s.n_layer));
    w.add_u32(key("feed_forward_length"), uint32_t(s.n_ff));
    w.add_u32(key("attention.head_count"), uint32_t(s.n_head));
    w.add_u32(key("attention.head_count_kv"), uint32_t(s.n_head_kv));
    w.add_f32(key("attention.layer_norm_rms_epsilon"), s.rms_eps);
    if (s.head_dim) {
        w.add_u32(key("attention.key_length"), uint32_t(head_dim));
        w.add_u32(key("attention.value_length"), uint32_t(head_dim));
    }
    if (s.n_expert) {
        w.add_u32(key("expert_count"), uint32_t(s.n_expert));
        w.add_u32(key("expert_used_count"), uint32_t(s.n_expert_used));
        w.add_u32(key("expert_feed_forward_length"), uint32_t(s.n_ff_exp));
    }
    if (s.n_swa) w.add_u32(key("attention.sliding_window"), uint32_t(s.n_swa));
    w.add_u32(key("rope.dimension_count"), uint32_t(head_dim));
    w.add_f32(key("rope.freq_base"), s.rope_base);
    w.add_u32(key("vocab_size"), uint32_t(s.n_vocab));
    const bool copied = copy_vocabulary(options.vocab_source, s.n_vocab, w);
    if (!copied) {
        generate_vocabulary(s.n_vocab, w);
        w.add_bool("tokenizer.ggml.add_bos_token", true);
        w.add_bool("tokenizer.ggml.add_eos_token", false);
    }

    // Matrices in the chosen type; the output matrix of a Q4_0, Q4_K_M or IQ4_XS file in Q6_K, as
    // llama.cpp's quantizer writes it; norms in F32. A k-quant matrix whose rows
    // are not whole 256-value super-blocks falls back to Q8_0, as llama.cpp falls back too.
    // `slices` matrices of `rows` one after another (a mixture's experts) make a 3-D tensor.
    auto matrix = [&](const std::string& name, int64_t cols, int64_t rows_per, TensorType type,
                      int64_t slices = 0) {
        if (type_traits(type).block_size == 256 && cols % 256 != 0) type = TensorType::Q8_0;
        const uint64_t seed = hash_name(name, options.seed);
        const float scale = 0.02f * std::sqrt(3.0f); // uniform with standard deviation 0.02
        std::vector<uint64_t> dims = {uint64_t(cols), uint64_t(rows_per)};
        if (slices > 0) dims.push_back(uint64_t(slices));
        const int64_t rows = rows_per * std::max<int64_t>(slices, 1);
        w.add_tensor(name, type, dims, [=](std::vector<uint8_t>& bytes) {
            const TypeTraits& t = type_traits(type);
            const uint64_t row_size = *row_bytes(t, uint64_t(cols));
            std::vector<float> row(static_cast<size_t>(cols));
            Random rng{seed};
            for (int64_t r = 0; r < rows; ++r) {
                for (auto& v : row) v = rng.uniform(scale);
                uint8_t* out = bytes.data() + uint64_t(r) * row_size;
                if (type == TensorType::F32)
                    std::memcpy(out, row.data(), row_size);
                else
                    t.quantize_row(row.data(), out, cols);
            }
        });
    };
    auto vector = [&](const std::string& name, std::vector<float> values) {
        const int64_t n = int64_t(values.size());
        w.add_tensor(name, TensorType::F32, {uint64_t(n)},
                     [values = std::move(values)](std::vector<uint8_t>& bytes) {
                         std::memcpy(bytes.data(), values.data(), values.size() * sizeof(float));
                     });
    };
    auto norm = [&](const std::string& name, int64_t n) {
        vector(name, std::vector<float>(size_t(n), 1.0f));
    };
    auto bias = [&](const std::string& name, int64_t n) { // small, from the name's seed
        Random rng{hash_name(name, options.seed)};
        std::vector<float> b(static_cast<size_t>(n));
        for (auto& v : b) v = rng.uniform(0.02f);
        vector(name, std::move(b));
    };
    const TensorType t = options.type;
    // llama.cpp's use_more_bits(i_layer, n_layer) for Q4_K_M.
    auto more_bits = [&](int64_t l) {
        return options.q4_k_m &&
               (l < s.n_layer / 8 || l >= 7 * s.n_layer / 8 || (l - s.n_layer / 8) % 3 == 2);
    };
    const int64_t n_q = s.n_head * head_dim, n_kv = s.n_head_kv * head_dim;
    // A tied file's embeddings are its output matrix too: Q6_K where the output would be.
    const TensorType output_type =
        t == TensorType::Q4_0 || t == TensorType::IQ4_XS || options.q4_k_m ? TensorType::Q6_K : t;
    matrix("token_embd.weight", s.n_embd, s.n_vocab, s.tied ? output_type : t);
    if (s.rope_freqs) vector("rope_freqs.weight", llama31_rope_factors(head_dim, s.rope_base));
    for (int64_t l = 0; l < s.n_layer; ++l) {
        const std::string p = "blk." + std::to_string(l) + ".";
        norm(p + "attn_norm.weight", s.n_embd);
        if (s.fused) {
            matrix(p + "attn_qkv.weight", s.n_embd, n_q + 2 * n_kv, t);
        } else {
            matrix(p + "attn_q.weight", s.n_embd, n_q, t);
            matrix(p + "attn_k.weight", s.n_embd, n_kv, t);
            matrix(p + "attn_v.weight", s.n_embd, n_kv, more_bits(l) ? TensorType::Q6_K : t);
        }
        if (s.qkv_bias) {
            bias(p + "attn_q.bias", n_q);
            bias(p + "attn_k.bias", n_kv);
            bias(p + "attn_v.bias", n_kv);
        }
        if (s.qk_norm) {
            norm(p + "attn_q_norm.weight", head_dim);
            norm(p + "attn_k_norm.weight", head_dim);
        }
        matrix(p + "attn_output.weight", n_q, s.n_embd, t);
        if (s.post_norms) norm(p + "post_attention_norm.weight", s.n_embd);
        norm(p + "ffn_norm.weight", s.n_embd);
        if (s.n_expert) {
            matrix(p + "ffn_gate_inp.weight", s.n_embd, s.n_expert, TensorType::F32);
            matrix(p + "ffn_gate_exps.weight", s.n_embd, s.n_ff_exp, t, s.n_expert);
            matrix(p + "ffn_up_exps.weight", s.n_embd, s.n_ff_exp, t, s.n_expert);
            matrix(p + "ffn_down_exps.weight", s.n_ff_exp, s.n_embd,
                   more_bits(l) ? TensorType::Q6_K : t, s.n_expert);
        } else if (s.fused) {
            matrix(p + "ffn_up.weight", s.n_embd, 2 * s.n_ff, t);
            matrix(p + "ffn_down.weight", s.n_ff, s.n_embd, more_bits(l) ? TensorType::Q6_K : t);
        } else {
            matrix(p + "ffn_gate.weight", s.n_embd, s.n_ff, t);
            matrix(p + "ffn_up.weight", s.n_embd, s.n_ff, t);
            matrix(p + "ffn_down.weight", s.n_ff, s.n_embd, more_bits(l) ? TensorType::Q6_K : t);
        }
        if (s.post_norms) norm(p + "post_ffw_norm.weight", s.n_embd);
    }
    norm("output_norm.weight", s.n_embd);
    if (!s.tied) matrix("output.weight", s.n_embd, s.n_vocab, output_type);
    w.write_file(path);
    return std::string(s.name) + ", " + (options.q4_k_m ? "Q4_K_M" : type_traits(t).name) + ", " +
           std::to_string(std::filesystem::file_size(path)) + " bytes, " +
           (copied ? "vocabulary from " + options.vocab_source
                   : std::string("generated vocabulary"));
}

} // namespace woolly
