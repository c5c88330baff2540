#!/usr/bin/env bash
# Builds the core with AddressSanitizer + UndefinedBehaviorSanitizer into its own venv and runs
# the kernel tests under it. Usage: tools/sanitize.sh PATH/TO/.venv/bin/python ASAN_VENV_DIR
# (make sanitize passes both). The third-party packages come from the main venv through a .pth
# path entry; edgeseg itself is installed non-editable from build/asan.
set -euo pipefail
main_py=${1:?usage: sanitize.sh MAIN_VENV_PYTHON ASAN_VENV_DIR}
asan_venv=${2:?usage: sanitize.sh MAIN_VENV_PYTHON ASAN_VENV_DIR}
shift 2
cd "$(dirname "$0")/.."

if [ ! -x "$asan_venv/bin/python" ]; then
    "$main_py" -m venv "$asan_venv"
fi
main_site=$("$main_py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
asan_site=$("$asan_venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$main_site" > "$asan_site/edgeseg_main_venv.pth"

echo "== building the core with -fsanitize=address,undefined (CUDA off) =="
EDGESEG_SANITIZE=ON EDGESEG_ENABLE_CUDA=OFF "$asan_venv/bin/python" -m pip install -q \
    --disable-pip-version-check --no-build-isolation --no-deps -Cbuild-dir=build/asan .

asan_rt=$(gcc -print-file-name=libasan.so)
ubsan_rt=$(gcc -print-file-name=libubsan.so)
echo "== kernel tests under ASan+UBSan =="
# Leak checking is off: CPython and torch keep allocations alive until exit by design.
LD_PRELOAD="$asan_rt:$ubsan_rt" \
ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:abort_on_error=0 \
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    "$asan_venv/bin/python" -m pytest -p no:cacheprovider -q -x \
    tests/python/test_preprocess.py tests/python/test_postprocess.py tests/python/test_core.py "$@"
