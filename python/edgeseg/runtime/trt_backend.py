"""The TensorRT backend: the C++ ``_core.TrtEngine`` (CUDA preprocess → enqueueV3 → CUDA
fused postprocess on one stream, CUDA-graph replay once warm, zero-copy buffers on Jetson).
Present only in cores built with TensorRT (``edgeseg.build_info()["tensorrt"]``)."""

from __future__ import annotations

import numpy as np

from edgeseg import _core, kernels
from edgeseg.errors import EdgesegError, EngineMismatchError, ModelError
from edgeseg.runtime.backend import Backend
from edgeseg.runtime.model_info import ModelInfo

__all__ = ["TensorRTBackend", "check_engine_manifest"]


def _version3(v) -> tuple:
    return tuple(str(v).split(".")[:3])


def check_engine_manifest(info: ModelInfo, trt_version: str, device_name: str) -> dict:
    """Compares the engine's manifest with the TensorRT library loaded at run time
    (``TrtEngine.tensorrt_version()``) and the GPU it runs on; raises
    :class:`~edgeseg.EngineMismatchError` saying how to rebuild."""
    from edgeseg.engine.manifest import check_manifest, load_manifest

    manifest, _ = load_manifest(info.path)
    built = manifest.get("tensorrt") or {}
    module = built.get("module")
    here_version = (
        built.get("version")
        if _version3(built.get("version")) == _version3(trt_version)
        else trt_version
    )
    if module not in (None, "tensorrt"):
        module_here = "tensorrt"
    else:
        module_here = module
    gpu_matches = not manifest.get("gpu") or manifest.get("gpu") == device_name
    current = {
        "tensorrt": {"module": module_here, "version": here_version},
        "gpu": device_name,
        # The manifest's compute capability is compared by name here: the C++ runtime knows the
        # device name; a different GPU model means a different capability or SM count.
        "compute_capability": manifest.get("compute_capability") if gpu_matches else "other",
    }
    return check_manifest(manifest, current)


class TensorRTBackend(Backend):
    """A deserialized engine; ``run_frame`` is the fused path, ``infer`` the raw one."""

    name = "tensorrt"
    fused = True

    def __init__(self, info: ModelInfo, device: int = 0, cuda_graph: bool = True) -> None:
        self.info = info
        try:
            self.engine = _core.TrtEngine(str(info.path), device, cuda_graph)
        except EdgesegError as e:
            try:
                check_engine_manifest(info, _core.TrtEngine.tensorrt_version(), "")
            except EngineMismatchError as mismatch:
                raise mismatch from None
            raise ModelError(f"{info.path}: {e}") from None
        check_engine_manifest(info, _core.TrtEngine.tensorrt_version(), self.engine.device_name)
        if self.engine.num_classes != info.num_classes:
            raise ModelError(
                f"{info.path}: the engine outputs {self.engine.num_classes} classes but its "
                f"manifest lists {info.num_classes}; rebuild it with `edgeseg build`"
            )
        if tuple(self.engine.input_size) != tuple(info.input_size):
            raise ModelError(
                f"{info.path}: engine input {tuple(self.engine.input_size)} differs from the "
                f"manifest's {tuple(info.input_size)}; rebuild it with `edgeseg build`"
            )
        # The engine normalizes on the GPU with the model's mean/std: refuse constants whose
        # normalized range is not finite in the engine's input dtype before the first frame.
        inputs = [t for t in self.engine.tensors if t["input"]]
        in_dtype = "float16" if inputs and inputs[0]["dtype"] == "float16" else "float32"
        kernels.check_normalization(info.mean, info.std, in_dtype)
        self.max_batch = None

    def run_frame(self, frame: np.ndarray, rgb: bool, palette, alpha: float, confidence: bool):
        """(class_map, confidence|None, overlay|None, counts, nonfinite, nonfinite_input,
        timings_ms) of one frame: nonfinite counts the output pixels read from NaN/±Inf
        logits, nonfinite_input the NaN/±Inf values of the network input."""
        swap = (self.info.channel_order == "rgb") != rgb
        if frame.ndim == 2:
            frame = np.repeat(frame[:, :, None], 3, axis=2)
        frame = np.ascontiguousarray(frame)
        out = self.engine.run(
            frame,
            list(self.info.mean),
            list(self.info.std),
            swap,
            self.info.resize == "letterbox",
            palette,
            float(alpha),
            bool(confidence),
            [0],
        )
        return (*out, self.engine.last_timings())

    def infer(self, blob: np.ndarray) -> np.ndarray:
        return self.engine.infer(np.ascontiguousarray(blob, dtype=np.float32))

    def describe(self) -> dict:
        return {
            "backend": self.name,
            "tensorrt": _core.TrtEngine.tensorrt_version(),
            "device": self.engine.device_name,
            "integrated": bool(self.engine.integrated),
        }

    def close(self) -> None:
        self.engine = None
