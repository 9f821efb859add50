// test_gguf.cpp — the GGUF reader: real files, crafted files, and every way a file can be wrong.
#include <cstring>

#include "engine/error.h"
#include "engine/gguf/gguf.h"
#include "engine/gguf/gguf_writer.h"
#include "test_support.h"

using namespace woolly;

namespace {

// A small but complete file: every metadata value type, a string array, two tensors.
std::vector<uint8_t> small_gguf() {
    GgufWriter w;
    w.add_string("general.architecture", "llama");
    w.add_u32("test.u32", 7);
    w.add_i32("test.i32", -3);
    w.add_f32("test.f32", 1.5f);
    w.add_bool("test.bool", true);
    w.add_string_array("test.strings", {"a", "bc", ""});
    w.add_f32_array("test.floats", {1.0f, 2.0f});
    w.add_i32_array("test.ints", {4, 5, 6});
    std::vector<uint8_t> f32(4 * 4 * 2);
    for (size_t i = 0; i < f32.size(); ++i) f32[i] = uint8_t(i);
    w.add_tensor("weight.f32", TensorType::F32, {4, 2}, f32);
    w.add_tensor("weight.q8", TensorType::Q8_0, {32}, std::vector<uint8_t>(34, 1));
    return w.serialize();
}

std::unique_ptr<GgufFile> parse(const std::vector<uint8_t>& bytes) {
    return GgufFile::parse("test.gguf", bytes.data(), bytes.size());
}

std::string parse_error(const std::vector<uint8_t>& bytes) {
    try {
        parse(bytes);
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

template <typename T> void poke(std::vector<uint8_t>& bytes, size_t offset, T value) {
    std::memcpy(bytes.data() + offset, &value, sizeof value);
}

// Offset of the first byte after `needle` in the serialized bytes.
size_t after(const std::vector<uint8_t>& bytes, const std::string& needle) {
    for (size_t i = 0; i + needle.size() <= bytes.size(); ++i)
        if (std::memcmp(bytes.data() + i, needle.data(), needle.size()) == 0)
            return i + needle.size();
    FAIL("needle not found: " << needle);
    return 0;
}

} // namespace

TEST_CASE("the bundled model parses with the shape its provenance note gives") {
    auto file = GgufFile::open(test::bundled_model());
    CHECK(file->version() == 3);
    CHECK(file->get_string("general.architecture") == "llama");
    CHECK(file->get_uint("llama.embedding_length") == 64u);
    CHECK(file->get_uint("llama.block_count") == 5u);
    CHECK(file->get_uint("llama.attention.head_count") == 8u);
    CHECK(file->get_uint("llama.attention.head_count_kv") == 4u);
    CHECK(file->get_uint("llama.context_length") == 512u);
    CHECK(file->get_string_array("tokenizer.ggml.tokens")->size() == 512u);
    const GgufTensorInfo* embd = file->find_tensor("token_embd.weight");
    REQUIRE(embd);
    CHECK(embd->dims == std::vector<uint64_t>{64, 512});
    CHECK(embd->type == TensorType::F32);
}

TEST_CASE("a written file reads back with every value intact") {
    const auto bytes = small_gguf();
    auto file = parse(bytes);
    CHECK(file->get_uint("test.u32") == 7u);
    CHECK(file->find("test.i32")->integer == -3);
    CHECK(file->get_real("test.f32") == 1.5);
    CHECK(file->get_bool("test.bool") == true);
    CHECK(*file->get_string_array("test.strings") == std::vector<std::string_view>{"a", "bc", ""});
    CHECK(file->get_f32_array("test.floats", 2) == std::vector<float>{1.0f, 2.0f});
    CHECK(file->get_i32_array("test.ints", 3) == std::vector<int32_t>{4, 5, 6});
    REQUIRE(file->tensors().size() == 2);
    const auto& t = file->tensors()[0];
    CHECK(t.n_bytes == 32);
    CHECK(t.data[5] == 5);
    CHECK(file->tensors()[1].n_bytes == 34);
    CHECK((file->data_offset() % 32) == 0);
    // Typed getters refuse the wrong type with the key named.
    CHECK_THROWS_WITH_AS(file->get_string("test.u32"), doctest::Contains("test.u32"), Error);
    CHECK_THROWS_WITH_AS(file->get_f32_array("test.floats", 3), doctest::Contains("expected 3"),
                         Error);
}

TEST_CASE("a file cut short at any byte is refused with an offset, never read past") {
    const auto bytes = small_gguf();
    // Padding after the last tensor's data is not needed: the file is whole up to there.
    const auto whole = parse(bytes);
    const GgufTensorInfo& last = whole->tensors().back();
    const size_t needed = size_t(whole->data_offset() + last.offset + last.n_bytes);
    REQUIRE(needed < bytes.size());
    for (size_t n = 0; n < bytes.size(); ++n) {
        // A copy of exactly n bytes, so that ASan catches any read past the end.
        std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + std::ptrdiff_t(n));
        const std::string error = parse_error(cut);
        INFO("truncated to " << n << " bytes");
        if (n < needed)
            CHECK(error.find("test.gguf: offset ") == 0);
        else
            CHECK(error.empty());
    }
    CHECK(parse_error(bytes).empty());
}

TEST_CASE("absurd header fields are refused before anything is allocated") {
    const auto good = small_gguf();
    auto with = [&](auto edit) {
        auto bytes = good;
        edit(bytes);
        return parse_error(bytes);
    };
    CHECK(with([](auto& b) { b[0] = 'X'; }).find("bad magic") != std::string::npos);
    CHECK(with([](auto& b) { poke<uint32_t>(b, 4, 1); }).find("version 1 (expected 2 or 3)") !=
          std::string::npos);
    CHECK(with([](auto& b) { poke<uint32_t>(b, 4, 4); }).find("unsupported GGUF version 4") !=
          std::string::npos);
    CHECK(with([](auto& b) { poke<uint64_t>(b, 8, UINT64_MAX); }).find("tensor count") !=
          std::string::npos);
    CHECK(with([](auto& b) { poke<uint64_t>(b, 16, uint64_t(1) << 62); }).find("metadata count") !=
          std::string::npos);
    // The first key's length.
    CHECK(with([](auto& b) { poke<uint64_t>(b, 24, UINT64_MAX - 3); }).find("runs past the end") !=
          std::string::npos);
    // The first value's type.
    CHECK(with([&](auto& b) {
              poke<uint32_t>(b, after(good, "general.architecture"), 99);
          }).find("unknown value type 99") != std::string::npos);
    // A string array's count.
    CHECK(with([&](auto& b) {
              poke<uint64_t>(b, after(good, "test.strings") + 8, uint64_t(1) << 60);
          }).find("array count") != std::string::npos);
    // A float array's count: count * 4 overflows.
    CHECK(with([&](auto& b) {
              poke<uint64_t>(b, after(good, "test.floats") + 8, UINT64_MAX / 2);
          }).find("runs past the end") != std::string::npos);
    // Tensor dimension count, a dimension, the type and the offset.
    const size_t f32_info = after(good, "weight.f32");
    CHECK(with([&](auto& b) { poke<uint32_t>(b, f32_info, 9); }).find("9 dimensions") !=
          std::string::npos);
    CHECK(with([&](auto& b) { poke<uint64_t>(b, f32_info + 4, 0); }).find("dimension 0 is 0") !=
          std::string::npos);
    CHECK(with([&](auto& b) {
              poke<uint64_t>(b, f32_info + 4, uint64_t(1) << 40);
              poke<uint64_t>(b, f32_info + 12, uint64_t(1) << 40);
          }).find("more than 2^63") != std::string::npos);
    CHECK(with([&](auto& b) {
              poke<uint64_t>(b, f32_info + 4, uint64_t(1) << 40);
          }).find("lies outside the data section") != std::string::npos);
    CHECK(with([&](auto& b) {
              poke<uint32_t>(b, f32_info + 20, 1234);
          }).find("unknown type 1234") != std::string::npos);
    CHECK(with([&](auto& b) {
              poke<uint64_t>(b, f32_info + 24, 3);
          }).find("not a multiple of the alignment") != std::string::npos);
    CHECK(with([&](auto& b) {
              poke<uint64_t>(b, f32_info + 24, uint64_t(1) << 50);
          }).find("lies outside the data section") != std::string::npos);
    // A Q8_0 row must be whole blocks.
    const size_t q8_info = after(good, "weight.q8");
    CHECK(with([&](auto& b) {
              poke<uint64_t>(b, q8_info + 4, 33);
          }).find("not a multiple of Q8_0's block size 32") != std::string::npos);
    // A bool that is neither 0 nor 1.
    CHECK(with([&](auto& b) { b[after(good, "test.bool") + 4] = 7; }).find("bool value 7") !=
          std::string::npos);
}

TEST_CASE("duplicate keys and tensors, and a bad alignment, are refused") {
    GgufWriter dup;
    dup.add_u32("k", 1);
    dup.add_u32("k", 2);
    CHECK(parse_error(dup.serialize()).find("duplicate metadata key 'k'") != std::string::npos);

    GgufWriter dup_tensor;
    dup_tensor.add_tensor("w", TensorType::F32, {1}, std::vector<uint8_t>(4));
    dup_tensor.add_tensor("w", TensorType::F32, {1}, std::vector<uint8_t>(4));
    CHECK(parse_error(dup_tensor.serialize()).find("duplicate tensor 'w'") != std::string::npos);

    GgufWriter align;
    align.add_u32("general.alignment", 24);
    CHECK(parse_error(align.serialize()).find("expected a power of two") != std::string::npos);
}

TEST_CASE("a non-default alignment places tensor data on it") {
    GgufWriter w(64);
    w.add_tensor("a", TensorType::F32, {3}, std::vector<uint8_t>(12, 9));
    w.add_tensor("b", TensorType::F32, {1}, std::vector<uint8_t>(4, 7));
    const auto bytes = w.serialize();
    auto file = parse(bytes);
    CHECK(file->alignment() == 64);
    CHECK(file->data_offset() % 64 == 0);
    CHECK(file->tensors()[1].offset == 64);
    CHECK(file->tensors()[1].data[0] == 7);
}

TEST_CASE("opening a missing or empty file names it") {
    CHECK_THROWS_WITH_AS(GgufFile::open("/nonexistent/model.gguf"),
                         doctest::Contains("/nonexistent/model.gguf: cannot open"), Error);
    const std::string empty = test::temp_path("empty.gguf");
    { std::ofstream(empty).flush(); }
    CHECK_THROWS_WITH_AS(GgufFile::open(empty), doctest::Contains("expected a GGUF header"), Error);
    std::filesystem::remove(empty);
}
