// cmd_gguf.cpp — `woolly gguf`: a GGUF file's metadata and tensor table, readably.
#include <cstdio>

#include "cli_args.h"
#include "commands.h"
#include "engine/gguf/gguf.h"

namespace woolly::cli {

int gguf_command(int argc, char** argv) {
    Args args(argc, argv, 2, {}, {"--help", "-h"});
    const bool help = args.has("--help") || args.has("-h");
    if (help || args.positional().size() != 1) {
        std::fputs("usage: woolly gguf MODEL\nPrints the metadata and the tensor table "
                   "(name, type, shape, offset, size).\n",
                   help ? stdout : stderr);
        return help ? 0 : 2;
    }
    auto file = GgufFile::open(args.positional()[0]);
    std::printf(
        "%s: GGUF v%u, %zu metadata keys, %zu tensors, alignment %llu, data at offset %llu\n\n",
        file->name().c_str(), file->version(), file->metadata().size(), file->tensors().size(),
        (unsigned long long)file->alignment(), (unsigned long long)file->data_offset());
    std::printf("metadata:\n");
    for (const auto& [key, value] : file->metadata())
        std::printf("  %-45s %s\n", key.c_str(), value.to_display_string().c_str());
    std::printf("\ntensors:\n  %-32s %-7s %-24s %14s %14s\n", "name", "type", "shape", "offset",
                "bytes");
    uint64_t total = 0;
    for (const auto& t : file->tensors()) {
        std::string shape = "[";
        for (size_t i = 0; i < t.dims.size(); ++i)
            shape += (i ? ", " : "") + std::to_string(t.dims[i]);
        shape += "]";
        std::printf("  %-32s %-7s %-24s %14llu %14llu\n", t.name.c_str(), type_traits(t.type).name,
                    shape.c_str(), (unsigned long long)(file->data_offset() + t.offset),
                    (unsigned long long)t.n_bytes);
        total += t.n_bytes;
    }
    std::printf("\n  %zu tensors, %llu bytes of weights\n", file->tensors().size(),
                (unsigned long long)total);
    return 0;
}

} // namespace woolly::cli
