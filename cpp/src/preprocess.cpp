// Fused preprocess on the CPU: OpenCV-exact bilinear resize + channel reorder + normalization
// + HWC -> CHW. Work is split over output rows; each thread runs the horizontal pass once per
// source row it needs (into a small planar int16 buffer it reuses) and the vertical pass and
// normalization per output channel plane, so the stores are contiguous.
#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "edgeseg/build_info.h"
#include "edgeseg/errors.h"
#include "edgeseg/parallel.h"
#include "edgeseg/preprocess.h"
#include "preprocess_common.h"
#include "preprocess_rows.h"
#include "resize_coefs.h"

namespace edgeseg {
namespace {

using detail::avx2Usable;
using detail::AxisCoef;
using detail::hresizeScalar;
using detail::makeXTable;
using detail::vresizeScalar;
using detail::XTable;
#ifdef EDGESEG_PRE_X86
using detail::hresizeAvx2Gray;
using detail::hresizeAvx2Rgb;
using detail::normTableAvx2;
using detail::vresizeAvx2;
#endif

/// Everything a row worker needs, fixed for one call.
template <typename T> struct Job {
    const ImageView* src = nullptr;
    const PreprocessParams* params = nullptr;
    Letterbox lb;
    XTable xt;
    std::vector<AxisCoef> yt;
    std::array<int, 3> srcChannel{}; ///< input channel of each output channel
    std::array<detail::NormCoef, 3> norm{};
    std::array<std::array<T, 256>, 3> lut{}; ///< normalized value of each uint8 level
    std::array<T, 3> pad{};
    std::array<bool, 3> lutBad{}; ///< the channel's table holds NaN/inf
    T* dst = nullptr;
    bool simd = false;
};

inline bool nonfiniteValue(float v) { return !std::isfinite(v); }
inline bool nonfiniteValue(uint16_t h) { return (h & 0x7c00u) == 0x7c00u; }

/// NaN/inf values among `n` written outputs.
template <typename T> int64_t countNonfinite(const T* out, int n) {
    int64_t k = 0;
    for (int i = 0; i < n; ++i) {
        k += nonfiniteValue(out[i]) ? 1 : 0;
    }
    return k;
}

/// One output row of channel `oc`: the pad value outside the resized image, the vertical pass
/// of the horizontal results h0/h1 of resized row `ry` inside it (ry < 0: padding only).
template <typename T>
void writeRow(const Job<T>& job, int oc, int ry, const int16_t* h0, const int16_t* h1, T* out) {
    const int outW = job.params->outWidth;
    const Letterbox& lb = job.lb;
    const int rw = lb.resizedWidth;
    if (ry < 0) {
        std::fill_n(out, outW, job.pad[oc]);
        return;
    }
    std::fill_n(out, lb.padX, job.pad[oc]);
    std::fill_n(out + lb.padX + rw, outW - lb.padX - rw, job.pad[oc]);
    const ptrdiff_t chanOff = static_cast<ptrdiff_t>(job.srcChannel[oc]) * rw;
    const AxisCoef& k = job.yt[ry];
    const T* lut = job.lut[oc].data();
#ifdef EDGESEG_PRE_X86
    if (job.simd) {
        vresizeAvx2<T>(h0 + chanOff, h1 + chanOff, k.w0, k.w1, rw, job.norm[oc].scale,
                       job.norm[oc].offset, lut, out + lb.padX);
        return;
    }
#endif
    vresizeScalar<T>(h0 + chanOff, h1 + chanOff, k.w0, k.w1, rw, job.norm[oc], lut, out + lb.padX);
}

/// Output rows [yBegin, yEnd); returns the NaN/inf values written (only channels whose table
/// holds such values are scanned, so valid parameters cost nothing).
template <typename T> int64_t runRows(const Job<T>& job, int yBegin, int yEnd) {
    const ImageView& src = *job.src;
    const int outW = job.params->outWidth;
    const int outH = job.params->outHeight;
    const int outC = job.params->outChannels;
    const Letterbox& lb = job.lb;
    const int rw = lb.resizedWidth;
    const int inC = src.channels;
    const size_t plane = static_cast<size_t>(outW) * outH;

    // Two planar rows of horizontal results, tagged with the source row they hold, so an
    // upscale reuses a source row across the output rows that share it.
    thread_local std::vector<int16_t> buffer;
    const size_t slotSize = static_cast<size_t>(inC) * rw;
    if (buffer.size() < 2 * slotSize) {
        buffer.resize(2 * slotSize);
    }
    int16_t* slots[2] = {buffer.data(), buffer.data() + slotSize};
    int tags[2] = {-1, -1};
    const auto sourceRow = [&](int r, int keep) -> const int16_t* {
        for (int s = 0; s < 2; ++s) {
            if (tags[s] == r) {
                return slots[s];
            }
        }
        const int s = tags[0] == keep ? 1 : 0;
        const uint8_t* row = src.row(r);
        int begin = 0;
#ifdef EDGESEG_PRE_X86
        if (job.simd && job.xt.fastCount > 0) {
            if (inC == 3) {
                hresizeAvx2Rgb(row, job.xt, slots[s], rw);
            } else {
                hresizeAvx2Gray(row, job.xt, slots[s]);
            }
            begin = job.xt.fastCount;
        }
#endif
        hresizeScalar(row, inC, job.xt, begin, slots[s], rw);
        tags[s] = r;
        return slots[s];
    };

    int64_t nonfinite = 0;
    for (int y = yBegin; y < yEnd; ++y) {
        const int ry = y - lb.padY;
        const bool content = ry >= 0 && ry < lb.resizedHeight;
        const int16_t* h0 = nullptr;
        const int16_t* h1 = nullptr;
        if (content) {
            const AxisCoef& k = job.yt[ry];
            h0 = sourceRow(k.s0, k.s1);
            h1 = sourceRow(k.s1, k.s0);
        }
        for (int oc = 0; oc < outC; ++oc) {
            T* out = job.dst + oc * plane + static_cast<size_t>(y) * outW;
            writeRow(job, oc, content ? ry : -1, h0, h1, out);
            if (job.lutBad[oc]) {
                nonfinite += countNonfinite(out, outW);
            }
        }
    }
    return nonfinite;
}

template <typename T>
Letterbox run(const ImageView& src, const PreprocessParams& p, void* dst, int64_t* nonfinite) {
    Job<T> job;
    job.src = &src;
    job.params = &p;
    job.lb = detail::placement(src, p);
    job.simd = avx2Usable();
    job.xt = makeXTable(src, job.lb.resizedWidth, job.simd);
    job.yt.resize(job.lb.resizedHeight);
    const double yScale = detail::axisScale(job.lb.resizedHeight, src.height);
    for (int y = 0; y < job.lb.resizedHeight; ++y) {
        job.yt[y] = detail::axisCoef(y, yScale, src.height, false);
    }
    for (int oc = 0; oc < p.outChannels; ++oc) {
        job.srcChannel[oc] = src.channels == 1 ? 0 : (p.swapRB ? 2 - oc : oc);
        job.norm[oc] = detail::normCoef(p.mean[oc], p.stddev[oc]);
        std::array<float, 256> values;
#ifdef EDGESEG_PRE_X86
        if (job.simd) {
            normTableAvx2(job.norm[oc].scale, job.norm[oc].offset, values.data());
        } else
#endif
        {
            for (int v = 0; v < 256; ++v) {
                values[v] = std::fma(static_cast<float>(v), job.norm[oc].scale,
                                     job.norm[oc].offset);
            }
        }
        for (int v = 0; v < 256; ++v) {
            if constexpr (sizeof(T) == 4) {
                job.lut[oc][v] = values[v];
            } else {
                job.lut[oc][v] = detail::floatToHalf(values[v]);
            }
        }
        job.pad[oc] = job.lut[oc][p.padValue];
        job.lutBad[oc] = countNonfinite(job.lut[oc].data(), 256) != 0;
    }
    job.dst = static_cast<T*>(dst);
    // Rows are handed out in small blocks from a shared counter rather than as one fixed chunk
    // per thread: a pool worker can take tens of microseconds to wake (much more on a VM), and
    // meanwhile the calling thread keeps taking blocks instead of idling at the end.
    // Each block holds enough output values (~16k) that the counter traffic is negligible.
    const int rowsPerBlock = std::max(1, (1 << 14) / (p.outWidth * p.outChannels));
    const int blocks = (p.outHeight + rowsPerBlock - 1) / rowsPerBlock;
    std::atomic<int> nextBlock{0};
    std::atomic<int64_t> bad{0};
    const auto work = [&](int, int) {
        int64_t k = 0;
        for (int b = nextBlock.fetch_add(1); b < blocks; b = nextBlock.fetch_add(1)) {
            k += runRows(job, b * rowsPerBlock, std::min(p.outHeight, (b + 1) * rowsPerBlock));
        }
        bad += k;
    };
    // One task per thread, but never more than there are blocks (at least 2 blocks each).
    parallelFor(std::min(numThreads(), std::max(1, blocks / 2)), 1, work);
    if (nonfinite != nullptr) {
        *nonfinite = bad.load();
    }
    return job.lb;
}

} // namespace

Letterbox preprocess(const ImageView& src, const PreprocessParams& params, void* dst,
                     int64_t* nonfinite) {
    detail::validatePreprocess(src, params, dst, "preprocess");
    if (params.dtype == DType::Float16) {
        return run<uint16_t>(src, params, dst, nonfinite);
    }
    return run<float>(src, params, dst, nonfinite);
}

} // namespace edgeseg
