// fuzz_config.cpp — woollyd's YAML config on arbitrary text: every input parses to a config or
// is refused with a ConfigError (naming the key and line); no other exception escapes.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "config/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace woolly::config;
    try {
        const DaemonConfig config =
            parse_config(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.yaml");
        (void)to_yaml(config);
    } catch (const ConfigError&) {
    }
    return 0;
}
