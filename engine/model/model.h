// model.h — a Llama-family model (Llama 2/3, Mistral, Mixtral, Qwen2, Qwen3, Qwen3-MoE, Phi-3,
// Gemma 2 and 3): its architecture as data, hyper-parameters from GGUF metadata, and views of its
// weights.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/gguf/gguf.h"
#include "engine/quant/tensor_types.h"
#include "engine/quant/weight_matrix.h"

namespace woolly {

// A 1-D float32 vector (norm weights, biases, rope factors), dequantized at load because it is
// tiny. Empty when the file has none (an optional bias).
using NormWeights = std::vector<float>;

// How rotary embeddings pair a head's dimensions: Llama rotates (x[2i], x[2i+1]); GPT-NeoX's
// layout (Qwen2, Phi-3) rotates (x[i], x[i + n_rot/2]).
enum class RopeStyle { Adjacent, Neox };

// The feed-forward's gate: silu(gate) * up (SwiGLU), or gelu(gate) * up with GELU's tanh form
// (GeGLU, Gemma).
enum class FfnActivation { Silu, GeluTanh };

// What sets an architecture apart, as data: read once from general.architecture.
struct ArchTraits {
    const char* name; // general.architecture, and the prefix of its metadata keys
    RopeStyle rope;
    bool fused_gate_up; // ffn_up holds the gate's rows, then the up projection's (Phi-3)
    bool qk_norm;       // each head's query and key are RMS-normed before rope (Qwen3)
    bool experts;       // the feed-forward is always a mixture of experts (any arch may have one)
    FfnActivation ffn = FfnActivation::Silu;
    bool gemma = false; // embeddings times sqrt(n_embd); each sub-layer's output RMS-normed
                        // (post_attention_norm, post_ffw_norm) before it is added
    // Sliding-window attention: layer l sees only the last attention.sliding_window positions
    // when l % swa_pattern < swa_pattern - 1 (0: no layer does), with rope base swa_rope_base
    // there (0: the model's rope.freq_base).
    int swa_pattern = 0;
    float swa_rope_base = 0.0f;
    // The layer count of the variant whose scores are scaled by 1 / sqrt(n_embd / n_head)
    // rather than 1 / sqrt(head_dim) (Gemma's 27B models, as llama.cpp tells them); 0: none.
    int64_t wide_scale_layers = 0;
};
// The traits of `name`; nullptr when Woolly does not have it.
const ArchTraits* find_arch(std::string_view name);
// The architectures Woolly has, for error messages.
std::string known_archs();

struct LlamaHyperParams {
    const ArchTraits* arch = nullptr;
    int64_t n_vocab = 0;
    // Keys below are <arch>.<key>, e.g. llama.context_length or qwen2.context_length.
    int64_t n_ctx_train = 0;         // context_length
    int64_t n_embd = 0;              // embedding_length
    int64_t n_layer = 0;             // block_count
    int64_t n_ff = 0;                // feed_forward_length
    int64_t n_head = 0;              // attention.head_count
    int64_t n_head_kv = 0;           // attention.head_count_kv (GQA); = n_head when absent
    int64_t head_dim = 0;            // attention.key_length; = n_embd / n_head when absent
    int64_t n_rot = 0;               // rope.dimension_count; = head_dim when absent
    float rms_eps = 1e-5f;           // attention.layer_norm_rms_epsilon
    float rope_freq_base = 10000.0f; // rope.freq_base
    float rope_freq_scale = 1.0f;    // 1 / rope.scaling.factor (linear scaling)
    // A mixture of experts: the router's softmax over expert_count experts picks the
    // expert_used_count most likely for each token, weighted by their probabilities
    // renormalised over the chosen. 0 experts: a dense feed-forward.
    int64_t n_expert = 0;       // expert_count
    int64_t n_expert_used = 0;  // expert_used_count
    int64_t n_ff_exp = 0;       // expert_feed_forward_length; = n_ff when absent
    int64_t n_swa = 0;          // attention.sliding_window, where the arch has local layers
    float attn_softcap = 0.0f;  // attn_logit_softcapping: scores = c * tanh(scores / c); 0: none
    float final_softcap = 0.0f; // final_logit_softcapping: the same on the logits
    float attn_scale = 0.0f;    // the scores' scale: 1 / sqrt(head_dim), but for Gemma's 27B

    bool is_local(int64_t layer) const {
        const int p = arch->swa_pattern;
        return p > 0 && n_swa > 0 && layer % p < p - 1;
    }

