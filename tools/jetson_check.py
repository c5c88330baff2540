#!/usr/bin/env python3
"""Jetson portability check (``make jetson-check``; part of ``make test``).

Jetson devices are aarch64 (NEON, no AVX) with CUDA 12 (JetPack 6) and Orin GPUs (sm_87);
CI is x86_64 with CUDA 13. This script proves on an x86 machine, on every commit, that:

1. aarch64: the C++ core and tests/cpp/kernel_vectors.cpp cross-compile with Debian's
   ``g++-aarch64-linux-gnu`` (every core .cpp, so no x86-only intrinsic reaches an aarch64
   build) and the CPU kernels' objects contain NEON vector code.
2. parity: the aarch64 program, run under ``qemu-aarch64``, gives the same preprocess and
   postprocess outputs as the x86 build on shared random test vectors (class maps, uint8
   images, counts and float16 tensors identical; float32 within 1e-5).
3. cuda12: every ``cpp/cuda/*.cu`` compiles for sm_87 against CUDA 12.6 (JetPack 6): its
   headers, libdevice and ptxas from PyPI (cached in ``build/cuda12``) with clang's CUDA
   frontend, since PyPI has no CUDA 12 nvcc driver (see ``check_cuda12``).
4. cuda13: the machine's CUDA 13 ``nvcc`` builds the project's default architectures
   (sm_87 and sm_90), confirmed by listing the cubins in each object's fat binary.

Missing cross tools are installed from Debian's packages when ``CI`` is set; otherwise the
check fails and says what to install. Builds are cached under ``build/`` (incremental).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TRIPLE = "aarch64-linux-gnu"
SYSROOT = Path("/usr") / TRIPLE
APT_PACKAGES = ["g++-aarch64-linux-gnu", "qemu-user"]
FLOAT_TOL = 1e-5
THREADS = 2
# JetPack 6.1/6.2 ship CUDA 12.6; these PyPI packages carry its headers, ptxas and libdevice.
CUDA12_VERSION = "12.6.77"
CUDA12_PACKAGES = [
    f"nvidia-cuda-nvcc-cu12=={CUDA12_VERSION}",
    f"nvidia-cuda-runtime-cu12=={CUDA12_VERSION}",
    f"nvidia-cuda-cccl-cu12=={CUDA12_VERSION}",
]
CLANG_PACKAGE = "clang-16"  # Debian 12's newest clang; CUDA frontend of the CUDA 12 check
KERNEL_SOURCES = ["preprocess", "postprocess"]
PLACEHOLDER_MARK = "PLACEHOLDER"
NOT_IMPLEMENTED = "not implemented yet"


class CheckError(Exception):
    """A check failed; the message says what and how to fix or retry."""


def log(message: str) -> None:
    print(message, flush=True)


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Runs cmd, raising CheckError with its output when it fails."""
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        raise CheckError(
            f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n"
            f"{proc.stdout[-4000:]}{proc.stderr[-4000:]}"
        )
    return proc


# ---- tools ---------------------------------------------------------------------------------


