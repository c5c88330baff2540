"""What the runtime needs to know about a model, read from the model itself.

Classes, colours, mean/std, input size, resize mode and channel order come from the ONNX
file's edgeseg metadata (``edgeseg export``) or from the engine's manifest
(``edgeseg build``) — never from the user's memory.

Every field is checked when the model opens, so a damaged or hand-edited file fails here
with a :class:`~edgeseg.errors.ModelError` naming the file, the field, the value and the
fix, instead of loading and then failing (or silently mis-counting) on every frame.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from edgeseg._text import short
from edgeseg.errors import ModelError
from edgeseg.runtime.result import ClassInfo
from edgeseg.starters import resolve_model_path

__all__ = ["MAX_INPUT_PIXELS", "MAX_INPUT_SIDE", "ModelInfo", "load_model_info"]

_RESIZE_MODES = ("stretch", "letterbox")
_CHANNEL_ORDERS = ("rgb", "bgr")
_LAYOUTS = ("NCHW",)
#: Largest network input side and area accepted from metadata (pixels).
MAX_INPUT_SIDE = 16384
MAX_INPUT_PIXELS = 64 * 1024 * 1024
_MAX_CLASSES = 256  # class maps are uint8
_CHANNELS = 3  # frames are H×W×3

#: most characters of a metadata value quoted in an error
_QUOTE = 60


@dataclass(frozen=True)
class ModelInfo:
    """The deployment contract of one model file."""

    path: Path
    kind: str  # "onnx" | "engine"
    classes: tuple[ClassInfo, ...]
    input_size: tuple[int, int]  # (H, W)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    channel_order: str  # "rgb" | "bgr"
    resize: str  # "stretch" | "letterbox"
    dynamic_batch: bool
    model: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]


class _Check:
    """Raises the ModelError of one field of one file, with the fix for its kind."""

    def __init__(self, path: Path, kind: str) -> None:
        self.path = path
        self.fix = (
            "rebuild the engine with `edgeseg build MODEL.onnx` from a model re-exported with "
            "`edgeseg export`"
            if kind == "engine"
            else "re-export the model with `edgeseg export`"
        )
        self.where = "engine manifest" if kind == "engine" else "metadata"

    def fail(self, field: str, value: Any, expected: str) -> ModelError:
        return ModelError(
            f"{self.path}: {self.where} {field} = {short(value, _QUOTE)} is invalid: expected "
            f"{expected}; the file was damaged or edited — {self.fix}"
        )


def _int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v))


def _classes(raw: Any, num_classes: Any, ck: _Check) -> tuple[ClassInfo, ...]:
    if not isinstance(raw, list) or not raw:
        raise ck.fail("classes", raw, 'a non-empty list of {"id", "name", "color"}')
    if len(raw) > _MAX_CLASSES:
        raise ck.fail("classes", f"<{len(raw)} entries>", f"at most {_MAX_CLASSES} classes")
    out, names, ids = [], {}, {}
    for k, c in enumerate(raw):
        field = f"classes[{k}]"
        if not isinstance(c, dict) or "name" not in c:
            raise ck.fail(field, c, '{"id": int, "name": str, "color": [r, g, b]}')
        name, cid, color = c["name"], c.get("id", k), c.get("color", [0, 0, 0])
        if not isinstance(name, str) or not name.strip():
            raise ck.fail(f"{field}.name", name, "a non-empty string")
        if not _int(cid) or not 0 <= cid < 2**31:
            raise ck.fail(f"{field}.id", cid, "an int in 0..2³¹-1")
        ok = isinstance(color, (list, tuple)) and len(color) == 3
        if not ok or not all(_int(v) and 0 <= v <= 255 for v in color):
            raise ck.fail(f"{field}.color", color, "three ints 0..255 (RGB)")
        if name in names:
            raise ck.fail(
                f"{field}.name", name, f"a name no other class has (classes[{names[name]}])"
            )
        if cid in ids:
            raise ck.fail(f"{field}.id", cid, f"an id no other class has (classes[{ids[cid]}])")
        names[name], ids[cid] = k, k
        out.append(ClassInfo(index=k, id=int(cid), name=name, color=tuple(int(v) for v in color)))
    if num_classes is not None:
        if not _int(num_classes) or num_classes != len(out):
            raise ck.fail("num_classes", num_classes, f"{len(out)}, the length of the class list")
    return tuple(out)


def _vector(meta: dict, key: str, ck: _Check, positive: bool) -> tuple[float, ...]:
    v = meta.get(key)
    ok = isinstance(v, (list, tuple)) and len(v) == _CHANNELS and all(_real(x) for x in v)
    if not ok or (positive and not all(float(x) > 0 for x in v)):
        kind = "finite numbers > 0" if positive else "finite numbers"
        raise ck.fail(key, v, f"a list of {_CHANNELS} {kind} (one per input channel)")
    return tuple(float(x) for x in v)


def _input_size(v: Any, ck: _Check) -> tuple[int, int]:
    expected = (
        f"[height, width], two ints in 1..{MAX_INPUT_SIDE} with at most "
        f"{MAX_INPUT_PIXELS // 2**20} Mpx"
    )
    if not isinstance(v, (list, tuple)) or len(v) != 2 or not all(_int(x) for x in v):
        raise ck.fail("input_size", v, expected)
    h, w = int(v[0]), int(v[1])
    if not (0 < h <= MAX_INPUT_SIDE and 0 < w <= MAX_INPUT_SIDE) or h * w > MAX_INPUT_PIXELS:
        raise ck.fail("input_size", v, expected)
    return h, w


def _choice(meta: dict, key: str, default: str, valid: tuple[str, ...], ck: _Check) -> str:
    v = meta.get(key, default)
    if not isinstance(v, str) or v.lower() not in tuple(x.lower() for x in valid):
        raise ck.fail(key, v, f"one of {list(valid)}")
    return v.lower()


def _from_meta(meta: Any, path: Path, kind: str) -> ModelInfo:
    ck = _Check(path, kind)
    if not isinstance(meta, dict):
        raise ck.fail("(the whole)", meta, "a mapping of fields")
    missing = [k for k in ("input_size", "mean", "std", "classes") if meta.get(k) is None]
    if missing:
        raise ModelError(
            f"{path}: the model lacks {', '.join(missing)} in its {ck.where}; {ck.fix}"
        )
    classes = _classes(meta.get("classes"), meta.get("num_classes"), ck)
    input_size = _input_size(meta.get("input_size"), ck)
    mean = _vector(meta, "mean", ck, positive=False)
    std = _vector(meta, "std", ck, positive=True)
    resize = _choice(meta, "resize", "stretch", _RESIZE_MODES, ck)
    order = _choice(meta, "channel_order", "RGB", ("RGB", "BGR"), ck)
    _choice(meta, "layout", "NCHW", _LAYOUTS, ck)
    dyn = meta.get("dynamic_batch", False)
    if not isinstance(dyn, bool):
        raise ck.fail("dynamic_batch", dyn, "true or false")
    model = meta.get("model") or ""
    return ModelInfo(
        path=path,
        kind=kind,
        classes=classes,
        input_size=input_size,
        mean=mean,
        std=std,
        channel_order=order,
        resize=resize,
        dynamic_batch=dyn,
        model=model if isinstance(model, str) else short(model, _QUOTE),
    )


def load_model_info(path: Union[str, Path]) -> ModelInfo:
    """The :class:`ModelInfo` of an ``.onnx`` (its metadata) or ``.engine`` (its manifest);
    ``starter:NAME`` names a model shipped with the package (:mod:`edgeseg.starters`).

    Raises :class:`~edgeseg.errors.ModelError` naming the file, the field and the fix when
    the file is missing or unreadable or any field is malformed (see the module doc).
    """
    p = resolve_model_path(path)
    if not p.exists():
        raise ModelError(
            f"{p}: no such model file; pass an .onnx from `edgeseg export` or an .engine "
            "from `edgeseg build`"
        )
    if p.suffix in (".engine", ".plan", ".trt"):
        from edgeseg.engine.manifest import load_manifest

        m, _ = load_manifest(p)  # missing, unreadable or foreign manifests raise ModelError
        pre = m.get("preprocessing")
        if pre is not None and not isinstance(pre, dict):
            raise _Check(p, "engine").fail("preprocessing", pre, "a mapping")
        meta = dict(pre or {})
        meta["classes"] = m.get("classes")
        meta["num_classes"] = m.get("num_classes")
        meta["model"] = m.get("model")
        return _from_meta(meta, p, "engine")
    from edgeseg.onnx_metadata import read_onnx_metadata

    return _from_meta(read_onnx_metadata(p), p, "onnx")
