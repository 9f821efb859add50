// pages.cpp — page ranges, huge-page buffers and mlock, over mman.
#include "pages.h"

#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <new>

#include "error.h"

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

uint8_t* allocate_huge(uint64_t bytes) {
    const size_t length = page_rounded(bytes == 0 ? 1 : bytes);
    // Map 2 MiB more than needed, then unmap what lies before the first 2 MiB boundary and
    // after the buffer.
    const size_t span = length + kHugePage;
    void* raw = ::mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) throw std::bad_alloc();
    const uintptr_t begin = uintptr_t(raw);
    const uintptr_t start = (begin + kHugePage - 1) / kHugePage * kHugePage;
    if (start > begin) ::munmap(raw, start - begin);
    if (begin + span > start + length)
        ::munmap(reinterpret_cast<void*>(start + length), begin + span - (start + length));
#if defined(MADV_HUGEPAGE)
    ::madvise(reinterpret_cast<void*>(start), length, MADV_HUGEPAGE); // advice only
#endif
    return reinterpret_cast<uint8_t*>(start);
}

void free_huge(uint8_t* p, uint64_t bytes) {
    if (p) ::munmap(p, page_rounded(bytes == 0 ? 1 : bytes));
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
