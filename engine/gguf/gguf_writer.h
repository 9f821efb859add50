// gguf_writer.h — builds GGUF v3 files (for `woolly synth` and for tests that need crafted files).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/gguf/gguf.h"
#include "engine/quant/tensor_types.h"

namespace woolly {

class GgufWriter {
public:
    explicit GgufWriter(uint32_t alignment = 32) : alignment_(alignment) {}

    void add_string(std::string_view key, std::string_view value);
    void add_u32(std::string_view key, uint32_t value);
    void add_i32(std::string_view key, int32_t value);
    void add_f32(std::string_view key, float value);
    void add_bool(std::string_view key, bool value);
    void add_string_array(std::string_view key, const std::vector<std::string>& values);
    void add_f32_array(std::string_view key, const std::vector<float>& values);
    void add_i32_array(std::string_view key, const std::vector<int32_t>& values);

    // `data` must hold exactly the bytes of a tensor of this type and shape.
    void add_tensor(std::string_view name, TensorType type, const std::vector<uint64_t>& dims,
                    std::vector<uint8_t> data);
    // A tensor whose bytes are made only while the file is written (`produce` fills a buffer of
    // the right size), so that multi-gigabyte files never sit in memory whole.
    using Producer = std::function<void(std::vector<uint8_t>& bytes)>;
    void add_tensor(std::string_view name, TensorType type, const std::vector<uint64_t>& dims,
                    Producer produce);

    std::vector<uint8_t> serialize() const;         // all in memory (produced tensors too)
    void write_file(const std::string& path) const; // streamed; throws Error on I/O failure

private:
    struct Tensor {
        std::string name;
        TensorType type;
        std::vector<uint64_t> dims;
        uint64_t bytes;
        std::vector<uint8_t> data; // or, when empty, made by produce
        Producer produce;
    };
    void begin_kv(std::string_view key, GgufValueType type);
    uint64_t checked_bytes(std::string_view name, TensorType type,
                           const std::vector<uint64_t>& dims) const;
    std::vector<uint8_t> header() const; // everything before the first tensor's data
    template <typename Sink> void write_data(Sink&& sink) const;

    uint32_t alignment_;
    uint64_t n_kv_ = 0;
    std::vector<uint8_t> kv_bytes_;
    std::vector<Tensor> tensors_;
};

} // namespace woolly
