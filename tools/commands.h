// commands.h — the `woolly` subcommands; each returns the process exit code.
#pragma once

namespace woolly::cli {

int run_command(int argc, char** argv);      // woolly run
int tokenize_command(int argc, char** argv); // woolly tokenize
int logits_command(int argc, char** argv);   // woolly logits
int gguf_command(int argc, char** argv);     // woolly gguf

} // namespace woolly::cli
