#pragma once
/// Fused preprocessing: resize (cv2.INTER_LINEAR semantics, bit-exact with OpenCV's 8-bit
/// fixed-point path) + channel reorder + (x/255 - mean)/std + HWC -> CHW, in one pass.
#include <array>
#include <cstdint>

#include "edgeseg/image.h"

namespace edgeseg {

struct PreprocessParams {
    int outHeight = 0;
    int outWidth = 0;
    int outChannels = 3;           ///< 1 or 3; a 1-channel input is replicated to 3
    std::array<float, 3> mean{};   ///< per output channel, in output channel order
    std::array<float, 3> stddev{}; ///< per output channel, in output channel order
    bool swapRB = false;           ///< input order differs from output order (BGR<->RGB)
    DType dtype = DType::Float32;  ///< Float16 writes IEEE half bits (uint16_t)
    bool letterbox = false;
    uint8_t padValue = 114; ///< pad pixel value before normalization
};

/// Preprocesses one image into `dst`, a contiguous outChannels x outHeight x outWidth
/// buffer of params.dtype. Returns the letterbox placement (identity-like when
/// params.letterbox is false: resized size == output size, no padding).
/// When `nonfinite` is non-null it receives the number of NaN/+-Inf values written: non-zero
/// only when a std so small (or a mean so large) that (level / 255 - mean) / std overflows
/// float32, or float16 (|x| >= 65520), for some level 0..255 of a channel. Each channel's 256
/// possible outputs are tabulated first, so valid parameters cost nothing; otherwise that
/// channel's written rows are scanned. The public Python wrapper refuses such parameters
/// before calling; the count keeps direct callers honest.
/// Throws std::invalid_argument on bad shapes or non-finite mean/std, std == 0. Runs on the
/// core's thread pool.
Letterbox preprocess(const ImageView& src, const PreprocessParams& params, void* dst,
                     int64_t* nonfinite = nullptr);

} // namespace edgeseg
