// slots.cpp — handing out KV-cache slots, longest reusable prefix first.
#include "engine/serve/slots.h"

#include <algorithm>

namespace woolly {

SlotTable::SlotTable(int64_t slots, uint64_t position_bytes, bool prefix_cache,
                     int64_t rewind_limit)
    : slots_(size_t(std::max<int64_t>(slots, 0))), position_bytes_(position_bytes),
      prefix_cache_(prefix_cache), rewind_limit_(rewind_limit) {}

SlotTable::Grant SlotTable::acquire(const std::vector<TokenId>& prompt) {
    Grant best;
    int64_t best_lru = -1;
    for (size_t i = 0; i < slots_.size(); ++i) {
        const Slot& s = slots_[i];
        if (s.in_use) continue;
        int64_t common = 0;
        if (prefix_cache_) {
            const size_t n = std::min(s.cached.size(), prompt.size());
            while (size_t(common) < n && s.cached[size_t(common)] == prompt[size_t(common)])
                ++common;
            common = std::min<int64_t>(common, int64_t(prompt.size()) - 1);
            // Cut back further than the rings allow: their window before the cut is gone.
            if (int64_t(s.cached.size()) - common > rewind_limit_) common = 0;
        }
        const bool older = best_lru < 0 || s.released < uint64_t(best_lru);
        if (best.slot < 0 || common > best.reused || (common == best.reused && older)) {
            best = {int32_t(i), common};
            best_lru = int64_t(s.released);
        }
    }
    if (best.slot < 0) return best;
    Slot& s = slots_[size_t(best.slot)];
    s.in_use = true;
    s.cached.clear(); // its user reports what the slot holds when it gives the slot back
    if (best.reused > 0) {
        ++hits_;
        reused_tokens_ += uint64_t(best.reused);
    } else {
        ++misses_;
    }
    return best;
}

void SlotTable::release(int32_t slot, std::vector<TokenId> cached) {
    if (slot < 0 || size_t(slot) >= slots_.size()) return;
    Slot& s = slots_[size_t(slot)];
    s.in_use = false;
    s.released = ++clock_;
    s.cached = prefix_cache_ ? std::move(cached) : std::vector<TokenId>();
}

void SlotTable::set_prefix_cache(bool on) {
    prefix_cache_ = on;
    if (!on)
        for (Slot& s : slots_) s.cached.clear();
}

SlotStats SlotTable::stats() const {
    SlotStats out;
    out.slots = int64_t(slots_.size());
    for (const Slot& s : slots_) {
        if (s.in_use) {
            ++out.in_use;
        } else {
            out.held_tokens += int64_t(s.cached.size());
        }
    }
    out.held_bytes = uint64_t(out.held_tokens) * position_bytes_;
    out.hits = hits_;
    out.misses = misses_;
    out.reused_tokens = reused_tokens_;
    return out;
}

} // namespace woolly
