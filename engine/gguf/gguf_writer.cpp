// gguf_writer.cpp — serialises metadata and tensors in the GGUF v3 layout.
#include "engine/gguf/gguf_writer.h"

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "engine/error.h"

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

uint64_t GgufWriter::checked_bytes(std::string_view name, TensorType type,
                                   const std::vector<uint64_t>& dims) const {
    const TypeTraits& traits = type_traits(type);
    uint64_t rows = 1;
    for (size_t i = 1; i < dims.size(); ++i) rows *= dims[i];
    const auto bytes_per_row = dims.empty() ? std::nullopt : row_bytes(traits, dims[0]);
    if (!bytes_per_row) {
        throw Error("GgufWriter: tensor '" + std::string(name) + "' rows are not whole " +
                    traits.name + " blocks");
    }
    return *bytes_per_row * rows;
}

void GgufWriter::add_tensor(std::string_view name, TensorType type,
                            const std::vector<uint64_t>& dims, std::vector<uint8_t> data) {
    const uint64_t bytes = checked_bytes(name, type, dims);
    if (bytes != data.size()) {
        throw Error("GgufWriter: tensor '" + std::string(name) + "' has " +
                    std::to_string(data.size()) + " bytes, which does not match its type " +
                    type_traits(type).name + " and shape");
    }
    tensors_.push_back({std::string(name), type, dims, bytes, std::move(data), nullptr});
}

void GgufWriter::add_tensor(std::string_view name, TensorType type,
                            const std::vector<uint64_t>& dims, Producer produce) {
    const uint64_t bytes = checked_bytes(name, type, dims);
    tensors_.push_back({std::string(name), type, dims, bytes, {}, std::move(produce)});
}

std::vector<uint8_t> GgufWriter::header() const {
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
    uint64_t offset = 0;
    for (const auto& t : tensors_) {
        put_string(out, t.name);
        put<uint32_t>(out, uint32_t(t.dims.size()));
        for (uint64_t d : t.dims) put<uint64_t>(out, d);
        put<uint32_t>(out, uint32_t(t.type));
        put<uint64_t>(out, offset);
        offset = (offset + t.bytes + alignment_ - 1) / alignment_ * alignment_;
    }
    out.resize((out.size() + alignment_ - 1) / alignment_ * alignment_, 0);
    return out;
}

// Feeds each tensor's bytes, then its padding, to sink(pointer, size).
template <typename Sink> void GgufWriter::write_data(Sink&& sink) const {
    std::vector<uint8_t> produced;
    const std::vector<uint8_t> zeros(alignment_, 0);
    for (const auto& t : tensors_) {
        const std::vector<uint8_t>* bytes = &t.data;
        if (t.produce) {
            produced.assign(t.bytes, 0);
            t.produce(produced);
            bytes = &produced;
        }
        sink(bytes->data(), bytes->size());
        sink(zeros.data(), size_t((alignment_ - t.bytes % alignment_) % alignment_));
    }
}

std::vector<uint8_t> GgufWriter::serialize() const {
    std::vector<uint8_t> out = header();
    write_data([&](const uint8_t* p, size_t n) { out.insert(out.end(), p, p + n); });
    return out;
}

void GgufWriter::write_file(const std::string& path) const {
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) throw Error(path + ": cannot create: " + std::strerror(errno));
    bool ok = true;
    auto sink = [&](const uint8_t* p, size_t n) { ok = ok && std::fwrite(p, 1, n, f) == n; };
    const std::vector<uint8_t> head = header();
    sink(head.data(), head.size());
    write_data(sink);
    ok = (std::fclose(f) == 0) && ok;
    if (!ok) throw Error(path + ": write failed");
}

} // namespace woolly
