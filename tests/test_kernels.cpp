// test_kernels.cpp — every SIMD kernel against its scalar reference, on awkward sizes, at every
// kernel level this CPU runs.
#include <cmath>
#include <cstring>
#include <random>

#include "engine/fp16.h"
#include "engine/kernels.h"
#include "engine/tensor_types.h"
#include "test_support.h"

using namespace woolly;

namespace {

const KernelLevel kLevels[] = {KernelLevel::Scalar, KernelLevel::Avx2};

// Random bytes for a row of `n` values of a block type, with every f16 scale a sane value.
std::vector<uint8_t> random_row(TensorType type, int64_t n, std::mt19937& rng) {
    const TypeTraits& t = type_traits(type);
    std::vector<uint8_t> row(*row_bytes(t, uint64_t(n)));
    std::uniform_int_distribution<int> byte(0, 255);
    for (auto& b : row) b = uint8_t(byte(rng));
    std::uniform_real_distribution<float> scale(-0.1f, 0.1f);
    std::normal_distribution<float> normal;
    if (type == TensorType::F32) {
        for (int64_t i = 0; i < n; ++i) {
            const float v = normal(rng);
            std::memcpy(row.data() + 4 * i, &v, 4);
        }
    } else if (type == TensorType::F16) {
        for (int64_t i = 0; i < n; ++i) {
            const uint16_t h = f32_to_f16(normal(rng));
            std::memcpy(row.data() + 2 * i, &h, 2);
        }
    } else { // Q4_0, Q8_0: the block starts with f16 d
        for (size_t b = 0; b < row.size(); b += t.type_size) {
            const uint16_t d = f32_to_f16(scale(rng));
            std::memcpy(row.data() + b, &d, 2);
        }
    }
    return row;
}

} // namespace

TEST_CASE("SIMD dot kernels agree with the scalar reference on awkward sizes") {
    std::mt19937 rng(1);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    const KernelTable reference = make_kernel_table(KernelLevel::Scalar);
    for (KernelLevel level : kLevels) {
        if (!cpu_supports(level)) {
            MESSAGE("skipped: this CPU cannot run the " << kernel_level_name(level) << " kernels");
            continue;
        }
        const KernelTable table = make_kernel_table(level);
        for (TensorType type :
             {TensorType::F32, TensorType::F16, TensorType::Q8_0, TensorType::Q4_0}) {
            const TypeTraits& traits = type_traits(type);
            const int64_t unit = traits.block_size;
            for (int64_t count : {1, 7, 31, 33, 255, 257}) {
                const int64_t n = count * unit;
                INFO(kernel_level_name(level) << " " << traits.name << " n=" << n);
                const auto row = random_row(type, n, rng);
                std::vector<float> x(static_cast<size_t>(n));
                for (auto& v : x) v = normal(rng);
                std::vector<uint8_t> xq(static_cast<size_t>(n) * 4 + 64);
                const void* act = x.data();
                if (traits.vec_dot_type != TensorType::F32) {
                    reference.quantizer(traits.vec_dot_type)(x.data(), xq.data(), n);
                    act = xq.data();
                }
                const double want = reference.dot(type)(row.data(), act, n);
                const double got = table.dot(type)(row.data(), act, n);
                // Only the order of float additions differs: bound by n ulps of the magnitudes.
                std::vector<float> w(static_cast<size_t>(n));
                traits.dequantize_row(row.data(), w.data(), n);
                double magnitude = 0.0;
                for (int64_t i = 0; i < n; ++i)
                    magnitude += std::fabs(double(w[size_t(i)]) * x[size_t(i)]);
                CHECK(std::fabs(got - want) <= magnitude * 1e-6 + 1e-6);
            }
        }
    }
}

TEST_CASE("batched dot kernels give each vector's single dot, bit for bit") {
    std::mt19937 rng(5);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (KernelLevel level : kLevels) {
        if (!cpu_supports(level)) continue;
        const KernelTable table = make_kernel_table(level);
        for (TensorType type : {TensorType::Q8_0, TensorType::Q4_0}) {
            const VecDotRowsFn rows = table.dot_rows(type);
            if (!rows) continue;
            for (int64_t blocks : {1, 7, 33}) {
                const int64_t n = blocks * 32;
                const auto row = random_row(type, n, rng);
                for (int64_t count : {1, 3, 4, 5, 9}) {
                    INFO(kernel_level_name(level)
                         << " " << type_traits(type).name << " n=" << n << " count=" << count);
                    const uint64_t stride = uint64_t(blocks) * 34;
                    std::vector<uint8_t> x(size_t(count) * stride);
                    std::vector<float> values(static_cast<size_t>(n));
                    for (int64_t i = 0; i < count; ++i) {
                        for (auto& v : values) v = normal(rng);
                        table.quantizer(TensorType::Q8_0)(values.data(),
                                                          x.data() + uint64_t(i) * stride, n);
                    }
                    std::vector<float> got(size_t(count) * 3, -1.0f);
                    rows(row.data(), x.data(), stride, count, n, got.data(), 3); // out_stride 3
                    for (int64_t i = 0; i < count; ++i) {
                        const float want =
                            table.dot(type)(row.data(), x.data() + uint64_t(i) * stride, n);
                        CHECK(std::memcmp(&got[size_t(i * 3)], &want, sizeof want) == 0);
                        CHECK(got[size_t(i * 3 + 1)] == -1.0f); // nothing written between outputs
                    }
                }
            }
        }
    }
}

TEST_CASE("SIMD activation quantizers give the reference's bytes, ties included") {
    std::mt19937 rng(2);
    std::normal_distribution<float> normal(0.0f, 3.0f);
    const KernelTable reference = make_kernel_table(KernelLevel::Scalar);
    for (KernelLevel level : kLevels) {
        if (!cpu_supports(level)) continue;
        const KernelTable table = make_kernel_table(level);
        for (int64_t blocks : {1, 7, 31, 33}) {
            std::vector<float> x(static_cast<size_t>(blocks * 32));
            for (auto& v : x) v = normal(rng);
            // Block 0 has amax 127, so the scale is 1 and these are exact half-way cases.
            const float ties[] = {127.0f, 0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -126.5f, 0.0f};
            std::copy(std::begin(ties), std::end(ties), x.begin());
            if (blocks > 1) std::fill(x.begin() + 32, x.begin() + 64, 0.0f); // an all-zero block
            std::vector<uint8_t> want(size_t(blocks) * 34), got(size_t(blocks) * 34);
            reference.quantizer(TensorType::Q8_0)(x.data(), want.data(), int64_t(x.size()));
            table.quantizer(TensorType::Q8_0)(x.data(), got.data(), int64_t(x.size()));
            INFO(kernel_level_name(level) << " blocks=" << blocks);
            CHECK(want == got);
            CHECK(int8_t(want[2 + 2]) == 2); // 1.5 -> 2
            CHECK(int8_t(want[2 + 3]) == 2); // 2.5 -> 2 (half to even)
        }
    }
}

TEST_CASE("an unsupported forced level is refused") {
    CHECK(cpu_supports(KernelLevel::Scalar));
    CHECK(make_kernel_table(KernelLevel::Scalar).level == KernelLevel::Scalar);
}
