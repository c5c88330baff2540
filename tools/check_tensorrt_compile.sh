#!/usr/bin/env bash
# Compile-and-link check of the C++ TensorRT runtime (cpp/src/engine_trt.cpp and the pybind11
# module) against a TensorRT SDK or a folder of its headers, on a machine without a GPU.
# Downloads nothing and holds no TensorRT code: bring your own SDK/headers.
#
#   tools/check_tensorrt_compile.sh [DIR]      DIR (default $TensorRT_ROOT): a TensorRT SDK root
#                                               (include/NvInferRuntime.h) or that include folder
# When DIR/lib/libnvinfer.so is missing, a stub libnvinfer is built for the link: it only defines
# the C entry points the headers declare (returning null) and never runs.
# Environment: JOBS (2), CUDA_ARCHS (87), PYTHON (python3, with pybind11), KEEP=1 keeps the build.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-${TensorRT_ROOT:-}}
die() { echo "check_tensorrt_compile: $*" >&2; exit 2; }
[[ -n $dir ]] || die "usage: $0 DIR (a TensorRT SDK root or its include folder), or set TensorRT_ROOT"
if [[ -f $dir/include/NvInferRuntime.h ]]; then inc=$dir/include
elif [[ -f $dir/NvInferRuntime.h ]]; then inc=$dir
else die "no NvInferRuntime.h in '$dir' or '$dir/include': point this at a TensorRT SDK or its headers"
fi
[[ -f $inc/NvInferVersion.h ]] || die "'$inc' has NvInferRuntime.h but no NvInferVersion.h"
inc=$(cd "$inc" && pwd)
py=$(command -v "${PYTHON:-python3}") || die "no ${PYTHON:-python3}"
pybind=$("$py" -m pybind11 --cmakedir) || die "pybind11 is not importable by $py"
major=$(sed -nE 's/^#define (NV_TENSORRT|TRT)_MAJOR(_ENTERPRISE)?[[:space:]]+([0-9]+).*/\3/p' \
    "$inc/NvInferVersion.h" | head -n1)

work=$(mktemp -d)
[[ ${KEEP:-0} == 1 ]] && echo "build kept in $work" || trap 'rm -rf "$work"' EXIT
mkdir -p "$work/trt/lib"
ln -s "$inc" "$work/trt/include"
if [[ -f $dir/lib/libnvinfer.so ]]; then
    ln -s "$(cd "$dir/lib" && pwd)/libnvinfer.so" "$work/trt/lib/libnvinfer.so"
else
    cat > "$work/stub.cpp" <<'STUB'
#include <cstdint>
extern "C" { // link-check stub: the C entry points of libnvinfer; never called
void* createInferRuntime_INTERNAL(void*, int32_t) noexcept { return nullptr; }
void* createInferRefitter_INTERNAL(void*, void*, int32_t) noexcept { return nullptr; }
void* getPluginRegistry() noexcept { return nullptr; }
void* getLogger() noexcept { return nullptr; }
int32_t getInferLibVersion() noexcept { return 0; }
}
STUB
    "${CXX:-c++}" -shared -fPIC -Wl,-soname,"libnvinfer.so.${major:-0}" -o "$work/trt/lib/libnvinfer.so" "$work/stub.cpp"
fi

# Deprecated TensorRT calls in our code are errors: they are removed in the next major release.
cmake -S "$src" -B "$work/build" -DEDGESEG_ENABLE_CUDA=ON -DEDGESEG_ENABLE_TENSORRT=ON \
    -DTensorRT_ROOT="$work/trt" -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHS:-87}" \
    -DCMAKE_CXX_FLAGS="-Werror=deprecated-declarations" \
    -DPython_EXECUTABLE="$py" -Dpybind11_DIR="$pybind"
cmake --build "$work/build" -j "${JOBS:-2}"
module=$(ls "$work"/build/cpp/_core*.so)
nm -D --undefined-only "$module" | grep -q createInferRuntime_INTERNAL ||
    die "the module does not reference libnvinfer: the TensorRT runtime was not linked in"
echo "OK: the TensorRT runtime compiles and links against the TensorRT ${major:-?}.x headers in $inc"
