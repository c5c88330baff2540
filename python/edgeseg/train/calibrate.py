"""Class-prior calibration: per-class logit offsets fitted on the training images.

Training shifts the model's class priors on purpose: class weights make a rare defect cost
more than background, and defect-centred crops show defects far more often than the camera
will. Both help the thin, rare classes get learned at all, but the argmax of the trained
model then paints every class that was up-weighted too generously (a halo around stains,
stains on clean texture). The standard remedy is *logit adjustment*: add a constant offset
``b_c`` to each class's logit. :func:`fit_logit_offsets` chooses the offsets that maximise
mIoU on the training images at deployment scale (whole frames, not crops), by coordinate
descent over a grid; :func:`fold_logit_offsets` adds them to the bias of the model's last
convolution, so the exported ONNX file, the int8 model and the TensorRT engine carry the
correction with no extra node.

One coordinate step is exact and cheap: with every other offset fixed, a pixel takes class
``c`` exactly when ``logit_c + b_c`` exceeds the best other class, i.e. when ``b_c`` is above
the pixel's margin ``d = max_{k != c}(logit_k + b_k) - logit_c``. Binning the margins on the
grid gives the confusion matrix of every grid value from one pass over the pixels.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from edgeseg.metrics import ConfusionMatrix, iou_from_matrix

__all__ = ["fit_logit_offsets", "fold_logit_offsets", "miou_of", "DEFAULT_GRID"]

#: offsets tried for each class, in logits (background, class 0, stays at 0)
DEFAULT_GRID = np.round(np.arange(-4.0, 4.0001, 0.25), 4)


def _miou_rows(cms: np.ndarray) -> np.ndarray:
    """mIoU of each ``(C, C)`` confusion matrix of the stack ``cms``, skipping classes absent
    from both truth and prediction (the mean :class:`ConfusionMatrix` takes)."""
    iou = iou_from_matrix(cms)
    n = (~np.isnan(iou)).sum(-1)
    return np.where(n > 0, np.nansum(iou, -1) / np.maximum(n, 1), np.nan)


def miou_of(logits: np.ndarray, target: np.ndarray, offsets: Optional[np.ndarray] = None) -> float:
    """mIoU of ``argmax(logits + offsets)`` against ``target`` (``(P, C)`` and ``(P,)``), as
    :class:`edgeseg.metrics.ConfusionMatrix` scores it."""
    z = logits if offsets is None else logits + np.asarray(offsets, logits.dtype)
    return ConfusionMatrix(logits.shape[1]).update(z.argmax(1), target).miou()


def fit_logit_offsets(
    logits: np.ndarray,
    target: np.ndarray,
    grid: np.ndarray = DEFAULT_GRID,
    passes: int = 2,
) -> tuple[np.ndarray, float, float]:
    """``(offsets, miou_before, miou_after)`` for pixels ``logits`` ``(P, C)`` float with
    class indices ``target`` ``(P,)`` (no ignored pixels). Class 0 is the anchor (offset 0);
    each other class takes the grid value that maximises mIoU given the rest, ``passes``
    times over the classes. Ties go to the smaller offset magnitude, so a class the data does
    not inform stays at 0."""
    logits = np.ascontiguousarray(logits, np.float32)
    p, c = logits.shape
    if p == 0 or c < 2:
        return np.zeros(c, np.float32), float("nan"), float("nan")
    target = np.asarray(target, np.int64).ravel()
    if target.shape[0] != p:
        raise ValueError(f"target has {target.shape[0]} pixels, logits {p}")
    grid = np.asarray(grid, np.float64)
    g = grid.size
    order = np.argsort(np.abs(grid), kind="stable")  # preference on ties: small |offset|
    b = np.zeros(c, np.float32)
    before = miou_of(logits, target)
    rows = np.arange(p)
    for _ in range(max(1, passes)):
        changed = False
        for k in range(1, c):
            z = logits + b
            z[:, k] = -np.inf
            other = z.argmax(1)
            margin = z[rows, other] - logits[:, k]
            # at grid index j the pixel is class k iff grid[j] > margin, i.e. j >= first
            first = np.searchsorted(grid, margin, side="right")
            h_other = np.bincount(
                (first * c + target) * c + other, minlength=(g + 1) * c * c
            ).reshape(g + 1, c, c)
            h_k = np.bincount(first * c + target, minlength=(g + 1) * c).reshape(g + 1, c)
            # grid index j: pixels with first <= j are class k, the rest keep `other`
            as_k = np.cumsum(h_k, 0)[:g]
            keep = h_other.sum(0)[None] - np.cumsum(h_other, 0)[:g]
            cms = keep.copy()
            cms[:, :, k] += as_k
            scores = _miou_rows(cms)
            scores = np.where(np.isnan(scores), -1.0, scores)
            best = order[np.argmax(scores[order])]
            if grid[best] != b[k]:
                b[k], changed = grid[best], True
        if not changed:
            break
    return b, before, miou_of(logits, target, b)


def fold_logit_offsets(model, offsets) -> None:
    """Add ``offsets`` (one per class) to the model's logits by changing the bias of its last
    convolution (``model.logit_bias_slices()`` says which bias entries feed which class).
    A model without that method raises ``TypeError``."""
    import torch

    slices = getattr(model, "logit_bias_slices", None)
    if slices is None:
        raise TypeError(f"{type(model).__name__} does not expose its logit bias")
    offsets = torch.as_tensor(np.asarray(offsets, np.float32))
    conv, per_class = slices()
    if conv.bias is None:
        raise TypeError(f"{type(model).__name__}: the last convolution has no bias")
    n = offsets.numel()
    if conv.bias.numel() != n * per_class:
        raise ValueError(
            f"{n} offsets for a head of {conv.bias.numel()} channels ({per_class} per class)"
        )
    with torch.no_grad():
        conv.bias += offsets.to(conv.bias).repeat_interleave(per_class)


def collect_pixels(
    logits_fn,
    loader,
    num_classes: int,
    per_image: int,
    seed: int = 0,
    ignore_index: int = 255,
    progress=None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(logits (P, C) float32, target (P,) int64)``: a uniform random sample of about
    ``per_image`` labelled pixels of each image (all of a smaller one). ``loader`` yields
    ``(images, masks)`` as the validation loader does; ``logits_fn(images, shapes)`` returns
    one ``(C, H, W)`` array per mask, at the mask's size (what evaluation scores)."""
    rng = np.random.default_rng(seed)
    out_l, out_t = [], []
    for images, masks in loader:
        for lg, m in zip(logits_fn(images, [mk.shape for mk in masks]), masks):
            t = np.asarray(m).ravel()
            pick = np.flatnonzero(t != ignore_index)
            if pick.size > per_image:
                pick = pick[rng.random(pick.size) < per_image / pick.size]
            out_l.append(lg.reshape(num_classes, -1)[:, pick].T.astype(np.float32))
            out_t.append(t[pick].astype(np.int64))
        if progress is not None:
            progress.update(len(masks))
    if not out_l:
        return np.zeros((0, num_classes), np.float32), np.zeros(0, np.int64)
    return np.concatenate(out_l), np.concatenate(out_t)


