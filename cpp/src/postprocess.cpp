#include "edgeseg/postprocess.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "edgeseg/build_info.h"
#include "edgeseg/errors.h"
#include "edgeseg/parallel.h"
#include "postprocess_common.h"
#include "postprocess_math.h"

// The row kernels (postprocess_rows.inc) are compiled once per instruction-set tier: x86-64-v4
// (AVX-512), x86-64-v3 (AVX2+FMA) and the baseline, and picked per call from simdLevel(), so
// the wheel stays portable and a lower tier can be forced at run time (setSimdLevel,
// EDGESEG_SIMD) to measure what an AVX2-only CPU runs. The exp polynomial and the bilinear
// steps use explicit fmaf, so every tier computes the same bits. aarch64 and clang builds
// compile the rows once (NEON through the vectorizer on aarch64).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define EDGESEG_POST_TIERS 1
#endif

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define EDGESEG_POST_AVX2 1
#endif

namespace edgeseg {
namespace {

using detail::AxisTap;

/// Call-wide constants shared by every row task.
struct Job {
    const void* logits = nullptr;
    bool half = false;
    int channels = 0;
    int srcHeight = 0;
    int srcWidth = 0;
    int outHeight = 0;
    int outWidth = 0;
    int chunk = 0; ///< output pixels per inner block (C x chunk floats stay in L1)
    std::vector<int> x0, x1;
    std::vector<float> xw0, xw1;
    std::vector<AxisTap> yTaps;
    PostprocessOutputs out;
    uint32_t overlayTable[256] = {}; ///< per class: colour bytes, bit 24 = transparent
    uint32_t overlayAlpha = 0;       ///< A = round(alpha * 256)
    bool avx2 = false;               ///< the hand-written AVX2 paths may run
    /// Byte tables of the AVX2 overlay (classes < 16): per channel the low and high bytes of
    /// colour * A + 128, and 0xff for transparent classes. Valid when blendTables is set.
    alignas(16) uint8_t blendLo[3][16] = {};
    alignas(16) uint8_t blendHi[3][16] = {};
    alignas(16) uint8_t blendClear[16] = {};
    bool blendTables = false;
};

/// Per-thread buffers, kept across calls so a camera loop does not reallocate per frame.
struct Scratch {
    std::vector<float> rows[2]; ///< horizontally interpolated source rows, C x outWidth each
    int rowKey[2] = {-1, -1};
    std::vector<uint8_t> bad[2]; ///< per source column of each cached row: any class bad
    bool rowBad[2] = {false, false};
    std::vector<float> srcRow; ///< one source row converted from float16
    std::vector<float> maxVal;
    std::vector<float> sum;
    std::vector<int32_t> best;
    std::vector<uint8_t> pixels;
    std::vector<int64_t> hist;
};

template <typename T> void ensure(std::vector<T>& v, size_t n) {
    if (v.size() < n) {
        v.resize(n);
    }
}

#ifdef EDGESEG_POST_AVX2
/// The same pass without gathers: when upsampling, the taps of 8 neighbouring outputs fall in a
/// window of at most 8 source values, so one load and two in-register permutes replace two
/// 8-lane gathers (slow on AMD Zen and small Intel cores). Same fused arithmetic, same bits.
__attribute__((target("avx2,fma"))) void interpolateRowAvx2(
    const float* __restrict src, int srcWidth, const int* __restrict x0, const int* __restrict x1,
    const float* __restrict w0, const float* __restrict w1, int n, float* __restrict dst) {
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const int base = x0[i];
        const __m256i i0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x0 + i));
        const __m256i i1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x1 + i));
        __m256 a;
        __m256 b;
        if (x1[i + 7] - base < 8 && base + 8 <= srcWidth) {
            const __m256 window = _mm256_loadu_ps(src + base);
            const __m256i shift = _mm256_set1_epi32(base);
            a = _mm256_permutevar8x32_ps(window, _mm256_sub_epi32(i0, shift));
            b = _mm256_permutevar8x32_ps(window, _mm256_sub_epi32(i1, shift));
        } else {
            a = _mm256_i32gather_ps(src, i0, 4);
            b = _mm256_i32gather_ps(src, i1, 4);
        }
        const __m256 r = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + i), a,
                                         _mm256_mul_ps(_mm256_loadu_ps(w1 + i), b));
        _mm256_storeu_ps(dst + i, r);
    }
    for (; i < n; ++i) {
        dst[i] = std::fma(w0[i], src[x0[i]], w1[i] * src[x1[i]]);
    }
}
#endif

