// tensor_types.h — the ggml tensor types: one table row per type naming its block layout and
// kernels.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace woolly {

// Values are ggml's type ids, as stored in GGUF tensor infos.
enum class TensorType : uint32_t {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    IQ4_NL = 20,
    IQ4_XS = 23,
    I8 = 24,
    I16 = 25,
    I32 = 26,
    I64 = 27,
    F64 = 28,
    BF16 = 30,
};

// Dequantize `n` values (a multiple of the block size) from `src` into `dst`.
using DequantizeRowFn = void (*)(const void* src, float* dst, int64_t n);
// Converts `n` float32 values into this type: activation formats (F16, BF16, Q8_0, Q8_1, Q8_K)
// and the weight types `woolly synth` writes (also Q4_0, Q4_K, Q6_K and IQ4_XS).
using QuantizeRowFn = void (*)(const float* src, void* dst, int64_t n);
// Dot product of one stored row of `n` weights with `n` activations already converted to the
// row type's `vec_dot_type`, as ggml does: quantized weights meet 8-bit quantized activations.
using VecDotFn = float (*)(const void* row, const void* activations, int64_t n);

struct TypeTraits {
    TensorType type;
    const char* name;
    uint32_t block_size; // values per block
    uint32_t type_size;  // bytes per block
    // Scalar reference kernels; null for types Woolly can parse but not compute with.
    DequantizeRowFn dequantize_row;
    TensorType vec_dot_type;    // the form activations take for vec_dot
    VecDotFn vec_dot;           // weights of this type . activations of vec_dot_type
    QuantizeRowFn quantize_row; // float32 -> this type, where Woolly can write it
};

// The row for a ggml type id, or null when the id is not a type Woolly knows.
const TypeTraits* find_type_traits(uint32_t type_id);
const TypeTraits& type_traits(TensorType type);
std::optional<TensorType> type_from_name(std::string_view name); // "q4_0", "F16", ...

// Q4_K and Q5_K pack eight 6-bit scales and eight 6-bit mins into 12 bytes (`q`): those of
// sub-block j (32 values).
void get_scale_min_k4(int j, const uint8_t* q, uint8_t* scale, uint8_t* min);

// Q6_K's 256 values of the block at `b` (ql nibbles and qh pairs of bits), -32..31, in order.
void q6_k_values(const uint8_t* b, int8_t* q);

// Bytes of a row of `n` values, or nullopt when n is not a whole number of blocks.
std::optional<uint64_t> row_bytes(const TypeTraits& traits, uint64_t n);

} // namespace woolly
