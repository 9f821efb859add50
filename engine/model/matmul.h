// matmul.h — the entry point every weight multiply goes through: W times one activation
// vector (generation) or a batch of them (a prompt), reading each weight row once per batch.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <vector>

#include "engine/model/model.h"

namespace woolly {

class ThreadPool;
class WeightCache;

// A batch of activation vectors and their conversions to the forms the weights' dot kernels
// take (F16, BF16, Q8_0, Q8_1, Q8_K). Each form is made at most once per batch, so q, k and v
// (or gate and up) share one quantization. Memory is reserved up front: no allocation later.
class MatmulInput {
public:
    MatmulInput(int64_t max_n, int64_t max_batch);

    // Points at `count` vectors of n floats each, one after another (kept by the caller until
    // the next set()).
    void set(const float* x, int64_t n, int64_t count);
    // As set(y, n, count) after y [count][n] = rmsnorm(x [count][n]) * weight, one pass per
    // row: each block of `form` (Q8_0 with its Q8-sum form, or Q8_K) is normalised and at once
    // quantized while in L1, the form the next matmuls read. Any other form is made on
    // request, as after set(). Rows are split over `pool`.
    void set_rmsnorm(const float* x, const float* weight, float eps, int64_t n, int64_t count,
                     float* y, TensorType form, ThreadPool* pool = nullptr);
    // The batch in `type` (converted on first request): vector i starts at i * stride(type).
    // A batch of several vectors is converted on `pool`'s threads (when given).
    const uint8_t* as(TensorType type, ThreadPool* pool = nullptr);
    uint64_t stride(TensorType type) const;
    // The batch in the Q8-sum form of the x16 kernels (repack.h), from the Q8_0 form.
    const uint8_t* as_q8_sum(ThreadPool* pool = nullptr);
    uint64_t q8_sum_stride() const;
    int64_t count() const { return count_; }
    // Bytes the buffers of an input of these sizes take.
    static size_t bytes_for(int64_t max_n, int64_t max_batch);

private:
    static constexpr size_t kFormats = 5;
    // Bytes of one format's buffer, and of the Q8-sum form's.
    static size_t format_bytes(int64_t max_n, int64_t max_batch);
    static size_t q8_sum_bytes(int64_t max_n, int64_t max_batch);
    static size_t slot(TensorType type);

    const float* x_ = nullptr;
    int64_t n_ = 0;
    int64_t count_ = 0;
    int64_t max_n_;
    int64_t max_batch_;
    std::array<std::vector<uint8_t>, kFormats> converted_;
    std::array<bool, kFormats> valid_{};
    std::vector<uint8_t> q8_sum_;
    bool q8_sum_valid_ = false;
};

// y[i][r] = dot(W.row(r), x[i]) for every row r and vector i: x holds count vectors of W.cols
// values, y count vectors of W.rows. Rows are split into one contiguous range per thread of
// `pool`; each row is read once and used for every vector of the batch while it is in cache.
// With a `cache` and a kernel level that has x16 kernels for w's type, whole groups of 16 rows
// are read from their x16 form (built on first use) and the remaining rows from the file.
void matmul(const WeightMatrix& w, MatmulInput& x, float* y, ThreadPool* pool = nullptr,
            WeightCache* cache = nullptr);

struct MatmulOutput {
    const WeightMatrix* w;
    float* y;
    const float* bias = nullptr; // [w->rows] added to every output vector, or none
};
// Several matrices (at most 4) times the same input, as matmul each, handed to the pool once:
// threads go on to the next matrix without waiting for the others (q, k and v; gate and up).
void matmul_same_input(std::initializer_list<MatmulOutput> outputs, MatmulInput& x,
                       ThreadPool* pool = nullptr, WeightCache* cache = nullptr);

} // namespace woolly
