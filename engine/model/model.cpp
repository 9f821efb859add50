// model.cpp — reads an architecture's hyper-parameters and weights from GGUF and checks them
// against each other.
#include "engine/model/model.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "engine/error.h"

namespace woolly {
namespace {

// The architectures: each differs from Llama only in what its traits say.
constexpr ArchTraits kArchs[] = {
    {"llama", RopeStyle::Adjacent, false, false, false}, // Llama 2 and 3, Mistral, Mixtral
    {"qwen2", RopeStyle::Neox, false, false, false},
    {"qwen3", RopeStyle::Neox, false, true, false},
    {"qwen3moe", RopeStyle::Neox, false, true, true},
    {"phi3", RopeStyle::Neox, true, false, false},
    {"gemma2", RopeStyle::Neox, false, false, false, FfnActivation::GeluTanh, true, 2, 0.0f, 46},
    {"gemma3", RopeStyle::Neox, false, true, false, FfnActivation::GeluTanh, true, 6, 10000.0f, 62},
};

std::string shape_string(const std::vector<uint64_t>& dims) {
    std::ostringstream s;
    s << "[";
    for (size_t i = 0; i < dims.size(); ++i) s << (i ? ", " : "") << dims[i];
    s << "]";
    return s.str();
}

class Loader {
public:
    explicit Loader(const GgufFile& file) : file_(file) {}

    int64_t required_count(const std::string& key, int64_t max = int64_t(1) << 31) {
        const auto value = file_.get_uint(key);
        if (!value) throw Error(file_.name() + ": missing metadata key '" + key + "'");
        if (*value == 0 || *value > uint64_t(max)) {
            throw Error(file_.name() + ": metadata key '" + key + "' is " + std::to_string(*value) +
                        " (expected 1 to " + std::to_string(max) + ")");
        }
        return int64_t(*value);
    }

    const GgufTensorInfo& tensor(const std::string& name, std::vector<uint64_t> expected) {
        const GgufTensorInfo* info = file_.find_tensor(name);
        if (!info) {
            throw Error(file_.name() + ": missing tensor '" + name + "' (expected shape " +
                        shape_string(expected) + ")");
        }
        if (info->dims != expected) {
            throw Error(file_.name() + ": tensor '" + name + "' has shape " +
                        shape_string(info->dims) + " (expected " + shape_string(expected) + ")");
        }
        const TypeTraits& traits = type_traits(info->type);
        if (!traits.dequantize_row) {
            throw Error(file_.name() + ": tensor '" + name + "' has type " + traits.name +
                        ", which Woolly cannot compute with");
        }
        return *info;
    }

    WeightMatrix matrix(const std::string& name, int64_t cols, int64_t rows) {
        return view(tensor(name, {uint64_t(cols), uint64_t(rows)}), name, cols, rows);
    }

    NormWeights norm(const std::string& name, int64_t n) {
        const GgufTensorInfo& info = tensor(name, {uint64_t(n)});
        NormWeights w(static_cast<size_t>(n));
        type_traits(info.type).dequantize_row(info.data, w.data(), n);
        return w;
    }

    // A vector the file may leave out (a bias, rope factors): empty when absent.
    NormWeights optional(const std::string& name, int64_t n) {
        return file_.find_tensor(name) ? norm(name, n) : NormWeights{};
    }

    // The n slices of a 3-D tensor [cols, rows, n] (a mixture's experts), each a matrix: rows
    // [e * rows, (e + 1) * rows) of the tensor seen as one matrix.
    std::vector<WeightMatrix> slices(const std::string& name, int64_t cols, int64_t rows,
                                     int64_t n) {
        const GgufTensorInfo& info = tensor(name, {uint64_t(cols), uint64_t(rows), uint64_t(n)});
        const WeightMatrix all = view(info, name, cols, rows * n);
        std::vector<WeightMatrix> out;
        for (int64_t e = 0; e < n; ++e)
            out.push_back(rows_of(all, std::to_string(e), e * rows, rows));
        return out;
    }

    // A tensor's data as a matrix of `rows` rows of `cols` (its shape already checked).
    static WeightMatrix view(const GgufTensorInfo& info, const std::string& name, int64_t cols,
                             int64_t rows) {
        WeightMatrix m;
        m.name = name;
        m.traits = &type_traits(info.type);
        m.cols = cols;
        m.rows = rows;
        m.row_bytes = *row_bytes(*m.traits, uint64_t(cols));
        m.data = info.data;
        return m;
    }

