#pragma once
// Argument checks and output placement shared by the CPU preprocess (preprocess.cpp) and its
// CUDA twin (cuda/preprocess.cu), so both reject the same inputs with the same messages and
// place the image identically.
#include <cmath>
#include <string>

#include "edgeseg/errors.h"
#include "edgeseg/preprocess.h"

namespace edgeseg::detail {

/// Throws std::invalid_argument (prefixed with `who`) unless the call is valid.
inline void validatePreprocess(const ImageView& src, const PreprocessParams& p, const void* dst,
                               const std::string& who) {
    require(src.data != nullptr, who + ": image data is null");
    require(src.height > 0 && src.width > 0, who + ": image is empty (" +
                                                 std::to_string(src.height) + "x" +
                                                 std::to_string(src.width) + ")");
    require(src.channels == 1 || src.channels == 3, who +
                                                        ": expected a 1- or 3-channel image, got " +
                                                        std::to_string(src.channels) + " channels");
    require(p.outHeight > 0 && p.outWidth > 0, who + ": output size must be positive, got " +
                                                   std::to_string(p.outHeight) + "x" +
                                                   std::to_string(p.outWidth));
    require(p.outChannels == 1 || p.outChannels == 3,
            who + ": outChannels must be 1 or 3, got " + std::to_string(p.outChannels));
    require(!(p.outChannels == 1 && src.channels == 3),
            who + ": a 3-channel image needs outChannels == 3");
    for (int c = 0; c < p.outChannels; ++c) {
        require(std::isfinite(p.mean[c]) && std::isfinite(p.stddev[c]) && p.stddev[c] != 0.0f,
                who + ": mean/std must be finite and std non-zero (channel " + std::to_string(c) +
                    ")");
    }
    require(dst != nullptr, who + ": destination is null");
}

/// Where the resized image goes in the output: the letterbox placement, or the whole output
/// (stretch) described in the same terms.
inline Letterbox placement(const ImageView& src, const PreprocessParams& p) {
    if (p.letterbox) {
        return makeLetterbox(src.width, src.height, p.outWidth, p.outHeight);
    }
    Letterbox lb;
    lb.srcWidth = src.width;
    lb.srcHeight = src.height;
    lb.inputWidth = p.outWidth;
    lb.inputHeight = p.outHeight;
    lb.resizedWidth = p.outWidth;
    lb.resizedHeight = p.outHeight;
    lb.scale = static_cast<double>(p.outWidth) / src.width;
    return lb;
}

} // namespace edgeseg::detail
