// synthetic_model.h — random-weight Llama GGUF files with real models' shapes and complete
// metadata, so that anyone can benchmark without downloading a model (`woolly synth`).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tensor_types.h"

namespace woolly {

struct ModelShape {
    const char* name;
    int64_t n_embd, n_ff, n_layer, n_head, n_head_kv, n_ctx, n_vocab;
    float rms_eps;
};

// tinyllama-1.1b, llama-3b, llama-7b, stories-15m, and for tests test-tiny (a few KB) and
// test-tiny-k (rows of whole 256-value blocks, for the k-quants).
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
    // A GGUF whose tokenizer.ggml.* keys are copied when its vocabulary has the shape's size
    // (the Llama-2 vocabulary of ../shared/vocab/ggml-vocab-llama-spm.gguf); otherwise a
    // generated SentencePiece-style vocabulary is written.
    std::string vocab_source;
};

// Writes the file (streamed: memory stays small); throws Error on a bad option or I/O failure.
// Returns a one-line description (shape, type, bytes, vocabulary used).
std::string write_synthetic_model(const SynthOptions& options, const std::string& path);

} // namespace woolly
