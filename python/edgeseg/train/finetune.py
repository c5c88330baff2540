"""Starting a run from trained weights: ``edgeseg train --init RUN|model.pt|starter:NAME`` and
the fine-tuning knobs (encoder learning-rate multiplier, frozen BatchNorm statistics).

``--init`` takes a run directory (its ``best.pt``), a checkpoint file (``best.pt``,
``last.pt``, a starter's ``weights.pt``) or ``starter:NAME`` (a model shipped with the
package, :mod:`edgeseg.starters`). The run adopts the checkpoint's architecture (model and
its arguments); every tensor is copied except the class-dependent ones (the classifier
rows), which are matched **by class name**: a class of the new dataset that the checkpoint
knows gets its rows, a new class keeps the fresh initialisation (the head grows). Which
tensors depend on the class count is found by building the architecture once more with
another class count and comparing shapes, so this works for every model, including heads
that emit several logits per class (DepthToSpace).

From a run or a checkpoint (one's own model, the label loop) the old classes must all be
there, first and in the old order, new classes after them: a deployed model's class indices
(and rules, dashboards, PLC tags built on them) stay valid, and a class that vanished from
the merged labels (renamed in the labelling tool, a typo) is an error naming it instead of
a silently dropped class. From a starter model (transfer to one's own classes) classes the
dataset lacks are dropped and the order is the dataset's.

:func:`compare_val` scores the init model and the new one on the old model's val split
(``--compare-val DIR``, or the dataset in the init run's ``config.yaml``), so a regression
on what the old model knew shows before deployment.

A checkpoint of another architecture (another model, other widths) is refused with the
first tensor that does not fit; nothing is half-loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from torch import nn

from edgeseg.errors import TrainingError
from edgeseg.train.models import arch_kwargs, create_model

__all__ = [
    "ENCODER_PREFIXES",
    "adopt_architecture",
    "check_class_order",
    "compare_val",
    "freeze_bn_stats",
    "load_init",
    "param_groups",
    "read_init",
]

#: parameter-name prefixes of each model's encoder (what ``encoder_lr_mult`` and
#: ``freeze_bn="encoder"`` act on); the rest is the decoder and head
ENCODER_PREFIXES = {
    "timm_unet": ("encoder.",),
    "unet": ("stem.", "down."),
    "mbv3_lraspp": ("stem.", "stages."),
}


def read_init(spec: str) -> tuple[Path, dict, dict]:
    """``(path, state_dict, meta)`` of an ``--init`` value (run dir, checkpoint, starter)."""
    from edgeseg.starters import is_starter, starter_file
    from edgeseg.train.checkpoint import load_checkpoint

    try:
        path = starter_file(spec, "weights") if is_starter(spec) else Path(spec).expanduser()
    except Exception as e:  # ModelError: an unknown starter name
        raise TrainingError(f"--init {spec}: {e}") from None
    if path.is_dir():
        path = path / "best.pt"
    if not path.is_file():
        raise TrainingError(
            f"--init {spec}: {path} does not exist; give a run directory (with best.pt), a "
            "checkpoint file (best.pt, last.pt, weights.pt) or starter:NAME"
        )
    if path.suffix.lower() == ".onnx":
        raise TrainingError(
            f"--init {spec}: an exported ONNX model holds no trainable checkpoint; give the "
            "run directory or its best.pt"
        )
    state, meta = load_checkpoint(path)
    return path, state, meta


def adopt_architecture(cfg, meta: dict, source: str, model_given: bool) -> None:
    """Set ``cfg.model``/``cfg.model_kwargs`` to the checkpoint's architecture. A model or
    architecture argument the user set that differs from the checkpoint's is an error."""
    init_model = meta.get("model")
    if model_given and cfg.model != init_model:
        raise TrainingError(
            f"--init {source} is a {init_model!r} model, not --model {cfg.model!r}: fine-tuning "
            f"keeps the architecture; drop --model (or pass --model {init_model})"
        )
    init_kw = dict(meta.get("model_kwargs") or {})
    init_kw.pop("dropout", None)  # not a tensor shape: this run's --dropout applies
    clash = {
        k: (v, init_kw.get(k))
        for k, v in arch_kwargs(cfg.model_kwargs).items()
        if k != "dropout" and k in init_kw and init_kw[k] != v
    }
    if clash:
        k, (given, init) = next(iter(clash.items()))
        raise TrainingError(
            f"--init {source} was trained with {k}={init!r}, this run asks for {k}={given!r}: "
            "fine-tuning keeps the architecture; drop the setting"
        )
    cfg.model = init_model
    extra = {k: v for k, v in cfg.model_kwargs.items() if k not in init_kw}
    cfg.model_kwargs = {**init_kw, **extra}


