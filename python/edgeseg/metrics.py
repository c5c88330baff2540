"""Segmentation metrics from a confusion matrix (numpy only; shared by training, ``edgeseg
eval`` and the quantization gate).

Predictions and targets are integer class *indices* ``0..C-1``; target pixels equal to
``ignore_index`` (255, :data:`edgeseg.data.VOID`: unlabelled pixels, VOC's object borders,
Cityscapes' non-benchmark classes, a dataset's ignored classes) are skipped everywhere: they
are in no row or column of the confusion matrix, whatever the prediction there, and
:attr:`ConfusionMatrix.ignored` counts them (``ignored_pixels`` in the report)::

    cm = ConfusionMatrix(num_classes=4)
    cm.update(pred, target)                 # HW or NHW arrays, any integer dtype
    cm.miou(), cm.iou(), cm.pixel_accuracy(), cm.dice()

    bf = BoundaryF1(num_classes=4, tolerance=2)
    bf.update(pred, target)                 # one HW image at a time
    bf.f1()                                 # per class (nan where a class has no boundary)

The matrix is ``cm[target, pred]`` (rows: truth). Per-class IoU, Dice and boundary F1 are
``nan`` for a class that appears neither in the truth nor in the predictions; means skip nan.
Boundary F1 (Csurka et al., 2013): a boundary pixel of class ``c`` is a pixel of ``c`` with a
4-neighbour of another (non-void) class; precision is the share of predicted boundary pixels
within ``tolerance`` pixels (Euclidean) of a true boundary pixel, recall the reverse. Counts
are summed over all images before the ratio, so a large image weighs more. Thin structures
(1-3 px scratches) are nearly all boundary, which is why this metric sees them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional

import numpy as np

__all__ = [
    "BoundaryF1",
    "ConfusionMatrix",
    "boundary_mask",
    "confusion_matrix",
    "iou_from_matrix",
    "summarize",
]

IGNORE_INDEX = 255


def _check_pair(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred)
    target = np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(
            f"prediction shape {pred.shape} differs from target shape {target.shape}; "
            "resize the logits to the label size before argmax"
        )
    return pred, target


def confusion_matrix(
    pred: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> np.ndarray:
    """``(C, C)`` int64 counts ``cm[target, pred]`` over pixels whose target is not ignored."""
    pred, target = _check_pair(pred, target)
    t = target.ravel().astype(np.int64)
    p = pred.ravel().astype(np.int64)
    keep = t != ignore_index
    t, p = t[keep], p[keep]
    bad_t = (t < 0) | (t >= num_classes)
    bad_p = (p < 0) | (p >= num_classes)
    if bad_t.any() or bad_p.any():
        which, vals = ("target", t[bad_t]) if bad_t.any() else ("prediction", p[bad_p])
        raise ValueError(
            f"{which} holds class index {int(vals[0])} outside 0..{num_classes - 1} "
            f"(ignore index {ignore_index}); map dataset ids to indices first"
        )
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = a / b
    return np.where(b > 0, out, np.nan)


def iou_from_matrix(matrix: np.ndarray) -> np.ndarray:
    """Per-class IoU of a ``(C, C)`` confusion matrix ``[target, pred]``, or of each matrix of
    a stack ``(..., C, C)``; ``nan`` for a class in neither truth nor prediction."""
    m = np.asarray(matrix)
    tp = np.diagonal(m, axis1=-2, axis2=-1).astype(np.float64)
    return _safe_div(tp, m.sum(-2) + m.sum(-1) - tp)


def _nanmean(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    x = x[~np.isnan(x)]
    return float(x.mean()) if x.size else float("nan")


class ConfusionMatrix:
    """Accumulates a confusion matrix; all ratios are computed from it."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX):
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), np.int64)
        #: target pixels skipped because they hold ``ignore_index``
        self.ignored = 0

    def update(self, pred: np.ndarray, target: np.ndarray) -> ConfusionMatrix:
        self.matrix += confusion_matrix(pred, target, self.num_classes, self.ignore_index)
        self.ignored += int(np.count_nonzero(np.asarray(target) == self.ignore_index))
        return self

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        self.matrix += other.matrix
        self.ignored += other.ignored
        return self

    def iou(self) -> np.ndarray:
        return iou_from_matrix(self.matrix)

    def miou(self) -> float:
        return _nanmean(self.iou())

    def dice(self) -> np.ndarray:
        """Per-class Dice = F1 = 2TP / (2TP + FP + FN)."""
        tp = np.diag(self.matrix).astype(np.float64)
        return _safe_div(2 * tp, self.matrix.sum(0) + self.matrix.sum(1))

    def mean_dice(self) -> float:
        return _nanmean(self.dice())

    def pixel_accuracy(self) -> float:
        total = self.matrix.sum()
        return float(np.trace(self.matrix) / total) if total else float("nan")

    def class_pixels(self) -> np.ndarray:
        """Labelled pixels per class (row sums)."""
        return self.matrix.sum(1)


