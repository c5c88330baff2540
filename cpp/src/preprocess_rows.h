#pragma once
// Private to the CPU preprocess: the row kernels of the resize (preprocess_rows.cpp) that the
// row driver (preprocess.cpp) calls. The horizontal pass turns one source row into planar int16
// results; the vertical pass blends two of them and normalizes into one output row. Both have a
// portable version and, on x86-64, an AVX2 one chosen at run time (avx2Usable()).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "edgeseg/image.h"
#include "resize_coefs.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define EDGESEG_PRE_X86 1
#define EDGESEG_AVX2 __attribute__((target("avx2,fma,f16c")))
#endif

namespace edgeseg::detail {

/// Horizontal sampling of one call: byte offsets into a source row and weights per output x.
struct XTable {
    int count = 0;               ///< resized width
    std::vector<ptrdiff_t> off0; ///< byte offset of the first pixel
    std::vector<ptrdiff_t> off1; ///< byte offset of the second pixel
    std::vector<int16_t> w0;
    std::vector<int16_t> w1;
    // SIMD fast path: outputs [0, fastCount) read both pixels with one unaligned load that
    // stays inside the row (pixels contiguous, second pixel right after the first).
    int fastCount = 0;            ///< multiple of 16
    std::vector<int32_t> fastOff; ///< first-pixel byte offsets, in the order the loads want
    std::vector<int32_t> weights; ///< w0 | w1 << 16 per output x
};

/// The horizontal sampling table of `src` resized to `dstWidth` (with the SIMD load layout when
/// `simdLayout`).
XTable makeXTable(const ImageView& src, int dstWidth, bool simdLayout);

/// Horizontal pass of outputs [begin, count): h = (p0 * w0 + p1 * w1) >> 4 per channel,
/// written planar (channel c at out + c * planeStride).
void hresizeScalar(const uint8_t* row, int channels, const XTable& t, int begin, int16_t* out,
                   int planeStride);

/// Portable vertical pass + normalization of one output row of one channel: a lookup in the
/// 256-entry table of normalized values (float or half bits), which holds exactly
/// fma(v, scale, offset), the value the SIMD paths compute.
template <typename T>
void vresizeScalar(const int16_t* h0, const int16_t* h1, int w0, int w1, int count,
                   const detail::NormCoef& norm, const T* lut, T* out) {
#if defined(__aarch64__)
    // AArch64 has fused multiply-add in hardware: computing the table's value directly lets the
    // float loop vectorize (NEON) instead of doing a lookup per value.
    if constexpr (sizeof(T) == 4) {
        for (int x = 0; x < count; ++x) {
            const float v = static_cast<float>(detail::verticalBlend(h0[x], h1[x], w0, w1));
            out[x] = std::fma(v, norm.scale, norm.offset);
        }
        return;
    }
#endif
    (void)norm;
    for (int x = 0; x < count; ++x) {
        out[x] = lut[detail::verticalBlend(h0[x], h1[x], w0, w1)];
    }
}

/// True when the AVX2 kernels below may run (the SIMD level in use is avx2 or avx512).
bool avx2Usable();

#ifdef EDGESEG_PRE_X86

/// AVX2 horizontal pass of outputs [0, t.fastCount) of a 3-channel row with contiguous pixels.
EDGESEG_AVX2 void hresizeAvx2Rgb(const uint8_t* row, const XTable& t, int16_t* out,
                                 int planeStride);

/// AVX2 horizontal pass of outputs [0, t.fastCount) of a gray row with contiguous pixels.
EDGESEG_AVX2 void hresizeAvx2Gray(const uint8_t* row, const XTable& t, int16_t* out);

/// AVX2 vertical pass + normalization (fma(v, scale, offset)) of one output row of one channel;
/// T is float or uint16_t (IEEE half bits).
template <typename T>
EDGESEG_AVX2 void vresizeAvx2(const int16_t* h0, const int16_t* h1, int w0, int w1, int count,
                              float scale, float offset, const T* lut, T* out);

/// The normalized values of the 256 levels, fused multiply-add as in vresizeAvx2.
EDGESEG_AVX2 void normTableAvx2(float scale, float offset, float* lut);

#endif

} // namespace edgeseg::detail
