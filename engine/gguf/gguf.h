// gguf.h — GGUF v2/v3 reader: memory-mapped, every size and offset validated before use.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/quant/tensor_types.h"

namespace woolly {

enum class GgufValueType : uint32_t {
    UINT8 = 0,
    INT8 = 1,
    UINT16 = 2,
    INT16 = 3,
    UINT32 = 4,
    INT32 = 5,
    FLOAT32 = 6,
    BOOL = 7,
    STRING = 8,
    ARRAY = 9,
    UINT64 = 10,
    INT64 = 11,
    FLOAT64 = 12,
};

const char* gguf_value_type_name(GgufValueType type);

// One metadata value. Strings and array payloads point into the file's bytes.
struct GgufValue {
    GgufValueType type = GgufValueType::UINT8;
    uint64_t offset = 0; // where the value starts in the file, for error messages
    // Scalars: integers widen into `integer` (bool as 0/1), floats into `real`.
    int64_t integer = 0;
    uint64_t unsigned_integer = 0;
    double real = 0.0;
    std::string_view string;
    // Arrays: element type and count; numeric payload is `array_data` (little-endian, unaligned),
    // string elements are in `array_strings`. Arrays of arrays are validated and kept opaque.
    GgufValueType array_type = GgufValueType::UINT8;
    uint64_t array_count = 0;
    const uint8_t* array_data = nullptr;
    std::vector<std::string_view> array_strings;

    bool is_integer() const;
    bool is_real() const {
        return type == GgufValueType::FLOAT32 || type == GgufValueType::FLOAT64;
    }
    std::string to_display_string(size_t max_array_items = 8) const;
};

struct GgufTensorInfo {
    std::string name;
    std::vector<uint64_t> dims; // dims[0] is the fastest-varying (row length)
    TensorType type;
    uint64_t offset;      // relative to the start of the data section
    uint64_t n_elements;  // product of dims
    uint64_t n_bytes;     // size of the data
    const uint8_t* data;  // into the file's bytes
    uint64_t file_offset; // absolute, for messages
};

// A parsed GGUF file. Either owns its file's bytes (a read-only mapping, or a copy read into
// anonymous memory) or views caller-owned bytes.
class GgufFile {
public:
    // Maps and parses `path`; throws Error naming the file, byte offset and expectation.
    // Nothing but the header is read: tensor data comes in as it is touched.
    static std::unique_ptr<GgufFile> open(const std::string& path);
    // Parses bytes the caller keeps alive; `name` appears in error messages.
    static std::unique_ptr<GgufFile> parse(std::string name, const uint8_t* bytes, uint64_t size);

    ~GgufFile();
    GgufFile(const GgufFile&) = delete;
    GgufFile& operator=(const GgufFile&) = delete;

    const std::string& name() const { return name_; }
    uint32_t version() const { return version_; }
    uint64_t alignment() const { return alignment_; }
    uint64_t data_offset() const { return data_offset_; }
    uint64_t size() const { return size_; }
    const uint8_t* bytes() const { return bytes_; }

    const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return metadata_; }
    const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }

    const GgufValue* find(std::string_view key) const;
    const GgufTensorInfo* find_tensor(std::string_view name) const;

    // Typed getters: throw Error (key, offset, expected vs actual type) on a mismatch.
    std::optional<std::string> get_string(std::string_view key) const;
    std::optional<uint64_t> get_uint(std::string_view key) const; // any non-negative integer
    std::optional<double> get_real(std::string_view key) const;   // float or integer
    std::optional<bool> get_bool(std::string_view key) const;
    // A string array; null when absent, Error when present with another type.
    const std::vector<std::string_view>* get_string_array(std::string_view key) const;
    // A numeric array read as float32/int32 (`count` must match when given).
    std::vector<float> get_f32_array(std::string_view key, uint64_t expected_count) const;
    std::vector<int32_t> get_i32_array(std::string_view key, uint64_t expected_count) const;

    [[noreturn]] void fail(uint64_t offset, const std::string& what) const;

    // Where the bytes live. An opened file starts mapped; read_into_memory() replaces the
    // mapping, at the same addresses, with a private copy read with pread (llama.cpp's
    // --no-mmap, for filesystems where mapping is slow): every pointer into the file stays
    // valid. Throws Error on a read failure. Does nothing for caller-owned bytes.
    void read_into_memory();
    bool in_memory() const { return in_memory_; }

    // Residency of a byte range of the file, whole pages inside [p, p + n) only, so a page
    // shared with a neighbouring tensor is never dropped or unlocked. No-ops on caller-owned
    // bytes. Not thread-safe for overlapping ranges; the weight cache calls them under its lock.
    // release: the pages leave this process's memory. Mapped, they come back from the file on
    // the next touch; in memory, restore() must read them back before anyone touches them.
    void release(const uint8_t* p, uint64_t n) const;
    void restore(const uint8_t* p, uint64_t n) const;
    // lock: the pages are read in and locked in RAM (mlock); throws Error naming
    // RLIMIT_MEMLOCK / LimitMEMLOCK= when the limit refuses. Lock ranges cover partial pages.
    void lock(const uint8_t* p, uint64_t n) const;
    void unlock(const uint8_t* p, uint64_t n) const;
    // Bytes of the file's pages resident in this process now (/proc/self/smaps' Rss of the
    // mapping); 0 for caller-owned bytes.
    uint64_t resident_bytes() const;

private:
    GgufFile() = default;
    void parse_all();

    std::string name_;
    const uint8_t* bytes_ = nullptr;
    uint64_t size_ = 0;
    void* mapping_ = nullptr; // non-null when we own an mmap of size_ bytes
    int fd_ = -1;             // the open file, for read_into_memory() and restore()
    bool in_memory_ = false;  // mapping_ is an anonymous copy, not the file's pages
    uint32_t version_ = 0;
    uint64_t alignment_ = 32;
    uint64_t data_offset_ = 0;
    std::vector<std::pair<std::string, GgufValue>> metadata_;
    std::map<std::string, size_t, std::less<>> metadata_index_;
    std::vector<GgufTensorInfo> tensors_;
    std::map<std::string, size_t, std::less<>> tensor_index_;
};

} // namespace woolly
