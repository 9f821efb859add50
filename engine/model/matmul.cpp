// matmul.cpp — weight-stationary products through the per-type dot kernel.
#include "engine/model/matmul.h"

#include <algorithm>
#include <atomic>
#include <optional>
#include <string>

#include "engine/error.h"
#include "engine/kernels/kernels.h"
#include "engine/kernels/ops.h"
#include "engine/runtime/thread_pool.h"
#include "engine/model/weight_cache.h"

namespace woolly {

// Calls convert(i) for every vector i of a batch, split over `pool` when there are several.
namespace {
template <typename F> void for_each_vector(int64_t count, ThreadPool* pool, F&& convert) {
    auto part = [&](int index, int n_threads) {
        for (int64_t i = count * index / n_threads; i < count * (index + 1) / n_threads; ++i)
            convert(i);
    };
    run_split(count > 1 ? pool : nullptr, part);
}
} // namespace

// Every activation format takes at most 2 bytes per value (Q8_K: 292 bytes per 256).
size_t MatmulInput::format_bytes(int64_t max_n, int64_t max_batch) {
    return size_t(max_batch) * (size_t(max_n) * 2 + 64);
}

size_t MatmulInput::q8_sum_bytes(int64_t max_n, int64_t max_batch) {
    return size_t(max_batch) * (size_t(max_n) / 32 + 1) * kQ8SumBlockBytes;
}

size_t MatmulInput::bytes_for(int64_t max_n, int64_t max_batch) {
    return kFormats * format_bytes(max_n, max_batch) + q8_sum_bytes(max_n, max_batch);
}

MatmulInput::MatmulInput(int64_t max_n, int64_t max_batch) : max_n_(max_n), max_batch_(max_batch) {
    for (auto& buffer : converted_) buffer.resize(format_bytes(max_n, max_batch));
    q8_sum_.resize(q8_sum_bytes(max_n, max_batch));
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

void MatmulInput::set_rmsnorm(const float* x, const float* weight, float eps, int64_t n,
                              int64_t count, float* y, TensorType form, ThreadPool* pool) {
    set(y, n, count);
    const bool fused = (form == TensorType::Q8_0 || form == TensorType::Q8_K) &&
                       n % type_traits(form).block_size == 0;
    const int64_t block = fused ? type_traits(form).block_size : n;
    const QuantizeRowFn quantize = fused ? active_kernels().quantizer(form) : nullptr;
    const uint64_t block_bytes = fused ? type_traits(form).type_size : 0;
    const bool sums = fused && form == TensorType::Q8_0;
    uint8_t* const quantized = fused ? converted_[slot(form)].data() : nullptr;
    const uint64_t quantized_stride = fused ? stride(form) : 0, sum_stride = q8_sum_stride();
    for_each_vector(count, pool, [&](int64_t i) {
        const float* xi = x + i * n;
        float* yi = y + i * n;
        const float factor = rmsnorm_factor(xi, n, eps);
        for (int64_t b = 0; b < n / block; ++b) {
            float* yb = yi + b * block;
            for (int64_t j = 0; j < block; ++j)
                yb[j] = (xi[b * block + j] * factor) * weight[b * block + j];
            if (!fused) continue;
            uint8_t* qb = quantized + uint64_t(i) * quantized_stride + uint64_t(b) * block_bytes;
            quantize(yb, qb, block); // row quantizers work block by block: the row's bytes
            if (sums)
                q8_0_to_q8_sum(
                    qb, q8_sum_.data() + uint64_t(i) * sum_stride + uint64_t(b) * kQ8SumBlockBytes,
                    block);
        }
    });
    if (fused) valid_[slot(form)] = true;
    if (sums) q8_sum_valid_ = true;
}

uint64_t MatmulInput::q8_sum_stride() const {
    return uint64_t(n_ / 32) * kQ8SumBlockBytes;
}

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

// One matrix times a prepared batch: everything a thread needs to compute its share of rows.
struct MatmulPlan {
    const WeightMatrix* w = nullptr;
    float* y = nullptr;
    int64_t count = 0;
    VecDotFn dot = nullptr;
    // The x16 path: whole groups of 16 rows from the repacked form, the rest row by row.
    const uint8_t* packed = nullptr;
    GemmX16Fn gemm = nullptr;
    const uint8_t* x16_input = nullptr; // the batch in x16_activation_type's form
    uint64_t x16_stride = 0;
    // The file's layout (and the x16 path's rows after the last whole group).
    const uint8_t* activations = nullptr;
    uint64_t stride = 0;
    VecDotRowsFn dot_rows = nullptr;
    GemmRowsFn gemm_rows = nullptr;
    mutable std::atomic<int64_t> next_group{0}; // the x16 path's next unclaimed group

    // Converts the batch to the forms w's kernels read (on `pool`) and finds w's x16 form.
    MatmulPlan(const WeightMatrix& weights, MatmulInput& x, float* out, ThreadPool* pool,
               WeightCache* cache)
        : w(&weights), y(out), count(x.count()) {
        const KernelTable& kernels = active_kernels();
        const TensorType type = weights.traits->type;
        dot = kernels.dot(type);
        if (cache && kernels.x16(type) && (count > 1 || x16_serves_generation(type))) {
            packed = cache->find_or_build(weights);
            if (packed) {
                gemm = kernels.x16(type);
                if (x16_activation_type(type) == TensorType::Q8_0) {
                    x16_input = x.as_q8_sum(pool);
                    x16_stride = x.q8_sum_stride();
                } else {
                    x16_input = x.as(x16_activation_type(type), pool);
                    x16_stride = x.stride(x16_activation_type(type));
                }
            }
        }
        const TensorType act_type = weights.traits->vec_dot_type;
        const bool rows_left = !packed || weights.rows % kRepackRows != 0;
        if (rows_left) {
            activations = x.as(act_type, pool);
            stride = x.stride(act_type);
        }
        if (count > 1 && !packed) {
            gemm_rows = kernels.rows_gemm(type);
            if (!gemm_rows) dot_rows = kernels.dot_rows(type);
        }
    }

    // Thread `index` of `n_threads`: x16 groups in chunks taken from a shared counter (a
    // thread that streams faster takes more, so none waits at the end), or a contiguous share
    // of rows.
    void part(int index, int n_threads) const {
        if (packed) {
            const int64_t groups = w->rows / kRepackRows;
            const int64_t n_blocks = w->cols / int64_t(w->traits->block_size);
            const uint64_t group_bytes =
                uint64_t(n_blocks) * x16_group_block_bytes(w->traits->type);
            // Guided: each claim takes a share of what is left (an even number of groups, as
            // the kernels take groups in pairs), so the chunks shrink towards the end and the
            // threads finish together.
            int64_t begin = next_group.load(std::memory_order_relaxed);
            while (begin < groups) {
                const int64_t chunk = std::max<int64_t>(2, (groups - begin) / (4 * n_threads) * 2);
                if (!next_group.compare_exchange_weak(begin, begin + chunk,
                                                      std::memory_order_relaxed))
                    continue; // begin now holds the current value
                gemm(packed + uint64_t(begin) * group_bytes, std::min(chunk, groups - begin),
                     n_blocks, x16_input, x16_stride, count, y + begin * kRepackRows, w->rows);
                begin = next_group.load(std::memory_order_relaxed);
            }
            if (index == n_threads - 1) rows_one_by_one(groups * kRepackRows, w->rows);
            return;
        }
        const int64_t begin = w->rows * index / n_threads;
        const int64_t end = w->rows * (index + 1) / n_threads;
        if (gemm_rows) {
            // Blocks of 16 rows times tiles of 12 vectors, both kept in L2 while the kernel's
            // register tiles go over them.
            for (int64_t block = begin; block < end; block += 16) {
                const int64_t rows = std::min<int64_t>(16, end - block);
                for (int64_t tile = 0; tile < count; tile += 12)
                    gemm_rows(w->row(block), w->row_bytes, rows,
                              activations + uint64_t(tile) * stride, stride,
                              std::min<int64_t>(12, count - tile), w->cols,
                              y + tile * w->rows + block, w->rows);
            }
            return;
        }
        if (!dot_rows) return rows_one_by_one(begin, end);
        // A batch goes through blocks of rows (kept in L2) times tiles of vectors (kept in
        // L1), so neither the weights nor the activations are streamed more than once.
        constexpr int64_t kRowBlock = 32, kVectorTile = 8;
        for (int64_t block = begin; block < end; block += kRowBlock) {
            const int64_t block_end = std::min(end, block + kRowBlock);
            for (int64_t tile = 0; tile < count; tile += kVectorTile) {
                const int64_t tile_count = std::min(kVectorTile, count - tile);
                for (int64_t r = block; r < block_end; ++r)
                    dot_rows(w->row(r), activations + uint64_t(tile) * stride, stride, tile_count,
                             w->cols, y + tile * w->rows + r, w->rows);
            }
        }
    }

    void rows_one_by_one(int64_t begin, int64_t end) const {
        for (int64_t r = begin; r < end; ++r)
            for (int64_t i = 0; i < count; ++i)
                y[i * w->rows + r] = dot(w->row(r), activations + uint64_t(i) * stride, w->cols);
    }
};

// Runs the plans' shares on the pool: one hand-off for all of them.
void run_plans(const MatmulPlan* const* plans, size_t n_plans, ThreadPool* pool) {
    auto run = [&](int index, int n_threads) {
        for (size_t p = 0; p < n_plans; ++p) plans[p]->part(index, n_threads);
    };
    run_split(pool, run);
}

} // namespace

void matmul(const WeightMatrix& w, MatmulInput& x, float* y, ThreadPool* pool, WeightCache* cache) {
    const MatmulPlan plan(w, x, y, pool, cache);
    const MatmulPlan* plans[] = {&plan};
    run_plans(plans, 1, pool);
}

void matmul_same_input(std::initializer_list<MatmulOutput> outputs, MatmulInput& x,
                       ThreadPool* pool, WeightCache* cache) {
    constexpr size_t kMax = 4;
    if (outputs.size() > kMax) throw Error("matmul_same_input takes at most 4 matrices");
    std::array<std::optional<MatmulPlan>, kMax> storage; // on the stack: no allocation
    const MatmulPlan* plans[kMax];
    size_t n = 0;
    for (const MatmulOutput& o : outputs) {
        storage[n].emplace(*o.w, x, o.y, pool, cache);
        plans[n] = &*storage[n];
        ++n;
    }
    run_plans(plans, n, pool);
    // y += bias, after the product, as llama.cpp adds it (one rounding more, the same one).
    for (const MatmulOutput& o : outputs) {
        if (!o.bias) continue;
        for (int64_t i = 0; i < x.count(); ++i)
            for (int64_t r = 0; r < o.w->rows; ++r) o.y[i * o.w->rows + r] += o.bias[r];
    }
}

} // namespace woolly
