// test_tensor_types.cpp — dequantization against gguf-py and ggml, 16-bit floats against an
// independent formula, and each quantized dot against the float dot of the dequantized operands.
#include <cmath>
#include <cstring>
#include <random>

#include "engine/quant/fp16.h"
#include "engine/gguf/gguf.h"
#include "engine/quant/tensor_types.h"
#include "test_support.h"

using namespace woolly;

namespace {

// Rows `<type>.raw` and their dequantization `<type>.expected`, made by others: gguf-py's in
// ../shared for most types; ggml's own for IQ4_XS, committed (tests/data/README.md says how it
// was made).
struct DequantVectors {
    std::string path;
    std::vector<const char*> types;
    bool shared;
};
std::vector<DequantVectors> dequant_vectors() {
    // The committed file first: a missing ../shared ends the test (WOOLLY_REQUIRE_SHARED).
    return {{std::string(WOOLLY_SOURCE_DIR) + "/tests/data/iq4_xs-dequant.gguf", {"iq4_xs"}, false},
            {test::shared_file("golden/dequant-vectors.gguf"),
             {"f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_k", "q3_k", "q4_k", "q5_k",
              "q6_k", "iq4_nl"},
             true}};
}

} // namespace

TEST_CASE("dequantization matches gguf-py's or ggml's bit for bit for every type") {
    for (const DequantVectors& source : dequant_vectors()) {
        if (source.shared) WOOLLY_REQUIRE_SHARED(source.path);
        auto file = GgufFile::open(source.path);
        for (const char* name : source.types) {
            INFO("type " << std::string(name));
            const GgufTensorInfo* raw = file->find_tensor(std::string(name) + ".raw");
            const GgufTensorInfo* expected = file->find_tensor(std::string(name) + ".expected");
            REQUIRE(raw);
            REQUIRE(expected);
            REQUIRE(expected->type == TensorType::F32);
            REQUIRE(raw->n_elements == expected->n_elements);
            CHECK(type_from_name(name) == raw->type);
            const TypeTraits& traits = type_traits(raw->type);
            REQUIRE((traits.dequantize_row != nullptr));
            std::vector<float> out(raw->n_elements);
            traits.dequantize_row(raw->data, out.data(), int64_t(raw->n_elements));
            size_t mismatches = 0;
            for (size_t i = 0; i < out.size(); ++i) {
                float want;
                std::memcpy(&want, expected->data + 4 * i, 4);
                if (f32_to_bits(out[i]) != f32_to_bits(want)) ++mismatches;
            }
            CHECK(mismatches == 0);
        }
    }
}

TEST_CASE("f16 -> f32 is exact for all 65536 halves; f32 -> f16 rounds to nearest even") {
    for (uint32_t h = 0; h < 65536; ++h) {
        const int sign = (h & 0x8000) ? -1 : 1;
        const int exponent = int((h >> 10) & 0x1f);
        const int mantissa = int(h & 0x3ff);
        const float got = f16_to_f32(uint16_t(h));
        if (exponent == 31) {
            CHECK((mantissa ? std::isnan(got) : std::isinf(got)));
            continue;
        }
        const double want = exponent == 0
                                ? sign * std::ldexp(double(mantissa), -24)
                                : sign * std::ldexp(double(1024 + mantissa), exponent - 25);
        REQUIRE(double(got) == want);
        REQUIRE(f32_to_f16(got) == uint16_t(h)); // every half survives the round trip
    }
    // Half-way cases go to the even neighbour: 1 + 2^-11 lies between 1 and 1 + 2^-10.
    CHECK(f32_to_f16(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);
    CHECK(f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3c02);
    CHECK(f32_to_f16(65520.0f) == 0x7c00); // rounds up to infinity
    CHECK(f32_to_f16(65519.0f) == 0x7bff);
    CHECK(f32_to_bf16(1.0f + std::ldexp(1.0f, -8)) == 0x3f80);
    CHECK(f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)) == 0x3f82);
}

namespace {

// Independent readers of the activation formats (d * q).
std::vector<double> dequantize_activations(TensorType type, const uint8_t* p, int64_t n) {
    std::vector<double> out(static_cast<size_t>(n));
    if (type == TensorType::F32) {
        for (int64_t i = 0; i < n; ++i) {
            float v;
            std::memcpy(&v, p + 4 * i, 4);
            out[size_t(i)] = v;
        }
    } else if (type == TensorType::F16 || type == TensorType::BF16) {
        for (int64_t i = 0; i < n; ++i) {
            uint16_t h;
            std::memcpy(&h, p + 2 * i, 2);
            out[size_t(i)] = type == TensorType::F16 ? f16_to_f32(h) : bf16_to_f32(h);
        }
    } else if (type == TensorType::Q8_0 || type == TensorType::Q8_1) {
        const int header = type == TensorType::Q8_0 ? 2 : 4;
        for (int64_t b = 0; b < n / 32; ++b, p += header + 32) {
            uint16_t d;
            std::memcpy(&d, p, 2);
            for (int j = 0; j < 32; ++j)
                out[size_t(b * 32 + j)] = double(f16_to_f32(d)) * int8_t(p[header + j]);
        }
    } else if (type == TensorType::Q8_K) {
        for (int64_t b = 0; b < n / 256; ++b, p += 292) {
            float d;
            std::memcpy(&d, p, 4);
            for (int j = 0; j < 256; ++j) out[size_t(b * 256 + j)] = double(d) * int8_t(p[4 + j]);
        }
    }
    return out;
}

} // namespace

