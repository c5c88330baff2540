"""Losses: pixel-wise cross-entropy (ignore index, class weights), soft Dice, CE + Dice; and
class weights from pixel frequencies."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.data.classes import VOID
from edgeseg.errors import TrainingError

__all__ = [
    "LOSSES",
    "CEDiceLoss",
    "DiceLoss",
    "class_weights",
    "create_loss",
    "parse_weights",
    "weights_for_setting",
]

#: Target value that adds no loss: the dataset's void (unlabelled pixels and ignored classes).
IGNORE_INDEX = VOID
LOSSES = ("ce", "dice", "ce+dice")
WEIGHT_METHODS = ("auto", "none", "median", "invsqrt")


def class_weights(
    pixel_counts: Sequence[float], method: str = "invsqrt", max_weight: float = 10.0
) -> np.ndarray:
    """Per-class loss weights from labelled pixel counts.

    ``median``: median-frequency balancing (Eigen & Fergus), ``w_c = median(f) / f_c``;
    ``invsqrt``: ``w_c = 1 / sqrt(f_c)``. Both are scaled so the pixel-weighted mean weight
    is 1 (the loss keeps its scale) and clipped to ``max_weight`` × the smallest weight;
    a class with no pixels gets the largest weight.
    """
    counts = np.asarray(pixel_counts, np.float64)
    if counts.ndim != 1 or counts.size == 0 or (counts < 0).any():
        raise TrainingError(f"pixel counts must be a non-empty list of counts >= 0: {counts}")
    if counts.sum() == 0:
        raise TrainingError("no labelled pixels: every mask is void; label the images first")
    freq = counts / counts.sum()
    present = freq > 0
    w = np.zeros_like(freq)
    if method == "median":
        w[present] = np.median(freq[present]) / freq[present]
    elif method == "invsqrt":
        w[present] = 1.0 / np.sqrt(freq[present])
    else:
        raise TrainingError(f"unknown class-weight method {method!r}; use median or invsqrt")
    w = np.minimum(w, w[present].min() * max_weight)
    w[~present] = w[present].max()
    return w / float((w * freq).sum())


def parse_weights(text) -> Optional[list[float]]:
    """The per-class weights of ``--class-weights 1,2.5,...`` (None: not such a list)."""
    if isinstance(text, (list, tuple)):
        return [float(v) for v in text]
    try:
        vals = [float(v) for v in str(text).split(",")]
    except ValueError:
        return None
    return vals if len(vals) > 1 else None


def weights_for_setting(
    setting, class_pixels: Sequence[float], names: Sequence[str]
) -> Optional[np.ndarray]:
    """The loss weights ``--class-weights`` asks for: None (``none``), computed from the
    training pixels ``class_pixels`` (``auto`` = ``invsqrt``, ``median``, ``invsqrt``), or the
    list of numbers given, one per class (``names``)."""
    if setting == "none":
        return None
    if setting in WEIGHT_METHODS:
        return class_weights(class_pixels, "invsqrt" if setting == "auto" else setting)
    weights = np.asarray(parse_weights(setting), np.float64)
    if weights.size != len(names):
        raise TrainingError(
            f"--class-weights has {weights.size} values for {len(names)} classes "
            f"({', '.join(names)})"
        )
    return weights


class DiceLoss(nn.Module):
    """Multi-class soft Dice: ``1 - mean_c (2 Σ p·t + s) / (Σ p + Σ t + s)`` over valid pixels.

    Sums run over the whole batch; classes absent from both truth and prediction score ~1
    through the smoothing ``s`` and so do not pull the loss.
    """

    def __init__(
        self,
        ignore_index: int = IGNORE_INDEX,
        smooth: float = 1.0,
        weight: Optional[torch.Tensor] = None,
    ):
        super().__init__()
        self.ignore_index = ignore_index
        self.smooth = smooth
        self.register_buffer("weight", weight if weight is not None else None)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        c = logits.shape[1]
        prob = logits.float().softmax(1)
        valid = (target != self.ignore_index).unsqueeze(1)
        t = torch.where(valid.squeeze(1), target, torch.zeros_like(target)).long()
        onehot = F.one_hot(t, c).permute(0, 3, 1, 2).to(prob.dtype) * valid
        prob = prob * valid
        dims = (0, 2, 3)
        inter = (prob * onehot).sum(dims)
        denom = prob.sum(dims) + onehot.sum(dims)
        dice = (2 * inter + self.smooth) / (denom + self.smooth)
        if self.weight is not None:
            return 1 - (dice * self.weight).sum() / self.weight.sum()
        return 1 - dice.mean()


class CELoss(nn.Module):
    def __init__(self, weight: Optional[torch.Tensor] = None, ignore_index: int = IGNORE_INDEX):
        super().__init__()
        self.ignore_index = ignore_index
        self.register_buffer("weight", weight if weight is not None else None)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(
            logits.float(), target.long(), weight=self.weight, ignore_index=self.ignore_index
        )


class CEDiceLoss(nn.Module):
    def __init__(
        self,
        weight: Optional[torch.Tensor] = None,
        dice_weight: float = 1.0,
        ignore_index: int = IGNORE_INDEX,
    ):
        super().__init__()
        self.ce = CELoss(weight, ignore_index=ignore_index)
        self.dice = DiceLoss(ignore_index=ignore_index)
        self.dice_weight = dice_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.ce(logits, target) + self.dice_weight * self.dice(logits, target)


def create_loss(
    name: str,
    weight: Union[None, np.ndarray, Sequence[float]] = None,
    ignore_index: int = IGNORE_INDEX,
) -> nn.Module:
    """``ce`` (weighted), ``dice`` (plain) or ``ce+dice`` (weighted CE + Dice); pixels whose
    target is ``ignore_index`` (void: 255 and the dataset's ignored classes) add nothing."""
    w = None if weight is None else torch.as_tensor(np.asarray(weight), dtype=torch.float32)
    if name == "ce":
        return CELoss(w, ignore_index=ignore_index)
    if name == "dice":
        return DiceLoss(ignore_index=ignore_index)
    if name == "ce+dice":
        return CEDiceLoss(w, ignore_index=ignore_index)
    raise TrainingError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
