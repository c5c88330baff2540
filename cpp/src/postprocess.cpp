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

// The hot loops are compiled three times (AVX-512, AVX2+FMA and baseline) and picked at load
// time, so the wheel stays portable. The exp polynomial and the bilinear steps use explicit
// fmaf, so every clone computes the same bits. aarch64 builds get NEON through the vectorizer.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define EDGESEG_HOT __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define EDGESEG_HOT
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
    uint32_t overlayAlpha = 0;        ///< A = round(alpha * 256)
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

EDGESEG_HOT void halfRowToFloat(const uint16_t* __restrict src, int n, float* __restrict dst) {
    for (int i = 0; i < n; ++i) {
        dst[i] = detail::halfToFloat(src[i]);
    }
}

/// Marks the bad logits (detail::badLogit) of one class of a source row in `mask`; returns
/// non-zero when there was one. One compare per value, in the loop that vectorizes.
EDGESEG_HOT int markBad(const float* __restrict src, int n, uint8_t* __restrict mask) {
    uint8_t any = 0;
    for (int i = 0; i < n; ++i) {
        const uint8_t b = detail::badLogit(src[i]) ? 1 : 0;
        mask[i] = static_cast<uint8_t>(mask[i] | b);
        any = static_cast<uint8_t>(any | b);
    }
    return any;
}

/// Gives the non-finite pixels of a block (any of the four cells its taps read is bad) class
/// 0 and confidence 0; returns how many there were. Runs only on rows next to a bad cell.
int64_t clearNonfinite(const uint8_t* badTop, const uint8_t* badBottom, const int* x0,
                       const int* x1, int n, uint8_t* cls, float* conf) {
    int64_t k = 0;
    for (int i = 0; i < n; ++i) {
        if ((badTop[x0[i]] | badTop[x1[i]] | badBottom[x0[i]] | badBottom[x1[i]]) != 0) {
            cls[i] = 0;
            if (conf != nullptr) {
                conf[i] = 0.0f;
            }
            ++k;
        }
    }
    return k;
}

/// torch's horizontal pass: w0 * s[x0] + w1 * s[x1] per output column (fused as torch does).
EDGESEG_HOT void interpolateRowPortable(const float* __restrict src, const int* __restrict x0,
                                        const int* __restrict x1, const float* __restrict w0,
                                        const float* __restrict w1, int n,
                                        float* __restrict dst) {
    for (int i = 0; i < n; ++i) {
        dst[i] = detail::lerp2(w0[i], src[x0[i]], w1[i], src[x1[i]]);
    }
}

