// memory_pool.h — one allocation per session or scratch, carved into 64-byte-aligned arrays
// when it is created: the per-token path then allocates nothing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

namespace woolly {

// A typed view of part of a MemoryPool.
template <typename T> class PoolArray {
public:
    PoolArray() = default;
    PoolArray(T* data, size_t size) : data_(data), size_(size) {}
    T* data() const { return data_; }
    size_t size() const { return size_; }
    T& operator[](size_t i) const { return data_[i]; }
    T* begin() const { return data_; }
    T* end() const { return data_ + size_; }

private:
    T* data_ = nullptr;
    size_t size_ = 0;
};

class MemoryPool {
public:
    static constexpr size_t kAlign = 64; // a cache line, and a 512-bit register

    // Bytes an array of n T takes in a pool (its start aligned).
    template <typename T> static size_t bytes_for(size_t n) {
        return (n * sizeof(T) + kAlign - 1) / kAlign * kAlign;
    }

    explicit MemoryPool(size_t bytes);
    MemoryPool(const MemoryPool&) = delete;
    MemoryPool& operator=(const MemoryPool&) = delete;

    // The next n T of the pool, zeroed; throws Error when the pool is exhausted (its size
    // was computed wrongly: a bug, not an input error).
    template <typename T> PoolArray<T> take(size_t n) {
        return PoolArray<T>(static_cast<T*>(take_bytes(bytes_for<T>(n))), n);
    }

    size_t capacity() const { return capacity_; }
    size_t used() const { return used_; }

private:
    void* take_bytes(size_t bytes);
    struct Free {
        void operator()(void* p) const;
    };
    std::unique_ptr<void, Free> memory_;
    size_t capacity_;
    size_t used_ = 0;
};

} // namespace woolly
