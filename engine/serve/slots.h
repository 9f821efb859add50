// slots.h — who holds which KV-cache slot, and the prefix cache: a finished sequence's slot
// keeps the tokens whose keys and values it holds, and a new sequence is given the free slot
// that holds the longest prefix of its prompt, so that only the rest is computed (a shared
// system prompt, a conversation resent with one more turn). Without a reusable prefix, the
// least recently used free slot.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/text/vocab.h"

namespace woolly {

struct SlotStats {
    int64_t slots = 0;
    int64_t in_use = 0;
    uint64_t hits = 0;             // acquisitions that reused a prefix
    uint64_t misses = 0;           // ... that did not
    uint64_t reused_tokens = 0;    // prompt tokens not computed again, in all
    int64_t held_tokens = 0;       // positions free slots keep for later sequences
    uint64_t held_bytes = 0;       // ... and their bytes
};

class SlotTable {
public:
    // `slots` slots of `position_bytes` bytes per position; `prefix_cache` false: a slot's
    // contents are forgotten when it is released. A kept sequence is reused only when the
    // prompt leaves at most `rewind_limit` of its positions behind (KvCache::rewind_limit:
    // sliding-window rings move on), else the slot starts over.
    SlotTable(int64_t slots, uint64_t position_bytes, bool prefix_cache,
              int64_t rewind_limit = INT64_MAX);

    struct Grant {
        int32_t slot = -1; // -1: none free
        int64_t reused = 0; // the prompt's first `reused` tokens are in the slot already
    };
    // A free slot for a sequence with this prompt: the longest reusable prefix (at most
    // prompt size - 1: the last prompt token is computed for its logits), else the least
    // recently used.
    Grant acquire(const std::vector<TokenId>& prompt);
    // The slot is free again and holds `cached` (the tokens of its positions 0, 1, ...).
    void release(int32_t slot, std::vector<TokenId> cached);
    void set_prefix_cache(bool on);
    SlotStats stats() const;

private:
    struct Slot {
        bool in_use = false;
        uint64_t released = 0; // when, in release() calls: least recently used first
        std::vector<TokenId> cached;
    };
    std::vector<Slot> slots_;
    uint64_t position_bytes_;
    bool prefix_cache_;
    int64_t rewind_limit_;
    uint64_t clock_ = 0;
    uint64_t hits_ = 0, misses_ = 0, reused_tokens_ = 0;
};

} // namespace woolly
