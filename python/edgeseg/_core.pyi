"""Type stubs of the private native module (use edgeseg.kernels instead)."""

from typing import Any, Optional

import numpy as np

class EdgesegError(Exception): ...
class InvalidArgumentError(EdgesegError, ValueError): ...
class CudaError(EdgesegError, RuntimeError): ...

class Letterbox:
    src_width: int
    src_height: int
    input_width: int
    input_height: int
    resized_width: int
    resized_height: int
    pad_x: int
    pad_y: int
    scale: float
    def __init__(
        self, src_width: int, src_height: int, input_width: int, input_height: int
    ) -> None: ...

def build_info() -> dict[str, Any]: ...
def num_threads() -> int: ...
def set_num_threads(n: int) -> None: ...
def cuda_available() -> tuple[bool, str]: ...
def simd_level() -> str: ...
def set_simd_level(level: str) -> None: ...
def preprocess(
    images: list[np.ndarray],
    out_height: int,
    out_width: int,
    out_channels: int,
    mean: list[float],
    std: list[float],
    swap_rb: bool,
    float16: bool,
    letterbox: bool,
    pad_value: int,
    cuda: bool = False,
) -> tuple[np.ndarray, list[Optional[Letterbox]], np.ndarray]: ...
def postprocess(
    logits: np.ndarray,
    out_height: int,
    out_width: int,
    frames: Optional[list[np.ndarray]],
    palette: Optional[np.ndarray],
    alpha: float,
    confidence: bool,
    counts: bool,
    ignore: list[int],
    letterbox: Optional[list[Letterbox]],
    cuda: bool = False,
) -> tuple[
    np.ndarray, Optional[np.ndarray], Optional[np.ndarray], Optional[np.ndarray], np.ndarray
]: ...
