// TrtEngine::run: one frame through CUDA preprocess -> TensorRT -> CUDA fused postprocess on the
// engine's stream, in four steps (prepare, upload, execute, download). Only the class map,
// confidence, overlay and counts come back to the host. Compiled only with TensorRT.
#include <NvInferRuntime.h>
#include <cuda_runtime.h>

#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>

#include "../cuda/check.cuh"
#include "../cuda/memory.cuh"
#include "../cuda/postprocess.cuh"
#include "../cuda/preprocess.cuh"
#include "edgeseg/engine.h"
#include "engine_trt_impl.h"

namespace edgeseg {
namespace {

/// Appends the bytes of a trivially copyable value to a cache key.
template <typename T> void appendKey(std::string& key, const T& value) {
    key.append(reinterpret_cast<const char*>(&value), sizeof(T));
}

} // namespace

Letterbox TrtEngine::run(const ImageView& frame, const PreprocessParams& preIn,
                         const PostprocessParams& postIn, const PostprocessOutputs& out,
                         int64_t* inputNonfinite) {
    Impl& m = *mImpl;
    std::lock_guard<std::mutex> lock(m.callMutex);
    EDGESEG_CUDA_CHECK(cudaSetDevice(m.options.device));
    if (preIn.outHeight != m.inH || preIn.outWidth != m.inW) {
        throw std::invalid_argument("TrtEngine::run: preprocess size must equal the engine input");
    }
    if (frame.channels != 3 || frame.pixelStride != 3) {
        throw std::invalid_argument("TrtEngine::run: expected an HxWx3 frame with packed pixels");
    }
    if (frame.width < 1 || frame.height < 1 ||
        frame.rowStride < static_cast<ptrdiff_t>(frame.width) * 3) {
        throw std::invalid_argument(
            "TrtEngine::run: expected a non-empty frame with rows stored top to bottom");
    }
    m.bindBatch(1);
    trt::FramePass pass;
    m.prepare(frame, preIn, postIn, out, pass);
    m.upload(frame, pass);
    m.execute(pass);
    m.download(out, pass, inputNonfinite);
    m.recordTimings();
    return pass.lb;
}

void TrtEngine::Impl::prepare(const ImageView& src, const PreprocessParams& preIn,
                              const PostprocessParams& postIn, const PostprocessOutputs& out,
                              trt::FramePass& p) {
    p.rowBytes = static_cast<size_t>(src.width) * 3;
    p.pixels = static_cast<size_t>(postIn.outHeight) * postIn.outWidth;
    frame.ensure(p.rowBytes * src.height, integrated);
    classMap.ensure(p.pixels, integrated);
    if (out.confidence != nullptr) {
        confidence.ensure(p.pixels * sizeof(float), integrated);
    }
    if (out.overlay != nullptr) {
        overlay.ensure(p.pixels * 3, integrated);
    }
    if (out.counts != nullptr) {
        counts.ensure(sizeof(int64_t) * classes, integrated);
    }
    // Always counted (two int64 and no extra kernel), so the graph key does not depend on it.
    nonfinite.ensure(2 * sizeof(int64_t), integrated);
    p.nonfinite = static_cast<int64_t*>(nonfinite.device());
    p.pre = preIn;
    p.pre.dtype = inputType == nvinfer1::DataType::kHALF ? DType::Float16 : DType::Float32;
    p.frame = src;
    p.frame.data = static_cast<const uint8_t*>(frame.device());
    p.frame.rowStride = static_cast<ptrdiff_t>(p.rowBytes);
    p.logits.data = logits.device();
    p.logits.dtype = outputType == nvinfer1::DataType::kHALF ? DType::Float16 : DType::Float32;
    p.logits.channels = classes;
    p.logits.height = outH;
    p.logits.width = outW;
    p.lb = makeLetterbox(src.width, src.height, inW, inH);
    p.post = postIn;
    p.post.letterbox = p.pre.letterbox ? &p.lb : nullptr;
    p.out.classMap = static_cast<uint8_t*>(classMap.device());
    p.out.confidence = out.confidence ? static_cast<float*>(confidence.device()) : nullptr;
    p.out.overlay = out.overlay ? static_cast<uint8_t*>(overlay.device()) : nullptr;
    p.out.counts = out.counts ? static_cast<int64_t*>(counts.device()) : nullptr;
    p.out.nonfinite = p.nonfinite + 1;
    p.out.frame = out.overlay ? &p.frame : nullptr;
}

void TrtEngine::Impl::upload(const ImageView& src, const trt::FramePass& p) {
    cudaStream_t s = stream.get();
    e0.record(s);
    if (integrated) {
        for (int y = 0; y < src.height; ++y) {
            std::memcpy(static_cast<uint8_t*>(frame.host()) + y * p.rowBytes, src.row(y),
                        p.rowBytes);
        }
    } else {
        EDGESEG_CUDA_CHECK(cudaMemcpy2DAsync(frame.device(), p.rowBytes, src.data,
                                             static_cast<size_t>(src.rowStride), p.rowBytes,
                                             src.height, cudaMemcpyHostToDevice, s));
    }
    e1.record(s);
}

std::string TrtEngine::Impl::graphKeyOf(const trt::FramePass& p) const {
    // Everything the graph bakes in: sizes, preprocess parameters, the overlay inputs (palette,
    // ignored classes, alpha) and the device addresses of every buffer.
    std::string key;
    appendKey(key, p.frame.width);
    appendKey(key, p.frame.height);
    appendKey(key, p.post.outWidth);
    appendKey(key, p.post.outHeight);
    appendKey(key, p.pre.mean);
    appendKey(key, p.pre.stddev);
    appendKey(key, p.pre.swapRB);
    appendKey(key, p.pre.letterbox);
    appendKey(key, p.pre.padValue);
    appendKey(key, p.pre.outChannels);
    for (const trt::IoBuffer* b : {&frame, &input, &logits, &classMap, &nonfinite}) {
        appendKey(key, b->device());
    }
    appendKey(key, p.out.confidence);
    appendKey(key, p.out.counts);
    appendKey(key, p.out.overlay);
    if (p.out.overlay != nullptr) {
        appendKey(key, p.post.alpha);
        if (p.post.palette != nullptr) {
            key.append(reinterpret_cast<const char*>(p.post.palette),
                       static_cast<size_t>(classes) * 3);
        }
        if (p.post.transparent != nullptr) {
            key.append(reinterpret_cast<const char*>(p.post.transparent), 256);
        }
    }
    return key;
}

void TrtEngine::Impl::enqueueSequence(const trt::FramePass& p, bool timed) {
    cudaStream_t s = stream.get();
    cuda::preprocess(p.frame, p.pre, input.device(), s, p.nonfinite);
    if (timed) {
        e2.record(s);
    }
    enqueue();
    if (timed) {
        e3.record(s);
    }
    cuda::postprocess(p.logits, p.post, p.out, s);
}

void TrtEngine::Impl::execute(const trt::FramePass& p) {
    cudaStream_t s = stream.get();
    std::string key = graphKeyOf(p);
    if (key != graphKey) {
        resetGraph();
        graphKey = std::move(key);
    }
    timings.graph = false;
    if (graph) {
        graph.launch(s);
        timings.graph = true;
    } else if (options.cudaGraph && runsWithKey >= options.warmupRuns) {
        // Captured without the timing events (events inside a graph need care); when the
        // sequence cannot be captured (e.g. an engine whose plugins cannot be), plain launches
        // from now on.
        graph = cuda::captureGraph(s, [&] { enqueueSequence(p, false); });
        if (graph) {
            graph.launch(s);
            timings.graph = true;
        } else {
            options.cudaGraph = false;
            enqueueSequence(p, true);
        }
    } else {
        enqueueSequence(p, true);
    }
    ++runsWithKey;
    e4.record(s);
}

void TrtEngine::Impl::download(const PostprocessOutputs& out, const trt::FramePass& p,
                               int64_t* inputNonfinite) {
    cudaStream_t s = stream.get();
    int64_t flags[2] = {0, 0};
    if (!integrated) {
        EDGESEG_CUDA_CHECK(
            cudaMemcpyAsync(out.classMap, classMap.device(), p.pixels, cudaMemcpyDeviceToHost, s));
        if (out.confidence != nullptr) {
            EDGESEG_CUDA_CHECK(cudaMemcpyAsync(out.confidence, confidence.device(),
                                               p.pixels * sizeof(float), cudaMemcpyDeviceToHost,
                                               s));
        }
        if (out.overlay != nullptr) {
            EDGESEG_CUDA_CHECK(cudaMemcpyAsync(out.overlay, overlay.device(), p.pixels * 3,
                                               cudaMemcpyDeviceToHost, s));
        }
        if (out.counts != nullptr) {
            EDGESEG_CUDA_CHECK(cudaMemcpyAsync(
                out.counts, counts.device(), sizeof(int64_t) * classes, cudaMemcpyDeviceToHost, s));
        }
        EDGESEG_CUDA_CHECK(
            cudaMemcpyAsync(flags, nonfinite.device(), sizeof flags, cudaMemcpyDeviceToHost, s));
    }
    e5.record(s);
    stream.synchronize();
    if (integrated) {
        std::memcpy(out.classMap, classMap.host(), p.pixels);
        if (out.confidence != nullptr) {
            std::memcpy(out.confidence, confidence.host(), p.pixels * sizeof(float));
        }
        if (out.overlay != nullptr) {
            std::memcpy(out.overlay, overlay.host(), p.pixels * 3);
        }
        if (out.counts != nullptr) {
            std::memcpy(out.counts, counts.host(), sizeof(int64_t) * classes);
        }
        std::memcpy(flags, nonfinite.host(), sizeof flags);
    }
    if (inputNonfinite != nullptr) {
        *inputNonfinite = flags[0];
    }
    if (out.nonfinite != nullptr) {
        *out.nonfinite = flags[1];
    }
}

void TrtEngine::Impl::recordTimings() {
    timings.upload = cuda::elapsedMs(e0, e1);
    if (timings.graph) {
        timings.preprocess = timings.postprocess = 0.f;
        timings.inference = cuda::elapsedMs(e1, e4); // the whole replayed graph
    } else {
        timings.preprocess = cuda::elapsedMs(e1, e2);
        timings.inference = cuda::elapsedMs(e2, e3);
        timings.postprocess = cuda::elapsedMs(e3, e4);
    }
    timings.download = cuda::elapsedMs(e4, e5);
}

} // namespace edgeseg
