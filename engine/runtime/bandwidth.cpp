// bandwidth.cpp — a streaming-read probe, as STREAM-style tools measure it.
#include "engine/runtime/bandwidth.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace woolly {
namespace {

using ReadFn = uint64_t (*)(const uint8_t* p, size_t bytes);

// Sums 64-bit words in four independent chains (the sum keeps the reads from being dropped).
uint64_t read_words(const uint8_t* p, size_t bytes) {
    const auto* w = reinterpret_cast<const uint64_t*>(p);
    uint64_t a = 0, b = 0, c = 0, d = 0;
    for (size_t i = 0; i + 4 <= bytes / 8; i += 4) {
        a += w[i];
        b += w[i + 1];
        c += w[i + 2];
        d += w[i + 3];
    }
    return a + b + c + d;
}

#if defined(__x86_64__)
__attribute__((target("avx512f"))) uint64_t read_avx512(const uint8_t* p, size_t bytes) {
    __m512i a = _mm512_setzero_si512(), b = a, c = a, d = a;
    for (size_t i = 0; i + 256 <= bytes; i += 256) {
        a = _mm512_xor_si512(a, _mm512_load_si512(p + i));
        b = _mm512_xor_si512(b, _mm512_load_si512(p + i + 64));
        c = _mm512_xor_si512(c, _mm512_load_si512(p + i + 128));
        d = _mm512_xor_si512(d, _mm512_load_si512(p + i + 192));
    }
    alignas(64) uint64_t out[8];
    _mm512_store_si512(out, _mm512_xor_si512(_mm512_xor_si512(a, b), _mm512_xor_si512(c, d)));
    return out[0] ^ out[7];
}

__attribute__((target("avx2"))) uint64_t read_avx2(const uint8_t* p, size_t bytes) {
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    for (size_t i = 0; i + 128 <= bytes; i += 128) {
        a = _mm256_xor_si256(a, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i)));
        b = _mm256_xor_si256(b, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
        c = _mm256_xor_si256(c, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 64)));
        d = _mm256_xor_si256(d, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 96)));
    }
    alignas(32) uint64_t out[4];
    _mm256_store_si256(reinterpret_cast<__m256i*>(out),
                       _mm256_xor_si256(_mm256_xor_si256(a, b), _mm256_xor_si256(c, d)));
    return out[0] ^ out[3];
}
#endif

ReadFn widest_read() {
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx512f")) return read_avx512;
    if (__builtin_cpu_supports("avx2")) return read_avx2;
#endif
    return read_words;
}

} // namespace

double measure_read_bandwidth(ThreadPool& pool, size_t bytes, int passes) {
    bytes = std::max<size_t>(bytes, size_t(64) << 20) & ~size_t(4095);
    struct Free {
        void operator()(uint8_t* p) const { std::free(p); }
    };
    std::unique_ptr<uint8_t, Free> buffer(static_cast<uint8_t*>(std::aligned_alloc(4096, bytes)));
    if (!buffer) return 0.0;
    std::memset(buffer.get(), 1, bytes); // touched, so the pages are real
    const ReadFn read = widest_read();
    std::vector<uint64_t> sinks(size_t(pool.size()) * 8);
    double best = 0;
    for (int pass = 0; pass < passes; ++pass) {
        const auto start = std::chrono::steady_clock::now();
        auto run = [&](int index, int count) {
            // Parts aligned to 4 KiB.
            const size_t pages = bytes / 4096;
            const size_t begin = pages * size_t(index) / size_t(count) * 4096,
                         end = pages * size_t(index + 1) / size_t(count) * 4096;
            sinks[size_t(index) * 8] = read(buffer.get() + begin, end - begin);
        };
        pool.run(run);
        const double seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        best = std::max(best, double(bytes) / seconds / 1e9);
    }
    volatile uint64_t keep = 0;
    for (uint64_t s : sinks) keep = keep + s;
    return best;
}

} // namespace woolly
