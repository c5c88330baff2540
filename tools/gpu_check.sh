#!/usr/bin/env bash
# The GPU check in one command, for a machine with an NVIDIA GPU, nvcc, cmake and a Python with
# torch, pybind11 and the test dependencies (no network and no TensorRT needed):
#   1. builds the core with CUDA for the GPU found here (nvidia-smi's compute capability) into
#      BUILD_DIR and stages it with python/edgeseg in BUILD_DIR/site, run by a venv in
#      BUILD_DIR/venv that sees PYTHON's packages but not an edgeseg installed there (nothing
#      is installed anywhere else),
#   2. runs the GPU tests (pytest -m gpu),
#   3. runs the CUDA kernel tests under compute-sanitizer: memcheck, then racecheck,
#   4. runs the GPU benchmark (tools/bench_gpu.py).
# Every step has its share of an overall limit (8 minutes by default); the summary lists each
# step's result and time, and the exit code is non-zero when any step failed.
#
#   tools/gpu_check.sh [--arch SM] [--build-dir DIR] [--dry-run] [--configure-only]
#     --arch SM          CUDA architecture to build (e.g. 90); default: the first GPU's
#     --build-dir DIR    build folder (default build/gpu-check)
#     --dry-run          print the commands without running anything (needs --arch without a GPU)
#     --configure-only   run the CMake configure step only (works without a GPU given --arch)
# Environment: PYTHON (default .venv/bin/python when present, else python3), CUDACXX (nvcc),
# JOBS (build parallelism, default nproc), GPU_CHECK_SECONDS (overall limit, default 480).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

arch=${CUDA_ARCH:-}
build_dir=build/gpu-check
dry_run=0
configure_only=0
while [[ $# -gt 0 ]]; do
    case $1 in
    --arch) arch=${2:?--arch needs a value, e.g. --arch 90}; shift 2 ;;
    --arch=*) arch=${1#--arch=}; shift ;;
    --build-dir) build_dir=${2:?--build-dir needs a folder}; shift 2 ;;
    --build-dir=*) build_dir=${1#--build-dir=}; shift ;;
    --dry-run) dry_run=1; shift ;;
    --configure-only) configure_only=1; shift ;;
    -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu_check: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
die() { echo "gpu_check: $*" >&2; exit 2; }
[[ -z $arch || $arch =~ ^[0-9]{2,3}[af]?$ ]] ||
    die "--arch '$arch' is not a CUDA architecture number such as 87 or 90"

# ---- what this machine has -------------------------------------------------------------------
if [[ -z $arch ]]; then
    cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n1 | tr -d ' ')
    [[ -n $cap ]] || die "no GPU found (nvidia-smi --query-gpu=compute_cap gave nothing); pass --arch SM to dry-run or configure without one"
    arch=${cap/./}
fi
py=${PYTHON:-}
if [[ -z $py ]]; then
    if [[ -x .venv/bin/python ]]; then py=.venv/bin/python; else py=python3; fi
