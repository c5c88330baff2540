"""Layers the model families share (the plain-torch models of :mod:`edgeseg.train.models`
and the timm-encoder UNet of :mod:`edgeseg.train.zoo`), built from export-clean operators."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConvBNAct", "upsample_to"]


def upsample_to(x: torch.Tensor, like: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """``x`` resized to ``like``'s height and width (bilinear, or ``nearest``)."""
    if mode == "nearest":
        return F.interpolate(x, size=like.shape[-2:], mode="nearest")
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


class ConvBNAct(nn.Sequential):
    """Convolution without bias, BatchNorm, then ReLU (``act="relu"``), HardSwish
    (``"hswish"``) or nothing."""

    def __init__(self, cin, cout, k=3, stride=1, groups=1, dilation=1, act="relu"):
        pad = (k - 1) // 2 * dilation
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, k, stride, pad, dilation=dilation, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if act == "relu":
            layers.append(nn.ReLU(inplace=True))
        elif act == "hswish":
            layers.append(nn.Hardswish(inplace=True))
        super().__init__(*layers)
