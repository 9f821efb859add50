// matmul.h — the matrix-vector entry point every weight multiply goes through.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "model.h"

namespace woolly {

// One activation vector and its conversions to the forms weights' dot kernels take
// (F16, BF16, Q8_0, Q8_1, Q8_K). Each form is made at most once per vector, so q, k and v
// (or gate and up) share one quantization. Memory is reserved up front: no allocation later.
class MatvecInput {
public:
    explicit MatvecInput(int64_t max_n);

    // Points at a new vector of n floats (kept by the caller until the next set()).
    void set(const float* x, int64_t n);
    // The vector in `type`, converting it on first request.
    const void* as(TensorType type);

private:
    static constexpr size_t kFormats = 5;
    static size_t slot(TensorType type);

    const float* x_ = nullptr;
    int64_t n_ = 0;
    std::array<std::vector<uint8_t>, kFormats> converted_;
    std::array<bool, kFormats> valid_{};
};

class ThreadPool;

// y[r] = dot(W.row(r), x) for every row r: x has W.cols values, y has W.rows. With a pool, the
// rows are split into one contiguous range per thread.
void matvec(const WeightMatrix& w, MatvecInput& x, float* y, ThreadPool* pool = nullptr);

} // namespace woolly
