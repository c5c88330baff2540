"""Facts about the machine the package runs on, free of heavy imports (``edgeseg.train`` asks
before torch loads)."""

from __future__ import annotations

import os
import platform
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
