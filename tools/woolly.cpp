// woolly.cpp — the `woolly` command-line program: dispatches to one subcommand.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <iterator>
#include <string>

#include "cli_args.h"
#include "commands.h"
#include "config/bundled_model.h"
#include "engine/text/vocab.h"

namespace woolly::cli {

LoadOptions load_options_from(const Args& args) {
    LoadOptions options;
    const int64_t mib = args.number<int64_t>("--weight-cache").value_or(kDefaultWeightCacheMiB);
    if (mib < 0 || mib > (int64_t(1) << 30))
        throw Error("--weight-cache must be between 0 (off) and 1073741824 MiB");
    options.memory.cache_budget = uint64_t(mib) << 20;
    options.memory.kv_type = kv_cache_type_from_name(args.get("--cache-type").value_or("f16"));
    const std::optional<int64_t> threads = args.number<int64_t>("-t", "--threads");
    if (threads && (*threads < 1 || *threads > 256)) throw Error("-t must be between 1 and 256");
    options.memory.threads = int(threads.value_or(0));
    options.mmap = !args.has("--no-mmap");
    options.mlock = args.has("--mlock");
    return options;
}

std::string default_model_path() {
    if (const char* env = std::getenv("WOOLLY_MODEL"); env && *env) return env;
    return bundled_model_path();
}

std::string read_prompt(const Args& args) {
    std::string prompt;
    if (auto p = args.get("-p", "--prompt")) {
        prompt = *p;
    } else {
        prompt.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
        while (!prompt.empty() && (prompt.back() == '\n' || prompt.back() == '\r'))
            prompt.pop_back();
    }
    if (!is_valid_utf8(prompt)) throw Error("the prompt is not valid UTF-8");
    return prompt;
}

} // namespace woolly::cli

namespace {

const char* kUsage = "usage: woolly COMMAND [options]\n"
                     "\n"
                     "commands:\n"
                     "  run       generate text from a prompt with a local model\n"
                     "  tokenize  print the token ids of strings (llama.cpp vocab-test format)\n"
                     "  template  print a conversation as the model's chat template renders it\n"
                     "  logits    write the logits after each of a list of tokens\n"
                     "  gguf      print a GGUF file's metadata and tensors\n"
                     "  synth     write a random-weight model with a real model's shape\n"
                     "  bench     measure prompt and generation speed (llama-bench's method)\n"
                     "\n"
                     "clients of woollyd (protocol/SPEC.md):\n"
                     "  generate  send a prompt and print its stream as it arrives\n"
                     "  subscribe print one stream, or all of them, as they arrive\n"
                     "  cancel    end a stream\n"
                     "  status    print the daemon's status\n"
                     "\n"
                     "`woolly COMMAND --help` describes a command's options.\n";

} // namespace

int main(int argc, char** argv) {
    if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
        std::fputs(kUsage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const std::string command = argv[1];
    try {
        if (command == "run") return woolly::cli::run_command(argc, argv);
        if (command == "tokenize") return woolly::cli::tokenize_command(argc, argv);
        if (command == "template") return woolly::cli::template_command(argc, argv);
        if (command == "logits") return woolly::cli::logits_command(argc, argv);
        if (command == "gguf") return woolly::cli::gguf_command(argc, argv);
        if (command == "synth") return woolly::cli::synth_command(argc, argv);
        if (command == "bench") return woolly::cli::bench_command(argc, argv);
        if (command == "generate") return woolly::cli::generate_command(argc, argv);
        if (command == "subscribe") return woolly::cli::subscribe_command(argc, argv);
        if (command == "cancel") return woolly::cli::cancel_command(argc, argv);
        if (command == "status") return woolly::cli::status_command(argc, argv);
        std::fprintf(stderr, "woolly: unknown command '%s' (try 'woolly --help')\n",
                     command.c_str());
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "woolly %s: error: %s\n", command.c_str(), e.what());
        return 1;
    }
}