def _class_tensors(model_name: str, kw: dict, num_classes: int, state: dict) -> dict[str, int]:
    """``{tensor name: outputs per class}`` of the tensors whose first dimension scales with
    the class count (found by building the model with one class more)."""
    probe = create_model(model_name, num_classes + 1, **arch_kwargs(kw)).state_dict()
    out = {}
    for k, v in state.items():
        p = probe.get(k)
        if p is not None and v.ndim and tuple(p.shape) != tuple(v.shape):
            per = p.shape[0] - v.shape[0]
            if per > 0 and v.shape[0] == per * num_classes and p.shape[1:] == v.shape[1:]:
                out[k] = per
    return out


def load_init(
    model: nn.Module,
    model_name: str,
    kw: dict,
    classes: list[dict],
    state: dict,
    meta: dict,
    source: str,
    keep_classes: Optional[bool] = None,
) -> dict:
    """Copy the checkpoint ``state`` into ``model`` (in place; see the module doc) and return
    the report: ``{"source", "tensors", "class_tensors", "matched", "new", "dropped"}``.

    ``keep_classes`` (default: on unless ``source`` is a starter model) requires every old
    class, first and in the old order (:func:`check_class_order`); off, classes are matched
    by name in any order and the missing ones dropped."""
    target = model.state_dict()
    new_names = [c["name"] for c in classes]
    old_names = [c["name"] for c in meta.get("classes") or []]
    what = f"--init {source} ({meta.get('model')} {meta.get('model_kwargs')})"
    from edgeseg.starters import is_starter

    if keep_classes if keep_classes is not None else not is_starter(source):
        check_class_order(old_names, new_names, f"--init {source}")
    per_class = _class_tensors(model_name, kw, len(new_names), target)
    for k, t in target.items():
        if k not in state:
            if k.endswith("num_batches_tracked"):
                continue
            raise TrainingError(
                f"{what}: the checkpoint has no tensor {k!r} of this {model_name} model; it "
                "is a checkpoint of another architecture"
            )
        if k in per_class:
            per = per_class[k]
            if state[k].shape[0] != per * len(old_names) or state[k].shape[1:] != t.shape[1:]:
                raise TrainingError(
                    f"{what}: class tensor {k!r} has shape {tuple(state[k].shape)} in the "
                    f"checkpoint, expected {per} x {len(old_names)} classes by "
                    f"{tuple(t.shape[1:])}; it is a checkpoint of another architecture"
                )
        elif tuple(state[k].shape) != tuple(t.shape):
            raise TrainingError(
                f"{what}: tensor {k!r} has shape {tuple(state[k].shape)} in the checkpoint "
                f"and {tuple(t.shape)} in this model; it is a checkpoint of another "
                "architecture (fine-tuning keeps the architecture: drop --width/--model)"
            )
    matched = [n for n in new_names if n in old_names]
    with torch.no_grad():
        for k, t in target.items():
            if k not in state:
                continue
            src = state[k].to(t.dtype)
            if k not in per_class:
                t.copy_(src)
                continue
            per = per_class[k]
            for i, name in enumerate(new_names):
                if name in old_names:
                    j = old_names.index(name)
                    t[i * per : (i + 1) * per] = src[j * per : (j + 1) * per]
    model.load_state_dict(target)
    return {
        "source": source,
        "tensors": len(target),
        "class_tensors": sorted(per_class),
        "matched": matched,
        "new": [n for n in new_names if n not in old_names],
        "dropped": [n for n in old_names if n not in new_names],
    }


def check_class_order(old: list[str], new: list[str], what: str = "--init") -> None:
    """Raise TrainingError unless ``new`` is ``old`` (same order) plus classes appended."""
    import difflib

    gone = [n for n in old if n not in new]
    if gone:
        added = [n for n in new if n not in old]
        hints = []
        for g in gone:
            close = difflib.get_close_matches(g, added, n=1)
            if close:
                hints.append(f"{close[0]!r} looks like a renamed {g!r}")
        raise TrainingError(
            f"{what}: the model's class(es) {gone} are not in this dataset's class map "
            f"({new}){' (' + '; '.join(hints) + ')' if hints else ''}. Fine-tuning keeps "
            "every class of the model: restore the name in the labels, or keep the class in "
            "classes.yaml / the CVAT labels even where no pixel has it"
        )
    if new[: len(old)] != old:
        among = [n for n in new[: len(old)] if n not in old]
        raise TrainingError(
            f"{what}: the dataset orders the model's classes as "
            f"{[n for n in new if n in old]}{f' and puts {among} among them' if among else ''}"
            f"; the model's order is {old}. Keep the old classes first, in that "
            "order (ids 0.. in classes.yaml, the label order in CVAT), and new classes after "
            "them, so that the deployed class indices stay valid"
        )


def init_val_data(spec: str) -> Optional[str]:
    """The dataset of the run behind ``--init spec`` (its ``config.yaml``), when it still
    exists; None for starters, bare checkpoints without a run around them, moved data."""
    from edgeseg._yaml import load_yaml_file
    from edgeseg.starters import is_starter

    if is_starter(spec):
        return None
    p = Path(spec).expanduser()
    run = p if p.is_dir() else p.parent
    conf = run / "config.yaml"
    if not conf.is_file():
        return None
    try:
        data = (load_yaml_file(conf, TrainingError, "training config") or {}).get("data")
    except (TrainingError, AttributeError):
        return None
    return str(data) if data and Path(str(data)).exists() else None


