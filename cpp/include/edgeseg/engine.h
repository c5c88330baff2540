#pragma once
/// TensorRT runtime: one deserialized engine on one CUDA stream running
/// CUDA preprocess -> TensorRT (enqueueV3, named tensors) -> CUDA fused postprocess, with only
/// the class map, confidence, overlay and counts coming back to the host. Compiled only when
/// TensorRT is found (EDGESEG_HAS_TENSORRT); this header needs neither TensorRT nor CUDA.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "edgeseg/postprocess.h"
#include "edgeseg/preprocess.h"

namespace edgeseg {

/// One I/O tensor of an engine.
struct TrtTensorInfo {
    std::string name;
    std::vector<int64_t> shape; ///< -1 for a dynamic dimension
    std::string dtype;          ///< "float32", "float16", "int8", "int32", ...
    bool isInput = false;
};

struct TrtEngineOptions {
    int device = 0;
    /// Capture preprocess + enqueueV3 + postprocess as one CUDA graph after `warmupRuns`
    /// plain runs with the same frame size (replayed while the size stays the same).
    bool cudaGraph = true;
    int warmupRuns = 2;
};

/// Timings of the last run(), milliseconds, measured with CUDA events on the stream.
struct TrtTimings {
    float upload = 0.f;
    float preprocess = 0.f;
    float inference = 0.f;
    float postprocess = 0.f;
    float download = 0.f;
    bool graph = false; ///< the run replayed the captured CUDA graph
};

/// Not copyable; run() and infer() on one engine are serialized (safe from several threads).
class TrtEngine {
public:
    /// Deserializes `enginePath` on `options.device`. Throws std::invalid_argument when the file
    /// cannot be opened, TensorRTError with TensorRT's logged errors when the engine cannot be
    /// used (e.g. built by another TensorRT version, or I/O that is not float images -> float
    /// logits) and CudaError when the device cannot be set up.
    TrtEngine(const std::string& enginePath, const TrtEngineOptions& options);
    ~TrtEngine();
    TrtEngine(TrtEngine&&) noexcept;
    TrtEngine& operator=(TrtEngine&&) noexcept;
    TrtEngine(const TrtEngine&) = delete;
    TrtEngine& operator=(const TrtEngine&) = delete;

    const std::vector<TrtTensorInfo>& tensors() const;
    int inputHeight() const;
    int inputWidth() const;
    int numClasses() const;
    int logitsHeight() const;
    int logitsWidth() const;
    bool integrated() const; ///< Jetson-style GPU sharing host memory (zero-copy buffers)
    std::string deviceName() const;
    /// "major.minor.patch" of the libnvinfer loaded at run time (what deserializes engines),
    /// which may be newer than the headers this core was compiled with (build_info()).
    static std::string tensorrtVersion();

    /// One frame through the whole pipeline. `pre` gives size/mean/std/order (its output size
    /// must equal the engine input); `post` the output size, palette and alpha; `out` points
    /// to host buffers (classMap required; confidence/overlay/counts optional; out.frame is
    /// ignored — the frame is `frame`; out.nonfinite, when set, receives the non-finite output
    /// pixels). `inputNonfinite`, when set, receives the NaN/inf values of the network input
    /// blob. Returns the letterbox placement.
    Letterbox run(const ImageView& frame, const PreprocessParams& pre,
                  const PostprocessParams& post, const PostprocessOutputs& out,
                  int64_t* inputNonfinite = nullptr);

    /// Raw inference of a host float32 NCHW blob (batch `n`) into host logits (n x C x h x w):
    /// for tiled inference, where logits are blended on the host.
    void infer(const float* blob, int n, float* logits);

    TrtTimings lastTimings() const;

private:
    struct Impl;
    std::unique_ptr<Impl> mImpl;
};

} // namespace edgeseg