#ifdef EDGESEG_POST_AVX2
/// Byte g of 32 interleaved RGB output pixels (96 bytes, six 16-byte lanes) belongs to pixel
/// g / 3 and channel g % 3. pshufb works within 16-byte lanes, so lane m gets the class bytes
/// from pixel kLaneStart[m] on and a pattern of offsets from there, plus channel masks.
constexpr int kLaneStart[6] = {0, 5, 10, 16, 21, 26};

struct BlendPatterns {
    alignas(32) int8_t expand[6][16];
    alignas(32) int8_t chan1[6][16];
    alignas(32) int8_t chan2[6][16];
    constexpr BlendPatterns() : expand(), chan1(), chan2() {
        for (int m = 0; m < 6; ++m) {
            for (int j = 0; j < 16; ++j) {
                const int g = 16 * m + j;
                expand[m][j] = static_cast<int8_t>(g / 3 - kLaneStart[m]);
                chan1[m][j] = static_cast<int8_t>(g % 3 == 1 ? -1 : 0);
                chan2[m][j] = static_cast<int8_t>(g % 3 == 2 ? -1 : 0);
            }
        }
    }
};
constexpr BlendPatterns kBlendPatterns{};

/// overlay = (frame * (256 - A) + colour * A + 128) >> 8 (frame itself for transparent
/// classes) for 32 packed RGB pixels per step, classes looked up with pshufb instead of the
/// gathers the compiler emits for blendBlock; the same integer arithmetic, so the same bytes.
/// Handles pixels [0, k) and returns k, a multiple of 32; it reads class bytes up to
/// k + 10, which must be below `clsReadable`.
__attribute__((target("avx2"))) inline __m256i lane2(const int8_t (*t)[16], int k) {
    return _mm256_load_si256(reinterpret_cast<const __m256i*>(t[2 * k]));
}

__attribute__((target("avx2"))) inline __m256i table(const uint8_t* t) {
    return _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(t)));
}

__attribute__((target("avx2"))) int blendRowAvx2(const Job& job, const uint8_t* frame,
                                                 const uint8_t* cls, int n, int clsReadable,
                                                 uint8_t* out) {
    const __m256i lo0 = table(job.blendLo[0]), lo1 = table(job.blendLo[1]);
    const __m256i lo2 = table(job.blendLo[2]), hi0 = table(job.blendHi[0]);
    const __m256i hi1 = table(job.blendHi[1]), hi2 = table(job.blendHi[2]);
    const __m256i clear = table(job.blendClear);
    const __m256i keep = _mm256_set1_epi16(static_cast<int16_t>(256 - job.overlayAlpha));
    const __m256i zero = _mm256_setzero_si256();
    int i = 0;
    for (; i + 32 <= n && i + 42 <= clsReadable; i += 32) {
        for (int k = 0; k < 3; ++k) {
            const __m256i c = _mm256_loadu2_m128i(
                reinterpret_cast<const __m128i*>(cls + i + kLaneStart[2 * k + 1]),
                reinterpret_cast<const __m128i*>(cls + i + kLaneStart[2 * k]));
            const __m256i idx = _mm256_shuffle_epi8(c, lane2(kBlendPatterns.expand, k));
            const __m256i m1 = lane2(kBlendPatterns.chan1, k);
            const __m256i m2 = lane2(kBlendPatterns.chan2, k);
            __m256i lo = _mm256_shuffle_epi8(lo0, idx);
            lo = _mm256_blendv_epi8(lo, _mm256_shuffle_epi8(lo1, idx), m1);
            lo = _mm256_blendv_epi8(lo, _mm256_shuffle_epi8(lo2, idx), m2);
            __m256i hi = _mm256_shuffle_epi8(hi0, idx);
            hi = _mm256_blendv_epi8(hi, _mm256_shuffle_epi8(hi1, idx), m1);
            hi = _mm256_blendv_epi8(hi, _mm256_shuffle_epi8(hi2, idx), m2);
            const __m256i f = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(frame + 3 * i) +
                                                 k);
            const __m256i sumLo = _mm256_add_epi16(
                _mm256_mullo_epi16(_mm256_unpacklo_epi8(f, zero), keep),
                _mm256_unpacklo_epi8(lo, hi));
            const __m256i sumHi = _mm256_add_epi16(
                _mm256_mullo_epi16(_mm256_unpackhi_epi8(f, zero), keep),
                _mm256_unpackhi_epi8(lo, hi));
            const __m256i blended = _mm256_packus_epi16(_mm256_srli_epi16(sumLo, 8),
                                                        _mm256_srli_epi16(sumHi, 8));
            const __m256i result = _mm256_blendv_epi8(blended, f, _mm256_shuffle_epi8(clear, idx));
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 3 * i) + k, result);
        }
    }
    return i;
}
#endif

