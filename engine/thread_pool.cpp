// thread_pool.cpp — workers spin briefly for the next job (jobs come back to back during a
// forward pass), then sleep on a condition variable.
#include "thread_pool.h"

#include <chrono>

namespace woolly {

ThreadPool::ThreadPool(int n_threads) {
    for (int i = 1; i < n_threads; ++i) workers_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stopping_ = true;
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
    {
        std::lock_guard<std::mutex> lock(mutex_);
        job_ = job;
        context_ = context;
        pending_ = int(workers_.size());
        generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    job(context, 0, size());
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return pending_ == 0; });
}

void ThreadPool::worker(int index) {
    uint64_t seen = 0;
    while (true) {
        // Spin for up to ~50 µs: during a forward pass the next matmul follows at once.
        const auto spin_until = std::chrono::steady_clock::now() + std::chrono::microseconds(50);
        while (generation_.load(std::memory_order_acquire) == seen &&
               std::chrono::steady_clock::now() < spin_until) {
        }
        Job job;
        void* context;
        {
            std::unique_lock<std::mutex> lock(mutex_);
            wake_.wait(lock, [&] { return generation_.load() != seen; });
            seen = generation_.load();
            if (stopping_) return;
            job = job_;
            context = context_;
        }
        job(context, index, size());
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (--pending_ == 0) done_.notify_one();
        }
    }
}

} // namespace woolly
