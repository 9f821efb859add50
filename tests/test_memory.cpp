// test_memory.cpp — what a loaded model holds: the weight cache gives back the file pages of
// the rows it serves and reads them again on eviction (mapped and --no-mmap), the memory plan
// bounds what the OS reports the process holds, and a model that does not fit is refused
// before loading with what would fit instead.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>

#include "engine/model/context.h"
#include "engine/error.h"
#include "engine/kernels/kernels.h"
#include "engine/model/loader.h"
#include "engine/gguf/synthetic_model.h"
#include "engine/quant/repack.h"
#include "test_support.h"

using namespace woolly;

namespace {

// A synthetic Q4_0 file of `shape`, written to `name` at its first use and removed when the
// tests end.
struct SynthFile {
    std::string path;
    SynthFile(const char* name, const char* shape) : path(test::temp_path(name)) {
        SynthOptions options;
        options.shape = shape;
        options.type = TensorType::Q4_0;
        write_synthetic_model(options, path);
    }
    ~SynthFile() { std::filesystem::remove(path); }
};

// A stories-15m-shaped Q4_0 file (about 9 MiB: every matrix spans many pages).
const std::string& synth_q4_0() {
    static const SynthFile file("memory-test-q4_0.gguf", "stories-15m");
    return file.path;
}

// The logits of `steps` greedy steps after token 1, one token at a time.
std::vector<std::vector<float>> greedy_logits(const LlamaModel& model, WeightCache* cache,
                                              int steps) {
    LlamaContext context(model, 64, nullptr, kDefaultPromptBatch, cache);
    std::vector<std::vector<float>> out;
    int32_t token = 1;
    for (int i = 0; i < steps; ++i) {
        const float* logits = context.decode(token);
        out.emplace_back(logits, logits + model.hparams().n_vocab);
        token =
            int32_t(std::max_element(out.back().begin(), out.back().end()) - out.back().begin());
    }
    return out;
}

LoadOptions with_budget(uint64_t budget, bool mmap) {
    LoadOptions options;
    options.memory.n_ctx = 64;
    options.memory.cache_budget = budget;
    options.mmap = mmap;
    options.limit = MemoryLimit{UINT64_MAX, "test"};
    return options;
}

// Bytes of the x16 forms the forward pass reads: all, or the layers' only.
uint64_t forms_bytes(const LlamaModel& model, bool layers_only = false) {
    uint64_t bytes = 0;
    model.for_each_matrix([&](const WeightMatrix& w, bool batched) {
        if (WeightCache::reads_x16(w, batched) && (batched || !layers_only)) bytes += x16_bytes(w);
    });
    return bytes;
}

} // namespace

TEST_CASE("the weight cache gives back the file pages of the rows it serves") {
    const LoadedModel loaded = load_model(synth_q4_0(), with_budget(uint64_t(1) << 30, true));
    const LlamaModel& model = *loaded.model;
    if (forms_bytes(model) == 0) {
        MESSAGE("skipped: the kernel level has no x16 kernels, so the cache holds nothing");
        return;
    }
    const WeightCacheStats stats = loaded.cache->stats();
    const WeightMatrix& wq = model.layers[0].wq;
    CHECK(loaded.cache->released_bytes(wq.data) == uint64_t(wq.rows / 16 * 16) * wq.row_bytes);
    CHECK(loaded.cache->released_bytes(model.token_embd.data) == 0); // looked up row by row
    CHECK(stats.released > 0);
    // What stays resident: the file but the released rows, give or take a shared page at each
    // end of every tensor. Before the pages were given back, all of it stayed.
    const uint64_t page = 4096, slack = 2 * page * (model.gguf().tensors().size() + 1);
    const uint64_t resident = model.gguf().resident_bytes();
    CHECK(resident > 0);
    CHECK(resident <= model.gguf().size() - stats.released + slack);
    // The plan said as much: its file part is what is not released.
    CHECK(loaded.plan.file <= model.gguf().size() - stats.released + slack);
    CHECK(loaded.plan.cache == stats.bytes);
}

