#include "postprocess.cuh"

#include <cuda_fp16.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "../src/postprocess_common.h"
#include "../src/postprocess_math.h"
#include "edgeseg/cuda_kernels.h"
#include "edgeseg/errors.h"
#include "memory.cuh"

namespace edgeseg::cuda {
namespace {

constexpr int kBlockX = 32;
constexpr int kBlockY = 8;

/// Everything the kernel needs, passed by value: the per-class overlay table (1 KiB) lands in
/// the constant bank, so no palette upload is needed.
struct KernelArgs {
    const void* logits;
    int half;
    int channels;
    int srcHeight;
    int srcWidth;
    int outHeight;
    int outWidth;
    int letterbox;
    Letterbox lb;
    uint8_t* classMap;
    float* confidence;
    uint8_t* overlay;
    unsigned long long* counts;
    unsigned long long* nonfinite;
    const uint8_t* frame;
    ptrdiff_t frameRowStride;
    ptrdiff_t framePixelStride;
    uint32_t alpha;
    uint32_t table[256];
};

__device__ __forceinline__ float loadLogit(const KernelArgs& a, size_t index) {
    if (a.half) {
        return __half2float(static_cast<const __half*>(a.logits)[index]);
    }
    return __ldg(static_cast<const float*>(a.logits) + index);
}

/// The CPU's order exactly: each source row is interpolated horizontally first (torch's
/// fma(w0, a, w1 * b)), then the two rows vertically. Sets `bad` when one of the four corners
/// is a bad logit (detail::badLogit), the CPU kernel's definition of a non-finite pixel.
__device__ __forceinline__ float sampleClass(const KernelArgs& a, size_t plane, size_t top,
                                             size_t bottom, const detail::AxisTap& tx,
                                             const detail::AxisTap& ty, bool& bad) {
    const float t0 = loadLogit(a, plane + top + tx.i0);
    const float t1 = loadLogit(a, plane + top + tx.i1);
    const float b0 = loadLogit(a, plane + bottom + tx.i0);
    const float b1 = loadLogit(a, plane + bottom + tx.i1);
    bad = bad || detail::badLogit(t0) || detail::badLogit(t1) || detail::badLogit(b0) ||
          detail::badLogit(b1);
    const float t = detail::lerp2(tx.w0, t0, tx.w1, t1);
    const float b = detail::lerp2(tx.w0, b0, tx.w1, b1);
    return detail::lerp2(ty.w0, t, ty.w1, b);
}

__global__ void postprocessKernel(const KernelArgs a) {
    __shared__ unsigned int hist[256];
    __shared__ unsigned int badPixels;
    const int tid = threadIdx.y * blockDim.x + threadIdx.x;
    const int threads = blockDim.x * blockDim.y;
    if (a.counts != nullptr) {
        for (int c = tid; c < a.channels; c += threads) {
            hist[c] = 0;
        }
    }
    if (tid == 0) {
        badPixels = 0;
    }
    __syncthreads();
    bool bad = false;

    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    const bool inside = x < a.outWidth && y < a.outHeight;
    if (inside) {
        detail::AxisTap tx, ty;
        if (a.letterbox) {
            tx = detail::letterboxTap(x, a.srcWidth, a.lb.padX, a.lb.resizedWidth, a.lb.srcWidth,
                                      a.lb.inputWidth);
            ty = detail::letterboxTap(y, a.srcHeight, a.lb.padY, a.lb.resizedHeight, a.lb.srcHeight,
                                      a.lb.inputHeight);
        } else {
            tx = detail::resizeTap(x, a.srcWidth, a.outWidth);
            ty = detail::resizeTap(y, a.srcHeight, a.outHeight);
        }
        const size_t planeSize = static_cast<size_t>(a.srcHeight) * a.srcWidth;
        const size_t top = static_cast<size_t>(ty.i0) * a.srcWidth;
        const size_t bottom = static_cast<size_t>(ty.i1) * a.srcWidth;

        // The same online softmax as the CPU kernel (detail::softmaxStep), in the same class
        // order, so confidence matches it to the last bits.
        float maxVal = sampleClass(a, 0, top, bottom, tx, ty, bad);
        int32_t best = 0;
        float sum = 1.0f;
        for (int c = 1; c < a.channels; ++c) {
            const float v = sampleClass(a, c * planeSize, top, bottom, tx, ty, bad);
            detail::softmaxStep(v, c, maxVal, best, sum);
        }
        // A pixel read from a bad cell gets the defined answer: class 0, confidence 0.
        best = bad ? 0 : best;
        const size_t pixel = static_cast<size_t>(y) * a.outWidth + x;
        a.classMap[pixel] = static_cast<uint8_t>(best);
        if (a.confidence != nullptr) {
            a.confidence[pixel] = bad ? 0.0f : 1.0f / sum;
        }
        if (a.overlay != nullptr) {
            const uint8_t* src = a.frame + y * a.frameRowStride + x * a.framePixelStride;
            const uint32_t u = a.table[best];
            const uint32_t alpha = (u >> 24) != 0 ? 0 : a.alpha;
            const uint32_t keep = 256 - alpha;
            uint8_t* dst = a.overlay + 3 * pixel;
            for (int ch = 0; ch < 3; ++ch) {
                const uint32_t colour = (u >> (8 * ch)) & 255;
                dst[ch] = static_cast<uint8_t>((src[ch] * keep + colour * alpha + 128) >> 8);
            }
        }
        if (a.counts != nullptr) {
            atomicAdd(&hist[best], 1u);
        }
    }

    // Every thread of the block reaches this vote (no early return above).
    const unsigned int warpBad = __ballot_sync(0xffffffffu, bad);
    if ((tid & 31) == 0 && warpBad != 0) {
        atomicAdd(&badPixels, static_cast<unsigned int>(__popc(warpBad)));
    }
    __syncthreads();
    if (a.counts != nullptr) {
        for (int c = tid; c < a.channels; c += threads) {
            if (hist[c] != 0) {
                atomicAdd(a.counts + c, static_cast<unsigned long long>(hist[c]));
            }
        }
    }
    if (tid == 0 && badPixels != 0 && a.nonfinite != nullptr) {
        atomicAdd(a.nonfinite, static_cast<unsigned long long>(badPixels));
    }
}

void launchPostprocess(const KernelArgs& args, cudaStream_t stream) {
    require(args.logits != nullptr && args.classMap != nullptr,
            "cuda postprocess: logits and classMap must be device pointers, got null");
    require(args.channels >= 1 && args.channels <= 255,
            "cuda postprocess: expected 1..255 classes, got " + std::to_string(args.channels));
    require(args.outWidth >= 1 && args.outHeight >= 1 && args.srcWidth >= 1 && args.srcHeight >= 1,
            "cuda postprocess: sizes must be positive");
    require(args.overlay == nullptr || args.frame != nullptr,
            "cuda postprocess: overlay needs a frame");
    const dim3 block(kBlockX, kBlockY);
    const dim3 grid((args.outWidth + kBlockX - 1) / kBlockX,
                    (args.outHeight + kBlockY - 1) / kBlockY);
    require(grid.y <= 65535, "cuda postprocess: output height " + std::to_string(args.outHeight) +
                                 " exceeds the grid limit");
    postprocessKernel<<<grid, block, 0, stream>>>(args);
    EDGESEG_CUDA_CHECK(cudaGetLastError());
}

} // namespace

void postprocess(const LogitsView& logits, const PostprocessParams& params,
                 const PostprocessOutputs& out, cudaStream_t stream) {
    detail::validatePostprocess(logits, params, out);
    KernelArgs args{};
    args.logits = logits.data;
    args.half = logits.dtype == DType::Float16 ? 1 : 0;
    args.channels = logits.channels;
    args.srcHeight = logits.height;
    args.srcWidth = logits.width;
    args.outHeight = params.outHeight;
    args.outWidth = params.outWidth;
    if (params.letterbox != nullptr) {
        args.letterbox = 1;
        args.lb = *params.letterbox;
    }
    args.classMap = out.classMap;
    args.confidence = out.confidence;
    args.overlay = out.overlay;
    args.counts = reinterpret_cast<unsigned long long*>(out.counts);
    args.nonfinite = reinterpret_cast<unsigned long long*>(out.nonfinite);
    if (out.overlay != nullptr) {
        args.frame = out.frame->data;
        args.frameRowStride = out.frame->rowStride;
        args.framePixelStride = out.frame->pixelStride;
        args.alpha = detail::buildOverlayTable(params, logits.channels, args.table);
    }
    if (out.counts != nullptr) {
        EDGESEG_CUDA_CHECK(
            cudaMemsetAsync(out.counts, 0, sizeof(int64_t) * logits.channels, stream));
    }
    if (out.nonfinite != nullptr) {
        EDGESEG_CUDA_CHECK(cudaMemsetAsync(out.nonfinite, 0, sizeof(int64_t), stream));
    }
    launchPostprocess(args, stream);
}

void postprocessHost(const LogitsView& logits, const PostprocessParams& params,
                     const PostprocessOutputs& out) {
    detail::validatePostprocess(logits, params, out);
    const size_t pixels = static_cast<size_t>(params.outHeight) * params.outWidth;
    const size_t logitBytes = static_cast<size_t>(logits.channels) * logits.height * logits.width *
                              (logits.dtype == DType::Float16 ? 2 : 4);
    Stream stream;
    DeviceBuffer dLogits(logitBytes);
    DeviceBuffer dClass(pixels);
    DeviceBuffer dConf(out.confidence != nullptr ? pixels * sizeof(float) : 0);
    DeviceBuffer dOverlay(out.overlay != nullptr ? pixels * 3 : 0);
    DeviceBuffer dCounts(out.counts != nullptr ? sizeof(int64_t) * logits.channels : 0);
    DeviceBuffer dFrame(out.overlay != nullptr ? pixels * 3 : 0);
    DeviceBuffer dBad(out.nonfinite != nullptr ? sizeof(int64_t) : 0);
    // Pageable host memory: the copies are staged by the driver, but they stay on our stream.
    EDGESEG_CUDA_CHECK(cudaMemcpyAsync(dLogits.get(), logits.data, logitBytes,
                                       cudaMemcpyHostToDevice, stream.get()));

    ImageView deviceFrame;
    std::vector<uint8_t> packed;
    if (out.overlay != nullptr) {
        const ImageView& f = *out.frame;
        const size_t rowBytes = static_cast<size_t>(f.width) * 3;
        if (f.pixelStride == 3 && f.rowStride >= static_cast<ptrdiff_t>(rowBytes)) {
            EDGESEG_CUDA_CHECK(cudaMemcpy2DAsync(dFrame.get(), rowBytes, f.data,
                                                 static_cast<size_t>(f.rowStride), rowBytes,
                                                 f.height, cudaMemcpyHostToDevice, stream.get()));
        } else {
            // Negative or pixel strides: gather on the host into one packed copy.
            packed.resize(pixels * 3);
            for (int y = 0; y < f.height; ++y) {
                const uint8_t* row = f.row(y);
                uint8_t* dst = packed.data() + y * rowBytes;
                for (int x = 0; x < f.width; ++x) {
                    const uint8_t* p = row + static_cast<ptrdiff_t>(x) * f.pixelStride;
                    dst[3 * x] = p[0];
                    dst[3 * x + 1] = p[1];
                    dst[3 * x + 2] = p[2];
                }
            }
            EDGESEG_CUDA_CHECK(cudaMemcpyAsync(dFrame.get(), packed.data(), packed.size(),
                                               cudaMemcpyHostToDevice, stream.get()));
        }
        deviceFrame = f;
        deviceFrame.data = dFrame.as<uint8_t>();
        deviceFrame.rowStride = static_cast<ptrdiff_t>(rowBytes);
        deviceFrame.pixelStride = 3;
    }

    LogitsView deviceLogits = logits;
    deviceLogits.data = dLogits.get();
    PostprocessOutputs deviceOut;
    deviceOut.classMap = dClass.as<uint8_t>();
    deviceOut.confidence = dConf.as<float>();
    deviceOut.overlay = dOverlay.as<uint8_t>();
    deviceOut.counts = dCounts.as<int64_t>();
    deviceOut.nonfinite = dBad.as<int64_t>();
    deviceOut.frame = out.overlay != nullptr ? &deviceFrame : nullptr;
    postprocess(deviceLogits, params, deviceOut, stream.get());

    EDGESEG_CUDA_CHECK(
        cudaMemcpyAsync(out.classMap, dClass.get(), pixels, cudaMemcpyDeviceToHost, stream.get()));
    if (out.confidence != nullptr) {
        EDGESEG_CUDA_CHECK(cudaMemcpyAsync(out.confidence, dConf.get(), dConf.bytes(),
                                           cudaMemcpyDeviceToHost, stream.get()));
    }
    if (out.overlay != nullptr) {
        EDGESEG_CUDA_CHECK(cudaMemcpyAsync(out.overlay, dOverlay.get(), dOverlay.bytes(),
                                           cudaMemcpyDeviceToHost, stream.get()));
    }
    if (out.counts != nullptr) {
        EDGESEG_CUDA_CHECK(cudaMemcpyAsync(out.counts, dCounts.get(), dCounts.bytes(),
                                           cudaMemcpyDeviceToHost, stream.get()));
    }
    if (out.nonfinite != nullptr) {
        EDGESEG_CUDA_CHECK(cudaMemcpyAsync(out.nonfinite, dBad.get(), sizeof(int64_t),
                                           cudaMemcpyDeviceToHost, stream.get()));
    }
    stream.synchronize();
}

} // namespace edgeseg::cuda
