#pragma once
/// What this build of the core contains.
#include <string>
#include <vector>

namespace edgeseg {

struct BuildInfo {
    bool cuda = false;
    std::string tensorrt;       ///< "x.y" or empty when not compiled in
    std::vector<int> cudaArchs; ///< SM architectures compiled (e.g. 87, 90)
    std::string simd;           ///< instruction set the CPU kernels dispatch to at run time
    int threads = 1;
    std::string version;
    std::string compiler;
};

BuildInfo buildInfo();

/// The SIMD level the CPU kernels use now: "avx512" (x86-64-v4 clones of the postprocess
/// loops, AVX2 hand-written paths), "avx2" (x86-64-v3 clones and the AVX2 paths), "sse2"
/// (x86-64 baseline), "neon" (aarch64) or "scalar" (portable code only). The CPU's best level
/// unless lowered by setSimdLevel() or the EDGESEG_SIMD environment variable (same names; a
/// level the CPU cannot run is ignored).
std::string simdLevel();

/// Forces a level for the whole process ("" restores the automatic choice), e.g. "avx2" on an
/// AVX-512 machine to measure the AVX2 clones. Throws std::invalid_argument for an unknown
/// level or one this CPU cannot run. Takes effect from the next kernel call.
void setSimdLevel(const std::string& level);

} // namespace edgeseg