TEST_CASE("an evicted form's rows are read from the file again: the same logits, mapped or not") {
    const auto reference_model = LlamaModel::load(synth_q4_0());
    const auto want = greedy_logits(*reference_model, nullptr, 6);
    const uint64_t forms = forms_bytes(*reference_model);
    if (forms == 0) {
        MESSAGE("skipped: the kernel level has no x16 kernels, so nothing is evicted");
        return;
    }
    for (const bool mmap : {true, false}) {
        INFO("mmap " << mmap);
        // A budget for half the layers' forms: warming evicts, and the evicted are then served
        // from the file's pages, given back and read again.
        const LoadedModel loaded =
            load_model(synth_q4_0(), with_budget(forms_bytes(*reference_model, true) / 2, mmap));
        CHECK(loaded.model->gguf().in_memory() == !mmap);
        const WeightCacheStats warm = loaded.cache->stats();
        REQUIRE(warm.evictions > 0);
        CHECK(warm.released < forms);
        const auto got = greedy_logits(*loaded.model, loaded.cache.get(), 6);
        REQUIRE(got.size() == want.size());
        for (size_t i = 0; i < want.size(); ++i) CHECK(got[i] == want[i]);
        // With room for everything nothing is evicted, and the output matrix (Q8_0 here) is
        // read through its form too, whose sums are the scalar reference's, not this level's
        // row kernel's: the last bits may differ, the tokens do not.
        const LoadedModel full = load_model(synth_q4_0(), with_budget(forms, mmap));
        CHECK(full.cache->stats().evictions == 0);
        const auto all = greedy_logits(*full.model, full.cache.get(), 6);
        for (size_t i = 0; i < want.size(); ++i)
            for (size_t j = 0; j < want[i].size(); ++j)
                REQUIRE(all[i][j] == doctest::Approx(want[i][j]).epsilon(1e-5));
    }
}

TEST_CASE("the memory plan bounds what the process holds, part by part") {
    LoadOptions options = with_budget(uint64_t(1) << 30, true);
    options.memory.threads = 2;
    const LoadedModel loaded = load_model(synth_q4_0(), options);
    ThreadPool pool(2);
    LlamaContext context(*loaded.model, 64, &pool, kDefaultPromptBatch, loaded.cache.get(),
                         loaded.memory.kv_type);
    context.decode(1);
    const MemoryUsage usage = memory_usage(*loaded.model, loaded.cache.get(), context.kv_bytes(),
                                           context.scratch_bytes());
    const LlamaHyperParams& hp = loaded.model->hparams();
    CHECK(loaded.plan.kv ==
          KvCache::bytes_for(hp.n_layer, 64, hp.n_head_kv, hp.head_dim, TensorType::F16));
    CHECK(usage.kv == loaded.plan.kv);
    CHECK(usage.scratch == loaded.plan.scratch);
    CHECK(usage.cache <= loaded.plan.cache);
    CHECK(usage.file_resident <= loaded.plan.file);
    CHECK(usage.rss >= usage.file_resident + usage.cache);
    CHECK(usage.peak_rss >= usage.rss / 2); // getrusage's peak is the process's, in KiB
    CHECK(describe(usage).find("weight cache") != std::string::npos);
}

