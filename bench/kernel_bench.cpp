// kernel_bench.cpp — microbenchmarks of the engine's kernels, through the same entry points the
// forward pass uses: GEMV (one token) as GB/s of weights per type against the machine's read
// bandwidth measured in the same run, GEMM (a prompt batch) as GFLOP/s, RMSNorm as elements/s.
//
// usage: woolly_kernel_bench [-t THREADS] [--rows R] [--cols C] [--batch B] [--json]
// $WOOLLY_KERNELS forces a kernel level, as everywhere.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "engine/runtime/bandwidth.h"
#include "engine/model/context.h"
#include "engine/kernels/kernels.h"
#include "engine/model/matmul.h"
#include "engine/kernels/ops.h"
#include "engine/quant/repack.h"
#include "engine/runtime/thread_pool.h"
#include "engine/model/weight_cache.h"

using namespace woolly;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

// Runs f repeatedly for at least `min_seconds` (after a warm-up of `warm_up` calls); seconds
// per call.
template <typename F> double time_per_call(F&& f, int warm_up = 64, double min_seconds = 0.5) {
    for (int i = 0; i < warm_up; ++i) f();
    int64_t calls = 0;
    const auto start = Clock::now();
    do {
        f();
        ++calls;
    } while (seconds_since(start) < min_seconds);
    return seconds_since(start) / double(calls);
}

int64_t flag(int argc, char** argv, const char* name, int64_t fallback) {
    for (int i = 1; i + 1 < argc; ++i)
        if (std::strcmp(argv[i], name) == 0) {
            char* end = nullptr;
            const long long v = std::strtoll(argv[i + 1], &end, 10);
            if (!end || *end || v < 1 || v > (1 << 20)) {
                std::fprintf(stderr, "%s: expected a count from 1 to 1048576, got '%s'\n", name,
                             argv[i + 1]);
                std::exit(2);
            }
            return v;
        }
    return fallback;
}

} // namespace

