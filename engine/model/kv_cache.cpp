// kv_cache.cpp — allocation of the KV cache, sized once when a sequence starts, with rings for
// sliding-window layers.
#include "engine/model/kv_cache.h"

#include <algorithm>

#include "engine/error.h"

namespace woolly {

namespace {

// Bytes of one head's keys (or values) at one position, in `type`; throws Error for a type
// the cache does not hold or a head that is not whole blocks of it.
uint64_t head_bytes_for(int64_t head_dim, TensorType type) {
    if (type != TensorType::F32 && type != TensorType::F16 && type != TensorType::Q8_0)
        throw Error(std::string("KV cache type ") + type_traits(type).name +
                    " (expected f16, f32 or q8_0)");
    const TypeTraits& traits = type_traits(type);
    const auto head = woolly::row_bytes(traits, uint64_t(head_dim));
    if (!head) {
        throw Error("a " + std::string(traits.name) +
                    " KV cache needs head_dim to be a multiple of " +
                    std::to_string(traits.block_size) + " (this model's is " +
                    std::to_string(head_dim) + ")");
    }
    return *head;
}

} // namespace

std::vector<int64_t> KvCache::kept_for(int64_t n_layer, int64_t n_ctx,
                                       const std::vector<int64_t>& windows, int64_t max_batch) {
    std::vector<int64_t> kept(size_t(std::max<int64_t>(n_layer, 0)), n_ctx);
    for (size_t l = 0; l < kept.size() && l < windows.size(); ++l) {
        const int64_t w = windows[l];
        if (w > 0 && w <= n_ctx && std::max<int64_t>(max_batch, 1) - 1 <= n_ctx - w)
            kept[l] = w + std::max<int64_t>(max_batch, 1) - 1;
    }
    return kept;
}

uint64_t KvCache::bytes_for(int64_t n_layer, int64_t n_ctx, int64_t n_head_kv, int64_t head_dim,
                            TensorType type, const std::vector<int64_t>& windows,
                            int64_t max_batch) {
    return bytes_of(kept_for(n_layer, n_ctx, windows, max_batch), n_head_kv, head_dim, type);
}

uint64_t KvCache::bytes_of(const std::vector<int64_t>& kept, int64_t n_head_kv, int64_t head_dim,
                           TensorType type) {
    uint64_t rows = 0; // positions kept, over all layers
    for (const int64_t layer_rows : kept)
        if (__builtin_add_overflow(rows, uint64_t(layer_rows), &rows)) return UINT64_MAX;
    uint64_t bytes = head_bytes_for(head_dim, type);
    for (const uint64_t factor : {uint64_t(2), rows, uint64_t(n_head_kv)})
        if (__builtin_mul_overflow(bytes, factor, &bytes)) return UINT64_MAX;
    return bytes;
}

KvCache::KvCache(int64_t n_layer, int64_t n_ctx, int64_t n_head_kv, int64_t head_dim,
                 TensorType type, const std::vector<int64_t>& windows, int64_t max_batch)
    : n_ctx_(n_ctx), n_embd_kv_(n_head_kv * head_dim), type_(type),
      kept_(kept_for(n_layer, n_ctx, windows, max_batch)) {
    head_bytes_ = head_bytes_for(head_dim, type);
    row_bytes_ = head_bytes_ * uint64_t(n_head_kv);
    const uint64_t both = bytes_of(kept_, n_head_kv, head_dim, type);
    if (both == UINT64_MAX || both / 2 > uint64_t(SIZE_MAX) / 2)
        throw Error("a KV cache of " + std::to_string(n_ctx) + " positions x " +
                    std::to_string(n_layer) + " layers is too large to address");
    int64_t row = 0;
    for (size_t l = 0; l < kept_.size(); ++l) {
        first_row_.push_back(row);
        row += kept_[l];
        // A cut of more than kept - window + 1 positions leaves the window before the cut
        // overwritten (see the class comment).
        if (kept_[l] < n_ctx_) rewind_limit_ = std::min(rewind_limit_, kept_[l] - windows[l] + 1);
    }
    const size_t total = size_t(both / 2);
    keys_.resize(total);
    values_.resize(total);
}

KvCachePool::KvCachePool(int64_t n_layer, int64_t n_ctx, int64_t n_head_kv, int64_t head_dim,
                         int64_t slots, TensorType type, const std::vector<int64_t>& windows,
                         int64_t max_batch)
    : n_ctx_(n_ctx) {
    for (int64_t i = 0; i < slots; ++i)
        caches_.push_back(std::make_unique<KvCache>(n_layer, n_ctx, n_head_kv, head_dim, type,
                                                    windows, max_batch));
    if (!caches_.empty()) position_bytes_ = caches_[0]->row_bytes() * 2 * uint64_t(n_layer);
}

uint64_t KvCachePool::bytes() const {
    uint64_t total = 0;
    for (const auto& c : caches_) total += c->bytes();
    return total;
}

TensorType kv_cache_type_from_name(const std::string& name) {
    const auto type = type_from_name(name);
    if (!type ||
        (*type != TensorType::F32 && *type != TensorType::F16 && *type != TensorType::Q8_0))
        throw Error("KV cache type '" + name + "' (expected f16, f32 or q8_0)");
    return *type;
}

} // namespace woolly