#: at most this many training images and labelled pixels go into the fit
MAX_IMAGES = 300
MAX_PIXELS = 4_000_000


def calibration_seconds(per_image_s: float, n_train: int, num_classes: int) -> float:
    """A generous estimate of :func:`calibrate_checkpoint`'s time: inference over the sampled
    training images and the validation split twice, plus the fit."""
    n = min(n_train, MAX_IMAGES)
    fit = 2e-9 * MAX_PIXELS * num_classes * max(1, num_classes - 1) * 2
    return 1.5 * per_image_s * n + fit + 2.0


def calibrate_checkpoint(
    ckpt,
    train_ds,
    val_ds,
    size: int,
    device,
    batch: int = 8,
    seed: int = 0,
    progress: bool = False,
    log=print,
) -> dict:
    """Fit logit offsets for the model in ``ckpt`` (a ``best.pt``) on ``train_ds`` and fold
    them into it when the val mIoU does not drop; returns what ``metrics.json`` records.

    The offsets add to those a previous calibration folded into the same file (``meta
    ["logit_offsets"]``), so ``--resume`` can calibrate again."""
    import time
    from pathlib import Path

    import torch
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from edgeseg.train import data as tdata
    from edgeseg.train.checkpoint import atomic_save, build_model_from_meta, read_checkpoint
    from edgeseg.train.distributed import Dist
    from edgeseg.train.predict import predict_logits, validate

    t0 = time.monotonic()
    ckpt = Path(ckpt)
    ck = read_checkpoint(ckpt)
    meta = ck["meta"]
    names = [c["name"] for c in meta["classes"]]
    num_classes = int(meta["num_classes"])
    model = build_model_from_meta(meta)
    if getattr(model, "logit_bias_slices", None) is None:
        log(f"calibration skipped: model {meta['model']} does not expose its logit bias")
        return {"applied": False, "reason": f"model {meta['model']} has no logit bias"}
    model.load_state_dict(ck["state_dict"])
    model = model.to(device).to(memory_format=torch.channels_last).eval()
    mean = torch.tensor(meta["mean"], device=device).view(1, 3, 1, 1)
    std = torch.tensor(meta["std"], device=device).view(1, 3, 1, 1)
    rng = np.random.default_rng(seed)
    n = min(len(train_ds), MAX_IMAGES)
    pick = np.sort(rng.choice(len(train_ds), n, replace=False)) if n < len(train_ds) else None
    cal_ds = train_ds.subset(pick.tolist()) if pick is not None else train_ds

    def loader(ds):
        return DataLoader(tdata.ValSet(ds, size), batch_size=batch, collate_fn=tdata.collate_val)

    def logits_fn(images, shapes):
        return [
            lg[0].cpu().numpy() for lg in predict_logits(model, images, shapes, mean, std, device)
        ]

    with tqdm(total=n, desc="calibrate", unit="img", disable=not progress, leave=False) as bar:
        logits, target = collect_pixels(
            logits_fn,
            loader(cal_ds),
            num_classes,
            MAX_PIXELS // n,
            seed,
            int(meta.get("ignore_index", 255)),
            bar,
        )
    offsets, train_before, train_after = fit_logit_offsets(logits, target)
    del logits, target
    single = Dist()
    vl = loader(val_ds)
    val_before = validate(model, vl, num_classes, mean, std, device, single).miou()
    record = {
        "images": n,
        "offsets": {k: float(v) for k, v in zip(names, offsets)},
        "train_miou_before": train_before,
        "train_miou_after": train_after,
        "val_miou_before": val_before,
    }
    if not offsets.any():
        record.update(applied=False, val_miou_after=val_before, reason="all offsets 0")
    else:
        fold_logit_offsets(model, offsets)
        val_after = validate(model, vl, num_classes, mean, std, device, single).miou()
        record["val_miou_after"] = val_after
        record["applied"] = bool(val_after >= val_before)
        if not record["applied"]:
            record["reason"] = "val mIoU would drop"
        else:
            prev = np.asarray(
                [meta.get("logit_offsets", {}).get(k, 0.0) for k in names], np.float32
            )
            meta = {
                **meta,
                "val_miou": val_after,
                "val_miou_uncalibrated": meta.get("val_miou_uncalibrated", val_before),
                "logit_offsets": {k: float(v) for k, v in zip(names, prev + offsets)},
            }
            state = {k: v.cpu() for k, v in model.state_dict().items()}
            atomic_save({"state_dict": state, "meta": meta}, ckpt)
    record["seconds"] = round(time.monotonic() - t0, 2)
    shown = ", ".join(f"{k} {v:+g}" for k, v in record["offsets"].items())
    log(
        f"calibration ({n} train images, {record['seconds']:.1f} s): logit offsets {shown}; "
        f"val mIoU {val_before:.4f} -> {record['val_miou_after']:.4f}"
        + ("" if record["applied"] else f", not applied ({record['reason']})")
    )
    return record
