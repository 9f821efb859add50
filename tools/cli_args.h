// cli_args.h — what the `woolly` subcommands share: the flag parser (config/args.h), the
// loading options, the default model and the prompt.
#pragma once

#include <string>

#include "config/args.h"
#include "engine/model/loader.h"

namespace woolly::cli {

using woolly::Args;

// How to load the model, from --weight-cache MIB (default kDefaultWeightCacheMiB; 0: off),
// --cache-type, -t/--threads (0 when absent: the default for the model), --no-mmap and
// --mlock. The context is the caller's.
LoadOptions load_options_from(const Args& args);

// The model used when -m is not given: $WOOLLY_MODEL, else the bundled stories260K.
std::string default_model_path();

// The prompt: -p/--prompt, else all of stdin without its trailing newlines (a prompt piped with
// echo ends in a newline the user did not mean as text). Throws Error unless valid UTF-8.
std::string read_prompt(const Args& args);

} // namespace woolly::cli
