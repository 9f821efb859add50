// memory_pool.cpp — the single aligned allocation behind a MemoryPool.
#include "engine/runtime/memory_pool.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include "engine/error.h"

namespace woolly {

MemoryPool::MemoryPool(size_t bytes) : capacity_((bytes + kAlign - 1) / kAlign * kAlign) {
    void* p = std::aligned_alloc(kAlign, capacity_ > 0 ? capacity_ : kAlign);
    if (!p) throw std::bad_alloc();
    std::memset(p, 0, capacity_);
    memory_.reset(p);
}

void MemoryPool::Free::operator()(void* p) const {
    std::free(p);
}

void* MemoryPool::take_bytes(size_t bytes) {
    if (bytes > capacity_ - used_) {
        throw Error("memory pool of " + std::to_string(capacity_) + " bytes exhausted (" +
                    std::to_string(used_) + " used, " + std::to_string(bytes) + " more asked)");
    }
    void* p = static_cast<char*>(memory_.get()) + used_;
    used_ += bytes;
    return p;
}

} // namespace woolly
