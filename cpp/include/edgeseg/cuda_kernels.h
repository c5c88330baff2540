#pragma once
/// CUDA twins of the CPU kernels, callable without CUDA headers. Compiled only when the core
/// is built with CUDA (EDGESEG_HAS_CUDA); the device-pointer API with explicit streams lives
/// in cpp/cuda/preprocess.cuh and cpp/cuda/postprocess.cuh.
#include <cstdint>
#include <string>

#include "edgeseg/postprocess.h"
#include "edgeseg/preprocess.h"

namespace edgeseg::cuda {

/// True when a CUDA device can run kernels; otherwise `reason` says why (no driver, no
/// device, ...). Never throws.
bool available(std::string* reason);

/// Host-buffer convenience used by tests and benchmarks: copies `src` to the device, runs
/// the CUDA preprocess on a private stream and copies the result to `dst` (same layout as
/// edgeseg::preprocess). Results match the CPU kernel bit for bit, and so does `nonfinite`
/// (when non-null: the NaN/+-Inf values written).
Letterbox preprocessHost(const ImageView& src, const PreprocessParams& params, void* dst,
                         int64_t* nonfinite = nullptr);

/// Host-buffer convenience: copies logits (and frame) to the device, runs the fused CUDA
/// postprocess on a private stream and copies the requested outputs back (out.nonfinite
/// included).
void postprocessHost(const LogitsView& logits, const PostprocessParams& params,
                     const PostprocessOutputs& out);

} // namespace edgeseg::cuda