TEST_CASE("a model that does not fit is refused before loading, saying what would fit") {
    const auto model = LlamaModel::load(synth_q4_0());
    const OptionNames names = {"engine.context", "engine.max_sessions", "engine.kv_cache_type",
                               "engine.weight_cache_mib"};
    MemoryRequest request;
    request.n_ctx = 256;
    request.sessions = 4;
    request.cache_budget = uint64_t(1) << 30;
    const MemoryPlan plan = plan_memory(*model, request);
    MemoryRequest no_cache = request;
    no_cache.cache_budget = 0;
    const MemoryPlan base = plan_memory(*model, no_cache);
    CHECK(base.cache == 0);
    CHECK(base.file == model->gguf().size());
    CHECK(plan.kv == 4 * KvCache::bytes_for(6, 256, 6, 48, TensorType::F16));

    SUBCASE("it fits: unchanged") {
        std::string note;
        const MemoryRequest r = fit_memory(*model, request, {plan.total(), "test"}, names, &note);
        CHECK(r.cache_budget == request.cache_budget);
        CHECK(note.empty());
    }
    SUBCASE("only the cache does not fit: it shrinks, and says so") {
        if (plan.cache == 0) {
            MESSAGE("skipped: the kernel level reads no x16 form, so there is no cache to shrink");
            return;
        }
        // A budget that holds part of the forms costs the whole file besides.
        MemoryRequest partial = request;
        partial.cache_budget = uint64_t(8) << 20;
        const MemoryPlan with_part = plan_memory(*model, partial);
        CHECK(with_part.total() == base.total() + partial.cache_budget);
        std::string note;
        const uint64_t limit = base.total() + (uint64_t(3) << 20) + 12345;
        const MemoryRequest r = fit_memory(*model, partial, {limit, "test"}, names, &note);
        CHECK(r.cache_budget == uint64_t(3) << 20);
        CHECK(plan_memory(*model, r).total() <= limit);
        CHECK(note.find("weight cache shrunk from 8.0 MiB to 3.0 MiB") != std::string::npos);
    }
    SUBCASE("the KV caches do not fit: refused, and each suggestion fits") {
        const uint64_t limit = base.total() - plan.kv / 2; // half the KV caches' room is gone
        std::string message;
        try {
            fit_memory(*model, request, {limit, "cgroup /test memory.max"}, names, nullptr);
        } catch (const Error& e) {
            message = e.what();
        }
        INFO(message);
        CHECK(message.find("needs about") != std::string::npos);
        CHECK(message.find("available (cgroup /test memory.max)") != std::string::npos);
        CHECK(message.find('\n') == std::string::npos);
        std::smatch m;
        REQUIRE(std::regex_search(message, m, std::regex("engine\\.context (\\d+)")));
        MemoryRequest r = no_cache;
        r.n_ctx = std::stoll(m[1]);
        CHECK(r.n_ctx < 256);
        CHECK(plan_memory(*model, r).total() <= limit);
        REQUIRE(std::regex_search(message, m, std::regex("engine\\.max_sessions (\\d+)")));
        r = no_cache;
        r.sessions = std::stoll(m[1]);
        CHECK(r.sessions < 4);
        CHECK(plan_memory(*model, r).total() <= limit);
        // A Q8_0 cache needs heads of whole 32-value blocks; this shape's are 48 wide.
        CHECK(model->hparams().head_dim % 32 != 0);
        CHECK(message.find("kv_cache_type") == std::string::npos);
    }
    SUBCASE("nothing fits: the weights alone are too large") {
        CHECK_THROWS_WITH_AS(fit_memory(*model, request, {1 << 20, "test"}, names, nullptr),
                             doctest::Contains("nothing fits: one session of one token needs"),
                             Error);
    }
}

namespace {

// A mixture whose experts span many pages each (test-moe-paged, Q4_0).
const std::string& synth_moe() {
    static const SynthFile file("memory-test-moe.gguf", "test-moe-paged");
    return file.path;
}

// Bytes of the experts' x16 forms the forward pass reads.
uint64_t expert_forms_bytes(const LlamaModel& model) {
    uint64_t bytes = 0;
    for (const LlamaLayer& l : model.layers)
        for (const auto* experts : {&l.gate_exps, &l.up_exps, &l.down_exps})
            for (const WeightMatrix& w : *experts)
                if (WeightCache::reads_x16(w, true)) bytes += x16_bytes(w);
    return bytes;
}

} // namespace

