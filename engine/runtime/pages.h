// pages.h — page-granular memory: whole-page ranges of a byte range, buffers on huge-page
// boundaries, and locking in RAM with an error that names the limit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
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

// A run of address space reserved once (read-write, no swap reserved, on a 2 MiB boundary,
// offered to the kernel for transparent huge pages) and handed out in page-rounded pieces,
// first fit. Pieces taken one after another lie side by side, so they share huge pages: a
// piece of its own would end in small pages (a TLB miss every 4 KiB) or, rounded up to 2 MiB,
// hold memory it does not use. Only pages written to become resident. Not thread-safe.
class PageArena {
public:
    // Throws std::bad_alloc when the address space cannot be reserved.
    explicit PageArena(uint64_t capacity);
    ~PageArena();
    PageArena(const PageArena&) = delete;
    PageArena& operator=(const PageArena&) = delete;

    // `bytes` rounded up to a page, or null when no free run is that long.
    uint8_t* take(uint64_t bytes);
    // A piece back: its pages leave memory, and the run is free again.
    void give_back(uint8_t* p, uint64_t bytes);
    size_t capacity() const { return capacity_; }

private:
    uint8_t* base_ = nullptr;
    size_t capacity_ = 0;
    std::map<size_t, size_t> free_; // offset -> length of each free run
};

// mlock of the pages [p, p + n) touches (read in if need be). Throws Error saying what `what`
// is, the errno and RLIMIT_MEMLOCK, and how to raise it (ulimit -l, LimitMEMLOCK=).
void lock_in_ram(const void* p, uint64_t n, const std::string& what);
// munlock of the whole pages inside [p, p + n).
void unlock_inner(const void* p, uint64_t n);

} // namespace woolly