int main(int argc, char** argv) {
    bool json = false;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--json") == 0) json = true;
        if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
            std::puts("usage: woolly_kernel_bench [-t THREADS] [--rows R] [--cols C] [--batch B] "
                      "[--json]");
            return 0;
        }
    }
    const int threads = int(flag(argc, argv, "-t", 1));
    const int64_t rows = flag(argc, argv, "--rows", 4096);
    const int64_t cols = flag(argc, argv, "--cols", 4096) / 256 * 256; // whole k-quant blocks
    const int64_t batch = flag(argc, argv, "--batch", kDefaultPromptBatch);
    if (cols < 256) {
        std::fprintf(stderr, "--cols: at least 256\n");
        return 2;
    }
    ThreadPool pool(threads);
    const double bandwidth = measure_read_bandwidth(pool);
    const char* level = kernel_level_name(active_kernels().level);
    if (!json) {
        std::printf("kernels %s, %d threads, %lld x %lld weights, prompt batch %lld; read "
                    "bandwidth %.1f GB/s\n",
                    level, threads, (long long)rows, (long long)cols, (long long)batch, bandwidth);
        std::printf("| weights          | GEMV GB/s | of bandwidth | GEMM GFLOP/s |\n");
        std::printf("| ---------------- | --------- | ------------ | ------------ |\n");
    }

    std::mt19937 rng(7);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> x(size_t(batch * cols));
    for (auto& v : x) v = normal(rng);
    std::vector<float> y(size_t(batch * rows));
    MatmulInput input(cols, batch);

    struct Case {
        TensorType type;
        bool repacked; // through the weight cache's x16 layout
    };
    for (const Case c : {Case{TensorType::F16, false}, Case{TensorType::BF16, false},
                         Case{TensorType::Q8_0, false}, Case{TensorType::Q8_0, true},
                         Case{TensorType::Q4_0, false}, Case{TensorType::Q4_0, true},
                         Case{TensorType::Q4_K, false}, Case{TensorType::Q4_K, true},
                         Case{TensorType::Q6_K, false}, Case{TensorType::Q6_K, true}}) {
        const TypeTraits& t = type_traits(c.type);
        if (c.repacked && !active_kernels().x16(c.type)) continue;
        WeightMatrix w;
        w.name = t.name;
        w.traits = &t;
        w.rows = rows;
        w.cols = cols;
        w.row_bytes = *row_bytes(t, uint64_t(cols));
        std::vector<uint8_t> data(size_t(w.bytes()));
        std::vector<float> row(static_cast<size_t>(cols));
        for (int64_t r = 0; r < rows; ++r) {
            for (auto& v : row) v = normal(rng) * 0.02f;
            t.quantize_row(row.data(), data.data() + uint64_t(r) * w.row_bytes, cols);
        }
        // GEMV cycles through copies of the matrix, 512 MiB in all, so that the weights come
        // from memory as in a model, not from the last-level cache.
        const uint64_t copies = std::max<uint64_t>(1, (uint64_t(512) << 20) / w.bytes());
        std::vector<uint8_t> all(size_t(copies * w.bytes()));
        for (uint64_t k = 0; k < copies; ++k)
            std::memcpy(all.data() + k * w.bytes(), data.data(), size_t(w.bytes()));
        std::vector<WeightMatrix> matrices(size_t(copies), w);
        for (uint64_t k = 0; k < copies; ++k) matrices[size_t(k)].data = all.data() + k * w.bytes();
        WeightCache cache(c.repacked ? copies * x16_bytes(w) : 0); // room for every copy
        WeightCache* cache_ptr = c.repacked ? &cache : nullptr;
        size_t next = 0;
        const double gemv = time_per_call([&] {
            input.set(x.data(), cols, 1); // a new vector each token: its conversion is timed
            matmul(matrices[next], input, y.data(), &pool, cache_ptr);
            next = (next + 1) % matrices.size();
        });
        w.data = all.data();
        const double gemm = time_per_call([&] {
            input.set(x.data(), cols, batch);
            matmul(matrices[0], input, y.data(), &pool, cache_ptr);
        });
        const double gbs = double(w.bytes()) / gemv / 1e9;
        const double gflops = 2.0 * double(rows) * double(cols) * double(batch) / gemm / 1e9;
        // (Q6_K's x16 form serves prompts only: its GEMV reads the file's rows.)
        const std::string name =
            std::string(t.name) + (!c.repacked                     ? ""
                                   : x16_serves_generation(c.type) ? " (x16)"
                                                                   : " (x16 GEMM)");
        if (json)
            std::printf(
                "{\"bench\":\"matmul\",\"weights\":\"%s\",\"kernels\":\"%s\",\"threads\":%d,"
                "\"gemv_gb_per_second\":%.3f,\"bandwidth_gb_per_second\":%.3f,"
                "\"gemv_roofline_fraction\":%.4f,\"gemm_gflops\":%.3f,\"batch\":%lld}\n",
                name.c_str(), level, threads, gbs, bandwidth, gbs / bandwidth, gflops,
                (long long)batch);
        else
            std::printf("| %-16s | %9.2f | %11.1f%% | %12.1f |\n", name.c_str(), gbs,
                        100.0 * gbs / bandwidth, gflops);
        std::fflush(stdout);
    }

    // RMSNorm over rows of the model width (one thread: it is not split).
    const int64_t n = cols;
    std::vector<float> weight(static_cast<size_t>(n), 1.0f), out(static_cast<size_t>(n));
    const double norm =
        time_per_call([&] { rmsnorm(out.data(), x.data(), weight.data(), n, 1e-5f); });
    if (json)
        std::printf("{\"bench\":\"rmsnorm\",\"n\":%lld,\"elements_per_second\":%.0f}\n",
                    (long long)n, double(n) / norm);
    else
        std::printf("RMSNorm, n = %lld: %.2f G elements/s\n", (long long)n, double(n) / norm / 1e9);
    return 0;
}
