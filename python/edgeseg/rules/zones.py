"""Inspection zones: polygons in frame pixels or normalized coordinates, and the whole frame.

A zone is rasterized once per frame size with ``cv2.fillPoly`` and cached as a crop of its
bounding box (``ZoneMask``), so a rule touches only the pixels of its zone.

Pixel convention (OpenCV's): a vertex ``(x, y)`` is column ``x``, row ``y``; the pixels on the
polygon's outline belong to the zone, so the rectangle with corners ``(100, 80)`` and
``(199, 179)`` covers exactly 100 × 100 px. Normalized vertices ``(u, v)`` in 0..1 map to
``(u × width, v × height)``. Coordinates from 0 up to the width/height are in the frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

__all__ = ["FRAME_ZONE", "Zone", "ZoneMask", "polygon_problem"]

#: The name of the built-in zone that covers the whole frame.
FRAME_ZONE = "frame"

_SHIFT = 8  # fixed-point bits for sub-pixel vertices in cv2.fillPoly


@dataclass(frozen=True)
class ZoneMask:
    """A zone rasterized for one frame size: ``mask`` is the uint8 (0/1) crop of the zone's
    bounding box ``(y0, y1, x0, x1)`` (half-open), ``area`` its pixel count. A zone that fills
    its bounding box (a rectangle, the whole frame) has ``mask`` None: its crop is the zone.
    ``whole_frame`` is True for a zone covering every pixel."""

    y0: int
    y1: int
    x0: int
    x1: int
    mask: Optional[np.ndarray]
    area: int
    whole_frame: bool = False

    def crop(self, image: np.ndarray) -> np.ndarray:
        """The part of an H×W image under the zone's bounding box."""
        return image[self.y0 : self.y1, self.x0 : self.x1]


@dataclass(frozen=True)
class Zone:
    """A named polygon (``points``: N×2 float ``(x, y)``), in pixels or, with ``normalized``,
    in fractions of the frame's width and height. ``points`` None is the whole frame."""

    name: str
    points: Optional[np.ndarray] = None
    normalized: bool = False

    @property
    def whole_frame(self) -> bool:
        return self.points is None

    def pixel_points(self, height: int, width: int) -> np.ndarray:
        """The vertices in frame pixels (float) for a frame of ``height`` × ``width``."""
        if self.points is None:
            return np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float64)
        if self.normalized:
            return self.points * np.array([width, height], np.float64)
        return self.points

    def out_of_frame(self, height: int, width: int) -> Optional[tuple[float, float]]:
        """The first vertex outside a ``height`` × ``width`` frame (in pixels), or None."""
        if self.points is None:
            return None
        pts = self.pixel_points(height, width)
        bad = (pts[:, 0] < 0) | (pts[:, 0] > width) | (pts[:, 1] < 0) | (pts[:, 1] > height)
        if not bad.any():
            return None
        x, y = pts[int(np.argmax(bad))]
        return float(x), float(y)

    def rasterize(self, height: int, width: int) -> ZoneMask:
        """The zone's mask for a ``height`` × ``width`` frame (vertices clipped to the frame)."""
        if self.points is None:
            return ZoneMask(0, height, 0, width, None, height * width, True)
        import cv2

        pts = self.pixel_points(height, width)
        pts = np.clip(pts, 0, [width - 1, height - 1])
        lo = np.floor(pts.min(axis=0)).astype(int)
        hi = np.ceil(pts.max(axis=0)).astype(int) + 1
        x0, y0 = (int(v) for v in lo)
        x1, y1 = min(int(hi[0]), width), min(int(hi[1]), height)
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        fixed = np.round((pts - [x0, y0]) * (1 << _SHIFT)).astype(np.int32)
        cv2.fillPoly(mask, [fixed], 1, lineType=cv2.LINE_8, shift=_SHIFT)
        area = int(np.count_nonzero(mask))
        if area == mask.size:  # a rectangle: the crop alone is the zone
            whole = (y0, y1, x0, x1) == (0, height, 0, width)
            return ZoneMask(y0, y1, x0, x1, None, area, whole)
        return ZoneMask(y0, y1, x0, x1, mask, area)


def _orient(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> float:
    return float((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))


def _on_segment(a: np.ndarray, b: np.ndarray, p: np.ndarray) -> bool:
    return bool(
        min(a[0], b[0]) <= p[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= p[1] <= max(a[1], b[1])
    )


def _segments_meet(p1, p2, q1, q2) -> bool:
    """True when the closed segments p1-p2 and q1-q2 share a point."""
    d1, d2 = _orient(q1, q2, p1), _orient(q1, q2, p2)
    d3, d4 = _orient(p1, p2, q1), _orient(p1, p2, q2)
    if ((d1 > 0 > d2) or (d1 < 0 < d2)) and ((d3 > 0 > d4) or (d3 < 0 < d4)):
        return True
    return (
        (d1 == 0 and _on_segment(q1, q2, p1))
        or (d2 == 0 and _on_segment(q1, q2, p2))
        or (d3 == 0 and _on_segment(p1, p2, q1))
        or (d4 == 0 and _on_segment(p1, p2, q2))
    )


def polygon_problem(points: np.ndarray) -> Optional[str]:
    """Why ``points`` (N×2) is not a simple polygon (too few vertices, repeated vertex, no area,
    self-intersecting edges), or None when it is one."""
    n = len(points)
    if n < 3:
        return f"a polygon needs at least 3 vertices, got {n}"
    for i in range(n):
        if np.array_equal(points[i], points[(i + 1) % n]):
            return f"vertex {i} {_pt(points[i])} repeats"
    d = points - points[0]
    if not np.any(d[1, 0] * d[:, 1] - d[1, 1] * d[:, 0]):
        return "the polygon has no area (all vertices on one line)"
    edges = [(points[i], points[(i + 1) % n]) for i in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            a1, a2 = edges[i]
            b1, b2 = edges[j]
            if j == i + 1 or (i == 0 and j == n - 1):
                # Neighbours share one vertex; they may only meet there (no folding back).
                shared = a2 if j == i + 1 else a1
                far = b2 if j == i + 1 else b1
                other = a1 if j == i + 1 else a2
                if _orient(other, shared, far) == 0 and _on_segment(other, far, shared) is False:
                    return _crossing(i, j, edges)
                continue
            if _segments_meet(a1, a2, b1, b2):
                return _crossing(i, j, edges)
    return None


def _crossing(i: int, j: int, edges) -> str:
    (a1, a2), (b1, b2) = edges[i], edges[j]
    return (
        f"it intersects itself: edge {_pt(a1)}-{_pt(a2)} meets edge {_pt(b1)}-{_pt(b2)}; "
        "list the vertices in order around the outline"
    )


def _pt(p) -> str:
    return f"({_num(p[0])}, {_num(p[1])})"


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{float(v):g}"
