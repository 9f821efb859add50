// test_kernels.cpp — every SIMD kernel against its scalar reference, on awkward sizes, at every
// kernel level this CPU runs.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "engine/error.h"
#include "engine/quant/fp16.h"
#include "engine/kernels/kernels.h"
#include "engine/model/matmul.h"
#include "engine/kernels/ops.h"
#include "engine/quant/repack.h"
#include "engine/quant/tensor_types.h"
#include "engine/runtime/thread_pool.h"
#include "engine/model/weight_cache.h"
#include "test_support.h"

using namespace woolly;

namespace {

const auto& kLevels = kAllKernelLevels;

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
    } else if (type == TensorType::BF16) {
        for (int64_t i = 0; i < n; ++i) {
            const uint16_t h = f32_to_bf16(normal(rng));
            std::memcpy(row.data() + 2 * i, &h, 2);
        }
    } else if (type == TensorType::Q4_K || type == TensorType::Q6_K) {
        // f16 d (and dmin) at their places in the block.
        for (size_t b = 0; b < row.size(); b += t.type_size) {
            for (size_t at :
                 type == TensorType::Q4_K ? std::vector<size_t>{0, 2} : std::vector<size_t>{208}) {
                const uint16_t d = f32_to_f16(std::fabs(scale(rng)));
                std::memcpy(row.data() + b + at, &d, 2);
            }
        }
    } else { // Q4_0, Q8_0, IQ4_XS: the block starts with f16 d
        for (size_t b = 0; b < row.size(); b += t.type_size) {
            const uint16_t d = f32_to_f16(scale(rng));
            std::memcpy(row.data() + b, &d, 2);
        }
    }
    return row;
}

// `count` vectors of n values ~ N(0, 1) in activation form `act`, `stride` bytes apart.
std::vector<uint8_t> random_activations(const KernelTable& table, TensorType act, int64_t n,
                                        int64_t count, uint64_t stride, std::mt19937& rng) {
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<uint8_t> x(size_t(count) * stride);
    std::vector<float> values(static_cast<size_t>(n));
    for (int64_t i = 0; i < count; ++i) {
        for (auto& v : values) v = normal(rng);
        if (act == TensorType::F32)
            std::memcpy(&x[i * stride], values.data(), size_t(n) * 4);
        else
            table.quantizer(act)(values.data(), &x[i * stride], n);
    }
    return x;
}

} // namespace

TEST_CASE("SIMD dot kernels agree with the scalar reference on awkward sizes") {
    std::mt19937 rng(1);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    const KernelTable reference = make_kernel_table(KernelLevel::Scalar);
    for (KernelLevel level : kLevels) {
        if (!cpu_supports(level)) {
            MESSAGE("skipped: this CPU cannot run the " << std::string(kernel_level_name(level))
                                                        << " kernels");
            continue;
        }
        const KernelTable table = make_kernel_table(level);
        for (TensorType type :
             {TensorType::F32, TensorType::F16, TensorType::Q8_0, TensorType::Q4_0,
              TensorType::Q4_K, TensorType::Q6_K, TensorType::IQ4_XS}) {
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
                // AVX2's and NEON's k-quant rows keep the reference's integer sums and float
                // steps, and so do IQ4_XS's at every level.
                if (((level == KernelLevel::Avx2 || level == KernelLevel::Neon) &&
                     (type == TensorType::Q4_K || type == TensorType::Q6_K)) ||
                    type == TensorType::IQ4_XS)
                    CHECK(got == want);
            }
        }
    }
}