    // Rows [first, first + rows) of `fused`, as a matrix of their own.
    static WeightMatrix rows_of(const WeightMatrix& fused, const std::string& part, int64_t first,
                                int64_t rows) {
        WeightMatrix m = fused;
        m.name = fused.name + "[" + part + "]";
        m.rows = rows;
        m.data = fused.row(first);
        return m;
    }

private:
    const GgufFile& file_;
};

} // namespace

std::unique_ptr<LlamaModel> LlamaModel::load(const std::string& path) {
    return from_gguf(GgufFile::open(path));
}

const ArchTraits* find_arch(std::string_view name) {
    for (const ArchTraits& a : kArchs)
        if (name == a.name) return &a;
    return nullptr;
}

std::string known_archs() {
    std::string out;
    for (const ArchTraits& a : kArchs)
        out += (out.empty() ? "'" : ", '") + std::string(a.name) + "'";
    return out;
}

std::unique_ptr<LlamaModel> LlamaModel::from_gguf(std::shared_ptr<const GgufFile> file) {
    const std::string arch_name = file->get_string("general.architecture").value_or("");
    const ArchTraits* arch = find_arch(arch_name);
    if (!arch) {
        throw Error(file->name() + ": general.architecture is '" + arch_name + "' (expected " +
                    known_archs() + ")");
    }
    auto model = std::unique_ptr<LlamaModel>(new LlamaModel());
    model->file_ = file;
    Loader load(*file);
    LlamaHyperParams& hp = model->hparams_;
    hp.arch = arch;
    const std::string prefix = std::string(arch->name) + ".";
    auto key = [&](const char* k) { return prefix + k; };
    hp.n_ctx_train = load.required_count(key("context_length"));
    hp.n_embd = load.required_count(key("embedding_length"), 1 << 20);
    hp.n_layer = load.required_count(key("block_count"), 4096);
    hp.n_ff = load.required_count(key("feed_forward_length"), 1 << 22);
    hp.n_head = load.required_count(key("attention.head_count"), 4096);
    hp.n_head_kv = file->find(key("attention.head_count_kv"))
                       ? load.required_count(key("attention.head_count_kv"), 4096)
                       : hp.n_head;
    if (hp.n_head % hp.n_head_kv != 0) {
        throw Error(file->name() + ": head_count " + std::to_string(hp.n_head) +
                    " is not a multiple of head_count_kv " + std::to_string(hp.n_head_kv));
    }
    // A head's width: key_length where the file says it (Qwen3's heads are wider than
    // embedding_length / head_count), else the embedding split evenly over the heads.
    if (file->find(key("attention.key_length"))) {
        hp.head_dim = load.required_count(key("attention.key_length"), 1 << 16);
        const int64_t value_length =
            file->find(key("attention.value_length"))
                ? load.required_count(key("attention.value_length"), 1 << 16)
                : hp.head_dim;
        if (value_length != hp.head_dim) {
            throw Error(file->name() + ": " + key("attention.value_length") + " " +
                        std::to_string(value_length) + " differs from key_length " +
                        std::to_string(hp.head_dim) + ", which Woolly does not support yet");
        }
    } else {
        if (hp.n_embd % hp.n_head != 0) {
            throw Error(file->name() + ": embedding_length " + std::to_string(hp.n_embd) +
                        " is not a multiple of head_count " + std::to_string(hp.n_head));
        }
        hp.head_dim = hp.n_embd / hp.n_head;
    }
    hp.n_rot = file->find(key("rope.dimension_count"))
                   ? load.required_count(key("rope.dimension_count"), hp.head_dim)
                   : hp.head_dim;
    if (hp.n_rot % 2 != 0) {
        throw Error(file->name() + ": " + key("rope.dimension_count") + " " +
                    std::to_string(hp.n_rot) + " is odd (expected an even number)");
    }
    // A mixture of experts: what Woolly runs (softmax routing, no shared experts, every layer
    // a mixture), and a clear refusal of the rest, naming the key.
    if (arch->experts || file->find(key("expert_count"))) {
        hp.n_expert = load.required_count(key("expert_count"), 4096);
        hp.n_expert_used = load.required_count(key("expert_used_count"), hp.n_expert);
        hp.n_ff_exp = file->find(key("expert_feed_forward_length"))
                          ? load.required_count(key("expert_feed_forward_length"), 1 << 22)
                          : hp.n_ff;
        auto refuse = [&](const char* k, const std::string& value, const char* supported) {
            throw Error(file->name() + ": " + key(k) + " is " + value + " (Woolly supports " +
                        supported + " only, so far)");
        };
        if (auto shared = file->get_uint(key("expert_shared_count")); shared && *shared != 0)
            refuse("expert_shared_count", std::to_string(*shared), "0: no shared experts");
        if (auto gating = file->get_uint(key("expert_gating_func")); gating && *gating != 1)
            refuse("expert_gating_func", std::to_string(*gating), "1: softmax");
        if (auto dense = file->get_uint(key("leading_dense_block_count")); dense && *dense != 0)
            refuse("leading_dense_block_count", std::to_string(*dense), "0: every layer a mixture");
        if (auto scale = file->get_real(key("expert_weights_scale")); scale && *scale != 1.0)
            refuse("expert_weights_scale", std::to_string(*scale), "1");
    }
    if (arch->swa_pattern > 0) {
        hp.n_swa = load.required_count(key("attention.sliding_window"), int64_t(1) << 31);
        auto cap = [&](const char* k) {
            const double c = file->get_real(key(k)).value_or(0.0);
            if (!(c >= 0.0) || !std::isfinite(c))
                throw Error(file->name() + ": " + key(k) + " is " + std::to_string(c) +
                            " (expected a positive cap, or 0 for none)");
            return float(c);
        };
        hp.attn_softcap = cap("attn_logit_softcapping");
        hp.final_softcap = cap("final_logit_softcapping");
    }
    // Scores are scaled by 1 / sqrt(head_dim); Gemma's 27B models by 1 / sqrt(n_embd / n_head),
    // as llama.cpp decides it from the layer count.
    hp.attn_scale = 1.0f / std::sqrt(float(hp.head_dim));
    if (arch->wide_scale_layers > 0 && hp.n_layer == arch->wide_scale_layers)
        hp.attn_scale = 1.0f / std::sqrt(float(hp.n_embd / hp.n_head));
    hp.rms_eps = float(file->get_real(key("attention.layer_norm_rms_epsilon")).value_or(1e-5));
    hp.rope_freq_base = float(file->get_real(key("rope.freq_base")).value_or(10000.0));
    if (auto factor = file->get_real(key("rope.scaling.factor")); factor && *factor > 0)
        hp.rope_freq_scale = float(1.0 / *factor);
    if (!(hp.rms_eps > 0.0f) || !std::isfinite(hp.rms_eps) || !(hp.rope_freq_base > 0.0f) ||
        !std::isfinite(hp.rope_freq_base)) {
        throw Error(file->name() + ": layer_norm_rms_epsilon and rope.freq_base must be positive");
    }
    // Phi-3's long-context variants scale rope per dimension by the context in use (LongRoPE);
    // Woolly does not do that yet, and running them without it would be quietly wrong.
    if (file->find_tensor("rope_factors_long.weight")) {
        throw Error(file->name() + ": has rope_factors_long.weight (Phi-3 LongRoPE), which Woolly "
                                   "does not support yet");
    }

    const GgufTensorInfo* embd = file->find_tensor("token_embd.weight");
    if (!embd || embd->dims.size() != 2) {
        throw Error(file->name() + ": missing 2-D tensor 'token_embd.weight'");
    }
    hp.n_vocab = int64_t(embd->dims[1]);
    if (auto vocab_size = file->get_uint(key("vocab_size"));
        vocab_size && *vocab_size != embd->dims[1]) {
        throw Error(file->name() + ": " + key("vocab_size") + " is " + std::to_string(*vocab_size) +
                    " but token_embd.weight has " + std::to_string(embd->dims[1]) + " rows");
    }

    const int64_t n_q = hp.n_head * hp.head_dim;
    const int64_t n_kv = hp.n_embd_kv();
    model->token_embd = load.matrix("token_embd.weight", hp.n_embd, hp.n_vocab);
    model->rope_freqs = load.optional("rope_freqs.weight", hp.n_rot / 2);
    for (float f : model->rope_freqs) {
        if (!(f > 0.0f) || !std::isfinite(f))
            throw Error(file->name() + ": rope_freqs.weight holds " + std::to_string(f) +
                        " (expected positive factors)");
    }
    model->layers.resize(size_t(hp.n_layer));
    for (int64_t i = 0; i < hp.n_layer; ++i) {
        const std::string p = "blk." + std::to_string(i) + ".";
        LlamaLayer& l = model->layers[size_t(i)];
        l.attn_norm = load.norm(p + "attn_norm.weight", hp.n_embd);
        if (file->find_tensor(p + "attn_qkv.weight")) { // q, k and v rows in one tensor
            const WeightMatrix qkv = load.matrix(p + "attn_qkv.weight", hp.n_embd, n_q + 2 * n_kv);
            l.wq = Loader::rows_of(qkv, "q", 0, n_q);
            l.wk = Loader::rows_of(qkv, "k", n_q, n_kv);
            l.wv = Loader::rows_of(qkv, "v", n_q + n_kv, n_kv);
        } else {
            l.wq = load.matrix(p + "attn_q.weight", hp.n_embd, n_q);
            l.wk = load.matrix(p + "attn_k.weight", hp.n_embd, n_kv);
            l.wv = load.matrix(p + "attn_v.weight", hp.n_embd, n_kv);
        }
        l.bq = load.optional(p + "attn_q.bias", n_q);
        l.bk = load.optional(p + "attn_k.bias", n_kv);
        l.bv = load.optional(p + "attn_v.bias", n_kv);
        if (arch->qk_norm) {
            l.q_norm = load.norm(p + "attn_q_norm.weight", hp.head_dim);
            l.k_norm = load.norm(p + "attn_k_norm.weight", hp.head_dim);
        }
        l.wo = load.matrix(p + "attn_output.weight", n_q, hp.n_embd);
        if (arch->gemma) {
            l.post_attn_norm = load.norm(p + "post_attention_norm.weight", hp.n_embd);
            l.post_ffn_norm = load.norm(p + "post_ffw_norm.weight", hp.n_embd);
        }
        l.ffn_norm = load.norm(p + "ffn_norm.weight", hp.n_embd);
        if (hp.n_expert > 0) {
            l.router = load.matrix(p + "ffn_gate_inp.weight", hp.n_embd, hp.n_expert);
            l.gate_exps =
                load.slices(p + "ffn_gate_exps.weight", hp.n_embd, hp.n_ff_exp, hp.n_expert);
            l.up_exps = load.slices(p + "ffn_up_exps.weight", hp.n_embd, hp.n_ff_exp, hp.n_expert);
            l.down_exps =
                load.slices(p + "ffn_down_exps.weight", hp.n_ff_exp, hp.n_embd, hp.n_expert);
        } else if (arch->fused_gate_up) { // the gate's rows, then the up projection's
            const WeightMatrix gate_up = load.matrix(p + "ffn_up.weight", hp.n_embd, 2 * hp.n_ff);
            l.w_gate = Loader::rows_of(gate_up, "gate", 0, hp.n_ff);
            l.w_up = Loader::rows_of(gate_up, "up", hp.n_ff, hp.n_ff);
        } else {
            l.w_gate = load.matrix(p + "ffn_gate.weight", hp.n_embd, hp.n_ff);
            l.w_up = load.matrix(p + "ffn_up.weight", hp.n_embd, hp.n_ff);
        }
        if (hp.n_expert == 0) l.w_down = load.matrix(p + "ffn_down.weight", hp.n_ff, hp.n_embd);
    }
    model->output_norm = load.norm("output_norm.weight", hp.n_embd);
    model->output = file->find_tensor("output.weight")
                        ? load.matrix("output.weight", hp.n_embd, hp.n_vocab)
                        : model->token_embd; // tied embeddings
    return model;
}

uint64_t LlamaModel::expert_bytes(uint64_t* largest) const {
    uint64_t all = 0, most = 0;
    for (const LlamaLayer& l : layers) {
        for (size_t e = 0; e < l.gate_exps.size(); ++e) {
            const uint64_t one =
                l.gate_exps[e].bytes() + l.up_exps[e].bytes() + l.down_exps[e].bytes();
            all += one;
            most = std::max(most, one);
        }
    }
    if (largest) *largest = most;
    return all;
}

uint64_t LlamaModel::weight_bytes_per_token() const {
    uint64_t bytes = token_embd.row_bytes;
    for_each_matrix([&](const WeightMatrix& w, bool) { bytes += w.bytes(); });
    if (hparams_.n_expert > 0) {
        const uint64_t experts = expert_bytes();
        bytes -= experts - experts / uint64_t(hparams_.n_expert) * uint64_t(hparams_.n_expert_used);
    }
    return bytes;
}

} // namespace woolly
