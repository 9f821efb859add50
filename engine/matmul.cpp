// matmul.cpp — weight-stationary products through the per-type dot kernel.
#include "matmul.h"

#include <string>

#include "error.h"
#include "kernels.h"
#include "thread_pool.h"

namespace woolly {

MatmulInput::MatmulInput(int64_t max_n, int64_t max_batch) : max_n_(max_n), max_batch_(max_batch) {
    // Every activation format takes at most 2 bytes per value (Q8_K: 292 bytes per 256).
    for (auto& buffer : converted_) buffer.resize(size_t(max_batch) * (size_t(max_n) * 2 + 64));
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
}

uint64_t MatmulInput::stride(TensorType type) const {
    return type == TensorType::F32 ? uint64_t(n_) * sizeof(float)
                                   : *row_bytes(type_traits(type), uint64_t(n_));
}

const uint8_t* MatmulInput::as(TensorType type) {
    if (type == TensorType::F32) return reinterpret_cast<const uint8_t*>(x_);
    const size_t s = slot(type);
    if (!valid_[s]) {
        const QuantizeRowFn quantize = active_kernels().quantizer(type);
        const uint64_t bytes = stride(type);
        for (int64_t i = 0; i < count_; ++i)
            quantize(x_ + i * n_, converted_[s].data() + uint64_t(i) * bytes, n_);
        valid_[s] = true;
    }
    return converted_[s].data();
}

void matmul(const WeightMatrix& w, MatmulInput& x, float* y, ThreadPool* pool) {
    const TensorType act_type = w.traits->vec_dot_type;
    const uint8_t* activations = x.as(act_type); // once, before the threads split
    const uint64_t stride = x.stride(act_type);
    const int64_t count = x.count();
    const VecDotFn dot = active_kernels().dot(w.traits->type);
    const VecDotRowsFn dot_rows = count > 1 ? active_kernels().dot_rows(w.traits->type) : nullptr;
    auto rows = [&](int index, int n_threads) {
        const int64_t begin = w.rows * index / n_threads, end = w.rows * (index + 1) / n_threads;
        for (int64_t r = begin; r < end; ++r) {
            const uint8_t* row = w.row(r);
            if (dot_rows) {
                dot_rows(row, activations, stride, count, w.cols, y + r, w.rows);
                continue;
            }
            for (int64_t i = 0; i < count; ++i)
                y[i * w.rows + r] = dot(row, activations + uint64_t(i) * stride, w.cols);
        }
    };
    if (pool && pool->size() > 1)
        pool->run(rows);
    else
        rows(0, 1);
}

} // namespace woolly
