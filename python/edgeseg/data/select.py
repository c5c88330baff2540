"""Pick the frames worth labelling: ``edgeseg data select SRC --model M --n 100 --by ...``.

Every image of ``SRC`` (a folder, recursively, or an NG archive of the camera loop) runs
through the model once; from its logits (:meth:`Segmenter.logits`, at the network's
resolution) come

* ``mean_confidence`` / ``min_confidence`` — the top-1 softmax probability, mean and minimum
  over the pixels;
* ``mean_margin`` — top-1 minus top-2 probability, the mean over the pixels (small: the model
  hesitates between two classes);
* ``rare_area`` — the share of the image predicted as one of the rare classes (given, or the
  classes other than the first whose predicted area over the whole pool is below half an
  even share of the non-background pixels);
* ``disagreement`` — the share of pixels whose class changes between the model and a second
  model (``model2``), or, without one, between the image and its mirror image (predicted
  on the flipped image and flipped back).

``--by`` ranks by ``uncertainty`` (lowest ``mean_margin`` first), ``disagreement`` (highest
first) or ``rare-class`` (highest ``rare_area`` first). Walking down the ranking, an image
whose perceptual hash (:mod:`edgeseg.data.phash`) is within ``max_distance`` bits of one
already picked is skipped as a near duplicate (a line stopping twice on the same part
should not cost two labels). The ``n`` picked images are copied to ``OUT`` with
``selection.csv`` (rank, name, source, the scores, the hash, the near duplicates skipped
for it), ready for ``edgeseg predict M OUT --save cvat``.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

import numpy as np

from edgeseg.data.convert import clear_destination
from edgeseg.data.phash import DEFAULT_MAX_DISTANCE, hamming, phash
from edgeseg.errors import DatasetError, EdgesegError

__all__ = ["CRITERIA", "image_scores", "select"]

CRITERIA = ("uncertainty", "disagreement", "rare-class")
_COLUMNS = (
    "rank",
    "name",
    "source",
    "score",
    "mean_confidence",
    "min_confidence",
    "mean_margin",
    "rare_area",
    "disagreement",
    "phash",
    "near_duplicates",
)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=0, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=0, keepdims=True)
    return z


def image_scores(logits: np.ndarray) -> dict:
    """Confidence, margin and per-class area shares of one image's C×h×w logits."""
    lg = np.asarray(logits, np.float32)
    if not np.isfinite(lg).all():
        raise EdgesegError("the model's logits are not finite for this image")
    p = _softmax(lg.copy())
    if p.shape[0] >= 2:
        top2 = np.partition(p, p.shape[0] - 2, axis=0)[-2:]
        top1, second = top2[1], top2[0]
    else:
        top1, second = p[0], np.zeros_like(p[0])
    cmap = lg.argmax(axis=0)
    area = np.bincount(cmap.ravel(), minlength=lg.shape[0]) / cmap.size
    return {
        "mean_confidence": float(top1.mean()),
        "min_confidence": float(top1.min()),
        "mean_margin": float((top1 - second).mean()),
        "area": area,
        "class_map": cmap,
    }


def _flip_disagreement(seg, frame: np.ndarray, cmap: np.ndarray) -> float:
    flipped = seg.logits(np.ascontiguousarray(frame[:, ::-1])).argmax(axis=0)[:, ::-1]
    return float((flipped != cmap).mean())


def _model_disagreement(seg2, remap: np.ndarray, frame: np.ndarray, cmap: np.ndarray) -> float:
    other = remap[seg2.logits(frame).argmax(axis=0)]
    if other.shape != cmap.shape:
        import cv2

        other = cv2.resize(
            other.astype(np.uint8), cmap.shape[::-1], interpolation=cv2.INTER_NEAREST
        )
    return float((other != cmap).mean())


def _rare(names: list[str], total_area: np.ndarray, given: Optional[Sequence[str]]) -> list[int]:
    if given:
        bad = [g for g in given if g not in names]
        if bad:
            raise DatasetError(
                f"--rare: {bad} not among the model's classes {names}; name classes of the model"
            )
        return [names.index(g) for g in given]
    fg = total_area[1:]
    if fg.sum() <= 0 or len(fg) == 0:
        return []
    fair = fg.sum() / len(fg)
    return [i + 1 for i, a in enumerate(fg) if a < 0.5 * fair]


