"""The aarch64 check: the core and the kernel-vector program cross-compile with Debian's
aarch64 g++, the kernels' objects hold NEON vector code, and the program run under qemu gives
the x86 build's outputs."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path
from typing import Optional

from .common import ROOT, CheckError, apt_install, log, run, tool_path
from .vectors import FLOAT_TOL, check_parity, write_vectors

TRIPLE = "aarch64-linux-gnu"
SYSROOT = Path("/usr") / TRIPLE
APT_PACKAGES = ["g++-aarch64-linux-gnu", "qemu-user"]
THREADS = 2
KERNEL_SOURCES = ["preprocess", "postprocess"]


def ensure_cross_tools() -> tuple[str, str]:
    """Returns (aarch64 g++, qemu-aarch64); installs them on CI, else says what to install."""
    gxx = shutil.which(f"{TRIPLE}-g++")
    qemu = shutil.which("qemu-aarch64") or shutil.which("qemu-aarch64-static")
    if gxx and qemu:
        return gxx, qemu
    missing = [name for name, path in ((f"{TRIPLE}-g++", gxx), ("qemu-aarch64", qemu)) if not path]
    if os.environ.get("CI"):
        log(f"jetson-check: {', '.join(missing)} missing; CI is set, installing {APT_PACKAGES}")
        apt_install(APT_PACKAGES)
        return ensure_cross_tools_installed()
    raise CheckError(
        f"{' and '.join(missing)} not found. The Jetson check cross-compiles the core for "
        f"aarch64 and runs it under qemu; install the tools from Debian/Ubuntu's packages:\n"
        f"    sudo apt-get update && sudo apt-get install -y {' '.join(APT_PACKAGES)}\n"
        f"then retry with:  make jetson-check"
    )


def ensure_cross_tools_installed() -> tuple[str, str]:
    gxx = shutil.which(f"{TRIPLE}-g++")
    qemu = shutil.which("qemu-aarch64") or shutil.which("qemu-aarch64-static")
    if not (gxx and qemu):
        raise CheckError(f"installed {APT_PACKAGES}, but {TRIPLE}-g++ or qemu is still missing")
    return gxx, qemu


def cmake_build(build_dir: Path, toolchain: Optional[Path]) -> None:
    cmake = tool_path("cmake")
    if not (build_dir / "CMakeCache.txt").exists():
        cmd = [
            cmake,
            "-S",
            str(ROOT),
            "-B",
            str(build_dir),
            "-DCMAKE_BUILD_TYPE=Release",
            "-DEDGESEG_ENABLE_CUDA=OFF",
            "-DEDGESEG_ENABLE_TENSORRT=OFF",
            "-DEDGESEG_BUILD_PYTHON=OFF",
            "-DEDGESEG_BUILD_TESTS=ON",
        ]
        try:
            cmd += ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={tool_path('ninja')}"]
        except CheckError:
            pass  # cmake's default generator (make) works too
        if toolchain is not None:
            cmd.append(f"-DCMAKE_TOOLCHAIN_FILE={toolchain}")
        run(cmd)
    run([cmake, "--build", str(build_dir), "--parallel", str(os.cpu_count() or 2)])


def program(build_dir: Path) -> Path:
    return build_dir / "tests" / "cpp" / "edgeseg_kernel_vectors"


def run_vectors(cmd: list[str], vec_dir: Path, out_dir: Path) -> str:
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    return run([*cmd, str(vec_dir), str(out_dir), str(THREADS)]).stdout.strip()


def check_neon(arm_build: Path) -> None:
    """The kernels' aarch64 objects must contain Advanced SIMD (NEON) vector instructions."""
    objdump = shutil.which(f"{TRIPLE}-objdump")
    if objdump is None:
        raise CheckError(f"{TRIPLE}-objdump not found (binutils-aarch64-linux-gnu)")
    vector_reg = re.compile(r"\bv\d+\.(?:16b|8b|8h|4h|4s|2s|2d)\b")
    for name in KERNEL_SOURCES:
        source = ROOT / "cpp" / "src" / f"{name}.cpp"
        objs = list(arm_build.glob(f"cpp/CMakeFiles/edgeseg_core.dir/src/{name}.cpp.o"))
        if not objs:
            raise CheckError(f"no aarch64 object for {source.relative_to(ROOT)}")
        text = run([objdump, "-d", "--no-show-raw-insn", str(objs[0])]).stdout
        mnemonics: dict[str, int] = {}
        for line in text.splitlines():
            parts = line.split("\t")
            if len(parts) >= 3 and vector_reg.search(parts[-1]):
                mnemonics[parts[-2].strip()] = mnemonics.get(parts[-2].strip(), 0) + 1
        total = sum(mnemonics.values())
        top = ", ".join(f"{m} {n}" for m, n in sorted(mnemonics.items(), key=lambda kv: -kv[1])[:6])
        if total == 0:
            raise CheckError(
                f"cpp/src/{name}.cpp compiled for aarch64 has no NEON vector instructions: the "
                f"loops no longer vectorize at -O3 (check with -fopt-info-vec-missed)"
            )
        else:
            log(f"  {name}.cpp: {total} NEON vector instructions ({top})")


def check_aarch64(build_root: Path) -> None:
    gxx, qemu = ensure_cross_tools()
    version = run([gxx, "--version"]).stdout.splitlines()[0]
    log(f"[aarch64] cross compiler: {version}")
    t0 = time.monotonic()
    x86_build = build_root / "jetson-x86"
    arm_build = build_root / "jetson-aarch64"
    cmake_build(x86_build, None)
    try:
        cmake_build(arm_build, ROOT / "cmake" / "toolchains" / f"{TRIPLE}.cmake")
    except CheckError as e:
        raise CheckError(
            "the core does not cross-compile for aarch64 (an x86-only header or intrinsic "
            "outside `#if defined(__x86_64__)`?):\n" + str(e)
        ) from e
    # engine_trt*.cpp are built only where TensorRT is found (not in this cross-build)
    sources = sorted(
        p.name for p in (ROOT / "cpp" / "src").glob("*.cpp") if not p.name.startswith("engine_trt")
    )
    log(
        f"[aarch64] core cross-compiled ({len(sources)} sources: {' '.join(sources)}) and the "
        f"test program, {time.monotonic() - t0:.1f}s"
    )
    check_neon(arm_build)

    vec_dir = build_root / "jetson-vectors"
    cases = write_vectors(vec_dir)
    t0 = time.monotonic()
    info_x86 = run_vectors([str(program(x86_build))], vec_dir, build_root / "jetson-out-x86")
    info_arm = run_vectors(
        [qemu, "-L", str(SYSROOT), str(program(arm_build))],
        vec_dir,
        build_root / "jetson-out-aarch64",
    )
    log(f"[parity] x86:     {info_x86.splitlines()[0]}")
    log(
        f"[parity] aarch64: {info_arm.splitlines()[0]} (qemu-aarch64), "
        f"{time.monotonic() - t0:.1f}s for both"
    )
    same = check_parity(cases, build_root / "jetson-out-x86", build_root / "jetson-out-aarch64")
    log(f"[parity] {same}/{len(cases)} cases identical (floats within {FLOAT_TOL:g})")
