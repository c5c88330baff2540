"""edgeseg: semantic segmentation from labelled pixels to a live OK/NG verdict on the edge."""

from __future__ import annotations

# First: OpenCV reads its pixel limit once, when cv2 is imported; _limits sets it on import.
from edgeseg import _limits  # noqa: F401  # isort: skip
from edgeseg import kernels
from edgeseg._core import build_info
from edgeseg.errors import (
    CudaError,
    DatasetError,
    DeviceUnavailableError,
    EdgesegError,
    EngineMismatchError,
    InvalidArgumentError,
    InvalidResultError,
    ModelError,
    RulesError,
    SinkError,
    SourceError,
    TrainingError,
    UnknownLabelError,
)
from edgeseg.rules import Rules
from edgeseg.runtime import Segmenter, SegResult

__version__: str = build_info()["version"]

__all__ = [
    "CameraLoop",
    "CudaError",
    "DatasetError",
    "DeviceUnavailableError",
    "EdgesegError",
    "EngineMismatchError",
    "InvalidArgumentError",
    "InvalidResultError",
    "ModelError",
    "RulesError",
    "SegResult",
    "Segmenter",
    "SinkError",
    "SourceError",
    "Rules",
    "TrainingError",
    "UnknownLabelError",
    "__version__",
    "build_info",
    "kernels",
]


def __getattr__(name: str):
    # the camera loop loads on first use: `import edgeseg` stays light (no OpenCV, no sinks)
    if name == "CameraLoop":
        from edgeseg.camera.loop import CameraLoop

        return CameraLoop
    raise AttributeError(f"module 'edgeseg' has no attribute {name!r}")
