// thread_pool.cpp — workers spin for the next job (jobs come back to back during a forward
// pass) and sleep on a condition variable only after a quiet spell; no lock on the hot path.
#include "engine/runtime/thread_pool.h"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <set>
#include <string>
#include <utility>

#if defined(__linux__)
#include <sched.h>
#endif

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace woolly {
namespace {

inline void cpu_relax() {
#if defined(__x86_64__)
    _mm_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

// How long a worker spins for the next job before it sleeps.
constexpr auto kSpin = std::chrono::microseconds(200);

} // namespace

int physical_core_count() {
#if defined(__linux__)
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof allowed, &allowed) == 0) {
        std::set<std::pair<int, int>> cores; // (package, core)
        for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
            if (!CPU_ISSET(cpu, &allowed)) continue;
            const std::string dir =
                "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
            std::ifstream package(dir + "physical_package_id"), core(dir + "core_id");
            int p = 0, c = cpu; // without topology files: each CPU its own core
            if (package && core && (package >> p) && (core >> c))
                cores.insert({p, c});
            else
                cores.insert({-1, cpu});
        }
        if (!cores.empty()) return int(cores.size());
    }
#endif
    return std::max(1u, std::thread::hardware_concurrency());
}

int default_thread_count(uint64_t weight_bytes) {
    return weight_bytes < (uint64_t(32) << 20) ? 1 : physical_core_count();
}

ThreadPool::ThreadPool(int n_threads) {
    for (int i = 1; i < n_threads; ++i) workers_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
    stopping_.store(true);
    {
        std::lock_guard<std::mutex> lock(mutex_);
        generation_.fetch_add(1);
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
}

void ThreadPool::run(Job job, void* context) {
    if (workers_.empty()) {
        job(context, 0, 1);
        return;
    }
    job_.store(job, std::memory_order_relaxed);
    context_.store(context, std::memory_order_relaxed);
    pending_.store(int(workers_.size()), std::memory_order_relaxed);
    generation_.fetch_add(1); // seq_cst: ordered against the sleepers_ check below
    if (sleepers_.load() > 0) {
        // A worker that counted itself a sleeper either sees the new generation before it
        // waits, or is waiting under the mutex and gets this notification.
        { std::lock_guard<std::mutex> lock(mutex_); }
        wake_.notify_all();
    }
    job(context, 0, size());
    while (pending_.load(std::memory_order_acquire) != 0) cpu_relax();
}

void ThreadPool::worker(int index) {
    uint64_t seen = 0;
    while (true) {
        // Spin (checking the clock every 256 polls), then sleep.
        auto spin_until = std::chrono::steady_clock::now() + kSpin;
        uint32_t polls = 0;
        while (generation_.load(std::memory_order_acquire) == seen) {
            cpu_relax();
            if (++polls % 256 == 0 && std::chrono::steady_clock::now() > spin_until) {
                std::unique_lock<std::mutex> lock(mutex_);
                sleepers_.fetch_add(1); // seq_cst: before the generation check of wait()
                wake_.wait(lock, [&] { return generation_.load() != seen; });
                sleepers_.fetch_sub(1);
                spin_until = std::chrono::steady_clock::now() + kSpin;
            }
        }
        seen = generation_.load(std::memory_order_acquire);
        if (stopping_.load()) return;
        const Job job = job_.load(std::memory_order_relaxed);
        void* context = context_.load(std::memory_order_relaxed);
        job(context, index, size());
        pending_.fetch_sub(1, std::memory_order_release);
    }
}

} // namespace woolly
