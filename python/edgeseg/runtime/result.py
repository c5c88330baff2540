"""``SegResult``: one segmented frame (class map, confidence, counts, regions, overlay)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np

from edgeseg.errors import InvalidArgumentError

__all__ = ["ClassInfo", "Region", "SegResult"]


@dataclass(frozen=True)
class ClassInfo:
    """One class: its integer id in the masks, unique name and RGB colour (in colour masks
    and overlays), and in a model's class list its index in the logits (``index``; None in a
    dataset's class map, where the id is what counts)."""

    id: int
    name: str
    color: tuple[int, int, int]
    index: Optional[int] = None

    def to_dict(self) -> dict:
        """``{"id", "name", "color"}`` as ``classes.yaml`` and the model metadata write it."""
        return {"id": self.id, "name": self.name, "color": list(self.color)}


@dataclass(frozen=True)
class Region:
    """One connected blob of a class (8-connectivity), in frame pixels.

    ``bbox`` is ``(x, y, w, h)``, ``centroid`` ``(x, y)``, ``contour`` an ``(N, 2)`` int32
    array of ``(x, y)`` points of the outer boundary, ``mean_confidence`` the mean softmax
    confidence inside (None without confidence).
    """

    class_name: str
    area: int
    bbox: tuple[int, int, int, int]
    centroid: tuple[float, float]
    contour: np.ndarray
    mean_confidence: Optional[float] = None


_CONF_MODES = (False, True, "alpha", "heatmap")


