// gguf_writer.cpp — serialises metadata and tensors in the GGUF v3 layout.
#include "gguf_writer.h"

#include <cstdio>
#include <cstring>

#include "error.h"

namespace woolly {
namespace {

template <typename T> void put(std::vector<uint8_t>& out, T value) {
    // resize + memcpy rather than insert: GCC 12 at -O3 warns falsely about the latter.
    const size_t at = out.size();
    out.resize(at + sizeof(T));
    std::memcpy(out.data() + at, &value, sizeof(T));
}

void put_string(std::vector<uint8_t>& out, std::string_view s) {
    put<uint64_t>(out, s.size());
    out.insert(out.end(), s.begin(), s.end());
}

} // namespace

void GgufWriter::begin_kv(std::string_view key, GgufValueType type) {
    ++n_kv_;
    put_string(kv_bytes_, key);
    put<uint32_t>(kv_bytes_, uint32_t(type));
}

void GgufWriter::add_string(std::string_view key, std::string_view value) {
    begin_kv(key, GgufValueType::STRING);
    put_string(kv_bytes_, value);
}
void GgufWriter::add_u32(std::string_view key, uint32_t value) {
    begin_kv(key, GgufValueType::UINT32);
    put(kv_bytes_, value);
}
void GgufWriter::add_i32(std::string_view key, int32_t value) {
    begin_kv(key, GgufValueType::INT32);
    put(kv_bytes_, value);
}
void GgufWriter::add_f32(std::string_view key, float value) {
    begin_kv(key, GgufValueType::FLOAT32);
    put(kv_bytes_, value);
}
void GgufWriter::add_bool(std::string_view key, bool value) {
    begin_kv(key, GgufValueType::BOOL);
    put<uint8_t>(kv_bytes_, value ? 1 : 0);
}
void GgufWriter::add_string_array(std::string_view key, const std::vector<std::string>& values) {
    begin_kv(key, GgufValueType::ARRAY);
    put<uint32_t>(kv_bytes_, uint32_t(GgufValueType::STRING));
    put<uint64_t>(kv_bytes_, values.size());
    for (const auto& v : values) put_string(kv_bytes_, v);
}
void GgufWriter::add_f32_array(std::string_view key, const std::vector<float>& values) {
    begin_kv(key, GgufValueType::ARRAY);
    put<uint32_t>(kv_bytes_, uint32_t(GgufValueType::FLOAT32));
    put<uint64_t>(kv_bytes_, values.size());
    for (float v : values) put(kv_bytes_, v);
}
void GgufWriter::add_i32_array(std::string_view key, const std::vector<int32_t>& values) {
    begin_kv(key, GgufValueType::ARRAY);
    put<uint32_t>(kv_bytes_, uint32_t(GgufValueType::INT32));
    put<uint64_t>(kv_bytes_, values.size());
    for (int32_t v : values) put(kv_bytes_, v);
}

void GgufWriter::add_tensor(std::string_view name, TensorType type,
                            const std::vector<uint64_t>& dims, std::vector<uint8_t> data) {
    const TypeTraits& traits = type_traits(type);
    uint64_t elements = 1;
    for (uint64_t d : dims) elements *= d;
    const auto bytes_per_row = row_bytes(traits, dims.at(0));
    if (!bytes_per_row || *bytes_per_row * (elements / dims[0]) != data.size()) {
        throw Error("GgufWriter: tensor '" + std::string(name) + "' has " +
                    std::to_string(data.size()) + " bytes, which does not match its type " +
                    traits.name + " and shape");
    }
    tensors_.push_back({std::string(name), type, dims, std::move(data)});
}

std::vector<uint8_t> GgufWriter::serialize() const {
    std::vector<uint8_t> out;
    put<uint32_t>(out, 0x46554747);
    put<uint32_t>(out, 3);
    put<uint64_t>(out, tensors_.size());
    put<uint64_t>(out, n_kv_ + (alignment_ != 32 ? 1 : 0));
    out.insert(out.end(), kv_bytes_.begin(), kv_bytes_.end());
    if (alignment_ != 32) {
        put_string(out, "general.alignment");
        put<uint32_t>(out, uint32_t(GgufValueType::UINT32));
        put<uint32_t>(out, alignment_);
    }
    auto aligned = [&](uint64_t n) { return (n + alignment_ - 1) / alignment_ * alignment_; };
    uint64_t offset = 0;
    for (const auto& t : tensors_) {
        put_string(out, t.name);
        put<uint32_t>(out, uint32_t(t.dims.size()));
        for (uint64_t d : t.dims) put<uint64_t>(out, d);
        put<uint32_t>(out, uint32_t(t.type));
        put<uint64_t>(out, offset);
        offset = aligned(offset + t.data.size());
    }
    out.resize(aligned(out.size()), 0);
    for (const auto& t : tensors_) {
        out.insert(out.end(), t.data.begin(), t.data.end());
        out.resize(aligned(out.size()), 0);
    }
    return out;
}

void GgufWriter::write_file(const std::string& path) const {
    const std::vector<uint8_t> bytes = serialize();
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) throw Error(path + ": cannot create: " + std::strerror(errno));
    const size_t written = std::fwrite(bytes.data(), 1, bytes.size(), f);
    const bool closed = std::fclose(f) == 0;
    if (written != bytes.size() || !closed) throw Error(path + ": write failed");
}

} // namespace woolly
