// repack.cpp — building the x16 layouts, and the scalar kernels that read them.
#include "engine/quant/repack.h"

#include <cstring>

#include "engine/error.h"
#include "engine/quant/fp16.h"
#include "engine/quant/k_quants.h"

namespace woolly {
namespace {

constexpr int64_t kBlock = 32;

float load_f16(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return f16_to_f32(h);
}

// The stored (unsigned) value of column c of a Q4_0 block: nibble, 0..15.
uint8_t q4_0_nibble(const uint8_t* block, int c) {
    const uint8_t byte = block[2 + (c & 15)];
    return c < 16 ? (byte & 0x0f) : (byte >> 4);
}

// Reads row i's unsigned weight at column c of block b back out of an x16 group.
uint8_t x16_weight(TensorType type, const uint8_t* block_group, int i, int c) {
    const int k = c / 4, t = c % 4; // register k, byte t of lane i
    if (type == TensorType::Q8_0) return block_group[32 + 64 * k + 4 * i + t];
    const uint8_t byte = block_group[32 + 64 * (k / 2) + 4 * i + t];
    return (k % 2 == 0) ? (byte & 0x0f) : (byte >> 4);
}

// The loops every x16 reference shares: each group, vector and row, adding up its block
// columns in order, `term(block_column, x_block, row)` giving one column's part. The terms
// take the row reference's products in its order: its bits.
template <typename Term>
void gemm_x16_reference(const uint8_t* groups, int64_t n_groups, int64_t n_blocks,
                        uint64_t group_block_bytes, uint64_t x_block_bytes, const uint8_t* x,
                        uint64_t x_stride, int64_t count, float* y, int64_t y_stride, Term term) {
    for (int64_t gi = 0; gi < n_groups; ++gi) {
        const uint8_t* group = groups + uint64_t(gi) * uint64_t(n_blocks) * group_block_bytes;
        for (int64_t m = 0; m < count; ++m) {
            for (int i = 0; i < kRepackRows; ++i) {
                float sum = 0.0f;
                for (int64_t b = 0; b < n_blocks; ++b)
                    sum += term(group + uint64_t(b) * group_block_bytes,
                                x + uint64_t(m) * x_stride + uint64_t(b) * x_block_bytes, i);
                y[m * y_stride + gi * kRepackRows + i] = sum;
            }
        }
    }
}

// Q4_0 and Q8_0 against the Q8-sum form: float(isum) * (d_w * d_x), as the row reference.
template <TensorType Type>
void gemm_x16_legacy_reference(const uint8_t* groups, int64_t n_groups, int64_t n_blocks,
                               const uint8_t* x, uint64_t x_stride, int64_t count, float* y,
                               int64_t y_stride) {
    const int offset = x16_weight_offset(Type);
    auto term = [offset](const uint8_t* g, const uint8_t* xb, int i) {
        float dx;
        int32_t xsum;
        std::memcpy(&dx, xb, 4);
        std::memcpy(&xsum, xb + 4, 4);
        const auto* xq = reinterpret_cast<const int8_t*>(xb + kQ8SumQsOffset);
        int32_t isum = 0;
        for (int c = 0; c < kBlock; ++c) isum += int32_t(x16_weight(Type, g, i, c)) * xq[c];
        isum -= offset * xsum;
        return float(isum) * (load_f16(g + 2 * i) * dx);
    };
    gemm_x16_reference(groups, n_groups, n_blocks, x16_group_block_bytes(Type), kQ8SumBlockBytes, x,
                       x_stride, count, y, y_stride, term);
}

} // namespace

void q8_0_to_q8_sum(const uint8_t* q8_0, uint8_t* dst, int64_t n) {
    for (int64_t b = 0; b < n / kBlock; ++b, q8_0 += 34, dst += kQ8SumBlockBytes) {
        const float d = load_f16(q8_0);
        int32_t sum = 0;
        for (int j = 0; j < kBlock; ++j) sum += int8_t(q8_0[2 + j]);
        const int32_t minus_8_sum = -8 * sum, minus_128_sum = -128 * sum;
        std::memcpy(dst, &d, 4);
        std::memcpy(dst + 4, &sum, 4);
        std::memcpy(dst + 8, &minus_8_sum, 4);
        std::memcpy(dst + 12, &minus_128_sum, 4);
        std::memcpy(dst + kQ8SumQsOffset, q8_0 + 2, kBlock);
    }
}

namespace {

// One super-block column of a Q4_K group: see repack.h.
void repack_q4_k_block(const WeightMatrix& w, int64_t group, int64_t b, uint8_t* dst) {
    for (int i = 0; i < kRepackRows; ++i) {
        const uint8_t* src = w.row(group * kRepackRows + i) + uint64_t(b) * 144;
        std::memcpy(dst + 2 * i, src, 2);          // d
        std::memcpy(dst + 32 + 2 * i, src + 2, 2); // dmin
        for (int j = 0; j < 8; ++j) {
            uint8_t sc, m;
            get_scale_min_k4(j, src + 4, &sc, &m);
            dst[64 + 16 * j + i] = sc;
            dst[192 + 32 * (j / 2) + 2 * i + j % 2] = m;
        }
        for (int p = 0; p < 4; ++p)
            for (int k = 0; k < 8; ++k)
                std::memcpy(dst + 320 + 512 * p + 64 * k + 4 * i, src + 16 + 32 * p + 4 * k, 4);
    }
}

// One super-block column of a Q6_K group: see repack.h.
void repack_q6_k_block(const WeightMatrix& w, int64_t group, int64_t b, uint8_t* dst) {
    for (int i = 0; i < kRepackRows; ++i) {
        const uint8_t* src = w.row(group * kRepackRows + i) + uint64_t(b) * 210;
        std::memcpy(dst + 2 * i, src + 208, 2); // d
        for (int j = 0; j < 16; ++j) dst[32 + 16 * j + i] = src[192 + j];
        int8_t q[256];
        q6_k_values(src, q);
        for (int c = 0; c < 256; ++c) dst[288 + 64 * (c / 4) + 4 * i + c % 4] = uint8_t(q[c] + 32);
    }
}

} // namespace

void gemm_x16_q6_k_reference(const uint8_t* groups, int64_t n_groups, int64_t n_blocks,
                             const uint8_t* x, uint64_t x_stride, int64_t count, float* y,
                             int64_t y_stride) {
    auto term = [](const uint8_t* g, const uint8_t* xb, int i) {
        const auto* xq = reinterpret_cast<const int8_t*>(xb + 4);
        int32_t isum = 0;
        for (int j = 0; j < 16; ++j) {
            int32_t sub = 0;
            for (int c = 16 * j; c < 16 * j + 16; ++c)
                sub += (int32_t(g[288 + 64 * (c / 4) + 4 * i + c % 4]) - 32) * xq[c];
            isum += int32_t(int8_t(g[32 + 16 * j + i])) * sub;
        }
        return k_block_term(q8_k_scale(xb), load_f16(g + 2 * i), 0.0f, isum, 0); // no mins
    };
    gemm_x16_reference(groups, n_groups, n_blocks, kQ6KGroupBlockBytes, kQ8KBlockBytes, x, x_stride,
                       count, y, y_stride, term);
}

void gemm_x16_q4_k_reference(const uint8_t* groups, int64_t n_groups, int64_t n_blocks,
                             const uint8_t* x, uint64_t x_stride, int64_t count, float* y,
                             int64_t y_stride) {
    auto term = [](const uint8_t* g, const uint8_t* xb, int i) {
        const auto* xq = reinterpret_cast<const int8_t*>(xb + 4);
        int32_t isum = 0;
        uint8_t min[8];
        for (int j = 0; j < 8; ++j) {
            int32_t sub = 0;
            for (int c = 0; c < 32; ++c) {
                const uint8_t byte = g[320 + 512 * (j / 2) + 64 * (c / 4) + 4 * i + c % 4];
                sub += int32_t(j % 2 == 0 ? byte & 0x0f : byte >> 4) * xq[32 * j + c];
            }
            isum += int32_t(g[64 + 16 * j + i]) * sub;
            min[j] = g[192 + 32 * (j / 2) + 2 * i + j % 2];
        }
        return k_block_term(q8_k_scale(xb), load_f16(g + 2 * i), load_f16(g + 32 + 2 * i), isum,
                            q4_k_min_sum(min, xb));
    };
    gemm_x16_reference(groups, n_groups, n_blocks, kQ4KGroupBlockBytes, kQ8KBlockBytes, x, x_stride,
                       count, y, y_stride, term);
}

int x16_weight_offset(TensorType type) {
    switch (type) {
    case TensorType::Q4_0:
        return 8;
    case TensorType::Q8_0:
        return 128;
    default:
        return 0;
    }
}

bool has_x16_layout(TensorType type) {
    return x16_weight_offset(type) != 0 || type == TensorType::Q4_K || type == TensorType::Q6_K;
}

bool x16_serves_generation(TensorType type) {
    return type != TensorType::Q6_K;
}

TensorType x16_activation_type(TensorType type) {
    return type == TensorType::Q4_K || type == TensorType::Q6_K ? TensorType::Q8_K
                                                                : TensorType::Q8_0;
}

uint64_t x16_group_block_bytes(TensorType type) {
    switch (type) {
    case TensorType::Q4_K:
        return kQ4KGroupBlockBytes;
    case TensorType::Q6_K:
        return kQ6KGroupBlockBytes;
    default:
        return uint64_t(kRepackRows) * type_traits(type).type_size;
    }
}

uint64_t x16_bytes(const WeightMatrix& w) {
    const uint64_t blocks = uint64_t(w.cols) / w.traits->block_size;
    return uint64_t(w.rows / kRepackRows) * blocks * x16_group_block_bytes(w.traits->type);
}

void repack_x16(const WeightMatrix& w, uint8_t* dst) {
    repack_x16(w, dst, 0, w.rows / kRepackRows);
}

void repack_x16(const WeightMatrix& w, uint8_t* dst, int64_t first_group, int64_t end_group) {
    const TensorType type = w.traits->type;
    if (!has_x16_layout(type)) throw Error(std::string("no x16 layout for ") + w.traits->name);
    const int64_t n_blocks = w.cols / int64_t(w.traits->block_size);
    const uint64_t block_bytes = x16_group_block_bytes(type);
    dst += uint64_t(first_group) * uint64_t(n_blocks) * block_bytes;
    for (int64_t group = first_group; group < end_group; ++group) {
        for (int64_t b = 0; b < n_blocks; ++b, dst += block_bytes) {
            if (type == TensorType::Q4_K) {
                repack_q4_k_block(w, group, b, dst);
                continue;
            }
            if (type == TensorType::Q6_K) {
                repack_q6_k_block(w, group, b, dst);
                continue;
            }
            const uint32_t type_size = w.traits->type_size;
            std::memset(dst, 0, kRepackRows * type_size);
            for (int i = 0; i < kRepackRows; ++i) {
                const uint8_t* src = w.row(group * kRepackRows + i) + uint64_t(b) * type_size;
                std::memcpy(dst + 2 * i, src, 2); // d
                for (int c = 0; c < kBlock; ++c) {
                    const int k = c / 4, t = c % 4;
                    if (type == TensorType::Q8_0) {
                        dst[32 + 64 * k + 4 * i + t] = uint8_t(int(int8_t(src[2 + c])) + 128);
                    } else {
                        const uint8_t nibble = q4_0_nibble(src, c);
                        dst[32 + 64 * (k / 2) + 4 * i + t] |=
                            uint8_t(k % 2 == 0 ? nibble : nibble << 4);
                    }
                }
            }
        }
    }
}

void gemm_x16_q4_0_reference(const uint8_t* groups, int64_t n_groups, int64_t n_blocks,
                             const uint8_t* x, uint64_t x_stride, int64_t count, float* y,
                             int64_t y_stride) {
    gemm_x16_legacy_reference<TensorType::Q4_0>(groups, n_groups, n_blocks, x, x_stride, count, y,
                                                y_stride);
}

void gemm_x16_q8_0_reference(const uint8_t* groups, int64_t n_groups, int64_t n_blocks,
                             const uint8_t* x, uint64_t x_stride, int64_t count, float* y,
                             int64_t y_stride) {
    gemm_x16_legacy_reference<TensorType::Q8_0>(groups, n_groups, n_blocks, x, x_stride, count, y,
                                                y_stride);
}

} // namespace woolly
