"""Pairing files, split lists and class maps: the steps every file-based reader shares.

* :func:`index` — relative key (no suffix) → file under a folder; ambiguous names and
  foreign files become findings.
* :func:`pair` — images with labels by key; an image without a label (``missing_mask``) and
  a label without an image (``missing_image``) become findings.
* :func:`read_split_files` — ``train.txt`` / ``val.txt`` / ... lists; a list that is exactly
  the union of two or more others (Pascal VOC's ``trainval.txt``) is a union, not a split,
  and is neither a conflict nor a split of its own.
* :func:`class_map` — the given map, the dataset's ``classes.yaml`` or one inferred from the
  labels (with a ``no_class_map`` warning); :func:`infer_classes` infers from mask files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from edgeseg.data import files
from edgeseg.data.classes import VOC_VOID_COLOR, VOID, ClassInfo, ClassMap, default_color
from edgeseg.data.records import Sample, finding
from edgeseg.errors import DatasetError

__all__ = ["class_map", "index", "infer_classes", "pair", "read_split_files", "split_files_in"]

_IGNORED_NAMES = {"thumbs.db", "desktop.ini"}


def index(folder: Path, exts: Sequence[str], what: str, issues: list[dict]) -> dict[str, str]:
    """Relative key (no suffix) → file; ambiguous keys and foreign files become findings."""
    found: dict[str, list[Path]] = {}
    if not folder.is_dir():
        return {}
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or p.name.startswith(".") or p.name.lower() in _IGNORED_NAMES:
            continue
        if p.suffix.lower() not in exts:
            issues.append(
                finding(
                    "ignored_file",
                    str(p),
                    f"not a supported {what} type ({', '.join(exts)}); convert or remove it",
                    "warning",
                )
            )
            continue
        key = p.relative_to(folder).with_suffix("").as_posix()
        found.setdefault(key, []).append(p)
    out = {}
    for key, paths in found.items():
        out[key] = str(paths[0])
        if len(paths) > 1:
            issues.append(
                finding(
                    "ambiguous_name",
                    str(paths[1]),
                    f"{len(paths)} {what}s share the name {key!r} "
                    f"({', '.join(p.name for p in paths)}); using {paths[0].name}, rename or "
                    "remove the others",
                )
            )
    return out


def pair(
    images: dict[str, str], masks: dict[str, str], issues: list[dict], mask_dir: str, img_dir: str
) -> list[Sample]:
    samples = []
    for key, img in images.items():
        if key in masks:
            samples.append(Sample(key, img, masks[key], "mask"))
        else:
            issues.append(
                finding("missing_mask", img, f"no mask {mask_dir}/{key}.png; label it or remove it")
            )
    for key, mask in masks.items():
        if key not in images:
            issues.append(
                finding(
                    "missing_image",
                    mask,
                    f"no image {img_dir}/{key}.* for this mask; add it or remove the mask",
                )
            )
    return samples


def split_files_in(folder: Path, lower: bool = False) -> dict[str, Path]:
    """``{split name: list file}`` for the ``*.txt`` files in ``folder`` (none if absent)."""
    if not folder.is_dir():
        return {}
    return {(p.stem.lower() if lower else p.stem): p for p in folder.glob("*.txt")}


def _resolve_lists(
    samples: list[Sample], split_files: dict[str, Path]
) -> dict[str, list[tuple[int, str, Optional[Sample]]]]:
    by_key = {s.key: s for s in samples}
    by_stem: dict[str, list[Sample]] = {}
    for s in samples:
        by_stem.setdefault(s.key.rsplit("/", 1)[-1], []).append(s)
    out: dict[str, list[tuple[int, str, Optional[Sample]]]] = {}
    for name, path in sorted(split_files.items()):
        # surrogateescape: names that are not UTF-8 match the files' names as Python sees them
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
        rows = out.setdefault(name, [])
        for lineno, raw in enumerate(text.splitlines(), 1):
            entry = raw.strip()
            if not entry or entry.startswith("#"):
                continue
            entry = entry.split()[0]
            s = by_key.get(entry) or by_key.get(str(Path(entry).with_suffix("").as_posix()))
            if s is None and len(by_stem.get(entry, [])) == 1:
                s = by_stem[entry][0]
            rows.append((lineno, entry, s))
    return out


def _unions(rows: dict[str, list[tuple[int, str, Optional[Sample]]]]) -> set[str]:
    """Lists whose entries are exactly the union of two or more other lists."""
    keys = {n: {s.key for _, _, s in r if s is not None} for n, r in rows.items()}
    unknown = {n: any(s is None for _, _, s in r) for n, r in rows.items()}
    out = set()
    for name, ks in keys.items():
        parts = [o for o, oks in keys.items() if o != name and oks and oks <= ks and oks != ks]
        if len(parts) >= 2 and not unknown[name] and set().union(*(keys[o] for o in parts)) == ks:
            out.add(name)
    return out


def read_split_files(
    samples: list[Sample], split_files: dict[str, Path], issues: list[dict]
) -> None:
    """Set ``sample.split`` from the list files; problems become ``split_mismatch`` findings."""
    rows = _resolve_lists(samples, split_files)
    unions = _unions(rows)
    assigned: dict[str, str] = {}
    for name, entries in rows.items():
        if name in unions:
            continue
        path = split_files[name]
        for lineno, entry, s in entries:
            if s is None:
                issues.append(
                    finding(
                        "split_mismatch",
                        f"{path}:{lineno}",
                        f"{entry!r} matches no labelled image; fix the name or delete the line",
                        "warning",
                    )
                )
                continue
            if s.key in assigned and assigned[s.key] != name:
                issues.append(
                    finding(
                        "split_mismatch",
                        f"{path}:{lineno}",
                        f"{s.key!r} is in both {assigned[s.key]} and {name}; evaluation would "
                        "see training data, keep it in one split",
                    )
                )
                continue
            assigned[s.key] = name
            s.split = name
    splits = sorted(n for n in split_files if n not in unions)
    if splits:
        for s in samples:
            if s.split is None:
                issues.append(
                    finding(
                        "split_mismatch",
                        s.image or s.label,
                        f"{s.key!r} is in none of the split files ({', '.join(splits)}); "
                        "add it to one",
                        "warning",
                    )
                )


def infer_classes(mask_paths: list[str], palette_is_ids: bool, root: Path) -> ClassMap:
    """Class map from the values found in the masks (names class_<id>)."""
    ids: set[int] = set()
    colors: set[tuple] = set()
    palette = None
    for p in mask_paths:
        try:
            im = files.read_mask_image(p)
        except DatasetError:
            continue  # reported by QA as unreadable
        if palette_is_ids and im.mode in ("P", "L", "1", "I", "I;16", "I;16B", "I;16L", "LA"):
            if im.mode == "P" and palette is None:
                palette = im.getpalette()
            arr = np.asarray(im.convert("L") if im.mode == "LA" else im)
            ids.update(np.unique(arr).tolist())
        else:
            rgb = np.asarray(im.convert("RGB")).reshape(-1, 3)
            colors.update(map(tuple, np.unique(rgb, axis=0).tolist()))
    source = f"{root} (classes inferred from masks; add classes.yaml to name them)"
    if ids and colors:
        raise DatasetError(
            f"{root}: masks mix class-id and colour images and there is no classes.yaml; "
            "add classes.yaml with {id, name, color} for every class"
        )
    if colors:
        colors.discard(VOC_VOID_COLOR)
        ordered = sorted(colors, key=lambda c: (c != (0, 0, 0), c))
        infos = [
            ClassInfo(i, "background" if c == (0, 0, 0) and i == 0 else f"class_{i}", c)
            for i, c in enumerate(ordered)
        ]
        return ClassMap(infos, source=source)
    ids.discard(VOID)
    ids = ids or {0}
    infos = []
    used = set()
    for i in sorted(ids):
        color = default_color(i)
        if palette is not None and i < 256:
            color = tuple(palette[3 * i : 3 * i + 3])
        if color in used:
            color = default_color(i)
        used.add(color)
        infos.append(ClassInfo(i, "background" if i == 0 else f"class_{i}", color))
    try:
        return ClassMap(infos, source=source)
    except DatasetError:
        return ClassMap(
            [ClassInfo(c.id, c.name, default_color(c.id)) for c in infos], source=source
        )


def class_map(
    root: Path, given: Optional[ClassMap], fallback: Callable[[], ClassMap], issues: list[dict]
) -> ClassMap:
    """``given``, else ``root/classes.yaml``, else ``fallback()`` with a ``no_class_map``
    warning."""
    if given is not None:
        return given
    if (root / "classes.yaml").is_file():
        return ClassMap.load(root / "classes.yaml")
    cm = fallback()
    issues.append(
        finding(
            "no_class_map",
            str(root),
            f"no classes.yaml; using {len(cm)} classes inferred from the labels "
            f"({', '.join(cm.names[:8])}{'...' if len(cm) > 8 else ''}); write classes.yaml "
            "to fix names, colours and ids",
            "warning",
        )
    )
    return cm
