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

/// The SIMD level the CPU kernels use on this machine: "avx512", "avx2", "sse4.1", "neon" or
/// "scalar".
std::string simdLevel();

} // namespace edgeseg
