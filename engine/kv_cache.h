// kv_cache.h — per-layer keys and values of every position seen so far, for one sequence.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace woolly {

class KvCache {
public:
    KvCache(int64_t n_layer, int64_t n_ctx, int64_t n_embd_kv);

    int64_t n_ctx() const { return n_ctx_; }
    int64_t n_embd_kv() const { return n_embd_kv_; }

    // Row of keys/values at `pos` in `layer`: n_embd_kv floats (n_head_kv heads of head_dim).
    float* key(int64_t layer, int64_t pos) { return &keys_[offset(layer, pos)]; }
    float* value(int64_t layer, int64_t pos) { return &values_[offset(layer, pos)]; }
    const float* key(int64_t layer, int64_t pos) const { return &keys_[offset(layer, pos)]; }
    const float* value(int64_t layer, int64_t pos) const { return &values_[offset(layer, pos)]; }

    uint64_t bytes() const { return (keys_.size() + values_.size()) * sizeof(float); }

private:
    size_t offset(int64_t layer, int64_t pos) const {
        return size_t((layer * n_ctx_ + pos) * n_embd_kv_);
    }
    int64_t n_ctx_;
    int64_t n_embd_kv_;
    std::vector<float> keys_;   // [n_layer][n_ctx][n_embd_kv]
    std::vector<float> values_; // [n_layer][n_ctx][n_embd_kv]
};

} // namespace woolly
