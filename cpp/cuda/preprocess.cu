// CUDA twin of cpp/src/preprocess.cpp: one thread per output pixel computes every output
// channel with the same fixed-point arithmetic (shared through resize_coefs.h), so the result
// is bit-exact with the CPU kernel and with OpenCV. Writes are planar and coalesced along x.
#include "preprocess.cuh"

#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "../src/preprocess_common.h"
#include "../src/resize_coefs.h"
#include "check.cuh"
#include "edgeseg/cuda_kernels.h"
#include "edgeseg/errors.h"
#include "memory.cuh"

namespace edgeseg::cuda {
namespace {

/// Everything the kernel reads, passed by value (fits the parameter space easily).
struct PreprocessArgs {
    const uint8_t* src = nullptr;
    ptrdiff_t rowStride = 0;
    ptrdiff_t pixelStride = 0;
    int srcWidth = 0;
    int srcHeight = 0;
    int outWidth = 0;
    int outHeight = 0;
    int outChannels = 0;
    int resizedWidth = 0;
    int resizedHeight = 0;
    int padX = 0;
    int padY = 0;
    double xScale = 1.0;
    double yScale = 1.0;
    int srcChannel[3] = {0, 0, 0};
    float normScale[3] = {1.0f, 1.0f, 1.0f};
    float normOffset[3] = {0.0f, 0.0f, 0.0f};
    int padValue = 0;
    unsigned long long* nonfinite = nullptr; ///< device counter of NaN/inf values written
};

/// Stores one value; returns 1 when what was written is NaN or +-Inf.
__device__ inline int store(float* out, float v) {
    *out = v;
    return isfinite(v) ? 0 : 1;
}
__device__ inline int store(uint16_t* out, float v) {
    const uint16_t h = __half_as_ushort(__float2half_rn(v));
    *out = h;
    return (h & 0x7c00u) == 0x7c00u ? 1 : 0;
}

/// Adds a thread's NaN/inf stores to the counter; only parameters that overflow the output
/// dtype (refused by the Python wrapper) get here, so no reduction is needed.
__device__ inline void countNonfinite(const PreprocessArgs& a, int bad) {
    if (bad != 0 && a.nonfinite != nullptr) {
        atomicAdd(a.nonfinite, static_cast<unsigned long long>(bad));
    }
}

template <typename T> __global__ void preprocessKernel(PreprocessArgs a, T* dst) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= a.outWidth || y >= a.outHeight) {
        return;
    }
    const size_t plane = static_cast<size_t>(a.outWidth) * a.outHeight;
    T* out = dst + static_cast<size_t>(y) * a.outWidth + x;
    const int rx = x - a.padX;
    const int ry = y - a.padY;
    if (rx < 0 || rx >= a.resizedWidth || ry < 0 || ry >= a.resizedHeight) {
        // Unrolled with constant indices so the per-channel arrays stay in registers.
        int bad = 0;
#pragma unroll
        for (int oc = 0; oc < 3; ++oc) {
            if (oc >= a.outChannels) {
                break;
            }
            bad += store(out + oc * plane, __fmaf_rn(static_cast<float>(a.padValue),
                                                     a.normScale[oc], a.normOffset[oc]));
        }
        countNonfinite(a, bad);
        return;
    }
    const detail::AxisCoef cx = detail::axisCoef(rx, a.xScale, a.srcWidth, true);
    const detail::AxisCoef cy = detail::axisCoef(ry, a.yScale, a.srcHeight, false);
    const uint8_t* row0 = a.src + static_cast<ptrdiff_t>(cy.s0) * a.rowStride;
    const uint8_t* row1 = a.src + static_cast<ptrdiff_t>(cy.s1) * a.rowStride;
    const ptrdiff_t off0 = static_cast<ptrdiff_t>(cx.s0) * a.pixelStride;
    const ptrdiff_t off1 = static_cast<ptrdiff_t>(cx.s1) * a.pixelStride;
    int bad = 0;
#pragma unroll
    for (int oc = 0; oc < 3; ++oc) {
        if (oc >= a.outChannels) {
            break;
        }
        const int c = a.srcChannel[oc];
        const int h0 = (row0[off0 + c] * cx.w0 + row0[off1 + c] * cx.w1) >> 4;
        const int h1 = (row1[off0 + c] * cx.w0 + row1[off1 + c] * cx.w1) >> 4;
        const int v = detail::verticalBlend(h0, h1, cy.w0, cy.w1);
        bad += store(out + oc * plane,
                     __fmaf_rn(static_cast<float>(v), a.normScale[oc], a.normOffset[oc]));
    }
    countNonfinite(a, bad);
}

