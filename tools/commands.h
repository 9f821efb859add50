// commands.h — the `woolly` subcommands; each returns the process exit code.
#pragma once

#include <string>
#include <vector>

#include "config/args.h"
#include "engine/text/chat.h"

namespace woolly::cli {

int run_command(int argc, char** argv);       // woolly run
int tokenize_command(int argc, char** argv);  // woolly tokenize
int logits_command(int argc, char** argv);    // woolly logits
int gguf_command(int argc, char** argv);      // woolly gguf
int synth_command(int argc, char** argv);     // woolly synth
int bench_command(int argc, char** argv);     // woolly bench
int bench_grammar_command(const woolly::Args& args); // woolly bench --json-schema|--grammar
int generate_command(int argc, char** argv);  // woolly generate (a woollyd client)
int chat_command(int argc, char** argv);      // woolly chat
int subscribe_command(int argc, char** argv); // woolly subscribe
int cancel_command(int argc, char** argv);    // woolly cancel
int status_command(int argc, char** argv);    // woolly status
int template_command(int argc, char** argv);  // woolly template
int keygen_command(int argc, char** argv);    // woolly keygen

// The conversation in a JSON file (protocol::decode_chat_turns's format); throws Error naming
// the file and the entry.
std::vector<ChatMessage> read_chat_messages(const std::string& path);

} // namespace woolly::cli
