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

/// Host memory mapped into the device's address space: on an integrated GPU (Jetson) the device
/// reads and writes it in place, so no copy is needed.
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
    MappedBuffer(const MappedBuffer&) = delete;
    MappedBuffer& operator=(const MappedBuffer&) = delete;
    MappedBuffer(MappedBuffer&& other) noexcept
        : mHost(std::exchange(other.mHost, nullptr)),
          mDevice(std::exchange(other.mDevice, nullptr)), mBytes(std::exchange(other.mBytes, 0)) {}
    MappedBuffer& operator=(MappedBuffer&& other) noexcept {
        if (this != &other) {
            if (mHost != nullptr) {
                cudaFreeHost(mHost);
            }
            mHost = std::exchange(other.mHost, nullptr);
            mDevice = std::exchange(other.mDevice, nullptr);
            mBytes = std::exchange(other.mBytes, 0);
        }
        return *this;
    }

    void* host() const { return mHost; }
    void* device() const { return mDevice; }
    size_t bytes() const { return mBytes; }

private:
    void* mHost = nullptr;
    void* mDevice = nullptr;
    size_t mBytes = 0;
};

/// A CUDA event (with timing), created on the device current at construction.
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
    Event(Event&& other) noexcept : mEvent(std::exchange(other.mEvent, nullptr)) {}
    Event& operator=(Event&& other) noexcept {
        if (this != &other) {
            if (mEvent != nullptr) {
                cudaEventDestroy(mEvent);
            }
            mEvent = std::exchange(other.mEvent, nullptr);
        }
        return *this;
    }

    cudaEvent_t get() const { return mEvent; }
    /// Records the event on `stream`.
    void record(cudaStream_t stream) const { EDGESEG_CUDA_CHECK(cudaEventRecord(mEvent, stream)); }

private:
    cudaEvent_t mEvent = nullptr;
};

/// Milliseconds between two recorded events; 0 when they cannot be compared (e.g. one of them
/// was not recorded). Never throws: a timing is never worth failing a result for.
inline float elapsedMs(const Event& start, const Event& end) noexcept {
    float ms = 0.f;
    return cudaEventElapsedTime(&ms, start.get(), end.get()) == cudaSuccess ? ms : 0.f;
}

/// A captured CUDA graph (the template a GraphExec is instantiated from).
class Graph {
public:
    Graph() = default;
    ~Graph() { reset(); }
    Graph(const Graph&) = delete;
    Graph& operator=(const Graph&) = delete;
    Graph(Graph&& other) noexcept : mGraph(std::exchange(other.mGraph, nullptr)) {}
    Graph& operator=(Graph&& other) noexcept {
        if (this != &other) {
            reset();
            mGraph = std::exchange(other.mGraph, nullptr);
        }
        return *this;
    }

    cudaGraph_t get() const { return mGraph; }
    /// Where cudaStreamEndCapture writes the graph; the graph held before is destroyed.
    cudaGraph_t* receive() noexcept {
        reset();
        return &mGraph;
    }
    void reset() noexcept {
        if (mGraph != nullptr) {
            cudaGraphDestroy(mGraph);
            mGraph = nullptr;
        }
    }

private:
    cudaGraph_t mGraph = nullptr;
};

/// An instantiated CUDA graph, replayed with launch(); empty (false) until one is assigned.
class GraphExec {
public:
    GraphExec() = default;
    /// Takes ownership of `exec`.
    explicit GraphExec(cudaGraphExec_t exec) noexcept : mExec(exec) {}
    ~GraphExec() { reset(); }
    GraphExec(const GraphExec&) = delete;
    GraphExec& operator=(const GraphExec&) = delete;
    GraphExec(GraphExec&& other) noexcept : mExec(std::exchange(other.mExec, nullptr)) {}
    GraphExec& operator=(GraphExec&& other) noexcept {
        if (this != &other) {
            reset();
            mExec = std::exchange(other.mExec, nullptr);
        }
        return *this;
    }

    explicit operator bool() const { return mExec != nullptr; }
    cudaGraphExec_t get() const { return mExec; }
    void launch(cudaStream_t stream) const { EDGESEG_CUDA_CHECK(cudaGraphLaunch(mExec, stream)); }
    void reset() noexcept {
        if (mExec != nullptr) {
            cudaGraphExecDestroy(mExec);
            mExec = nullptr;
        }
    }

private:
    cudaGraphExec_t mExec = nullptr;
};

/// Captures what `enqueue()` puts on `stream` (thread-local capture mode) and instantiates it.
/// Returns an empty GraphExec when the work cannot be captured or instantiated (e.g. a library
/// call that is not capturable), with the CUDA error state cleared, so the caller can fall back
/// to plain launches. An exception from `enqueue()` ends the capture and is rethrown.
template <typename Enqueue> GraphExec captureGraph(cudaStream_t stream, Enqueue&& enqueue) {
    GraphExec exec;
    if (cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal) == cudaSuccess) {
        Graph graph;
        try {
            enqueue();
        } catch (...) {
            cudaStreamEndCapture(stream, graph.receive());
            throw;
        }
        cudaGraphExec_t instantiated = nullptr;
        // cudaGraphInstantiateWithFlags: the same call on CUDA 11.4+ and 12+.
        if (cudaStreamEndCapture(stream, graph.receive()) == cudaSuccess &&
            graph.get() != nullptr &&
            cudaGraphInstantiateWithFlags(&instantiated, graph.get(), 0) == cudaSuccess) {
            exec = GraphExec(instantiated);
        }
    }
    cudaGetLastError(); // clear a capture error; the caller's plain launches report real ones
    return exec;
}

} // namespace edgeseg::cuda
