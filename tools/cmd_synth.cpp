// cmd_synth.cpp — `woolly synth`: a random-weight GGUF with a real model's shape.
#include <cstdio>
#include <cstdlib>

#include "cli_args.h"
#include "commands.h"
#include "engine/gguf/synthetic_model.h"

namespace woolly::cli {

int synth_command(int argc, char** argv) {
    Args args(argc, argv, 2, {"--shape", "--type", "-o", "--output", "--seed", "--vocab"},
              {"--help", "-h"});
    if (args.has("--help") || args.has("-h")) {
        std::string shapes;
        for (const auto& s : model_shapes())
            shapes += std::string(shapes.empty() ? "" : "|") + s.name;
        std::printf(
            "usage: woolly synth --shape %s\n"
            "                    --type f32|f16|bf16|q8_0|q4_0|q4_k_m|q6_k|iq4_xs -o FILE [--seed "
            "N]\n"
            "                    [--vocab GGUF]\n"
            "Writes a random-weight GGUF with the shape's architecture, sizes and complete\n"
            "metadata, for benchmarks. The vocabulary is copied from --vocab (default: the\n"
            "shape's own in ../shared/vocab, e.g. ggml-vocab-llama3.gguf for llama-3.2-1b) when\n"
            "its size fits, else generated.\n",
            shapes.c_str());
        return 0;
    }
    SynthOptions options;
    options.shape = args.get("--shape").value_or(options.shape);
    const std::string type = args.get("--type").value_or("q4_0");
    options.q4_k_m = type == "q4_k_m" || type == "Q4_K_M";
    const auto parsed = options.q4_k_m ? std::optional(TensorType::Q4_K) : type_from_name(type);
    bool writable = options.q4_k_m;
    for (TensorType t : {TensorType::F32, TensorType::F16, TensorType::BF16, TensorType::Q8_0,
                         TensorType::Q4_0, TensorType::Q6_K, TensorType::IQ4_XS})
        writable = writable || (parsed && *parsed == t);
    if (!writable)
        throw Error("unknown --type '" + type +
                    "' (expected f32, f16, bf16, q8_0, q4_0, q4_k_m, q6_k or iq4_xs)");
    options.type = *parsed;
    options.seed = args.number<uint64_t>("--seed").value_or(1);
    const char* shared = std::getenv("WOOLLY_SHARED");
    const ModelShape* shape = find_model_shape(options.shape);
    options.vocab_source = args.get("--vocab").value_or(
        (shared && *shared ? std::string(shared) : std::string(WOOLLY_SHARED_DIR)) +
        "/vocab/ggml-vocab-" + (shape ? shape->vocab : "llama-spm") + ".gguf");
    const auto output = args.get("-o", "--output");
    if (!output) throw Error("-o FILE is required");
    std::printf("woolly synth: wrote %s: %s\n", output->c_str(),
                write_synthetic_model(options, *output).c_str());
    return 0;
}

} // namespace woolly::cli
