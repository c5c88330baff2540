#pragma once
/// Non-owning views of the buffers the kernels read and write.
#include <cstddef>
#include <cstdint>

namespace edgeseg {

/// An 8-bit interleaved image (HWC). Rows and pixels may be strided (a numpy view such as
/// `img[10:50, ::2]`); channels of one pixel are contiguous.
struct ImageView {
    const uint8_t* data = nullptr;
    int height = 0;
    int width = 0;
    int channels = 0;          ///< 1 (gray) or 3 (BGR/RGB)
    ptrdiff_t rowStride = 0;   ///< bytes between rows
    ptrdiff_t pixelStride = 0; ///< bytes between horizontally adjacent pixels

    const uint8_t* row(int y) const { return data + static_cast<ptrdiff_t>(y) * rowStride; }
};

/// Element type of a tensor buffer.
enum class DType { Float32, Float16 };

/// How a frame was placed into the network input by a letterbox resize: the frame of size
/// srcWidth x srcHeight was resized to resizedWidth x resizedHeight and pasted at
/// (padX, padY) into a canvas of inputWidth x inputHeight filled with the pad value.
struct Letterbox {
    int srcWidth = 0;
    int srcHeight = 0;
    int inputWidth = 0;
    int inputHeight = 0;
    int resizedWidth = 0;
    int resizedHeight = 0;
    int padX = 0;
    int padY = 0;
    double scale = 1.0; ///< resizedWidth / srcWidth (the aspect-preserving factor)
};

/// Computes the letterbox placement of a srcWidth x srcHeight frame in an
/// inputWidth x inputHeight canvas: scale = min(inputW/srcW, inputH/srcH), resized size
/// rounded to nearest (at least 1), content centred (left/top padding = floor(pad / 2)).
Letterbox makeLetterbox(int srcWidth, int srcHeight, int inputWidth, int inputHeight);

} // namespace edgeseg
