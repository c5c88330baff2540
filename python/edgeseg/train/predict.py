"""The forward pass shared by training, validation, calibration and evaluation: uint8 images
to normalized tensors, logits at each label's size, and the validation confusion matrix."""

from __future__ import annotations

import contextlib

import torch

from edgeseg.metrics import ConfusionMatrix
from edgeseg.train.distributed import Dist, all_reduce

__all__ = ["autocast", "normalize", "predict_batch", "predict_logits", "validate"]


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC RGB -> float NCHW normalized."""
    x = (x.permute(0, 3, 1, 2).float().div_(255) - mean) / std
    return x.contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def predict_logits(model, images: torch.Tensor, shapes, mean, std, device, amp=False):
    """Logits at the model size upsampled to each label's size -> list of (1, C, H, W)."""
    x = normalize(images.to(device, non_blocking=True), mean, std)
    with autocast(device, amp):
        logits = model(x)
    out = []
    for k, (h, w) in enumerate(shapes):
        lg = logits[k : k + 1].float()
        if lg.shape[-2:] != (h, w):
            lg = torch.nn.functional.interpolate(lg, (h, w), mode="bilinear", align_corners=False)
        out.append(lg)
    return out


def predict_batch(model, images: torch.Tensor, shapes, mean, std, device, amp=False):
    """Logits at the model size upsampled to each label's size -> list of HW index arrays."""
    return [
        lg.argmax(1)[0].to(torch.uint8).cpu().numpy()
        for lg in predict_logits(model, images, shapes, mean, std, device, amp)
    ]


def autocast(device: torch.device, amp: bool):
    """Mixed precision when ``amp``: float16 on CUDA, bfloat16 on the CPU."""
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    if amp and device.type == "cpu":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def validate(model, loader, num_classes, mean, std, device, d: Dist, amp=False) -> ConfusionMatrix:
    """The confusion matrix of ``model`` over ``loader`` (as the validation loader yields
    ``(images, masks)``), summed over the ranks."""
    model.eval()
    cm = ConfusionMatrix(num_classes)
    for images, masks in loader:
        preds = predict_batch(model, images, [m.shape for m in masks], mean, std, device, amp)
        for p, m in zip(preds, masks):
            cm.update(p, m.numpy())
    t = all_reduce(torch.from_numpy(cm.matrix.copy()), d)
    cm.matrix = t.numpy()
    return cm
