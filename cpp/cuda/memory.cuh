#pragma once
// Move-only RAII owners of CUDA resources. Destructors never throw.
#include <cuda_runtime.h>

#include <cstddef>
#include <utility>

#include "check.cuh"

namespace edgeseg::cuda {

/// Device memory of `bytes` bytes.
class DeviceBuffer {
public:
    DeviceBuffer() = default;
    explicit DeviceBuffer(size_t bytes) : mBytes(bytes) {
        if (bytes > 0) {
            EDGESEG_CUDA_CHECK(cudaMalloc(&mPtr, bytes));
        }
    }
    ~DeviceBuffer() {
        if (mPtr != nullptr) {
            cudaFree(mPtr);
        }
    }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    DeviceBuffer(DeviceBuffer&& other) noexcept
        : mPtr(std::exchange(other.mPtr, nullptr)), mBytes(std::exchange(other.mBytes, 0)) {}
    DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
        if (this != &other) {
            if (mPtr != nullptr) {
                cudaFree(mPtr);
            }
            mPtr = std::exchange(other.mPtr, nullptr);
            mBytes = std::exchange(other.mBytes, 0);
        }
        return *this;
    }

    void* get() const { return mPtr; }
    template <typename T> T* as() const { return static_cast<T*>(mPtr); }
    size_t bytes() const { return mBytes; }

private:
    void* mPtr = nullptr;
    size_t mBytes = 0;
};

/// A non-blocking CUDA stream.
class Stream {
public:
    Stream() { EDGESEG_CUDA_CHECK(cudaStreamCreateWithFlags(&mStream, cudaStreamNonBlocking)); }
    ~Stream() {
        if (mStream != nullptr) {
            cudaStreamDestroy(mStream);
        }
    }
    Stream(const Stream&) = delete;
    Stream& operator=(const Stream&) = delete;
    Stream(Stream&& other) noexcept : mStream(std::exchange(other.mStream, nullptr)) {}
    Stream& operator=(Stream&& other) noexcept {
        if (this != &other) {
            if (mStream != nullptr) {
                cudaStreamDestroy(mStream);
            }
            mStream = std::exchange(other.mStream, nullptr);
        }
        return *this;
    }

    cudaStream_t get() const { return mStream; }
    void synchronize() const { EDGESEG_CUDA_CHECK(cudaStreamSynchronize(mStream)); }

private:
    cudaStream_t mStream = nullptr;
};

} // namespace edgeseg::cuda
