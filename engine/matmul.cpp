// matmul.cpp — weight-stationary products through the per-type dot kernel.
#include "matmul.h"

#include <algorithm>
#include <string>

#include "error.h"
#include "kernels.h"
#include "thread_pool.h"
#include "weight_cache.h"

namespace woolly {

MatmulInput::MatmulInput(int64_t max_n, int64_t max_batch) : max_n_(max_n), max_batch_(max_batch) {
    // Every activation format takes at most 2 bytes per value (Q8_K: 292 bytes per 256).
    for (auto& buffer : converted_) buffer.resize(size_t(max_batch) * (size_t(max_n) * 2 + 64));
    q8_sum_.resize(size_t(max_batch) * (size_t(max_n) / 32 + 1) * kQ8SumBlockBytes);
}

size_t MatmulInput::slot(TensorType type) {
    switch (type) {
    case TensorType::F16:
        return 0;
    case TensorType::BF16:
        return 1;
    case TensorType::Q8_0:
        return 2;
    case TensorType::Q8_1:
        return 3;
    case TensorType::Q8_K:
        return 4;
    default:
        throw Error(std::string("no activation format ") + type_traits(type).name);
    }
}

void MatmulInput::set(const float* x, int64_t n, int64_t count) {
    if (n > max_n_ || count > max_batch_ || count < 1) {
        throw Error("matmul input of " + std::to_string(count) + " x " + std::to_string(n) +
                    " exceeds the reserved " + std::to_string(max_batch_) + " x " +
                    std::to_string(max_n_));
    }
    x_ = x;
    n_ = n;
    count_ = count;
    valid_.fill(false);
    q8_sum_valid_ = false;
}

uint64_t MatmulInput::q8_sum_stride() const {
    return uint64_t(n_ / 32) * kQ8SumBlockBytes;
}

// Calls convert(i) for every vector i of a batch, split over `pool` when there are several.
namespace {
template <typename F> void for_each_vector(int64_t count, ThreadPool* pool, F&& convert) {
    if (!pool || pool->size() == 1 || count < 2) {
        for (int64_t i = 0; i < count; ++i) convert(i);
        return;
    }
    auto part = [&](int index, int n_threads) {
        for (int64_t i = count * index / n_threads; i < count * (index + 1) / n_threads; ++i)
            convert(i);
    };
    pool->run(part);
}
} // namespace

const uint8_t* MatmulInput::as_q8_sum(ThreadPool* pool) {
    if (!q8_sum_valid_) {
        const QuantizeRowFn quantize = active_kernels().quantizer(TensorType::Q8_0);
        const size_t s = slot(TensorType::Q8_0);
        const bool have_q8 = valid_[s];
        const uint64_t q8_stride = stride(TensorType::Q8_0), sum_stride = q8_sum_stride();
        // Both forms in one pass per vector: Q8_0 (for the rows outside whole groups), then
        // the Q8-sum form from it.
        for_each_vector(count_, pool, [&](int64_t i) {
            uint8_t* q8 = converted_[s].data() + uint64_t(i) * q8_stride;
            if (!have_q8) quantize(x_ + i * n_, q8, n_);
            q8_0_to_q8_sum(q8, q8_sum_.data() + uint64_t(i) * sum_stride, n_);
        });
        valid_[s] = true;
        q8_sum_valid_ = true;
    }
    return q8_sum_.data();
}

uint64_t MatmulInput::stride(TensorType type) const {
    return type == TensorType::F32 ? uint64_t(n_) * sizeof(float)
                                   : *row_bytes(type_traits(type), uint64_t(n_));
}

const uint8_t* MatmulInput::as(TensorType type, ThreadPool* pool) {
    if (type == TensorType::F32) return reinterpret_cast<const uint8_t*>(x_);
    const size_t s = slot(type);
    if (!valid_[s]) {
        const QuantizeRowFn quantize = active_kernels().quantizer(type);
        const uint64_t bytes = stride(type);
        for_each_vector(count_, pool, [&](int64_t i) {
            quantize(x_ + i * n_, converted_[s].data() + uint64_t(i) * bytes, n_);
        });
        valid_[s] = true;
    }
    return converted_[s].data();
}

namespace {

// Groups of 16 rows through the x16 kernel, the rows after the last group through the row
// kernel; contiguous ranges of groups per thread.
void matmul_x16(const WeightMatrix& w, const uint8_t* packed, GemmX16Fn gemm, MatmulInput& x,
                float* y, ThreadPool* pool) {
    const uint8_t* activations = x.as_q8_sum(pool);
    const uint64_t stride = x.q8_sum_stride();
    const int64_t count = x.count(), groups = w.rows / kRepackRows, n_blocks = w.cols / 32;
    const uint64_t group_bytes = uint64_t(kRepackRows) * w.row_bytes;
    const int64_t tail = w.rows - groups * kRepackRows;
    const uint8_t* tail_activations = tail ? x.as(TensorType::Q8_0) : nullptr;
    const uint64_t tail_stride = x.stride(TensorType::Q8_0);
    const VecDotFn dot = active_kernels().dot(w.traits->type);
    auto run = [&](int index, int n_threads) {
        const int64_t begin = groups * index / n_threads, end = groups * (index + 1) / n_threads;
        for (int64_t g = begin; g < end; ++g)
            gemm(packed + uint64_t(g) * group_bytes, n_blocks, activations, stride, count,
                 y + g * kRepackRows, w.rows);
        if (index == n_threads - 1) {
            for (int64_t r = groups * kRepackRows; r < w.rows; ++r)
                for (int64_t i = 0; i < count; ++i)
                    y[i * w.rows + r] =
                        dot(w.row(r), tail_activations + uint64_t(i) * tail_stride, w.cols);
        }
    };
    if (pool && pool->size() > 1)
        pool->run(run);
    else
        run(0, 1);
}

} // namespace

void matmul(const WeightMatrix& w, MatmulInput& x, float* y, ThreadPool* pool, WeightCache* cache) {
    if (cache) {
        if (const GemmX16Fn gemm = active_kernels().x16(w.traits->type)) {
            if (const uint8_t* packed = cache->find_or_build(w))
                return matmul_x16(w, packed, gemm, x, y, pool);
        }
    }
    const TensorType act_type = w.traits->vec_dot_type;
    const uint8_t* activations = x.as(act_type, pool); // once, before the rows are split
    const uint64_t stride = x.stride(act_type);
    const int64_t count = x.count();
    const VecDotFn dot = active_kernels().dot(w.traits->type);
    const VecDotRowsFn dot_rows = count > 1 ? active_kernels().dot_rows(w.traits->type) : nullptr;
    // A batch goes through blocks of rows (kept in L2) times tiles of vectors (kept in L1),
    // so neither the weights nor the activations are streamed from memory more than once.
    constexpr int64_t kRowBlock = 32, kVectorTile = 8;
    auto rows = [&](int index, int n_threads) {
        const int64_t begin = w.rows * index / n_threads, end = w.rows * (index + 1) / n_threads;
        if (!dot_rows) {
            for (int64_t r = begin; r < end; ++r)
                for (int64_t i = 0; i < count; ++i)
                    y[i * w.rows + r] = dot(w.row(r), activations + uint64_t(i) * stride, w.cols);
            return;
        }
        for (int64_t block = begin; block < end; block += kRowBlock) {
            const int64_t block_end = std::min(end, block + kRowBlock);
            for (int64_t tile = 0; tile < count; tile += kVectorTile) {
                const int64_t tile_count = std::min(kVectorTile, count - tile);
                for (int64_t r = block; r < block_end; ++r)
                    dot_rows(w.row(r), activations + uint64_t(tile) * stride, stride, tile_count,
                             w.cols, y + tile * w.rows + r, w.rows);
            }
        }
    };
    if (pool && pool->size() > 1)
        pool->run(rows);
    else
        rows(0, 1);
}

} // namespace woolly
