"""Facts about the machine the package runs on, free of heavy imports (``edgeseg.train`` asks
before torch loads): usable CPUs, the CPU's name and flags, the GPU's name and compute
capability."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Optional


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def cpuinfo_field(name: str, text: Optional[str] = None) -> Optional[str]:
    """The value of the first ``name : value`` line of ``/proc/cpuinfo`` (``text``: its
    contents, read when not given), or None where there is no such line or no such file."""
    if text is None:
        try:
            with open("/proc/cpuinfo") as f:
                text = f.read()
        except OSError:
            return None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == name:
            return value.strip()
    return None


def cpu_name(fallback: Optional[str] = None) -> str:
    """The CPU's model name (``/proc/cpuinfo``), else ``fallback``, else what ``platform``
    says (processor, or the machine type)."""
    found = cpuinfo_field("model name")
    if found:
        return found
    if fallback is not None:
        return fallback
    return platform.processor() or platform.machine()


# Jetson SoCs (no nvidia-smi there): /proc/device-tree/compatible -> (name, compute capability).
_TEGRA = {
    "nvidia,tegra264": ("NVIDIA Jetson Thor", "11.0"),
    "nvidia,tegra234": ("NVIDIA Jetson Orin", "8.7"),
    "nvidia,tegra194": ("NVIDIA Jetson Xavier", "7.2"),
    "nvidia,tegra186": ("NVIDIA Jetson TX2", "6.2"),
    "nvidia,tegra210": ("NVIDIA Jetson Nano/TX1", "5.3"),
}
NO_GPU = "unknown (no GPU visible)"


def gpu_name_capability() -> tuple[str, Optional[str]]:
    """(GPU name, compute capability "M.m" or None), from nvidia-smi or the Jetson device tree."""
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run(
                [smi, "--query-gpu=name,compute_cap", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=10,
            )
            line = out.stdout.strip().splitlines()[0] if out.returncode == 0 else ""
            if line:
                name, _, cap = (s.strip() for s in line.partition(","))
                return name, (cap if cap and cap[0].isdigit() else None)
        except (OSError, subprocess.SubprocessError, IndexError):
            pass
    try:
        compatible = Path("/proc/device-tree/compatible").read_bytes().decode(errors="replace")
    except OSError:
        compatible = ""
    for key, (name, cap) in _TEGRA.items():
        if key in compatible:
            return name, cap
    return NO_GPU, None
