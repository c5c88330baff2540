"""The OpenVINO backend: an exported ``.onnx`` compiled by OpenVINO for the CPU.

The fused preprocess blob goes into an infer request without a copy (the request's input
tensor wraps the blob), OpenVINO writes the logits into the request's own output tensor
(allocated once per request), and the fused postprocess reads them from there. Compiled
models are cached under :func:`openvino_cache_dir` (OpenVINO's ``CACHE_DIR``): the first
load compiles, later ones load the blob.

Two infer requests are kept so that the camera loop can preprocess the next frame and
postprocess the previous one while OpenVINO runs the current one (:meth:`submit`).
"""

from __future__ import annotations

import logging
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Optional

import numpy as np

from edgeseg.errors import InvalidArgumentError, ModelError
from edgeseg.runtime.backend import Backend, Pending, cache_root
from edgeseg.runtime.model_info import ModelInfo

__all__ = ["OPENVINO_HINTS", "OpenVINOBackend", "openvino_cache_dir", "openvino_version"]

log = logging.getLogger("edgeseg.runtime")

OPENVINO_HINTS = ("latency", "throughput")
INSTALL_HINT = "pip install 'edgeseg[openvino]'"
_REQUESTS = 2  # one running, one being filled: enough to keep the engine busy


def openvino_version() -> Optional[str]:
    """The installed OpenVINO's version, or None when it cannot be imported."""
    try:
        import openvino as ov
    except Exception:
        return None
    full = str(getattr(ov, "__version__", None) or ov.get_version())
    return full.split("-")[0]  # "2026.4.1-22982-<commit>-releases/..." -> "2026.4.1"


def openvino_cache_dir() -> Path:
    """Where compiled OpenVINO models are cached (``$EDGESEG_CACHE`` or
    ``$XDG_CACHE_HOME/edgeseg``, then ``openvino/``)."""
    return cache_root() / "openvino"


