#pragma once
// EDGESEG_CUDA_CHECK(expr): throws edgeseg::CudaError naming the expression, file and line.
#include <cuda_runtime.h>

#include <string>

#include "edgeseg/errors.h"

namespace edgeseg::cuda {

[[noreturn]] inline void throwCudaError(cudaError_t code, const char* expr, const char* file,
                                        int line) {
    throw CudaError(std::string(expr) + " failed: " + cudaGetErrorName(code) + " (" +
                    cudaGetErrorString(code) + ") at " + file + ":" + std::to_string(line));
}

} // namespace edgeseg::cuda

#define EDGESEG_CUDA_CHECK(expr)                                                                   \
    do {                                                                                           \
        cudaError_t edgesegStatus_ = (expr);                                                       \
        if (edgesegStatus_ != cudaSuccess) {                                                       \
            ::edgeseg::cuda::throwCudaError(edgesegStatus_, #expr, __FILE__, __LINE__);            \
        }                                                                                          \
    } while (0)