TEST_CASE("batched dot kernels give each vector's single dot, bit for bit") {
    std::mt19937 rng(5);
    for (KernelLevel level : kLevels) {
        if (!cpu_supports(level)) continue;
        const KernelTable table = make_kernel_table(level);
        for (TensorType type : {TensorType::Q8_0, TensorType::Q4_0, TensorType::F16,
                                TensorType::BF16, TensorType::Q4_K, TensorType::Q6_K}) {
            const VecDotRowsFn rows = table.dot_rows(type);
            if (!rows) continue;
            const TypeTraits& traits = type_traits(type);
            for (int64_t units : {1, 7, 31, 33, 257}) {
                const int64_t n = units * int64_t(traits.block_size);
                const auto row = random_row(type, n, rng);
                for (int64_t count : {1, 3, 4, 5, 9}) {
                    INFO(std::string(kernel_level_name(level))
                         << " " << std::string(traits.name) << " n=" << n << " count=" << count);
                    const TensorType act = traits.vec_dot_type;
                    const uint64_t stride = *row_bytes(type_traits(act), uint64_t(n));
                    const auto x = random_activations(table, act, n, count, stride, rng);
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

TEST_CASE("SIMD Q8_K quantizers give the reference's bytes, ties and signs included") {
    std::mt19937 rng(3);
    std::normal_distribution<float> normal(0.0f, 3.0f);
    const KernelTable reference = make_kernel_table(KernelLevel::Scalar);
    for (KernelLevel level : kLevels) {
        if (!cpu_supports(level)) continue;
        const KernelTable table = make_kernel_table(level);
        for (int64_t blocks : {1, 2, 5}) {
            std::vector<float> x(static_cast<size_t>(blocks * 256));
            for (auto& v : x) v = normal(rng);
            // Block 0: -127, and +127 further on (in another vector of 16): the same magnitude,
            // the first sets the sign (scale 1, so the rest are exact half-way cases).
            const float ties[] = {-127.0f, 0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -126.5f};
            for (size_t i = 0; i < std::size(ties); ++i) x[40 + i] = ties[i];
            x[100] = 127.0f;
            if (blocks > 1) std::fill(x.begin() + 256, x.begin() + 512, 0.0f); // all zero
            const size_t bytes = size_t(blocks) * (4 + 256 + 32);
            std::vector<uint8_t> want(bytes), got(bytes);
            reference.quantizer(TensorType::Q8_K)(x.data(), want.data(), int64_t(x.size()));
            table.quantizer(TensorType::Q8_K)(x.data(), got.data(), int64_t(x.size()));
            INFO(kernel_level_name(level) << " blocks=" << blocks);
            CHECK(want == got);
            // -127 came first: the scale is -127 / -127 = 1.
            CHECK(int8_t(want[4 + 40]) == -127);
            CHECK(int8_t(want[4 + 100]) == 127);
            CHECK(int8_t(want[4 + 42]) == 2); // 1.5 -> 2
            CHECK(int8_t(want[4 + 43]) == 2); // 2.5 -> 2 (half to even)
        }
    }
}

TEST_CASE("an unsupported forced level is refused") {
    CHECK(cpu_supports(KernelLevel::Scalar));
    CHECK(make_kernel_table(KernelLevel::Scalar).level == KernelLevel::Scalar);
    for (KernelLevel level : kAllKernelLevels) {
        INFO(kernel_level_name(level));
        if (cpu_supports(level))
            CHECK(make_kernel_table(level).level == level);
        else
            CHECK_THROWS_AS(make_kernel_table(level), Error);
    }
#if defined(__aarch64__)
    CHECK(detect_kernel_level() == KernelLevel::Neon); // qemu's CPU has ASIMD and dotprod
#endif
}

namespace {

// A WeightMatrix over `data` of rows x cols values of `type`.
WeightMatrix matrix_over(std::vector<uint8_t>& data, TensorType type, int64_t rows, int64_t cols) {
    WeightMatrix w;
    w.name = "test";
    w.traits = &type_traits(type);
    w.cols = cols;
    w.rows = rows;
    w.row_bytes = *row_bytes(*w.traits, uint64_t(cols));
    w.data = data.data();
    return w;
}

std::vector<uint8_t> random_matrix(TensorType type, int64_t rows, int64_t cols, std::mt19937& rng) {
    std::vector<uint8_t> data;
    for (int64_t r = 0; r < rows; ++r) {
        const auto row = random_row(type, cols, rng);
        data.insert(data.end(), row.begin(), row.end());
    }
    return data;
}

} // namespace

TEST_CASE("x16 kernels give the row reference's bits on awkward sizes") {
    std::mt19937 rng(11);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    const KernelTable reference = make_kernel_table(KernelLevel::Scalar);
    // Three groups: the kernels take a pair, then one alone.
    constexpr int64_t kGroups = 3, kRows = kGroups * kRepackRows;
    struct Case {
        TensorType type;
        GemmX16Fn scalar_x16;
        std::vector<int64_t> blocks; // block columns (of 32 values, or 256 for Q4_K)
    };
    for (const Case& c : {Case{TensorType::Q4_0, gemm_x16_q4_0_reference, {1, 7, 31, 33, 255, 257}},
                          Case{TensorType::Q8_0, gemm_x16_q8_0_reference, {1, 7, 31, 33, 255, 257}},
                          Case{TensorType::Q4_K, gemm_x16_q4_k_reference, {1, 3, 7, 9, 22}},
                          Case{TensorType::Q6_K, gemm_x16_q6_k_reference, {1, 3, 7, 9, 22}}}) {
        const TensorType type = c.type, act_type = x16_activation_type(type);
        for (int64_t blocks : c.blocks) {
            const int64_t n = blocks * int64_t(type_traits(type).block_size);
            auto data = random_matrix(type, kRows, n, rng);
            const WeightMatrix w = matrix_over(data, type, kRows, n);
            std::vector<uint8_t> packed(x16_bytes(w));
            repack_x16(w, packed.data());
            // Every remainder of the kernels' vector tiles, and several whole tiles.
            for (int64_t count : {1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 17, 20}) {
                INFO(std::string(type_traits(type).name) << " n=" << n << " count=" << count);
                // The row kernels' activations, and the x16 kernels' (the Q8-sum form made
                // from Q8_0; Q8_K itself).
                const uint64_t act_stride = *row_bytes(type_traits(act_type), uint64_t(n));
                const uint64_t sum_stride = uint64_t(n / 32) * kQ8SumBlockBytes;
                std::vector<uint8_t> act(size_t(count) * act_stride),
                    sums(size_t(count) * sum_stride);
                std::vector<float> values(static_cast<size_t>(n));
                for (int64_t m = 0; m < count; ++m) {
                    for (auto& v : values) v = normal(rng);
                    reference.quantizer(act_type)(values.data(), &act[m * act_stride], n);
                    if (act_type == TensorType::Q8_0)
                        q8_0_to_q8_sum(&act[m * act_stride], &sums[m * sum_stride], n);
                }
                const bool q8_sum = act_type == TensorType::Q8_0;
                const uint8_t* x16_x = q8_sum ? sums.data() : act.data();
                const uint64_t x16_stride = q8_sum ? sum_stride : act_stride;
                // The oracle: the scalar row kernel, row by row.
                std::vector<float> want(size_t(count * kRows));
                for (int64_t m = 0; m < count; ++m)
                    for (int64_t r = 0; r < kRows; ++r)
                        want[size_t(m * kRows + r)] =
                            reference.dot(type)(w.row(r), &act[m * act_stride], n);
                std::vector<float> got(want.size(), -1.0f);
                c.scalar_x16(packed.data(), kGroups, blocks, x16_x, x16_stride, count, got.data(),
                             kRows);
                CHECK(std::memcmp(got.data(), want.data(), want.size() * 4) == 0);
                for (KernelLevel level : kLevels) {
                    if (!cpu_supports(level)) continue;
                    const GemmX16Fn simd = make_kernel_table(level).x16(type);
                    if (!simd) continue;
                    INFO(kernel_level_name(level));
                    std::fill(got.begin(), got.end(), -1.0f);
                    simd(packed.data(), kGroups, blocks, x16_x, x16_stride, count, got.data(),
                         kRows);
                    CHECK(std::memcmp(got.data(), want.data(), want.size() * 4) == 0);
                }
            }
        }
    }
}

TEST_CASE("matmul through the weight cache gives the same bits as from the file") {
    std::mt19937 rng(12);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (TensorType type :
         {TensorType::Q4_0, TensorType::Q8_0, TensorType::Q4_K, TensorType::Q6_K}) {
        const int64_t rows = 3 * kRepackRows + 5; // a tail of 5 rows
        const int64_t cols = 7 * int64_t(type_traits(type).block_size);
        const TensorType act_type = type_traits(type).vec_dot_type;
        auto data = random_matrix(type, rows, cols, rng);
        const WeightMatrix w = matrix_over(data, type, rows, cols);
        for (int64_t count : {1, 6}) {
            INFO(std::string(type_traits(type).name) << " count=" << count);
            std::vector<float> x(size_t(count * cols));
            for (auto& v : x) v = normal(rng);
            MatmulInput input(cols, count);
            input.set(x.data(), cols, count);
            // The oracle: the scalar row kernel (the x16 kernels keep its order of additions);
            // the 5 rows after the last group go through the level's row kernel (tested above).
            // (Q6_K's x16 form serves batches only.)
            const bool has_kernel =
                active_kernels().x16(type) != nullptr && (count > 1 || x16_serves_generation(type));
            const KernelTable& reference =
                has_kernel ? make_kernel_table(KernelLevel::Scalar) : active_kernels();
            const uint8_t* act = input.as(act_type);
            std::vector<float> direct(size_t(count * rows)), cached(direct.size(), -1.0f);
            for (int64_t m = 0; m < count; ++m)
                for (int64_t r = 0; r < rows; ++r)
                    direct[size_t(m * rows + r)] =
                        (r < 3 * kRepackRows ? reference : active_kernels())
                            .dot(type)(w.row(r), act + uint64_t(m) * input.stride(act_type), cols);
            WeightCache cache(1 << 20);
            matmul(w, input, cached.data(), nullptr, &cache);
            matmul(w, input, cached.data(), nullptr, &cache);
            CHECK(std::memcmp(direct.data(), cached.data(), direct.size() * 4) == 0);
            const WeightCacheStats stats = cache.stats();
            CHECK(stats.misses == (has_kernel ? 1 : 0));
            CHECK(stats.hits == (has_kernel ? 1 : 0));
            CHECK(stats.bytes == (has_kernel ? x16_bytes(w) : 0));
        }
    }
}

TEST_CASE("the weight cache keeps to its budget, evicts the least recently used, and stops "
          "thrashing") {
    std::mt19937 rng(13);
    const int64_t cols = 4 * 32;
    std::vector<uint8_t> a = random_matrix(TensorType::Q8_0, 16, cols, rng),
                         b = random_matrix(TensorType::Q8_0, 16, cols, rng),
                         c = random_matrix(TensorType::Q8_0, 16, cols, rng);
    const WeightMatrix wa = matrix_over(a, TensorType::Q8_0, 16, cols),
                       wb = matrix_over(b, TensorType::Q8_0, 16, cols),
                       wc = matrix_over(c, TensorType::Q8_0, 16, cols);
    const uint64_t one = x16_bytes(wa); // 16 rows * 4 blocks * 34 bytes
    CHECK(one == 16 * 4 * 34);
    WeightCache cache(2 * one + one / 2); // holds two of the three
    // The built form really is the repack of its matrix.
    std::vector<uint8_t> want(one);
    repack_x16(wa, want.data());
    const uint8_t* pa = cache.find_or_build(wa);
    REQUIRE(pa != nullptr);
    CHECK(std::memcmp(pa, want.data(), one) == 0);
    CHECK(cache.find_or_build(wb) != nullptr);
    CHECK(cache.find_or_build(wa) == pa);      // a hit, and a is now the most recent
    CHECK(cache.find_or_build(wc) != nullptr); // evicts b, the least recently used
    WeightCacheStats s = cache.stats();
    CHECK(s.hits == 1);
    CHECK(s.misses == 3);
    CHECK(s.evictions == 1);
    CHECK(s.entries == 2);
    CHECK(s.bytes == 2 * one);
    CHECK(s.bytes <= s.budget);
    CHECK(cache.find_or_build(wa) == pa); // still there
    // b was evicted once: it is served from the file now rather than evicting another.
    CHECK(cache.find_or_build(wb) == nullptr);
    s = cache.stats();
    CHECK(s.bypasses == 1);
    CHECK(s.evictions == 1);
    CHECK(s.entries == 2);
    // A matrix larger than the whole budget is never built.
    WeightCache tiny(one - 1);
    CHECK(tiny.find_or_build(wa) == nullptr);
    CHECK(tiny.stats().bytes == 0);
    // Types without an x16 layout are not cached.
    std::vector<uint8_t> f = random_matrix(TensorType::F16, 16, cols, rng);
    CHECK(cache.find_or_build(matrix_over(f, TensorType::F16, 16, cols)) == nullptr);
}

TEST_CASE("SIMD SwiGLU agrees with the scalar reference to float rounding, extremes included") {
    std::mt19937 rng(14);
    std::normal_distribution<float> normal(0.0f, 4.0f);
    for (KernelLevel level : kLevels) {
        if (!cpu_supports(level)) continue;
        const KernelTable table = make_kernel_table(level);
        for (int64_t n : {1, 7, 15, 16, 17, 31, 33, 255, 257}) {
            INFO(std::string(kernel_level_name(level)) << " n=" << n);
            std::vector<float> gate(static_cast<size_t>(n)), up(static_cast<size_t>(n));
            for (auto& v : gate) v = normal(rng);
            for (auto& v : up) v = normal(rng);
            const float extremes[] = {0.0f, -0.0f, 88.0f, -88.0f, 100.0f, -100.0f, 1e-30f};
            for (size_t i = 0; i < std::size(extremes) && i < gate.size(); ++i)
                gate[i] = extremes[i];
            std::vector<float> want = gate, got = gate;
            swiglu_reference(want.data(), up.data(), n);
            table.swiglu(got.data(), up.data(), n);
            for (int64_t i = 0; i < n; ++i) {
                const float w = want[size_t(i)], g = got[size_t(i)];
                INFO("gate " << gate[size_t(i)] << " up " << up[size_t(i)]);
                CHECK(std::fabs(g - w) <= 1e-6f * std::fabs(w) + 1e-30f);
            }
        }
    }
}

TEST_CASE("SIMD softmax exponentials agree with the scalar reference") {
    std::mt19937 rng(15);
    std::normal_distribution<float> normal(0.0f, 5.0f);
    for (KernelLevel level : kLevels) {
        if (!cpu_supports(level)) continue;
        const KernelTable table = make_kernel_table(level);
        for (int64_t n : {1, 7, 15, 16, 17, 33, 257}) {
            INFO(std::string(kernel_level_name(level)) << " n=" << n);
            std::vector<float> x(static_cast<size_t>(n));
            for (auto& v : x) v = normal(rng);
            x[0] = -200.0f; // underflows to 0
            const float shift = *std::max_element(x.begin(), x.end());
            std::vector<float> want = x, got = x;
            const double want_sum = exp_sum_reference(want.data(), n, shift);
            const double got_sum = table.exp_sum(got.data(), n, shift);
            CHECK(std::fabs(got_sum - want_sum) <= 1e-6 * want_sum);
            for (int64_t i = 0; i < n; ++i)
                CHECK(std::fabs(got[size_t(i)] - want[size_t(i)]) <=
                      1e-6f * want[size_t(i)] + 1e-38f);
        }
    }
}

TEST_CASE("SIMD float products give the scalar reference's bits on awkward shapes") {
    std::mt19937 rng(17);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (KernelLevel level : kLevels) {
        if (!cpu_supports(level)) continue;
        const KernelTable table = make_kernel_table(level);
        for (int64_t m : {1, 3, 4, 5, 9})
            for (int64_t n : {1, 7, 8, 15, 16, 17, 33, 64, 65, 130})
                for (int64_t k : {1, 7, 64, 65})
                    for (bool accumulate : {false, true}) {
                        INFO(kernel_level_name(level) << " m=" << m << " n=" << n << " k=" << k
                                                      << " accumulate=" << accumulate);
                        // Leading dimensions wider than the rows: the gaps must stay untouched.
                        const int64_t lda = k + 3, ldb = n + 5, ldc = n + 2;
                        std::vector<float> a(size_t(m * lda)), b(size_t(k * ldb)),
                            c(size_t(m * ldc));
                        for (auto* v : {&a, &b, &c})
                            for (float& x : *v) x = normal(rng);
                        std::vector<float> want = c, got = c;
                        gemm_f32_reference(m, n, k, a.data(), lda, b.data(), ldb, want.data(), ldc,
                                           accumulate);
                        table.gemm_f32(m, n, k, a.data(), lda, b.data(), ldb, got.data(), ldc,
                                       accumulate);
                        CHECK(std::memcmp(got.data(), want.data(), got.size() * 4) == 0);
                    }
    }
}

TEST_CASE("row-tile GEMM kernels give every pair the single dot's bits") {
    std::mt19937 rng(16);
    for (KernelLevel level : kLevels) {
        if (!cpu_supports(level)) continue;
        const KernelTable table = make_kernel_table(level);
        for (TensorType type : {TensorType::F16, TensorType::BF16}) {
            const GemmRowsFn gemm = table.rows_gemm(type);
            if (!gemm) continue;
            const TypeTraits& traits = type_traits(type);
            // Beyond 512 values the kernels go range by range; beyond 16 rows or 12 vectors,
            // block by block.
            for (int64_t n : {1, 7, 33, 257, 1000, 1537}) {
                for (int64_t n_rows : {1, 3, 4, 5, 9, 17}) {
                    for (int64_t count : {1, 5, 6, 7, 13}) {
                        INFO(std::string(kernel_level_name(level))
                             << " " << std::string(traits.name) << " n=" << n << " rows=" << n_rows
                             << " count=" << count);
                        const uint64_t row_size = *row_bytes(traits, uint64_t(n));
                        std::vector<uint8_t> rows;
                        for (int64_t r = 0; r < n_rows; ++r) {
                            const auto row = random_row(type, n, rng);
                            rows.insert(rows.end(), row.begin(), row.end());
                        }
                        const TensorType act = traits.vec_dot_type;
                        const uint64_t stride = *row_bytes(type_traits(act), uint64_t(n));
                        const auto x = random_activations(table, act, n, count, stride, rng);
                        const int64_t out_stride = n_rows + 2; // gaps stay untouched
                        std::vector<float> got(size_t(count * out_stride), -1.0f);
                        gemm(rows.data(), row_size, n_rows, x.data(), stride, count, n, got.data(),
                             out_stride);
                        for (int64_t i = 0; i < count; ++i) {
                            for (int64_t r = 0; r < n_rows; ++r) {
                                const float want =
                                    table.dot(type)(&rows[r * row_size], &x[i * stride], n);
                                CHECK(std::memcmp(&got[size_t(i * out_stride + r)], &want, 4) == 0);
                            }
                            CHECK(got[size_t(i * out_stride + n_rows)] == -1.0f);
                        }
                    }
                }
            }
        }
    }
}

TEST_CASE("SIMD F16 conversions give the reference's bits, special values included") {
    std::mt19937 rng(17);
    std::normal_distribution<float> normal(0.0f, 100.0f);
    const KernelTable reference = make_kernel_table(KernelLevel::Scalar);
    for (KernelLevel level : kLevels) {
        if (!cpu_supports(level)) continue;
        const KernelTable table = make_kernel_table(level);
        for (int64_t n : {1, 7, 8, 9, 31, 33, 257}) {
            INFO(std::string(kernel_level_name(level)) << " n=" << n);
            std::vector<float> x(static_cast<size_t>(n));
            for (auto& v : x) v = normal(rng);
            const float specials[] = {0.0f,   -0.0f,    65504.0f,  65520.0f, 1e-7f,
                                      -3e-5f, INFINITY, -INFINITY, 1e9f,     6.1e-5f};
            for (size_t i = 0; i < std::size(specials) && i < x.size(); ++i) x[i] = specials[i];
            std::vector<uint16_t> want(x.size()), got(x.size());
            reference.quantizer(TensorType::F16)(x.data(), want.data(), n);
            table.quantizer(TensorType::F16)(x.data(), got.data(), n);
            CHECK(want == got);
            std::vector<float> back_want(x.size()), back_got(x.size());
            reference.dequantizer(TensorType::F16)(want.data(), back_want.data(), n);
            table.dequantizer(TensorType::F16)(want.data(), back_got.data(), n);
            CHECK(std::memcmp(back_want.data(), back_got.data(), x.size() * 4) == 0);
        }
    }
}

TEST_CASE("a normalised batch quantized in the same pass gives the bytes of norm, then convert") {
    std::mt19937 rng(18);
    std::normal_distribution<float> normal(0.0f, 3.0f);
    ThreadPool pool(2);
    for (TensorType form : {TensorType::Q8_0, TensorType::Q8_K, TensorType::F32}) {
        for (int64_t n : {int64_t(32), int64_t(256), int64_t(512 + 32)}) {
            INFO(type_traits(form).name << " n=" << n);
            const int64_t count = 3;
            std::vector<float> x(size_t(count * n)), weight(static_cast<size_t>(n));
            for (float& v : x) v = normal(rng);
            for (float& v : weight) v = normal(rng);
            // The oracle: rmsnorm row by row, then the lazy conversions of a plain set().
            std::vector<float> want_y(x.size());
            for (int64_t i = 0; i < count; ++i)
                rmsnorm(&want_y[size_t(i * n)], &x[size_t(i * n)], weight.data(), n, 1e-5f);
            MatmulInput plain(n, count), fused(n, count);
            plain.set(want_y.data(), n, count);
            std::vector<float> got_y(x.size(), -1.0f);
            fused.set_rmsnorm(x.data(), weight.data(), 1e-5f, n, count, got_y.data(), form, &pool);
            CHECK(got_y == want_y);
            for (TensorType type : {TensorType::Q8_0, TensorType::Q8_K, TensorType::F16}) {
                if (type == TensorType::Q8_K && n % 256 != 0) continue;
                const uint64_t bytes = uint64_t(count) * plain.stride(type);
                CHECK(std::memcmp(fused.as(type), plain.as(type), size_t(bytes)) == 0);
            }
            const uint64_t sum_bytes = uint64_t(count) * plain.q8_sum_stride();
            CHECK(std::memcmp(fused.as_q8_sum(), plain.as_q8_sum(), size_t(sum_bytes)) == 0);
        }
    }
}

TEST_CASE("a weight cache build split over threads writes the same bytes as one thread") {
    std::mt19937 rng(19);
    ThreadPool pool(2);
    for (TensorType type :
         {TensorType::Q4_0, TensorType::Q8_0, TensorType::Q4_K, TensorType::Q6_K}) {
        INFO(type_traits(type).name);
        const int64_t rows = 7 * kRepackRows + 3, cols = 2 * int64_t(type_traits(type).block_size);
        auto data = random_matrix(type, rows, cols, rng);
        const WeightMatrix w = matrix_over(data, type, rows, cols);
        std::vector<uint8_t> want(x16_bytes(w));
        repack_x16(w, want.data());
        WeightCache cache(1 << 20);
        const uint8_t* got = cache.find_or_build(w, &pool);
        REQUIRE(got != nullptr);
        CHECK(std::memcmp(got, want.data(), want.size()) == 0);
    }
}
