// cli_common.cpp — what several `woolly` commands share: the default model, the prompt from
// -p or stdin, and the loading options from the command line (declared in cli_args.h).
#include <iostream>
#include <iterator>
#include <string>

#include "cli_args.h"
#include "config/bundled_model.h"
#include "engine/text/utf8.h"

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
