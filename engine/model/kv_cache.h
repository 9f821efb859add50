// kv_cache.h — per-layer keys and values of every position seen so far (a sliding-window
// layer's last ones, in a ring), for one sequence, stored as F16 (the default, as llama.cpp),
// F32, or Q8_0 (half of F16's memory again).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/quant/tensor_types.h"

namespace woolly {

// A layer with a sliding window of w positions (Gemma's local layers) keeps only the last
// w + max_batch - 1 of them, a ring: position p is row p % kept(layer). A batch of at most
// max_batch tokens at positions pos.. writes its rows before attending, and its first token
// still finds the w - 1 positions before it. Other layers keep every position.
class KvCache {
public:
    // `windows` (empty: none) holds each layer's sliding window, 0 for a global layer;
    // `max_batch` is the most tokens one run_layers call gives the cache at once. Throws Error
    // when `type` is not F32, F16 or Q8_0, or when Q8_0 blocks of 32 would straddle heads
    // (head_dim not a multiple of 32).
    KvCache(int64_t n_layer, int64_t n_ctx, int64_t n_head_kv, int64_t head_dim,
            TensorType type = TensorType::F16, const std::vector<int64_t>& windows = {},
            int64_t max_batch = 1);

    int64_t n_ctx() const { return n_ctx_; }
    int64_t n_embd_kv() const { return n_embd_kv_; }
    TensorType type() const { return type_; }
    uint64_t row_bytes() const { return row_bytes_; }
    // Bytes of one head's slice of a row (head h starts at h * head_bytes()).
    uint64_t head_bytes() const { return head_bytes_; }
    // Positions `layer` keeps: n_ctx, or its ring's length.
    int64_t kept(int64_t layer) const { return kept_[size_t(layer)]; }
    // How far back a sequence held here may be cut and then extended (a kept prefix reused
    // by a prompt that differs after it): unlimited (INT64_MAX) without rings; with them,
    // positions cut beyond this are gone from a ring that the cut part has moved on.
    int64_t rewind_limit() const { return rewind_limit_; }

    // Row of keys/values at `pos` in `layer`: n_embd_kv values (n_head_kv heads of head_dim)
    // in type().
    uint8_t* key(int64_t layer, int64_t pos) { return &keys_[offset(layer, pos)]; }
    uint8_t* value(int64_t layer, int64_t pos) { return &values_[offset(layer, pos)]; }
    const uint8_t* key(int64_t layer, int64_t pos) const { return &keys_[offset(layer, pos)]; }
    const uint8_t* value(int64_t layer, int64_t pos) const { return &values_[offset(layer, pos)]; }

    uint64_t bytes() const { return keys_.size() + values_.size(); }
    // What a cache of these sizes allocates (the same checks as the constructor).
    static uint64_t bytes_for(int64_t n_layer, int64_t n_ctx, int64_t n_head_kv, int64_t head_dim,
                              TensorType type, const std::vector<int64_t>& windows = {},
                              int64_t max_batch = 1);

private:
    // Each layer's kept positions for these sizes, and the bytes of keys and values for them
    // (UINT64_MAX when that overflows).
    static std::vector<int64_t> kept_for(int64_t n_layer, int64_t n_ctx,
                                         const std::vector<int64_t>& windows, int64_t max_batch);
    static uint64_t bytes_of(const std::vector<int64_t>& kept, int64_t n_head_kv, int64_t head_dim,
                             TensorType type);
    size_t offset(int64_t layer, int64_t pos) const {
        const int64_t kept = kept_[size_t(layer)];
        return size_t(uint64_t(first_row_[size_t(layer)] + (kept < n_ctx_ ? pos % kept : pos)) *
                      row_bytes_);
    }
    int64_t n_ctx_;
    int64_t n_embd_kv_;
    TensorType type_;
    uint64_t row_bytes_ = 0;
    uint64_t head_bytes_ = 0;
    std::vector<int64_t> kept_;      // [n_layer] positions kept
    std::vector<int64_t> first_row_; // [n_layer] where each layer's rows start
    int64_t rewind_limit_ = INT64_MAX;
    std::vector<uint8_t> keys_;   // [sum of kept][row_bytes]
    std::vector<uint8_t> values_; // [sum of kept][row_bytes]
};

// One KV cache per slot (a sequence being served, or a finished one's prefix kept), allocated
// once. Whoever hands out slots decides who touches which.
class KvCachePool {
public:
    KvCachePool(int64_t n_layer, int64_t n_ctx, int64_t n_head_kv, int64_t head_dim, int64_t slots,
                TensorType type, const std::vector<int64_t>& windows = {}, int64_t max_batch = 1);
    KvCache& slot(int32_t index) { return *caches_[size_t(index)]; }
    int64_t size() const { return int64_t(caches_.size()); }
    int64_t n_ctx() const { return n_ctx_; }
    TensorType type() const { return caches_.empty() ? TensorType::F16 : caches_[0]->type(); }
    uint64_t bytes() const;
    // Bytes one position takes in one slot (keys and values of every layer; of a ring's
    // layers too, so an upper bound with rings).
    uint64_t position_bytes() const { return position_bytes_; }
    int64_t rewind_limit() const {
        return caches_.empty() ? INT64_MAX : caches_[0]->rewind_limit();
    }

private:
    int64_t n_ctx_;
    uint64_t position_bytes_ = 0;
    std::vector<std::unique_ptr<KvCache>> caches_;
};

// "f16", "f32" or "q8_0" (any case) -> the type; throws Error naming the choices otherwise.
TensorType kv_cache_type_from_name(const std::string& name);

} // namespace woolly
