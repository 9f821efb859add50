// weight_cache.cpp — LRU bookkeeping around repack_x16.
#include "weight_cache.h"

#include <sys/mman.h>

#include <cstdlib>
#include <new>

#include "kernels.h"
#include "repack.h"
#include "thread_pool.h"

namespace woolly {
namespace {

constexpr size_t kHugePage = size_t(2) << 20;

// A buffer on 2 MiB boundaries, offered to the kernel for transparent huge pages: the
// kernels stream through it once per token, and huge pages spare them a TLB miss every 4 KiB.
uint8_t* allocate_huge(uint64_t bytes) {
    const size_t rounded = (size_t(bytes) + kHugePage - 1) / kHugePage * kHugePage;
    void* p = std::aligned_alloc(kHugePage, rounded);
    if (!p) throw std::bad_alloc();
#if defined(MADV_HUGEPAGE)
    madvise(p, rounded, MADV_HUGEPAGE); // advice only: without THP it is plain memory
#endif
    return static_cast<uint8_t*>(p);
}

} // namespace

void WeightCache::FreeBuffer::operator()(uint8_t* p) const {
    std::free(p);
}

const uint8_t* WeightCache::find_or_build(const WeightMatrix& w, ThreadPool* pool) {
    if (!has_x16_layout(w.traits->type)) return nullptr;
    const uint64_t bytes = x16_bytes(w);
    if (bytes == 0) return nullptr;
    std::lock_guard<std::mutex> lock(mutex_);
    if (auto it = index_.find(w.data); it != index_.end()) {
        ++stats_.hits;
        lru_.splice(lru_.begin(), lru_, it->second);
        return it->second->data.get();
    }
    ++stats_.misses;
    const bool fits_free = stats_.bytes + bytes <= budget_;
    if (bytes > budget_ || (!fits_free && evicted_.count(w.data))) {
        ++stats_.bypasses;
        return nullptr;
    }
    while (stats_.bytes + bytes > budget_) evict_lru();
    // Built under the lock: the first user of a matrix builds it once, the others wait.
    Entry entry{w.data, bytes, std::unique_ptr<uint8_t, FreeBuffer>(allocate_huge(bytes))};
    uint8_t* const form = entry.data.get();
    const int64_t groups = w.rows / kRepackRows;
    auto part = [&](int index, int n_threads) {
        repack_x16(w, form, groups * index / n_threads, groups * (index + 1) / n_threads);
    };
    run_split(pool, part);
    lru_.push_front(std::move(entry));
    index_.emplace(w.data, lru_.begin());
    evicted_.erase(w.data);
    stats_.bytes += bytes;
    return lru_.front().data.get();
}

void WeightCache::evict_lru() {
    Entry& victim = lru_.back();
    stats_.bytes -= victim.bytes;
    ++stats_.evictions;
    evicted_.insert(victim.key);
    index_.erase(victim.key);
    lru_.pop_back();
}

void WeightCache::warm(const LlamaModel& model, ThreadPool* pool) {
    auto build = [&](const WeightMatrix& w) {
        if (active_kernels().x16(w.traits->type)) find_or_build(w, pool);
    };
    for (const LlamaLayer& layer : model.layers)
        for (const WeightMatrix* w : {&layer.wq, &layer.wk, &layer.wv, &layer.wo, &layer.w_gate,
                                      &layer.w_up, &layer.w_down})
            build(*w);
    build(model.output);
}

WeightCacheStats WeightCache::stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    WeightCacheStats s = stats_;
    s.budget = budget_;
    s.entries = lru_.size();
    return s;
}

} // namespace woolly
