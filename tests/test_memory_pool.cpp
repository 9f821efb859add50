// test_memory_pool.cpp — the pool hands out aligned, zeroed, disjoint arrays and refuses to
// overflow.
#include <cstdint>

#include "engine/error.h"
#include "engine/runtime/memory_pool.h"
#include "test_support.h"

using namespace woolly;

TEST_CASE("a memory pool carves aligned, zeroed, disjoint arrays and refuses to overflow") {
    const size_t bytes = MemoryPool::bytes_for<float>(7) + MemoryPool::bytes_for<int32_t>(33);
    CHECK(MemoryPool::bytes_for<float>(7) == 64); // 28 bytes, rounded to a line
    MemoryPool pool(bytes);
    PoolArray<float> a = pool.take<float>(7);
    PoolArray<int32_t> b = pool.take<int32_t>(33);
    CHECK(a.size() == 7);
    CHECK(b.size() == 33);
    CHECK(reinterpret_cast<uintptr_t>(a.data()) % MemoryPool::kAlign == 0);
    CHECK(reinterpret_cast<uintptr_t>(b.data()) % MemoryPool::kAlign == 0);
    CHECK(reinterpret_cast<const char*>(b.data()) >=
          reinterpret_cast<const char*>(a.data() + a.size()));
    for (float v : a) CHECK(v == 0.0f);
    for (int32_t v : b) CHECK(v == 0);
    CHECK(pool.used() == pool.capacity());
    CHECK_THROWS_WITH_AS(pool.take<float>(1), doctest::Contains("exhausted"), Error);
}
