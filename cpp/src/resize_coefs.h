#pragma once
// Private to the preprocess kernels (CPU and CUDA). The interpolation coefficients of OpenCV's
// 8-bit INTER_LINEAR resize, written once for both compilers so the two implementations agree
// bit for bit. Every floating-point step must round separately: a contracted multiply-add
// (which nvcc, and GCC for FMA targets, would otherwise emit) changes the last bit of the source
// coordinate and with it a coefficient. Device code says so with __dmul_rn & co.; host code
// relies on -ffp-contract=off, set for preprocess.cpp and preprocess_rows.cpp in
// cpp/CMakeLists.txt.
#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define EDGESEG_HD __host__ __device__
#else
#define EDGESEG_HD
#endif

namespace edgeseg::detail {

/// Fixed-point bits of a resize coefficient (OpenCV's INTER_RESIZE_COEF_BITS).
constexpr int kCoefBits = 11;
constexpr float kCoefScale = 2048.0f;

/// Where output index `d` samples the source axis and with which weights.
struct AxisCoef {
    int s0 = 0;     ///< first source index (clamped into the axis)
    int s1 = 0;     ///< second source index (clamped into the axis)
    int16_t w0 = 0; ///< weight of s0, scaled by 2^11
    int16_t w1 = 0; ///< weight of s1, scaled by 2^11 (w0 + w1 may be 2047..2049, as in OpenCV)
};

/// OpenCV's source-over-destination scale: 1 / (dstSize / srcSize), both in double.
EDGESEG_HD inline double axisScale(int dstSize, int srcSize) {
#ifdef __CUDA_ARCH__
    return __drcp_rn(__ddiv_rn(static_cast<double>(dstSize), static_cast<double>(srcSize)));
#else
    return 1.0 / (static_cast<double>(dstSize) / static_cast<double>(srcSize));
#endif
}

/// Coefficients of output index `d` on an axis of `srcSize` source samples. `clampFraction`
/// reproduces OpenCV's x axis, which zeroes the fraction where the sample falls outside the
/// source; its y axis only clamps the row indices and keeps the fraction.
EDGESEG_HD inline AxisCoef axisCoef(int d, double scale, int srcSize, bool clampFraction) {
#ifdef __CUDA_ARCH__
    const float f = __double2float_rn(__dadd_rn(__dmul_rn(d + 0.5, scale), -0.5));
    int s = static_cast<int>(floorf(f));
    float frac = __fsub_rn(f, static_cast<float>(s));
#else
    const double pos = (d + 0.5) * scale;
    const float f = static_cast<float>(pos - 0.5);
    int s = static_cast<int>(std::floor(f));
    float frac = f - static_cast<float>(s);
#endif
    if (clampFraction) {
        if (s < 0) {
            s = 0;
            frac = 0.0f;
        }
        if (s >= srcSize - 1) {
            s = srcSize - 1;
            frac = 0.0f;
        }
    }
    AxisCoef c;
    c.s0 = s < 0 ? 0 : (s > srcSize - 1 ? srcSize - 1 : s);
    c.s1 = s + 1 < 0 ? 0 : (s + 1 > srcSize - 1 ? srcSize - 1 : s + 1);
#ifdef __CUDA_ARCH__
    c.w0 = static_cast<int16_t>(__float2int_rn(__fmul_rn(__fsub_rn(1.0f, frac), kCoefScale)));
    c.w1 = static_cast<int16_t>(__float2int_rn(__fmul_rn(frac, kCoefScale)));
#else
    // nearbyint rounds half to even in the default rounding mode, like OpenCV's cvRound.
    c.w0 = static_cast<int16_t>(std::nearbyint((1.0f - frac) * kCoefScale));
    c.w1 = static_cast<int16_t>(std::nearbyint(frac * kCoefScale));
#endif
    return c;
}

/// OpenCV's vertical step on two horizontally interpolated values h = (p0*w0 + p1*w1) >> 4
/// (which fit int16): the high halves of the 16x16-bit products, then a rounding shift.
EDGESEG_HD inline int verticalBlend(int h0, int h1, int w0, int w1) {
    const int v = ((h0 * w0) >> 16) + ((h1 * w1) >> 16);
    return (v + 2) >> 2;
}

/// Normalization constants of one output channel: out = fma(v, scale, offset) for v in 0..255,
/// i.e. (v / 255 - mean) / std.
struct NormCoef {
    float scale = 1.0f;
    float offset = 0.0f;
};

inline NormCoef normCoef(float mean, float stddev) {
    NormCoef n;
    n.scale = static_cast<float>(1.0 / (255.0 * static_cast<double>(stddev)));
    n.offset = static_cast<float>(-static_cast<double>(mean) / static_cast<double>(stddev));
    return n;
}

/// IEEE binary16 bits of `f`, rounded to nearest even (what F16C, CUDA's __float2half_rn and
/// numpy's float16 cast give).
inline uint16_t floatToHalf(float f) {
    uint32_t x;
    static_assert(sizeof(x) == sizeof(f));
    __builtin_memcpy(&x, &f, sizeof(x));
    const uint32_t sign = (x >> 16) & 0x8000u;
    const uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) { // inf or NaN
        return static_cast<uint16_t>(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0u));
    }
    if (absx >= 0x477ff000u) { // rounds to >= 65520: overflow to inf
        return static_cast<uint16_t>(sign | 0x7c00u);
    }
    if (absx < 0x38800000u) {     // below the smallest normal half: subnormal or zero
        if (absx < 0x33000000u) { // below half the smallest subnormal: rounds to zero
            return static_cast<uint16_t>(sign);
        }
        const uint32_t mant = (absx & 0x7fffffu) | 0x800000u;
        const int shift = 126 - static_cast<int>(absx >> 23); // 14..24
        uint32_t h = mant >> shift;
        const uint32_t rem = mant & ((1u << shift) - 1u);
        const uint32_t halfway = 1u << (shift - 1);
        if (rem > halfway || (rem == halfway && (h & 1u))) {
            ++h;
        }
        return static_cast<uint16_t>(sign | h);
    }
    uint32_t h = ((absx - 0x38000000u) >> 13);
    const uint32_t rem = absx & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) {
        ++h; // a carry into the exponent is the correct rounding
    }
    return static_cast<uint16_t>(sign | h);
}

} // namespace edgeseg::detail
