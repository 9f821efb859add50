// synthetic_model.h — random-weight GGUF files with real models' shapes, architectures and
// complete metadata, so that anyone can benchmark without downloading a model (`woolly synth`).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/quant/tensor_types.h"

namespace woolly {

struct ModelShape {
    const char* name;
    int64_t n_embd, n_ff, n_layer, n_head, n_head_kv, n_ctx, n_vocab;
    float rms_eps;
    const char* arch = "llama"; // general.architecture: llama, qwen2, qwen3 or phi3
    float rope_base = 10000.0f;
    const char* vocab = "llama-spm"; // ../shared/vocab/ggml-vocab-<vocab>.gguf, copied if there
    bool tied = false;               // no output.weight: the embeddings serve as the output
    bool qkv_bias = false;           // Q, K and V biases (Qwen2)
    bool fused = false;              // attn_qkv and a gate-and-up ffn_up (Phi-3)
    bool rope_freqs = false;         // Llama 3.1's rope frequency factors (scale 32, context 8192)
    int64_t head_dim = 0;            // attention.key_length when set; else n_embd / n_head
    bool qk_norm = false;            // attn_q_norm and attn_k_norm (Qwen3, Gemma 3)
    // A mixture of experts (qwen3moe): n_expert experts of n_ff_exp, n_expert_used a token.
    int64_t n_expert = 0, n_expert_used = 0, n_ff_exp = 0;
    bool post_norms = false; // post_attention_norm and post_ffw_norm (Gemma)
    int64_t n_swa = 0;       // attention.sliding_window (Gemma)
};

// tinyllama-1.1b, llama-3b, llama-7b, stories-15m, one per architecture (llama-3.2-1b,
// qwen2.5-0.5b, qwen3-0.6b, phi-3-mini, gemma3-1b), a mixture of experts that fits this machine
// (olmoe-1b-7b: 64 experts of 1024, 8 a token, written as qwen3moe), and for tests test-tiny (a
// few KB), test-tiny-k (rows of whole 256-value blocks, for the k-quants) and
// test-tiny-{llama3,qwen2,qwen3,phi3,qwen3moe,gemma3}.
const std::vector<ModelShape>& model_shapes();
const ModelShape* find_model_shape(const std::string& name);

struct SynthOptions {
    std::string shape = "tinyllama-1.1b";
    TensorType type = TensorType::Q4_0; // F32, F16, BF16, Q8_0, Q4_0, Q4_K or Q6_K
    // llama.cpp's Q4_K_M mix (type must be Q4_K): Q6_K for the output matrix, and for attn_v
    // and ffn_down in the layers llama.cpp gives more bits (the first and last eighth, and
    // every third between).
    bool q4_k_m = false;
    uint64_t seed = 1;
    // A GGUF whose tokenizer keys are copied when its vocabulary has the shape's size (the
    // shape's own vocabulary from ../shared/vocab); otherwise a generated SentencePiece-style
    // vocabulary is written.
    std::string vocab_source;
};

// Llama 3.1's rope frequency factors for n_rot rotated dimensions: 1 for short wavelengths, 32
// for long ones, a smooth blend between (Meta's rope scaling with factor 32, low 1, high 4 and an
// original context of 8192, as convert_hf_to_gguf.py writes rope_freqs.weight).
std::vector<float> llama31_rope_factors(int64_t n_rot, float base);

// Writes the file (streamed: memory stays small); throws Error on a bad option or I/O failure.
// Returns a one-line description (shape, type, bytes, vocabulary used).
std::string write_synthetic_model(const SynthOptions& options, const std::string& path);

} // namespace woolly
