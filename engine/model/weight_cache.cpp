// weight_cache.cpp — LRU bookkeeping around repack_x16, the file pages a form replaces, and
// which experts' forms are worth their room.
#include "engine/model/weight_cache.h"

#include <unistd.h>

#include <algorithm>
#include <array>

#include "engine/kernels/kernels.h"
#include "engine/runtime/pages.h"
#include "engine/quant/repack.h"
#include "engine/runtime/thread_pool.h"

namespace woolly {

WeightCache::WeightCache(uint64_t budget_bytes, const LlamaModel* model)
    : budget_(budget_bytes), source_(model ? &model->gguf() : nullptr),
      embeddings_(model ? model->token_embd.data : nullptr) {
    if (!model) return;
    model->for_each_matrix([&](const WeightMatrix& w, bool) { records_[w.data]; });
    uint64_t expert_matrices = 0;
    for (size_t l = 0; l < model->layers.size(); ++l) {
        const LlamaLayer& layer = model->layers[l];
        for (const auto* experts : {&layer.gate_exps, &layer.up_exps, &layer.down_exps}) {
            for (const WeightMatrix& w : *experts) {
                records_[w.data].expert_layer = int32_t(l);
                ++expert_matrices;
            }
        }
    }
    if (expert_matrices > 0) stats_.expert_layers.resize(model->layers.size());
    // Each expert matrix is looked up about 16 * used / count times between two halvings: a
    // form admitted on uses counts recent routing, not the whole run's.
    aging_period_ = 16 * expert_matrices;
}

WeightCache::~WeightCache() {
    for (Entry& entry : lru_) free_form(entry);
}

bool WeightCache::reads_x16(const WeightMatrix& w, bool batched) {
    const TensorType type = w.traits->type;
    return has_x16_layout(type) && active_kernels().x16(type) &&
           (batched || x16_serves_generation(type));
}

WeightCache::Record& WeightCache::record_of(const uint8_t* key) {
    const auto it = records_.find(key);
    return it != records_.end() ? it->second : records_[key]; // a matrix of no model: first seen
}

const uint8_t* WeightCache::find_or_build(const WeightMatrix& w, ThreadPool* pool) {
    if (!has_x16_layout(w.traits->type)) return nullptr;
    const uint64_t bytes = x16_bytes(w);
    if (bytes == 0) return nullptr;
    std::lock_guard<std::mutex> lock(mutex_);
    Record& use = record_of(w.data);
    ExpertLayerStats* layer = nullptr;
    if (use.expert_layer >= 0) {
        layer = &stats_.expert_layers[size_t(use.expert_layer)];
        ++use.uses;
        if (++expert_lookups_ >= aging_period_) {
            expert_lookups_ = 0;
            for (auto& entry : records_) entry.second.uses /= 2;
        }
    }
    if (use.held) {
        ++stats_.hits;
        if (layer) ++layer->hits;
        lru_.splice(lru_.begin(), lru_, use.entry);
        return use.entry->data;
    }
    ++stats_.misses;
    if (layer) ++layer->misses;
    const bool fits_free = stats_.bytes + bytes <= budget_;
    const bool refused = layer ? !fits_free && !admit_expert(use.uses, bytes)
                               : !fits_free && use.evicted;
    if (bytes > budget_ || refused) {
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
    Entry entry{w.data, uint64_t(groups * kRepackRows) * w.row_bytes, bytes, data, false, &use};
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
    use.held = true;
    use.entry = lru_.begin();
    use.evicted = false;
    stats_.bytes += bytes;
    return entry.data;
}

bool WeightCache::admit_expert(uint32_t uses, uint64_t bytes) {
    // The experts' forms at the cold end of the list (up to kScan of them), least used first.
    constexpr size_t kScan = 32;
    std::array<std::list<Entry>::iterator, kScan> cold;
    size_t n = 0;
    for (auto it = lru_.end(); it != lru_.begin() && n < kScan;) {
        --it;
        if (it->record->expert_layer >= 0) cold[n++] = it;
    }
    std::sort(cold.begin(), cold.begin() + n,
              [](const auto& a, const auto& b) { return a->record->uses < b->record->uses; });
    // Enough of them, each used clearly less (a quarter and 2 uses of margin, so two experts
    // used about as often do not take turns being rebuilt), or nothing is evicted.
    uint64_t room = budget_ - stats_.bytes; // bytes <= budget_, and stats_.bytes <= budget_
    size_t victims = 0;
    while (room < bytes && victims < n) {
        const uint32_t their = cold[victims]->record->uses;
        if (uses <= their + their / 4 + 2) return false;
        room += cold[victims++]->bytes;
    }
    if (room < bytes) return false;
    for (size_t i = 0; i < victims; ++i) evict(cold[i]);
    return true;
}

void WeightCache::done_with_experts(const LlamaLayer& layer) const {
    if (!streaming_) return;
    // Each 3-D tensor at once: the kernel maps a file's pages a large folio at a time, so
    // reading one expert maps its neighbours too. A held form's pages are gone already.
    for (const auto* experts : {&layer.gate_exps, &layer.up_exps, &layer.down_exps}) {
        if (experts->empty()) continue;
        const uint8_t* first = experts->front().data;
        source_->release(first, uint64_t(experts->back().data - first) + experts->back().bytes());
    }
}

void WeightCache::free_form(Entry& entry) {
    if (locked_) unlock_inner(entry.data, entry.bytes);
    arena_->give_back(entry.data, entry.bytes);
}

void WeightCache::evict(std::list<Entry>::iterator it) {
    Entry& victim = *it;
    stats_.bytes -= victim.bytes;
    ++stats_.evictions;
    victim.record->evicted = true;
    victim.record->held = false;
    free_form(victim);
    if (victim.released) { // the file serves this matrix again
        source_->restore(victim.key, victim.file_bytes);
        if (locked_) source_->lock(victim.key, victim.file_bytes);
        stats_.released -= victim.file_bytes;
    }
    lru_.erase(it);
}

void WeightCache::warm(const LlamaModel& model, ThreadPool* pool,
                       const std::function<void(double)>& progress) {
    uint64_t total = 0, done = 0;
    model.for_each_matrix([&](const WeightMatrix& w, bool batched) {
        if (reads_x16(w, batched)) total += w.bytes();
    });
    // The matrices every token reads first, then the experts as far as the budget goes.
    for (const bool experts : {false, true}) {
        model.for_each_matrix([&](const WeightMatrix& w, bool batched) {
            if (!reads_x16(w, batched) || (record_of(w.data).expert_layer >= 0) != experts) return;
            find_or_build(w, pool);
            done += w.bytes();
            if (progress) progress(double(done) / double(total));
        });
    }
}

void WeightCache::lock_in_ram() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const Entry& entry : lru_)
        woolly::lock_in_ram(entry.data, entry.bytes, "the weight cache");
    locked_ = true;
}

uint64_t WeightCache::released_bytes(const uint8_t* data) const {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = records_.find(data);
    return it != records_.end() && it->second.held && it->second.entry->released
               ? it->second.entry->file_bytes
               : 0;
}

WeightCacheStats WeightCache::stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    WeightCacheStats s = stats_;
    s.budget = budget_;
    s.entries = lru_.size();
    s.experts_streamed = streaming_;
    return s;
}

} // namespace woolly
