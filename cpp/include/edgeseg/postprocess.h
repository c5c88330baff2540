#pragma once
/// Fused postprocessing in one pass over the output pixels: bilinear upsampling of the
/// logits (torch.nn.functional.interpolate, mode="bilinear", align_corners=False; undoing a
/// letterbox when given), argmax (ties -> lowest class), softmax max-probability,
/// alpha-blended colour overlay and per-class pixel counts.
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
    uint8_t* classMap = nullptr;   ///< H x W class ids
    float* confidence = nullptr;   ///< H x W softmax max-probability
    uint8_t* overlay = nullptr;    ///< H x W x 3, requires frame (3 channels) and palette
    int64_t* counts = nullptr;     ///< channels counts, overwritten
    const ImageView* frame = nullptr;
};

/// Runs the fused postprocess for one image on the core's thread pool.
/// Throws std::invalid_argument on bad shapes.
void postprocess(const LogitsView& logits, const PostprocessParams& params,
                 const PostprocessOutputs& out);

} // namespace edgeseg
