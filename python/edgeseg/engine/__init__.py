"""TensorRT engine building (``edgeseg build``) and the engine manifest check, torch-free.

``build_engine(onnx, out, precision)`` writes ``out`` and ``out + ".json"`` (the manifest);
``check_manifest(engine_or_manifest)`` raises :class:`~edgeseg.EngineMismatchError` when the
engine was built for another TensorRT version or GPU than this machine's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgeseg.engine.manifest import (
    MANIFEST_FORMAT,
    check_manifest,
    current_platform,
    load_manifest,
    load_tensorrt,
    manifest_path,
)

if TYPE_CHECKING:  # pragma: no cover
    from edgeseg.engine.builder import PRECISIONS, build_engine

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


def __getattr__(name: str):
    # the builder is build code: the runtime reads manifests through edgeseg.engine.manifest
    # and must not load it
    if name in ("PRECISIONS", "build_engine"):
        from edgeseg.engine import builder

        return getattr(builder, name)
    raise AttributeError(f"module 'edgeseg.engine' has no attribute {name!r}")
