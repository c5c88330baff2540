"""File and screen sinks: ``jsonl:FILE|-``, ``video:FILE``, ``images:DIR``, ``window``.

Options go after ``?`` in the spec (``images:ng/?what=overlay,mask&only=ng``) or as keyword
arguments of :func:`~edgeseg.sinks.base.open_sink`:

- ``jsonl:out.jsonl`` / ``jsonl:-`` (stdout): one :func:`~edgeseg.sinks.base.make_record` per
  line, flushed per line; ``append=1`` keeps an existing file.
- ``video:out.mp4``: ``what=overlay|frame|mask|confidence`` (default overlay), ``fps=25``,
  ``fourcc=mp4v``; frames of another size than the first are resized to it.
- ``images:DIR``: ``what=overlay,mask,confidence,frame`` (any list; default overlay),
  ``every=N`` (every Nth frame), ``only=ng`` (only frames the rules judged NG and frames whose
  model output was not finite), ``ext=png|jpg``.
  Files are ``DIR/<frame index>_<what>.<ext>``; masks are palette PNGs of class indices.
- ``window``: an OpenCV window (needs a display and an OpenCV with a GUI).

A write that fails (unwritable folder, disk full) raises SinkError; the loop counts it and
goes on.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional
from urllib.parse import parse_qs

import numpy as np

from edgeseg.errors import SinkError
from edgeseg.sinks.base import LoopItem, Sink, register_sink
from edgeseg.sinks.encode import encode_record

__all__ = ["ImagesSink", "JsonlSink", "VideoSink", "WindowSink", "render"]

_WHAT = ("overlay", "frame", "mask", "confidence")


def _split(arg: str, options: dict, kind: str, valid: set) -> tuple[str, dict]:
    target, _, query = arg.partition("?")
    opts = {k: v[-1] for k, v in parse_qs(query).items()}
    opts.update({k: v for k, v in options.items() if v is not None})
    unknown = set(opts) - valid
    if unknown:
        raise SinkError(
            f"sink {kind}:{arg}: unknown option(s) {sorted(unknown)}; valid: {sorted(valid)}"
        )
    return target, opts


def _cv2():
    try:
        import cv2
    except ImportError:
        raise SinkError(
            "image and video sinks write through OpenCV, which is not installed; "
            "pip install opencv-python-headless (or edgeseg[camera])"
        ) from None
    return cv2


def render(item: LoopItem, what: str = "overlay", alpha: float = 0.5) -> np.ndarray:
    """One picture of a processed frame as BGR uint8 (``mask``: class colours;
    ``confidence``: gray, white = sure)."""
    res, img = item.result, item.frame.image
    if what == "frame":
        return img
    if what == "confidence":
        if res.confidence is None:
            raise SinkError("confidence picture asked for, but the result has no confidence")
        return (np.clip(res.confidence, 0, 1) * 255 + 0.5).astype(np.uint8)
    colors = res.palette(rgb=False)[res.class_map]
    if what == "mask":
        return colors
    if res.frame is not None:
        out = res.overlay(alpha)
        return out[:, :, ::-1] if res.rgb else out
    a = np.where(res.class_map == 0, 0.0, alpha).astype(np.float32)[:, :, None]
    return (img * (1 - a) + colors * a + 0.5).astype(np.uint8)


class JsonlSink(Sink):
    """JSON lines, one record per processed frame (``-`` = stdout)."""

    def __init__(self, arg: str = "-", **options) -> None:
        self.path, opts = _split(arg or "-", options, "jsonl", {"append"})
        self.append = str(opts.get("append", "0")).lower() in ("1", "true", "yes")
        self._f = None
        self._written = 0

    def open(self) -> None:
        if self.path == "-":
            self._f = sys.stdout
            return
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            # unbuffered: every line is one write(2), so a failed line leaves nothing pending
            self._f = open(self.path, "ab" if self.append else "wb", buffering=0)
        except OSError as e:
            raise SinkError(f"sink {self.spec}: cannot open {self.path}: {e.strerror}") from None

    def write(self, item: LoopItem) -> None:
        line = encode_record(item.record)
        try:
            if self._f is sys.stdout:
                self._f.write(line + "\n")
                self._f.flush()
            else:
                data = (line + "\n").encode("utf-8")
                if self._f.write(data) != len(data):
                    raise OSError(f"short write ({len(data)} bytes asked)")
        except OSError as e:
            raise SinkError(f"cannot write {self.path}: {e.strerror or e}") from None
        self._written += 1

    def close(self, drain_timeout: Optional[float] = None) -> None:
        f, self._f = self._f, None
        if f is None:
            return
        if f is sys.stdout:
            f.flush()
        else:
            f.close()

    def stats(self) -> dict:
        return {"lines": self._written}


class VideoSink(Sink):
    """A video file of overlays (or frames/masks/confidence), sized by the first frame."""

    def __init__(self, arg: str, **options) -> None:
        self.path, opts = _split(arg, options, "video", {"what", "fps", "fourcc", "alpha"})
        if not self.path:
            raise SinkError("sink video: needs a file name, e.g. video:out.mp4")
        self.what = opts.get("what", "overlay")
        if self.what not in _WHAT:
            raise SinkError(f"sink video:{arg}: what={self.what!r}; choose one of {_WHAT}")
        self.fps = float(opts.get("fps", 25))
        default_cc = "MJPG" if self.path.lower().endswith(".avi") else "mp4v"
        self.fourcc = str(opts.get("fourcc", default_cc))
        self.alpha = float(opts.get("alpha", 0.5))
        self._writer = None
        self._size: Optional[tuple[int, int]] = None
        self._counts = {"frames": 0, "resized": 0}

    def open(self) -> None:
        _cv2()
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SinkError(f"sink {self.spec}: cannot create the folder: {e.strerror}") from None

    def write(self, item: LoopItem) -> None:
        cv2 = _cv2()
        img = render(item, self.what, self.alpha)
        if img.ndim == 2:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        if self._writer is None:
            self._size = (img.shape[1], img.shape[0])
            fourcc = cv2.VideoWriter_fourcc(*self.fourcc[:4].ljust(4))
            self._writer = cv2.VideoWriter(self.path, fourcc, self.fps, self._size)
            if not self._writer.isOpened():
                self._writer = None
                raise SinkError(
                    f"cannot open a {self.fourcc} video writer for {self.path} (unwritable "
                    "folder, or a container/codec OpenCV's FFmpeg lacks: try .avi, fourcc=MJPG)"
                )
        if (img.shape[1], img.shape[0]) != self._size:
            img = cv2.resize(img, self._size, interpolation=cv2.INTER_AREA)
            self._counts["resized"] += 1
        self._writer.write(np.ascontiguousarray(img))
        self._counts["frames"] += 1

    def close(self, drain_timeout: Optional[float] = None) -> None:
        w, self._writer = self._writer, None
        if w is not None:
            w.release()

    def stats(self) -> dict:
        return dict(self._counts)


class ImagesSink(Sink):
    """Pictures of every Nth frame, or only of NG frames, into a folder."""

    def __init__(self, arg: str, **options) -> None:
        self.dir, opts = _split(arg, options, "images", {"what", "every", "only", "ext", "alpha"})
        if not self.dir:
            raise SinkError("sink images: needs a folder, e.g. images:shots/")
        what = opts.get("what", "overlay")
        self.what = what.split(",") if isinstance(what, str) else list(what)
        bad = [w for w in self.what if w not in _WHAT]
        if bad:
            raise SinkError(f"sink images:{arg}: what={bad}; choose from {_WHAT}")
        self.every = max(1, int(opts.get("every", 1)))
        self.only = opts.get("only")
        if self.only not in (None, "ng", "NG"):
            raise SinkError(f"sink images:{arg}: only={self.only!r}; the one choice is only=ng")
        self.ext = str(opts.get("ext", "png")).lower().lstrip(".")
        self.alpha = float(opts.get("alpha", 0.5))
        self._seen = 0
        self._counts = {"files": 0, "skipped": 0}

    def open(self) -> None:
        _cv2()
        try:
            os.makedirs(self.dir, exist_ok=True)
        except OSError as e:
            raise SinkError(f"sink {self.spec}: cannot create {self.dir}: {e.strerror}") from None

    def write(self, item: LoopItem) -> None:
        self._seen += 1
        if self.only:
            invalid = (item.record or {}).get("valid") is False
            if not invalid and (item.verdict is None or item.verdict.ok):
                self._counts["skipped"] += 1
                return
        elif (self._seen - 1) % self.every:
            self._counts["skipped"] += 1
            return
        cv2 = _cv2()
        stem = os.path.join(self.dir, f"{item.frame.index:08d}")
        for what in self.what:
            path = f"{stem}_{what}.{'png' if what == 'mask' else self.ext}"
            if what == "mask":
                try:
                    item.result.save_png(path)
                except Exception as e:
                    raise SinkError(f"cannot write {path}: {e}") from None
            else:
                try:
                    ok = cv2.imwrite(path, render(item, what, self.alpha))
                except cv2.error as e:
                    raise SinkError(f"cannot write {path}: {e}") from None
                if not ok:
                    raise SinkError(f"cannot write {path} (folder gone, unwritable or disk full)")
            self._counts["files"] += 1

    def stats(self) -> dict:
        return dict(self._counts)


def display_available() -> tuple[bool, str]:
    """Whether a ``window`` sink can open, and why not."""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False, "no display (DISPLAY and WAYLAND_DISPLAY are unset)"
    import re

    info = _cv2().getBuildInformation()
    m = re.search(r"GUI:\s*(\S+)", info)
    if m and m.group(1).upper() == "NONE":
        return False, (
            "this OpenCV has no GUI (opencv-python-headless); pip install opencv-python "
            "in its place"
        )
    return True, ""


class WindowSink(Sink):
    """An on-screen OpenCV window with the overlay (``window`` or ``window:TITLE``)."""

    def __init__(self, arg: str = "", **options) -> None:
        title, opts = _split(arg, options, "window", {"what", "alpha"})
        self.title = title or "edgeseg"
        self.what = opts.get("what", "overlay")
        self.alpha = float(opts.get("alpha", 0.5))
        self._open = False

    def open(self) -> None:
        ok, why = display_available()
        if not ok:
            raise SinkError(
                f"sink window: cannot open a window: {why}. For a headless machine use "
                "--serve 127.0.0.1:8080 (browser live view) or --sink images:DIR / video:FILE"
            )
        _cv2().namedWindow(self.title, _cv2().WINDOW_NORMAL)
        self._open = True

    def write(self, item: LoopItem) -> None:
        cv2 = _cv2()
        cv2.imshow(self.title, render(item, self.what, self.alpha))
        cv2.waitKey(1)

    def close(self, drain_timeout: Optional[float] = None) -> None:
        if self._open:
            self._open = False
            try:
                _cv2().destroyWindow(self.title)
            except Exception:  # the user closed it already
                pass


register_sink("jsonl", JsonlSink)
register_sink("video", VideoSink)
register_sink("images", ImagesSink)
register_sink("window", WindowSink)