def compare_val(
    init: str, new_run: Path, data: str, split: str = "val", regression: float = 0.02
) -> dict:
    """mIoU and per-class IoU of the init model and the new ``best.pt`` on ``data``'s
    ``split`` (the old model's classes): ``{"data", "split", "images", "old_miou",
    "new_miou", "gain", "per_class": {name: {"old", "new", "gain"}}, "regressions":
    [classes whose IoU fell by more than ``regression``]}``."""
    from edgeseg.data import open_dataset
    from edgeseg.train.evaluate import evaluate

    ds = open_dataset(data)
    if split not in ds.split_sizes():
        raise TrainingError(f"--compare-val {data}: no {split} split; give a dataset with one")
    path, _, _ = read_init(init)
    old = evaluate(path, ds, split, device="auto")
    new = evaluate(Path(new_run) / "best.pt", ds, split, device="auto")
    per = {}
    for name, o in old["per_class_iou"].items():
        n = new["per_class_iou"].get(name)
        per[name] = {
            "old": o,
            "new": n,
            "gain": None if o is None or n is None else round(n - o, 4),
        }
    return {
        "data": str(data),
        "split": split,
        "images": old.get("num_images"),
        "old_miou": old["miou"],
        "new_miou": new["miou"],
        "gain": None if None in (old["miou"], new["miou"]) else round(new["miou"] - old["miou"], 4),
        "per_class": per,
        "regressions": [
            k for k, v in per.items() if v["gain"] is not None and v["gain"] < -regression
        ],
    }


def compare_note(rep: dict) -> str:
    """Lines for the log: old vs new mIoU on the old val split, regressions named."""
    if rep["gain"] is None:
        return f"old val split ({rep['data']}, {rep['split']}): no class could be scored"
    lines = [
        f"old val split ({rep['data']}, {rep['split']}): mIoU {rep['old_miou']:.4f} -> "
        f"{rep['new_miou']:.4f} ({rep['gain']:+.4f})"
    ]
    for k, v in rep["per_class"].items():
        if v["gain"] is not None:
            lines.append(f"  {k:<16} {v['old']:.3f} -> {v['new']:.3f} ({v['gain']:+.3f})")
    if rep["regressions"]:
        lines.append(f"REGRESSION on the old val split: {', '.join(rep['regressions'])}")
    return "\n".join(lines)


def init_note(report: dict) -> str:
    """One line for the training log."""
    parts = [
        f"--init {report['source']}: loaded {report['tensors']} tensors",
        f"classes matched by name: {', '.join(report['matched']) or 'none'}",
    ]
    if report["new"]:
        parts.append(f"new (fresh head rows): {', '.join(report['new'])}")
    if report["dropped"]:
        parts.append(f"not in this dataset (dropped): {', '.join(report['dropped'])}")
    return "; ".join(parts)


def _is_encoder(model_name: str, name: str) -> bool:
    return name.startswith(ENCODER_PREFIXES.get(model_name, ()))


def param_groups(
    model: nn.Module, model_name: str, weight_decay: float, encoder_lr_mult: float = 1.0
) -> list[dict]:
    """AdamW parameter groups: weight decay on weights (not on biases and norms), and the
    encoder's learning rate scaled by ``encoder_lr_mult`` (``lr_mult`` in each group; 0
    freezes the encoder)."""
    groups: dict[tuple, list] = {}
    split = encoder_lr_mult != 1.0  # otherwise the two groups of a plain run (resume-compatible)
    for n, p in model.named_parameters():
        enc = split and _is_encoder(model_name, n)
        if enc and encoder_lr_mult == 0:
            p.requires_grad_(False)
            continue
        groups.setdefault((p.ndim <= 1, enc), []).append(p)
    return [
        {
            "params": ps,
            "weight_decay": 0.0 if no_decay else weight_decay,
            "lr_mult": encoder_lr_mult if enc else 1.0,
        }
        for (no_decay, enc), ps in sorted(groups.items())
    ]


def freeze_bn_stats(model: nn.Module, model_name: str, which: str) -> int:
    """Put the BatchNorm layers of ``which`` (``encoder`` or ``all``; ``none``: nothing) in
    eval mode, so training keeps their running statistics (their scale and shift still
    train). Call after every ``model.train()``. Returns how many layers it froze."""
    if which == "none":
        return 0
    n = 0
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and (
            which == "all" or _is_encoder(model_name, name + ".")
        ):
            m.eval()
            n += 1
    return n


def encoder_split(model: nn.Module, model_name: str) -> Optional[tuple[int, int]]:
    """``(encoder parameters, all parameters)`` counts, for the log."""
    enc = sum(p.numel() for n, p in model.named_parameters() if _is_encoder(model_name, n))
    return enc, sum(p.numel() for p in model.parameters())
