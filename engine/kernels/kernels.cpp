// kernels.cpp — CPU feature detection and the one-time choice of kernels.
#include "engine/kernels/kernels.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include <cstdlib>
#include <cstring>

#if defined(__aarch64__) && defined(__linux__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

#include "engine/error.h"
#include "engine/kernels/ops.h"

namespace woolly {

const char* kernel_level_name(KernelLevel level) {
    switch (level) {
    case KernelLevel::Scalar:
        return "scalar";
    case KernelLevel::Avx2:
        return "avx2";
    case KernelLevel::Avx512:
        return "avx512";
    case KernelLevel::Neon:
        return "neon";
    }
    return "scalar";
}

#if defined(__x86_64__)
// F16C from CPUID leaf 1 (ECX bit 29): clang 14's __builtin_cpu_supports does not know "f16c".
static bool cpu_has_f16c() {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & (1u << 29)) != 0;
}
#endif

bool cpu_supports(KernelLevel level) {
    switch (level) {
    case KernelLevel::Scalar:
        return true;
    case KernelLevel::Avx2:
#if defined(__x86_64__)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
#else
        return false;
#endif
    case KernelLevel::Avx512:
#if defined(__x86_64__)
        return cpu_supports(KernelLevel::Avx2) && __builtin_cpu_supports("avx512f") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512vnni");
#else
        return false;
#endif
    case KernelLevel::Neon:
#if defined(__aarch64__) && defined(__linux__)
        return (getauxval(AT_HWCAP) & HWCAP_ASIMD) && (getauxval(AT_HWCAP) & HWCAP_ASIMDDP);
#else
        return false;
#endif
    }
    return false;
}

KernelLevel detect_kernel_level() {
    for (KernelLevel level : {KernelLevel::Avx512, KernelLevel::Avx2, KernelLevel::Neon})
        if (cpu_supports(level)) return level;
    return KernelLevel::Scalar;
}

