"""``synthetic://``: a moving inspection scene with exact ground truth, for tests and demos.

``synthetic://[?width=320&height=240&fps=30&frames=N&objects=2&seed=0]`` — products (the
``objects`` task of :mod:`edgeseg.data.synth`: textured ellipses on a textured, lit surface,
classes ``background`` and ``product``) glide along Lissajous paths and turn. Each frame's
``meta["ground_truth"]`` is the H×W uint8 class-id mask of exactly what was drawn and
``meta["classes"]`` the class names. ``frames`` ends the stream after N frames (default:
endless; with ``loop=1`` the N-frame scene repeats); ``fps`` paces it like a camera (then it
is a live source for the loop's ``drop="latest"``); without ``fps`` frames come as fast as
they are read.
"""

from __future__ import annotations

import math
import time
from typing import Optional
from urllib.parse import parse_qs, urlsplit

import numpy as np

from edgeseg.camera.frame import Frame, Source
from edgeseg.camera.pacing import FramePacer
from edgeseg.errors import DatasetError, SourceError

__all__ = ["SyntheticSource"]

_KEYS = {"width", "height", "fps", "frames", "objects", "seed", "size", "loop"}


def _surfaces(rng: np.random.Generator, width: int, height: int, n: int) -> list[np.ndarray]:
    """``n`` float32 H×W×3 surfaces in [0, 1] (the dataset synthesizer's textures and light)."""
    from edgeseg.data.synth import _surface

    size = max(width, height)
    out = []
    for _ in range(n):
        try:
            s = _surface(rng, size)
        except DatasetError:  # no scikit-image: a lit plain surface
            yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
            s = (0.35 + 0.3 * xx + 0.1 * yy)[:, :, None] * rng.uniform(0.7, 1.3, 3)
        out.append(np.clip(s[:height, :width], 0, 1).astype(np.float32))
    return out


class SyntheticSource(Source):
    """A moving test scene with known ground truth (see the module docstring)."""

    def __init__(self, uri="synthetic://", **options) -> None:
        self.uri = str(uri)
        q = {k: v[-1] for k, v in parse_qs(urlsplit(self.uri).query).items()}
        q.update({k: str(v) for k, v in options.items() if v is not None})
        unknown = set(q) - _KEYS
        if unknown:
            raise SourceError(
                f"source {self.uri!r}: unknown option(s) {sorted(unknown)}; valid: {sorted(_KEYS)}"
            )
        try:
            if "size" in q:
                w, _, h = q["size"].partition("x")
                q.setdefault("width", w)
                q.setdefault("height", h or w)
            self.width = int(q.get("width", 320))
            self.height = int(q.get("height", 240))
            self.fps = float(q["fps"]) if q.get("fps") else None
            self.frames = int(q["frames"]) if q.get("frames") else None
            self.objects = int(q.get("objects", 2))
            self.seed = int(q.get("seed", 0))
            self.loop = str(q.get("loop", "0")).lower() in ("1", "true", "yes")
        except ValueError as e:
            raise SourceError(f"source {self.uri!r}: bad option value ({e})") from None
        if self.width < 16 or self.height < 16 or self.objects < 0:
            raise SourceError(f"source {self.uri!r}: width/height must be >= 16, objects >= 0")
        self.live = self.fps is not None
        self.classes = ["background", "product"]
        self._index = 0
        self._pacer = FramePacer(self.fps)
        self._bg: list[np.ndarray] = []
        self._fg: list[np.ndarray] = []

    def open(self) -> None:
        import cv2  # noqa: F401 - fail here, not mid-stream, when OpenCV is missing

        rng = np.random.default_rng(self.seed)
        bg, fg = _surfaces(rng, self.width, self.height, 2)
        fg = np.clip(fg * np.array([0.55, 0.8, 1.35], np.float32) + 0.1, 0, 1)  # warm (BGR)
        noise_rng = np.random.default_rng(self.seed + 1)
        self._bg, self._fg = [], []
        for _ in range(4):  # a few noisy versions, cycled: sensor noise without per-frame cost
            for base, dst in ((bg, self._bg), (fg, self._fg)):
                noisy = base + noise_rng.normal(0, 0.01, base.shape).astype(np.float32)
                dst.append((np.clip(noisy, 0, 1) * 255 + 0.5).astype(np.uint8))
        p = np.random.default_rng(self.seed + 2)
        self._paths = [
            (p.uniform(0.2, 0.5), p.uniform(0.2, 0.5), p.uniform(0, 2 * math.pi), p.uniform(0.5, 1))
            for _ in range(self.objects)
        ]
        self._index = 0
        self._pacer.start()

    def ground_truth(self, index: int) -> np.ndarray:
        """The H×W uint8 class-id mask of frame ``index``."""
        import cv2

        w, h = self.width, self.height
        mask = np.zeros((h, w), np.uint8)
        t = index / 30.0
        for k, (fx, fy, phase, size) in enumerate(self._paths):
            cx = w * (0.5 + 0.32 * math.sin(2 * math.pi * fx * t + phase))
            cy = h * (0.5 + 0.3 * math.sin(2 * math.pi * fy * t + 1.7 * phase + k))
            r = min(w, h) * 0.22 * size
            angle = (index * 3.0 + 40 * k) % 180
            axes = (int(round(r)), int(round(r * 0.6)))
            cv2.ellipse(mask, (int(round(cx)), int(round(cy))), axes, angle, 0, 360, 1, -1)
        return mask

    def read(self, timeout: Optional[float] = None) -> Optional[Frame]:
        import cv2

        if not self._bg:
            raise SourceError(f"source {self.uri!r}: read() before open()")
        if self.frames is not None and self._index >= self.frames and not self.loop:
            return None
        self._pacer.wait(timeout, f"{self.uri}: next frame not due yet")
        i = self._index
        k = i % self.frames if self.frames and self.loop else i  # the scene repeats when looping
        gt = self.ground_truth(k)
        img = self._bg[k % 4].copy()
        cv2.copyTo(self._fg[k % 4], gt, img)
        self._index += 1
        meta = {"ground_truth": gt, "classes": list(self.classes)}
        return Frame(img, i, time.time(), self.uri, meta)

    def stats(self) -> dict:
        return {"frames": self._index}
