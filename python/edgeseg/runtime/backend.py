"""The interface every inference backend implements.

``Backend.infer(blob) -> logits``: ``blob`` is the ``(N, 3, H, W)`` float32 input from the
fused preprocess, the result the ``(N, C, h, w)`` float32 logits for the fused postprocess.
The returned array is the backend's reused output buffer: consume it before the next call.

``Backend.submit(blob) -> Pending`` starts an inference and returns at once where the backend
can run one while the caller prepares the next (``requests`` > 1, OpenVINO); ``wait()`` gives
the logits, ``release()`` hands their buffer back. Elsewhere it runs ``infer`` there and then.

A backend with ``fused = True`` (TensorRT) also runs the whole frame in one native call,
``run_frame`` (preprocess, inference and postprocess on the GPU).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np

__all__ = ["Backend", "Pending", "cache_root"]


class Pending:
    """An inference in flight. ``wait()`` returns its logits (the backend's buffer, valid
    until ``release()``); ``release()`` must follow, also after an error."""

    def __init__(self, logits: np.ndarray) -> None:
        self._logits = logits

    def wait(self) -> np.ndarray:
        return self._logits

    def release(self) -> None:
        self._logits = None


class Backend:
    """One loaded model on one device."""

    name = "backend"
    #: Largest batch one ``infer`` call takes (None: any).
    max_batch: Optional[int] = None
    #: Inferences worth keeping in flight (``submit`` returns before the result when > 1).
    requests: int = 1
    #: How ``backend="auto"`` came to this backend ({"requested", "reason"}), or None.
    choice: Optional[dict] = None

    #: Whether :meth:`run_frame` runs the whole frame (preprocess, inference, postprocess)
    #: in one native call (TensorRT); the Segmenter then calls it instead of :meth:`infer`.
    fused: bool = False

    def infer(self, blob: np.ndarray) -> np.ndarray:
        """Logits ``(N, C, h, w)`` float32 of the blob ``(N, 3, H, W)`` float32."""
        raise NotImplementedError

    def run_frame(self, frame: np.ndarray, rgb: bool, palette, alpha: float, confidence: bool):
        """The fused path of a backend with ``fused = True``: ``(class_map, confidence|None,
        overlay|None, counts, nonfinite, nonfinite_input, timings_ms)`` of one HWC uint8
        frame (``palette``/``alpha``: the overlay's colours and opacity, None: no overlay).
        Backends without it raise ``NotImplementedError``."""
        raise NotImplementedError(f"the {self.name} backend has no fused path; use infer()")

    def submit(self, blob: np.ndarray) -> Pending:
        """Starts an inference; here it runs to the end before returning."""
        return Pending(self.infer(blob))

    def describe(self) -> dict:
        return {"backend": self.name}

    def close(self) -> None:
        """Releases the model; safe to call twice."""


def cache_root() -> Path:
    """edgeseg's cache folder: ``$EDGESEG_CACHE``, else ``$XDG_CACHE_HOME/edgeseg``, else
    ``~/.cache/edgeseg``."""
    root = os.environ.get("EDGESEG_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "edgeseg"
    )
    return Path(root)