TEST_CASE("experts that do not fit the cache: the most used kept, the rest streamed from the "
          "file with their pages given back, the same logits") {
    const auto reference_model = LlamaModel::load(synth_moe());
    // 8 steps: an expert's x16 form and its file rows agree to the last bits or so, and this
    // random model's routing amplifies that, step by step, past 1e-5 from the 11th.
    const auto want = greedy_logits(*reference_model, nullptr, 8);
    const uint64_t expert_forms = expert_forms_bytes(*reference_model);
    if (expert_forms == 0) {
        MESSAGE("skipped: the kernel level has no x16 kernels, so no expert is cached");
        return;
    }
    const uint64_t non_expert_forms = forms_bytes(*reference_model) - expert_forms;
    uint64_t largest = 0;
    const uint64_t experts = reference_model->expert_bytes(&largest);
    const uint64_t file_size = reference_model->gguf().size();
    REQUIRE(largest > 16 * 4096); // each expert's pages can be given back
    // The matrices every token reads, and a third of the experts.
    const LoadedModel loaded =
        load_model(synth_moe(), with_budget(non_expert_forms + expert_forms / 3, true));
    CHECK(loaded.memory.stream_experts);
    CHECK(loaded.plan.experts_streamed);
    CHECK(loaded.note.find("the most used are kept") != std::string::npos);
    CHECK(loaded.plan.file == file_size - experts + 2 * largest);
    CHECK(describe(loaded.plan).find("with the experts streamed") != std::string::npos);
    WeightCache& cache = *loaded.cache;
    CHECK(cache.streams_experts());
    const WeightCacheStats warm = cache.stats();
    CHECK(warm.experts_streamed);
    CHECK(warm.bytes <= warm.budget);
    // Warming took every matrix every token reads before any expert.
    for (const WeightMatrix* w : {&loaded.model->layers.back().wq, &loaded.model->output})
        CHECK((!WeightCache::reads_x16(*w, w != &loaded.model->output) ||
               cache.released_bytes(w->data) > 0 || w->data == loaded.model->token_embd.data));

    const auto got = greedy_logits(*loaded.model, &cache, 8);
    REQUIRE(got.size() == want.size());
    for (size_t i = 0; i < want.size(); ++i)
        for (size_t j = 0; j < want[i].size(); ++j)
            REQUIRE(got[i][j] == doctest::Approx(want[i][j]).epsilon(1e-5));
    const WeightCacheStats run = cache.stats();
    REQUIRE(run.expert_layers.size() == loaded.model->layers.size());
    uint64_t hits = 0, misses = 0;
    for (const ExpertLayerStats& l : run.expert_layers) {
        hits += l.hits;
        misses += l.misses;
        CHECK(l.hits + l.misses > 0);
    }
    CHECK(hits > warm.hits); // kept experts were routed to
    CHECK(misses > 0);       // and others read from the file
    CHECK(run.evictions > warm.evictions); // and hot ones admitted in place of colder ones
    CHECK(run.bytes <= run.budget);
    // What stays of the file: the matrices every token reads (their cached rows given back)
    // and no more than two experts' pages (the last in use, and page rounding).
    const uint64_t page = 4096;
    const uint64_t slack = 2 * page * (loaded.model->gguf().tensors().size() + 1);
    CHECK(loaded.model->gguf().resident_bytes() <= file_size - experts + 2 * largest + slack);

    SUBCASE("without streaming (--mlock, --no-mmap) every expert read stays mapped") {
        LoadOptions options = with_budget(non_expert_forms + expert_forms / 3, false);
        const LoadedModel copied = load_model(synth_moe(), options);
        CHECK_FALSE(copied.memory.stream_experts);
        CHECK_FALSE(copied.cache->streams_experts());
        const auto same = greedy_logits(*copied.model, copied.cache.get(), 8);
        for (size_t i = 0; i < want.size(); ++i)
            for (size_t j = 0; j < want[i].size(); ++j)
                REQUIRE(same[i][j] == doctest::Approx(want[i][j]).epsilon(1e-5));
    }
    SUBCASE("room for every form: nothing streamed") {
        const LoadedModel full = load_model(synth_moe(), with_budget(forms_bytes(*reference_model), true));
        CHECK_FALSE(full.memory.stream_experts);
        CHECK(full.cache->stats().evictions == 0);
    }
}

