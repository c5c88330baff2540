// Row kernels of the CPU preprocess (see preprocess_rows.h): the horizontal sampling table,
// the portable horizontal pass and the AVX2 passes. Compiled with -ffp-contract=off like
// preprocess.cpp (see resize_coefs.h): every float step rounds separately.
#include "preprocess_rows.h"

#include <cstdint>
#include <string>
#include <vector>

#include "edgeseg/build_info.h"
#include "resize_coefs.h"

namespace edgeseg::detail {

XTable makeXTable(const ImageView& src, int dstWidth, bool simdLayout) {
    XTable t;
    t.count = dstWidth;
    t.off0.resize(dstWidth);
    t.off1.resize(dstWidth);
    t.w0.resize(dstWidth);
    t.w1.resize(dstWidth);
    t.weights.resize(dstWidth);
    const double scale = detail::axisScale(dstWidth, src.width);
    const int c = src.channels;
    // Bytes one SIMD load reads per output: two 3-byte pixels in a qword, two gray in a dword.
    const int loadBytes = c == 3 ? 8 : 4;
    const bool contiguous = src.pixelStride == c &&
                            static_cast<long long>(src.width) * c < (1LL << 30);
    int fast = 0;
    bool fastOpen = simdLayout && contiguous;
    for (int x = 0; x < dstWidth; ++x) {
        const AxisCoef k = detail::axisCoef(x, scale, src.width, true);
        t.off0[x] = static_cast<ptrdiff_t>(k.s0) * src.pixelStride;
        t.off1[x] = static_cast<ptrdiff_t>(k.s1) * src.pixelStride;
        t.w0[x] = k.w0;
        t.w1[x] = k.w1;
        t.weights[x] = static_cast<int32_t>(static_cast<uint16_t>(k.w0)) |
                       (static_cast<int32_t>(static_cast<uint16_t>(k.w1)) << 16);
        // Sample positions only grow, so the loads that fit form a prefix.
        const long long lastByte = static_cast<long long>(k.s0) * c + loadBytes;
        if (fastOpen && k.s1 == k.s0 + 1 && lastByte <= static_cast<long long>(src.width) * c) {
            fast = x + 1;
        } else {
            fastOpen = false;
        }
    }
    t.fastCount = fast / 16 * 16;
    t.fastOff.resize(t.fastCount);
    for (int x = 0; x < t.fastCount; x += 8) {
        if (c == 3) {
            // Two groups of four qword loads whose 128-bit halves interleave into outputs
            // 0..7 in order after the per-channel byte shuffles: (0, 1, 4, 5), (2, 3, 6, 7).
            static constexpr int kOrder[8] = {0, 1, 4, 5, 2, 3, 6, 7};
            for (int i = 0; i < 8; ++i) {
                t.fastOff[x + i] = static_cast<int32_t>(t.off0[x + kOrder[i]]);
            }
        } else {
            for (int i = 0; i < 8; ++i) {
                t.fastOff[x + i] = static_cast<int32_t>(t.off0[x + i]);
            }
        }
    }
    return t;
}

/// Horizontal pass of outputs [begin, count): h = (p0 * w0 + p1 * w1) >> 4 per channel,
/// written planar (channel c at out + c * planeStride).
void hresizeScalar(const uint8_t* row, int channels, const XTable& t, int begin, int16_t* out,
                   int planeStride) {
    for (int c = 0; c < channels; ++c) {
        const uint8_t* base = row + c;
        int16_t* dst = out + static_cast<ptrdiff_t>(c) * planeStride;
        for (int x = begin; x < t.count; ++x) {
            const int h = base[t.off0[x]] * t.w0[x] + base[t.off1[x]] * t.w1[x];
            dst[x] = static_cast<int16_t>(h >> 4);
        }
    }
}

#ifdef EDGESEG_PRE_X86

bool avx2Usable() {
    const std::string level = simdLevel();
    return level == "avx2" || level == "avx512";
}

namespace {

constexpr int8_t Z = -128; // pshufb: zero this byte

/// Four unaligned qwords at row + o[0..3], the first two in the low 128-bit half. Plain loads
/// beat a hardware gather here.
EDGESEG_AVX2 inline __m256i loadPairs(const uint8_t* row, const int32_t* o) {
    const __m128i lo = _mm_castpd_si128(_mm_loadh_pd(
        _mm_castsi128_pd(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + o[0]))),
        reinterpret_cast<const double*>(row + o[1])));
    const __m128i hi = _mm_castpd_si128(_mm_loadh_pd(
        _mm_castsi128_pd(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + o[2]))),
        reinterpret_cast<const double*>(row + o[3])));
    return _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
}

} // namespace

