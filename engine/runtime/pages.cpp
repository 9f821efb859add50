// pages.cpp — page ranges, huge-page buffers and mlock, over mman.
#include "engine/runtime/pages.h"

#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iterator>
#include <new>

#include "engine/error.h"

namespace woolly {
namespace {

const uint64_t kPage = uint64_t(sysconf(_SC_PAGESIZE));
constexpr size_t kHugePage = size_t(2) << 20;

} // namespace

PageRange inner_pages(const void* p, uint64_t n) {
    const uint64_t begin = (uint64_t(uintptr_t(p)) + kPage - 1) / kPage * kPage;
    const uint64_t end = (uint64_t(uintptr_t(p)) + n) / kPage * kPage;
    if (end <= begin) return {};
    return {reinterpret_cast<uint8_t*>(uintptr_t(begin)), size_t(end - begin)};
}

PageRange outer_pages(const void* p, uint64_t n) {
    const uint64_t begin = uint64_t(uintptr_t(p)) / kPage * kPage;
    const uint64_t end = (uint64_t(uintptr_t(p)) + n + kPage - 1) / kPage * kPage;
    return {reinterpret_cast<uint8_t*>(uintptr_t(begin)), size_t(end - begin)};
}

namespace {

size_t page_rounded(uint64_t bytes) {
    return size_t((bytes + kPage - 1) / kPage * kPage);
}

} // namespace

PageArena::PageArena(uint64_t capacity) {
    capacity_ = size_t((std::max<uint64_t>(capacity, 1) + kHugePage - 1) / kHugePage * kHugePage);
    // Reserve 2 MiB more, then unmap what lies before the first 2 MiB boundary and after.
    const size_t span = capacity_ + kHugePage;
    void* raw = ::mmap(nullptr, span, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (raw == MAP_FAILED) throw std::bad_alloc();
    const uintptr_t begin = uintptr_t(raw);
    const uintptr_t start = (begin + kHugePage - 1) / kHugePage * kHugePage;
    if (start > begin) ::munmap(raw, start - begin);
    if (begin + span > start + capacity_)
        ::munmap(reinterpret_cast<void*>(start + capacity_), begin + span - (start + capacity_));
    base_ = reinterpret_cast<uint8_t*>(start);
#if defined(MADV_HUGEPAGE)
    ::madvise(base_, capacity_, MADV_HUGEPAGE); // advice only: without THP, plain pages
#endif
    free_.emplace(0, capacity_);
}

PageArena::~PageArena() {
    ::munmap(base_, capacity_);
}

uint8_t* PageArena::take(uint64_t bytes) {
    const size_t length = page_rounded(std::max<uint64_t>(bytes, 1));
    for (auto it = free_.begin(); it != free_.end(); ++it) {
        if (it->second < length) continue;
        const size_t offset = it->first, left = it->second - length;
        free_.erase(it);
        if (left) free_.emplace(offset + length, left);
        return base_ + offset;
    }
    return nullptr;
}

void PageArena::give_back(uint8_t* p, uint64_t bytes) {
    size_t offset = size_t(p - base_), length = page_rounded(std::max<uint64_t>(bytes, 1));
    ::madvise(p, length, MADV_DONTNEED); // zero pages from here on, taking no memory
    auto next = free_.lower_bound(offset);
    if (next != free_.end() && offset + length == next->first) { // joins the run after it
        length += next->second;
        next = free_.erase(next);
    }
    if (next != free_.begin()) { // and the run before it
        auto prev = std::prev(next);
        if (prev->first + prev->second == offset) {
            prev->second += length;
            return;
        }
    }
    free_.emplace(offset, length);
}

void lock_in_ram(const void* p, uint64_t n, const std::string& what) {
    const PageRange pages = outer_pages(p, n);
    if (pages.length == 0 || ::mlock(pages.start, pages.length) == 0) return;
    const int err = errno;
    struct rlimit limit {};
    ::getrlimit(RLIMIT_MEMLOCK, &limit);
    const std::string allowed = limit.rlim_cur == RLIM_INFINITY
                                    ? std::string("unlimited")
                                    : std::to_string(limit.rlim_cur >> 10) + " KiB";
    throw Error("cannot lock " + what + " in RAM (" + std::to_string(pages.length >> 10) +
                " KiB, --mlock / engine.mlock): " + std::strerror(err) + "; RLIMIT_MEMLOCK is " +
                allowed + " (raise it with ulimit -l, or LimitMEMLOCK= in the service unit)");
}

void unlock_inner(const void* p, uint64_t n) {
    const PageRange pages = inner_pages(p, n);
    if (pages.length) ::munlock(pages.start, pages.length);
}

} // namespace woolly