def apt_install(packages) -> None:
    """Installs Debian packages (CI only: it runs as root on a throw-away machine)."""
    apt = ["apt-get"] if os.geteuid() == 0 else ["sudo", "apt-get"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run([*apt, "update", "-q"], env=env)
    run([*apt, "install", "-y", "-q", "--no-install-recommends", *packages], env=env)


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


def tool_path(name: str) -> str:
    """A build tool from this interpreter's environment first (the venv's cmake/ninja)."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if not found:
        raise CheckError(f"{name} not found; install it (pip install {name}) and retry")
    return found


# ---- test vectors --------------------------------------------------------------------------


def hexf(values) -> str:
    return ",".join(float(np.float32(v)).hex() for v in values)


@dataclass
class Case:
    kind: str  # "pre" or "post"
    name: str
    fields: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)  # output suffix -> "u8" | "i64" | "f32" | "f16"

    def line(self) -> str:
        tokens = [f"{k}={v}" for k, v in self.fields.items()]
        return " ".join([self.kind, f"name={self.name}", *tokens])


def image(
    rng: np.random.Generator, h: int, w: int, c: int, step: int = 1, row_pad: int = 0
) -> tuple[bytes, int, int]:
    """A random HWC uint8 image viewed with a pixel step and padded rows: (bytes, row, pixel)."""
    pixel_stride = c * step
    row_stride = w * pixel_stride + row_pad
    buf = rng.integers(0, 256, size=h * row_stride, dtype=np.uint8)
    return buf.tobytes(), row_stride, pixel_stride


def pre_case(
    rng,
    vec_dir: Path,
    name: str,
    h,
    w,
    c,
    out_h,
    out_w,
    out_c,
    dtype,
    letterbox,
    swap_rb,
    step=1,
    row_pad=0,
) -> Case:
    data, row_stride, pixel_stride = image(rng, h, w, c, step, row_pad)
    (vec_dir / f"{name}.img").write_bytes(data)
    mean = rng.uniform(0.3, 0.6, 3)
    std = rng.uniform(0.2, 0.3, 3)
    fields = dict(
        input=f"{name}.img",
        h=h,
        w=w,
        c=c,
        rowStride=row_stride,
        pixelStride=pixel_stride,
        outH=out_h,
        outW=out_w,
        outC=out_c,
        dtype=dtype,
        letterbox=int(letterbox),
        swapRB=int(swap_rb),
        pad=114,
        mean=hexf(mean),
        std=hexf(std),
    )
    return Case("pre", name, fields, {"tensor": dtype, "letterbox": "text"})


def post_case(
    rng,
    vec_dir: Path,
    name: str,
    classes,
    h,
    w,
    out_h,
    out_w,
    dtype,
    *,
    letterbox_src=None,
    overlay=True,
    confidence=True,
    counts=True,
    transparent=(),
    frame_step=1,
    frame_row_pad=0,
    alpha=0.5,
) -> Case:
    logits = rng.normal(0.0, 3.0, size=(classes, h, w)).astype(np.float32)
    if dtype == "f16":
        raw = logits.astype(np.float16).view(np.uint16).tobytes()
    else:
        raw = logits.tobytes()
    (vec_dir / f"{name}.logits").write_bytes(raw)
    fields = dict(
        logits=f"{name}.logits",
        dtype=dtype,
        C=classes,
        h=h,
        w=w,
        outH=out_h,
        outW=out_w,
        alpha=hexf([alpha]),
        palette="-",
        transparent="-",
        frame="-",
        frameRowStride=0,
        framePixelStride=0,
        letterbox="-",
        confidence=int(confidence),
        counts=int(counts),
    )
    outputs = {"classmap": "u8"}
    if letterbox_src is not None:
        src_w, src_h = letterbox_src
        fields["letterbox"] = f"{src_w},{src_h},{w},{h}"
    if overlay:
        palette = rng.integers(0, 256, size=(classes, 3), dtype=np.uint8)
        (vec_dir / f"{name}.palette").write_bytes(palette.tobytes())
        flags = np.zeros(256, np.uint8)
        flags[list(transparent)] = 1
        (vec_dir / f"{name}.transparent").write_bytes(flags.tobytes())
        data, row_stride, pixel_stride = image(rng, out_h, out_w, 3, frame_step, frame_row_pad)
        (vec_dir / f"{name}.frame").write_bytes(data)
        fields.update(
            palette=f"{name}.palette",
            transparent=f"{name}.transparent",
            frame=f"{name}.frame",
            frameRowStride=row_stride,
            framePixelStride=pixel_stride,
        )
        outputs["overlay"] = "u8"
    if confidence:
        outputs["confidence"] = "f32"
    if counts:
        outputs["counts"] = "i64"
    return Case("post", name, fields, outputs)


def write_vectors(vec_dir: Path) -> list[Case]:
    """Small random cases (fixed seed) covering the kernels' branches."""
    if vec_dir.exists():
        shutil.rmtree(vec_dir)
    vec_dir.mkdir(parents=True)
    rng = np.random.default_rng(20240610)

    def pre(*args, **kwargs) -> Case:
        return pre_case(rng, vec_dir, *args, **kwargs)

    def post(*args, **kwargs) -> Case:
        return post_case(rng, vec_dir, *args, **kwargs)

    # name, source h w c, output h w c, dtype, letterbox, swapRB[, pixel step, row padding]
    cases = [
        pre("pre_bgr_down_f32", 37, 53, 3, 32, 48, 3, "f32", False, True),
        pre("pre_bgr_up_f32", 9, 7, 3, 40, 36, 3, "f32", False, False),
        pre("pre_letterbox_f16", 45, 29, 3, 40, 40, 3, "f16", True, True),
        pre("pre_letterbox_wide_f32", 21, 90, 3, 48, 48, 3, "f32", True, False),
        pre("pre_gray_to3_f32", 31, 47, 1, 24, 24, 3, "f32", True, False),
        pre("pre_gray_c1_f16", 20, 30, 1, 16, 16, 1, "f16", False, False),
        pre("pre_strided_f32", 40, 30, 3, 33, 17, 3, "f32", False, True, 2, 5),
    ]
    # name, classes, logits h w, output h w, dtype, options
    cases += [
        post("post_c19_f32", 19, 16, 24, 64, 96, "f32", transparent=[0]),
        post(
            "post_c19_f16_letterbox",
            19,
            32,
            32,
            30,
            50,
            "f16",
            letterbox_src=(50, 30),
            transparent=[0, 5],
        ),
        post("post_c19_down_f32", 19, 40, 40, 17, 23, "f32", overlay=False),
        post("post_c4_same_f32", 4, 12, 12, 12, 12, "f32", overlay=False, confidence=False),
        post(
            "post_c4_strided_frame",
            4,
            10,
            14,
            25,
            35,
            "f32",
            transparent=[1, 3],
            frame_step=2,
            frame_row_pad=7,
            alpha=0.3,
        ),
        post("post_c1_f16", 1, 9, 11, 20, 28, "f16"),
        post(
            "post_c4_f16_letterbox_tall",
            4,
            24,
            24,
            61,
            19,
            "f16",
            letterbox_src=(19, 61),
            overlay=False,
        ),
    ]
    lines = ["# edgeseg kernel vectors v1 (written by tools/jetson_check.py)"]
    lines += [c.line() for c in cases]
    (vec_dir / "manifest.txt").write_text("\n".join(lines) + "\n")
    return cases


# ---- builds --------------------------------------------------------------------------------


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


# ---- comparison ----------------------------------------------------------------------------


def compare_case(case: Case, x86: Path, arm: Path) -> tuple[str, str, float, Optional[str]]:
    """Returns (status, outputs compared, max float diff, failure or None)."""
    sx = (x86 / f"{case.name}.status").read_text().strip()
    sa = (arm / f"{case.name}.status").read_text().strip()
    if sx != sa:
        return "differs", "-", 0.0, f"x86 said {sx!r}, aarch64 said {sa!r}"
    if sx != "ok":
        if NOT_IMPLEMENTED in sx:
            return "placeholder", "-", 0.0, None
        return "error", "-", 0.0, f"both builds raised on a valid case: {sx}"
    max_diff = 0.0
    for suffix, kind in case.outputs.items():
        bx = (x86 / f"{case.name}.{suffix}").read_bytes()
        ba = (arm / f"{case.name}.{suffix}").read_bytes()
        if len(bx) != len(ba):
            return "ok", suffix, 0.0, f"{suffix}: sizes differ ({len(bx)} vs {len(ba)} bytes)"
        if kind == "f32":
            ax = np.frombuffer(bx, np.float32)
            aa = np.frombuffer(ba, np.float32)
            if not (np.isfinite(ax).all() and np.isfinite(aa).all()):
                return "ok", suffix, float("nan"), f"{suffix}: non-finite values"
            diff = float(np.max(np.abs(ax.astype(np.float64) - aa))) if ax.size else 0.0
            max_diff = max(max_diff, diff)
            if diff > FLOAT_TOL:
                i = int(np.argmax(np.abs(ax - aa)))
                return (
                    "ok",
                    suffix,
                    diff,
                    (
                        f"{suffix}: max |x86 - aarch64| = {diff:.3g} > {FLOAT_TOL:g} "
                        f"(element {i}: {ax[i]!r} vs {aa[i]!r})"
                    ),
                )
        elif bx != ba:
            ax = np.frombuffer(bx, np.uint8)
            aa = np.frombuffer(ba, np.uint8)
            n = int(np.count_nonzero(ax != aa))
            first = int(np.argmax(ax != aa))
            return (
                "ok",
                suffix,
                max_diff,
                (f"{suffix} ({kind}): {n} of {ax.size} bytes differ, first at byte {first}"),
            )
    return "ok", ",".join(case.outputs), max_diff, None


def check_parity(cases: list[Case], x86: Path, arm: Path) -> int:
    """Prints the table; returns the number of cases that ran real kernels."""
    log(f"  {'case':<30} {'status':<12} {'max |dfloat|':>12}  outputs")
    failures = []
    real = 0
    for case in cases:
        status, outputs, diff, failure = compare_case(case, x86, arm)
        real += status == "ok"
        mark = "FAIL" if failure else status
        log(f"  {case.name:<30} {mark:<12} {diff:>12.2e}  {outputs}")
        if failure:
            failures.append(f"{case.name}: {failure}")
    if failures:
        raise CheckError("aarch64 outputs differ from x86:\n  " + "\n  ".join(failures))
    return real


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
        if PLACEHOLDER_MARK in source.read_text()[:200]:
            log(f"  {name}.cpp: PLACEHOLDER kernel, {total} NEON instructions (not required yet)")
        elif total == 0:
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
    # engine_trt.cpp is built only where TensorRT is found (not in this cross-build)
    sources = sorted(
        p.name for p in (ROOT / "cpp" / "src").glob("*.cpp") if p.name != "engine_trt.cpp"
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
    real = check_parity(cases, build_root / "jetson-out-x86", build_root / "jetson-out-aarch64")
    if real == 0:
        log(
            "[parity] WARNING: the kernels are still placeholders in this build; the outputs "
            "compared are their identical 'not implemented' errors only"
        )
    else:
        log(f"[parity] {real}/{len(cases)} cases identical (floats within {FLOAT_TOL:g})")


# ---- CUDA ----------------------------------------------------------------------------------


def release_line(version_output: str) -> str:
    """'release 12.6, V12.6.77' from an NVIDIA tool's --version output."""
    m = re.search(r"release [\d.]+, V[\d.]+", version_output)
    return m.group(0) if m else version_output.strip().splitlines()[-1]


def cu_sources() -> list[Path]:
    return sorted((ROOT / "cpp" / "cuda").glob("*.cu"))


def inputs_digest(extra: list[str]) -> str:
    """Hash of the CUDA sources, the headers they can include and the flags."""
    h = hashlib.sha256("\0".join(extra).encode())
    files = [*cu_sources(), *(ROOT / "cpp" / "cuda").glob("*.cuh")]
    files += (ROOT / "cpp" / "include").rglob("*.h")
    for p in sorted(files):
        h.update(str(p.relative_to(ROOT)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def default_cuda_archs() -> list[str]:
    text = (ROOT / "CMakeLists.txt").read_text()
    m = re.search(r'set\(EDGESEG_CUDA_ARCHITECTURES\s+"([0-9;]+)"', text)
    if not m:
        raise CheckError("EDGESEG_CUDA_ARCHITECTURES default not found in CMakeLists.txt")
    return m.group(1).split(";")


def elf_section(data: bytes, name: str) -> bytes:
    """The contents of section `name` of a little-endian ELF64 file (empty if absent)."""
    if data[:5] != b"\x7fELF\x02":
        raise CheckError("not an ELF64 object")
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize) for i in range(shnum)]
    names = headers[shstrndx][4]
    for name_off, _, _, _, offset, size in headers:
        start = names + name_off
        if data[start : data.index(b"\0", start)].decode() == name:
            return data[offset : offset + size]
    return b""


def fatbin_entries(obj: Path) -> list[tuple[str, int]]:
    """(kind, sm) of each image in an object's fat binary, as `cuobjdump --list-elf/-ptx`."""
    blob = elf_section(obj.read_bytes(), ".nv_fatbin")
    entries = []
    pos = 0
    while pos + 16 <= len(blob):
        magic, _, header_size, fat_size = struct.unpack_from("<IHHQ", blob, pos)
        if magic != 0xBA55ED50:
            break
        entry, end = pos + header_size, pos + header_size + fat_size
        while entry < end:
            kind, _, entry_header, payload = struct.unpack_from("<HHIQ", blob, entry)
            (arch,) = struct.unpack_from("<I", blob, entry + 28)
            entries.append(({1: "ptx", 2: "elf"}.get(kind, str(kind)), arch))
            entry += entry_header + payload
        pos = end
    return entries


def find_nvcc13() -> Optional[str]:
    for candidate in (os.environ.get("CUDACXX"), shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def check_cuda13(build_root: Path) -> None:
    nvcc = find_nvcc13()
    if nvcc is None:
        message = "no nvcc (CUDA 13 toolkit) found: install it or set CUDACXX=/path/to/nvcc"
        if os.environ.get("CI"):
            raise CheckError(message)
        log(f"[cuda13] NOT CHECKED: {message}")
        return
    version = "nvcc " + release_line(run([nvcc, "--version"]).stdout)
    archs = default_cuda_archs()
    if "87" not in archs:
        raise CheckError(f"EDGESEG_CUDA_ARCHITECTURES default {archs} lost sm_87 (Jetson Orin)")
    gencode = [f"-gencode=arch=compute_{a},code=[compute_{a},sm_{a}]" for a in archs]
    flags = ["-std=c++17", "-O3", "--expt-relaxed-constexpr", f"-I{ROOT / 'cpp' / 'include'}"]
    out_dir = build_root / "jetson-cuda13"
    stamp = out_dir / "stamp"
    digest = inputs_digest([version, *gencode, *flags])
    cached = stamp.exists() and stamp.read_text() == digest
    t0 = time.monotonic()
    if not cached:
        out_dir.mkdir(parents=True, exist_ok=True)
        stamp.unlink(missing_ok=True)
        for cu in cu_sources():
            run([nvcc, *gencode, *flags, "-c", str(cu), "-o", str(out_dir / f"{cu.stem}.o")])
    for cu in cu_sources():
        entries = fatbin_entries(out_dir / f"{cu.stem}.o")
        found = sorted({str(arch) for kind, arch in entries if kind == "elf"})
        if found != sorted(archs):
            raise CheckError(f"{cu.name}: CUDA 13 object holds cubins {found}, expected {archs}")
    stamp.write_text(digest)
    how = "cached" if cached else f"{time.monotonic() - t0:.1f}s"
    log(
        f"[cuda13] {version}: {len(cu_sources())} .cu -> sm_{', sm_'.join(archs)} cubins "
        f"(read from .nv_fatbin), {how}"
    )


def ensure_clang() -> str:
    """A clang++ >= 16 (CUDA frontend for the CUDA 12 check); installed on CI."""
    for name in [*(f"clang++-{v}" for v in range(20, 15, -1)), "clang++"]:
        path = shutil.which(name)
        if path:
            out = run([path, "--version"]).stdout
            m = re.search(r"clang version (\d+)", out)
            if m and int(m.group(1)) >= 16:
                return path
    if os.environ.get("CI"):
        log(f"[cuda12] no clang++ >= 16; CI is set, installing {CLANG_PACKAGE}")
        apt_install([CLANG_PACKAGE])
        path = shutil.which(f"clang++-{CLANG_PACKAGE.split('-')[-1]}")
        if path:
            return path
    raise CheckError(
        "clang++ 16 or newer not found. The CUDA 12 check compiles cpp/cuda/*.cu with clang's "
        "CUDA frontend against CUDA 12.6 from PyPI (PyPI has no CUDA 12 nvcc driver); install "
        f"it with:\n    sudo apt-get update && sudo apt-get install -y {CLANG_PACKAGE}\n"
        "then retry with:  make jetson-check"
    )


def cuda12_toolkit(build_root: Path) -> Path:
    """CUDA 12.6 from PyPI in build/cuda12, laid out as a toolkit (include, bin, nvvm)."""
    site = build_root / "cuda12" / "site"
    marker = site / ".edgeseg-packages"
    wanted = "\n".join(CUDA12_PACKAGES)
    if not (marker.exists() and marker.read_text() == wanted):
        log(f"[cuda12] installing {', '.join(CUDA12_PACKAGES)} into {site}")
        if site.exists():
            shutil.rmtree(site)
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "--no-deps",
                "--target",
                str(site),
                *CUDA12_PACKAGES,
            ]
        )
        marker.write_text(wanted)
    nv = site / "nvidia"
    tree = build_root / "cuda12" / "toolkit"
    if tree.exists():
        shutil.rmtree(tree)
    (tree / "include").mkdir(parents=True)
    (tree / "bin").mkdir()
    (tree / "nvvm").mkdir()
    # The wheels split the toolkit's include/ over three packages; merge them back.
    for part in ("cuda_runtime", "cuda_cccl", "cuda_nvcc"):
        for entry in (nv / part / "include").iterdir():
            if entry.name not in ("__init__.py", "__pycache__"):
                (tree / "include" / entry.name).symlink_to(entry)
    # clang's CUDA wrapper force-includes this cuRAND header (to fix up builtin variable
    # types); edgeseg uses no cuRAND, so an empty one stands in for the 60 MB package.
    (tree / "include" / "curand_mtgp32_kernel.h").write_text("// stand-in, see jetson_check.py\n")
    ptxas = nv / "cuda_nvcc" / "bin" / "ptxas"
    ptxas.chmod(0o755)
    (tree / "bin" / "ptxas").symlink_to(ptxas)
    (tree / "nvvm" / "libdevice").symlink_to(nv / "cuda_nvcc" / "nvvm" / "libdevice")
    return tree


def check_cuda12(build_root: Path) -> None:
    """Every .cu compiles for sm_87 against CUDA 12.6 (JetPack 6.1/6.2).

    PyPI's nvidia-cuda-nvcc-cu12 wheels hold ptxas, libnvvm, libdevice and the crt headers
    but not the nvcc driver, cicc, cudafe++ or fatbinary, so nvcc 12 itself cannot run from
    them. Instead clang's CUDA frontend compiles each file twice against the CUDA 12.6 tree:
    the host side (against 12.6's cuda_runtime.h: catches CUDA 13-only runtime API) and the
    device side, which CUDA 12.6's own ptxas assembles into an sm_87 cubin.
    """
    clang = ensure_clang()
    tree = cuda12_toolkit(build_root)
    ptxas_version = release_line(run([str(tree / "bin" / "ptxas"), "--version"]).stdout)
    clang_version = run([clang, "--version"]).stdout.splitlines()[0]
    flags = [
        "-x",
        "cuda",
        f"--cuda-path={tree}",
        "--cuda-gpu-arch=sm_87",
        "-std=c++17",
        "-O3",
        "-Wno-unknown-cuda-version",
        f"-I{ROOT / 'cpp' / 'include'}",
    ]
    out_dir = build_root / "cuda12" / "objects"
    stamp = out_dir / "stamp"
    digest = inputs_digest([clang_version, ptxas_version, *flags])
    cached = stamp.exists() and stamp.read_text() == digest
    t0 = time.monotonic()
    if not cached:
        out_dir.mkdir(parents=True, exist_ok=True)
        stamp.unlink(missing_ok=True)
        for cu in cu_sources():
            for side, ext in (("--cuda-host-only", "o"), ("--cuda-device-only", "cubin")):
                try:
                    out = out_dir / f"{cu.stem}.{ext}"
                    run([clang, *flags, side, "-c", str(cu), "-o", str(out)])
                except CheckError as e:
                    raise CheckError(
                        f"{cu.relative_to(ROOT)} does not compile against CUDA 12.6 for sm_87 "
                        f"({side}; JetPack 6 devices would fail to build it):\n{e}"
                    ) from e
        stamp.write_text(digest)
    how = "cached" if cached else f"{time.monotonic() - t0:.1f}s"
    log(
        f"[cuda12] CUDA 12.6 headers, ptxas {ptxas_version}, frontend {clang_version}: "
        f"{len(cu_sources())} .cu -> host objects + sm_87 cubins, {how}"
    )


# ---- main ----------------------------------------------------------------------------------

CHECKS = {"aarch64": check_aarch64, "cuda12": check_cuda12, "cuda13": check_cuda13}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only",
        choices=sorted(CHECKS),
        action="append",
        help="run only this check (repeatable); default: all",
    )
    parser.add_argument(
        "--build-dir",
        type=Path,
        default=ROOT / "build",
        help="where builds and caches live (default: build/)",
    )
    args = parser.parse_args(argv)
    t0 = time.monotonic()
    failed = []
    for name in args.only or list(CHECKS):
        try:
            CHECKS[name](args.build_dir.resolve())
        except CheckError as e:
            log(f"[{name}] FAILED: {e}")
            failed.append(name)
    elapsed = time.monotonic() - t0
    if failed:
        log(f"jetson-check: FAILED ({', '.join(failed)}) in {elapsed:.0f}s")
        return 1
    log(f"jetson-check: all passed in {elapsed:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
