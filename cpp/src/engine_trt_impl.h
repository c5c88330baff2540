#pragma once
// Private state of TrtEngine, shared by its two rooms: engine_trt.cpp (loading, I/O binding,
// raw inference) and engine_trt_run.cpp (the fused frame pipeline around the engine).
// TensorRT runtime API only (named I/O tensors + enqueueV3; TensorRT 8.5 .. 10.x).
#include <NvInferRuntime.h> // runtime API only: no builder header needed

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "../cuda/check.cuh"
#include "../cuda/memory.cuh"
#include "edgeseg/engine.h"
#include "edgeseg/errors.h"

namespace edgeseg {
namespace trt {

/// Keeps TensorRT's errors so that a failure can name them in the exception.
class Logger final : public nvinfer1::ILogger {
public:
    void log(Severity severity, const char* msg) noexcept override {
        if (severity > Severity::kWARNING || msg == nullptr) {
            return;
        }
        std::lock_guard<std::mutex> lock(mMutex);
        if (severity <= Severity::kERROR && mErrors.size() < kMaxKept) {
            // Errors logged without a failing call (none is taken) must not grow without bound
            // in a long-running process: keep the first few KiB.
            mErrors += (mErrors.empty() ? "" : "; ") + std::string(msg);
        }
    }
    std::string takeErrors() {
        std::lock_guard<std::mutex> lock(mMutex);
        return std::exchange(mErrors, std::string());
    }

private:
    static constexpr size_t kMaxKept = 4096;
    std::mutex mMutex;
    std::string mErrors;
};

/// A buffer the device writes/reads: device memory on discrete GPUs, mapped host memory on
/// integrated ones (then host() is valid and no copy is needed).
class IoBuffer {
public:
    void ensure(size_t bytes, bool mapped) {
        if (bytes <= capacity()) {
            return;
        }
        if (mapped) {
            mMapped = cuda::MappedBuffer(bytes);
        } else {
            mDevice = cuda::DeviceBuffer(bytes);
        }
    }
    void* device() const { return mMapped.bytes() ? mMapped.device() : mDevice.get(); }
    void* host() const { return mMapped.host(); }
    size_t capacity() const { return mMapped.bytes() ? mMapped.bytes() : mDevice.bytes(); }

private:
    cuda::DeviceBuffer mDevice;
    cuda::MappedBuffer mMapped;
};

/// Makes `device` current; as the first member of Impl it runs before the stream and the events
/// are created, which belong to the device that is current at that point.
struct DeviceSelector {
    explicit DeviceSelector(int device) { EDGESEG_CUDA_CHECK(cudaSetDevice(device)); }
};

/// One frame's trip through run(): the parameters and the device-side views of the buffers,
/// filled by Impl::prepare(). Not copyable: post.letterbox points at lb.
struct FramePass {
    FramePass() = default;
    FramePass(const FramePass&) = delete;
    FramePass& operator=(const FramePass&) = delete;

    Letterbox lb;
    PreprocessParams pre;
    PostprocessParams post;
    ImageView frame;              ///< the frame's device copy (packed rows)
    LogitsView logits;            ///< the engine output
    PostprocessOutputs out;       ///< device outputs; null where the caller wants none
    int64_t* nonfinite = nullptr; ///< device: NaN/inf input values, then non-finite pixels
    size_t rowBytes = 0;          ///< one packed frame row
    size_t pixels = 0;            ///< output pixels
};

} // namespace trt

struct TrtEngine::Impl {
    explicit Impl(int device) : selected(device) {}

    trt::DeviceSelector selected;
    TrtEngineOptions options;
    trt::Logger logger;
    std::unique_ptr<nvinfer1::IRuntime> runtime;
    std::unique_ptr<nvinfer1::ICudaEngine> engine;
    std::unique_ptr<nvinfer1::IExecutionContext> context;
    std::vector<TrtTensorInfo> tensors;
    std::string inputName, outputName;
    nvinfer1::DataType inputType = nvinfer1::DataType::kFLOAT;
    nvinfer1::DataType outputType = nvinfer1::DataType::kFLOAT;
    int inH = 0, inW = 0, classes = 0, outH = 0, outW = 0;
    int boundBatch = 0;
    bool integrated = false;
    std::string deviceName;
    cuda::Stream stream;
    trt::IoBuffer frame, input, logits, classMap, confidence, overlay, counts;
    trt::IoBuffer nonfinite; ///< two int64: NaN/inf values in the input blob, non-finite pixels
    // Timing marks of run(): before the upload, after it, after preprocess, after inference,
    // after postprocess, after the download.
    cuda::Event e0, e1, e2, e3, e4, e5;
    TrtTimings timings;
    // CUDA graph of the whole device sequence. The graph bakes in every kernel argument
    // (sizes, mean/std, palette table, ignored classes, alpha) and every buffer address and
    // TensorRT binding, so graphKey holds all of them and resetGraph() runs whenever the
    // bindings change.
    cuda::GraphExec graph;
    std::string graphKey;
    int runsWithKey = 0;
    // run()/infer() share the stream, the buffers and the context: one call at a time (the
    // Python binding releases the GIL while they run).
    std::mutex callMutex;

    void resetGraph() noexcept {
        graph.reset();
        graphKey.clear();
        runsWithKey = 0;
    }

    /// Throws TensorRTError with `what` and the errors TensorRT logged since the last failure.
    [[noreturn]] void fail(const std::string& what);
    /// Sets the input batch (dynamic batch engines) and binds input/output buffers for it.
    void bindBatch(int n);
    /// enqueueV3 on the engine's stream.
    void enqueue();

    // The steps of run(), in order (engine_trt_run.cpp).
    /// Sizes the buffers for this frame and fills `pass` with the device-side views.
    void prepare(const ImageView& frame, const PreprocessParams& pre, const PostprocessParams& post,
                 const PostprocessOutputs& out, trt::FramePass& pass);
    /// Copies the frame to the device (a host copy into mapped memory on integrated GPUs).
    void upload(const ImageView& frame, const trt::FramePass& pass);
    /// Preprocess, enqueueV3 and postprocess on the stream: plain launches while warming up,
    /// then one captured CUDA graph replayed while its key stays the same.
    void execute(const trt::FramePass& pass);
    /// Copies the requested outputs and the non-finite counts back and waits for the stream.
    void download(const PostprocessOutputs& out, const trt::FramePass& pass,
                  int64_t* inputNonfinite);
    /// Stores the event timings of the run just finished.
    void recordTimings();

private:
    /// Everything a captured graph bakes in for this pass (see graph).
    std::string graphKeyOf(const trt::FramePass& pass) const;
    void enqueueSequence(const trt::FramePass& pass, bool timed);
};

} // namespace edgeseg
