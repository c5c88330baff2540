"""The runtime: ``Segmenter`` (model file → ``SegResult``) with ONNX Runtime and TensorRT
backends, tiled inference, and ``edgeseg predict``. Imports without torch."""

from __future__ import annotations

from edgeseg.runtime.backends import BACKENDS, Backend, create_backend, tensorrt_available
from edgeseg.runtime.model_info import ModelInfo, load_model_info
from edgeseg.runtime.result import ClassInfo, Region, SegResult
from edgeseg.runtime.segmenter import Segmenter

__all__ = [
    "BACKENDS",
    "Backend",
    "ClassInfo",
    "ModelInfo",
    "Region",
    "SegResult",
    "Segmenter",
    "create_backend",
    "load_model_info",
    "tensorrt_available",
]