def _writable_dir(path: Path) -> Optional[str]:
    """None when ``path`` exists (or was created) and takes a file, else the reason."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".probe-"):
            pass
    except OSError as e:
        return f"{type(e).__name__}: {e.strerror or e}"
    return None


class _OvPending(Pending):
    """One inference started on an infer request; :meth:`wait` gives its logits."""

    def __init__(self, backend: OpenVINOBackend, req, blob: np.ndarray) -> None:
        self._backend, self._req, self._blob = backend, req, blob
        self._n = int(blob.shape[0])
        self._done = False

    def wait(self) -> np.ndarray:
        if self._done:
            raise InvalidArgumentError("wait(): these logits were already taken")
        self._done = True
        try:
            self._req.wait()
            return self._req.get_output_tensor(0).data
        except Exception as e:
            raise ModelError(f"{self._backend.path}: OpenVINO inference failed: {e}") from None
        finally:
            self._blob = None

    def release(self) -> None:
        if self._req is not None:
            self._backend._release(self._n, self._req)
            self._req = None


class OpenVINOBackend(Backend):
    """OpenVINO on the CPU. ``threads``: inference threads (default: OpenVINO's choice);
    ``hint``: ``"latency"`` (one frame as fast as possible, the default) or ``"throughput"``
    (several streams, for frames in flight); ``cache_dir``: compiled-model cache (default
    :func:`openvino_cache_dir`; ``False`` for none); ``config``: further OpenVINO properties,
    passed as they are (e.g. ``{"INFERENCE_PRECISION_HINT": "bf16"}``)."""

    name = "openvino"
    requests = _REQUESTS

    def __init__(
        self,
        info: ModelInfo,
        threads: Optional[int] = None,
        hint: str = "latency",
        cache_dir=None,
        config: Optional[dict] = None,
    ) -> None:
        try:
            import openvino as ov
        except ImportError:
            raise ModelError(
                f"{info.path}: backend='openvino' needs OpenVINO ({INSTALL_HINT}), or choose "
                "backend='onnxruntime'"
            ) from None
        if hint not in OPENVINO_HINTS:
            raise InvalidArgumentError(f"hint: expected one of {OPENVINO_HINTS}, got {hint!r}")
        if config is not None and not isinstance(config, dict):
            raise InvalidArgumentError(
                f"openvino_config: expected a dict of OpenVINO properties, got {config!r}"
            )
        self.path = info.path
        self.hint = hint
        props: dict = {
            "PERFORMANCE_HINT": hint.upper(),
            # results as ONNX Runtime gives them; bf16/f16 is an explicit choice (config)
            "INFERENCE_PRECISION_HINT": "f32",
            "PERFORMANCE_HINT_NUM_REQUESTS": _REQUESTS,
        }
        if threads is not None:
            if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
                raise InvalidArgumentError(f"threads: expected an int >= 1, got {threads!r}")
            props["INFERENCE_NUM_THREADS"] = threads
        self.threads = threads
        self.cache_dir: Optional[Path] = None
        self.cache_note: Optional[str] = None
        if cache_dir is not False:
            cache = Path(cache_dir) if cache_dir is not None else openvino_cache_dir()
            why = _writable_dir(cache)
            if why is None:
                self.cache_dir = cache
                props["CACHE_DIR"] = str(cache)
            else:
                self.cache_note = f"cache dir {cache} is not writable ({why}); compiled uncached"
                msg = (
                    f"{info.path}: the OpenVINO model cache {cache} is not writable ({why}); "
                    "compiling without a cache (set EDGESEG_CACHE to a writable folder)"
                )
                warnings.warn(msg, RuntimeWarning, stacklevel=3)
                log.warning(msg)
        props.update(config or {})
        self.properties = props
        self._ov = ov
        self._core = ov.Core()
        try:
            model = self._core.read_model(str(info.path))
        except Exception as e:
            raise ModelError(
                f"{info.path}: OpenVINO cannot read the model ({_reason(e)}); is the file "
                "truncated? Re-export it with `edgeseg export`, or use backend='onnxruntime'"
            ) from None
        if len(model.inputs) != 1 or len(model.outputs) < 1:
            raise ModelError(
                f"{info.path}: expected one input (images) and a logits output, got "
                f"{len(model.inputs)} inputs and {len(model.outputs)} outputs"
            )
        in_shape = model.inputs[0].get_partial_shape()
        out_shape = model.outputs[0].get_partial_shape()
        if out_shape.rank.is_static and out_shape.rank.get_length() != 4:
            raise ModelError(f"{info.path}: logits must be N×C×h×w, the model gives {out_shape}")
        c = out_shape[1]
        if c.is_static and c.get_length() != info.num_classes:
            raise ModelError(
                f"{info.path}: the network outputs {c.get_length()} classes but its metadata "
                f"lists {info.num_classes} ({info.class_names}); the metadata does not belong "
                "to this graph — re-export the model with `edgeseg export`"
            )
        self._model = model
        self._dynamic_batch = not in_shape[0].is_static
        # A dynamic batch is compiled per batch size (static shapes run fastest); batch 1 now.
        self._compiled: dict[int, object] = {}
        self._free: dict[int, list] = {}
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._sync: dict[int, object] = {}  # infer()'s own request per batch size
        first = 1 if self._dynamic_batch else in_shape[0].get_length()
        self.max_batch = None if self._dynamic_batch else first
        self._compile(first)
        compiled = self._compiled[first]
        try:
            self.devices = list(compiled.get_property("EXECUTION_DEVICES"))
        except Exception:
            self.devices = ["CPU"]
        try:
            self.streams = int(compiled.get_property("NUM_STREAMS"))
            self.nthreads = int(compiled.get_property("INFERENCE_NUM_THREADS"))
        except Exception:
            self.streams, self.nthreads = None, threads

    def _compile(self, n: int) -> None:
        model = self._model
        if self._dynamic_batch:
            model = model.clone()
            shape = model.inputs[0].get_partial_shape()
            shape[0] = n
            model.reshape({model.inputs[0]: shape})
        try:
            compiled = self._core.compile_model(model, "CPU", self.properties)
        except Exception as e:
            raise ModelError(
                f"{self.path}: OpenVINO cannot compile the model for the CPU "
                f"({_reason(e)}); use backend='onnxruntime'"
            ) from None
        self._compiled[n] = compiled
        self._free[n] = [compiled.create_infer_request() for _ in range(_REQUESTS)]

    def _acquire(self, n: int):
        """A free infer request for batch ``n`` (a new one when all are in flight: callers
        in several threads, or more frames submitted than kept, never wait on each other)."""
        with self._lock:
            if self._model is None:
                raise ModelError(f"{self.path}: the OpenVINO backend was closed")
            if n not in self._compiled:
                self._compile(n)
            free = self._free[n]
            return free.pop() if free else self._compiled[n].create_infer_request()

    def _release(self, n: int, req) -> None:
        with self._lock:
            if n in self._free:  # not after close()
                self._free[n].append(req)

    def _check(self, blob: np.ndarray) -> np.ndarray:
        if not self._dynamic_batch and blob.shape[0] != self.max_batch:
            raise InvalidArgumentError(
                f"{self.path}: the model takes batches of {self.max_batch}, got {blob.shape[0]}"
            )
        return np.ascontiguousarray(blob, dtype=np.float32)

    def submit(self, blob: np.ndarray) -> Pending:
        """Starts the inference of ``blob`` on a pooled request and returns at once."""
        blob = self._check(blob)
        n = int(blob.shape[0])
        req = self._acquire(n)
        try:
            req.set_input_tensor(self._ov.Tensor(blob, shared_memory=True))
            req.start_async()
        except Exception as e:
            self._release(n, req)
            raise ModelError(f"{self.path}: OpenVINO inference failed: {_reason(e)}") from None
        return _OvPending(self, req, blob)

    def infer(self, blob: np.ndarray) -> np.ndarray:
        """Runs ``blob`` to the end on a request of its own (apart from :meth:`submit`'s, so
        the returned output tensor stays valid until the next ``infer``)."""
        blob = self._check(blob)
        n = int(blob.shape[0])
        with self._sync_lock:
            req = self._sync.get(n)
            if req is None:
                req = self._sync[n] = self._acquire(n)
            try:
                req.set_input_tensor(self._ov.Tensor(blob, shared_memory=True))
                req.infer()
                return req.get_output_tensor(0).data
            except Exception as e:
                raise ModelError(f"{self.path}: OpenVINO inference failed: {_reason(e)}") from None

    def describe(self) -> dict:
        out = {
            "backend": self.name,
            "version": openvino_version(),
            "devices": self.devices,
            "hint": self.hint,
            "threads": self.nthreads,
            "streams": self.streams,
            "requests": _REQUESTS,
            "cache_dir": None if self.cache_dir is None else str(self.cache_dir),
        }
        if self.cache_note:
            out["cache_note"] = self.cache_note
        if self.choice:
            out["choice"] = self.choice
        return out

    def close(self) -> None:
        with self._sync_lock, self._lock:
            self._sync.clear()
            self._free.clear()
            self._compiled.clear()
        self._model = None


def _reason(e: BaseException) -> str:
    text = str(e).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    # OpenVINO prefixes errors with source locations; the last lines carry the reason
    reason = " ".join(lines[-3:]) if lines else type(e).__name__
    return f"{type(e).__name__}: {reason[:400]}"
