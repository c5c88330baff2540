#include <algorithm>
#include <cmath>
#include <string>

#include "edgeseg/errors.h"
#include "edgeseg/image.h"

namespace edgeseg {

Letterbox makeLetterbox(int srcWidth, int srcHeight, int inputWidth, int inputHeight) {
    require(srcWidth > 0 && srcHeight > 0, "letterbox: source size must be positive, got " +
                                               std::to_string(srcWidth) + "x" +
                                               std::to_string(srcHeight));
    require(inputWidth > 0 && inputHeight > 0, "letterbox: input size must be positive");
    Letterbox lb;
    lb.srcWidth = srcWidth;
    lb.srcHeight = srcHeight;
    lb.inputWidth = inputWidth;
    lb.inputHeight = inputHeight;
    double scale = std::min(static_cast<double>(inputWidth) / srcWidth,
                            static_cast<double>(inputHeight) / srcHeight);
    lb.resizedWidth = std::clamp(static_cast<int>(std::lround(srcWidth * scale)), 1, inputWidth);
    lb.resizedHeight = std::clamp(static_cast<int>(std::lround(srcHeight * scale)), 1, inputHeight);
    lb.padX = (inputWidth - lb.resizedWidth) / 2;
    lb.padY = (inputHeight - lb.resizedHeight) / 2;
    lb.scale = scale;
    return lb;
}

} // namespace edgeseg