#ifdef EDGESEG_POST_AVX2
/// The same pass without gathers: when upsampling, the taps of 8 neighbouring outputs fall in a
/// window of at most 8 source values, so one load and two in-register permutes replace two
/// 8-lane gathers (slow on AMD Zen and small Intel cores). Same fused arithmetic, same bits.
__attribute__((target("avx2,fma"))) void interpolateRowAvx2(
    const float* __restrict src, int srcWidth, const int* __restrict x0,
    const int* __restrict x1, const float* __restrict w0, const float* __restrict w1, int n,
    float* __restrict dst) {
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

void interpolateRow(const float* src, int srcWidth, const int* x0, const int* x1,
                    const float* w0, const float* w1, int n, float* dst) {
#ifdef EDGESEG_POST_AVX2
    static const bool avx2 = simdLevel() == "avx2";
    if (avx2) {
        interpolateRowAvx2(src, srcWidth, x0, x1, w0, w1, n, dst);
        return;
    }
#endif
    (void)srcWidth;
    interpolateRowPortable(src, x0, x1, w0, w1, n, dst);
}

/// Vertical pass for every class of one block with argmax only (strict '>' so ties keep the
/// lowest class).
EDGESEG_HOT void argmaxBlock(const float* __restrict top, const float* __restrict bottom,
                             size_t rowPlane, int channels, float h0, float h1, int n,
                             float* __restrict maxVal, int32_t* __restrict best) {
    for (int i = 0; i < n; ++i) {
        maxVal[i] = detail::lerp2(h0, top[i], h1, bottom[i]);
        best[i] = 0;
    }
    for (int c = 1; c < channels; ++c) {
        const float* t = top + c * rowPlane;
        const float* b = bottom + c * rowPlane;
        for (int i = 0; i < n; ++i) {
            float v = detail::lerp2(h0, t[i], h1, b[i]);
            // std::max rather than a select on `greater`: GCC turns the latter into a
            // masked store guarded by a branch.
            const float m = maxVal[i];
            best[i] = v > m ? c : best[i];
            maxVal[i] = std::max(v, m);
        }
    }
}

/// Folds classes [c0, c0 + G) into the running (max, class, sum) of a block of pixels. Doing G
/// classes per sweep keeps the state in registers between them (G times less L1 traffic than
/// one sweep per class); G is a compile-time constant so the class loop unrolls.
template <int G>
EDGESEG_HOT void softmaxClasses(const float* __restrict top, const float* __restrict bottom,
                                size_t rowPlane, int c0, float h0, float h1, int n,
                                float* __restrict maxVal, int32_t* __restrict best,
                                float* __restrict sum) {
    const float* t = top + c0 * rowPlane;
    const float* b = bottom + c0 * rowPlane;
    for (int i = 0; i < n; ++i) {
        float m = maxVal[i];
        int32_t k = best[i];
        float acc = sum[i];
#pragma GCC unroll 16
        for (int g = 0; g < G; ++g) {
            detail::softmaxStep(detail::lerp2(h0, t[g * rowPlane + i], h1, b[g * rowPlane + i]),
                                c0 + g, m, k, acc);
        }
        maxVal[i] = m;
        best[i] = k;
        sum[i] = acc;
    }
}

/// Vertical pass + argmax + softmax max-probability 1 / sum_c exp(l_c - l_max) for any class
/// count (online softmax: one exp per class after the first, nothing stored per class).
EDGESEG_HOT void argmaxConfidenceBlock(const float* __restrict top, const float* __restrict bottom,
                                       size_t rowPlane, int channels, float h0, float h1, int n,
                                       float* __restrict maxVal, int32_t* __restrict best,
                                       float* __restrict sum, float* __restrict conf) {
    for (int i = 0; i < n; ++i) {
        maxVal[i] = detail::lerp2(h0, top[i], h1, bottom[i]);
        best[i] = 0;
        sum[i] = 1.0f;
    }
    int c = 1;
    for (; c + 4 <= channels; c += 4) {
        softmaxClasses<4>(top, bottom, rowPlane, c, h0, h1, n, maxVal, best, sum);
    }
    for (; c < channels; ++c) {
        softmaxClasses<1>(top, bottom, rowPlane, c, h0, h1, n, maxVal, best, sum);
    }
    for (int i = 0; i < n; ++i) {
        conf[i] = 1.0f / sum[i];
    }
}

/// argmaxConfidenceBlock for a class count known at compile time: the class loop unrolls and
/// the running max, class and sum stay in registers across classes (one sweep over the pixels
/// instead of one per class). Same arithmetic, same order, so results are identical.
template <int C>
EDGESEG_HOT void argmaxConfidenceFixed(const float* __restrict top,
                                       const float* __restrict bottom, size_t rowPlane, float h0,
                                       float h1, int n, uint8_t* __restrict cls,
                                       float* __restrict conf) {
    for (int i = 0; i < n; ++i) {
        float m = detail::lerp2(h0, top[i], h1, bottom[i]);
        int32_t b = 0;
        float s = 1.0f;
        // Full unrolling is what lets the pixel loop vectorize; GCC's own heuristic stops at
        // C = 8 (7 steps), leaving that loop scalar and 10x slower.
#pragma GCC unroll 16
        for (int c = 1; c < C; ++c) {
            detail::softmaxStep(detail::lerp2(h0, top[c * rowPlane + i], h1,
                                              bottom[c * rowPlane + i]),
                                c, m, b, s);
        }
        cls[i] = static_cast<uint8_t>(b);
        conf[i] = 1.0f / s;
    }
}

EDGESEG_HOT void narrowClasses(const int32_t* __restrict best, int n, uint8_t* __restrict cls) {
    for (int i = 0; i < n; ++i) {
        cls[i] = static_cast<uint8_t>(best[i]);
    }
}

/// overlay = (frame * (256 - a) + colour * a + 128) >> 8 per byte, where `table[class]` packs
/// the class colour (bits 0..23) and a transparency flag (bit 24, a = 0); the sum stays below
/// 2^16 (see detail::overlayAlpha).
EDGESEG_HOT void blendBlock(const uint8_t* __restrict frame, const uint8_t* __restrict best,
                            const uint32_t* __restrict table, uint32_t alpha, int n,
                            uint8_t* __restrict out) {
    for (int i = 0; i < n; ++i) {
        const uint32_t u = table[best[i]];
        const uint32_t a = (u >> 24) != 0 ? 0 : alpha;
        const uint32_t keep = 256 - a;
        for (int ch = 0; ch < 3; ++ch) {
            const uint32_t colour = (u >> (8 * ch)) & 255;
            out[3 * i + ch] =
                static_cast<uint8_t>((frame[3 * i + ch] * keep + colour * a + 128) >> 8);
        }
    }
}

/// Per-class pixel counts of a block of the class map into `hist` (4 x channels entries,
/// summed by the caller). Few classes: one byte-compare sweep per class with 8-bit lane
/// counters (32 pixels per AVX2 instruction; blocks of 128 keep them from overflowing) — 4x
/// less data than counting the int32 labels. Many classes: a histogram spread over four
/// copies so that runs of one class do not serialize on a single counter.
EDGESEG_HOT void countBlock(const uint8_t* __restrict cls, int n, int channels,
                            int64_t* __restrict hist) {
    if (channels > 8) {
        int64_t* h1 = hist + channels;
        int64_t* h2 = h1 + channels;
        int64_t* h3 = h2 + channels;
        int i = 0;
        for (; i + 4 <= n; i += 4) {
            ++hist[cls[i]];
            ++h1[cls[i + 1]];
            ++h2[cls[i + 2]];
            ++h3[cls[i + 3]];
        }
        for (; i < n; ++i) {
            ++hist[cls[i]];
        }
        return;
    }
    constexpr int kBlock = 128;
    for (int c = 0; c < channels; ++c) {
        const uint8_t label = static_cast<uint8_t>(c);
        int64_t total = 0;
        for (int b = 0; b < n; b += kBlock) {
            const int m = std::min(kBlock, n - b);
            const uint8_t* p = cls + b;
            uint8_t k = 0;
            for (int i = 0; i < m; ++i) {
                k = static_cast<uint8_t>(k + (p[i] == label ? 1 : 0));
            }
            total += k;
        }
        hist[c] += total;
    }
}

using FixedConfidenceFn = void (*)(const float*, const float*, size_t, float, float, int,
                                  uint8_t*, float*);
constexpr int kMaxFixedClasses = 8;
const FixedConfidenceFn kFixedConfidence[kMaxFixedClasses + 1] = {
    nullptr,
    nullptr,
    argmaxConfidenceFixed<2>,
    argmaxConfidenceFixed<3>,
    argmaxConfidenceFixed<4>,
    argmaxConfidenceFixed<5>,
    argmaxConfidenceFixed<6>,
    argmaxConfidenceFixed<7>,
    argmaxConfidenceFixed<8>,
};

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

/// Returns the slot holding the horizontally interpolated source row `r` (C x outWidth) and
/// its bad-cell mask, computing them into the slot not holding `keep` when `r` is not cached.
/// Source rows are visited in increasing order by a task, so two slots suffice.
int cachedRow(const Job& job, Scratch& s, int r, int keep) {
    for (int k = 0; k < 2; ++k) {
        if (s.rowKey[k] == r) {
            return k;
        }
    }
    int slot = s.rowKey[0] == keep ? 1 : 0;
    const size_t W = static_cast<size_t>(job.outWidth);
    const size_t plane = static_cast<size_t>(job.srcHeight) * job.srcWidth;
    float* dst = s.rows[slot].data();
    uint8_t* bad = s.bad[slot].data();
    std::fill_n(bad, job.srcWidth, uint8_t{0});
    int anyBad = 0;
    for (int c = 0; c < job.channels; ++c) {
        const size_t offset = c * plane + static_cast<size_t>(r) * job.srcWidth;
        const float* src;
        if (job.half) {
            halfRowToFloat(static_cast<const uint16_t*>(job.logits) + offset, job.srcWidth,
                           s.srcRow.data());
            src = s.srcRow.data();
        } else {
            src = static_cast<const float*>(job.logits) + offset;
        }
        anyBad |= markBad(src, job.srcWidth, bad);
        interpolateRow(src, job.srcWidth, job.x0.data(), job.x1.data(), job.xw0.data(),
                       job.xw1.data(),
                       job.outWidth, dst + c * W);
    }
    s.rowKey[slot] = r;
    s.rowBad[slot] = anyBad != 0;
    return slot;
}

void runRows(const Job& job, int yBegin, int yEnd, int64_t* counts, int64_t& nonfinite,
             std::mutex& countsMutex) {
    thread_local Scratch s;
    const int C = job.channels;
    const int W = job.outWidth;
    const int K = job.chunk;
    const PostprocessOutputs& out = job.out;
    const bool wantConf = out.confidence != nullptr;
    const bool wantOverlay = out.overlay != nullptr;
    const bool wantCounts = counts != nullptr;

    s.rowKey[0] = s.rowKey[1] = -1;
    ensure(s.rows[0], static_cast<size_t>(C) * W);
    ensure(s.rows[1], static_cast<size_t>(C) * W);
    ensure(s.srcRow, static_cast<size_t>(job.srcWidth));
    ensure(s.bad[0], static_cast<size_t>(job.srcWidth));
    ensure(s.bad[1], static_cast<size_t>(job.srcWidth));
    int64_t badPixels = 0;
    ensure(s.maxVal, K);
    ensure(s.sum, K);
    ensure(s.best, K);
    if (wantOverlay) {
        ensure(s.pixels, 3 * static_cast<size_t>(K));
    }
    if (wantCounts) {
        s.hist.assign(4 * static_cast<size_t>(C), 0);
    }
    const ImageView* frame = out.frame;
    const bool packedFrame = frame != nullptr && frame->pixelStride == 3;

    for (int y = yBegin; y < yEnd; ++y) {
        const AxisTap& ty = job.yTaps[y];
        const int topSlot = cachedRow(job, s, ty.i0, -1);
        const int bottomSlot = cachedRow(job, s, ty.i1, ty.i0);
        const float* top = s.rows[topSlot].data();
        const float* bottom = s.rows[bottomSlot].data();
        const bool rowBad = s.rowBad[topSlot] || s.rowBad[bottomSlot];
        const size_t rowOffset = static_cast<size_t>(y) * W;
        for (int x = 0; x < W; x += K) {
            const int n = std::min(K, W - x);
            uint8_t* cls = out.classMap + rowOffset + x;
            if (wantConf && C >= 2 && C <= kMaxFixedClasses) {
                // Writes the class bytes itself: no int32 labels, no separate narrowing pass.
                kFixedConfidence[C](top + x, bottom + x, W, ty.w0, ty.w1, n, cls,
                                    out.confidence + rowOffset + x);
            } else {
                if (wantConf) {
                    argmaxConfidenceBlock(top + x, bottom + x, W, C, ty.w0, ty.w1, n,
                                          s.maxVal.data(), s.best.data(), s.sum.data(),
                                          out.confidence + rowOffset + x);
                } else {
                    argmaxBlock(top + x, bottom + x, W, C, ty.w0, ty.w1, n, s.maxVal.data(),
                                s.best.data());
                }
                narrowClasses(s.best.data(), n, cls);
            }
            if (rowBad) {
                badPixels += clearNonfinite(s.bad[topSlot].data(), s.bad[bottomSlot].data(),
                                            job.x0.data() + x, job.x1.data() + x, n, cls,
                                            wantConf ? out.confidence + rowOffset + x : nullptr);
            }
            if (wantCounts) {
                countBlock(cls, n, C, s.hist.data());
            }
            if (wantOverlay) {
                const uint8_t* src;
                if (packedFrame) {
                    src = frame->row(y) + static_cast<ptrdiff_t>(x) * 3;
                } else {
                    const uint8_t* rowPtr = frame->row(y);
                    uint8_t* px = s.pixels.data();
                    for (int i = 0; i < n; ++i) {
                        const uint8_t* p = rowPtr + static_cast<ptrdiff_t>(x + i) *
                                                        frame->pixelStride;
                        px[3 * i] = p[0];
                        px[3 * i + 1] = p[1];
                        px[3 * i + 2] = p[2];
                    }
                    src = px;
                }
                blendBlock(src, cls, job.overlayTable, job.overlayAlpha, n,
                           out.overlay + 3 * (rowOffset + x));
            }
        }
    }
    std::lock_guard<std::mutex> lock(countsMutex);
    nonfinite += badPixels;
    if (wantCounts) {
        for (int c = 0; c < C; ++c) {
            counts[c] += s.hist[c] + s.hist[C + c] + s.hist[2 * C + c] + s.hist[3 * C + c];
        }
    }
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
    // Block width: C x chunk floats of interpolated logits should stay in L1.
    job.chunk = std::max(16, std::min(1024, (4096 / job.channels) / 16 * 16));
    buildTaps(job, params.letterbox, logits.height, logits.width);
    if (out.overlay != nullptr) {
        job.overlayAlpha = detail::buildOverlayTable(params, logits.channels, job.overlayTable);
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