    int64_t n_embd_kv() const { return n_head_kv * head_dim; }
    // Each layer's sliding window (0: a global layer), as KvCache takes them.
    std::vector<int64_t> kv_windows() const {
        std::vector<int64_t> windows(size_t(n_layer), 0);
        for (int64_t l = 0; l < n_layer; ++l)
            if (is_local(l)) windows[size_t(l)] = n_swa;
        return windows;
    }
};

// A fused matrix (Phi-3's attn_qkv, its gate-and-up ffn_up) is seen as the matrices it stacks:
// views of consecutive rows of the one tensor.
struct LlamaLayer {
    NormWeights attn_norm; // [n_embd]
    WeightMatrix wq;       // [n_embd] -> [n_head * head_dim]
    WeightMatrix wk;       // [n_embd] -> [n_head_kv * head_dim]
    WeightMatrix wv;       // [n_embd] -> [n_head_kv * head_dim]
    NormWeights bq;        // [n_head * head_dim] or empty (Qwen2 has Q, K and V biases)
    NormWeights bk;        // [n_head_kv * head_dim] or empty
    NormWeights bv;        // [n_head_kv * head_dim] or empty
    NormWeights q_norm;    // [head_dim] or empty (Qwen3: every query head RMS-normed by it)
    NormWeights k_norm;    // [head_dim] or empty (every key head)
    NormWeights post_attn_norm; // [n_embd] or empty (Gemma: wo's output RMS-normed by it)
    NormWeights post_ffn_norm;  // [n_embd] or empty (w_down's)
    WeightMatrix wo;       // [n_head * head_dim] -> [n_embd]
    NormWeights ffn_norm;  // [n_embd]
    WeightMatrix w_gate;   // [n_embd] -> [n_ff]   (w1); empty with experts
    WeightMatrix w_up;     // [n_embd] -> [n_ff]   (w3); empty with experts
    WeightMatrix w_down;   // [n_ff] -> [n_embd]   (w2); empty with experts
    // A mixture of experts: the router, and each expert's matrices as views of the 3-D tensors
    // ffn_{gate,up,down}_exps (expert e is the tensor's e-th slice).
    WeightMatrix router;                 // [n_embd] -> [n_expert] (ffn_gate_inp)
    std::vector<WeightMatrix> gate_exps; // [n_expert] each [n_embd] -> [n_ff_exp]
    std::vector<WeightMatrix> up_exps;   // [n_expert] each [n_embd] -> [n_ff_exp]
    std::vector<WeightMatrix> down_exps; // [n_expert] each [n_ff_exp] -> [n_embd]
};

class LlamaModel {
public:
    // Loads and checks every shape against the metadata; throws Error naming the tensor,
    // the expected shape and the actual one.
    static std::unique_ptr<LlamaModel> load(const std::string& path);
    static std::unique_ptr<LlamaModel> from_gguf(std::shared_ptr<const GgufFile> file);

    const LlamaHyperParams& hparams() const { return hparams_; }
    const GgufFile& gguf() const { return *file_; }
    std::shared_ptr<const GgufFile> gguf_shared() const { return file_; }

    WeightMatrix token_embd; // n_vocab rows of n_embd
    std::vector<LlamaLayer> layers;
    NormWeights output_norm; // [n_embd]
    WeightMatrix output;     // n_vocab rows of n_embd; token_embd when the file ties them
    NormWeights rope_freqs;  // [n_rot / 2] divisors of each pair's frequency (Llama 3.1), or empty

    // Bytes of weights read to generate one token (every matrix once, one embedding row; of
    // the experts, the share a token is routed to: expert_used_count of expert_count).
    uint64_t weight_bytes_per_token() const;
    // Bytes of every expert's three matrices in the file (0 without a mixture); `largest` (may
    // be null) hears one expert's most.
    uint64_t expert_bytes(uint64_t* largest = nullptr) const;

    // f(matrix, batched) for every matrix a forward pass multiplies, in its order: the layers'
    // (batched: a prompt multiplies them by many tokens), then the output (one token's logits).
    template <typename F> void for_each_matrix(F&& f) const {
        for (const LlamaLayer& l : layers) {
            for (const WeightMatrix* w : {&l.wq, &l.wk, &l.wv, &l.wo}) f(*w, true);
            if (l.gate_exps.empty()) {
                for (const WeightMatrix* w : {&l.w_gate, &l.w_up, &l.w_down}) f(*w, true);
                continue;
            }
            f(l.router, true);
            for (size_t e = 0; e < l.gate_exps.size(); ++e)
                for (const WeightMatrix* w : {&l.gate_exps[e], &l.up_exps[e], &l.down_exps[e]})
                    f(*w, true);
        }
        f(output, false);
    }

private:
    std::shared_ptr<const GgufFile> file_;
    LlamaHyperParams hparams_;
};

} // namespace woolly