/// AVX2 horizontal pass of outputs [0, t.fastCount) of a 3-channel row with contiguous pixels.
EDGESEG_AVX2 void hresizeAvx2Rgb(const uint8_t* row, const XTable& t, int16_t* out,
                                 int planeStride) {
    // Per channel c: from the qword [b0 g0 r0 b1 g1 r1 . .] of each output, the int16 pair
    // (p0[c], p1[c]) in one dword, so one madd applies both weights. "A" fills dwords 0-1 of
    // each 128-bit half, "B" dwords 2-3.
    alignas(32) static constexpr int8_t kMasks[2][3][32] = {
        {{0, Z, 3, Z, 8, Z, 11, Z, Z, Z, Z, Z, Z, Z, Z, Z,
          0, Z, 3, Z, 8, Z, 11, Z, Z, Z, Z, Z, Z, Z, Z, Z},
         {1, Z, 4, Z, 9, Z, 12, Z, Z, Z, Z, Z, Z, Z, Z, Z,
          1, Z, 4, Z, 9, Z, 12, Z, Z, Z, Z, Z, Z, Z, Z, Z},
         {2, Z, 5, Z, 10, Z, 13, Z, Z, Z, Z, Z, Z, Z, Z, Z,
          2, Z, 5, Z, 10, Z, 13, Z, Z, Z, Z, Z, Z, Z, Z, Z}},
        {{Z, Z, Z, Z, Z, Z, Z, Z, 0, Z, 3, Z, 8, Z, 11, Z,
          Z, Z, Z, Z, Z, Z, Z, Z, 0, Z, 3, Z, 8, Z, 11, Z},
         {Z, Z, Z, Z, Z, Z, Z, Z, 1, Z, 4, Z, 9, Z, 12, Z,
          Z, Z, Z, Z, Z, Z, Z, Z, 1, Z, 4, Z, 9, Z, 12, Z},
         {Z, Z, Z, Z, Z, Z, Z, Z, 2, Z, 5, Z, 10, Z, 13, Z,
          Z, Z, Z, Z, Z, Z, Z, Z, 2, Z, 5, Z, 10, Z, 13, Z}}};
    const auto* masks = reinterpret_cast<const __m256i*>(kMasks);
    const __m256i mA0 = _mm256_load_si256(masks + 0), mA1 = _mm256_load_si256(masks + 1);
    const __m256i mA2 = _mm256_load_si256(masks + 2), mB0 = _mm256_load_si256(masks + 3);
    const __m256i mB1 = _mm256_load_si256(masks + 4), mB2 = _mm256_load_si256(masks + 5);
    int16_t* d0 = out;
    int16_t* d1 = out + planeStride;
    int16_t* d2 = out + 2 * static_cast<ptrdiff_t>(planeStride);
    for (int x = 0; x < t.fastCount; x += 16) {
        __m256i h[2][3];
        for (int half = 0; half < 2; ++half) {
            const int xi = x + 8 * half;
            const int32_t* o = &t.fastOff[xi];
            const __m256i ga = loadPairs(row, o);
            const __m256i gb = loadPairs(row, o + 4);
            const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(&t.weights[xi]));
            const __m256i p0 = _mm256_or_si256(_mm256_shuffle_epi8(ga, mA0),
                                               _mm256_shuffle_epi8(gb, mB0));
            const __m256i p1 = _mm256_or_si256(_mm256_shuffle_epi8(ga, mA1),
                                               _mm256_shuffle_epi8(gb, mB1));
            const __m256i p2 = _mm256_or_si256(_mm256_shuffle_epi8(ga, mA2),
                                               _mm256_shuffle_epi8(gb, mB2));
            h[half][0] = _mm256_srai_epi32(_mm256_madd_epi16(p0, w), 4);
            h[half][1] = _mm256_srai_epi32(_mm256_madd_epi16(p1, w), 4);
            h[half][2] = _mm256_srai_epi32(_mm256_madd_epi16(p2, w), 4);
        }
        int16_t* dsts[3] = {d0, d1, d2};
        for (int c = 0; c < 3; ++c) {
            const __m256i packed = _mm256_permute4x64_epi64(_mm256_packs_epi32(h[0][c], h[1][c]),
                                                            0xD8);
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(dsts[c] + x), packed);
        }
    }
}