/// Validates, fills the kernel arguments and launches on `stream`.
Letterbox launchPreprocess(const ImageView& src, const PreprocessParams& p, void* dst,
                           cudaStream_t stream, int64_t* nonfinite) {
    detail::validatePreprocess(src, p, dst, "cuda preprocess");
    const Letterbox lb = detail::placement(src, p);
    PreprocessArgs a;
    a.src = src.data;
    a.rowStride = src.rowStride;
    a.pixelStride = src.pixelStride;
    a.srcWidth = src.width;
    a.srcHeight = src.height;
    a.outWidth = p.outWidth;
    a.outHeight = p.outHeight;
    a.outChannels = p.outChannels;
    a.resizedWidth = lb.resizedWidth;
    a.resizedHeight = lb.resizedHeight;
    a.padX = lb.padX;
    a.padY = lb.padY;
    a.xScale = detail::axisScale(lb.resizedWidth, src.width);
    a.yScale = detail::axisScale(lb.resizedHeight, src.height);
    for (int oc = 0; oc < p.outChannels; ++oc) {
        a.srcChannel[oc] = src.channels == 1 ? 0 : (p.swapRB ? 2 - oc : oc);
        const detail::NormCoef n = detail::normCoef(p.mean[oc], p.stddev[oc]);
        a.normScale[oc] = n.scale;
        a.normOffset[oc] = n.offset;
    }
    a.padValue = p.padValue;
    a.nonfinite = reinterpret_cast<unsigned long long*>(nonfinite);
    if (nonfinite != nullptr) {
        EDGESEG_CUDA_CHECK(cudaMemsetAsync(nonfinite, 0, sizeof(int64_t), stream));
    }

    const dim3 block(32, 8);
    const dim3 grid((p.outWidth + block.x - 1) / block.x, (p.outHeight + block.y - 1) / block.y);
    require(grid.y <= 65535, "cuda preprocess: output height " + std::to_string(p.outHeight) +
                                 " exceeds the launch grid");
    if (p.dtype == DType::Float16) {
        preprocessKernel<uint16_t><<<grid, block, 0, stream>>>(a, static_cast<uint16_t*>(dst));
    } else {
        preprocessKernel<float><<<grid, block, 0, stream>>>(a, static_cast<float*>(dst));
    }
    EDGESEG_CUDA_CHECK(cudaGetLastError());
    return lb;
}

} // namespace

Letterbox preprocess(const ImageView& src, const PreprocessParams& params, void* dst,
                     cudaStream_t stream, int64_t* nonfinite) {
    return launchPreprocess(src, params, dst, stream, nonfinite);
}

Letterbox preprocessHost(const ImageView& src, const PreprocessParams& params, void* dst,
                         int64_t* nonfinite) {
    detail::validatePreprocess(src, params, dst, "cuda preprocess");
    const size_t rowBytes = static_cast<size_t>(src.width) * src.channels;
    const size_t srcBytes = rowBytes * src.height;
    const size_t dstBytes = static_cast<size_t>(params.outChannels) * params.outHeight *
                            params.outWidth * (params.dtype == DType::Float16 ? 2 : 4);
    Stream stream;
    DeviceBuffer deviceSrc(srcBytes);
    DeviceBuffer deviceDst(dstBytes);
    DeviceBuffer deviceBad(nonfinite != nullptr ? sizeof(int64_t) : 0);
    // Upload packed rows: one 2-D copy when pixels are contiguous and rows go forward, else
    // pack on the host first (negative or pixel-skipping strides).
    std::vector<uint8_t> packed;
    if (src.pixelStride == src.channels && src.rowStride >= static_cast<ptrdiff_t>(rowBytes)) {
        EDGESEG_CUDA_CHECK(cudaMemcpy2DAsync(deviceSrc.get(), rowBytes, src.data,
                                             static_cast<size_t>(src.rowStride), rowBytes,
                                             src.height, cudaMemcpyHostToDevice, stream.get()));
    } else {
        packed.resize(srcBytes);
        for (int y = 0; y < src.height; ++y) {
            const uint8_t* in = src.row(y);
            uint8_t* out = packed.data() + y * rowBytes;
            for (int x = 0; x < src.width; ++x) {
                std::memcpy(out + static_cast<size_t>(x) * src.channels,
                            in + static_cast<ptrdiff_t>(x) * src.pixelStride, src.channels);
            }
        }
        EDGESEG_CUDA_CHECK(cudaMemcpyAsync(deviceSrc.get(), packed.data(), srcBytes,
                                           cudaMemcpyHostToDevice, stream.get()));
    }
    ImageView deviceView;
    deviceView.data = deviceSrc.as<uint8_t>();
    deviceView.height = src.height;
    deviceView.width = src.width;
    deviceView.channels = src.channels;
    deviceView.rowStride = static_cast<ptrdiff_t>(rowBytes);
    deviceView.pixelStride = src.channels;
    const Letterbox lb = launchPreprocess(deviceView, params, deviceDst.get(), stream.get(),
                                          deviceBad.as<int64_t>());
    EDGESEG_CUDA_CHECK(
        cudaMemcpyAsync(dst, deviceDst.get(), dstBytes, cudaMemcpyDeviceToHost, stream.get()));
    if (nonfinite != nullptr) {
        EDGESEG_CUDA_CHECK(cudaMemcpyAsync(nonfinite, deviceBad.get(), sizeof(int64_t),
                                           cudaMemcpyDeviceToHost, stream.get()));
    }
    stream.synchronize();
    return lb;
}

} // namespace edgeseg::cuda
