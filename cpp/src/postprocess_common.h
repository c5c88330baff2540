#pragma once
// Host-side pieces shared by the CPU postprocess and its CUDA twin: argument checks (both
// reject the same inputs with the same messages) and the per-class overlay table.
#include <cstdint>
#include <string>

#include "edgeseg/errors.h"
#include "edgeseg/postprocess.h"
#include "postprocess_math.h"

namespace edgeseg::detail {

/// Throws std::invalid_argument naming the offending argument.
inline void validatePostprocess(const LogitsView& logits, const PostprocessParams& params,
                                const PostprocessOutputs& out) {
    require(logits.data != nullptr, "postprocess: logits: data is null");
    require(logits.channels >= 1 && logits.channels <= 255,
            "postprocess: logits: expected 1..255 classes (C), got C=" +
                std::to_string(logits.channels));
    require(logits.height >= 1 && logits.width >= 1,
            "postprocess: logits: spatial size must be positive, got " +
                std::to_string(logits.height) + "x" + std::to_string(logits.width));
    require(params.outHeight >= 1 && params.outWidth >= 1,
            "postprocess: out_size: expected positive (H, W), got (" +
                std::to_string(params.outHeight) + ", " + std::to_string(params.outWidth) + ")");
    require(out.classMap != nullptr, "postprocess: classMap: output buffer is null");
    if (params.letterbox != nullptr) {
        const Letterbox& lb = *params.letterbox;
        require(lb.srcWidth == params.outWidth && lb.srcHeight == params.outHeight,
                "postprocess: letterbox: out_size (" + std::to_string(params.outHeight) + ", " +
                    std::to_string(params.outWidth) +
                    ") must equal the letterboxed frame's size (" + std::to_string(lb.srcHeight) +
                    ", " + std::to_string(lb.srcWidth) + ")");
        require(lb.inputWidth >= 1 && lb.inputHeight >= 1 && lb.resizedWidth >= 1 &&
                    lb.resizedHeight >= 1,
                "postprocess: letterbox: input and resized sizes must be positive");
    }
    if (out.overlay != nullptr) {
        require(out.frame != nullptr && out.frame->data != nullptr,
                "postprocess: overlay: needs a frame");
        require(params.palette != nullptr, "postprocess: overlay: needs a palette");
        const ImageView& f = *out.frame;
        require(f.channels == 3,
                "postprocess: frame: expected 3 channels, got " + std::to_string(f.channels));
        require(f.height == params.outHeight && f.width == params.outWidth,
                "postprocess: frame: expected size " + std::to_string(params.outHeight) + "x" +
                    std::to_string(params.outWidth) + " (out_size), got " +
                    std::to_string(f.height) + "x" + std::to_string(f.width));
        require(params.alpha >= 0.0f && params.alpha <= 1.0f,
                "postprocess: alpha: expected 0..1, got " + std::to_string(params.alpha));
    }
}

/// Per class: the colour bytes (bits 0..23, in the frame's channel order) and a transparency
/// flag (bit 24). Returns A = round(alpha * 256), the overlay weight of opaque classes.
inline uint32_t buildOverlayTable(const PostprocessParams& params, int channels, uint32_t* table) {
    for (int c = 0; c < channels; ++c) {
        const bool clear = params.transparent != nullptr && params.transparent[c] != 0;
        const uint8_t* p = params.palette + 3 * c;
        table[c] = static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
                   (static_cast<uint32_t>(p[2]) << 16) | (clear ? 1u << 24 : 0u);
    }
    return static_cast<uint32_t>(overlayAlpha(params.alpha, false));
}

} // namespace edgeseg::detail
