"""Starter models shipped inside the package: ``starter:NAME`` wherever a model is named.

Each starter is a folder ``edgeseg/starters/NAME/`` with

* ``model.onnx`` — the exported model with its metadata (what ``edgeseg predict``, ``Segmenter``
  and ``CameraLoop`` run),
* ``weights.pt`` — the trained checkpoint (``{"state_dict", "meta"}``, the layout of a run's
  ``best.pt``) that ``edgeseg train --init starter:NAME`` fine-tunes from,
* ``card.json`` — how it was made: the data (generator, task, count, size, seed and the data
  hash the trainer recorded), the training settings, its val/test mIoU and the SHA-256 of
  both files.

``tools/train_starters.py`` trains and writes them, seeded, on :mod:`edgeseg.data.synth`
data or the accuracy suite's photographed patterns (:mod:`edgeseg.data.suite`). This module
is deploy code: it reads package files only (no torch, no training code).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Union

from edgeseg.errors import ModelError

__all__ = [
    "PREFIX",
    "is_starter",
    "list_starters",
    "resolve_model_path",
    "starter_card",
    "starter_dir",
    "starter_file",
]

#: ``starter:defects`` names the shipped model ``defects``
PREFIX = "starter:"
_ROOT = Path(__file__).resolve().parent
_FILES = {"onnx": "model.onnx", "weights": "weights.pt", "card": "card.json"}


def is_starter(spec) -> bool:
    """Whether ``spec`` is a ``starter:NAME`` reference (a string, not a path object)."""
    return isinstance(spec, str) and spec.startswith(PREFIX)


def list_starters() -> list[str]:
    """The names of the starter models installed with this package."""
    return sorted(p.name for p in _ROOT.iterdir() if (p / _FILES["card"]).is_file())


def starter_dir(name: str) -> Path:
    """The folder of starter ``name`` (``defects`` or ``starter:defects``)."""
    if is_starter(name):
        name = name[len(PREFIX) :]
    names = list_starters()
    if name not in names:
        raise ModelError(
            f"{PREFIX}{name}: no such starter model; installed starters: "
            f"{', '.join(PREFIX + n for n in names) or 'none (the package data is missing)'}"
        )
    return _ROOT / name


def starter_file(name: str, kind: str = "onnx") -> Path:
    """The path of one file of a starter: ``kind`` is ``onnx``, ``weights`` or ``card``."""
    if kind not in _FILES:
        raise ValueError(f"kind {kind!r}: choose one of {', '.join(_FILES)}")
    p = starter_dir(name) / _FILES[kind]
    if not p.is_file():
        raise ModelError(
            f"{PREFIX}{p.parent.name}: {p} is missing from the installed package; reinstall "
            "edgeseg (the wheel carries it as package data)"
        )
    return p


def starter_card(name: str, verify: bool = False) -> dict:
    """The card of a starter (see the module doc). ``verify``: also check both files against
    the SHA-256 the card records (:class:`ModelError` on a mismatch)."""
    p = starter_file(name, "card")
    try:
        card = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise ModelError(f"{p}: unreadable starter card ({e})") from None
    if verify:
        for kind, want in (card.get("sha256") or {}).items():
            f = starter_file(name, kind)
            got = hashlib.sha256(f.read_bytes()).hexdigest()
            if got != want:
                raise ModelError(
                    f"{f}: SHA-256 {got[:16]}… differs from the card's {want[:16]}…; the "
                    "installed file is damaged, reinstall edgeseg"
                )
    return card


def resolve_model_path(model: Union[str, Path], kind: str = "onnx") -> Path:
    """``starter:NAME`` -> the starter's file of ``kind``; any other value -> ``Path(model)``."""
    if is_starter(model):
        return starter_file(str(model), kind)
    return Path(model)
