#pragma once
// Device-pointer API of the fused CUDA postprocess (the CUDA twin of edgeseg::postprocess).
#include <cuda_runtime.h>

#include "edgeseg/postprocess.h"

namespace edgeseg::cuda {

/// Enqueues the fused postprocess on `stream` and returns without synchronizing.
/// Device memory: logits.data, out.classMap, out.confidence, out.overlay, out.counts,
/// out.nonfinite (zeroed, then counted on `stream`) and out.frame->data (any row/pixel
/// stride). Host memory, read during the call only: params.palette, params.transparent,
/// params.letterbox and the views themselves.
/// Same math as the CPU kernel: class maps agree except at exact near-ties, confidence within
/// 1e-5, overlay and counts identical for identical class maps; the same non-finite pixels
/// (class 0, confidence 0) and count (see edgeseg/postprocess.h).
/// Throws std::invalid_argument on bad shapes, CudaError when the launch fails.
void postprocess(const LogitsView& logits, const PostprocessParams& params,
                 const PostprocessOutputs& out, cudaStream_t stream);

} // namespace edgeseg::cuda
