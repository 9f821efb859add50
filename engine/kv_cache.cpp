// kv_cache.cpp — allocation of the KV cache, sized once when a sequence starts.
#include "kv_cache.h"

namespace woolly {

KvCache::KvCache(int64_t n_layer, int64_t n_ctx, int64_t n_embd_kv)
    : n_ctx_(n_ctx), n_embd_kv_(n_embd_kv), keys_(size_t(n_layer * n_ctx * n_embd_kv)),
      values_(size_t(n_layer * n_ctx * n_embd_kv)) {}

} // namespace woolly
