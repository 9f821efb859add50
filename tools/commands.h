// commands.h — the `woolly` subcommands; each returns the process exit code.
#pragma once

namespace woolly::cli {

int run_command(int argc, char** argv);       // woolly run
int tokenize_command(int argc, char** argv);  // woolly tokenize
int logits_command(int argc, char** argv);    // woolly logits
int gguf_command(int argc, char** argv);      // woolly gguf
int synth_command(int argc, char** argv);     // woolly synth
int bench_command(int argc, char** argv);     // woolly bench
int generate_command(int argc, char** argv);  // woolly generate (a woollyd client)
int subscribe_command(int argc, char** argv); // woolly subscribe
int cancel_command(int argc, char** argv);    // woolly cancel
int status_command(int argc, char** argv);    // woolly status

} // namespace woolly::cli
