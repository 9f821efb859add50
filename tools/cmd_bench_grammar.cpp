// cmd_bench_grammar.cpp — `woolly bench --json-schema|--grammar`: how long each grammar takes to
// compile and to give a token's mask on real vocabularies, and what a constraint costs a model
// that generates (tokens/s with and without it, through the daemon's batcher, one stream and
// several at once).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "cli_args.h"
#include "commands.h"
#include "config/bundled_model.h"
#include "engine/gguf/gguf.h"
#include "engine/grammar/compile.h"
#include "engine/grammar/matcher.h"
#include "engine/model/loader.h"
#include "engine/runtime/thread_pool.h"
#include "engine/serve/batch.h"
#include "engine/text/generation.h"
#include "engine/text/token_trie.h"

namespace woolly::cli {
namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

double micros_since(Clock::time_point start) {
    return std::chrono::duration<double, std::micro>(Clock::now() - start).count();
}

// `path` itself, or the files in it ending in `ext`, sorted.
std::vector<std::string> files_of(const std::string& path, const char* ext) {
    std::error_code ec;
    if (!fs::is_directory(path, ec)) return {path};
    std::vector<std::string> out;
    for (const auto& entry : fs::directory_iterator(path, ec))
        if (entry.is_regular_file() && entry.path().extension() == ext)
            out.push_back(entry.path().string());
    std::sort(out.begin(), out.end());
    if (out.empty()) throw Error(path + ": no " + ext + " files in this directory");
    return out;
}

std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(path + ": cannot be read");
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

struct Compiled {
    std::string path;
    std::shared_ptr<const grammar::GrammarConstraint> constraint;
    double compile_us = 0; // the fastest of kCompileRuns
};

constexpr int kCompileRuns = 5;
constexpr int kMaskTokens = 256; // tokens drawn per grammar and vocabulary

double percentile(std::vector<double> v, double p) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v[size_t(p * double(v.size() - 1) + 0.5)];
}

double mean_of(const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x;
    return v.empty() ? 0 : s / double(v.size());
}

// Mask times along a walk through each grammar: each token drawn uniformly from those the mask
// allows (an adversarial driver: long tokens, strings run to their bounds), until the grammar
// closes, an end-of-generation token is drawn, or kMaskTokens.
struct MaskRun {
    std::vector<double> masks_us;
    double trie_ms = 0;
    int32_t n_vocab = 0;
};

MaskRun run_masks(const Vocab& vocab, const std::vector<Compiled>& grammars) {
    MaskRun run;
    const auto t0 = Clock::now();
    vocab.trie();
    run.trie_ms = micros_since(t0) / 1000.0;
    run.n_vocab = vocab.size();
    std::mt19937 rng(1);
    std::vector<TokenId> allowed;
    for (const Compiled& g : grammars) {
        auto state = g.constraint->start(vocab);
        for (int i = 0; i < kMaskTokens && !state->closed(); ++i) {
            const auto start = Clock::now();
            const uint64_t* mask = state->mask();
            run.masks_us.push_back(micros_since(start));
            allowed.clear();
            for (TokenId t = 0; t < vocab.size(); ++t)
                if ((mask[size_t(t) / 64] >> (size_t(t) % 64)) & 1) allowed.push_back(t);
            if (allowed.empty()) break;
            const TokenId t = allowed[rng() % allowed.size()];
            if (vocab.is_eog(t)) break;
            state->accept(t);
        }
    }
    return run;
}

// Documents a model wrote: each grammar's output from the bundled model (sampled, constrained,
// from an empty prompt), the ones that completed their grammar. Empty where it did not.
std::vector<std::string> make_documents(const std::vector<Compiled>& grammars) {
    LoadOptions options;
    options.memory.n_ctx = 512;
    options.memory.threads = 1;
    const LoadedModel loaded = load_model(bundled_model_path(), options);
    const Vocab vocab(loaded.model->gguf());
    LlamaContext context(*loaded.model, 512);
    std::vector<std::string> out;
    for (size_t i = 0; i < grammars.size(); ++i) {
        GenerationParams params;
        params.max_tokens = 400;
        params.sampling.temperature = 1;
        params.sampling.seed = 1000 + i;
        params.constraint = grammars[i].constraint;
        Generation generation(context, vocab, "", params);
        generation.ingest_prompt();
        std::string text;
        GeneratedToken token;
        while (generation.step(token)) text += token.text;
        text += generation.tail();
        const bool complete = generation.finish_reason() != FinishReason::Length;
        out.push_back(complete ? text : std::string());
    }
    return out;
}

// Mask times along documents (MaskBench's method): each document in the vocabulary's own
// tokens, a mask before each token, the token then taken.
std::vector<double> document_masks(const Vocab& vocab, const std::vector<Compiled>& grammars,
                                   const std::vector<std::string>& documents, size_t& refused) {
    std::vector<double> times;
    for (size_t i = 0; i < grammars.size(); ++i) {
        if (documents[i].empty()) continue;
        auto state = grammars[i].constraint->start(vocab);
        for (TokenId t : vocab.tokenize(documents[i], false)) {
            const auto start = Clock::now();
            const uint64_t* mask = state->mask();
            times.push_back(micros_since(start));
            if (!((mask[size_t(t) / 64] >> (size_t(t) % 64)) & 1)) {
                ++refused; // cannot happen for a document the grammar took: counted, not hidden
                break;
            }
            state->accept(t);
        }
    }
    return times;
}

} // namespace