def _disk_offsets(radius: int) -> list[tuple[int, int]]:
    r = int(radius)
    return [
        (dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if dy * dy + dx * dx <= r * r
    ]


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation with a Euclidean disk of ``radius`` pixels (no wrap-around)."""
    if radius <= 0:
        return mask.copy()
    h, w = mask.shape
    out = np.zeros_like(mask)
    for dy, dx in _disk_offsets(radius):
        ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
        xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
        out[yd, xd] |= mask[ys, xs]
    return out


def boundary_mask(labels: np.ndarray, valid: Optional[np.ndarray] = None) -> np.ndarray:
    """Pixels with a valid 4-neighbour of a different label (the image border is no boundary)."""
    labels = np.asarray(labels)
    if valid is None:
        valid = np.ones(labels.shape, bool)
    out = np.zeros(labels.shape, bool)
    a, b = labels[:, :-1], labels[:, 1:]
    va, vb = valid[:, :-1], valid[:, 1:]
    diff = (a != b) & va & vb
    out[:, :-1] |= diff
    out[:, 1:] |= diff
    a, b = labels[:-1, :], labels[1:, :]
    va, vb = valid[:-1, :], valid[1:, :]
    diff = (a != b) & va & vb
    out[:-1, :] |= diff
    out[1:, :] |= diff
    return out & valid


class BoundaryF1:
    """Per-class boundary precision/recall/F1 at a pixel tolerance, summed over images."""

    def __init__(self, num_classes: int, tolerance: int = 2, ignore_index: int = IGNORE_INDEX):
        self.num_classes = int(num_classes)
        self.tolerance = int(tolerance)
        self.ignore_index = ignore_index
        # per class: matched predicted, predicted, matched true, true boundary pixels
        self.counts = np.zeros((num_classes, 4), np.int64)

    def update(self, pred: np.ndarray, target: np.ndarray) -> BoundaryF1:
        pred, target = _check_pair(pred, target)
        if pred.ndim == 3:
            for p, t in zip(pred, target):
                self.update(p, t)
            return self
        if pred.ndim != 2:
            raise ValueError(f"boundary F1 needs HW or NHW label arrays, got shape {pred.shape}")
        valid = target != self.ignore_index
        pb_all = boundary_mask(pred, valid)
        tb_all = boundary_mask(target, valid)
        for c in range(self.num_classes):
            pb = pb_all & (pred == c)
            tb = tb_all & (target == c)
            n_p, n_t = int(pb.sum()), int(tb.sum())
            if n_p == 0 and n_t == 0:
                continue
            m_p = int((pb & _dilate(tb, self.tolerance)).sum()) if n_p and n_t else 0
            m_t = int((tb & _dilate(pb, self.tolerance)).sum()) if n_p and n_t else 0
            self.counts[c] += (m_p, n_p, m_t, n_t)
        return self

    def merge(self, other: BoundaryF1) -> BoundaryF1:
        self.counts += other.counts
        return self

    def precision(self) -> np.ndarray:
        return _safe_div(self.counts[:, 0].astype(np.float64), self.counts[:, 1])

    def recall(self) -> np.ndarray:
        return _safe_div(self.counts[:, 2].astype(np.float64), self.counts[:, 3])

    def f1(self) -> np.ndarray:
        """Per class; 0 where one side has boundary pixels and the other none, nan if neither."""
        present = (self.counts[:, 1] + self.counts[:, 3]) > 0
        p = np.nan_to_num(self.precision())
        r = np.nan_to_num(self.recall())
        with np.errstate(divide="ignore", invalid="ignore"):
            f = np.where(p + r > 0, 2 * p * r / (p + r), 0.0)
        return np.where(present, f, np.nan)

    def mean_f1(self) -> float:
        return _nanmean(self.f1())


def _num(x: float) -> Optional[float]:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def summarize(
    cm: ConfusionMatrix,
    names: Sequence[str],
    boundary: Optional[BoundaryF1] = None,
    num_images: Optional[int] = None,
) -> dict:
    """The JSON report of ``edgeseg eval``: nan (class absent) becomes ``null``."""
    if len(names) != cm.num_classes:
        raise ValueError(f"{len(names)} class names for {cm.num_classes} classes")
    iou = cm.iou()
    dice = cm.dice()
    out = {
        "miou": _num(cm.miou()),
        "per_class_iou": {n: _num(v) for n, v in zip(names, iou.tolist())},
        "pixel_accuracy": _num(cm.pixel_accuracy()),
        "mean_dice": _num(cm.mean_dice()),
        "per_class_dice": {n: _num(v) for n, v in zip(names, dice.tolist())},
        "ignored_pixels": int(cm.ignored),
    }
    if boundary is not None:
        out["boundary_f1"] = _num(boundary.mean_f1())
        out["per_class_boundary_f1"] = {n: _num(v) for n, v in zip(names, boundary.f1().tolist())}
        out["boundary_tolerance_px"] = boundary.tolerance
    if num_images is not None:
        out["num_images"] = int(num_images)
    return out
