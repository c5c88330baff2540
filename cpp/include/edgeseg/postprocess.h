#pragma once
/// Fused postprocessing in one pass over the output pixels: bilinear upsampling of the
/// logits (torch.nn.functional.interpolate, mode="bilinear", align_corners=False; undoing a
/// letterbox when given), argmax (ties -> lowest class), softmax max-probability,
/// alpha-blended colour overlay and per-class pixel counts.
///
/// Non-finite logits. A logit cell (one position of the h x w grid) is *bad* when any class
/// there is NaN, +-Inf or of magnitude >= 2^127 (only float32 logits can hold the latter;
/// below it no bilinear step can overflow). An output pixel is *non-finite* when any of the
/// (up to) four cells its bilinear taps read is bad, whatever the tap's weight (an axis that a
/// plain resize leaves at its size reads one cell, as torch does). For logits
/// below 2^127 in magnitude this is exactly the set of pixels where
/// torch.nn.functional.interpolate gives a NaN or +-Inf in some class (0 x Inf is NaN, so a
/// zero-weight tap on a bad cell counts too). Non-finite pixels get class 0 and confidence 0
/// (never a confident answer), are blended and counted as class 0, and are counted in
/// PostprocessOutputs::nonfinite. Bad cells are found while each source row is read for the
/// horizontal pass, so finite logits cost one compare per logit value.
#include <cstdint>

#include "edgeseg/image.h"

namespace edgeseg {

/// Contiguous C x h x w logits of one image.
struct LogitsView {
    const void* data = nullptr; ///< float or IEEE half bits (uint16_t)
    DType dtype = DType::Float32;
    int channels = 0; ///< classes, 1..255
    int height = 0;
    int width = 0;
};

struct PostprocessParams {
    int outHeight = 0;
    int outWidth = 0;
    /// When non-null: the logits describe a letterboxed network input; output pixel (X, Y)
    /// of the original frame samples the logits at the frame pixel's position inside the
    /// canvas: u = padX + (X + 0.5) * resizedWidth / srcWidth (canvas pixels), logit
    /// coordinate = u * w / inputWidth - 0.5, clamped as torch does. The output size must
    /// equal the letterbox's source size.
    const Letterbox* letterbox = nullptr;
    float alpha = 0.5f;                   ///< overlay opacity of the class colour
    const uint8_t* palette = nullptr;     ///< channels x 3 colours, in the frame's order
    const uint8_t* transparent = nullptr; ///< 256 flags: class stays transparent if non-zero
};

/// Output buffers, contiguous, of outHeight x outWidth pixels. Any of confidence, overlay
/// (needs frame and palette) and counts may be null to skip that output.
struct PostprocessOutputs {
    uint8_t* classMap = nullptr;  ///< H x W class ids
    float* confidence = nullptr;  ///< H x W softmax max-probability
    uint8_t* overlay = nullptr;   ///< H x W x 3, requires frame (3 channels) and palette
    int64_t* counts = nullptr;    ///< channels counts, overwritten
    int64_t* nonfinite = nullptr; ///< one count of non-finite output pixels, overwritten
    const ImageView* frame = nullptr;
};

/// Runs the fused postprocess for one image on the core's thread pool.
/// Throws std::invalid_argument on bad shapes.
void postprocess(const LogitsView& logits, const PostprocessParams& params,
                 const PostprocessOutputs& out);

} // namespace edgeseg
