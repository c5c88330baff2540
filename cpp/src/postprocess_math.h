#pragma once
// Scalar math shared by the CPU postprocess (postprocess.cpp) and its CUDA twin
// (cuda/postprocess.cu), so that both sample the same source positions and evaluate the same
// exp polynomial.
#include <cmath>
#include <cstdint>
#include <cstring>

#ifdef __CUDACC__
#define EDGESEG_HD __host__ __device__ __forceinline__
#else
#define EDGESEG_HD inline
#endif

namespace edgeseg::detail {

/// The two source samples of one output coordinate along one axis, and their weights.
struct AxisTap {
    int i0;
    int i1;
    float w0;
    float w1;
};

EDGESEG_HD float bitsToFloat(uint32_t bits) {
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

EDGESEG_HD uint32_t floatToBits(float f) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    return bits;
}

/// Turns a (possibly out-of-range) source coordinate into taps the way torch's
/// guard_index_and_lambda does: the upper neighbour is clamped, lambda kept in [0, 1].
EDGESEG_HD AxisTap tapAt(float src, int inSize) {
    if (src < 0.0f) {
        src = 0.0f;
    }
    int i0 = static_cast<int>(floorf(src));
    i0 = i0 < inSize - 1 ? i0 : inSize - 1;
    float lambda = src - static_cast<float>(i0);
    lambda = lambda < 0.0f ? 0.0f : (lambda > 1.0f ? 1.0f : lambda);
    AxisTap t;
    t.i0 = i0;
    t.i1 = i0 < inSize - 1 ? i0 + 1 : i0;
    t.w0 = 1.0f - lambda;
    t.w1 = lambda;
    return t;
}

/// torch.nn.functional.interpolate(align_corners=False) with an explicit size: torch computes
/// the scale and the source position in float, the latter as one fused multiply-add. An axis
/// whose size does not change reads one cell (weights 1 and 0 on the same cell), as torch
/// does: the same value for finite logits, and no NaN from 0 x Inf of a neighbour.
EDGESEG_HD AxisTap resizeTap(int dst, int inSize, int outSize) {
    if (inSize == outSize) {
        AxisTap t;
        t.i0 = t.i1 = dst;
        t.w0 = 1.0f;
        t.w1 = 0.0f;
        return t;
    }
    float scale = static_cast<float>(inSize) / static_cast<float>(outSize);
    return tapAt(fmaf(scale, static_cast<float>(dst) + 0.5f, -0.5f), inSize);
}

/// One bilinear step in torch's rounding: fma(w0, a, w1 * b). Keeping torch's fused form makes
/// the upsampled logits bit-identical to F.interpolate on the CPU.
EDGESEG_HD float lerp2(float w0, float a, float w1, float b) { return fmaf(w0, a, w1 * b); }

/// Output pixel `dst` of the original frame, seen through a letterbox: its centre inside the
/// canvas, mapped onto the logit grid. Clamping to [0, inSize - 1] is grid_sample's "border"
/// padding, which torch's own clamp agrees with.
EDGESEG_HD AxisTap letterboxTap(int dst, int inSize, int pad, int resized, int srcSize,
                                int inputSize) {
    double canvas = pad + (dst + 0.5) * resized / srcSize;
    float src = static_cast<float>(canvas * inSize / inputSize - 0.5);
    float hi = static_cast<float>(inSize - 1);
    return tapAt(src > hi ? hi : src, inSize);
}

/// True for the logits that make a cell bad (see edgeseg/postprocess.h): NaN, +-Inf and
/// magnitudes >= 2^127. Branch-free (one compare of the magnitude) so that it vectorizes.
EDGESEG_HD bool badLogit(float v) { return !(fabsf(v) < 0x1p127f); }

/// exp(x) for x <= 0 (inputs below -87 are clamped, exp(-87) ~ 1.6e-38 is negligible in a
/// softmax sum that holds a 1): Cody-Waite reduction x = n ln2 + r, a degree-5 polynomial
/// fitted for relative error ~1.1e-7 on |r| <= ln2/2, and 2^n built in the exponent bits.
/// Branch-free so that loops over pixels vectorize.
EDGESEG_HD float expNonPositive(float x) {
    // Written as the max(-87, x) pattern, one instruction in the vectorized loops.
    x = x < -87.0f ? -87.0f : x;
    // Adding 1.5 * 2^23 rounds to the nearest integer in the float's low mantissa bits.
    const float kRound = 12582912.0f;
    const float t = x * 1.44269504089f + kRound;
    const float n = t - kRound;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 8.312443271e-03f;
    p = p * r + 4.188996926e-02f;
    p = p * r + 1.666711420e-01f;
    p = p * r + 4.999923408e-01f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    // p * 2^n as an integer add of n to p's exponent: t's bits hold n in their low bits, so
    // bits(t) << 23 is n << 23 (mod 2^32). Exact, like the multiply it replaces: n >= -126, and
    // at n = -126 (x near -87) r > 0.33 so p > 1 and the result stays a normal float.
    return bitsToFloat(floatToBits(p) + (floatToBits(t) << 23));
}

/// One class of an online softmax: folds value `v` into the running maximum `maxVal`, its class
/// `best` and `sum` = sum over the classes so far of exp(l - maxVal). One exp per class and no
/// second pass over the classes: when v is the new maximum the old sum is rescaled by
/// exp(old max - v). Strict '>' keeps the lowest class on ties. Branch-free for the vectorizer.
EDGESEG_HD void softmaxStep(float v, int c, float& maxVal, int32_t& best, float& sum) {
    const float m = maxVal;
    const float e = expNonPositive(-fabsf(v - m));
    const bool greater = v > m;
    sum = greater ? sum * e + 1.0f : sum + e;
    best = greater ? c : best;
    maxVal = greater ? v : m;
}

/// IEEE binary16 bits to float, exact for normals, subnormals, infinities and NaNs. Branch-free
/// so that row conversions vectorize (F16C or NEON when the target has them).
EDGESEG_HD float halfToFloat(uint16_t h) {
    uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    uint32_t magnitude = h & 0x7fffu;
    // Reinterpreting the half's exponent+mantissa as a float and scaling by 2^112 rebias the
    // exponent (and normalizes subnormals) in one multiply.
    uint32_t bits = floatToBits(bitsToFloat(magnitude << 13) * 5.192296858534828e33f);
    bits = magnitude >= 0x7c00u ? ((magnitude << 13) | 0x7f800000u) : bits;
    return bitsToFloat(bits | sign);
}

/// Overlay weights: out = (frame * w + q) >> 8, w = 256 - A, q = colour * A + 128, with
/// A = round(alpha * 256) (0 for transparent classes). Within 1 LSB of the float blend since
/// |alpha - A / 256| * 255 < 0.5, and exact for alpha 0 and 1.
EDGESEG_HD int overlayAlpha(float alpha, bool transparent) {
    return transparent ? 0 : static_cast<int>(alpha * 256.0f + 0.5f);
}

} // namespace edgeseg::detail
