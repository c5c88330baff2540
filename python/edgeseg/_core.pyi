"""Type stubs of the private native module (use edgeseg.kernels instead).

Checked against the built module by tests/python/test_core_stub.py: the same names, parameter
names, defaults, types and docstrings. Two names exist only in some builds, as said where they
are declared: ``cuda_postprocess_ptr`` (cores built with CUDA) and ``TrtEngine`` (cores built
with TensorRT); ``build_info()`` tells which.
"""

from collections.abc import Sequence
from typing import Any, Optional

import numpy as np

class EdgesegError(Exception):
    """Root of every error edgeseg raises."""

class InvalidArgumentError(EdgesegError, ValueError):
    """An argument has the wrong shape, dtype or value (also a ValueError)."""

class CudaError(EdgesegError, RuntimeError):
    """A CUDA runtime call failed (names call, file, line)."""

class TensorRTError(EdgesegError, RuntimeError):
    """A TensorRT call failed (an engine that does not deserialize or has unusable I/O, a rejected
    shape, a failed enqueue); the message carries TensorRT's logged errors.
    """

class Letterbox:
    """Where a frame sits in a letterboxed network input: the frame (src_width x src_height) was
    resized to resized_width x resized_height and pasted at (pad_x, pad_y) into an input_width x
    input_height canvas. Pass it to postprocess(letterbox=...) to map the logits back onto the
    frame.
    """

    @property
    def src_width(self) -> int: ...
    @property
    def src_height(self) -> int: ...
    @property
    def input_width(self) -> int: ...
    @property
    def input_height(self) -> int: ...
    @property
    def resized_width(self) -> int: ...
    @property
    def resized_height(self) -> int: ...
    @property
    def pad_x(self) -> int: ...
    @property
    def pad_y(self) -> int: ...
    @property
    def scale(self) -> float: ...
    def __init__(
        self, src_width: int, src_height: int, input_width: int, input_height: int
    ) -> None: ...

def build_info() -> dict[str, Any]:
    """What this build contains: {'cuda': bool, 'tensorrt': 'x.y' or None, 'cuda_archs': [...],
    'simd': str, 'threads': int, 'version': str, 'compiler': str}.
    """

def num_threads() -> int:
    """Threads the CPU kernels use."""

def set_num_threads(n: int) -> None:
    """Sets the number of threads the CPU kernels use (>= 1)."""

def simd_level() -> str:
    """The instruction-set tier the CPU kernels use now (see build_info()['simd'])."""

def set_simd_level(level: str) -> None:
    """Forces a tier the CPU runs ('scalar', 'sse2', 'avx2', 'avx512', 'neon'; '' for automatic) for
    the whole process, from the next kernel call.
    """

def cuda_available() -> tuple[bool, str]:
    """(usable, reason): whether the CUDA kernels can run here, and why not."""

def preprocess(
    images: Sequence[np.ndarray],
    out_height: int,
    out_width: int,
    out_channels: int,
    mean: Sequence[float],
    std: Sequence[float],
    swap_rb: bool,
    float16: bool,
    letterbox: bool,
    pad_value: int,
    cuda: bool = False,
) -> tuple[np.ndarray, list[Optional[Letterbox]], np.ndarray]:
    """Low-level fused preprocess; use edgeseg.kernels.preprocess. Returns (blob, [Letterbox or None
    per image], nonfinite): nonfinite (int64, one per image) counts the NaN/inf values written.
    Unlike the wrapper, it does not refuse a mean/std whose normalized range overflows the output
    dtype; it counts the result.
    """

def postprocess(
    logits: np.ndarray,
    out_height: int,
    out_width: int,
    frames: Optional[Sequence[np.ndarray]],
    palette: Optional[np.ndarray],
    alpha: float,
    confidence: bool,
    counts: bool,
    ignore: Sequence[int],
    letterbox: Optional[Sequence[Letterbox]],
    cuda: bool = False,
) -> tuple[
    np.ndarray, Optional[np.ndarray], Optional[np.ndarray], Optional[np.ndarray], np.ndarray
]:
    """Low-level fused postprocess; use edgeseg.kernels.postprocess. Returns (class_map,
    confidence|None, overlay|None, counts|None, nonfinite), all with a leading batch axis; nonfinite
    (int64) counts the output pixels read from non-finite logits.
    """

# Only in cores built with CUDA (build_info()["cuda"]); absent from CPU-only builds.
def cuda_postprocess_ptr(
    logits: int,
    float16: bool,
    channels: int,
    height: int,
    width: int,
    out_height: int,
    out_width: int,
    class_map: int,
    confidence: int,
    stream: int,
    nonfinite: int = 0,
) -> None:
    """Device-pointer postprocess for benchmarks and zero-copy integrations (e.g. torch tensors'
    data_ptr() and a stream handle): C x h x w logits already on the GPU -> H x W class map (+
    confidence when non-zero, + the int64 non-finite pixel count at `nonfinite` when non-zero),
    enqueued on `stream`, not synchronized.
    """

# Only in cores built with TensorRT (build_info()["tensorrt"] is not None); absent otherwise.
class TrtEngine:
    """A deserialized TensorRT engine on one CUDA stream: CUDA preprocess -> enqueueV3 -> CUDA fused
    postprocess, replayed as one CUDA graph once warm.
    """

    def __init__(self, path: str, device: int = 0, cuda_graph: bool = True) -> None: ...
    @property
    def input_size(self) -> tuple[int, int]: ...
    @property
    def logits_size(self) -> tuple[int, int]: ...
    @property
    def num_classes(self) -> int: ...
    @property
    def integrated(self) -> bool: ...
    @property
    def device_name(self) -> str: ...
    @property
    def tensors(self) -> list[dict[str, Any]]: ...
    @staticmethod
    def tensorrt_version() -> str: ...
    def run(
        self,
        frame: np.ndarray,
        mean: Sequence[float],
        std: Sequence[float],
        swap_rb: bool,
        letterbox: bool,
        palette: Optional[np.ndarray],
        alpha: float,
        confidence: bool,
        ignore: Sequence[int],
    ) -> tuple[np.ndarray, Optional[np.ndarray], Optional[np.ndarray], np.ndarray, int, int]: ...
    def infer(self, blob: np.ndarray) -> np.ndarray: ...
    def last_timings(self) -> dict[str, Any]: ...
