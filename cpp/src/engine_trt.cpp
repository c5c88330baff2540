// TensorRT runtime (stable "v3" API: named I/O tensors + enqueueV3; TensorRT 8.6 .. 10.x).
// Compiled only when TensorRT and CUDA are found (EDGESEG_HAS_TENSORRT).
// Version differences handled here: TensorRT 10 widened Dims::d to int64_t (int32_t before) and
// added data types (kBF16, kINT64, kINT4); code that depends on them checks NV_TENSORRT_MAJOR.
#include "edgeseg/engine.h"

#include <NvInferRuntime.h> // runtime API only: no builder header needed
#include <NvInferVersion.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>
#include <mutex>
#include <stdexcept>
#include <utility>

#include "../cuda/check.cuh"
#include "../cuda/memory.cuh"
#include "../cuda/postprocess.cuh"
#include "../cuda/preprocess.cuh"
#include "edgeseg/errors.h"

namespace edgeseg {
namespace {

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

const char* dtypeName(nvinfer1::DataType t) {
    switch (t) {
    case nvinfer1::DataType::kFLOAT: return "float32";
    case nvinfer1::DataType::kHALF: return "float16";
    case nvinfer1::DataType::kINT8: return "int8";
    case nvinfer1::DataType::kINT32: return "int32";
    case nvinfer1::DataType::kBOOL: return "bool";
    case nvinfer1::DataType::kUINT8: return "uint8"; // 8.5+, as is the v3 API used here
#if NV_TENSORRT_MAJOR > 8 || (NV_TENSORRT_MAJOR == 8 && NV_TENSORRT_MINOR >= 6)
    case nvinfer1::DataType::kFP8: return "float8"; // not in 8.5 (JetPack 5)
#endif
#if NV_TENSORRT_MAJOR >= 10
    case nvinfer1::DataType::kBF16: return "bfloat16";
    case nvinfer1::DataType::kINT64: return "int64";
    case nvinfer1::DataType::kINT4: return "int4";
#endif
    default: return "other";
    }
}

/// Host memory mapped into the device's address space (integrated GPUs: no copies).
class MappedBuffer {
public:
    MappedBuffer() = default;
    explicit MappedBuffer(size_t bytes) : mBytes(bytes) {
        if (bytes > 0) {
            EDGESEG_CUDA_CHECK(cudaHostAlloc(&mHost, bytes, cudaHostAllocMapped));
            EDGESEG_CUDA_CHECK(cudaHostGetDevicePointer(&mDevice, mHost, 0));
        }
    }
    ~MappedBuffer() {
        if (mHost != nullptr) {
            cudaFreeHost(mHost);
        }
    }
    MappedBuffer(MappedBuffer&& o) noexcept
        : mHost(std::exchange(o.mHost, nullptr)), mDevice(std::exchange(o.mDevice, nullptr)),
          mBytes(std::exchange(o.mBytes, 0)) {}
    MappedBuffer& operator=(MappedBuffer&& o) noexcept {
        if (this != &o) {
            if (mHost != nullptr) {
                cudaFreeHost(mHost);
            }
            mHost = std::exchange(o.mHost, nullptr);
            mDevice = std::exchange(o.mDevice, nullptr);
            mBytes = std::exchange(o.mBytes, 0);
        }
        return *this;
    }
    MappedBuffer(const MappedBuffer&) = delete;
    MappedBuffer& operator=(const MappedBuffer&) = delete;
    void* host() const { return mHost; }
    void* device() const { return mDevice; }
    size_t bytes() const { return mBytes; }

private:
    void* mHost = nullptr;
    void* mDevice = nullptr;
    size_t mBytes = 0;
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
            mMapped = MappedBuffer(bytes);
        } else {
            mDevice = cuda::DeviceBuffer(bytes);
        }
    }
    void* device() const { return mMapped.bytes() ? mMapped.device() : mDevice.get(); }
    void* host() const { return mMapped.host(); }
    size_t capacity() const { return mMapped.bytes() ? mMapped.bytes() : mDevice.bytes(); }

private:
    cuda::DeviceBuffer mDevice;
    MappedBuffer mMapped;
};

