// TensorRT runtime (stable "v3" API: named I/O tensors + enqueueV3; TensorRT 8.6 .. 10.x):
// loading an engine, binding its I/O tensors and raw inference. The fused frame pipeline
// (TrtEngine::run) is in engine_trt_run.cpp; the state both share is in engine_trt_impl.h.
// Compiled only when TensorRT and CUDA are found (EDGESEG_HAS_TENSORRT).
// Version differences handled here: TensorRT 10 widened Dims::d to int64_t (int32_t before) and
// added data types (kBF16, kINT64, kINT4); code that depends on them checks NV_TENSORRT_MAJOR.
#include <NvInferRuntime.h>
#include <NvInferVersion.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <mutex>
#include <stdexcept>
#include <utility>

#include "../cuda/check.cuh"
#include "edgeseg/engine.h"
#include "edgeseg/errors.h"
#include "engine_trt_impl.h"

namespace edgeseg {
namespace {

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

} // namespace

void TrtEngine::Impl::fail(const std::string& what) {
    std::string errors = logger.takeErrors();
    throw TensorRTError("TensorRT: " + what + (errors.empty() ? "" : " (" + errors + ")"));
}

void TrtEngine::Impl::bindBatch(int n) {
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
        fail("the engine takes batch " + std::to_string(dims.d[0]) + ", got " + std::to_string(n));
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
        fail("the engine's input/output shape is not fully known for batch " + std::to_string(n) +
             " (data-dependent output shapes are not supported)");
    }
    input.ensure(inCount * inElem, false);
    logits.ensure(outCount * outElem, false);
    if (!context->setTensorAddress(inputName.c_str(), input.device()) ||
        !context->setTensorAddress(outputName.c_str(), logits.device())) {
        fail("setTensorAddress failed");
    }
    boundBatch = n;
}

void TrtEngine::Impl::enqueue() {
    if (!context->enqueueV3(stream.get())) {
        fail("enqueueV3 failed");
    }
}

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
    std::vector<char> blob((std::istreambuf_iterator<char>(file)),
                           std::istreambuf_iterator<char>());
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
    EDGESEG_CUDA_CHECK(
        cudaMemcpyAsync(logitsOut, m.logits.device(), outBytes, cudaMemcpyDeviceToHost, s));
    m.stream.synchronize();
}

} // namespace edgeseg
