// weight_cache.cpp — LRU bookkeeping around repack_x16, and the file pages a form replaces.
#include "engine/model/weight_cache.h"

#include <unistd.h>

#include <algorithm>

#include "engine/kernels/kernels.h"
#include "engine/runtime/pages.h"
#include "engine/quant/repack.h"
#include "engine/runtime/thread_pool.h"

namespace woolly {

WeightCache::~WeightCache() {
    for (Entry& entry : lru_) free_form(entry);
}

bool WeightCache::reads_x16(const WeightMatrix& w, bool batched) {
    const TensorType type = w.traits->type;
    return has_x16_layout(type) && active_kernels().x16(type) &&
           (batched || x16_serves_generation(type));
}

const uint8_t* WeightCache::find_or_build(const WeightMatrix& w, ThreadPool* pool) {
    if (!has_x16_layout(w.traits->type)) return nullptr;
    const uint64_t bytes = x16_bytes(w);
    if (bytes == 0) return nullptr;
    std::lock_guard<std::mutex> lock(mutex_);
    if (auto it = index_.find(w.data); it != index_.end()) {
        ++stats_.hits;
        lru_.splice(lru_.begin(), lru_, it->second);
        return it->second->data;
    }
    ++stats_.misses;
    const bool fits_free = stats_.bytes + bytes <= budget_;
    if (bytes > budget_ || (!fits_free && evicted_.count(w.data))) {
        ++stats_.bypasses;
        return nullptr;
    }
    while (stats_.bytes + bytes > budget_) evict_lru();
    if (!arena_) { // the budget, the pieces' page rounding, and never more than the machine has
        const uint64_t ram = uint64_t(sysconf(_SC_PHYS_PAGES)) * uint64_t(sysconf(_SC_PAGESIZE));
        arena_ = std::make_unique<PageArena>(std::min(budget_ + budget_ / 64 + (4 << 20), ram));
    }
    uint8_t* data = arena_->take(bytes);
    while (!data && !lru_.empty()) { // the free space is in pieces: make a run long enough
        evict_lru();
        data = arena_->take(bytes);
    }
    if (!data) {
        ++stats_.bypasses;
        return nullptr;
    }
    // Built under the lock: the first user of a matrix builds it once, the others wait.
    const int64_t groups = w.rows / kRepackRows;
    Entry entry{w.data, uint64_t(groups * kRepackRows) * w.row_bytes, bytes, data, false};
    auto part = [&](int index, int n_threads) {
        repack_x16(w, entry.data, groups * index / n_threads, groups * (index + 1) / n_threads);
    };
    try {
        run_split(pool, part);
        if (locked_) woolly::lock_in_ram(entry.data, bytes, "the weight cache's form of " + w.name);
    } catch (...) {
        arena_->give_back(entry.data, entry.bytes);
        throw;
    }
    // Every read of these rows now goes to the form: their file pages can leave memory.
    if (source_ && x16_serves_generation(w.traits->type) && w.data != embeddings_) {
        if (locked_) source_->unlock(entry.key, entry.file_bytes);
        source_->release(entry.key, entry.file_bytes);
        entry.released = true;
        stats_.released += entry.file_bytes;
    }
    lru_.push_front(entry);
    index_.emplace(w.data, lru_.begin());
    evicted_.erase(w.data);
    stats_.bytes += bytes;
    return entry.data;
}

void WeightCache::free_form(Entry& entry) {
    if (locked_) unlock_inner(entry.data, entry.bytes);
    arena_->give_back(entry.data, entry.bytes);
}

void WeightCache::evict_lru() {
    Entry& victim = lru_.back();
    stats_.bytes -= victim.bytes;
    ++stats_.evictions;
    evicted_.insert(victim.key);
    index_.erase(victim.key);
    free_form(victim);
    if (victim.released) { // the file serves this matrix again
        source_->restore(victim.key, victim.file_bytes);
        if (locked_) source_->lock(victim.key, victim.file_bytes);
        stats_.released -= victim.file_bytes;
    }
    lru_.pop_back();
}

void WeightCache::warm(const LlamaModel& model, ThreadPool* pool,
                       const std::function<void(double)>& progress) {
    uint64_t total = 0, done = 0;
    model.for_each_matrix([&](const WeightMatrix& w, bool batched) {
        if (reads_x16(w, batched)) total += w.bytes();
    });
    model.for_each_matrix([&](const WeightMatrix& w, bool batched) {
        if (!reads_x16(w, batched)) return;
        find_or_build(w, pool);
        done += w.bytes();
        if (progress) progress(double(done) / double(total));
    });
}

void WeightCache::lock_in_ram() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const Entry& entry : lru_)
        woolly::lock_in_ram(entry.data, entry.bytes, "the weight cache");
    locked_ = true;
}

uint64_t WeightCache::released_bytes(const uint8_t* data) const {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = index_.find(data);
    return it != index_.end() && it->second->released ? it->second->file_bytes : 0;
}

WeightCacheStats WeightCache::stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    WeightCacheStats s = stats_;
    s.budget = budget_;
    s.entries = lru_.size();
    return s;
}

} // namespace woolly