TEST_CASE("an expert's form is admitted when used clearly more than the coldest expert's, and "
          "evicts only experts") {
    const auto model = LlamaModel::load(synth_moe());
    const LlamaLayer& layer = model->layers[1];
    const WeightMatrix &e0 = layer.gate_exps[0], &e1 = layer.gate_exps[1],
                       &e2 = layer.gate_exps[2];
    if (!WeightCache::reads_x16(e0, true)) {
        MESSAGE("skipped: the kernel level has no x16 kernels, so no expert is cached");
        return;
    }
    const uint64_t one = x16_bytes(e0);
    const WeightMatrix& wq = layer.wq;
    WeightCache cache(2 * one + x16_bytes(wq), model.get());
    REQUIRE(cache.find_or_build(wq) != nullptr);
    REQUIRE(cache.find_or_build(e0) != nullptr);
    REQUIRE(cache.find_or_build(e1) != nullptr); // full: wq, e0, e1 (one use each)
    CHECK(cache.find_or_build(e1) != nullptr);   // e1: 2 uses
    // e2 needs more than 1 + 1/4 + 2 uses of e0, the least used: refused at 1, 2 and 3 uses.
    for (int use = 1; use <= 3; ++use) CHECK(cache.find_or_build(e2) == nullptr);
    WeightCacheStats s = cache.stats();
    CHECK(s.bypasses == 3);
    CHECK(s.evictions == 0);
    const uint8_t* form = cache.find_or_build(e2); // 4 uses: admitted, e0 evicted
    REQUIRE(form != nullptr);
    std::vector<uint8_t> want(one);
    repack_x16(e2, want.data());
    CHECK(std::memcmp(form, want.data(), one) == 0);
    s = cache.stats();
    CHECK(s.evictions == 1);
    CHECK(s.entries == 3);
    CHECK(cache.find_or_build(wq) != nullptr); // the attention matrix stayed
    CHECK(cache.find_or_build(e1) != nullptr);
    CHECK(cache.released_bytes(e0.data) == 0);  // e0's rows are the file's again
    // Lookups are counted per layer: 2 hits (e1), 6 misses (3 builds, 3 refusals).
    s = cache.stats();
    REQUIRE(s.expert_layers.size() == model->layers.size());
    CHECK(s.expert_layers[1].hits == 2);
    CHECK(s.expert_layers[1].misses == 6);
    CHECK(s.expert_layers[0].hits + s.expert_layers[0].misses == 0);
}

TEST_CASE("a mixture whose experts do not fit in memory is loaded with them streamed, and says so "
          "in one line") {
    const auto model = LlamaModel::load(synth_moe());
    MemoryRequest request;
    request.n_ctx = 64;
    request.cache_budget = 0;
    const MemoryPlan whole = plan_memory(*model, request);
    CHECK(whole.file == model->gguf().size());
    uint64_t largest = 0;
    const uint64_t experts = model->expert_bytes(&largest);
    // Room for all but half the experts' bytes.
    const uint64_t limit = whole.total() - experts / 2;
    std::string note;
    const MemoryRequest r = fit_memory(*model, request, {limit, "test"}, kCliOptionNames, &note);
    CHECK(r.stream_experts);
    const MemoryPlan streamed = plan_memory(*model, r);
    CHECK(streamed.experts_streamed);
    CHECK(streamed.total() <= limit);
    CHECK(note.find("do not all fit in the") != std::string::npos);
    CHECK(note.find("read from the file as routed") != std::string::npos);
    CHECK(note.find('\n') == std::string::npos);
    // Not allowed to stream (--mlock, --no-mmap): refused as before.
    request.may_stream_experts = false;
    CHECK_THROWS_WITH_AS(fit_memory(*model, request, {limit, "test"}, kCliOptionNames, nullptr),
                         doctest::Contains("needs about"), Error);
}

TEST_CASE("available memory: MemAvailable, the cgroup, and WOOLLY_MEMORY_LIMIT") {
    const char* before = std::getenv("WOOLLY_MEMORY_LIMIT");
    const std::string saved = before ? before : "";
    ::unsetenv("WOOLLY_MEMORY_LIMIT");
    const auto machine = available_memory();
    REQUIRE(machine.has_value()); // /proc/meminfo at least
    CHECK(machine->bytes > 0);
    ::setenv("WOOLLY_MEMORY_LIMIT", "3M", 1);
    auto limited = available_memory();
    REQUIRE(limited.has_value());
    CHECK(limited->bytes == uint64_t(3) << 20);
    CHECK(limited->source == "WOOLLY_MEMORY_LIMIT");
    ::setenv("WOOLLY_MEMORY_LIMIT", "2097152", 1);
    CHECK(available_memory()->bytes == uint64_t(2) << 20);
    for (const char* bad : {"12Q", "-5", "M", "99999999999999999999"}) {
        ::setenv("WOOLLY_MEMORY_LIMIT", bad, 1);
        CHECK_THROWS_WITH_AS(available_memory(), doctest::Contains("WOOLLY_MEMORY_LIMIT is"),
                             Error);
    }
    if (before)
        ::setenv("WOOLLY_MEMORY_LIMIT", saved.c_str(), 1);
    else
        ::unsetenv("WOOLLY_MEMORY_LIMIT");
}

