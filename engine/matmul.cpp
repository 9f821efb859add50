// matmul.cpp — matrix-vector products through the per-type dot kernel.
#include "matmul.h"

#include <string>

#include "error.h"
#include "kernels.h"
#include "thread_pool.h"

namespace woolly {

MatvecInput::MatvecInput(int64_t max_n) {
    // Every activation format takes at most 2 bytes per value (Q8_K: 292 bytes per 256).
    for (auto& buffer : converted_) buffer.resize(size_t(max_n) * 2 + 64);
}

size_t MatvecInput::slot(TensorType type) {
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

void MatvecInput::set(const float* x, int64_t n) {
    x_ = x;
    n_ = n;
    valid_.fill(false);
}

const void* MatvecInput::as(TensorType type) {
    if (type == TensorType::F32) return x_;
    const size_t s = slot(type);
    if (!valid_[s]) {
        active_kernels().quantizer(type)(x_, converted_[s].data(), n_);
        valid_[s] = true;
    }
    return converted_[s].data();
}

void matvec(const WeightMatrix& w, MatvecInput& x, float* y, ThreadPool* pool) {
    const void* activations = x.as(w.traits->vec_dot_type); // once, before the threads split
    const VecDotFn dot = active_kernels().dot(w.traits->type);
    auto rows = [&](int index, int count) {
        const int64_t begin = w.rows * index / count, end = w.rows * (index + 1) / count;
        for (int64_t r = begin; r < end; ++r) y[r] = dot(w.row(r), activations, w.cols);
    };
    if (pool && pool->size() > 1)
        pool->run(rows);
    else
        rows(0, 1);
}

} // namespace woolly
