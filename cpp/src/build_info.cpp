#include "edgeseg/build_info.h"

#include <atomic>
#include <cstdlib>
#include <sstream>

#include "edgeseg/errors.h"

#include "edgeseg/parallel.h"

#ifndef EDGESEG_VERSION
#define EDGESEG_VERSION "0.0.0"
#endif
#ifndef EDGESEG_CUDA_ARCHS
#define EDGESEG_CUDA_ARCHS ""
#endif

namespace edgeseg {

namespace {

/// Instruction-set tiers of the CPU kernels, lowest first.
const char* const kLevels[] = {"scalar", "sse2", "neon", "avx2", "avx512"};

int levelIndex(const std::string& name) {
    for (int i = 0; i < 5; ++i) {
        if (name == kLevels[i]) {
            return i;
        }
    }
    return -1;
}

/// The best tier this CPU runs: "avx512" needs what the x86-64-v4 clones use.
int detectedLevel() {
    static const int detected = [] {
#if defined(__x86_64__) || defined(_M_X64)
        __builtin_cpu_init();
        if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) {
            return levelIndex("sse2");
        }
#if defined(__GNUC__) && !defined(__clang__)
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) {
            return levelIndex("avx512");
        }
#endif
        return levelIndex("avx2");
#elif defined(__aarch64__) || defined(__ARM_NEON)
        return levelIndex("neon");
#else
        return levelIndex("scalar");
#endif
    }();
    return detected;
}

/// A level this CPU can run: the same tier or a lower one on the same architecture.
bool runnable(int level) {
    const int best = detectedLevel();
    if (level == levelIndex("scalar") || level == best) {
        return true;
    }
    const bool x86 = best != levelIndex("neon") && best != levelIndex("scalar");
    return x86 && level != levelIndex("neon") && level <= best;
}

std::atomic<int> gForced{-1};

} // namespace

std::string simdLevel() {
    const int forced = gForced.load(std::memory_order_relaxed);
    if (forced >= 0) {
        return kLevels[forced];
    }
    // EDGESEG_SIMD=<level> (one this CPU runs) picks a lower tier for the whole process, e.g.
    // EDGESEG_SIMD=avx2 on an AVX-512 machine to see what AVX2-only CPUs run.
    const char* env = std::getenv("EDGESEG_SIMD");
    if (env != nullptr) {
        const int level = levelIndex(env);
        if (level >= 0 && runnable(level)) {
            return kLevels[level];
        }
    }
    return kLevels[detectedLevel()];
}

void setSimdLevel(const std::string& level) {
    if (level.empty()) {
        gForced.store(-1);
        return;
    }
    const int index = levelIndex(level);
    require(index >= 0, "simd level: expected one of scalar, sse2, neon, avx2, avx512 (or '' for "
                        "automatic), got '" +
                            level + "'");
    require(runnable(index), "simd level: this CPU cannot run '" + level +
                                 "' (best: " + kLevels[detectedLevel()] + ")");
    gForced.store(index);
}

BuildInfo buildInfo() {
    BuildInfo info;
#ifdef EDGESEG_HAS_CUDA
    info.cuda = true;
    std::stringstream archs(EDGESEG_CUDA_ARCHS);
    std::string item;
    while (std::getline(archs, item, ',')) {
        if (!item.empty()) {
            info.cudaArchs.push_back(std::atoi(item.c_str()));
        }
    }
#endif
#ifdef EDGESEG_TENSORRT_VERSION
    info.tensorrt = EDGESEG_TENSORRT_VERSION;
#endif
    info.simd = simdLevel();
    info.threads = numThreads();
    info.version = EDGESEG_VERSION;
#if defined(__clang__)
    info.compiler = "clang " __clang_version__;
#elif defined(__GNUC__)
    info.compiler = "gcc " __VERSION__;
#else
    info.compiler = "unknown";
#endif
    return info;
}

} // namespace edgeseg
