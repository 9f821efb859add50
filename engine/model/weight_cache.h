// weight_cache.h — the LRU cache of derived weight layouts (the x16 repacks of repack.h),
// bounded by a byte budget, shared by every thread that runs the model. A matrix it serves in
// every case is not kept twice: its file pages leave memory once its form is built. A mixture's
// experts are cached one at a time, the most used kept, and when they do not all fit the rest
// are streamed: read from the file as routed, their pages given back after each use.
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "engine/model/model.h"
#include "engine/runtime/pages.h"

namespace woolly {

class ThreadPool;

// Enough for a 7B Q4_0 model's repacked matrices; the repacks take the place of the file's
// pages in memory, which are no longer read.
constexpr uint64_t kDefaultWeightCacheMiB = 4096;

// Lookups of one layer's expert forms: hits, and misses (built, or read from the file).
struct ExpertLayerStats {
    uint64_t hits = 0;
    uint64_t misses = 0;
};

struct WeightCacheStats {
    uint64_t hits = 0;
    uint64_t misses = 0;    // lookups that found nothing (built, or served from the file)
    uint64_t evictions = 0; // entries dropped to make room
    uint64_t bypasses = 0;  // misses served from the file to avoid thrashing (see find_or_build)
    uint64_t bytes = 0;     // held now
    uint64_t budget = 0;
    uint64_t entries = 0;
    uint64_t released = 0; // bytes of file pages given back because a cached form serves them
    bool experts_streamed = false;               // stream_experts(true) took
    std::vector<ExpertLayerStats> expert_layers; // [n_layer] with experts, else empty
};

class WeightCache {
public:
    // With `model` (may be null), the cache gives back the file pages of the rows a form
    // serves in every read (x16_serves_generation; not the embedding table, which tokens are
    // looked up in), and has them read again when that form is evicted.
    // Each of the model's matrices is known from the start, so a lookup allocates nothing.
    explicit WeightCache(uint64_t budget_bytes, const LlamaModel* model = nullptr);
    ~WeightCache();
    WeightCache(const WeightCache&) = delete;
    WeightCache& operator=(const WeightCache&) = delete;

    // Whether a forward pass reads w's x16 form with the active kernels: `batched` when w
    // multiplies several tokens at once (a layer's matrix during a prompt), not one (logits).
    static bool reads_x16(const WeightMatrix& w, bool batched);

    // The x16 form of w, built on first use; null when w has no x16 layout or the budget will
    // not hold it, and the caller reads the file's layout instead. A miss evicts least recently
    // used entries to make room, except for a matrix that was itself evicted before: that one
    // is served from the file from then on, unless it fits in free space. With a budget too
    // small for the model, that keeps a fixed part cached instead of rebuilding every matrix
    // on every token (plain LRU under the forward pass's cyclic order would never hit).
    // An expert's matrix is admitted instead when it has been used clearly more often than
    // the least used of the experts' forms at the cold end of the list (uses are halved now
    // and then, so the count follows what the router picks lately): the hot experts stay, and
    // an expert only evicts experts, never the matrices every token reads.
    // Thread-safe; a hit allocates nothing.
    // A build is split over `pool`'s threads when given.
    const uint8_t* find_or_build(const WeightMatrix& w, ThreadPool* pool = nullptr);

    // Builds the x16 forms the forward pass reads (reads_x16) for every matrix of `model`, in
    // the forward pass's order, as far as the budget goes (a daemon's first request then pays
    // nothing). `progress` (may be empty) hears the fraction of bytes done after each matrix.
    void warm(const LlamaModel& model, ThreadPool* pool = nullptr,
              const std::function<void(double)>& progress = {});

    // Streaming (set by the loader when the experts' forms do not all fit the budget and the
    // file is mapped): done_with_experts() gives back the file pages of a layer's experts, so
    // the process holds only the experts it keeps plus one layer's in use.
    void stream_experts(bool on) { streaming_ = on && source_ && !source_->in_memory(); }
    bool streams_experts() const { return streaming_; }
    // After a forward pass has run `layer`'s experts: when streaming, the pages of its expert
    // tensors leave memory (a held form's are gone already; the others come back from the
    // file when routed to). Thread-safe.
    void done_with_experts(const LlamaLayer& layer) const;

    // Locks every form held, and every form built from now on, in RAM (--mlock); throws Error
    // naming RLIMIT_MEMLOCK when the limit refuses.
    void lock_in_ram();
    // Bytes of the file at `data` (a matrix's start) whose pages a held form replaced; 0 when
    // none.
    uint64_t released_bytes(const uint8_t* data) const;

    WeightCacheStats stats() const;
    uint64_t budget() const { return budget_; }

private:
    struct Record;
    struct Entry {
        const uint8_t* key;  // the matrix's bytes in the file
        uint64_t file_bytes; // bytes of the rows the form holds (whole groups of 16)
        uint64_t bytes;      // of the form
        uint8_t* data;       // the form, in arena_
        bool released;       // the file pages were given back
        Record* record;      // its matrix's, in records_
    };
    // One per matrix: how often it was looked up lately, whose expert it is, and its form.
    struct Record {
        uint32_t uses = 0;
        int32_t expert_layer = -1; // -1: not an expert's matrix
        bool evicted = false;      // its form was evicted once
        bool held = false;         // `entry` is its form in lru_
        std::list<Entry>::iterator entry;
    };
    Record& record_of(const uint8_t* key);
    // Makes room for an expert's form of `bytes` by evicting colder experts; false (nothing
    // evicted) when the form is not used clearly more than they are.
    bool admit_expert(uint32_t uses, uint64_t bytes);
    void evict(std::list<Entry>::iterator victim);
    void evict_lru() { evict(std::prev(lru_.end())); }
    void free_form(Entry& entry);

    const uint64_t budget_;
    std::unique_ptr<PageArena> arena_; // where the forms live, reserved at the first build
    const GgufFile* const source_;
    const uint8_t* const embeddings_;
    bool locked_ = false;
    mutable std::mutex mutex_;
    std::list<Entry> lru_; // most recently used first
    std::unordered_map<const uint8_t*, Record> records_; // by the matrix's bytes in the file
    uint64_t expert_lookups_ = 0;   // since the uses were last halved
    uint64_t aging_period_ = 0;     // expert lookups between two halvings
    bool streaming_ = false;
    WeightCacheStats stats_;
};

} // namespace woolly
