"""``sample:DIR?below=0.6&max=500``: keeps the frames the model was least sure of, for labelling.

A frame whose mean confidence (the softmax top-1 probability averaged over its pixels) is
below ``below`` is a candidate. The sink keeps the ``max`` candidates with the **lowest**
mean confidence seen so far (keep-lowest, not a reservoir: labelling time goes to the
hardest frames; a uniform sample of the unsure ones is what ``edgeseg data select`` draws
later from this folder): while fewer are kept, every candidate is written; once full, a
candidate less confident than the most confident one kept replaces it, and others are
skipped. Each kept frame is ``DIR/<UTC time>_f<frame index>.png`` (the camera frame,
lossless) and a ``.json`` beside it (the loop's per-frame record plus ``mean_confidence``).
Files are written under a temporary name and renamed; on ``open`` the frames already in
``DIR`` count towards ``max``, so a restarted loop goes on with the same sample.

Frames whose model output was not finite are not sampled (their confidence means nothing;
``archive:`` keeps them). A result without confidence (a Segmenter made with
``confidence=False``) raises :class:`~edgeseg.errors.SinkError`.
"""

from __future__ import annotations

import heapq
import json
import os
import re
import time
from pathlib import Path
from typing import Any, Union
from urllib.parse import parse_qsl

import numpy as np

from edgeseg.errors import SinkError
from edgeseg.sinks._private import FILE_MODE, private_dirs
from edgeseg.sinks.base import LoopItem, Sink, register_sink

__all__ = ["SampleSink"]

_OPTIONS = ("below", "max")
_NAME = re.compile(r"^\d{8}T\d{6}\.\d{3}Z_f\d+(_\d+)?\.png$")


class SampleSink(Sink):
    """Keeps the ``max`` least confident frames below ``below`` in ``directory`` (see the
    module docstring)."""

    def __init__(self, directory: Union[str, Path], below: float = 0.6, max: int = 500) -> None:
        self.directory = Path(directory)
        self.spec = f"sample:{directory}"
        try:
            self.below = float(below)
            self.max = int(max)
        except (TypeError, ValueError):
            raise SinkError(
                f"{self.spec}: below must be a number and max an integer, got below={below!r} "
                f"max={max!r}"
            ) from None
        if not 0.0 < self.below <= 1.0 or not np.isfinite(self.below):
            raise SinkError(f"{self.spec}: below must be within (0, 1], got {below!r}")
        if self.max < 1:
            raise SinkError(f"{self.spec}: max must be at least 1, got {max!r}")
        # max-heap of the kept frames by confidence: (-confidence, name)
        self._kept: list[tuple[float, str]] = []
        self._counts = {"written": 0, "replaced": 0, "skipped": 0, "failed": 0}
        self._opened = False

    def open(self) -> None:
        try:
            private_dirs(self.directory)
            names = sorted(p.name for p in self.directory.iterdir() if _NAME.match(p.name))
        except OSError as e:
            raise SinkError(
                f"{self.spec}: cannot use the folder {self.directory}: {e}; choose a writable "
                "folder (sample:DIR)"
            ) from None
        self._kept = []
        for n in names:
            try:
                rec = json.loads((self.directory / n).with_suffix(".json").read_text())
                conf = float(rec["mean_confidence"])
            except (OSError, ValueError, KeyError, TypeError):
                conf = 0.0  # a frame without its record is kept (never removed first)
            heapq.heappush(self._kept, (-conf, n))
        self._opened = True
        while len(self._kept) > self.max:
            self._remove_top()

    def write(self, item: LoopItem) -> None:
        if not self._opened:
            self.open()
        res = item.result
        if not getattr(res, "valid", True):
            self._counts["skipped"] += 1
            return
        if res.confidence is None:
            self._counts["failed"] += 1
            raise SinkError(
                f"{self.spec}: the results carry no confidence; create the Segmenter with "
                "confidence=True"
            )
        conf = float(np.mean(res.confidence))
        if conf >= self.below:
            self._counts["skipped"] += 1
            return
        if len(self._kept) >= self.max:
            if conf >= -self._kept[0][0]:
                self._counts["skipped"] += 1
                return
            self._remove_top()
            self._counts["replaced"] += 1
        try:
            name = self._write_frame(item, conf)
        except OSError as e:
            self._counts["failed"] += 1
            raise SinkError(f"{self.spec}: cannot write into {self.directory}: {e}") from None
        heapq.heappush(self._kept, (-conf, name))
        self._counts["written"] += 1

    def _remove_top(self) -> None:
        _, name = heapq.heappop(self._kept)
        for p in (self.directory / name, (self.directory / name).with_suffix(".json")):
            try:
                p.unlink()
            except FileNotFoundError:
                pass
            except OSError as e:
                raise SinkError(f"{self.spec}: cannot remove {p} for max={self.max}: {e}") from None

    def _write_frame(self, item: LoopItem, conf: float) -> str:
        from PIL import Image

        t = float(item.frame.t_capture)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"
        base = f"{stamp}_f{int(item.frame.index):06d}"
        name, k = f"{base}.png", 1
        while (self.directory / name).exists():
            name, k = f"{base}_{k}.png", k + 1
        image = np.asarray(item.frame.image)
        rgb = image[..., ::-1] if image.ndim == 3 else image  # frames are BGR
        tmp = self.directory / f".tmp-{name}"
        Image.fromarray(np.ascontiguousarray(rgb)).save(tmp, format="PNG", compress_level=1)
        record = {**item.record, "mean_confidence": round(conf, 6)}
        tmp_json = tmp.with_suffix(".json")
        tmp_json.write_text(json.dumps(record, default=str) + "\n", encoding="utf-8")
        for p in (tmp, tmp_json):
            os.chmod(p, FILE_MODE)
        os.replace(tmp_json, (self.directory / name).with_suffix(".json"))
        os.replace(tmp, self.directory / name)
        return name

    def kept(self) -> list[tuple[str, float]]:
        """``(file name, mean confidence)`` of the kept frames, least confident first."""
        return sorted(((n, -c) for c, n in self._kept), key=lambda t: (t[1], t[0]))

    def stats(self) -> dict:
        return {**self._counts, "kept": len(self._kept), "max": self.max, "below": self.below}


def _factory(arg: str, **options: Any) -> SampleSink:
    """``sample:DIR[?below=0.6&max=500]``; keyword options override the query."""
    text = arg[len("sample:") :] if arg.startswith("sample:") else arg
    path, _, query = text.partition("?")
    if not path:
        raise SinkError("sample: needs a folder: sample:DIR (e.g. sample:unsure/?below=0.6)")
    opts: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    opts.update(options)
    unknown = sorted(set(opts) - set(_OPTIONS))
    if unknown:
        raise SinkError(f"sample:{text}: unknown option(s) {unknown}; options: {_OPTIONS}")
    return SampleSink(path, **opts)


register_sink("sample", _factory)