def select(
    src: Union[str, Path, Sequence[Union[str, Path]]],
    model: Union[str, Path],
    out: Union[str, Path],
    n: int = 100,
    by: str = "uncertainty",
    model2: Union[str, Path, None] = None,
    rare: Optional[Sequence[str]] = None,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    backend: str = "auto",
    threads: Optional[int] = None,
    overwrite: bool = False,
    progress: bool = False,
) -> dict:
    """Rank the images of ``src`` and copy the ``n`` best to ``out`` (see the module doc).

    Returns:
        ``{"out", "by", "rare_classes", "images", "selected": [rows of selection.csv],
        "near_duplicates_skipped", "failed": [{"image", "error"}]}``.

    Raises:
        DatasetError: A bad ``by``/``n``/``rare``, models with different classes, an
            ``out`` that is not empty, no readable image in ``src``.
    """
    import cv2
    from tqdm import tqdm

    from edgeseg.runtime.cli import collect_inputs, input_names
    from edgeseg.runtime.segmenter import Segmenter

    if by not in CRITERIA:
        raise DatasetError(f"--by {by!r}: choose one of {', '.join(CRITERIA)}")
    if int(n) < 1:
        raise DatasetError(f"--n {n}: pick at least one image")
    if not 0 <= int(max_distance) <= 64:
        raise DatasetError(f"--max-distance {max_distance}: a number of bits 0..64")
    out = Path(out)
    clear_destination(out, overwrite)
    paths = collect_inputs([str(s) for s in ([src] if isinstance(src, (str, Path)) else src)])
    names = input_names(paths)
    seg = Segmenter(model, backend=backend, threads=threads, confidence=False)
    seg2, remap = None, None
    if model2 is not None:
        seg2 = Segmenter(model2, backend=backend, threads=threads, confidence=False)
        if sorted(seg2.class_names) != sorted(seg.class_names):
            raise DatasetError(
                f"--model2 {model2}: classes {seg2.class_names} differ from {model}'s "
                f"{seg.class_names}; compare two models of the same classes"
            )
        remap = np.array([seg.class_names.index(c) for c in seg2.class_names], np.int64)
    rows, failed, areas = [], [], []
    bar = tqdm(list(zip(paths, names)), unit="img", desc="scoring", disable=not progress)
    for path, name in bar:
        try:
            frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if frame is None:
                raise EdgesegError(f"{path}: not a readable image (corrupt or unsupported)")
            s = image_scores(seg.logits(frame))
            dis = None
            if by == "disagreement":
                dis = (
                    _model_disagreement(seg2, remap, frame, s["class_map"])
                    if seg2 is not None
                    else _flip_disagreement(seg, frame, s["class_map"])
                )
        except (EdgesegError, OSError) as e:
            failed.append({"image": str(path), "error": str(e)})
            continue
        areas.append(s["area"])
        rows.append(
            {
                "name": name,
                "source": str(path),
                "mean_confidence": round(s["mean_confidence"], 6),
                "min_confidence": round(s["min_confidence"], 6),
                "mean_margin": round(s["mean_margin"], 6),
                "disagreement": None if dis is None else round(dis, 6),
                "phash": f"{phash(frame):016x}",
            }
        )
    if not rows:
        raise DatasetError(
            f"{src}: no image could be scored"
            + (f" (first error: {failed[0]['error']})" if failed else "")
        )
    total = np.sum(areas, axis=0)
    rare_ids = _rare(seg.class_names, total, rare)
    for r, a in zip(rows, areas):
        r["rare_area"] = round(float(sum(a[i] for i in rare_ids)), 6)
    key = {
        "uncertainty": lambda r: (r["mean_margin"], r["name"]),
        "disagreement": lambda r: (-r["disagreement"], r["name"]),
        "rare-class": lambda r: (-r["rare_area"], r["mean_margin"], r["name"]),
    }[by]
    score_of = {
        "uncertainty": lambda r: round(1.0 - r["mean_margin"], 6),
        "disagreement": lambda r: r["disagreement"],
        "rare-class": lambda r: r["rare_area"],
    }[by]
    picked: list[dict] = []
    skipped = 0
    for r in sorted(rows, key=key):
        h = int(r["phash"], 16)
        twin = next((p for p in picked if hamming(int(p["phash"], 16), h) <= max_distance), None)
        if twin is not None:
            twin["near_duplicates"].append(r["name"])
            skipped += 1
            continue
        if len(picked) < int(n):
            picked.append({**r, "near_duplicates": []})
    out.mkdir(parents=True, exist_ok=True)
    for rank, r in enumerate(picked, 1):
        r["rank"] = rank
        r["score"] = score_of(r)
        shutil.copyfile(r["source"], out / f"{r['name']}{Path(r['source']).suffix.lower()}")
    with open(out / "selection.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=_COLUMNS)
        w.writeheader()
        for r in picked:
            w.writerow(
                {
                    **{k: r.get(k) for k in _COLUMNS},
                    "disagreement": "" if r["disagreement"] is None else r["disagreement"],
                    "near_duplicates": " ".join(r["near_duplicates"]),
                }
            )
    return {
        "out": str(out),
        "by": by,
        "rare_classes": [seg.class_names[i] for i in rare_ids],
        "images": len(paths),
        "selected": picked,
        "near_duplicates_skipped": skipped,
        "failed": failed,
    }
