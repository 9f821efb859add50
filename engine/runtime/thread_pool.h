// thread_pool.h — a persistent pool of compute threads that split one job at a time
// (the rows of a matmul). Passed explicitly to whoever computes; no global pool.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace woolly {

// Physical cores this process may run on (hyper-threads of one core count once): the default
// thread count, since matmuls are bound by memory and by each core's vector units. At least 1.
int physical_core_count();
// Threads for a model that reads `weight_bytes` per token: the physical cores, or 1 when the
// weights are under 32 MiB and a hand-off to other threads costs more than it saves
// (stories260K tg128: 15.7K t/s on 1 thread, 11.8K on 2).
int default_thread_count(uint64_t weight_bytes);

class ThreadPool {
public:
    // n_threads in all, the calling thread included: n_threads - 1 workers are started.
    explicit ThreadPool(int n_threads);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return int(workers_.size()) + 1; }

    // Calls job(context, i, n) for i = 0..n-1, one per thread (the caller runs i = 0), and
    // returns when all are done. Allocates nothing.
    using Job = void (*)(void* context, int index, int count);
    void run(Job job, void* context);

    // Convenience for a callable: f(index, count).
    template <typename F> void run(F& f) {
        run([](void* c, int i, int n) { (*static_cast<F*>(c))(i, n); }, &f);
    }

private:
    void worker(int index);

    std::vector<std::thread> workers_;
    // The job is published by bumping generation_; workers spin on it, and only take the
    // mutex to sleep after a quiet spell. The caller spins on pending_ for the last worker.
    std::mutex mutex_;
    std::condition_variable wake_;
    std::atomic<Job> job_{nullptr};
    std::atomic<void*> context_{nullptr};
    std::atomic<uint64_t> generation_{0}; // bumped once per run()
    std::atomic<int> pending_{0};         // workers still running the current job
    std::atomic<int> sleepers_{0};        // workers asleep on wake_ (or about to be)
    std::atomic<bool> stopping_{false};
};

// f(index, count) split over `pool`'s threads, or f(0, 1) on this thread when there is no
// pool: the one way every step of the forward pass hands out work.
template <typename F> void run_split(ThreadPool* pool, F& f) {
    if (pool)
        pool->run(f); // without workers, run() calls f(0, 1) itself
    else
        f(0, 1);
}

} // namespace woolly
