"""``Segmenter``: a model file in, ``SegResult`` out — three lines to a mask.

seg = edgeseg.Segmenter("model.onnx")          # or "model.engine"
result = seg.predict(cv2.imread("part.png"))   # BGR, as OpenCV reads it
result.save_png("mask.png"); print(result.counts)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

import numpy as np

from edgeseg import kernels
from edgeseg.errors import InvalidArgumentError
from edgeseg.runtime.backends import Backend, create_backend
from edgeseg.runtime.model_info import ModelInfo, load_model_info
from edgeseg.runtime.result import SegResult
from edgeseg.runtime.tiling import TileCanvas, tile_boxes

__all__ = ["PendingResult", "Segmenter"]


def _ms(t0: float, t1: float) -> float:
    return (t1 - t0) * 1000.0


class Segmenter:
    """Runs one segmentation model on frames.

    ``model``: an ``.onnx`` from ``edgeseg export``/``quantize`` or an ``.engine`` from
    ``edgeseg build``; classes, colours and preprocessing come from the file.
    ``backend``: ``"auto"`` (TensorRT for engines; for ONNX OpenVINO on an x86 CPU where it
    is installed, else ONNX Runtime — ``describe()["choice"]`` says why), ``"onnxruntime"``,
    ``"openvino"`` or ``"tensorrt"``. ``device``: GPU index for GPU backends (None: CPU only).
    ``threads``: CPU inference threads (default: the runtime's own choice).
    ``providers``, ``session_options``: ONNX Runtime's execution providers and
    ``SessionOptions``, passed through as given. ``hint`` (``"latency"`` or
    ``"throughput"``), ``cache_dir`` (compiled-model cache, ``False`` for none) and
    ``openvino_config`` (more OpenVINO properties): for OpenVINO.
    ``confidence``: compute the per-pixel softmax confidence. ``overlay_alpha``: when set,
    the fused postprocess also blends the class colours over the frame at this opacity
    (``result.overlay(alpha)`` then returns it without extra work).
    ``tile=(h, w)``, ``overlap``: tiled inference for frames much larger than the input
    (see :mod:`edgeseg.runtime.tiling`); ``tile_batch`` tiles per inference call.
    """

    def __init__(
        self,
        model: Union[str, Path],
        backend: str = "auto",
        device: Optional[int] = 0,
        threads: Optional[int] = None,
        confidence: bool = True,
        *,
        overlay_alpha: Optional[float] = None,
        tile: Optional[Sequence[int]] = None,
        overlap: int = 64,
        tile_batch: int = 4,
        providers: Optional[list] = None,
        session_options=None,
        hint: str = "latency",
        cache_dir=None,
        openvino_config: Optional[dict] = None,
    ) -> None:
        self.info: ModelInfo = load_model_info(model)
        self.confidence = bool(confidence)
        if overlay_alpha is not None and not 0.0 <= float(overlay_alpha) <= 1.0:
            raise InvalidArgumentError(f"overlay_alpha: expected 0..1, got {overlay_alpha!r}")
        self.overlay_alpha = None if overlay_alpha is None else float(overlay_alpha)
        self.tile = None
        if tile is not None:
            try:
                th, tw = (int(v) for v in tile)
            except (TypeError, ValueError):
                raise InvalidArgumentError(f"tile: expected (h, w), got {tile!r}") from None
            if th < 16 or tw < 16:
                raise InvalidArgumentError(f"tile: expected at least 16×16 pixels, got {tile!r}")
            if not 0 <= int(overlap) < min(th, tw) // 2:
                raise InvalidArgumentError(
                    f"overlap: expected 0 <= overlap < half the tile ({min(th, tw) // 2}), "
                    f"got {overlap!r}"
                )
            self.tile = (th, tw)
        self.overlap = int(overlap)
        if not isinstance(tile_batch, int) or tile_batch < 1:
            raise InvalidArgumentError(f"tile_batch: expected an int >= 1, got {tile_batch!r}")
        self.tile_batch = tile_batch
        self.backend: Backend = create_backend(
            self.info,
            backend,
            device,
            threads,
            providers=providers,
            session_options=session_options,
            hint=hint,
            cache_dir=cache_dir,
            openvino_config=openvino_config,
        )
        self._lock = threading.Lock()
        self._palettes = {
            rgb: np.ascontiguousarray(
                np.array([c.color for c in self.info.classes], np.uint8)[:, :: 1 if rgb else -1]
            )
            for rgb in (False, True)
        }

    # ---------------------------------------------------------------- properties
    @property
    def classes(self):
        """The model's classes (:class:`~edgeseg.runtime.result.ClassInfo`, index order)."""
        return list(self.info.classes)

    @property
    def class_names(self) -> list[str]:
        return self.info.class_names

    @property
    def input_size(self) -> tuple[int, int]:
        """``(H, W)`` of the network input."""
        return self.info.input_size

    def __repr__(self) -> str:
        return (
            f"Segmenter({str(self.info.path)!r}, backend={self.backend.name!r}, "
            f"classes={self.class_names}, input_size={self.input_size})"
        )

    @property
    def pipeline_depth(self) -> int:
        """Frames worth keeping in flight with :meth:`submit` (1: it runs to the end)."""
        if self.tile is not None or getattr(self.backend, "fused", False):
            return 1
        return max(1, int(getattr(self.backend, "requests", 1)))

    def describe(self) -> dict:
        """The backend, its settings and (for ``backend="auto"``) why it was chosen."""
        out = dict(self.backend.describe())
        if self.backend.choice and "choice" not in out:
            out["choice"] = self.backend.choice
        return out

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Segmenter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------- inference
    def _preprocess(self, frames: list[np.ndarray], rgb: bool, whole: bool = True) -> kernels.Blob:
        # Tiles (whole=False) are stretched to the input: pick a tile with the input's aspect.
        return kernels.preprocess(
            frames,
            self.info.input_size,
            self.info.mean,
            self.info.std,
            input_order="rgb" if rgb else "bgr",
            output_order=self.info.channel_order,
            letterbox=whole and self.info.resize == "letterbox",
        )

    def _infer(self, blob: np.ndarray) -> np.ndarray:
        """Logits for a blob, split into chunks the backend accepts (copied out of its
        reused buffer when there is more than one chunk)."""
        mb = self.backend.max_batch
        if mb is None or blob.shape[0] <= mb:
            return self.backend.infer(blob)
        parts = []
        for i in range(0, blob.shape[0], mb):
            chunk = blob[i : i + mb]
            if chunk.shape[0] < mb:  # fixed-batch engine: pad the last chunk
                pad = np.zeros((mb - chunk.shape[0], *chunk.shape[1:]), chunk.dtype)
                out = self.backend.infer(np.concatenate([chunk, pad]))[: chunk.shape[0]]
            else:
                out = self.backend.infer(np.ascontiguousarray(chunk))
            parts.append(out.copy())
        return np.concatenate(parts)

    def _finish(self, logits, frames, rgb, letterbox, keep_frame, t) -> list[SegResult]:
        t_post = time.perf_counter()
        want_overlay = self.overlay_alpha is not None
        pp = kernels.postprocess(
            logits,
            frame=frames,
            palette=self._palettes[rgb] if want_overlay else None,
            alpha=self.overlay_alpha or 0.0,
            confidence=self.confidence,
            counts=True,
            letterbox=letterbox,
            ignore=(0,),
        )
        t_end = time.perf_counter()
        out = []
        n = len(frames)
        for i in range(n):
            timings = {
                "preprocess": t["preprocess"] / n,
                "inference": t["inference"] / n,
                "postprocess": _ms(t_post, t_end) / n,
            }
            timings["total"] = sum(timings.values())
            res = SegResult(
                class_map=pp.class_map[i],
                confidence=None if pp.confidence is None else pp.confidence[i],
                classes=list(self.info.classes),
                counts_array=pp.counts[i],
                frame=frames[i] if keep_frame else None,
                rgb=rgb,
                timings=timings,
            )
            if want_overlay:
                res._overlay_cache = (self.overlay_alpha, pp.overlay[i])
            out.append(res)
        return out

    def predict(self, frame: np.ndarray, rgb: bool = False, keep_frame: bool = True) -> SegResult:
        """Segments one H×W×3 uint8 frame (BGR, OpenCV's order; ``rgb=True`` for RGB)."""
        if isinstance(frame, (list, tuple)):
            raise InvalidArgumentError(
                "frame: expected one H×W×3 uint8 array; use predict_batch() for a list"
            )
        if isinstance(frame, np.ndarray) and frame.ndim == 4:
            raise InvalidArgumentError(
                f"frame: expected one H×W×3 frame, got a batch of shape {frame.shape}; use "
                "predict_batch()"
            )
        if self.tile is not None:
            return self._predict_tiled(frame, rgb, keep_frame)
        return self.predict_batch([frame], rgb=rgb, keep_frame=keep_frame)[0]

    def predict_batch(
        self, frames: Sequence[np.ndarray], rgb: bool = False, keep_frame: bool = True
    ) -> list[SegResult]:
        """Segments several frames in one inference call (sizes may differ)."""
        frames = list(frames)
        if not frames:
            raise InvalidArgumentError("frames: expected at least one frame, got none")
        if self.tile is not None:
            return [self._predict_tiled(f, rgb, keep_frame) for f in frames]
        if getattr(self.backend, "fused", False):
            return [self._predict_fused(f, rgb, keep_frame) for f in frames]
        with self._lock:
            t0 = time.perf_counter()
            blob = self._preprocess(frames, rgb)
            t1 = time.perf_counter()
            logits = self._infer(blob)
            t2 = time.perf_counter()
            t = {"preprocess": _ms(t0, t1), "inference": _ms(t1, t2)}
            lb = blob.letterbox
            if lb is not None and not isinstance(lb, list):
                lb = [lb]
            # Sizes may differ within a batch: one postprocess per frame size.
            if len({f.shape[:2] for f in frames}) == 1:
                return self._finish(logits, frames, rgb, lb, keep_frame, t)
            out = []
            for i, f in enumerate(frames):
                t_i = {k: v / len(frames) for k, v in t.items()}
                out += self._finish(
                    logits[i : i + 1], [f], rgb, None if lb is None else [lb[i]], keep_frame, t_i
                )
            return out

    def submit(
        self, frame: np.ndarray, rgb: bool = False, keep_frame: bool = True
    ) -> PendingResult:
        """Preprocesses ``frame`` and starts its inference; ``.result()`` of the returned
        handle waits and postprocesses. With :attr:`pipeline_depth` > 1 the next frame can be
        submitted before the result is taken (the camera loop keeps the engine busy so);
        take results in submission order. Elsewhere the whole frame runs here."""
        if self.pipeline_depth < 2:
            return PendingResult(done=self.predict(frame, rgb=rgb, keep_frame=keep_frame))
        if isinstance(frame, (list, tuple)) or (isinstance(frame, np.ndarray) and frame.ndim == 4):
            raise InvalidArgumentError("frame: expected one H×W×3 uint8 array")
        t0 = time.perf_counter()
        blob = self._preprocess([frame], rgb)
        t1 = time.perf_counter()
        pending = self.backend.submit(blob)
        lb = blob.letterbox
        return PendingResult(
            self, pending, frame, rgb, None if lb is None else [lb], keep_frame, t0, t1
        )

    def _predict_fused(self, frame: np.ndarray, rgb: bool, keep_frame: bool) -> SegResult:
        """The TensorRT path: the whole pipeline runs on the GPU in one C++ call."""
        frame = kernels._check_image(frame, "frame")
        with self._lock:
            t0 = time.perf_counter()
            want_overlay = self.overlay_alpha is not None
            cm, conf, ov, counts, gpu_ms = self.backend.run_frame(
                frame,
                rgb,
                self._palettes[rgb] if want_overlay else None,
                self.overlay_alpha or 0.0,
                self.confidence,
            )
            timings = {k: float(v) for k, v in gpu_ms.items() if k != "cuda_graph"}
            timings["total"] = _ms(t0, time.perf_counter())
            res = SegResult(
                class_map=cm,
                confidence=conf,
                classes=list(self.info.classes),
                counts_array=counts,
                frame=frame if keep_frame else None,
                rgb=rgb,
                timings=timings,
            )
            if want_overlay:
                res._overlay_cache = (self.overlay_alpha, ov)
            return res

    def _predict_tiled(self, frame: np.ndarray, rgb: bool, keep_frame: bool) -> SegResult:
        if not isinstance(frame, np.ndarray) or frame.ndim < 2 or frame.size == 0:
            kernels.preprocess(frame, self.info.input_size)  # raises the standard error
        h, w = frame.shape[:2]
        boxes = tile_boxes((h, w), self.tile, self.overlap)
        tile = boxes[0][2] - boxes[0][0], boxes[0][3] - boxes[0][1]
        canvas = None
        t = {"preprocess": 0.0, "inference": 0.0}
        with self._lock:
            t0 = time.perf_counter()
            for start in range(0, len(boxes), self.tile_batch):
                chunk = boxes[start : start + self.tile_batch]
                ta = time.perf_counter()
                crops = [frame[y0:y1, x0:x1] for (y0, x0, y1, x1) in chunk]
                blob = self._preprocess(crops, rgb, False)
                tb = time.perf_counter()
                logits = self._infer(blob)
                tc = time.perf_counter()
                if canvas is None:
                    scale = (logits.shape[2] / tile[0], logits.shape[3] / tile[1])
                    canvas = TileCanvas((h, w), tile, self.overlap, logits.shape[1], scale)
                for box, lg in zip(chunk, logits):
                    canvas.add(box, lg)
                t["preprocess"] += _ms(ta, tb)
                t["inference"] += _ms(tb, tc)
            res = self._finish(canvas.result()[None], [frame], rgb, None, keep_frame, t)[0]
            res.timings["tiles"] = float(len(boxes))
            res.timings["total"] = _ms(t0, time.perf_counter())
            return res


class PendingResult:
    """A frame in flight from :meth:`Segmenter.submit`; :meth:`result` waits for its
    :class:`SegResult` (later calls return the same one)."""

    def __init__(
        self, seg=None, pending=None, frame=None, rgb=False, lb=None, keep=True, t0=0.0, t1=0.0,
        *, done: Optional[SegResult] = None,
    ) -> None:  # fmt: skip
        self._seg, self._pending, self._frame = seg, pending, frame
        self._args = (rgb, lb, keep, t0, t1)
        self._done = done

    def result(self) -> SegResult:
        if self._done is not None or self._pending is None:
            return self._done
        rgb, lb, keep, t0, t1 = self._args
        pending, self._pending = self._pending, None
        try:
            logits = pending.wait()
            t2 = time.perf_counter()
            t = {"preprocess": _ms(t0, t1), "inference": _ms(t1, t2)}
            self._done = self._seg._finish(logits, [self._frame], rgb, lb, keep, t)[0]
        finally:
            pending.release()
        self._frame = None
        return self._done
