// weight_matrix.h — a weight matrix as a file stores it: rows of one tensor type, viewed where
// they lie (mapped or read into memory).
#pragma once

#include <cstdint>
#include <string>

#include "engine/quant/tensor_types.h"

namespace woolly {

// A 2-D weight matrix stored row-major in the (mapped) file: `rows` rows of `cols` values.
// y = W x reads every row once; rows are what threads split.
struct WeightMatrix {
    std::string name;
    const TypeTraits* traits = nullptr;
    int64_t cols = 0;       // input dimension (GGUF dims[0])
    int64_t rows = 0;       // output dimension (GGUF dims[1])
    uint64_t row_bytes = 0; // bytes of one stored row
    const uint8_t* data = nullptr;

    const uint8_t* row(int64_t r) const { return data + uint64_t(r) * row_bytes; }
    uint64_t bytes() const { return row_bytes * uint64_t(rows); }
};

} // namespace woolly