class Event {
public:
    Event() { EDGESEG_CUDA_CHECK(cudaEventCreate(&mEvent)); }
    ~Event() {
        if (mEvent != nullptr) {
            cudaEventDestroy(mEvent);
        }
    }
    Event(const Event&) = delete;
    Event& operator=(const Event&) = delete;
    cudaEvent_t get() const { return mEvent; }

private:
    cudaEvent_t mEvent = nullptr;
};

float elapsed(const Event& a, const Event& b) {
    float ms = 0.f;
    return cudaEventElapsedTime(&ms, a.get(), b.get()) == cudaSuccess ? ms : 0.f;
}

/// Element count of a fully known shape (every dimension >= 0, rank >= 0); 0 otherwise, so
/// that a shape TensorRT has not resolved is never mistaken for a small buffer.
size_t volume(const nvinfer1::Dims& d) {
    if (d.nbDims < 0) {
        return 0;
    }
    size_t v = 1;
    for (int i = 0; i < d.nbDims; ++i) {
        if (d.d[i] < 0) {
            return 0;
        }
        v *= static_cast<size_t>(d.d[i]);
    }
    return v;
}

/// Appends the bytes of a trivially copyable value to a cache key.
template <typename T> void appendKey(std::string& key, const T& value) {
    key.append(reinterpret_cast<const char*>(&value), sizeof(T));
}

/// Makes `device` current; as the first member of Impl it runs before the stream and the events
/// are created, which belong to the device that is current at that point.
struct DeviceSelector {
    explicit DeviceSelector(int device) { EDGESEG_CUDA_CHECK(cudaSetDevice(device)); }
};

} // namespace

struct TrtEngine::Impl {
    explicit Impl(int device) : selected(device) {}

    DeviceSelector selected;
    TrtEngineOptions options;
    Logger logger;
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
    IoBuffer frame, input, logits, classMap, confidence, overlay, counts;
    IoBuffer nonfinite; ///< two int64: NaN/inf values in the input blob, non-finite pixels
    Event e0, e1, e2, e3, e4, e5;
    TrtTimings timings;
    // CUDA graph of the whole device sequence. The graph bakes in every kernel argument
    // (sizes, mean/std, palette table, ignored classes, alpha) and every buffer address and
    // TensorRT binding, so graphKey holds all of them and resetGraph() runs whenever the
    // bindings change.
    cudaGraphExec_t graph = nullptr;
    std::string graphKey;
    int runsWithKey = 0;
    // run()/infer() share the stream, the buffers and the context: one call at a time (the
    // Python binding releases the GIL while they run).
    std::mutex callMutex;

    ~Impl() { resetGraph(); }

    void resetGraph() noexcept {
        if (graph != nullptr) {
            cudaGraphExecDestroy(graph);
            graph = nullptr;
        }
        graphKey.clear();
        runsWithKey = 0;
    }

    [[noreturn]] void fail(const std::string& what) {
        std::string errors = logger.takeErrors();
        throw TensorRTError("TensorRT: " + what + (errors.empty() ? "" : " (" + errors + ")"));
    }

    void bindBatch(int n) {
        if (n == boundBatch) {
            return;
        }
        nvinfer1::Dims dims = engine->getTensorShape(inputName.c_str());
        if (dims.d[0] < 0) {
            dims.d[0] = n;
            if (!context->setInputShape(inputName.c_str(), dims)) {
                fail("setInputShape(batch " + std::to_string(n) + ") rejected by the profile");
            }
        } else if (dims.d[0] != n) {
            fail("the engine takes batch " + std::to_string(dims.d[0]) + ", got " +
                 std::to_string(n));
        }
        // New shapes (and possibly reallocated buffers) invalidate a captured graph; a plain
        // enqueueV3 must also run after a shape change before TensorRT can be captured again.
        resetGraph();
        boundBatch = 0;
        const size_t inElem = inputType == nvinfer1::DataType::kHALF ? 2 : 4;
        const size_t outElem = outputType == nvinfer1::DataType::kHALF ? 2 : 4;
        const nvinfer1::Dims outDims = context->getTensorShape(outputName.c_str());
        const size_t inCount = volume(dims);
        const size_t outCount = volume(outDims);
        if (inCount == 0 || outCount == 0) {
            fail("the engine's input/output shape is not fully known for batch " +
                 std::to_string(n) + " (data-dependent output shapes are not supported)");
        }
        input.ensure(inCount * inElem, false);
        logits.ensure(outCount * outElem, false);
        if (!context->setTensorAddress(inputName.c_str(), input.device()) ||
            !context->setTensorAddress(outputName.c_str(), logits.device())) {
            fail("setTensorAddress failed");
        }
        boundBatch = n;
    }

