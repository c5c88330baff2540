#pragma once
/// What this build of the core contains.
#include <string>
#include <vector>

namespace edgeseg {

struct BuildInfo {
    bool cuda = false;
    std::string tensorrt;          ///< "x.y" or empty when not compiled in
    std::vector<int> cudaArchs;    ///< SM architectures compiled (e.g. 87, 90)
    std::string simd;              ///< instruction set the CPU kernels dispatch to at run time
    int threads = 1;
    std::string version;
    std::string compiler;
};

BuildInfo buildInfo();

/// The SIMD level the CPU kernels use on this machine: "avx2" (x86-64-v3 clones and the AVX2
/// paths), "sse2" (x86-64 baseline), "neon" (aarch64) or "scalar" (forced by EDGESEG_SIMD=scalar).
std::string simdLevel();

} // namespace edgeseg