int bench_grammar_command(const Args& args) {
    std::vector<Compiled> grammars;
    std::vector<std::string> refused;
    auto compile_all = [&](const std::string& flag, const char* ext, bool schema) {
        const auto value = args.get(flag);
        if (!value) return;
        for (const std::string& path : files_of(*value, ext)) {
            const std::string text = read_text(path);
            Compiled c;
            c.path = path;
            c.compile_us = 1e300;
            try {
                for (int r = 0; r < kCompileRuns; ++r) {
                    const auto start = Clock::now();
                    grammar::Grammar g = schema ? grammar::compile_json_schema(
                                                      nlohmann::ordered_json::parse(text), true)
                                                : grammar::parse_gbnf(text);
                    c.compile_us = std::min(c.compile_us, micros_since(start));
                    c.constraint = std::make_shared<grammar::GrammarConstraint>(std::move(g));
                }
                grammars.push_back(std::move(c));
            } catch (const std::exception& e) {
                refused.push_back(path + ": " + e.what());
            }
        }
    };
    compile_all("--json-schema", ".json", true);
    compile_all("--grammar", ".gbnf", false);
    const bool as_json = args.has("--json");
    for (const std::string& r : refused) std::fprintf(stderr, "refused: %s\n", r.c_str());
    if (grammars.empty()) throw Error("no grammar compiled");

    std::vector<double> compiles;
    for (const Compiled& c : grammars) compiles.push_back(c.compile_us);
    if (as_json) {
        std::printf("%s\n", nlohmann::json({{"test", "compile"},
                                            {"grammars", grammars.size()},
                                            {"refused", refused.size()},
                                            {"p50_us", percentile(compiles, 0.5)},
                                            {"p99_us", percentile(compiles, 0.99)},
                                            {"max_us", percentile(compiles, 1.0)}})
                                .dump()
                                .c_str());
    } else {
        std::printf("%zu grammars compiled (%zu refused), fastest of %d runs each: p50 %.0f us, "
                    "p99 %.0f us, max %.0f us\n",
                    grammars.size(), refused.size(), kCompileRuns, percentile(compiles, 0.5),
                    percentile(compiles, 0.99), percentile(compiles, 1.0));
        std::printf("masks: 'uniform' draws each token uniformly from those allowed (at most %d "
                    "per grammar); 'documents' follows the bundled model's constrained output "
                    "for each grammar, in the vocabulary's own tokens\n",
                    kMaskTokens);
        std::printf(
            "| vocabulary | tokens | trie ms | driver | masks | mean us | p50 us | p99 us | "
            "max us |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    }
    std::vector<std::string> vocabs;
    if (auto v = args.get("--vocab")) {
        std::stringstream list(*v);
        for (std::string item; std::getline(list, item, ',');)
            if (!item.empty()) vocabs.push_back(item);
    }
    const std::vector<std::string> documents =
        vocabs.empty() ? std::vector<std::string>() : make_documents(grammars);
    size_t n_documents = 0;
    for (const std::string& d : documents) n_documents += !d.empty();
    for (const std::string& path : vocabs) {
        auto file = GgufFile::open(path);
        Vocab vocab(*file);
        const MaskRun run = run_masks(vocab, grammars);
        size_t refused_tokens = 0;
        const std::vector<double> along =
            document_masks(vocab, grammars, documents, refused_tokens);
        for (const auto& [driver, m] :
             {std::pair<const char*, const std::vector<double>&>{"uniform", run.masks_us},
              {"documents", along}}) {
            if (as_json) {
                std::printf("%s\n", nlohmann::json({{"test", "mask"},
                                                    {"driver", driver},
                                                    {"vocabulary", path},
                                                    {"tokens", run.n_vocab},
                                                    {"trie_ms", run.trie_ms},
                                                    {"masks", m.size()},
                                                    {"mean_us", mean_of(m)},
                                                    {"p50_us", percentile(m, 0.5)},
                                                    {"p99_us", percentile(m, 0.99)},
                                                    {"max_us", percentile(m, 1.0)}})
                                        .dump()
                                        .c_str());
            } else {
                std::printf("| %s | %d | %.0f | %s | %zu | %.0f | %.0f | %.0f | %.0f |\n",
                            fs::path(path).filename().c_str(), run.n_vocab, run.trie_ms, driver,
                            m.size(), mean_of(m), percentile(m, 0.5), percentile(m, 0.99),
                            percentile(m, 1.0));
            }
        }
        if (refused_tokens > 0)
            std::printf("%zu documents had a token their grammar refused\n", refused_tokens);
        std::fflush(stdout);
    }
    if (!as_json && !vocabs.empty())
        std::printf("documents: %zu of %zu grammars completed by the bundled model\n", n_documents,
                    grammars.size());

    // Generation with and without the grammars, through the batcher as woollyd runs it.
    const auto model_path = args.get("-m", "--model");
    if (!model_path) return 0;
    const auto gens = args.number<int64_t>("-n").value_or(64);
    const int64_t reps = args.number<int64_t>("-r").value_or(3);
    if (gens < 1 || gens > 4096) throw Error("-n must be between 1 and 4096 here");
    if (reps < 1 || reps > 100) throw Error("-r must be between 1 and 100");
    std::vector<int64_t> widths = {1};
    if (auto p = args.get("--parallel")) {
        std::stringstream list(*p);
        for (std::string item; std::getline(list, item, ',');) {
            const int64_t k = std::strtoll(item.c_str(), nullptr, 10);
            if (k < 1 || k > 64) throw Error("--parallel takes counts from 1 to 64");
            widths.push_back(k);
        }
    }
    const int64_t widest = *std::max_element(widths.begin(), widths.end());
    LoadOptions options = load_options_from(args);
    const int64_t n_ctx = gens + 2;
    options.memory.n_ctx = n_ctx;
    if (options.memory.threads == 0) options.memory.threads = physical_core_count();
    ThreadPool pool{int(options.memory.threads)};
    const LoadedModel loaded = load_model(*model_path, options);
    const LlamaModel& model = *loaded.model;
    const auto& hp = model.hparams();
    KvCachePool slots(hp.n_layer, n_ctx, hp.n_head_kv, hp.head_dim, widest, loaded.memory.kv_type);
    ForwardScratch scratch(model, n_ctx, &pool, widest, loaded.cache.get());
    StepScratch buffers;
    Step step;
    std::vector<BatchEvent> events;
    const Vocab vocab(model.gguf());
    const TokenId first = vocab.bos() >= 0 ? vocab.bos() : 0;
    // Tokens/s of k greedy streams, `gens` tokens in each of k slots: a stream that ends
    // sooner (its grammar complete, or EOS) is followed in its slot by a new one for the rest,
    // so that every step holds k rows, as a busy daemon's would.
    auto run = [&](int64_t k, bool constrained) {
        Batcher batcher(vocab, n_ctx, 64);
        std::vector<int64_t> left(size_t(k), gens); // tokens still to make, per slot
        uint64_t next_id = 0;
        std::map<uint64_t, int32_t> slot_of;
        auto open = [&](int32_t slot) {
            GenerationParams params;
            params.max_tokens = int32_t(left[size_t(slot)]);
            params.sampling.temperature = 0;
            if (constrained)
                params.constraint = grammars[size_t(next_id) % grammars.size()].constraint;
            batcher.open(next_id, {first}, params);
            batcher.start(next_id, slot, 0);
            slot_of[next_id++] = slot;
        };
        for (int64_t i = 0; i < k; ++i) open(int32_t(i));
        int64_t tokens = 0;
        const auto start = Clock::now();
        while (batcher.plan(step)) {
            run_step(model, slots, 0, hp.n_layer, step, scratch, buffers);
            batcher.finish(step, events, &pool);
            for (const BatchEvent& e : events) {
                const int32_t slot = slot_of.at(e.sequence);
                if (e.kind == BatchEvent::Kind::Token) {
                    ++tokens;
                    --left[size_t(slot)];
                    continue;
                }
                batcher.remove(e.sequence);
                slot_of.erase(e.sequence);
                if (left[size_t(slot)] > 0) open(slot);
            }
        }
        return double(tokens) / (micros_since(start) / 1e6);
    };
    if (!as_json)
        std::printf("\n%s, %lld threads, greedy, %lld tokens per slot (a stream that ends is "
                    "followed by another); stream i follows grammar i mod %zu\n| streams | t/s "
                    "without | t/s with | ratio |\n| --- | --- "
                    "| --- | --- |\n",
                    model_path->c_str(), (long long)options.memory.threads, (long long)gens,
                    grammars.size());
    for (int64_t k : widths) {
        run(k, false); // warm-up
        run(k, true);
        std::vector<double> ratios, without, with;
        for (int64_t r = 0; r < reps; ++r) { // in turn, ratio pair by pair
            without.push_back(run(k, false));
            with.push_back(run(k, true));
            ratios.push_back(with.back() / without.back());
        }
        const double lo = *std::min_element(ratios.begin(), ratios.end());
        const double hi = *std::max_element(ratios.begin(), ratios.end());
        if (as_json) {
            std::printf("%s\n", nlohmann::json({{"test", "generation"},
                                                {"streams", k},
                                                {"tokens_per_second", mean_of(without)},
                                                {"constrained_tokens_per_second", mean_of(with)},
                                                {"ratio_min", lo},
                                                {"ratio_max", hi}})
                                    .dump()
                                    .c_str());
        } else {
            std::printf("| %lld | %.1f | %.1f | %.3f (%.3f-%.3f) |\n", (long long)k,
                        mean_of(without), mean_of(with), mean_of(ratios), lo, hi);
        }
        std::fflush(stdout);
    }
    return 0;
}

} // namespace woolly::cli
