"""edgeseg: semantic segmentation from labelled pixels to a live OK/NG verdict on the edge."""

from __future__ import annotations

from edgeseg import kernels
from edgeseg._core import build_info
from edgeseg.errors import (
    CudaError,
    DatasetError,
    DeviceUnavailableError,
    EdgesegError,
    EngineMismatchError,
    InvalidArgumentError,
    ModelError,
    RulesError,
    SinkError,
    SourceError,
    TrainingError,
)
from edgeseg.runtime import Segmenter, SegResult

__version__: str = build_info()["version"]

__all__ = [
    "CudaError",
    "DatasetError",
    "DeviceUnavailableError",
    "EdgesegError",
    "EngineMismatchError",
    "InvalidArgumentError",
    "ModelError",
    "RulesError",
    "SegResult",
    "Segmenter",
    "SinkError",
    "SourceError",
    "TrainingError",
    "__version__",
    "build_info",
    "kernels",
]
