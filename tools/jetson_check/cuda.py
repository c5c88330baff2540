"""The CUDA checks: every cpp/cuda/*.cu compiles for sm_87 against CUDA 12.6 (JetPack 6), and
the machine's CUDA 13 nvcc builds the default architectures into each object's fat binary."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import struct
import sys
import time
from pathlib import Path
from typing import Optional

from .common import ROOT, CheckError, apt_install, log, run

# JetPack 6.1/6.2 ship CUDA 12.6; these PyPI packages carry its headers, ptxas and libdevice.
CUDA12_VERSION = "12.6.77"
CUDA12_PACKAGES = [
    f"nvidia-cuda-nvcc-cu12=={CUDA12_VERSION}",
    f"nvidia-cuda-runtime-cu12=={CUDA12_VERSION}",
    f"nvidia-cuda-cccl-cu12=={CUDA12_VERSION}",
]
CLANG_PACKAGE = "clang-16"  # Debian 12's newest clang; CUDA frontend of the CUDA 12 check


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
    stand_in = "// stand-in, see tools/jetson_check/cuda.py\n"
    (tree / "include" / "curand_mtgp32_kernel.h").write_text(stand_in)
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