    void enqueue() {
        if (!context->enqueueV3(stream.get())) {
            fail("enqueueV3 failed");
        }
    }
};

TrtEngine::TrtEngine(const std::string& enginePath, const TrtEngineOptions& options)
    : mImpl(std::make_unique<Impl>(options.device)) {
    Impl& m = *mImpl;
    m.options = options;
    cudaDeviceProp prop{};
    EDGESEG_CUDA_CHECK(cudaGetDeviceProperties(&prop, options.device));
    m.integrated = prop.integrated != 0 && prop.canMapHostMemory != 0;
    m.deviceName = prop.name;

    std::ifstream file(enginePath, std::ios::binary);
    if (!file) {
        throw std::invalid_argument(enginePath + ": cannot open the engine file");
    }
    std::vector<char> blob((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    m.runtime.reset(nvinfer1::createInferRuntime(m.logger));
    if (!m.runtime) {
        m.fail("createInferRuntime failed");
    }
    m.engine.reset(m.runtime->deserializeCudaEngine(blob.data(), blob.size()));
    if (!m.engine) {
        m.fail(enginePath + ": cannot deserialize the engine (built by another TensorRT version "
                            "or for another GPU? rebuild it with `edgeseg build`)");
    }
    m.context.reset(m.engine->createExecutionContext());
    if (!m.context) {
        m.fail("createExecutionContext failed (out of GPU memory?)");
    }
    for (int i = 0; i < m.engine->getNbIOTensors(); ++i) {
        const char* name = m.engine->getIOTensorName(i);
        TrtTensorInfo t;
        t.name = name;
        t.isInput = m.engine->getTensorIOMode(name) == nvinfer1::TensorIOMode::kINPUT;
        const nvinfer1::Dims d = m.engine->getTensorShape(name);
        t.shape.assign(d.d, d.d + std::max(0, d.nbDims)); // Dims::d is int32_t before TensorRT 10
        t.dtype = dtypeName(m.engine->getTensorDataType(name));
        if (t.isInput && m.inputName.empty()) {
            m.inputName = name;
            m.inputType = m.engine->getTensorDataType(name);
        } else if (!t.isInput && m.outputName.empty()) {
            m.outputName = name;
            m.outputType = m.engine->getTensorDataType(name);
        }
        m.tensors.push_back(std::move(t));
    }
    auto isFloat = [](nvinfer1::DataType t) {
        return t == nvinfer1::DataType::kFLOAT || t == nvinfer1::DataType::kHALF;
    };
    if (m.inputName.empty() || m.outputName.empty() || !isFloat(m.inputType) ||
        !isFloat(m.outputType)) {
        m.fail(enginePath + ": expected a float input (images) and float logits output");
    }
    const nvinfer1::Dims in = m.engine->getTensorShape(m.inputName.c_str());
    if (in.nbDims != 4 || in.d[1] != 3 || in.d[2] <= 0 || in.d[3] <= 0) {
        m.fail(enginePath + ": the input must be N x 3 x H x W with a static H and W");
    }
    m.inH = static_cast<int>(in.d[2]);
    m.inW = static_cast<int>(in.d[3]);
    m.bindBatch(1);
    const nvinfer1::Dims out = m.context->getTensorShape(m.outputName.c_str());
    if (out.nbDims != 4 || out.d[1] < 1 || out.d[1] > 255 || out.d[2] < 1 || out.d[3] < 1) {
        m.fail(enginePath + ": the output must be N x C x h x w logits with 1..255 classes and a "
                            "static h and w");
    }
    m.classes = static_cast<int>(out.d[1]);
    m.outH = static_cast<int>(out.d[2]);
    m.outW = static_cast<int>(out.d[3]);
}

TrtEngine::~TrtEngine() = default;
TrtEngine::TrtEngine(TrtEngine&&) noexcept = default;
TrtEngine& TrtEngine::operator=(TrtEngine&&) noexcept = default;

const std::vector<TrtTensorInfo>& TrtEngine::tensors() const { return mImpl->tensors; }
int TrtEngine::inputHeight() const { return mImpl->inH; }
int TrtEngine::inputWidth() const { return mImpl->inW; }
int TrtEngine::numClasses() const { return mImpl->classes; }
int TrtEngine::logitsHeight() const { return mImpl->outH; }
int TrtEngine::logitsWidth() const { return mImpl->outW; }
bool TrtEngine::integrated() const { return mImpl->integrated; }
std::string TrtEngine::deviceName() const { return mImpl->deviceName; }
TrtTimings TrtEngine::lastTimings() const {
    std::lock_guard<std::mutex> lock(mImpl->callMutex);
    return mImpl->timings;
}

std::string TrtEngine::tensorrtVersion() {
    // The loaded libnvinfer, not the headers this core was compiled with: an engine plan only
    // deserializes with the exact TensorRT that built it, and a newer libnvinfer.so.N of the
    // same major version loads in place of the one compiled against.
    // Format (8.x and 10.x): (major * 100 + minor) * 100 + patch.
    const int32_t v = getInferLibVersion();
    return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." +
           std::to_string(v % 100);
}

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
    const size_t rowBytes = static_cast<size_t>(frame.width) * 3;
    const size_t pixels = static_cast<size_t>(postIn.outHeight) * postIn.outWidth;
    m.frame.ensure(rowBytes * frame.height, m.integrated);
    m.classMap.ensure(pixels, m.integrated);
    if (out.confidence != nullptr) {
        m.confidence.ensure(pixels * sizeof(float), m.integrated);
    }
    if (out.overlay != nullptr) {
        m.overlay.ensure(pixels * 3, m.integrated);
    }
    if (out.counts != nullptr) {
        m.counts.ensure(sizeof(int64_t) * m.classes, m.integrated);
    }
    // Always counted (two int64 and no extra kernel), so the graph key does not depend on it.
    m.nonfinite.ensure(2 * sizeof(int64_t), m.integrated);
    int64_t* dNonfinite = static_cast<int64_t*>(m.nonfinite.device());
    PreprocessParams pre = preIn;
    pre.dtype = m.inputType == nvinfer1::DataType::kHALF ? DType::Float16 : DType::Float32;
    ImageView dFrame = frame;
    dFrame.data = static_cast<const uint8_t*>(m.frame.device());
    dFrame.rowStride = static_cast<ptrdiff_t>(rowBytes);
    LogitsView lv;
    lv.data = m.logits.device();
    lv.dtype = m.outputType == nvinfer1::DataType::kHALF ? DType::Float16 : DType::Float32;
    lv.channels = m.classes;
    lv.height = m.outH;
    lv.width = m.outW;
    const Letterbox lb = makeLetterbox(frame.width, frame.height, m.inW, m.inH);
    PostprocessParams post = postIn;
    post.letterbox = pre.letterbox ? &lb : nullptr;
    PostprocessOutputs dOut;
    dOut.classMap = static_cast<uint8_t*>(m.classMap.device());
    dOut.confidence = out.confidence ? static_cast<float*>(m.confidence.device()) : nullptr;
    dOut.overlay = out.overlay ? static_cast<uint8_t*>(m.overlay.device()) : nullptr;
    dOut.counts = out.counts ? static_cast<int64_t*>(m.counts.device()) : nullptr;
    dOut.nonfinite = dNonfinite + 1;
    dOut.frame = out.overlay ? &dFrame : nullptr;

    cudaStream_t s = m.stream.get();
    // Upload: a host memcpy into mapped memory on integrated GPUs, a 2-D copy otherwise.
    EDGESEG_CUDA_CHECK(cudaEventRecord(m.e0.get(), s));
    if (m.integrated) {
        for (int y = 0; y < frame.height; ++y) {
            std::memcpy(static_cast<uint8_t*>(m.frame.host()) + y * rowBytes, frame.row(y),
                        rowBytes);
        }
    } else {
        EDGESEG_CUDA_CHECK(cudaMemcpy2DAsync(m.frame.device(), rowBytes, frame.data,
                                             static_cast<size_t>(frame.rowStride), rowBytes,
                                             frame.height, cudaMemcpyHostToDevice, s));
    }
    EDGESEG_CUDA_CHECK(cudaEventRecord(m.e1.get(), s));

    // The device-side sequence, replayed from a CUDA graph once warm. Everything the graph
    // bakes in is part of the key: sizes, preprocess parameters, the overlay inputs (palette,
    // ignored classes, alpha) and the device addresses of every buffer.
    std::string key;
    appendKey(key, frame.width);
    appendKey(key, frame.height);
    appendKey(key, post.outWidth);
    appendKey(key, post.outHeight);
    appendKey(key, pre.mean);
    appendKey(key, pre.stddev);
    appendKey(key, pre.swapRB);
    appendKey(key, pre.letterbox);
    appendKey(key, pre.padValue);
    appendKey(key, pre.outChannels);
    for (const IoBuffer* b : {&m.frame, &m.input, &m.logits, &m.classMap, &m.nonfinite}) {
        appendKey(key, b->device());
    }
    appendKey(key, dOut.confidence);
    appendKey(key, dOut.counts);
    appendKey(key, dOut.overlay);
    if (dOut.overlay != nullptr) {
        appendKey(key, post.alpha);
        if (post.palette != nullptr) {
            key.append(reinterpret_cast<const char*>(post.palette),
                       static_cast<size_t>(m.classes) * 3);
        }
        if (post.transparent != nullptr) {
            key.append(reinterpret_cast<const char*>(post.transparent), 256);
        }
    }
    if (key != m.graphKey) {
        m.resetGraph();
        m.graphKey = std::move(key);
    }
    auto sequence = [&](bool timed) {
        cuda::preprocess(dFrame, pre, m.input.device(), s, dNonfinite);
        if (timed) {
            EDGESEG_CUDA_CHECK(cudaEventRecord(m.e2.get(), s));
        }
        m.enqueue();
        if (timed) {
            EDGESEG_CUDA_CHECK(cudaEventRecord(m.e3.get(), s));
        }
        cuda::postprocess(lv, post, dOut, s);
    };
    m.timings.graph = false;
    if (m.graph != nullptr) {
        EDGESEG_CUDA_CHECK(cudaGraphLaunch(m.graph, s));
        m.timings.graph = true;
    } else if (m.options.cudaGraph && m.runsWithKey >= m.options.warmupRuns) {
        // Capture without the timing events (events inside a graph need care); on failure
        // (e.g. an engine whose plugins cannot be captured) fall back to plain launches.
        cudaGraph_t g = nullptr;
        bool ok = cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) == cudaSuccess;
        if (ok) {
            try {
                sequence(false);
            } catch (...) {
                cudaStreamEndCapture(s, &g);
                if (g != nullptr) {
                    cudaGraphDestroy(g);
                }
                throw;
            }
            // cudaGraphInstantiateWithFlags: the same call on CUDA 11.4+ and 12+.
            ok = cudaStreamEndCapture(s, &g) == cudaSuccess && g != nullptr &&
                 cudaGraphInstantiateWithFlags(&m.graph, g, 0) == cudaSuccess;
            if (g != nullptr) {
                cudaGraphDestroy(g);
            }
        }
        cudaGetLastError(); // clear a capture error; the plain path below reports real ones
        if (ok && m.graph != nullptr) {
            EDGESEG_CUDA_CHECK(cudaGraphLaunch(m.graph, s));
            m.timings.graph = true;
        } else {
            m.options.cudaGraph = false;
            sequence(true);
        }
    } else {
        sequence(true);
    }
    ++m.runsWithKey;
    EDGESEG_CUDA_CHECK(cudaEventRecord(m.e4.get(), s));

    int64_t flags[2] = {0, 0};
    if (!m.integrated) {
        EDGESEG_CUDA_CHECK(cudaMemcpyAsync(out.classMap, m.classMap.device(), pixels,
                                           cudaMemcpyDeviceToHost, s));
        if (out.confidence != nullptr) {
            EDGESEG_CUDA_CHECK(cudaMemcpyAsync(out.confidence, m.confidence.device(),
                                               pixels * sizeof(float), cudaMemcpyDeviceToHost, s));
        }
        if (out.overlay != nullptr) {
            EDGESEG_CUDA_CHECK(cudaMemcpyAsync(out.overlay, m.overlay.device(), pixels * 3,
                                               cudaMemcpyDeviceToHost, s));
        }
        if (out.counts != nullptr) {
            EDGESEG_CUDA_CHECK(cudaMemcpyAsync(out.counts, m.counts.device(),
                                               sizeof(int64_t) * m.classes,
                                               cudaMemcpyDeviceToHost, s));
        }
        EDGESEG_CUDA_CHECK(cudaMemcpyAsync(flags, m.nonfinite.device(), sizeof flags,
                                           cudaMemcpyDeviceToHost, s));
    }
    EDGESEG_CUDA_CHECK(cudaEventRecord(m.e5.get(), s));
    m.stream.synchronize();
    if (m.integrated) {
        std::memcpy(out.classMap, m.classMap.host(), pixels);
        if (out.confidence != nullptr) {
            std::memcpy(out.confidence, m.confidence.host(), pixels * sizeof(float));
        }
        if (out.overlay != nullptr) {
            std::memcpy(out.overlay, m.overlay.host(), pixels * 3);
        }
        if (out.counts != nullptr) {
            std::memcpy(out.counts, m.counts.host(), sizeof(int64_t) * m.classes);
        }
        std::memcpy(flags, m.nonfinite.host(), sizeof flags);
    }
    if (inputNonfinite != nullptr) {
        *inputNonfinite = flags[0];
    }
    if (out.nonfinite != nullptr) {
        *out.nonfinite = flags[1];
    }
    m.timings.upload = elapsed(m.e0, m.e1);
    if (m.timings.graph) {
        m.timings.preprocess = m.timings.postprocess = 0.f;
        m.timings.inference = elapsed(m.e1, m.e4); // the whole replayed graph
    } else {
        m.timings.preprocess = elapsed(m.e1, m.e2);
        m.timings.inference = elapsed(m.e2, m.e3);
        m.timings.postprocess = elapsed(m.e3, m.e4);
    }
    m.timings.download = elapsed(m.e4, m.e5);
    return lb;
}

