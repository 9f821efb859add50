// weight_cache.h — the LRU cache of derived weight layouts (the x16 repacks of repack.h),
// bounded by a byte budget, shared by every thread that runs the model.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

#include "model.h"

namespace woolly {

class ThreadPool;

// Enough for a 7B Q4_0 model's repacked matrices; the repacks take the place of the file's
// pages in memory, which are no longer read.
constexpr uint64_t kDefaultWeightCacheMiB = 4096;

struct WeightCacheStats {
    uint64_t hits = 0;
    uint64_t misses = 0;    // lookups that found nothing (built, or served from the file)
    uint64_t evictions = 0; // entries dropped to make room
    uint64_t bypasses = 0;  // misses served from the file to avoid thrashing (see find_or_build)
    uint64_t bytes = 0;     // held now
    uint64_t budget = 0;
    uint64_t entries = 0;
};

class WeightCache {
public:
    explicit WeightCache(uint64_t budget_bytes) : budget_(budget_bytes) {}

    // The x16 form of w, built on first use; null when w has no x16 layout or the budget will
    // not hold it, and the caller reads the file's layout instead. A miss evicts least recently
    // used entries to make room, except for a matrix that was itself evicted before: that one
    // is served from the file from then on, unless it fits in free space. With a budget too
    // small for the model, that keeps a fixed part cached instead of rebuilding every matrix
    // on every token (plain LRU under the forward pass's cyclic order would never hit).
    // Thread-safe; a hit allocates nothing.
    // A build is split over `pool`'s threads when given.
    const uint8_t* find_or_build(const WeightMatrix& w, ThreadPool* pool = nullptr);

    // Builds the x16 forms the active kernels read for every matrix of `model`, in the order
    // of the forward pass, as far as the budget goes (a daemon's first request then pays
    // nothing).
    void warm(const LlamaModel& model, ThreadPool* pool = nullptr);

    WeightCacheStats stats() const;
    uint64_t budget() const { return budget_; }

private:
    struct FreeBuffer {
        void operator()(uint8_t* p) const;
    };
    struct Entry {
        const uint8_t* key;
        uint64_t bytes;
        std::unique_ptr<uint8_t, FreeBuffer> data;
    };
    void evict_lru();

    const uint64_t budget_;
    mutable std::mutex mutex_;
    std::list<Entry> lru_; // most recently used first
    std::unordered_map<const uint8_t*, std::list<Entry>::iterator> index_;
    std::unordered_set<const uint8_t*> evicted_;
    WeightCacheStats stats_;
};

} // namespace woolly
