// cmd_logits.cpp — `woolly logits`: the logits after each token, in the golden files' format.
#include <cstdio>
#include <sstream>

#include "cli_args.h"
#include "commands.h"
#include "engine/model/context.h"

namespace woolly::cli {

int logits_command(int argc, char** argv) {
    Args args(argc, argv, 2, {"-m", "--model", "-t", "--tokens", "-o", "--output", "--cache-type"},
              {"--help", "-h"});
    if (args.has("--help") || args.has("-h")) {
        std::fputs("usage: woolly logits [-m MODEL] -t \"ID ID ...\" -o FILE [--cache-type T]\n"
                   "Feeds the tokens one at a time from an empty cache and writes the logits after "
                   "each as little-endian float32 [n_tokens][n_vocab]. --cache-type: the KV cache "
                   "as f16 (default), f32 (as the golden files were made) or q8_0.\n",
                   stdout);
        return 0;
    }
    const auto token_text = args.get("-t", "--tokens");
    const auto output = args.get("-o", "--output");
    if (!token_text || !output) throw Error("-t TOKENS and -o FILE are required");

    std::vector<int32_t> tokens;
    std::istringstream in(*token_text);
    std::string word;
    while (in >> word) {
        int32_t id = 0;
        auto [ptr, ec] = std::from_chars(word.data(), word.data() + word.size(), id);
        if (ec != std::errc() || ptr != word.data() + word.size())
            throw Error("bad token id '" + word +
                        "' in -t (expected integers separated by spaces)");
        tokens.push_back(id);
    }
    if (tokens.empty()) throw Error("-t lists no tokens");

    auto model = LlamaModel::load(args.get("-m", "--model").value_or(default_model_path()));
    const int64_t n_vocab = model->hparams().n_vocab;
    // decode() checks this too, but only after the output file is half written.
    for (int32_t id : tokens)
        if (id < 0 || id >= n_vocab)
            throw Error("token id " + std::to_string(id) + " is out of range (expected 0 to " +
                        std::to_string(n_vocab - 1) + ")");
    LlamaContext context(*model,
                         std::max<int64_t>(int64_t(tokens.size()), model->hparams().n_ctx_train),
                         nullptr, kDefaultPromptBatch, nullptr,
                         kv_cache_type_from_name(args.get("--cache-type").value_or("f16")));

    FILE* out = std::fopen(output->c_str(), "wb");
    if (!out) throw Error(*output + ": cannot create");
    bool ok = true;
    for (int32_t id : tokens) {
        const float* logits = context.decode(id);
        ok = ok && std::fwrite(logits, sizeof(float), size_t(n_vocab), out) == size_t(n_vocab);
    }
    ok = (std::fclose(out) == 0) && ok;
    if (!ok) throw Error(*output + ": write failed");
    return 0;
}

} // namespace woolly::cli
