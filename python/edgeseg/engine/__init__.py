"""TensorRT engine building (``edgeseg build``) and the engine manifest check, torch-free.

``build_engine(onnx, out, precision)`` writes ``out`` and ``out + ".json"`` (the manifest);
``check_manifest(engine_or_manifest)`` raises :class:`~edgeseg.EngineMismatchError` when the
engine was built for another TensorRT version or GPU than this machine's.
"""

from __future__ import annotations

from edgeseg.engine.builder import (
    MANIFEST_FORMAT,
    PRECISIONS,
    build_engine,
    check_manifest,
    current_platform,
    load_manifest,
    load_tensorrt,
    manifest_path,
)

__all__ = [
    "MANIFEST_FORMAT",
    "PRECISIONS",
    "build_engine",
    "check_manifest",
    "current_platform",
    "load_manifest",
    "load_tensorrt",
    "manifest_path",
]
