"""Segmentation models in plain torch, built only from export-clean operators.

Every model maps ``N×3×H×W`` normalized RGB to ``N×C×H×W`` logits at the input resolution
and uses only Conv, BatchNorm, ReLU/HardSwish, Sigmoid, bilinear/nearest Resize, Concat,
Add, Mul, DepthToSpace and pooling, so ONNX export and TensorRT take them as they are (no
custom ops, no torchvision). Any input size works; sizes divisible by 32 avoid odd-sized
resizes.

* ``unet`` — compact UNet: ``width`` scales the channels (1.0: 32-64-128-256-512), ``depth``
  the number of down-samplings; full-resolution skips keep 1-3 px scratches.
  ``full_res_convs=0``: no full-resolution level — encoder and decoder from half resolution
  down and a head that emits 4 logits per class, rearranged by DepthToSpace
  (``PixelShuffle(2)``) into full-resolution logits, so every encoder/decoder conv has >= 16
  channels (int8's fast path on a CPU); not the default (lower mIoU in 5 minutes).
* ``mbv3_lraspp`` — real-time: MobileNetV3-Small-like encoder (inverted residuals,
  HardSwish, dilated last stage, output stride 16) with the LR-ASPP decoder plus stride-8
  and stride-4 skips; ~1/10 of the UNet's compute at 512².
* ``timm_unet`` — a timm encoder (default ``resnet18``) with a light UNet decoder; needs
  the optional ``[zoo]`` extra and reads pretrained weights only from a local file
  (:mod:`edgeseg.train.zoo`).

``create_model(name, num_classes, **kw)``; ``MODELS`` lists the names.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from edgeseg.errors import TrainingError
from edgeseg.train.blocks import ConvBNAct, upsample_to

__all__ = [
    "INIT_ONLY_KWARGS",
    "MODELS",
    "MobileNetV3LRASPP",
    "UNet",
    "arch_kwargs",
    "create_model",
    "model_names",
]


def _ch(c: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of ``divisor`` (tensor-core friendly), at least 8."""
    return max(divisor, int(c + divisor / 2) // divisor * divisor)


class _DoubleConv(nn.Sequential):
    def __init__(self, cin, cout, n: int = 2):
        super().__init__(*(ConvBNAct(cin if i == 0 else cout, cout) for i in range(n)))


class UNet(nn.Module):
    """Compact UNet. ``width`` scales the channels (1.0: 32-64-128-256-512), ``depth`` sets
    the number of 2x down-samplings, ``max_channels`` caps the deepest levels and
    ``full_res_convs`` (1 or 2) sets the 3x3 convolutions of the two full-resolution blocks,
    the costliest part of the net on a CPU (one is ~25 % cheaper; it keeps the stride-1 skip
    that thin scratches need). ``up``: the decoder's feature upsampling, ``bilinear`` or
    ``nearest`` (ONNX Runtime runs DQ-Resize(nearest)-Q in int8; bilinear stays float).

    ``full_res_convs=0`` drops the full-resolution level, for CPU int8 (every convolution of
    the encoder and decoder has >= 16 channels, MLAS's fast int8 path): the encoder and
    decoder run from half resolution down with the channels of levels 1..depth, and the 1x1
    head emits ``4 * num_classes`` channels that ``PixelShuffle(2)`` (ONNX DepthToSpace)
    turns into ``num_classes`` logits per full-resolution pixel. ``stem``: ``"s2d"``, a 2x2
    stride-2 convolution (space-to-depth and a 1x1 conv: no pixel lost) then a 3x3 conv at
    half resolution; or ``"pool"``, a 3x3 conv (3 -> 16) at full resolution, a 2x2 max-pool
    and a 3x3 conv (shift-invariant like the full UNet's first level; measured better).
    ``fine`` (with ``stem="pool"``): a 1x1 conv from the full-resolution stem features to
    the classes, added to the logits (per-pixel detail the max-pool drops)."""

    def __init__(
        self,
        num_classes: int,
        width: float = 0.5,
        depth: int = 4,
        dropout: float = 0.1,
        in_channels: int = 3,
        max_channels: Optional[int] = None,
        full_res_convs: int = 2,
        up: str = "bilinear",
        stem: str = "s2d",
        fine: bool = False,
    ):
        super().__init__()
        if not 1 <= depth <= 6:
            raise TrainingError(f"unet depth {depth} is not in 1..6")
        if full_res_convs not in (0, 1, 2):
            raise TrainingError(f"unet full_res_convs {full_res_convs} is not 0, 1 or 2")
        if up not in ("bilinear", "nearest"):
            raise TrainingError(f"unet up {up!r} is not 'bilinear' or 'nearest'")
        if stem not in ("s2d", "pool"):
            raise TrainingError(f"unet stem {stem!r} is not 's2d' or 'pool'")
        if fine and (full_res_convs or stem != "pool"):
            raise TrainingError("unet fine=True needs full_res_convs=0 and stem='pool'")
        self.up_mode = up
        chs = [_ch(32 * width * 2**i) for i in range(depth + 1)]
        if max_channels:
            chs = [min(c, _ch(max_channels)) for c in chs]
        self.shuffle: nn.Module = nn.Identity()
        self.fine: Optional[nn.Module] = None
        if full_res_convs == 0:
            chs = chs[1:]  # levels 1..depth: half resolution and below
            if stem == "pool":
                first = [*ConvBNAct(in_channels, chs[0]), nn.MaxPool2d(2)]
            else:
                first = [
                    nn.Conv2d(in_channels, chs[0], 2, 2, bias=False),
                    nn.BatchNorm2d(chs[0]),
                    nn.ReLU(inplace=True),
                ]
            self.stem = nn.Sequential(*first, ConvBNAct(chs[0], chs[0]))
            self.shuffle = nn.PixelShuffle(2)
            if fine:
                self.fine = nn.Conv2d(chs[0], num_classes, 1)
            n_out, levels = 4 * num_classes, depth - 1
        else:
            self.stem = _DoubleConv(in_channels, chs[0], full_res_convs)
            n_out, levels = num_classes, depth
        self.down = nn.ModuleList(_DoubleConv(chs[i], chs[i + 1]) for i in range(levels))
        self.pool = nn.MaxPool2d(2)
        self.drop = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        # the full-resolution block (i == 0 with a full-resolution level) has full_res_convs
        self.up = nn.ModuleList(
            _DoubleConv(
                chs[i + 1] + chs[i], chs[i], full_res_convs if full_res_convs and i == 0 else 2
            )
            for i in range(levels)
        )
        self.head = nn.Conv2d(chs[0], n_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = None
        if self.fine is not None:  # keep the full-resolution stem features for the logits
            f = self.stem[:3](x)
            skips = [self.stem[3:](f)]
        else:
            skips = [self.stem(x)]
        for block in self.down:
            skips.append(block(self.pool(skips[-1])))
        y = self.drop(skips.pop())
        for block in reversed(self.up):
            s = skips.pop()
            y = block(torch.cat([upsample_to(y, s, self.up_mode), s], 1))
        y = self.shuffle(self.head(y))
        return y if f is None else y + self.fine(f)

    def logit_bias_slices(self) -> tuple[nn.Conv2d, int]:
        """The convolution whose bias adds to the logits, and its channels per class
        (DepthToSpace puts 4 head channels into one class's 2x2 block)."""
        return self.head, 4 if isinstance(self.shuffle, nn.PixelShuffle) else 1


class _InvertedResidual(nn.Module):
    def __init__(self, cin, k, exp, cout, act, stride, dilation=1):
        super().__init__()
        layers: list[nn.Module] = []
        if exp != cin:
            layers.append(ConvBNAct(cin, exp, 1, act=act))
        layers.append(ConvBNAct(exp, exp, k, stride, groups=exp, dilation=dilation, act=act))
        layers.append(ConvBNAct(exp, cout, 1, act="none"))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.block(x)
        return x + y if self.residual else y


# kernel, expansion, out, activation, stride — MobileNetV3-Small without squeeze-excite
# (SE's per-channel gating costs latency on Jetson for little gain at this size).
_MBV3_SMALL = [
    [(3, 16, 16, "relu", 2)],  # stride 4
    [(3, 72, 24, "relu", 2), (3, 88, 24, "relu", 1)],  # stride 8
    [
        (5, 96, 40, "hswish", 2),
        (5, 240, 40, "hswish", 1),
        (5, 240, 40, "hswish", 1),
        (5, 120, 48, "hswish", 1),
        (5, 144, 48, "hswish", 1),
    ],  # stride 16
    [(5, 288, 96, "hswish", 1), (5, 576, 96, "hswish", 1), (5, 576, 96, "hswish", 1)],
]


class MobileNetV3LRASPP(nn.Module):
    def __init__(
        self,
        num_classes: int,
        width: float = 1.0,
        head_channels: int = 128,
        dropout: float = 0.1,
        in_channels: int = 3,
    ):
        super().__init__()
        c = _ch(16 * width)
        self.stem = ConvBNAct(in_channels, c, 3, 2, act="hswish")  # stride 2
        stages = []
        for i, stage in enumerate(_MBV3_SMALL):
            blocks = []
            for k, e, o, act, s in stage:
                o, e = _ch(o * width), _ch(e * width)
                # last stage: dilation instead of a stride (keeps output stride 16)
                blocks.append(_InvertedResidual(c, k, e, o, act, s, 2 if i == 3 else 1))
                c = o
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        c4, c8, c16 = (_ch(v * width) for v in (16, 24, 96))
        h = head_channels
        self.cbr = ConvBNAct(c16, h, 1)
        self.scale = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c16, h, 1), nn.Sigmoid())
        self.drop = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.high_cls = nn.Conv2d(h, num_classes, 1)
        self.s8_cls = nn.Conv2d(c8, num_classes, 1)
        # stride-4 refinement: thin structures vanish at stride 8
        self.s4 = ConvBNAct(c4 + num_classes, 32, 3)
        self.s4_cls = nn.Conv2d(32, num_classes, 1)
        self.stem_skip = ConvBNAct(self.stem[0].out_channels, 16, 3)
        self.out = nn.Conv2d(16 + num_classes, num_classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s2 = self.stem(x)
        s4 = self.stages[0](s2)
        s8 = self.stages[1](s4)
        s16 = self.stages[3](self.stages[2](s8))
        y = self.cbr(s16) * self.scale(s16)
        y = self.high_cls(self.drop(y))
        y = upsample_to(y, s8) + self.s8_cls(s8)
        y = upsample_to(y, s4)
        y = y + self.s4_cls(self.s4(torch.cat([s4, y], 1)))
        y = upsample_to(y, s2)
        y = self.out(torch.cat([self.stem_skip(s2), y], 1))
        return upsample_to(y, x)

    def logit_bias_slices(self) -> tuple[nn.Conv2d, int]:
        """The last convolution (a bilinear resize after it keeps a constant bias)."""
        return self.out, 1


def _timm_unet(num_classes: int, **kw) -> nn.Module:
    # lazy: importing edgeseg.train never imports timm (the optional [zoo] extra)
    from edgeseg.train.zoo import TimmUNet

    return TimmUNet(num_classes, **kw)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "unet": UNet,
    "mbv3_lraspp": MobileNetV3LRASPP,
    "timm_unet": _timm_unet,
}

#: Constructor arguments that only initialise a model (a local weights file). The trained
#: checkpoint supersedes them: a run's ``meta`` leaves them out, so export/eval rebuild the
#: architecture without reading (or needing) the file.
INIT_ONLY_KWARGS = ("weights",)


def arch_kwargs(kw: dict) -> dict:
    """``kw`` without :data:`INIT_ONLY_KWARGS`: what rebuilds the architecture."""
    return {k: v for k, v in kw.items() if k not in INIT_ONLY_KWARGS}


def model_names() -> list[str]:
    return sorted(MODELS)


def create_model(name: str, num_classes: int, **kw) -> nn.Module:
    """A fresh model ``name`` with ``num_classes`` outputs; ``kw`` go to its constructor."""
    if name not in MODELS:
        raise TrainingError(f"unknown model {name!r}; available models: {', '.join(model_names())}")
    if num_classes < 2:
        raise TrainingError(f"a segmentation model needs at least 2 classes, got {num_classes}")
    try:
        return MODELS[name](num_classes, **kw)
    except TypeError as e:
        raise TrainingError(f"model {name!r}: bad argument ({e})") from None
