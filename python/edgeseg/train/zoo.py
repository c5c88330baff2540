"""``timm_unet``: a `timm <https://github.com/huggingface/pytorch-image-models>`_ encoder with a
light UNet decoder (the optional ``[zoo]`` extra: ``pip install 'edgeseg[zoo]'``).

The encoder is ``timm.create_model(encoder, features_only=True, pretrained=False)``: timm itself
never downloads anything. Pretrained weights come from ``weights=``: ``"imagenet"`` (timm's
default pretrained tag of the encoder, fetched with ``huggingface_hub`` into its cache —
``HF_HUB_OFFLINE=1`` reads only the cache, ``HF_ENDPOINT`` names a mirror; without network
and cache the error names the cache folder to fill) or a local file: a ``.pth``/``.pt`` state
dict (possibly nested under
``"state_dict"`` or ``"model"``, keys possibly prefixed ``module.``) or a ``.safetensors`` file,
e.g. a timm *classification* checkpoint of the same encoder — its classifier tensors are
ignored, every encoder tensor must be in the file (a file of another architecture is refused
instead of half-loaded). ``model.encoder_weights`` reports what was loaded.

The decoder: from the deepest feature map up, bilinear upsample to the next skip, concat,
two conv-bn-relu; a last conv-bn-relu at the input resolution, dropout and a 1×1 classifier
give ``N×C×H×W`` logits. With the default encoder (``resnet18``) the exported graph holds
only Conv, Relu, MaxPool, Add, Resize and Concat (BatchNorm folded at export).
``mobilenetv3_large_100`` is lighter (3.0 M encoder parameters against 11.2 M) but its
squeeze-excite blocks add ReduceMean, HardSigmoid, HardSwish and Mul to the graph.

Importing this module does not import timm; building the model does.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

from edgeseg._hub import PRETRAINED, hub_weights
from edgeseg.errors import TrainingError
from edgeseg.train.blocks import ConvBNAct, upsample_to

__all__ = ["DEFAULT_ENCODER", "PRETRAINED", "TimmUNet", "hub_weights", "load_encoder_weights"]

DEFAULT_ENCODER = "resnet18"
#: decoder width per stage, deepest first; the last one is the full-resolution stage
DEFAULT_DECODER_CHANNELS = (128, 64, 48, 32, 16)


def _import_timm():
    try:
        import timm
    except ImportError as e:
        raise TrainingError(
            f"model timm_unet needs timm ({e}); pip install 'edgeseg[zoo]'"
        ) from None
    except Exception as e:  # noqa: BLE001 - a broken torchvision raises RuntimeError
        raise TrainingError(
            f"timm is installed but cannot be imported ({type(e).__name__}: {e}). This is "
            f"usually a torchvision built for another torch than {torch.__version__} (e.g. a "
            "CUDA torchvision next to a CPU torch); install the torchvision matching your "
            "torch build (for torch 2.13.0+cpu: torchvision 0.28.0+cpu)"
        ) from None
    return timm


def _create_encoder(timm, encoder: str, in_channels: int) -> nn.Module:
    if not isinstance(encoder, str) or not timm.is_model(encoder):
        close = difflib.get_close_matches(str(encoder), timm.list_models(), n=5, cutoff=0.6)
        raise TrainingError(
            f"timm_unet: timm {timm.__version__} has no model {encoder!r}"
            + (f" (close: {', '.join(close)})" if close else "")
            + '; list encoders with python -c "import timm; print(timm.list_models('
            "'*mobilenet*'))\""
        )
    try:
        return timm.create_model(
            encoder, pretrained=False, features_only=True, in_chans=in_channels
        )
    except Exception as e:  # noqa: BLE001 - timm raises several types for unsupported models
        raise TrainingError(
            f"timm_unet: timm cannot build {encoder!r} as a feature extractor "
            f"(features_only=True): {type(e).__name__}: {e}"
        ) from None


def _hub_source(timm, encoder: str) -> tuple[str, str]:
    """``(repo_id, filename)`` of timm's default pretrained weights of ``encoder``."""
    cfg = timm.models.get_pretrained_cfg(encoder)
    repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not repo:
        raise TrainingError(
            f"--encoder-weights {PRETRAINED}: timm {timm.__version__} names no pretrained "
            f"weights on the Hugging Face hub for {encoder!r}; give a local weights file"
        )
    return repo, getattr(cfg, "hf_hub_filename", None) or "model.safetensors"


