// cmd_bench.cpp — `woolly bench`: llama-bench's method (a warm-up, the KV cache cleared every
// repetition, random tokens, mean ± standard deviation), plus the machine's read bandwidth
// measured in the same run, so that generation speed is reported against its roofline.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "cli_args.h"
#include "commands.h"
#include "engine/runtime/bandwidth.h"
#include "engine/model/context.h"
#include "engine/kernels/kernels.h"
#include "engine/model/loader.h"
#include "engine/runtime/thread_pool.h"
#include "engine/serve/batch.h"

namespace woolly::cli {
namespace {

using Clock = std::chrono::steady_clock;

std::vector<int64_t> parse_list(const std::string& text, const char* flag) {
    std::vector<int64_t> out;
    std::stringstream in(text);
    for (std::string item; std::getline(in, item, ',');) {
        int64_t v = 0;
        auto [p, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
        if (ec != std::errc() || p != item.data() + item.size() || v < 0 || v > (1 << 20))
            throw Error(std::string("bad value '") + item + "' in " + flag +
                        " (expected counts like 128,512)");
        if (v > 0) out.push_back(v);
    }
    return out;
}

struct Stats {
    double mean = 0, stddev = 0;
};

Stats stats_of(const std::vector<double>& v) {
    Stats s;
    for (double x : v) s.mean += x;
    s.mean /= double(v.size());
    for (double x : v) s.stddev += (x - s.mean) * (x - s.mean);
    s.stddev = v.size() > 1 ? std::sqrt(s.stddev / double(v.size() - 1)) : 0.0;
    return s;
}

std::string cache_text(const WeightCacheStats& c) {
    if (c.budget == 0) return "off";
    char text[160];
    std::snprintf(text, sizeof text, "%llu %llu %llu %llu, %.0f of %.0f",
                  (unsigned long long)c.hits, (unsigned long long)c.misses,
                  (unsigned long long)c.evictions, (unsigned long long)c.bypasses,
                  double(c.bytes) / 1048576.0, double(c.budget) / 1048576.0);
    return text;
}

} // namespace

int bench_command(int argc, char** argv) {
    Args args(argc, argv, 2,
              {"-m", "--model", "-p", "-n", "-r", "-t", "--threads", "--weight-cache",
               "--cache-type", "--parallel", "--json-schema", "--grammar", "--vocab"},
              {"--json", "--help", "-h", "--no-mmap", "--mlock"});
    if (args.has("--help") || args.has("-h")) {
        std::fputs(
            "usage: woolly bench [-m MODEL] [-p 128,512] [-n 32,128] [-r 5] [-t THREADS]\n"
            "                    [--weight-cache MIB] [--cache-type f16|f32|q8_0] [--no-mmap]\n"
            "                    [--mlock] [--parallel 2,4,8] [--json]\n"
            "pp N: a prompt of N random tokens; tg N: N generated tokens. Each test: a warm-up,\n"
            "then -r repetitions from an empty KV cache; mean ± standard deviation in tokens/s.\n"
            "Generation tests also give GB/s of weights read against the read bandwidth\n"
            "measured in the same run. --weight-cache: the budget for repacked weights\n"
            "(default 4096 MiB, 0 = off); its hits, misses and evictions are reported per test.\n"
            "Memory: the process's peak RSS after each test, and what it holds by part.\n"
            "--parallel K: each tg test again with K sequences generating at once, one token\n"
            "of each per step read against the weights once (woollyd's continuous batching);\n"
            "t/s is all K sequences' tokens together (tg32 x4).\n"
            "\n"
            "woolly bench --json-schema FILE|DIR [--grammar FILE|DIR] [--vocab GGUF,...]\n"
            "             [-m MODEL -n 64 -r 3 --parallel 8] [--json]\n"
            "Structured output: each schema's (or GBNF grammar's) compile time; per vocabulary,\n"
            "the time of each token's mask along a walk that draws tokens uniformly from those\n"
            "allowed, and along the bundled model's constrained output for each grammar in the\n"
            "vocabulary's own tokens; with -m, greedy tokens/s with and without the grammars\n"
            "through woollyd's batcher, one stream and --parallel K at once, in turn (ratio\n"
            "pair by pair).\n",
            stdout);
        return 0;
    }
    if (args.get("--json-schema") || args.get("--grammar")) return bench_grammar_command(args);
    const std::string path = args.get("-m", "--model").value_or(default_model_path());
    const auto prompts = parse_list(args.get("-p").value_or("128"), "-p");
    const auto gens = parse_list(args.get("-n").value_or("32"), "-n");
    const int64_t reps = args.number<int64_t>("-r").value_or(5);
    if (reps < 1 || reps > 1000) throw Error("-r must be between 1 and 1000");
    const bool as_json = args.has("--json");
    const auto parallel = parse_list(args.get("--parallel").value_or(""), "--parallel");
    int64_t widest = 1;
    for (int64_t k : parallel) widest = std::max(widest, k);
    if (widest > 256) throw Error("--parallel takes at most 256 sequences");

    int64_t longest = 1;
    for (int64_t p : prompts) longest = std::max(longest, p);
    for (int64_t n : gens) longest = std::max(longest, n);
    LoadOptions options = load_options_from(args);
    options.memory.n_ctx = longest;
    if (options.memory.threads == 0) options.memory.threads = physical_core_count();
    const int64_t threads = options.memory.threads;
    ThreadPool pool{int(threads)};
    // The bandwidth's buffer comes and goes before the model, and the peak starts over after
    // it: the peak RSS column is the model's.
    const double bandwidth = gens.empty() ? 0.0 : measure_read_bandwidth(pool);
    reset_peak_rss();
    const LoadedModel loaded = load_model(path, options);
    const LlamaModel* model = loaded.model.get();
    const WeightCache* weight_cache = loaded.cache.get();
    const auto& hp = model->hparams();
    LlamaContext context(*model, longest, &pool, kDefaultPromptBatch, loaded.cache.get(),
                         loaded.memory.kv_type);
    const uint64_t bytes_per_token = model->weight_bytes_per_token();
    const uint64_t model_bytes = model->gguf().size();
    // For --parallel: a KV slot per sequence and a scratch for a step of all of them.
    std::unique_ptr<KvCachePool> slots;
    std::unique_ptr<ForwardScratch> step_scratch;
    if (!parallel.empty()) {
        slots =
            std::make_unique<KvCachePool>(hp.n_layer, longest, hp.n_head_kv, hp.head_dim, widest,
                                          loaded.memory.kv_type, hp.kv_windows(), widest);
        step_scratch = std::make_unique<ForwardScratch>(*model, longest, &pool, widest,
                                                        loaded.cache.get());
    }
    Step step;
    StepScratch step_buffers;
    std::mt19937 rng(1234);
    std::uniform_int_distribution<int32_t> random_token(0, int32_t(hp.n_vocab - 1));

    // Tokens/s of `count` random tokens from an empty cache: a prompt goes in as one batch,
    // generation one token at a time.
    std::vector<int32_t> tokens;
    uint64_t tokens_run = 0; // tokens through the model so far (for the experts per token)
    auto run = [&](int64_t count, bool prompt) {
        tokens_run += uint64_t(count);
        tokens.resize(size_t(count));
        for (auto& t : tokens) t = random_token(rng);
        context.reset();
        const auto start = Clock::now();
        if (prompt)
            context.decode_batch(tokens.data(), count);
        else
            for (int32_t t : tokens) context.decode(t);
        return double(count) / std::chrono::duration<double>(Clock::now() - start).count();
    };

    // Tokens/s of k sequences generating `count` random tokens each, one step per position.
    auto run_parallel = [&](int64_t count, int64_t k) {
        tokens_run += uint64_t(count * k);
        step.clear();
        for (int64_t i = 0; i < k; ++i) {
            step.segments.push_back({uint64_t(i), int32_t(i), 0, 1, int32_t(i)});
            step.tokens.push_back(0);
        }
        step.n_logits = int32_t(k);
        const auto start = Clock::now();
        for (int64_t pos = 0; pos < count; ++pos) {
            for (int64_t i = 0; i < k; ++i) {
                step.segments[size_t(i)].pos = int32_t(pos);
                step.tokens[size_t(i)] = random_token(rng);
            }
            run_step(*model, *slots, 0, hp.n_layer, step, *step_scratch, step_buffers);
        }
        return double(count * k) /
               std::chrono::duration<double>(Clock::now() - start).count();
    };

    if (!as_json) {
        std::printf(
            "model %s: %.1f MiB, %lld layers, n_embd %lld, vocab %lld; kernels %s; %lld threads\n",
            path.c_str(), double(model_bytes) / 1048576.0, (long long)hp.n_layer,
            (long long)hp.n_embd, (long long)hp.n_vocab, kernel_level_name(active_kernels().level),
            (long long)threads);
        if (!gens.empty())
            std::printf("read bandwidth (same run, %lld threads): %.1f GB/s\n", (long long)threads,
                        bandwidth);
        if (!loaded.note.empty()) std::printf("%s\n", loaded.note.c_str());
        std::printf("loaded in %.0f ms; memory: %s\n", loaded.load_ms,
                    describe(memory_usage(*model, weight_cache, context.kv_bytes(),
                                          context.scratch_bytes()))
                        .c_str());
        if (hp.n_expert > 0)
            std::printf("a mixture of %lld experts, %lld a token: the roofline counts the "
                        "experts' active share\n",
                        (long long)hp.n_expert, (long long)hp.n_expert_used);
        std::printf(
            "| test      | t/s                  | GB/s of weights | of roofline | weight cache: "
            "hits misses evictions bypasses, MiB held | peak RSS MiB |%s\n",
            hp.n_expert > 0 ? " experts read per token | expert forms hit |" : "");
        std::printf("| --------- | -------------------- | --------------- | ----------- | "
                    "--------------------------------------------- | ------------ |%s\n",
                    hp.n_expert > 0 ? " ---------------------- | ----------------- |" : "");
    }
    // Weight-cache counters of one test (warm-up included): the difference of two snapshots,
    // the first taken after loading (whose builds are not the first test's).
    WeightCacheStats before = weight_cache ? weight_cache->stats() : WeightCacheStats{};
    auto cache_delta = [&] {
        WeightCacheStats now = weight_cache ? weight_cache->stats() : WeightCacheStats{};
        WeightCacheStats d = now;
        d.hits -= before.hits;
        d.misses -= before.misses;
        d.evictions -= before.evictions;
        d.bypasses -= before.bypasses;
        for (size_t l = 0; l < d.expert_layers.size() && l < before.expert_layers.size(); ++l) {
            d.expert_layers[l].hits -= before.expert_layers[l].hits;
            d.expert_layers[l].misses -= before.expert_layers[l].misses;
        }
        before = now;
        return d;
    };
    // Experts read per token over one test (warm-up included): a step reads each expert its
    // tokens chose once, so a prompt's tokens share them.
    uint64_t experts_before = 0, tokens_before = 0;
    auto experts_per_token = [&] {
        const uint64_t now =
            context.experts_read() + (step_scratch ? step_scratch->experts_read() : 0);
        const double per_token = tokens_run > tokens_before ? double(now - experts_before) /
                                                                  double(tokens_run - tokens_before)
                                                            : 0.0;
        experts_before = now;
        tokens_before = tokens_run;
        return per_token;
    };
    // tokens_per_step: the weights are read once for that many tokens (--parallel).
    auto report = [&](const std::string& test, const Stats& s, bool generation,
                      int64_t tokens_per_step = 1) {
        const WeightCacheStats cache = cache_delta();
        const double experts = experts_per_token();
        // The share of expert-form lookups that hit, over all layers ("-" with no lookups: no
        // x16 forms at this level, or no cache).
        uint64_t expert_hits = 0, expert_lookups = 0;
        for (const ExpertLayerStats& l : cache.expert_layers) {
            expert_hits += l.hits;
            expert_lookups += l.hits + l.misses;
        }
        char hit_cell[32] = "-";
        if (expert_lookups > 0)
            std::snprintf(hit_cell, sizeof hit_cell, "%.1f %%",
                          100.0 * double(expert_hits) / double(expert_lookups));
        char experts_cell[96] = "";
        if (hp.n_expert > 0)
            std::snprintf(experts_cell, sizeof experts_cell, " %22.2f | %17s |", experts, hit_cell);
        const MemoryUsage memory =
            memory_usage(*model, weight_cache, context.kv_bytes(), context.scratch_bytes());
        const double peak_mib = double(memory.peak_rss) / 1048576.0;
        const double gbs =
            generation ? s.mean / double(tokens_per_step) * double(bytes_per_token) / 1e9 : 0.0;
        if (as_json) {
            nlohmann::json line = {{"test", test},
                                   {"tokens_per_second", s.mean},
                                   {"stddev", s.stddev},
                                   {"threads", threads},
                                   {"repetitions", reps},
                                   {"model", path},
                                   {"model_bytes", model_bytes},
                                   {"kernels", kernel_level_name(active_kernels().level)},
                                   {"weight_cache",
                                    {{"budget_bytes", cache.budget},
                                     {"bytes", cache.bytes},
                                     {"entries", cache.entries},
                                     {"hits", cache.hits},
                                     {"misses", cache.misses},
                                     {"evictions", cache.evictions},
                                     {"bypasses", cache.bypasses}}},
                                   {"memory",
                                    {{"peak_rss_bytes", memory.peak_rss},
                                     {"rss_bytes", memory.rss},
                                     {"file_resident_bytes", memory.file_resident},
                                     {"weight_cache_bytes", memory.cache},
                                     {"kv_bytes", memory.kv},
                                     {"scratch_bytes", memory.scratch}}}};
            if (hp.n_expert > 0) {
                line["experts_read_per_token"] = experts;
                line["weight_cache"]["experts_streamed"] = cache.experts_streamed;
                nlohmann::json layers = nlohmann::json::array();
                for (const ExpertLayerStats& l : cache.expert_layers)
                    layers.push_back({{"hits", l.hits}, {"misses", l.misses}});
                line["weight_cache"]["expert_layers"] = layers;
            }
            if (generation) {
                line["weight_bytes_per_token"] = bytes_per_token;
                line["gb_per_second"] = gbs;
                line["bandwidth_gb_per_second"] = bandwidth;
                line["roofline_fraction"] = bandwidth > 0 ? gbs / bandwidth : 0.0;
            }
            std::printf("%s\n", line.dump().c_str());
        } else if (generation) {
            std::printf("| %-9s | %9.1f ± %-8.1f | %15.2f | %10.1f%% | %s | %12.1f |%s\n",
                        test.c_str(), s.mean, s.stddev, gbs,
                        bandwidth > 0 ? 100.0 * gbs / bandwidth : 0.0, cache_text(cache).c_str(),
                        peak_mib, experts_cell);
        } else {
            std::printf("| %-9s | %9.1f ± %-8.1f | %15s | %11s | %s | %12.1f |%s\n", test.c_str(),
                        s.mean, s.stddev, "", "", cache_text(cache).c_str(), peak_mib,
                        experts_cell);
        }
        std::fflush(stdout);
    };
    for (int64_t p : prompts) {
        run(p, true); // warm-up
        std::vector<double> tps;
        for (int64_t r = 0; r < reps; ++r) tps.push_back(run(p, true));
        report("pp" + std::to_string(p), stats_of(tps), false);
    }
    for (int64_t n : gens) {
        run(n, false);
        std::vector<double> tps;
        for (int64_t r = 0; r < reps; ++r) tps.push_back(run(n, false));
        report("tg" + std::to_string(n), stats_of(tps), true);
        for (int64_t k : parallel) {
            run_parallel(n, k);
            std::vector<double> ktps;
            for (int64_t r = 0; r < reps; ++r) ktps.push_back(run_parallel(n, k));
            report("tg" + std::to_string(n) + " x" + std::to_string(k), stats_of(ktps), true, k);
        }
    }
    if (!as_json && weight_cache && hp.n_expert > 0) { // the whole run's, layer by layer
        const WeightCacheStats all = weight_cache->stats();
        std::string line = "expert forms hit by layer (hits/lookups):";
        for (size_t l = 0; l < all.expert_layers.size(); ++l) {
            const ExpertLayerStats& e = all.expert_layers[l];
            char cell[64];
            std::snprintf(cell, sizeof cell, " %zu: %llu/%llu", l, (unsigned long long)e.hits,
                          (unsigned long long)(e.hits + e.misses));
            line += cell;
        }
        std::printf("%s%s\n", line.c_str(),
                    all.experts_streamed ? "; the rest streamed from the file" : "");
    }
    return 0;
}

} // namespace woolly::cli
