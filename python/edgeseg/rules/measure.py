"""The measurements of one frame for the rules: per class (or group of classes measured as one),
zone and confidence threshold, the area in pixels and the blobs, computed once and shared by
every rule that asks.

Everything works on the zone's bounding-box crop. An area comes from the result's class
counts (whole frame, no threshold), from one ``cv2.calcHist`` of the crop when a zone has rules
on many classes, else from one comparison per class (faster than a full histogram for a few
classes). Connected components run only for rules with blob limits, only when the class is
present, and only on its pixels' rows and columns (empty runs squeezed to one line).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from edgeseg.rules.check import Check
from edgeseg.rules.zones import ZoneMask

__all__ = ["HIST_MIN_CLASSES", "FrameMeasure"]

#: From this many classes with area rules in one zone (and threshold) on, one histogram of the
#: zone is cheaper than a comparison per class.
HIST_MIN_CLASSES = 4
_HIST_EXACT = 1 << 24  # calcHist counts in float32: exact below 2^24 pixels per bin

Key = tuple[str, Optional[float]]


class FrameMeasure:
    """Lazily computed, cached measurements of one result (``cmap``: H×W uint8 class indices,
    ``conf``: H×W float32 or None, ``counts``: pixels per class) for zones ``masks``.
    ``hist_keys``: the (zone, threshold) pairs measured by one histogram."""

    def __init__(
        self,
        cmap: np.ndarray,
        conf: Optional[np.ndarray],
        counts: Optional[np.ndarray],
        masks: dict[str, ZoneMask],
        hist_keys: frozenset,
    ) -> None:
        self.cmap, self.conf, self.counts = cmap, conf, counts
        self.masks, self.hist_keys = masks, hist_keys
        self._sel: dict[Key, Optional[np.ndarray]] = {}
        self._hist: dict[Key, np.ndarray] = {}
        self._class: dict[tuple[str, Optional[float], tuple[int, ...]], np.ndarray] = {}

    def area(self, chk: Check) -> int:
        """Pixels of the rule's class (or group of classes) in its zone (at least
        ``min_confidence`` sure)."""
        zone, thr, idx = chk.rule.zone, chk.thr, chk.indices
        if self.masks[zone].whole_frame and thr is None and self.counts is not None:
            return int(sum(int(self.counts[i]) for i in idx))
        if (zone, thr) in self.hist_keys:
            hist = self._histogram(zone, thr)
            return int(sum(int(hist[i]) for i in idx))
        return int(np.count_nonzero(self._class_mask(zone, thr, idx)))

    def blobs(self, chk: Check, area: int) -> tuple[int, int]:
        """(area in px of the blobs kept, number of blobs kept) of the rule's class (for a
        group: of the union of its classes' pixels), whose :meth:`area` is ``area``: blobs are
        8-connected and cut at the zone's border; those under ``min_blob_area`` are dropped."""
        import cv2

        m = _squeeze(self._class_mask(chk.rule.zone, chk.thr, chk.indices))
        # Labels without OpenCV's stats pass plus a bincount of the blob pixels is several times
        # faster than connectedComponentsWithStats. There are at most area + 1 labels.
        ltype = cv2.CV_16U if area < 65535 else cv2.CV_32S
        n, labels = cv2.connectedComponents(m.view(np.uint8), connectivity=8, ltype=ltype)
        areas = np.bincount(labels[m], minlength=n)[1:]
        if chk.min_blob_px is not None:
            areas = areas[areas >= chk.min_blob_px]
        return int(areas.sum()), int(len(areas))

    def _selection(self, zone: str, thr: Optional[float]) -> Optional[np.ndarray]:
        """Bool crop of the pixels that count in ``zone`` at ``thr`` (None: all of the crop)."""
        key = (zone, thr)
        if key not in self._sel:
            zm = self.masks[zone]
            sel = None if zm.mask is None else zm.mask.view(bool)
            if thr is not None:
                sure = zm.crop(self.conf) >= thr
                sel = sure if sel is None else np.logical_and(sure, sel, out=sure)
            self._sel[key] = sel
        return self._sel[key]

    def _class_mask(self, zone: str, thr: Optional[float], idx: tuple[int, ...]) -> np.ndarray:
        """Bool crop of the pixels of the classes ``idx`` (one, or a group's: their union) that
        count in ``zone`` at ``thr``; made once per frame for each zone, threshold and group."""
        key = (zone, thr, idx)
        m = self._class.get(key)
        if m is None:
            crop = self.masks[zone].crop(self.cmap)
            m = crop == idx[0]
            for i in idx[1:]:
                m |= crop == i
            sel = self._selection(zone, thr)
            if sel is not None:
                m &= sel
            self._class[key] = m
        return m

    def _histogram(self, zone: str, thr: Optional[float]) -> np.ndarray:
        key = (zone, thr)
        hist = self._hist.get(key)
        if hist is None:
            crop = self.masks[zone].crop(self.cmap)
            sel = self._selection(zone, thr)
            if crop.size >= _HIST_EXACT:
                hist = np.bincount((crop if sel is None else crop[sel]).reshape(-1), minlength=256)
            else:
                import cv2

                mask = None if sel is None else sel.view(np.uint8)
                hist = np.rint(cv2.calcHist([crop], [0], mask, [256], [0, 256]).reshape(-1))
            self._hist[key] = hist = hist.astype(np.int64)
        return hist


def _squeeze(m: np.ndarray) -> np.ndarray:
    """``m`` (bool) without the empty rows and columns that separate nothing: each run of empty
    rows (then columns) shrinks to one row (column). Pixel counts and 8-connectivity stay
    exactly the same, and a sparse mask (specks all over a frame) shrinks several times."""
    rows = _kept(m.any(axis=1))
    if len(rows) < m.shape[0]:
        m = m[rows]
    cols = _kept(m.any(axis=0))
    if len(cols) < m.shape[1]:
        m = m[:, cols]
    return np.ascontiguousarray(m)


def _kept(occupied: np.ndarray) -> np.ndarray:
    """Indices of the occupied lines and of the first line of each empty run."""
    keep = occupied.copy()
    keep[1:] |= occupied[:-1]
    keep[0] = True
    return np.flatnonzero(keep)
