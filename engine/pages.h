// pages.h — page-granular memory: whole-page ranges of a byte range, buffers on huge-page
// boundaries, and locking in RAM with an error that names the limit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace woolly {

// A run of whole pages.
struct PageRange {
    uint8_t* start = nullptr;
    size_t length = 0;
};

// The whole pages inside [p, p + n): what can be dropped or unlocked without touching a
// neighbour's bytes on a shared page (empty when the range holds no whole page).
PageRange inner_pages(const void* p, uint64_t n);
// Every page [p, p + n) touches.
PageRange outer_pages(const void* p, uint64_t n);

// `bytes` (rounded up to a page) starting on a 2 MiB boundary, offered to the kernel for
// transparent huge pages (advice only): its whole 2 MiB extents can be huge pages, its tail
// takes small ones, so no more than `bytes` become resident. Throws std::bad_alloc. Free with
// free_huge(p, bytes).
uint8_t* allocate_huge(uint64_t bytes);
void free_huge(uint8_t* p, uint64_t bytes);

// mlock of the pages [p, p + n) touches (read in if need be). Throws Error saying what `what`
// is, the errno and RLIMIT_MEMLOCK, and how to raise it (ulimit -l, LimitMEMLOCK=).
void lock_in_ram(const void* p, uint64_t n, const std::string& what);
// munlock of the whole pages inside [p, p + n).
void unlock_inner(const void* p, uint64_t n);

} // namespace woolly
