// cmd_run.cpp — `woolly run`: generate from a prompt and stream the text as it is produced.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <random>

#include "cli_args.h"
#include "commands.h"
#include "engine/model/model.h"
#include "engine/runtime/thread_pool.h"
#include "engine/text/chat.h"
#include "engine/text/generation.h"
#include "engine/text/vocab.h"

namespace woolly::cli {
namespace {

const char* kRunUsage =
    "usage: woolly run [-m MODEL] [-p PROMPT] [options]\n"
    "Generates a continuation of PROMPT (read from stdin when -p is absent) and streams it to\n"
    "stdout; a timing summary goes to stderr.\n"
    "  -m, --model FILE        GGUF model (default: $WOOLLY_MODEL or the bundled stories260K)\n"
    "  -p, --prompt TEXT       the prompt\n"
    "  --messages FILE.json    a conversation instead of a prompt, rendered with the model's\n"
    "                          chat template ([{\"role\": ..., \"content\": ...}, ...])\n"
    "  --chat-template NAME    the template family, instead of the one the model's names\n"
    "  --chat                  a conversation on the terminal: each line read is a user turn,\n"
    "                          answered through the chat template; the KV cache is kept between\n"
    "                          turns, so a turn evaluates only its new tokens (--messages gives\n"
    "                          the turns before the first line, e.g. a system message)\n"
    "  -n, --n-predict N       tokens to generate at most (default 128; -1: until the context is "
    "full)\n"
    "  -c, --ctx-size N        context length (default: the model's)\n"
    "  -t, --threads N         compute threads (default: the physical cores; 1 for models\n"
    "                          under 32 MiB)\n"
    "  --weight-cache MIB      budget for repacked weights (default 4096; 0 = off)\n"
    "  --cache-type T          KV cache: f16 (default), f32 or q8_0\n"
    "  --no-mmap               read the model into memory instead of mapping it\n"
    "  --mlock                 lock the weights and the weight cache in RAM\n"
    "  --verbose               memory (planned, then held by part) and load time on stderr\n"
    "  --temp T                temperature, 0 = greedy (default 0.8)\n"
    "  --top-k K               (default 40; 0 = off)\n"
    "  --top-p P               (default 0.95; 1 = off)\n"
    "  --min-p P               (default 0.05; 0 = off)\n"
    "  --repeat-penalty R      (default 1.0 = off)\n"
    "  --repeat-last-n N       tokens the penalty looks back over (default 64)\n"
    "  --seed S                random seed (default: random)\n"
    "  --stop TEXT             stop before TEXT (may be repeated)\n"
    "  --json                  one JSON object per token, then a summary object\n";

// `woolly run --chat`: each line of stdin is a user turn. The whole conversation is rendered
// again for every turn (a template may change earlier text, e.g. Qwen3 drops old reasoning),
// and only the tokens after the longest prefix the context already holds are evaluated.
int chat_loop(LlamaContext& context, const Vocab& vocab, const ChatFormat& format,
              const GenerationParams& params, std::vector<ChatMessage> messages) {
    std::vector<TokenId> held; // the tokens whose keys and values the context holds, in order
    std::string line;
    while (true) {
        std::fputs("> ", stderr);
        if (!std::getline(std::cin, line)) break;
        if (!is_valid_utf8(line)) {
            std::fputs("woolly run: that line is not valid UTF-8; say it again\n", stderr);
            continue;
        }
        messages.push_back({"user", line});
        const std::vector<TokenId> tokens = tokenize_chat(vocab, format, messages);
        size_t common =
            std::mismatch(held.begin(), held.end(), tokens.begin(), tokens.end()).first -
            held.begin();
        if (common == tokens.size()) --common; // the last token is fed again for its logits
        if (int64_t(tokens.size()) >= context.n_ctx()) {
            std::fprintf(stderr,
                         "woolly run: the conversation has %zu tokens, the context %lld: "
                         "it is over\n",
                         tokens.size(), (long long)context.n_ctx());
            return 1;
        }
        common = size_t(context.truncate(int64_t(common)));
        held.assign(tokens.begin(), tokens.end());
        const float* logits =
            context.decode_batch(tokens.data() + common, int64_t(tokens.size() - common));
        TokenStream stream(vocab, params);
        stream.start(tokens);
        GeneratedToken token;
        std::string reply;
        while (stream.next(logits, context.n_past() >= context.n_ctx(), token)) {
            std::fwrite(token.text.data(), 1, token.text.size(), stdout);
            std::fflush(stdout);
            reply += token.text;
            if (stream.finished()) break;
            logits = context.decode(token.id);
            held.push_back(token.id);
        }
        reply += stream.tail();
        std::fwrite(stream.tail().data(), 1, stream.tail().size(), stdout);
        std::fputc('\n', stdout);
        std::fflush(stdout);
        messages.push_back({"assistant", reply});
    }
    return 0;
}

} // namespace

int run_command(int argc, char** argv) {
    Args args(argc, argv, 2,
              {"-m",
               "--model",
               "-p",
               "--prompt",
               "-n",
               "--n-predict",
               "-c",
               "--ctx-size",
               "-t",
               "--threads",
               "--weight-cache",
               "--cache-type",
               "--temp",
               "--top-k",
               "--top-p",
               "--min-p",
               "--repeat-penalty",
               "--repeat-last-n",
               "--seed",
               "--stop",
               "--messages",
               "--chat-template"},
              {"--json", "--help", "-h", "--no-mmap", "--mlock", "--verbose", "--chat"});
    if (args.has("--help") || args.has("-h")) {
        std::fputs(kRunUsage, stdout);
        return 0;
    }
    args.refuse_extra();

    GenerationParams params;
    SamplingParams& s = params.sampling;
    s.temperature = args.number<float>("--temp").value_or(s.temperature);
    s.top_k = args.number<int32_t>("--top-k").value_or(s.top_k);
    s.top_p = args.number<float>("--top-p").value_or(s.top_p);
    s.min_p = args.number<float>("--min-p").value_or(s.min_p);
    s.repeat_penalty = args.number<float>("--repeat-penalty").value_or(s.repeat_penalty);
    s.repeat_last_n = args.number<int32_t>("--repeat-last-n").value_or(s.repeat_last_n);
    s.seed = args.number<uint64_t>("--seed").value_or(std::random_device{}());
    s.validate();
    params.stop = args.all("--stop");
    const int64_t n_predict = args.number<int64_t>("-n", "--n-predict").value_or(128);
    if (n_predict < -1) throw Error("-n must be -1 (until the context is full) or >= 0");
    const int64_t n_ctx = args.number<int64_t>("-c", "--ctx-size").value_or(0);
    if (n_ctx < 0 || n_ctx > (int64_t(1) << 24)) throw Error("-c must be between 0 and 16777216");
    LoadOptions options = load_options_from(args);
    options.memory.n_ctx = n_ctx;
    const bool json = args.has("--json");
    const bool verbose = args.has("--verbose");

    const auto messages_path = args.get("--messages");
    if (messages_path && args.get("-p", "--prompt"))
        throw Error("give -p PROMPT or --messages FILE, not both");
    const std::vector<ChatMessage> messages =
        messages_path ? read_chat_messages(*messages_path) : std::vector<ChatMessage>{};
    const bool interactive = args.has("--chat");
    if (interactive && args.get("-p", "--prompt"))
        throw Error("--chat reads its turns from stdin: give no -p");
    if (interactive && json)
        throw Error("--json does not go with --chat (a conversation prints text)");
    const std::string prompt = messages_path || interactive ? std::string() : read_prompt(args);

    const std::string model_path = args.get("-m", "--model").value_or(default_model_path());
    const LoadedModel loaded = load_model(model_path, options);
    const LlamaModel& model = *loaded.model;
    if (!loaded.note.empty()) std::fprintf(stderr, "woolly run: %s\n", loaded.note.c_str());
    if (verbose) {
        std::fprintf(stderr, "woolly run: loaded %s in %.0f ms; planned %s%s%s\n",
                     model_path.c_str(), loaded.load_ms, describe(loaded.plan).c_str(),
                     loaded.limit ? " of " : "",
                     loaded.limit ? (describe_bytes(loaded.limit->bytes) + " available (" +
                                     loaded.limit->source + ")")
                                        .c_str()
                                  : "");
    }
    const int64_t trained = model.hparams().n_ctx_train;
    if (n_ctx > 0 && trained > 0 && n_ctx > trained)
        std::fprintf(stderr,
                     "woolly run: -c %lld is beyond the model's trained context of %lld tokens: "
                     "text past it is unlikely to make sense\n",
                     (long long)n_ctx, (long long)trained);
    Vocab vocab(model.gguf());
    ThreadPool pool{loaded.memory.threads};
    LlamaContext context(model, n_ctx, &pool, kDefaultPromptBatch, loaded.cache.get(),
                         loaded.memory.kv_type);
    params.max_tokens =
        n_predict < 0 ? int32_t(context.n_ctx()) : int32_t(std::min<int64_t>(n_predict, INT32_MAX));
    if (n_predict >= context.n_ctx())
        std::fprintf(stderr,
                     "woolly run: -n %lld is beyond the context of %lld tokens: generation ends "
                     "at the context (finish: length)\n",
                     (long long)n_predict, (long long)context.n_ctx());

    std::optional<ChatFormat> format; // a conversation, through the model's chat template
    if (messages_path || interactive)
        format = chat_format(model.gguf(), vocab, args.get("--chat-template").value_or(""));
    if (interactive) return chat_loop(context, vocab, *format, params, messages);
    Generation generation(context, vocab,
                          format ? tokenize_chat(vocab, *format, messages)
                                 : tokenize_prompt(vocab, prompt, context.n_ctx()),
                          params);
    generation.ingest_prompt();
    GeneratedToken token;
    int64_t seq = 0;
    while (generation.step(token)) {
        if (json) {
            nlohmann::json line = {{"seq", seq}, {"token", token.id}, {"text", token.text}};
            std::fputs((line.dump() + "\n").c_str(), stdout);
        } else {
            std::fwrite(token.text.data(), 1, token.text.size(), stdout);
        }
        std::fflush(stdout);
        ++seq;
    }
    const std::string_view tail = generation.tail();
    if (json) {
        nlohmann::json done = {{"done", true},
                               {"finish_reason", finish_reason_name(generation.finish_reason())},
                               {"prompt_tokens", generation.prompt_tokens()},
                               {"n_prompt", generation.prompt_tokens().size()},
                               {"n_generated", generation.n_generated()},
                               {"prompt_ms", generation.prompt_ms()},
                               {"generation_ms", generation.generation_ms()}};
        if (!tail.empty()) done["tail"] = tail;
        std::fputs((done.dump() + "\n").c_str(), stdout);
    } else {
        std::fwrite(tail.data(), 1, tail.size(), stdout);
        std::fputc('\n', stdout);
    }
    std::fflush(stdout);

    const double n_prompt = double(generation.prompt_tokens().size());
    const double n_gen = double(generation.n_generated());
    std::fprintf(stderr,
                 "woolly run: prompt %.0f tokens in %.2f ms (%.1f t/s); generated %.0f tokens in "
                 "%.2f ms (%.1f t/s); finish: %s; seed %llu\n",
                 n_prompt, generation.prompt_ms(),
                 generation.prompt_ms() > 0 ? n_prompt * 1000.0 / generation.prompt_ms() : 0.0,
                 n_gen, generation.generation_ms(),
                 generation.generation_ms() > 0 ? n_gen * 1000.0 / generation.generation_ms() : 0.0,
                 finish_reason_name(generation.finish_reason()), (unsigned long long)s.seed);
    if (verbose) {
        const MemoryUsage usage =
            memory_usage(model, loaded.cache.get(), context.kv_bytes(), context.scratch_bytes());
        std::fprintf(stderr, "woolly run: memory: %s\n", describe(usage).c_str());
    }
    return 0;
}

} // namespace woolly::cli