def _read_state_dict(path: Path) -> dict:
    if path.suffix.lower() == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise TrainingError(
                f"{path}: reading .safetensors needs the safetensors package (comes with "
                "timm); pip install safetensors"
            ) from None
        try:
            return load_file(str(path), device="cpu")
        except Exception as e:  # noqa: BLE001
            raise TrainingError(f"{path}: not a readable .safetensors file ({e})") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise TrainingError(
            f"{path}: not a readable state dict ({type(e).__name__}: {str(e)[:200]}); "
            "give a .pth/.pt state dict or a .safetensors file"
        ) from None
    for _ in range(3):  # {"state_dict": {...}}, {"model": {...}}, nested once more
        if isinstance(obj, dict):
            inner = next(
                (obj[k] for k in ("state_dict", "model") if isinstance(obj.get(k), dict)), None
            )
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, dict):
        raise TrainingError(
            f"{path}: holds a {type(obj).__name__}, not a state dict (a mapping of tensor "
            "names to tensors, possibly under 'state_dict' or 'model')"
        )
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def _few(keys, n: int = 5) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def load_encoder_weights(encoder: nn.Module, path: Union[str, Path], name: str = "") -> dict:
    """Load the local state dict ``path`` into the timm feature extractor ``encoder`` (in
    place) and return ``{"path", "loaded", "total", "ignored", "prefix"}``.

    Tensors of the file the encoder does not have (a classifier) are ignored and counted;
    every encoder tensor must be in the file with its shape, else :class:`TrainingError`
    names a few missing/unexpected keys and nothing is loaded. ``num_batches_tracked``
    counters may be absent."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise TrainingError(
            f"timm_unet weights {p}: no such file (give a local .pth/.pt/.safetensors state "
            "dict; nothing is downloaded)"
        )
    src = _read_state_dict(p)
    if not src:
        raise TrainingError(f"{p}: the file holds no tensors")
    target = encoder.state_dict()
    # a DDP-wrapped or edgeseg timm_unet checkpoint carries a prefix: pick the best one
    prefix = max(
        ("", "module.", "encoder.", "module.encoder."),
        key=lambda pre: sum(k[len(pre) :] in target for k in src if k.startswith(pre)),
    )
    src = {k[len(prefix) :]: v for k, v in src.items() if k.startswith(prefix)}
    common = [k for k in target if k in src]
    bad_shape = [k for k in common if tuple(src[k].shape) != tuple(target[k].shape)]
    missing = [k for k in target if k not in src and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in src if k not in target]
    what = f"timm_unet weights {p} for encoder {name or type(encoder).__name__}"
    if not common:
        raise TrainingError(
            f"{what}: no tensor name matches the encoder; the encoder has e.g. "
            f"{_few(target)}; the file has e.g. {_few(src)}. Is it a checkpoint of this "
            "timm model?"
        )
    if missing or bad_shape:
        first = next(k for k in target if k in missing or k in bad_shape)
        parts = [
            f"first mismatching tensor {first} ("
            + (
                f"file {tuple(src[first].shape)}, model {tuple(target[first].shape)})"
                if first in bad_shape
                else "not in the file)"
            )
        ]
        if missing:
            parts.append(
                f"{len(missing)} of {len(target)} encoder tensors missing: {_few(missing)}"
            )
        if bad_shape:
            shapes = ", ".join(
                f"{k} (file {tuple(src[k].shape)}, model {tuple(target[k].shape)})"
                for k in bad_shape[:3]
            )
            parts.append(f"{len(bad_shape)} with another shape: {shapes}")
        if unexpected:
            parts.append(f"unexpected in the file: {_few(unexpected)}")
        raise TrainingError(
            f"{what}: {'; '.join(parts)}. Is it a checkpoint of this timm model (and in_channels)?"
        )
    with torch.no_grad():
        encoder.load_state_dict({k: src[k] for k in common}, strict=False)
    return {
        "path": str(p),
        "loaded": len(common),
        "total": len(target),
        "ignored": len(unexpected),
        "prefix": prefix,
    }


class TimmUNet(nn.Module):
    """A timm feature-extractor encoder and a light UNet decoder (see the module doc).

    ``encoder``: a timm model name; ``weights``: a local state-dict file for the encoder
    (never downloaded; ``None``: random init); ``decoder_channels``: widths of the decoder
    stages, deepest first, one per encoder level (an int: all the same)."""

    def __init__(
        self,
        num_classes: int,
        encoder: str = DEFAULT_ENCODER,
        weights: Optional[str] = None,
        decoder_channels: Union[int, Sequence[int], None] = None,
        dropout: float = 0.1,
        in_channels: int = 3,
    ):
        super().__init__()
        timm = _import_timm()
        self.encoder = _create_encoder(timm, encoder, in_channels)
        chs = list(self.encoder.feature_info.channels())
        n = len(chs)
        if decoder_channels is None:
            dec = list(DEFAULT_DECODER_CHANNELS[-n:])
            dec = [DEFAULT_DECODER_CHANNELS[0]] * (n - len(dec)) + dec
        elif isinstance(decoder_channels, int):
            dec = [decoder_channels] * n
        else:
            dec = [int(c) for c in decoder_channels]
        if len(dec) != n or min(dec) < 1:
            raise TrainingError(
                f"timm_unet decoder_channels {decoder_channels!r}: give {n} positive widths "
                f"(deepest first), one per level of {encoder} (channels {chs}), or one int"
            )
        # stage i fuses the upsampled deeper map with skip level n-2-i; the last stage runs
        # at the input resolution without a skip
        blocks, cin = [], chs[-1]
        for i, skip in enumerate(reversed(chs[:-1])):
            blocks.append(nn.Sequential(ConvBNAct(cin + skip, dec[i]), ConvBNAct(dec[i], dec[i])))
            cin = dec[i]
        self.decoder = nn.ModuleList(blocks)
        self.final = ConvBNAct(cin, dec[-1])
        self.drop = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Conv2d(dec[-1], num_classes, 1)
        self.encoder_name = encoder
        self.encoder_weights: Optional[dict] = None
        #: one line for the training log (the trainer prints it)
        self.init_note: Optional[str] = None
        if weights == PRETRAINED:
            weights = hub_weights(*_hub_source(timm, encoder))
        if weights is not None:
            self.encoder_weights = load_encoder_weights(self.encoder, weights, encoder)
            r = self.encoder_weights
            self.init_note = (
                f"timm_unet: loaded {r['loaded']}/{r['total']} encoder tensors of {encoder} "
                f"from {r['path']}"
                + (f" ({r['ignored']} other tensors of the file ignored)" if r["ignored"] else "")
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(x)
        y = feats[-1]
        for block, skip in zip(self.decoder, reversed(feats[:-1])):
            y = block(torch.cat([upsample_to(y, skip), skip], 1))
        y = self.final(upsample_to(y, x))
        return self.head(self.drop(y))

    def logit_bias_slices(self) -> tuple[nn.Conv2d, int]:
        """The 1x1 head, whose bias adds to the logits."""
        return self.head, 1
