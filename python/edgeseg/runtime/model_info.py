"""What the runtime needs to know about a model, read from the model itself.

Classes, colours, mean/std, input size, resize mode and channel order come from the ONNX
file's edgeseg metadata (``edgeseg export``) or from the engine's manifest
(``edgeseg build``) — never from the user's memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Union

from edgeseg.errors import ModelError
from edgeseg.runtime.result import ClassInfo
from edgeseg.starters import resolve_model_path

__all__ = ["ModelInfo", "load_model_info"]

_RESIZE_MODES = ("stretch", "letterbox")


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


def _classes(raw, num_classes, path: Path) -> tuple[ClassInfo, ...]:
    if not isinstance(raw, list) or not raw:
        raise ModelError(f"{path}: the model's class list is missing or empty; re-export it")
    out = []
    for k, c in enumerate(raw):
        try:
            color = tuple(int(v) for v in c.get("color", (0, 0, 0)))
            out.append(ClassInfo(index=k, id=int(c.get("id", k)), name=str(c["name"]), color=color))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ModelError(
                f"{path}: class entry {k} is malformed ({c!r}); expected "
                '{"id", "name", "color"}; re-export the model'
            ) from None
    if num_classes is not None and int(num_classes) != len(out):
        raise ModelError(
            f"{path}: metadata says {num_classes} classes but lists {len(out)} "
            f"({[c.name for c in out]}); the file was edited or exported wrongly — re-export it"
        )
    return tuple(out)


def _from_meta(meta: dict, path: Path, kind: str) -> ModelInfo:
    size = meta.get("input_size")
    mean, std = meta.get("mean"), meta.get("std")
    if not size or mean is None or std is None:
        raise ModelError(
            f"{path}: the model lacks input_size/mean/std metadata; re-export it with "
            "`edgeseg export`"
        )
    resize = str(meta.get("resize", "stretch")).lower()
    if resize not in _RESIZE_MODES:
        raise ModelError(f"{path}: unknown resize mode {resize!r}; expected {_RESIZE_MODES}")
    order = str(meta.get("channel_order", "RGB")).lower()
    if order not in ("rgb", "bgr"):
        raise ModelError(f"{path}: unknown channel_order {order!r}; expected RGB or BGR")
    return ModelInfo(
        path=path,
        kind=kind,
        classes=_classes(meta.get("classes"), meta.get("num_classes"), path),
        input_size=(int(size[0]), int(size[1])),
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        channel_order=order,
        resize=resize,
        dynamic_batch=bool(meta.get("dynamic_batch", False)),
        model=str(meta.get("model", "")),
    )


def load_model_info(path: Union[str, Path]) -> ModelInfo:
    """The :class:`ModelInfo` of an ``.onnx`` (its metadata) or ``.engine`` (its manifest);
    ``starter:NAME`` names a model shipped with the package (:mod:`edgeseg.starters`)."""
    p = resolve_model_path(path)
    if not p.exists():
        raise ModelError(
            f"{p}: no such model file; pass an .onnx from `edgeseg export` or an .engine "
            "from `edgeseg build`"
        )
    if p.suffix in (".engine", ".plan", ".trt"):
        from edgeseg.engine.builder import load_manifest

        m, _ = load_manifest(p)  # missing, unreadable or foreign manifests raise ModelError
        meta = dict(m.get("preprocessing") or {})
        meta["classes"] = m.get("classes")
        meta["num_classes"] = m.get("num_classes")
        meta["model"] = m.get("model")
        return _from_meta(meta, p, "engine")
    from edgeseg.export.metadata import read_onnx_metadata

    return _from_meta(read_onnx_metadata(p), p, "onnx")