KernelTable make_kernel_table(KernelLevel level) {
    if (!cpu_supports(level))
        throw Error(std::string("this CPU cannot run the ") + kernel_level_name(level) +
                    " kernels");
    KernelTable table{};
    table.level = level;
    table.swiglu = swiglu_reference;
    table.exp_sum = exp_sum_reference;
    table.gemm_f32 = gemm_f32_reference;
    for (uint32_t id = 0; id < 64; ++id) {
        if (const TypeTraits* t = find_type_traits(id)) {
            table.vec_dot[id] = t->vec_dot;
            table.quantize[id] = t->quantize_row;
            table.to_float[id] = t->dequantize_row;
        }
    }
#if defined(__x86_64__)
    if (level == KernelLevel::Avx2 || level == KernelLevel::Avx512) {
        table.vec_dot[uint32_t(TensorType::F32)] = avx2::vec_dot_f32;
        table.vec_dot[uint32_t(TensorType::F16)] = avx2::vec_dot_f16_f32;
        table.vec_dot[uint32_t(TensorType::Q8_0)] = avx2::vec_dot_q8_0_q8_0;
        table.vec_dot[uint32_t(TensorType::Q4_0)] = avx2::vec_dot_q4_0_q8_0;
        table.vec_dot_rows[uint32_t(TensorType::Q8_0)] = avx2::vec_dot_rows_q8_0_q8_0;
        table.vec_dot_rows[uint32_t(TensorType::Q4_0)] = avx2::vec_dot_rows_q4_0_q8_0;
        table.quantize[uint32_t(TensorType::Q8_0)] = avx2::quantize_row_q8_0;
        table.to_float[uint32_t(TensorType::F16)] = avx2::f16_to_f32_row;
        table.quantize[uint32_t(TensorType::F16)] = avx2::quantize_row_f16;
        table.gemm_f32 = avx2::gemm_f32;
        table.vec_dot[uint32_t(TensorType::Q4_K)] = avx2::vec_dot_q4_k_q8_k;
        table.vec_dot[uint32_t(TensorType::Q6_K)] = avx2::vec_dot_q6_k_q8_k;
        table.vec_dot[uint32_t(TensorType::IQ4_XS)] = avx2::vec_dot_iq4_xs_q8_k;
    }
    if (level == KernelLevel::Avx512) {
        table.gemm_x16[uint32_t(TensorType::Q4_0)] = avx512::gemm_x16_q4_0;
        table.gemm_x16[uint32_t(TensorType::Q8_0)] = avx512::gemm_x16_q8_0;
        table.gemm_x16[uint32_t(TensorType::Q4_K)] = avx512::gemm_x16_q4_k;
        table.gemm_x16[uint32_t(TensorType::Q6_K)] = avx512::gemm_x16_q6_k;
        table.quantize[uint32_t(TensorType::Q8_K)] = avx512::quantize_row_q8_k;
        table.vec_dot[uint32_t(TensorType::Q4_K)] = avx512::vec_dot_q4_k_q8_k;
        table.vec_dot_rows[uint32_t(TensorType::Q4_K)] = avx512::vec_dot_rows_q4_k_q8_k;
        table.swiglu = avx512::swiglu;
        table.exp_sum = avx512::exp_sum;
        table.gemm_f32 = avx512::gemm_f32;
        table.vec_dot[uint32_t(TensorType::Q6_K)] = avx512::vec_dot_q6_k_q8_k;
        table.vec_dot_rows[uint32_t(TensorType::Q6_K)] = avx512::vec_dot_rows_q6_k_q8_k;
        table.vec_dot[uint32_t(TensorType::F16)] = avx512::vec_dot_f16_f32;
        table.vec_dot_rows[uint32_t(TensorType::F16)] = nullptr; // gemm_rows serves batches
        table.gemm_rows[uint32_t(TensorType::F16)] = avx512::gemm_rows_f16_f32;
        table.vec_dot[uint32_t(TensorType::BF16)] = avx512::vec_dot_bf16_bf16;
        table.gemm_rows[uint32_t(TensorType::BF16)] = avx512::gemm_rows_bf16_bf16;
    }
#endif
#if defined(__aarch64__)
    if (level == KernelLevel::Neon) {
        table.vec_dot[uint32_t(TensorType::F32)] = neon::vec_dot_f32;
        table.vec_dot[uint32_t(TensorType::F16)] = neon::vec_dot_f16_f32;
        table.vec_dot[uint32_t(TensorType::Q8_0)] = neon::vec_dot_q8_0_q8_0;
        table.vec_dot[uint32_t(TensorType::Q4_0)] = neon::vec_dot_q4_0_q8_0;
        table.quantize[uint32_t(TensorType::Q8_0)] = neon::quantize_row_q8_0;
        table.to_float[uint32_t(TensorType::F16)] = neon::f16_to_f32_row;
        table.vec_dot[uint32_t(TensorType::Q4_K)] = neon::vec_dot_q4_k_q8_k;
        table.vec_dot[uint32_t(TensorType::Q6_K)] = neon::vec_dot_q6_k_q8_k;
        table.vec_dot[uint32_t(TensorType::IQ4_XS)] = neon::vec_dot_iq4_xs_q8_k;
    }
#endif
    return table;
}

const KernelTable& active_kernels() {
    static const KernelTable table = [] {
        const char* forced = std::getenv("WOOLLY_KERNELS");
        if (!forced || !*forced) return make_kernel_table(detect_kernel_level());
        for (KernelLevel level : kAllKernelLevels) {
            if (std::strcmp(forced, kernel_level_name(level)) == 0) {
                if (!cpu_supports(level))
                    throw Error(std::string("WOOLLY_KERNELS=") + forced +
                                ": this CPU cannot run it");
                return make_kernel_table(level);
            }
        }
        throw Error(std::string("WOOLLY_KERNELS=") + forced +
                    " (expected scalar, avx2, avx512 or neon)");
    }();
    return table;
}

} // namespace woolly
