// loader.h — loading a model to serve it: the memory it will hold, planned from the tensor
// table and checked against what the machine and its cgroup allow before any weight is read;
// then the weight cache built, and the file read into memory (--no-mmap) or locked in RAM
// (--mlock) when asked. Also the accounting of what a running process holds.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "engine/model/context.h"
#include "engine/model/model.h"
#include "engine/quant/tensor_types.h"
#include "engine/model/weight_cache.h"

namespace woolly {

// What a front-end will run the model with.
struct MemoryRequest {
    int64_t n_ctx = 0;    // tokens per session; 0: the model's training context
    int64_t sessions = 1; // KV caches (woollyd: engine.max_sessions)
    TensorType kv_type = TensorType::F16;
    uint64_t cache_budget = kDefaultWeightCacheMiB << 20; // bytes; 0: no weight cache
    int64_t max_batch = kDefaultPromptBatch;
    int threads = 1;       // compute threads of each forward scratch; 0 in a LoadOptions: the
                           // default for the model (default_thread_count)
    int64_t scratches = 1; // forward scratches (woollyd: one per layer executor)
    // A mixture's experts that the weight cache cannot all hold may be streamed: read from the
    // mapped file as routed, their pages given back after each use (not with --no-mmap or
    // --mlock). load_model and fit_memory decide `stream_experts` when this allows it.
    bool may_stream_experts = true;
    bool stream_experts = false;
};

// Bytes the process will hold for a model, by part.
struct MemoryPlan {
    uint64_t file = 0;    // the file's pages still read: all but the rows cached forms replace
    uint64_t cache = 0;   // the weight cache's forms
    uint64_t kv = 0;      // every session's KV cache
    uint64_t scratch = 0; // forward scratches and per-session buffers
    bool experts_streamed = false; // `file` holds one expert in use, not all of them
    uint64_t total() const { return file + cache + kv + scratch; }
};

// Upper bounds from the tensor table and the request; nothing of the weights is read.
MemoryPlan plan_memory(const LlamaModel& model, const MemoryRequest& request);

// How much more memory this process may take, and what says so.
struct MemoryLimit {
    uint64_t bytes = 0;
    std::string source; // "MemAvailable", "cgroup /system.slice/x memory.max", ...
};

// The least of /proc/meminfo's MemAvailable, memory.max minus memory.current of this
// process's cgroup and each one above it (cgroup v2, as systemd's MemoryMax= sets), and
// $WOOLLY_MEMORY_LIMIT (bytes, or with a K/M/G/T suffix: tests simulate a cgroup with it).
// Null when none of them can be read. Throws Error for a malformed $WOOLLY_MEMORY_LIMIT.
// `proc` and `cgroup_root` are where /proc and /sys/fs/cgroup are (tests lay out their own).
std::optional<MemoryLimit> available_memory(const std::string& proc = "/proc",
                                            const std::string& cgroup_root = "/sys/fs/cgroup");

// The names a front-end gives the options a refusal suggests (null: the front-end has none).
struct OptionNames {
    const char* context;  // "-c" or "engine.context"
    const char* sessions; // null or "engine.max_sessions"
    const char* kv_type;  // "--cache-type" or "engine.kv_cache_type"
    const char* cache;    // "--weight-cache" or "engine.weight_cache_mib"
};
extern const OptionNames kCliOptionNames;

// The request as it fits `limit`: unchanged when the plan fits; with the experts streamed
// when that fits, and/or a smaller weight-cache budget when only the cache does not (`*note`
// then says so in one line); otherwise throws Error with one line saying what is needed, what
// is available and what would fit instead.
MemoryRequest fit_memory(const LlamaModel& model, MemoryRequest request, const MemoryLimit& limit,
                         const OptionNames& names, std::string* note);

struct LoadOptions {
    MemoryRequest memory;
    bool mmap = true;   // false: read the file into memory (--no-mmap)
    bool mlock = false; // lock the weights and the cache in RAM (--mlock)
    OptionNames names = kCliOptionNames;
    // The limit to fit into; unset: available_memory() (a check skipped if that is unknown).
    std::optional<MemoryLimit> limit;
    // Hears the fraction of the weight cache built, as it goes (may be empty).
    std::function<void(double)> progress;
};

struct LoadedModel {
    std::unique_ptr<LlamaModel> model;
    std::unique_ptr<WeightCache> cache; // null when the budget is 0
    MemoryRequest memory;               // as fitted
    MemoryPlan plan;                    // of `memory`
    std::optional<MemoryLimit> limit;   // what it was checked against
    std::string note;                   // what fitting changed, or empty
    double load_ms = 0;
};

// Opens, plans, checks, builds: see the top of this file. The weight cache is built on a pool
// of the physical cores, gone when this returns. Throws Error when the model cannot be loaded
// or does not fit.
LoadedModel load_model(const std::string& path, const LoadOptions& options);

// What a process holds now, by part, for `woolly run --verbose`, `bench` and woollyd's status.
struct MemoryUsage {
    uint64_t file_resident = 0; // the model file's pages in this process's memory
    uint64_t cache = 0;
    uint64_t kv = 0;
    uint64_t scratch = 0;
    uint64_t rss = 0;      // the whole process
    uint64_t peak_rss = 0; // since it started
};
MemoryUsage memory_usage(const LlamaModel& model, const WeightCache* cache, uint64_t kv_bytes,
                         uint64_t scratch_bytes);
// "file 12.3 MiB, weight cache ..., KV ..., scratch ...; RSS ... (peak ...)".
std::string describe(const MemoryUsage& usage);
std::string describe(const MemoryPlan& plan);
std::string describe_bytes(uint64_t bytes); // "123.4 MiB"
// Peak resident set of this process since it started or since reset_peak_rss(), bytes
// (/proc/self/status' VmHWM).
uint64_t peak_rss_bytes();
// Starts the peak over from the present resident set (/proc/self/clear_refs); false when the
// kernel does not allow it.
bool reset_peak_rss();

} // namespace woolly
