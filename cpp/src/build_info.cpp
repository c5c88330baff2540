#include "edgeseg/build_info.h"

#include <cstdlib>
#include <sstream>

#include "edgeseg/parallel.h"

#ifndef EDGESEG_VERSION
#define EDGESEG_VERSION "0.0.0"
#endif
#ifndef EDGESEG_CUDA_ARCHS
#define EDGESEG_CUDA_ARCHS ""
#endif

namespace edgeseg {

std::string simdLevel() {
    // EDGESEG_SIMD=scalar lets a user (or a test) force the portable path of the hand-written
    // kernels, whose hand-written parts top out at AVX2 (buildInfo() says when the compiler's
    // AVX-512 clones of the postprocess loops run).
    static const std::string detected = [] {
        std::string level = "scalar";
#if defined(__x86_64__) || defined(_M_X64)
        __builtin_cpu_init();
        level = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? "avx2" : "sse2";
#elif defined(__aarch64__) || defined(__ARM_NEON)
        level = "neon";
#endif
        return level;
    }();
    const char* forced = std::getenv("EDGESEG_SIMD");
    std::string level = detected;
    if (forced != nullptr && std::string(forced) == "scalar") {
        level = "scalar";
    }
    return level;
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
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
    // The postprocess hot loops also have an x86-64-v4 clone (AVX-512), picked at load time
    // on CPUs that have it; the hand-written AVX2 parts stay as they are.
    if (info.simd == "avx2" && __builtin_cpu_supports("avx512f") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512dq")) {
        info.simd = "avx512";
    }
#endif
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