@dataclass
class SegResult:
    """The segmentation of one frame, at the frame's resolution.

    - ``class_map``: H×W uint8, the class index per pixel (index into ``classes``)
    - ``confidence``: H×W float32 softmax max-probability, or None
    - ``classes``: list of :class:`ClassInfo` (index order)
    - ``frame``: the input frame (H×W×3 uint8) or None; ``rgb`` its channel order
    - ``counts_array``: C int64 pixels per class (``counts`` / ``area_fraction`` are dicts
      by class name)
    - ``timings``: milliseconds per stage (``preprocess``, ``inference``, ``postprocess``,
      ``total``)
    - ``nonfinite``: frame pixels whose model output (upsampled logits) was NaN or ±Inf;
      ``nonfinite_input``: NaN/±Inf values in the network input after preprocessing. A
      result with either above zero is not ``valid``: its class map must not be trusted
      (``invalid_reason`` says why) and rules give it no OK.
    """

    class_map: np.ndarray
    confidence: Optional[np.ndarray]
    classes: list[ClassInfo]
    counts_array: np.ndarray
    frame: Optional[np.ndarray] = None
    rgb: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    nonfinite: int = 0
    nonfinite_input: int = 0
    _overlay_cache: Optional[tuple[float, np.ndarray]] = field(default=None, repr=False)

    def __repr__(self) -> str:
        h, w = self.shape
        present = {c.name: int(n) for c, n in zip(self.classes, self.counts_array) if n}
        flags = "" if self.valid else f", invalid: {self.invalid_reason}"
        return f"SegResult({h}×{w}, {len(self.classes)} classes, counts={present}{flags})"

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)`` of the frame."""
        return int(self.class_map.shape[0]), int(self.class_map.shape[1])

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]

    @property
    def valid(self) -> bool:
        """False when the model's input or output held NaN/±Inf values (see ``invalid_reason``)."""
        return self.nonfinite == 0 and self.nonfinite_input == 0

    @property
    def invalid_reason(self) -> Optional[str]:
        """Why the result cannot be trusted, or None when it is ``valid``."""
        if self.nonfinite_input:
            return f"model input not finite ({int(self.nonfinite_input)} values)"
        if self.nonfinite:
            return f"model output not finite ({int(self.nonfinite)} px)"
        return None

    @property
    def counts(self) -> dict[str, int]:
        """Pixels per class name (every class, zeros included)."""
        return {c.name: int(n) for c, n in zip(self.classes, self.counts_array)}

    @property
    def area_fraction(self) -> dict[str, float]:
        """Fraction of the frame's pixels per class name (sums to 1)."""
        total = max(1, self.class_map.size)
        return {c.name: float(n) / total for c, n in zip(self.classes, self.counts_array)}

    def palette(self, rgb: Optional[bool] = None) -> np.ndarray:
        """C×3 uint8 class colours, in the frame's channel order unless ``rgb`` is given."""
        pal = np.array([c.color for c in self.classes], dtype=np.uint8).reshape(-1, 3)
        want_rgb = self.rgb if rgb is None else rgb
        return pal if want_rgb else np.ascontiguousarray(pal[:, ::-1])

    def class_index(self, class_name: Union[str, int]) -> int:
        """The index of ``class_name`` (a name or an index); unknown names list the valid ones."""
        if isinstance(class_name, (int, np.integer)) and not isinstance(class_name, bool):
            if 0 <= int(class_name) < len(self.classes):
                return int(class_name)
        else:
            for c in self.classes:
                if c.name == class_name:
                    return c.index
        raise InvalidArgumentError(
            f"class_name: unknown class {class_name!r}; the model's classes are {self.class_names}"
        )

    def mask(self, class_name: Union[str, int]) -> np.ndarray:
        """H×W bool mask of one class."""
        return self.class_map == self.class_index(class_name)

    def overlay(self, alpha: float = 0.5, show_confidence: Union[bool, str] = False) -> np.ndarray:
        """The frame blended with the class colours (frame's channel order, H×W×3 uint8).

        ``show_confidence``: False; True or ``"alpha"`` — each pixel's colour opacity is
        ``alpha * confidence`` (unsure pixels fade to the frame); ``"heatmap"`` — the
        confidence as a heat map (blue = unsure, red = sure) blended over the frame.
        Background (class index 0) stays transparent.
        """
        if not isinstance(alpha, (int, float, np.floating)) or not 0.0 <= float(alpha) <= 1.0:
            raise InvalidArgumentError(f"alpha: expected a number in [0, 1], got {alpha!r}")
        if show_confidence not in _CONF_MODES:
            raise InvalidArgumentError(
                f"show_confidence: expected one of {_CONF_MODES}, got {show_confidence!r}"
            )
        if self.frame is None:
            raise InvalidArgumentError(
                "overlay: this result carries no frame (predict(..., keep_frame=False))"
            )
        if show_confidence and self.confidence is None:
            raise InvalidArgumentError(
                "overlay(show_confidence=...): the result has no confidence; create the "
                "Segmenter with confidence=True"
            )
        frame = self.frame.astype(np.float32)
        if show_confidence == "heatmap":
            heat = _heatmap(self.confidence, rgb=self.rgb).astype(np.float32)
            out = frame * (1.0 - alpha) + heat * alpha
            return np.clip(out + 0.5, 0, 255).astype(np.uint8)
        if not show_confidence and self._overlay_cache is not None:
            cached_alpha, img = self._overlay_cache
            if cached_alpha == float(alpha):
                return img
        colors = self.palette().astype(np.float32)[self.class_map]
        a = np.full(self.class_map.shape, float(alpha), np.float32)
        if show_confidence:
            a = a * self.confidence
        a[self.class_map == 0] = 0.0
        a = a[..., None]
        out = frame * (1.0 - a) + colors * a
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)

    def regions(self, class_name: Union[str, int], min_area: int = 1) -> list[Region]:
        """Connected components of one class (8-connectivity), largest first.

        The class stays one blob in ``counts``; regions are a view for rules and reports.
        """
        import cv2

        idx = self.class_index(class_name)
        name = self.classes[idx].name
        m = (self.class_map == idx).astype(np.uint8)
        n, labels, stats, cents = cv2.connectedComponentsWithStats(m, connectivity=8)
        out = []
        for k in range(1, n):
            x, y, w, h, area = (int(v) for v in stats[k])
            if area < min_area:
                continue
            sub = (labels[y : y + h, x : x + w] == k).astype(np.uint8)
            contours, _ = cv2.findContours(sub, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            contour = max(contours, key=len).reshape(-1, 2).astype(np.int32) + (x, y)
            mc = None
            if self.confidence is not None:
                mc = float(self.confidence[y : y + h, x : x + w][sub.astype(bool)].mean())
            out.append(
                Region(
                    class_name=name,
                    area=area,
                    bbox=(x, y, w, h),
                    centroid=(float(cents[k][0]), float(cents[k][1])),
                    contour=contour,
                    mean_confidence=mc,
                )
            )
        out.sort(key=lambda r: -r.area)
        return out

    def save_png(self, path: Union[str, Path]) -> Path:
        """Writes the class map as a palette PNG (pixel value = class index, palette = class
        colours); readable by any image viewer and by ``PIL.Image.open(p)`` as indices."""
        from PIL import Image

        p = Path(path)
        img = Image.fromarray(self.class_map, mode="P")
        pal = self.palette(rgb=True).reshape(-1).tolist()
        img.putpalette(pal + [0] * (768 - len(pal)))
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            img.save(p, format="PNG")
        except OSError as e:
            raise InvalidArgumentError(f"save_png: cannot write {p}: {e}") from None
        return p

    def to_dict(self) -> dict:
        """A JSON-able summary: size, classes, counts, area fractions, mean confidence per
        class and the timings."""
        d: dict = {
            "height": self.shape[0],
            "width": self.shape[1],
            "classes": self.class_names,
            "counts": self.counts,
            "area_fraction": self.area_fraction,
            "timings_ms": {k: round(float(v), 3) for k, v in self.timings.items()},
        }
        if self.confidence is not None:
            flat_cm = self.class_map.reshape(-1)
            sums = np.bincount(
                flat_cm, weights=self.confidence.reshape(-1), minlength=len(self.classes)
            )
            d["mean_confidence"] = {
                c.name: (float(s / n) if n else None)
                for c, s, n in zip(self.classes, sums, self.counts_array)
            }
        return d


def _heatmap(conf: np.ndarray, rgb: bool) -> np.ndarray:
    """H×W float confidence in [0, 1] → H×W×3 uint8 (blue = 0, green = 0.5, red = 1)."""
    c = np.clip(conf, 0.0, 1.0)
    r = np.clip(2.0 * c - 1.0, 0.0, 1.0)
    g = 1.0 - np.abs(2.0 * c - 1.0)
    b = np.clip(1.0 - 2.0 * c, 0.0, 1.0)
    chans = (r, g, b) if rgb else (b, g, r)
    return (np.stack(chans, axis=-1) * 255.0 + 0.5).astype(np.uint8)