fi
py=$(command -v "$py") || die "no Python interpreter '$py' (set PYTHON=/path/to/python)"
# Absolute, but not resolved: a venv's python is a link that must keep its venv.
[[ $py == /* ]] || py=$(cd "$(dirname "$py")" && pwd)/$(basename "$py")
nvcc=${CUDACXX:-$(command -v nvcc || true)}
[[ -n $nvcc ]] || { [[ -x /usr/local/cuda/bin/nvcc ]] && nvcc=/usr/local/cuda/bin/nvcc; }
[[ -n $nvcc && -x $nvcc ]] || die "no nvcc: install the CUDA toolkit or set CUDACXX=/path/to/nvcc"
sanitizer=$(dirname "$(readlink -f "$nvcc")")/compute-sanitizer
[[ -x $sanitizer ]] || sanitizer=$(command -v compute-sanitizer || echo compute-sanitizer)
cmake=$(command -v cmake || true)
[[ -n $cmake ]] || { [[ -x $(dirname "$py")/cmake ]] && cmake=$(dirname "$py")/cmake; }
[[ -n $cmake ]] || die "no cmake: install it (apt-get install cmake, or pip install cmake) and retry"
generator=()
ninja=$(command -v ninja || true)
[[ -z $ninja && -x $(dirname "$py")/ninja ]] && ninja=$(dirname "$py")/ninja
[[ -n $ninja ]] && generator=(-G Ninja "-DCMAKE_MAKE_PROGRAM=$ninja")
if [[ $dry_run == 0 ]]; then
    pybind=$("$py" -m pybind11 --cmakedir 2>/dev/null) ||
        die "pybind11 is not importable by $py (pip install pybind11, or set PYTHON)"
else
    pybind='$('"$py"' -m pybind11 --cmakedir)'
fi
mkdir -p "$(dirname "$build_dir")" 2>/dev/null
build_dir=$(realpath -m "$build_dir")
site=$build_dir/site
venv=$build_dir/venv
tpy=$venv/bin/python
arch_number=${arch%%[af]}
kernel_tests=(tests/python/test_preprocess.py tests/python/test_postprocess.py)
# Every test file that holds GPU tests (collecting only those keeps unrelated imports out).
mapfile -t gpu_tests < <(grep -l 'mark\.gpu' tests/python/test_*.py)
pytest=("$tpy" -m pytest -p no:cacheprovider -q -m gpu)

configure=("$cmake" -S . -B "$build_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release
    -DEDGESEG_ENABLE_CUDA=ON -DEDGESEG_ENABLE_TENSORRT=AUTO "-DCMAKE_CUDA_ARCHITECTURES=$arch"
    "-DCMAKE_CUDA_COMPILER=$nvcc" "-DPython_EXECUTABLE=$py" "-Dpybind11_DIR=$pybind")
build=("$cmake" --build "$build_dir" --parallel "${JOBS:-$(nproc)}")
# The venv reads PYTHON's site-packages through a plain path entry, so their .pth files (an
# editable install of edgeseg among them) are not run and the staged package is the one found.
stage="rm -rf '$site' '$venv' && mkdir -p '$site' && cp -r python/edgeseg '$site/' && \
cp '$build_dir'/cpp/_core*.so '$site/edgeseg/' && '$py' -m venv --without-pip '$venv' && \
{ echo '$site'; '$py' -c 'import site; print(*site.getsitepackages(), sep=chr(10))'; } > \
\"\$('$tpy' -c 'import site; print(site.getsitepackages()[0])')/edgeseg_gpu_check.pth\""
verify=("$tpy" -c "import edgeseg._core as c, sys; i = c.build_info(); ok, why = c.cuda_available()
print(c.__file__, i, why)
if not c.__file__.startswith('$site/'): sys.exit('gpu_check: the staged core is not the one imported')
if not (i['cuda'] and $arch_number in [int(str(a).rstrip('af')) for a in i['cuda_archs']]):
    sys.exit('gpu_check: the staged core lacks CUDA sm_$arch')
if not ok: sys.exit('gpu_check: the CUDA kernels cannot run here (the GPU tests would only skip): ' + why)")
memcheck=("$sanitizer" --tool memcheck --error-exitcode 86 "${pytest[@]}" -x "${kernel_tests[@]}")
racecheck=("$sanitizer" --tool racecheck --error-exitcode 86 "${pytest[@]}" -x "${kernel_tests[@]}")
bench=("$tpy" tools/bench_gpu.py --repeat 50)

echo "gpu_check: sm_$arch, nvcc $nvcc, python $py, build $build_dir"
if [[ $dry_run == 1 ]]; then
    printf 'configure:'; printf ' %q' "${configure[@]}"; echo
    [[ $configure_only == 1 ]] && exit 0
    printf 'build:'; printf ' %q' "${build[@]}"; echo
    echo "stage: $stage"
    printf 'verify:'; printf ' %q' "${verify[@]}"; echo
    printf 'pytest:'; printf ' %q' "${pytest[@]}" "${gpu_tests[@]}"; echo
    printf 'memcheck:'; printf ' %q' "${memcheck[@]}"; echo
    printf 'racecheck:'; printf ' %q' "${racecheck[@]}"; echo
    printf 'bench:'; printf ' %q' "${bench[@]}"; echo
    exit 0
fi

# ---- run -------------------------------------------------------------------------------------
limit=${GPU_CHECK_SECONDS:-480}
start=$SECONDS
summary=()
failed=0
# step NAME SHARE CMD...: runs CMD with at most SHARE seconds, and never past the overall limit.
step() {
    local name=$1 share=$2
    shift 2
    local left=$((limit - (SECONDS - start)))
    ((share > left)) && share=$left
    if ((share <= 0)); then
        summary+=("$(printf '%-10s SKIPPED (the %ss limit was used up)' "$name" "$limit")")
        failed=1
        return 1
    fi
    echo "== $name (at most ${share}s) =="
    local t0=$SECONDS rc
    timeout --kill-after=10 "$share" "$@"
    rc=$?
    local result=PASS
    ((rc == 124 || rc == 137)) && result="TIMEOUT after ${share}s"
    ((rc != 0 && rc != 124 && rc != 137)) && result="FAIL (exit $rc)"
    summary+=("$(printf '%-10s %-24s %4ss' "$name" "$result" $((SECONDS - t0)))")
    ((rc == 0)) || failed=1
    return $rc
}
finish() {
    echo "== summary (sm_$arch, $((SECONDS - start))s of ${limit}s) =="
    printf '%s\n' "${summary[@]}"
    exit $failed
}

step configure 120 "${configure[@]}" || finish
[[ $configure_only == 1 ]] && finish
step build 240 "${build[@]}" || finish
step stage 30 bash -c "$stage" || finish
step verify 30 "${verify[@]}" || finish
step pytest 90 "${pytest[@]}" "${gpu_tests[@]}"
if [[ -x $sanitizer ]]; then
    step memcheck 120 "${memcheck[@]}"
    step racecheck 120 "${racecheck[@]}"
else
    summary+=("memcheck   FAIL (no compute-sanitizer next to $nvcc or on PATH; it ships with the CUDA toolkit)")
    failed=1
fi
step bench 60 "${bench[@]}"
finish
