// test_support.h — where the tests find their data, and how they skip when it is absent.
#pragma once

#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace woolly::test {

// ../shared beside the checkout, or $WOOLLY_SHARED.
inline std::string shared_dir() {
    if (const char* env = std::getenv("WOOLLY_SHARED"); env && *env) return env;
    return WOOLLY_SHARED_DIR;
}

inline std::string shared_file(const std::string& relative) {
    return shared_dir() + "/" + relative;
}

inline std::string bundled_model() {
    return std::string(WOOLLY_SOURCE_DIR) + "/models/stories260K.gguf";
}

// A path in the temporary directory that no other test process uses: the suite runs the same
// binary several times at once (once per kernel level), and a file one process rewrites while
// another has it mapped ends the other with SIGBUS.
inline std::string temp_path(const std::string& name) {
    return (std::filesystem::temp_directory_path() /
            ("woolly-" + std::to_string(::getpid()) + "-" + name))
        .string();
}

inline std::vector<uint8_t> read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)),
                                std::istreambuf_iterator<char>());
}

} // namespace woolly::test

// Skips the rest of a test case, saying which shared file is missing.
#define WOOLLY_REQUIRE_SHARED(path)                                                                \
    do {                                                                                           \
        if (!std::filesystem::exists(path)) {                                                      \
            MESSAGE("skipped: " << (path) << " not found (../shared is absent)");                  \
            return;                                                                                \
        }                                                                                          \
    } while (0)
