#pragma once
// Device-pointer API of the CUDA preprocess (the host-buffer convenience is
// edgeseg::cuda::preprocessHost in edgeseg/cuda_kernels.h).
#include <cuda_runtime.h>

#include <cstdint>

#include "edgeseg/preprocess.h"

namespace edgeseg::cuda {

/// Enqueues the fused preprocess on `stream`: `src.data` and `dst` are device pointers (rows and
/// pixels of `src` may be strided, as for the CPU kernel; `dst` is a contiguous
/// outChannels x outHeight x outWidth buffer of params.dtype). Does not synchronize. The
/// result equals edgeseg::preprocess bit for bit. Returns the letterbox placement (computed on
/// the host). `nonfinite`, when non-null, is a device int64 that receives (zeroed, then counted
/// on `stream`) the NaN/+-Inf values written, as edgeseg::preprocess counts them.
/// Throws std::invalid_argument on bad shapes and CudaError when the launch fails.
Letterbox preprocess(const ImageView& src, const PreprocessParams& params, void* dst,
                     cudaStream_t stream, int64_t* nonfinite = nullptr);

} // namespace edgeseg::cuda
