"""ONNX Runtime on the CPU for exported edgeseg models (torch-free)."""

from __future__ import annotations

from pathlib import Path
from typing import Union

from edgeseg.errors import ModelError

__all__ = ["ort_session"]


def ort_session(path: Union[str, Path], threads: int = 2):
    """A CPU ``onnxruntime.InferenceSession`` with ``threads`` intra-op threads."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ModelError(
            f"{path}: running ONNX models needs onnxruntime (pip install 'edgeseg[export]')"
        ) from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise ModelError(
            f"{path}: onnxruntime cannot load the model ({type(e).__name__}: {e}); re-export it "
            "with `edgeseg export`"
        ) from None
