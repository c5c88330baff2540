"""The engine manifest ``<engine>.json`` (what an engine was built with and for: TensorRT
version, GPU, compute capability, precision, I/O, classes, preprocessing) and the check that
an engine fits this machine. Read by the runtime before it loads an engine and written by
:mod:`edgeseg.engine.builder`; torch-free and builder-free, so the deploy side imports it
alone.

The TensorRT Python module is looked up in this order: ``tensorrt`` (JetPack's
python3-libnvinfer or NVIDIA's TensorRT wheel), then ``tensorrt_rtx`` /
``tensorrt_rtx_bindings`` (TensorRT for RTX, whose builder needs no GPU).
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType
from typing import Optional, Union

from edgeseg._platform import gpu_name_capability
from edgeseg.errors import DeviceUnavailableError, EngineMismatchError, ModelError

__all__ = [
    "MANIFEST_FORMAT",
    "TENSORRT_MODULES",
    "check_manifest",
    "current_platform",
    "load_manifest",
    "load_tensorrt",
    "manifest_path",
    "tensorrt_flavour",
]

MANIFEST_FORMAT = "edgeseg-engine/1"
# Import order: the full TensorRT first (Jetson, data centre), then TensorRT for RTX.
TENSORRT_MODULES = ("tensorrt", "tensorrt_rtx", "tensorrt_rtx_bindings")
_RTX_MODULES = ("tensorrt_rtx", "tensorrt_rtx_bindings")


def _install_hint() -> str:
    return (
        "install TensorRT's Python module: on a Jetson `sudo apt install python3-libnvinfer` "
        "(JetPack; in a venv create it with --system-site-packages), elsewhere NVIDIA's "
        "TensorRT wheel (`pip install tensorrt`, see docs.nvidia.com/deeplearning/tensorrt) or, "
        "to build without a GPU, TensorRT for RTX (`pip install tensorrt-rtx-cu13-libs "
        "tensorrt-rtx-cu13-bindings`)"
    )


def _import_tensorrt() -> ModuleType:
    """The first TensorRT module of :data:`TENSORRT_MODULES` that imports."""
    failures = []
    for name in TENSORRT_MODULES:
        try:
            return importlib.import_module(name)
        except ImportError as e:
            failures.append(f"{name}: {e}")
        except Exception as e:  # a broken install (missing libnvinfer.so, ...) is not "absent"
            failures.append(f"{name}: {type(e).__name__}: {e}")
    raise DeviceUnavailableError(
        "building an engine needs TensorRT and no TensorRT Python module imports "
        f"({'; '.join(failures)}); {_install_hint()}"
    )


def load_tensorrt() -> ModuleType:
    """The TensorRT Python module (see :data:`TENSORRT_MODULES`); raises
    :class:`~edgeseg.DeviceUnavailableError` saying what to install when none imports."""
    return _import_tensorrt()


def tensorrt_flavour(trt: ModuleType) -> str:
    name = trt.__name__.split(".")[0]
    return "tensorrt_rtx" if name in _RTX_MODULES else name


def current_platform(trt: Optional[ModuleType] = None) -> dict:
    """``{"tensorrt": {"module", "version"}, "gpu", "compute_capability"}`` of this machine.
    ``trt``: the module to describe (default: :func:`load_tensorrt`)."""
    trt = trt or _import_tensorrt()
    name, cap = gpu_name_capability()
    return {
        "tensorrt": {"module": tensorrt_flavour(trt), "version": str(trt.__version__)},
        "gpu": name,
        "compute_capability": cap,
    }


def manifest_path(engine_path: Union[str, Path]) -> Path:
    """``model.engine`` -> ``model.engine.json``."""
    p = Path(engine_path)
    return p.with_name(p.name + ".json")


def load_manifest(manifest: Union[str, Path, dict]) -> tuple[dict, str]:
    """An engine manifest (given as the engine's path, its ``.json`` or the dict) and the
    engine path it describes; a missing, unreadable or foreign manifest raises
    :class:`~edgeseg.ModelError` saying how to rebuild."""
    if isinstance(manifest, dict):
        return manifest, manifest.get("engine", "the engine")
    p = Path(manifest)
    if p.suffix != ".json":
        p = manifest_path(p)
    if not p.is_file():
        raise ModelError(
            f"{p}: no engine manifest; rebuild the engine with `edgeseg build MODEL.onnx -o "
            f"{p.name[:-5]}` (it writes the manifest next to the engine)"
        )
    try:
        m = json.loads(p.read_text())
    except (ValueError, RecursionError, OSError) as e:
        why = "nested too deeply" if isinstance(e, RecursionError) else str(e)[:200]
        raise ModelError(f"{p}: not a valid engine manifest ({why}); rebuild the engine") from None
    if not isinstance(m, dict) or m.get("format") != MANIFEST_FORMAT:
        found = m.get("format") if isinstance(m, dict) else None
        raise ModelError(
            f"{p}: not an edgeseg engine manifest (format {found!r}, expected "
            f"{MANIFEST_FORMAT!r}); rebuild the engine with `edgeseg build`"
        )
    return m, str(p.with_suffix(""))


def check_manifest(manifest: Union[str, Path, dict], current: Optional[dict] = None) -> dict:
    """Compare an engine manifest (path of the engine, of its ``.json``, or the dict) with
    this machine (``current``, default :func:`current_platform`): the TensorRT flavour and
    version and the compute capability must match. Returns the manifest; raises
    :class:`~edgeseg.EngineMismatchError` naming each difference and the ``edgeseg build``
    command that rebuilds the engine here."""
    m, engine = load_manifest(manifest)
    cur = current if current is not None else current_platform()
    built_trt, here_trt = m.get("tensorrt") or {}, cur.get("tensorrt") or {}
    diffs = []
    if built_trt.get("module") != here_trt.get("module"):
        diffs.append(
            f"TensorRT flavour: built with {built_trt.get('module')}, here {here_trt.get('module')}"
        )
    if str(built_trt.get("version")) != str(here_trt.get("version")):
        diffs.append(
            f"TensorRT version: built with {built_trt.get('version')}, here "
            f"{here_trt.get('version')}"
        )
    built_cc, here_cc = m.get("compute_capability"), cur.get("compute_capability")
    if built_cc and here_cc and str(built_cc) != str(here_cc):
        diffs.append(
            f"compute capability: built for {built_cc} ({m.get('gpu')}), here {here_cc} "
            f"({cur.get('gpu')})"
        )
    if diffs:
        cmd = m.get("build_command") or "edgeseg build MODEL.onnx --precision fp16 -o MODEL.engine"
        raise EngineMismatchError(
            f"{engine}: this engine was not built for this machine ({'; '.join(diffs)}). "
            "TensorRT engines only run on the TensorRT version and GPU they were built with; "
            f"rebuild it here from the ONNX (sha256 {str(m.get('onnx_sha256'))[:12]}…): {cmd}"
        )
    return m