void TrtEngine::infer(const float* blob, int n, float* logitsOut) {
    Impl& m = *mImpl;
    std::lock_guard<std::mutex> lock(m.callMutex);
    EDGESEG_CUDA_CHECK(cudaSetDevice(m.options.device));
    if (n < 1) {
        throw std::invalid_argument("TrtEngine::infer: the batch must hold at least one image");
    }
    if (m.inputType != nvinfer1::DataType::kFLOAT || m.outputType != nvinfer1::DataType::kFLOAT) {
        throw std::invalid_argument(
            "TrtEngine::infer: raw inference needs float32 engine I/O (build without "
            "--io-fp16) ");
    }
    m.bindBatch(n);
    const size_t inBytes = static_cast<size_t>(n) * 3 * m.inH * m.inW * sizeof(float);
    const size_t outBytes = static_cast<size_t>(n) * m.classes * m.outH * m.outW * sizeof(float);
    cudaStream_t s = m.stream.get();
    EDGESEG_CUDA_CHECK(cudaMemcpyAsync(m.input.device(), blob, inBytes, cudaMemcpyHostToDevice, s));
    m.enqueue();
    EDGESEG_CUDA_CHECK(cudaMemcpyAsync(logitsOut, m.logits.device(), outBytes,
                                       cudaMemcpyDeviceToHost, s));
    m.stream.synchronize();
}

} // namespace edgeseg
