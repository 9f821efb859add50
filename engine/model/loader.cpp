// loader.cpp — memory plans, the machine's and cgroup's limits, fitting, and loading.
#include "engine/model/loader.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "engine/error.h"
#include "engine/quant/repack.h"
#include "engine/runtime/thread_pool.h"

namespace woolly {
namespace {

constexpr uint64_t kMiB = uint64_t(1) << 20;

uint64_t add_sat(uint64_t a, uint64_t b) {
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

uint64_t mul_sat(uint64_t a, uint64_t b) {
    uint64_t out = 0;
    return __builtin_mul_overflow(a, b, &out) ? UINT64_MAX : out;
}

std::string mib(uint64_t bytes) {
    char text[32];
    std::snprintf(text, sizeof text, "%.1f MiB", double(bytes) / double(kMiB));
    return text;
}

// "123", "4096K", "512M", "2G", "1T" (powers of 1024, an optional "iB"/"B") -> bytes.
std::optional<uint64_t> parse_size(const std::string& text) {
    size_t used = 0;
    unsigned long long value = 0;
    try {
        if (text.empty() || text[0] == '-' || text[0] == '+') return std::nullopt;
        value = std::stoull(text, &used, 10);
    } catch (const std::exception&) {
        return std::nullopt;
    }
    std::string suffix = text.substr(used);
    for (const char* unit : {"iB", "B"})
        if (suffix.size() > 1 && suffix.size() >= std::string(unit).size() &&
            suffix.compare(suffix.size() - std::string(unit).size(), std::string::npos, unit) ==
                0) {
            suffix.resize(suffix.size() - std::string(unit).size());
            break;
        }
    int shift = 0;
    if (suffix == "K" || suffix == "k")
        shift = 10;
    else if (suffix == "M")
        shift = 20;
    else if (suffix == "G")
        shift = 30;
    else if (suffix == "T")
        shift = 40;
    else if (!suffix.empty())
        return std::nullopt;
    if (value > (UINT64_MAX >> shift)) return std::nullopt;
    return uint64_t(value) << shift;
}

// A single number from a file such as memory.max ("max" -> null).
std::optional<uint64_t> read_number(const std::string& path) {
    std::ifstream in(path);
    std::string text;
    if (!(in >> text) || text == "max") return std::nullopt;
    return parse_size(text);
}

void take_least(std::optional<MemoryLimit>& best, uint64_t bytes, std::string source) {
    if (!best || bytes < best->bytes) best = MemoryLimit{bytes, std::move(source)};
}

} // namespace

const OptionNames kCliOptionNames = {"-c", nullptr, "--cache-type", "--weight-cache"};

namespace {

// Bytes of the x16 forms the forward pass reads, and of the file rows they serve in every read
// (the weight cache's rules: reads_x16, and the embedding table stays with the file).
struct Forms {
    uint64_t bytes = 0;
    uint64_t replaced = 0;
};
Forms forms_of(const LlamaModel& model) {
    Forms f;
    model.for_each_matrix([&](const WeightMatrix& w, bool batched) {
        if (!WeightCache::reads_x16(w, batched)) return;
        f.bytes += x16_bytes(w);
        if (x16_serves_generation(w.traits->type) && w.data != model.token_embd.data)
            f.replaced += uint64_t(w.rows / kRepackRows * kRepackRows) * w.row_bytes;
    });
    return f;
}

// Whether a mixture's experts are among the forms the weight cache reads that its budget cannot
// all hold (the experts are then streamed, when the request allows it).
bool experts_outgrow_cache(const LlamaModel& model, const MemoryRequest& r) {
    return model.expert_bytes() > 0 && forms_of(model).bytes > r.cache_budget;
}

} // namespace

MemoryPlan plan_memory(const LlamaModel& model, const MemoryRequest& r) {
    const LlamaHyperParams& hp = model.hparams();
    const int64_t n_ctx = r.n_ctx > 0 ? r.n_ctx : hp.n_ctx_train;
    MemoryPlan plan;
    plan.kv = mul_sat(uint64_t(r.sessions),
                      KvCache::bytes_for(hp.n_layer, n_ctx, hp.n_head_kv, hp.head_dim, r.kv_type,
                                         hp.kv_windows(), r.max_batch));
    plan.scratch =
        add_sat(mul_sat(uint64_t(r.scratches),
                        ForwardScratch::bytes_for(model, n_ctx, r.threads, r.max_batch)),
                mul_sat(uint64_t(r.sessions), LlamaContext::buffer_bytes_for(model, r.max_batch)));
    const Forms forms = r.cache_budget > 0 ? forms_of(model) : Forms{};
    const uint64_t file = model.gguf().size();
    uint64_t largest = 0;
    const uint64_t experts = model.expert_bytes(&largest);
    if (r.stream_experts && experts > 0) { // the file but the experts, and two in use (pages
        plan.experts_streamed = true;      // round outwards)
        plan.cache = std::min(forms.bytes, r.cache_budget);
        plan.file = file - std::min(file, experts) + 2 * largest;
    } else if (forms.bytes <= r.cache_budget) {
        plan.cache = forms.bytes;
        plan.file = file - std::min(file, forms.replaced);
    } else { // a partial cache: any matrix may be read from the file
        plan.cache = r.cache_budget;
        plan.file = file;
    }
    return plan;
}

std::optional<MemoryLimit> available_memory(const std::string& proc,
                                            const std::string& cgroup_root) {
    std::optional<MemoryLimit> best;
    if (const char* env = std::getenv("WOOLLY_MEMORY_LIMIT"); env && *env) {
        const auto bytes = parse_size(env);
        if (!bytes)
            throw Error(std::string("WOOLLY_MEMORY_LIMIT is '") + env +
                        "' (expected bytes, or a number with K, M, G or T)");
        take_least(best, *bytes, "WOOLLY_MEMORY_LIMIT");
    }
    {
        std::ifstream meminfo(proc + "/meminfo");
        std::string key;
        uint64_t kib = 0;
        std::string unit;
        while (meminfo >> key >> kib) {
            std::getline(meminfo, unit);
            if (key == "MemAvailable:") {
                take_least(best, kib << 10, "MemAvailable");
                break;
            }
        }
    }
    // cgroup v2: "0::/path"; every cgroup from ours up to the root may set memory.max.
    std::ifstream cgroup(proc + "/self/cgroup");
    std::string line;
    while (std::getline(cgroup, line)) {
        if (line.rfind("0::", 0) != 0) continue;
        std::string path = line.substr(3);
        while (!path.empty() && path != "/") {
            const std::string dir = cgroup_root + path;
            const auto max = read_number(dir + "/memory.max");
            if (max) {
                const uint64_t current = read_number(dir + "/memory.current").value_or(0);
                take_least(best, *max > current ? *max - current : 0,
                           "cgroup " + path + " memory.max");
            }
            path = path.substr(0, path.rfind('/'));
        }
    }
    return best;
}

MemoryRequest fit_memory(const LlamaModel& model, MemoryRequest request, const MemoryLimit& limit,
                         const OptionNames& names, std::string* note) {
    MemoryPlan plan = plan_memory(model, request);
    if (plan.total() <= limit.bytes) return request;
    // A mixture's experts need not all be in memory: streamed, the most used stay cached.
    std::string streamed;
    const uint64_t experts = model.expert_bytes();
    if (request.may_stream_experts && !request.stream_experts && experts > 0) {
        request.stream_experts = true;
        streamed = "the experts (" + mib(experts) + " in the file) do not all fit in the " +
                   mib(limit.bytes) + " available (" + limit.source +
                   "): the weight cache keeps the most used, the rest are read from the file as "
                   "routed";
        plan = plan_memory(model, request);
        if (plan.total() <= limit.bytes) {
            if (note) *note = streamed;
            return request;
        }
    }
    // Without the cache the whole file is read (but streamed experts); a cache fits in what
    // that leaves.
    auto without_cache = [&](MemoryRequest r) {
        r.cache_budget = 0;
        return plan_memory(model, r).total();
    };
    const uint64_t base = without_cache(request);
    if (request.cache_budget > 0 && base <= limit.bytes) {
        const uint64_t budget = (limit.bytes - base) / kMiB * kMiB;
        if (note) {
            *note = (streamed.empty() ? "" : streamed + "; ") + "weight cache shrunk from " +
                    mib(request.cache_budget) + " to " + mib(budget) + " to fit in the " +
                    mib(limit.bytes) + " available (" + limit.source + ")";
        }
        request.cache_budget = budget;
        return request;
    }
    // It does not fit: find what would, each change on its own (the cache shrinking as needed).
    const LlamaHyperParams& hp = model.hparams();
    const int64_t n_ctx = request.n_ctx > 0 ? request.n_ctx : hp.n_ctx_train;
    std::vector<std::string> fits;
    {
        int64_t lo = 0, hi = n_ctx - 1; // the largest context that fits, if any
        while (lo < hi) {
            const int64_t mid = lo + (hi - lo + 1) / 2;
            MemoryRequest r = request;
            r.n_ctx = mid;
            if (without_cache(r) <= limit.bytes)
                lo = mid;
            else
                hi = mid - 1;
        }
        if (lo >= 256) lo = lo / 256 * 256;
        if (lo > 0) fits.push_back(std::string(names.context) + " " + std::to_string(lo));
    }
    if (names.sessions && request.sessions > 1) {
        int64_t s = request.sessions - 1;
        for (; s > 0; --s) {
            MemoryRequest r = request;
            r.sessions = s;
            if (without_cache(r) <= limit.bytes) break;
        }
        if (s > 0) fits.push_back(std::string(names.sessions) + " " + std::to_string(s));
    }
    if (request.kv_type != TensorType::Q8_0) {
        MemoryRequest r = request;
        r.kv_type = TensorType::Q8_0;
        try {
            if (without_cache(r) <= limit.bytes)
                fits.push_back(std::string(names.kv_type) + " q8_0");
        } catch (const Error&) { // head_dim not whole Q8_0 blocks: not an option
        }
    }
    std::ostringstream out;
    out << model.gguf().name() << " needs about " << mib(plan.total()) << " (weights "
        << mib(plan.file) << ", weight cache " << mib(plan.cache) << ", KV cache " << mib(plan.kv)
        << " for " << request.sessions << " x " << n_ctx << " tokens, scratch " << mib(plan.scratch)
        << ") but " << mib(limit.bytes) << " is available (" << limit.source << "); ";
    if (fits.empty()) {
        MemoryRequest least = request;
        least.n_ctx = 1;
        least.sessions = 1;
        out << "nothing fits: one session of one token needs " << mib(without_cache(least));
    } else {
        out << "would fit: ";
        for (size_t i = 0; i < fits.size(); ++i) out << (i ? ", or " : "") << fits[i];
        if (plan.cache > 0) out << " (with a smaller " << names.cache << ")";
    }
    throw Error(out.str());
}

namespace {

// --mlock: every byte of the file still read, and the cache's forms.
void lock_model(const LlamaModel& model, WeightCache* cache) {
    const GgufFile& file = model.gguf();
    file.lock(file.bytes(), file.data_offset());
    for (const GgufTensorInfo& t : file.tensors()) {
        const uint64_t released = cache ? cache->released_bytes(t.data) : 0;
        if (t.n_bytes > released) file.lock(t.data + released, t.n_bytes - released);
    }
    if (cache) cache->lock_in_ram();
}

} // namespace

LoadedModel load_model(const std::string& path, const LoadOptions& options) {
    const auto start = std::chrono::steady_clock::now();
    std::shared_ptr<GgufFile> file = GgufFile::open(path);
    LoadedModel out;
    out.model = LlamaModel::from_gguf(file); // views of the weights: none read yet
    out.memory = options.memory;
    if (out.memory.threads <= 0)
        out.memory.threads = default_thread_count(out.model->weight_bytes_per_token());
    out.memory.may_stream_experts =
        out.memory.may_stream_experts && options.mmap && !options.mlock;
    if (out.memory.may_stream_experts && experts_outgrow_cache(*out.model, out.memory)) {
        out.memory.stream_experts = true;
        out.note = "the experts' forms do not all fit the weight cache's " +
                   mib(out.memory.cache_budget) +
                   ": the most used are kept, the rest are read from the file as routed";
    }
    out.limit = options.limit ? options.limit : available_memory();
    if (out.limit) {
        std::string fitted;
        out.memory = fit_memory(*out.model, out.memory, *out.limit, options.names, &fitted);
        if (!fitted.empty()) out.note = fitted;
    }
    out.plan = plan_memory(*out.model, out.memory);
    if (!options.mmap) file->read_into_memory();
    if (out.memory.cache_budget > 0 || out.memory.stream_experts) {
        out.cache = std::make_unique<WeightCache>(out.memory.cache_budget, out.model.get());
        out.cache->stream_experts(out.memory.stream_experts);
        ThreadPool builders(physical_core_count());
        out.cache->warm(*out.model, &builders, options.progress);
    }
    if (options.mlock) lock_model(*out.model, out.cache.get());
    out.load_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    return out;
}

uint64_t peak_rss_bytes() {
    std::ifstream status("/proc/self/status");
    std::string key;
    uint64_t kib = 0;
    while (status >> key) {
        if (key == "VmHWM:" && status >> kib) return kib << 10;
        status.ignore(1 << 20, '\n');
    }
    struct rusage usage {}; // no /proc: the peak since the process started
    ::getrusage(RUSAGE_SELF, &usage);
    return uint64_t(usage.ru_maxrss) << 10;
}

bool reset_peak_rss() {
    std::ofstream clear("/proc/self/clear_refs");
    return bool(clear << "5" << std::flush);
}

MemoryUsage memory_usage(const LlamaModel& model, const WeightCache* cache, uint64_t kv_bytes,
                         uint64_t scratch_bytes) {
    MemoryUsage u;
    u.file_resident = model.gguf().resident_bytes();
    u.cache = cache ? cache->stats().bytes : 0;
    u.kv = kv_bytes;
    u.scratch = scratch_bytes;
    std::ifstream statm("/proc/self/statm");
    uint64_t pages = 0, resident = 0;
    if (statm >> pages >> resident) u.rss = resident * uint64_t(sysconf(_SC_PAGESIZE));
    u.peak_rss = peak_rss_bytes();
    return u;
}

std::string describe(const MemoryUsage& u) {
    return "file " + mib(u.file_resident) + ", weight cache " + mib(u.cache) + ", KV " + mib(u.kv) +
           ", scratch " + mib(u.scratch) + "; RSS " + mib(u.rss) + " (peak " + mib(u.peak_rss) +
           ")";
}

std::string describe_bytes(uint64_t bytes) {
    return mib(bytes);
}

std::string describe(const MemoryPlan& p) {
    return mib(p.total()) + " (file " + mib(p.file) +
           (p.experts_streamed ? " with the experts streamed" : "") + ", weight cache " +
           mib(p.cache) + ", KV " + mib(p.kv) + ", scratch " + mib(p.scratch) + ")";
}

} // namespace woolly
