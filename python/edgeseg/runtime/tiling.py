"""Tiled inference for frames much larger than the network input (line-scan cameras,
20-megapixel inspection cameras).

Tiles of ``tile = (th, tw)`` frame pixels overlap by ``overlap`` pixels; the last tile of a
row/column is aligned to the frame's edge. Each tile's logits are weighted by a separable
linear ramp that rises across every overlap shared with a neighbour (and stays 1 on the
frame's border), summed onto one logits canvas and normalized by the summed weights, so the
seams vanish; the fused postprocess then runs once on the whole canvas.
"""

from __future__ import annotations

import numpy as np

from edgeseg.errors import InvalidArgumentError

__all__ = ["TileCanvas", "tile_boxes", "tile_starts"]


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of ``tile`` px covering ``length`` px with >= ``overlap`` px
    shared between neighbours (the last one ends at ``length``)."""
    if tile >= length:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return starts


def tile_boxes(frame_size, tile, overlap: int) -> list[tuple[int, int, int, int]]:
    """``(y0, x0, y1, x1)`` of every tile of a frame, in frame pixels, row by row (tiles
    larger than the frame are clipped to it)."""
    h, w = (int(v) for v in frame_size)
    th, tw = min(int(tile[0]), h), min(int(tile[1]), w)
    return [
        (y, x, y + th, x + tw)
        for y in tile_starts(h, th, overlap)
        for x in tile_starts(w, tw, overlap)
    ]


def _ramp(n: int, start: int, end: int, length: int, overlap: int) -> np.ndarray:
    """Weights along one axis for a tile covering [start, end) of ``length``."""
    w = np.ones(n, np.float32)
    if overlap <= 0:
        return w
    r = (np.arange(n, dtype=np.float32) + 0.5) / float(overlap)
    if start > 0:
        w = np.minimum(w, r)
    if end < length:
        w = np.minimum(w, r[::-1])
    return np.maximum(w, 1e-3)


class TileCanvas:
    """Accumulates tile logits at the network's output scale and returns the blended canvas.

    ``frame_size``: (H, W); ``tile``: (th, tw) frame pixels; ``scale``: (sy, sx) output
    pixels per frame pixel (network output size / tile size).
    """

    def __init__(self, frame_size, tile, overlap: int, num_classes: int, scale) -> None:
        h, w = (int(v) for v in frame_size)
        th, tw = (int(v) for v in tile)
        if th <= 0 or tw <= 0:
            raise InvalidArgumentError(f"tile: expected positive (h, w), got {tile!r}")
        if not 0 <= overlap < min(th, tw):
            raise InvalidArgumentError(
                f"overlap: expected 0 <= overlap < the tile size {min(th, tw)}, got {overlap}"
            )
        self.frame_size = (h, w)
        self.tile = (min(th, h), min(tw, w))
        self.overlap = int(overlap)
        self.sy, self.sx = float(scale[0]), float(scale[1])
        self.canvas_size = (max(1, round(h * self.sy)), max(1, round(w * self.sx)))
        self.acc = np.zeros((num_classes, *self.canvas_size), np.float32)
        self.weight = np.zeros(self.canvas_size, np.float32)

    def add(self, box, logits: np.ndarray) -> None:
        """Blends one tile's ``(C, h, w)`` logits (network output size) into the canvas."""
        y0, x0, y1, x1 = box
        cy0, cx0 = round(y0 * self.sy), round(x0 * self.sx)
        cy1, cx1 = round(y1 * self.sy), round(x1 * self.sx)
        ch, cw = cy1 - cy0, cx1 - cx0
        if logits.shape[1:] != (ch, cw):
            logits = _resize_logits(logits, (ch, cw))
        oy, ox = round(self.overlap * self.sy), round(self.overlap * self.sx)
        wy = _ramp(ch, cy0, cy1, self.canvas_size[0], oy)
        wx = _ramp(cw, cx0, cx1, self.canvas_size[1], ox)
        wt = wy[:, None] * wx[None, :]
        self.acc[:, cy0:cy1, cx0:cx1] += logits * wt
        self.weight[cy0:cy1, cx0:cx1] += wt

    def result(self) -> np.ndarray:
        """The blended ``(C, h, w)`` logits canvas."""
        self.acc /= self.weight
        return self.acc


def _resize_logits(logits: np.ndarray, size) -> np.ndarray:
    """Bilinear resize of (C, h, w) logits (torch align_corners=False), channel by channel."""
    import cv2

    h, w = size
    return np.stack(
        [cv2.resize(c, (w, h), interpolation=cv2.INTER_LINEAR) for c in logits.astype(np.float32)]
    )