/// Fills the AVX2 overlay tables from the per-class overlay table (classes < 16 only).
void buildBlendTables(Job& job, int channels) {
    if (channels > 16) {
        return;
    }
    for (int c = 0; c < channels; ++c) {
        const uint32_t u = job.overlayTable[c];
        const bool clear = (u >> 24) != 0;
        for (int ch = 0; ch < 3; ++ch) {
            const uint32_t q = ((u >> (8 * ch)) & 255) * job.overlayAlpha + 128;
            job.blendLo[ch][c] = static_cast<uint8_t>(q & 255);
            job.blendHi[ch][c] = static_cast<uint8_t>(q >> 8);
        }
        job.blendClear[c] = clear ? 0xff : 0;
    }
    job.blendTables = true;
}

void buildTaps(Job& job, const Letterbox* lb, int h, int w) {
    const int outW = job.outWidth;
    const int outH = job.outHeight;
    job.x0.resize(outW);
    job.x1.resize(outW);
    job.xw0.resize(outW);
    job.xw1.resize(outW);
    for (int x = 0; x < outW; ++x) {
        AxisTap t = lb ? detail::letterboxTap(x, w, lb->padX, lb->resizedWidth, lb->srcWidth,
                                              lb->inputWidth)
                       : detail::resizeTap(x, w, outW);
        job.x0[x] = t.i0;
        job.x1[x] = t.i1;
        job.xw0[x] = t.w0;
        job.xw1[x] = t.w1;
    }
    job.yTaps.resize(outH);
    for (int y = 0; y < outH; ++y) {
        job.yTaps[y] = lb ? detail::letterboxTap(y, h, lb->padY, lb->resizedHeight, lb->srcHeight,
                                                 lb->inputHeight)
                          : detail::resizeTap(y, h, outH);
    }
}

using RunRowsFn = void (*)(const Job&, int, int, int64_t*, int64_t&, std::mutex&);

#ifdef EDGESEG_POST_TIERS
namespace tier_v4 {
#pragma GCC push_options
#pragma GCC target("arch=x86-64-v4")
#define EDGESEG_ROWS_LABELS_INLINE 1
#include "postprocess_rows.inc"
#undef EDGESEG_ROWS_LABELS_INLINE
#pragma GCC pop_options
} // namespace tier_v4

namespace tier_v3 {
#pragma GCC push_options
#pragma GCC target("arch=x86-64-v3")
#define EDGESEG_ROWS_LABELS_INLINE 0
#include "postprocess_rows.inc"
#undef EDGESEG_ROWS_LABELS_INLINE
#pragma GCC pop_options
} // namespace tier_v3
#endif

namespace tier_base {
#define EDGESEG_ROWS_LABELS_INLINE 1
#include "postprocess_rows.inc"
#undef EDGESEG_ROWS_LABELS_INLINE
} // namespace tier_base

RunRowsFn rowKernel(const std::string& level) {
#ifdef EDGESEG_POST_TIERS
    if (level == "avx512") {
        return tier_v4::runRows;
    }
    if (level == "avx2") {
        return tier_v3::runRows;
    }
#endif
    (void)level;
    return tier_base::runRows;
}

} // namespace

void postprocess(const LogitsView& logits, const PostprocessParams& params,
                 const PostprocessOutputs& out) {
    detail::validatePostprocess(logits, params, out);
    Job job;
    job.logits = logits.data;
    job.half = logits.dtype == DType::Float16;
    job.channels = logits.channels;
    job.srcHeight = logits.height;
    job.srcWidth = logits.width;
    job.outHeight = params.outHeight;
    job.outWidth = params.outWidth;
    job.out = out;
    const std::string level = simdLevel();
    job.avx2 = level == "avx2" || level == "avx512";
    const RunRowsFn runRows = rowKernel(level);
    // Block width: C x chunk floats of interpolated logits should stay in L1.
    job.chunk = std::max(16, std::min(1024, (4096 / job.channels) / 16 * 16));
    buildTaps(job, params.letterbox, logits.height, logits.width);
    if (out.overlay != nullptr) {
        job.overlayAlpha = detail::buildOverlayTable(params, logits.channels, job.overlayTable);
        buildBlendTables(job, logits.channels);
    }
    if (out.counts != nullptr) {
        std::fill(out.counts, out.counts + logits.channels, int64_t{0});
    }
    std::mutex countsMutex;
    int64_t nonfinite = 0;
    // Rows per task: enough pixels that thread hand-off and per-task source rows amortize.
    const int minRows = std::max(1, 16384 / params.outWidth);
    parallelFor(params.outHeight, minRows, [&](int begin, int end) {
        runRows(job, begin, end, out.counts, nonfinite, countsMutex);
    });
    if (out.nonfinite != nullptr) {
        *out.nonfinite = nonfinite;
    }
}

} // namespace edgeseg