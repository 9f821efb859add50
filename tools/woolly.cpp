// woolly.cpp — the `woolly` command-line program: dispatches to one subcommand.
#include <cstdio>
#include <exception>
#include <string>

#include "commands.h"

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
                     "  generate  send a prompt (or a conversation) and print its stream\n"
                     "  chat      a conversation with the daemon, a line a turn\n"
                     "  subscribe print one stream, or all of them, as they arrive\n"
                     "  cancel    end a stream\n"
                     "  status    print the daemon's status\n"
                     "  keygen    write a CurveZMQ key pair (NAME.key, NAME.pub)\n"
                     "\n"
                     "`woolly COMMAND --help` describes a command's options; `woolly --version`\n"
                     "prints the version.\n";

} // namespace

int main(int argc, char** argv) {
    if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
        std::fputs(kUsage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const std::string command = argv[1];
    if (command == "--version") {
        std::printf("woolly %s (protocol woolly/1)\n", WOOLLY_VERSION);
        return 0;
    }
    try {
        if (command == "run") return woolly::cli::run_command(argc, argv);
        if (command == "tokenize") return woolly::cli::tokenize_command(argc, argv);
        if (command == "template") return woolly::cli::template_command(argc, argv);
        if (command == "keygen") return woolly::cli::keygen_command(argc, argv);
        if (command == "logits") return woolly::cli::logits_command(argc, argv);
        if (command == "gguf") return woolly::cli::gguf_command(argc, argv);
        if (command == "synth") return woolly::cli::synth_command(argc, argv);
        if (command == "bench") return woolly::cli::bench_command(argc, argv);
        if (command == "generate") return woolly::cli::generate_command(argc, argv);
        if (command == "chat") return woolly::cli::chat_command(argc, argv);
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
