// Device probing for the CUDA kernels.
#include <cuda_runtime.h>

#include <string>

#include "edgeseg/cuda_kernels.h"

namespace edgeseg::cuda {

bool available(std::string* reason) {
    int count = 0;
    cudaError_t status = cudaGetDeviceCount(&count);
    // Check the code, not only the count: without a driver the call fails (e.g. error 35,
    // cudaErrorInsufficientDriver) and the count is meaningless.
    if (status != cudaSuccess) {
        cudaGetLastError(); // clear the sticky-free error so later calls start clean
        if (reason != nullptr) {
            *reason = std::string("cudaGetDeviceCount failed: ") + cudaGetErrorName(status) + " (" +
                      cudaGetErrorString(status) + ")";
        }
        return false;
    }
    if (count == 0) {
        if (reason != nullptr) {
            *reason = "no CUDA device found";
        }
        return false;
    }
    if (reason != nullptr) {
        cudaDeviceProp prop{};
        if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) {
            *reason = std::string(prop.name) + " (sm_" + std::to_string(prop.major) +
                      std::to_string(prop.minor) + (prop.integrated ? ", integrated" : "") + ")";
        }
    }
    return true;
}

} // namespace edgeseg::cuda
