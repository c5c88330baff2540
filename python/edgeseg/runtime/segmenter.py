"""``Segmenter``: a model file in, ``SegResult`` out — three lines to a mask.

seg = edgeseg.Segmenter("model.onnx")          # or "model.engine"
result = seg("part.png")                       # a path, a PIL image or a BGR array
result.save_png("mask.png"); print(result.counts)

One room past 450 lines: the single, batched, pipelined (``submit``), fused (TensorRT) and
tiled paths of :class:`Segmenter` share its preprocess, inference and finish steps and its
lock; apart, each would reach back into the others' state.
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
from edgeseg.runtime.backend import Backend
from edgeseg.runtime.backends import create_backend
from edgeseg.runtime.model_info import ModelInfo, load_model_info
from edgeseg.runtime.result import SegResult
from edgeseg.runtime.tiling import TileCanvas, tile_boxes

__all__ = ["PendingResult", "Segmenter"]


def _ms(t0: float, t1: float) -> float:
    return (t1 - t0) * 1000.0


#: What ``predict`` takes: an H×W×3 / H×W uint8 array, an image file path or a PIL image.
ImageLike = Union[np.ndarray, str, Path, "PIL.Image.Image"]  # noqa: F821


def _as_frame(image, rgb: bool, what: str = "frame") -> np.ndarray:
    """An array in the channel order ``rgb`` names: arrays pass through untouched (checked
    later by the kernels); a path or a PIL image is decoded (PIL, RGB) and reordered to BGR
    unless ``rgb``."""
    if isinstance(image, np.ndarray):
        return image
    if isinstance(image, (str, Path)):
        from PIL import Image, UnidentifiedImageError

        path = Path(image)
        if not path.is_file():
            raise InvalidArgumentError(f"{what}: {path}: no such image file")
        try:
            with Image.open(path) as im:
                arr = np.asarray(im.convert("RGB"))
        except (OSError, UnidentifiedImageError) as e:
            raise InvalidArgumentError(
                f"{what}: {path}: not a readable image (corrupt or unsupported: {e})"
            ) from None
    elif hasattr(image, "convert") and hasattr(image, "mode") and hasattr(image, "size"):
        arr = np.asarray(image.convert("RGB"))  # a PIL image (duck-typed: PIL stays optional)
    else:
        raise InvalidArgumentError(
            f"{what}: expected an H×W×3 uint8 array, an image path or a PIL image, got "
            f"{type(image).__name__}"
        )
    return arr if rgb else np.ascontiguousarray(arr[:, :, ::-1])


class Segmenter:
    """Runs one segmentation model on frames: a model file in, a :class:`SegResult` out.

    Classes, colours, mean/std, input size, resize mode and channel order come from the model
    file (ONNX metadata or the engine's manifest). ``seg(image)`` is ``seg.predict(image)``.

    Args:
        model: An ``.onnx`` from ``edgeseg export`` / ``edgeseg quantize``, or an ``.engine``
            from ``edgeseg build`` (its ``.engine.json`` manifest next to it).
        backend: ``"auto"`` (TensorRT for engines; for ONNX, OpenVINO on an x86 CPU where it
            is installed, else ONNX Runtime — ``describe()["choice"]`` says why),
            ``"onnxruntime"``, ``"openvino"`` or ``"tensorrt"``.
        device: GPU index for GPU backends (None: CPU only).
        threads: CPU inference threads (default: the runtime's own choice).
        providers: ONNX Runtime's execution providers, passed through as given.
        session_options: An ``onnxruntime.SessionOptions``, passed through as given.
        hint: OpenVINO's performance hint, ``"latency"`` or ``"throughput"``.
        cache_dir: OpenVINO's compiled-model cache (``False`` for none).
        openvino_config: More OpenVINO properties, passed through.
        confidence: Compute the per-pixel softmax confidence.
        overlay_alpha: When set, the fused postprocess also blends the class colours over the
            frame at this opacity (``result.overlay(alpha)`` then returns it without extra
            work).
        tile: ``(h, w)`` for tiled inference on frames much larger than the network input.
            A frame smaller than the tile is padded to one tile (its edge pixels repeated)
            and processed at the tiles' scale; the result has the frame's size.
        overlap: Overlap between tiles in pixels (less than half a tile).
        tile_batch: Tiles per inference call.

    Raises:
        ModelError: The model file is missing, truncated, lacks edgeseg's metadata, or its
            class count does not match the graph.
        EngineMismatchError: An engine built for another TensorRT version or GPU.
        InvalidArgumentError: A bad ``backend``, ``overlay_alpha``, ``tile`` or ``overlap``.
        DeviceUnavailableError: The backend asked for is not available on this machine.
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
        h, w = self.input_size
        return (
            f"Segmenter({Path(self.info.path).name!r}, {self.backend.name}, "
            f"{len(self.info.classes)} classes, {h}×{w})"
        )

    @property
    def pipeline_depth(self) -> int:
        """Frames worth keeping in flight with :meth:`submit` (1: it runs to the end)."""
        if self.tile is not None or self.backend.fused:
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

    def _finish(
        self, logits, frames, rgb, letterbox, keep_frame, t, nonfinite_input
    ) -> list[SegResult]:
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
                nonfinite=int(pp.nonfinite[i]),
                nonfinite_input=int(nonfinite_input[i]),
            )
            if want_overlay:
                res._overlay_cache = (self.overlay_alpha, pp.overlay[i])
            out.append(res)
        return out

    def predict(self, frame: ImageLike, rgb: bool = False, keep_frame: bool = True) -> SegResult:
        """Segments one image.

        Args:
            frame: An H×W×3 uint8 array (BGR, OpenCV's order, unless ``rgb``) or H×W gray
                array, an image file path, or a PIL image (both decoded as RGB and reordered
                to match ``rgb``, so every kind gives the same result for the same pixels).
            rgb: The array's channel order is RGB (default BGR).
            keep_frame: Keep the frame in the result (for ``result.overlay``).

        Returns:
            The :class:`SegResult` at the frame's resolution.

        Raises:
            InvalidArgumentError: A frame of the wrong dtype, shape or channel count, an empty
                one, a batch (use :meth:`predict_batch`), or a path that is not a readable
                image. The segmenter keeps working after it.
        """
        if isinstance(frame, (list, tuple)):
            raise InvalidArgumentError(
                "frame: expected one H×W×3 uint8 array; use predict_batch() for a list"
            )
        if isinstance(frame, np.ndarray) and frame.ndim == 4:
            raise InvalidArgumentError(
                f"frame: expected one H×W×3 frame, got a batch of shape {frame.shape}; use "
                "predict_batch()"
            )
        frame = _as_frame(frame, rgb)
        if self.tile is not None:
            return self._predict_tiled(frame, rgb, keep_frame)
        return self.predict_batch([frame], rgb=rgb, keep_frame=keep_frame)[0]

    __call__ = predict

    def predict_batch(
        self, frames: Sequence[ImageLike], rgb: bool = False, keep_frame: bool = True
    ) -> list[SegResult]:
        """Segments several images in one inference call (sizes may differ).

        Args:
            frames: Arrays, image paths or PIL images, as :meth:`predict` takes them.
            rgb: The arrays' channel order is RGB (default BGR).
            keep_frame: Keep each frame in its result.

        Returns:
            One :class:`SegResult` per frame, in order.

        Raises:
            InvalidArgumentError: No frames, or a frame :meth:`predict` would refuse.
        """
        frames = [_as_frame(f, rgb, f"frames[{i}]") for i, f in enumerate(frames)]
        if not frames:
            raise InvalidArgumentError("frames: expected at least one frame, got none")
        if self.tile is not None:
            return [self._predict_tiled(f, rgb, keep_frame) for f in frames]
        if self.backend.fused:
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
            nf_in = blob.nonfinite
            if len({f.shape[:2] for f in frames}) == 1:
                return self._finish(logits, frames, rgb, lb, keep_frame, t, nf_in)
            out = []
            for i, f in enumerate(frames):
                t_i = {k: v / len(frames) for k, v in t.items()}
                lb_i = None if lb is None else [lb[i]]
                out += self._finish(
                    logits[i : i + 1], [f], rgb, lb_i, keep_frame, t_i, nf_in[i : i + 1]
                )
            return out

    def logits(self, frame: ImageLike, rgb: bool = False) -> np.ndarray:
        """The model's raw C×h×w float32 scores for one image, at the network's resolution
        (for a letterboxing model, only the part that covers the frame): what scores such
        as the top-1/top-2 margin need, which the class map and confidence no longer hold.

        Raises:
            InvalidArgumentError: A frame :meth:`predict` would refuse, or a backend that
                fuses the postprocess (TensorRT engines) or a tiled segmenter, which hand
                out no logits.
        """
        if self.tile is not None or getattr(self.backend, "fused", False):
            raise InvalidArgumentError(
                "logits(): this segmenter (tiled, or a fused TensorRT engine) hands out no "
                "logits; create one without tile= on the .onnx model"
            )
        f = _as_frame(frame, rgb)
        with self._lock:
            blob = self._preprocess([f], rgb)
            out = np.array(self._infer(blob)[0], np.float32)  # a copy: buffers are reused
        lb = blob.letterbox
        if lb is not None:
            lb = lb[0] if isinstance(lb, list) else lb
            sy, sx = out.shape[1] / lb.input_height, out.shape[2] / lb.input_width
            y0, x0 = int(lb.pad_y * sy), int(lb.pad_x * sx)
            y1 = max(y0 + 1, int(round((lb.pad_y + lb.resized_height) * sy)))
            x1 = max(x0 + 1, int(round((lb.pad_x + lb.resized_width) * sx)))
            out = out[:, y0:y1, x0:x1]
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
            self, pending, frame, rgb, None if lb is None else [lb], keep_frame, t0, t1,
            nonfinite_input=blob.nonfinite,
        )  # fmt: skip

    def _predict_fused(self, frame: np.ndarray, rgb: bool, keep_frame: bool) -> SegResult:
        """The TensorRT path: the whole pipeline runs on the GPU in one C++ call."""
        frame = kernels._check_image(frame, "frame")
        with self._lock:
            t0 = time.perf_counter()
            want_overlay = self.overlay_alpha is not None
            cm, conf, ov, counts, nonfinite, nonfinite_input, gpu_ms = self.backend.run_frame(
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
                nonfinite=int(nonfinite),
                nonfinite_input=int(nonfinite_input),
            )
            if want_overlay:
                res._overlay_cache = (self.overlay_alpha, ov)
            return res

    def _predict_tiled(self, frame: np.ndarray, rgb: bool, keep_frame: bool) -> SegResult:
        if not isinstance(frame, np.ndarray) or frame.ndim < 2 or frame.size == 0:
            kernels.preprocess(frame, self.info.input_size)  # raises the standard error
        h, w = frame.shape[:2]
        src = frame
        ph, pw = max(0, self.tile[0] - h), max(0, self.tile[1] - w)
        if ph or pw:
            # A frame smaller than the tile is padded (edge pixels repeated) to one whole
            # tile, so the network sees it at the scale of every other tile; the padding's
            # logits are cut off before the postprocess.
            pad = ((0, ph), (0, pw)) + ((0, 0),) * (frame.ndim - 2)
            frame = np.pad(frame, pad, mode="edge")
        boxes = tile_boxes(frame.shape[:2], self.tile, self.overlap)
        tile = boxes[0][2] - boxes[0][0], boxes[0][3] - boxes[0][1]
        canvas = None
        t = {"preprocess": 0.0, "inference": 0.0}
        nonfinite_input = 0
        with self._lock:
            t0 = time.perf_counter()
            for start in range(0, len(boxes), self.tile_batch):
                chunk = boxes[start : start + self.tile_batch]
                ta = time.perf_counter()
                crops = [frame[y0:y1, x0:x1] for (y0, x0, y1, x1) in chunk]
                blob = self._preprocess(crops, rgb, False)
                nonfinite_input += int(blob.nonfinite.sum())
                tb = time.perf_counter()
                logits = self._infer(blob)
                tc = time.perf_counter()
                if canvas is None:
                    scale = (logits.shape[2] / tile[0], logits.shape[3] / tile[1])
                    canvas = TileCanvas(frame.shape[:2], tile, self.overlap, logits.shape[1], scale)
                for box, lg in zip(chunk, logits):
                    canvas.add(box, lg)
                t["preprocess"] += _ms(ta, tb)
                t["inference"] += _ms(tb, tc)
            logits = canvas.result()
            if ph or pw:
                logits = logits[:, : max(1, round(h * canvas.sy)), : max(1, round(w * canvas.sx))]
            res = self._finish(logits[None], [src], rgb, None, keep_frame, t, [nonfinite_input])[0]
            res.timings["tiles"] = float(len(boxes))
            res.timings["total"] = _ms(t0, time.perf_counter())
            return res


class PendingResult:
    """A frame in flight from :meth:`Segmenter.submit`; :meth:`result` waits for its
    :class:`SegResult` (later calls return the same one)."""

    def __init__(
        self, seg=None, pending=None, frame=None, rgb=False, lb=None, keep=True, t0=0.0, t1=0.0,
        *, done: Optional[SegResult] = None, nonfinite_input=0,
    ) -> None:  # fmt: skip
        self._seg, self._pending, self._frame = seg, pending, frame
        self._args = (rgb, lb, keep, t0, t1, np.atleast_1d(nonfinite_input))
        self._done = done

    def result(self) -> SegResult:
        if self._done is not None or self._pending is None:
            return self._done
        rgb, lb, keep, t0, t1, nf_in = self._args
        pending, self._pending = self._pending, None
        try:
            logits = pending.wait()
            t2 = time.perf_counter()
            t = {"preprocess": _ms(t0, t1), "inference": _ms(t1, t2)}
            self._done = self._seg._finish(logits, [self._frame], rgb, lb, keep, t, nf_in)[0]
        finally:
            pending.release()
        self._frame = None
        return self._done