/// AVX2 horizontal pass of outputs [0, t.fastCount) of a gray row with contiguous pixels.
EDGESEG_AVX2 void hresizeAvx2Gray(const uint8_t* row, const XTable& t, int16_t* out) {
    // Bytes 0 and 1 of each dword become its two int16 halves.
    const __m256i pairMask = _mm256_setr_epi8(0, -128, 1, -128, 4, -128, 5, -128, 8, -128, 9, -128,
                                              12, -128, 13, -128, 0, -128, 1, -128, 4, -128, 5,
                                              -128, 8, -128, 9, -128, 12, -128, 13, -128);
    const auto* base = reinterpret_cast<const int*>(row);
    for (int x = 0; x < t.fastCount; x += 16) {
        __m256i h[2];
        for (int half = 0; half < 2; ++half) {
            const int xi = x + 8 * half;
            const __m256i idx = _mm256_loadu_si256(
                reinterpret_cast<const __m256i*>(&t.fastOff[xi]));
            const __m256i g = _mm256_i32gather_epi32(base, idx, 1);
            const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(&t.weights[xi]));
            const __m256i p = _mm256_shuffle_epi8(g, pairMask);
            h[half] = _mm256_srai_epi32(_mm256_madd_epi16(p, w), 4);
        }
        const __m256i packed = _mm256_permute4x64_epi64(_mm256_packs_epi32(h[0], h[1]), 0xD8);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + x), packed);
    }
}

/// AVX2 vertical pass + normalization (fma(v, scale, offset)) of one output row of one channel.
template <typename T>
EDGESEG_AVX2 void vresizeAvx2(const int16_t* h0, const int16_t* h1, int w0, int w1, int count,
                              float scale, float offset, const T* lut, T* out) {
    const __m256i vw0 = _mm256_set1_epi16(static_cast<int16_t>(w0));
    const __m256i vw1 = _mm256_set1_epi16(static_cast<int16_t>(w1));
    const __m256i two = _mm256_set1_epi16(2);
    const __m256 vs = _mm256_set1_ps(scale);
    const __m256 vo = _mm256_set1_ps(offset);
    int x = 0;
    for (; x + 16 <= count; x += 16) {
        const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(h0 + x));
        const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(h1 + x));
        __m256i v = _mm256_add_epi16(_mm256_mulhi_epi16(a, vw0), _mm256_mulhi_epi16(b, vw1));
        v = _mm256_srai_epi16(_mm256_add_epi16(v, two), 2);
        const __m256i lo = _mm256_cvtepi16_epi32(_mm256_castsi256_si128(v));
        const __m256i hi = _mm256_cvtepi16_epi32(_mm256_extracti128_si256(v, 1));
        const __m256 f0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lo), vs, vo);
        const __m256 f1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(hi), vs, vo);
        if constexpr (sizeof(T) == 4) {
            _mm256_storeu_ps(reinterpret_cast<float*>(out + x), f0);
            _mm256_storeu_ps(reinterpret_cast<float*>(out + x + 8), f1);
        } else {
            _mm_storeu_si128(reinterpret_cast<__m128i*>(out + x),
                             _mm256_cvtps_ph(f0, _MM_FROUND_TO_NEAREST_INT));
            _mm_storeu_si128(reinterpret_cast<__m128i*>(out + x + 8),
                             _mm256_cvtps_ph(f1, _MM_FROUND_TO_NEAREST_INT));
        }
    }
    for (; x < count; ++x) {
        out[x] = lut[detail::verticalBlend(h0[x], h1[x], w0, w1)];
    }
}

template void vresizeAvx2<float>(const int16_t*, const int16_t*, int, int, int, float, float,
                                 const float*, float*);
template void vresizeAvx2<uint16_t>(const int16_t*, const int16_t*, int, int, int, float, float,
                                    const uint16_t*, uint16_t*);

/// The normalized values of the 256 levels, fused multiply-add as in vresizeAvx2 (std::fma
/// would be a slow library call in this baseline-ISA file).
EDGESEG_AVX2 void normTableAvx2(float scale, float offset, float* lut) {
    const __m256 vs = _mm256_set1_ps(scale);
    const __m256 vo = _mm256_set1_ps(offset);
    for (int v = 0; v < 256; v += 8) {
        const __m256 levels = _mm256_cvtepi32_ps(
            _mm256_add_epi32(_mm256_set1_epi32(v), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
        _mm256_storeu_ps(lut + v, _mm256_fmadd_ps(levels, vs, vo));
    }
}

#else

bool avx2Usable() { return false; }

#endif

} // namespace edgeseg::detail