TEST_CASE("available memory from the files: MemAvailable and memory.max up the cgroup tree") {
    namespace fs = std::filesystem;
    const fs::path root = test::temp_path("memory-test-fs");
    fs::remove_all(root);
    fs::create_directories(root / "proc/self");
    fs::create_directories(root / "cgroup/test.slice/woolly.service");
    auto write = [&](const fs::path& p, const std::string& text) { std::ofstream(p) << text; };
    write(root / "proc/meminfo", "MemTotal:       24000000 kB\nMemFree:        1000 kB\n"
                                 "MemAvailable:   2000000 kB\nBuffers:        10 kB\n");
    write(root / "proc/self/cgroup", "0::/test.slice/woolly.service\n");
    const std::string proc = (root / "proc").string(), cgroup = (root / "cgroup").string();
    // No memory.max anywhere: MemAvailable.
    auto limit = available_memory(proc, cgroup);
    REQUIRE(limit.has_value());
    CHECK(limit->bytes == uint64_t(2000000) << 10);
    CHECK(limit->source == "MemAvailable");
    // The service's own cgroup (MemoryMax=): what is left of it.
    write(root / "cgroup/test.slice/woolly.service/memory.max", "1048576000\n");
    write(root / "cgroup/test.slice/woolly.service/memory.current", "48576000\n");
    limit = available_memory(proc, cgroup);
    CHECK(limit->bytes == 1000000000);
    CHECK(limit->source == "cgroup /test.slice/woolly.service memory.max");
    // A tighter slice above it wins; "max" means no limit there.
    write(root / "cgroup/test.slice/memory.max", "600000000\n");
    write(root / "cgroup/test.slice/memory.current", "100000000\n");
    limit = available_memory(proc, cgroup);
    CHECK(limit->bytes == 500000000);
    CHECK(limit->source == "cgroup /test.slice memory.max");
    write(root / "cgroup/test.slice/memory.max", "max\n");
    CHECK(available_memory(proc, cgroup)->bytes == 1000000000);
    // A cgroup already over its limit leaves nothing.
    write(root / "cgroup/test.slice/woolly.service/memory.current", "2000000000\n");
    CHECK(available_memory(proc, cgroup)->bytes == 0);
    fs::remove_all(root);
}

TEST_CASE("load_model refuses a model that does not fit, before building anything") {
    LoadOptions options = with_budget(uint64_t(1) << 30, true);
    options.limit = MemoryLimit{1 << 20, "WOOLLY_MEMORY_LIMIT"};
    CHECK_THROWS_WITH_AS(load_model(synth_q4_0(), options),
                         doctest::Contains("is available (WOOLLY_MEMORY_LIMIT)"), Error);
}

TEST_CASE("a refusal suggests a q8_0 KV cache where the heads are whole Q8_0 blocks") {
    const std::string path = test::temp_path("memory-test-tiny-k.gguf");
    SynthOptions options;
    options.shape = "test-tiny-k"; // head_dim 64
    options.type = TensorType::Q8_0;
    write_synthetic_model(options, path);
    const auto model = LlamaModel::load(path);
    MemoryRequest request;
    request.n_ctx = 128;
    request.sessions = 64;
    request.cache_budget = 0;
    const MemoryPlan plan = plan_memory(*model, request);
    const uint64_t limit = plan.total() - plan.kv / 3; // f16's KV does not fit, q8_0's does
    std::string message;
    try {
        fit_memory(*model, request, {limit, "test"}, kCliOptionNames, nullptr);
    } catch (const Error& e) {
        message = e.what();
    }
    INFO(message);
    CHECK(message.find("--cache-type q8_0") != std::string::npos);
    CHECK(message.find("-c ") != std::string::npos);
    CHECK(message.find("sessions") == std::string::npos); // woolly run has no such option
    MemoryRequest q8 = request;
    q8.kv_type = TensorType::Q8_0;
    CHECK(plan_memory(*model, q8).total() <= limit);
    std::filesystem::remove(path);
}