TEST_CASE("every quantized dot equals the float dot of its dequantized operands") {
    for (const DequantVectors& source : dequant_vectors()) {
        if (source.shared) WOOLLY_REQUIRE_SHARED(source.path);
        auto file = GgufFile::open(source.path);
        std::mt19937 rng(42);
        std::normal_distribution<float> normal(0.0f, 1.0f);
        for (const char* name : source.types) {
            INFO("type " << std::string(name));
            const GgufTensorInfo* raw = file->find_tensor(std::string(name) + ".raw");
            REQUIRE(raw);
            const TypeTraits& traits = type_traits(raw->type);
            const int64_t n = int64_t(raw->dims[0]);
            std::vector<float> weights(static_cast<size_t>(n));
            std::vector<float> x(static_cast<size_t>(n));
            std::vector<uint8_t> activations(size_t(n) * 4 + 64);
            for (int row = 0; row < int(raw->dims[1]); ++row) {
                const uint8_t* w = raw->data + size_t(row) * *row_bytes(traits, uint64_t(n));
                traits.dequantize_row(w, weights.data(), n);
                for (auto& v : x) v = normal(rng);
                const TypeTraits& act = type_traits(traits.vec_dot_type);
                const void* xq = x.data();
                if (act.type != TensorType::F32) {
                    act.quantize_row(x.data(), activations.data(), n);
                    xq = activations.data();
                }
                const auto xd =
                    dequantize_activations(act.type, static_cast<const uint8_t*>(xq), n);
                double want = 0.0, scale = 0.0;
                for (int64_t i = 0; i < n; ++i) {
                    want += double(weights[size_t(i)]) * xd[size_t(i)];
                    scale += std::fabs(double(weights[size_t(i)]) * xd[size_t(i)]);
                }
                if (act.type == TensorType::Q8_1) {
                    // Q4_1/Q5_1 blocks start {f16 d, f16 m}; Q8_1 blocks {f16 d, f16 s}: the min's
                    // term is defined as m * s, where s is sum(x) rounded to f16.
                    const auto* wb = static_cast<const uint8_t*>(w);
                    const auto* xb = static_cast<const uint8_t*>(xq);
                    for (int64_t b = 0; b < n / 32; ++b) {
                        uint16_t m, sum_f16;
                        std::memcpy(&m, wb + b * traits.type_size + 2, 2);
                        std::memcpy(&sum_f16, xb + b * 36 + 2, 2);
                        double block_sum = 0.0;
                        for (int j = 0; j < 32; ++j) block_sum += xd[size_t(b * 32 + j)];
                        want += double(f16_to_f32(m)) * (double(f16_to_f32(sum_f16)) - block_sum);
                    }
                }
                const double got = traits.vec_dot(w, xq, n);
                CHECK(std::fabs(got - want) <= 1e-5 * scale + 1e-6);
                // And the activation quantization itself stays within about half a step of x (the
                // step's f16 rounding adds up to 127 * 2^-11 of a step).
                const int64_t block = act.block_size == 1 ? n : act.block_size;
                for (int64_t b = 0; b < n; b += block) {
                    double amax = 0.0;
                    for (int64_t i = b; i < b + block; ++i)
                        amax = std::max(amax, double(std::fabs(x[size_t(i)])));
                    const double step = act.block_size == 1 ? amax / 128.0 : amax / 127.0;
                    for (int64_t i = b; i < b + block; ++i)
                        REQUIRE(std::fabs(xd[size_t(i)] - x[size_t(i)]) <= step * 0.57 + 1e-7);
                }
            }
        }
    }
}

TEST_CASE("type table rows are consistent") {
    for (uint32_t id = 0; id < 64; ++id) {
        const TypeTraits* t = find_type_traits(id);
        if (!t) continue;
        INFO(t->name);
        CHECK(uint32_t(t->type) == id);
        CHECK(type_from_name(t->name) == t->type);
        if (t->vec_dot) {
            const TypeTraits& act = type_traits(t->vec_dot_type);
            CHECK((act.type == TensorType::F32 || act.quantize_row != nullptr));
            CHECK(t->block_size % act.block_size == 0);
        }
    }
    CHECK(row_bytes(type_traits(TensorType::Q4_K), 512) == 288u);
    CHECK_FALSE(row_bytes(type_traits(TensorType::Q4_K), 100).has_value());
}
