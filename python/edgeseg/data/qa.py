"""Label QA: the seed's labelling rules, checked over a whole dataset.

``check(path)`` decodes every image and mask (in worker processes) and returns a report::

    {"dataset": ..., "layout": ..., "num_images": n, "splits": {...},
     "classes": [{id, name, color}], "errors": [...], "warnings": [...],
     "class_pixels": {name: count}, "class_images": {name: count}, "void_pixels": count,
     "thresholds": {...}}

Each finding is ``{"kind", "file", "detail"}``. Errors (a dataset with any is not fit to
train on): ``missing_mask``, ``missing_image``, ``size_mismatch``, ``unreadable``,
``unknown_value`` (colour / id / label not in the class map, with pixel counts),
``ambiguous_name``, ``duplicate_image`` across splits (evaluation leak), ``near_duplicate``
across splits (the perceptual hashes of two images differ in at most ``max_distance`` bits:
the same scene re-encoded, re-shot or slightly shifted; evaluation would score a picture the
model trained on; the finding names both files), ``split_mismatch`` (a stem in two splits).
Warnings: ``duplicate_image`` and ``near_duplicate`` within a split, ``border_sliver`` (a
band one pixel thick along an image edge whose class differs from the solid region
beyond it: a polygon that stops short of the edge or overshoots it), ``split_classes`` (a
class labelled in val/test but never in train, which the model cannot learn, or labelled in
train but never in val, which no score measures), ``unlabeled`` (void
plus unknown pixels above ``max_unlabeled`` of an image: the seed's "gaps"),
``class_imbalance`` (pixel share below ``min_pixel_share`` or fewer than
``min_class_images`` images), ``empty_class`` (in the map, never seen), ``split_mismatch``
(stems in no split or unknown stems), ``ignored_file``, ``no_class_map``.
"""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Optional, Union

import numpy as np

from edgeseg._text import printable
from edgeseg.data.classes import VOID, ClassMap
from edgeseg.data.dataset import SegDataset, cpu_workers, finding, open_dataset
from edgeseg.data.phash import DEFAULT_MAX_DISTANCE, near_duplicates, phash
from edgeseg.errors import DatasetError

__all__ = ["check", "format_report"]

_DS: Optional[SegDataset] = None


def _init(ds: SegDataset) -> None:
    global _DS
    _DS = ds


def _check_one(ds: SegDataset, i: int, max_unlabeled: float) -> dict:
    out = {"i": i, "hash": None, "phash": None, "counts": None, "findings": []}
    try:
        item = ds.load(i)
    except DatasetError as e:
        kind = getattr(e, "kind", "unreadable")
        file = ds.label_path(i) if kind == "size_mismatch" else _which_file(ds, i, str(e))
        out["findings"].append(finding(kind, file, _strip(str(e), file)))
        return out
    except Exception as e:  # a reader bug must not hide the rest of the report
        out["findings"].append(
            finding("unreadable", ds.label_path(i), f"unexpected {type(e).__name__}: {e}")
        )
        return out
    mask = item.mask
    size = 256 if mask.dtype == np.uint8 else 65536
    counts = np.bincount(mask.ravel(), minlength=size)
    out["counts"] = {int(v): int(counts[v]) for v in np.flatnonzero(counts)}
    out["hash"] = ds.image_hash(item.image)
    out["phash"] = phash(item.image)
    for edge, (a, b), run, thin, inner in _slivers(mask):
        out["findings"].append(
            finding(
                "border_sliver",
                ds.label_path(i),
                f"a band of {ds.classes.name_of(thin)!r} {run} px long and 1 px thick runs "
                f"along the {edge} edge ({'x' if edge in ('top', 'bottom') else 'y'} {a}..{b}) "
                f"between the edge and {ds.classes.name_of(inner)!r}; the polygon stops short "
                "of the image edge or overshoots it: snap it to the edge",
                "warning",
            )
        )
    total = mask.size
    if item.unknown:
        n = sum(item.unknown.values())
        listed = ", ".join(
            f"{k}: {v} px" for k, v in sorted(item.unknown.items(), key=lambda kv: -kv[1])[:5]
        )
        more = f" and {len(item.unknown) - 5} more" if len(item.unknown) > 5 else ""
        out["findings"].append(
            finding(
                "unknown_value",
                ds.label_path(i),
                f"{n} px ({100 * n / total:.2f}%) not in the class map ({listed}{more}); add "
                f"the class to {_map_file(ds)} or repaint those pixels",
            )
        )
    for kind, detail in item.notes:  # drawn, but not exactly as the annotation said
        file = ds.label_path(i)
        out["findings"].append(finding(kind, file, _strip(detail, file), "warning"))
    void = int(counts[VOID]) if VOID < size else 0
    if total and void / total > max_unlabeled:
        out["findings"].append(
            finding(
                "unlabeled",
                ds.label_path(i),
                f"{100 * void / total:.1f}% of pixels are void or unknown (threshold "
                f"{100 * max_unlabeled:g}%); label the gaps: every pixel needs a class",
                "warning",
            )
        )
    return out


#: a border band counts as a sliver from this length on, and from this share of the edge
#: (shorter runs are where a curved object boundary passes one pixel from the edge)
SLIVER_MIN_RUN = 12
SLIVER_MIN_SHARE = 0.1


def _slivers(mask: np.ndarray) -> list[tuple[str, tuple[int, int], int, int, int]]:
    """``(edge, (first, last), length, thin class, inner class)`` of the longest sliver run
    along each edge: pixels whose edge row holds one value and the next four rows another,
    uniform one (a band one pixel thick; a region that ends two or more pixels before the
    edge is left alone, objects do that)."""
    h, w = mask.shape
    if h < 6 or w < 6:
        return []
    out = []
    for edge, b in (
        ("top", mask[:5]),
        ("bottom", mask[::-1][:5]),
        ("left", mask[:, :5].T),
        ("right", mask[:, ::-1][:, :5].T),
    ):
        sliver = (b[1] != b[0]) & (b[2] == b[1]) & (b[3] == b[1]) & (b[4] == b[1])
        n = sliver.size
        need = max(SLIVER_MIN_RUN, SLIVER_MIN_SHARE * n)
        if sliver.sum() < need:
            continue
        # the longest run of sliver pixels that keep the same pair of classes
        key = np.where(sliver, b[0].astype(np.int64) * 65536 + b[1], -1)
        change = np.flatnonzero(np.diff(key) != 0) + 1
        starts = np.concatenate([[0], change]).tolist()
        ends = np.concatenate([change, [n]]).tolist()
        runs = [(e - a, a) for a, e in zip(starts, ends) if key[a] >= 0]
        length, a = max(runs)
        if length >= need:  # flipping the other axis keeps positions along the edge
            out.append((edge, (a, a + length - 1), length, int(b[0][a]), int(b[1][a])))
    return out


def _map_file(ds: SegDataset) -> str:
    return {"cvat": "labelmap.txt", "labelme": "classes.yaml"}.get(ds.layout, "classes.yaml")


def _which_file(ds: SegDataset, i: int, message: str) -> str:
    for f in (ds.image_path(i), ds.label_path(i)):
        if message.startswith(f.split(" (")[0]):
            return f.split(" (")[0] if f.endswith("(imageData)") else f
    return ds.label_path(i)


def _strip(message: str, file: str) -> str:
    return message[len(file) + 2 :] if message.startswith(file + ": ") else message


def _check_chunk(indices: list[int], max_unlabeled: float) -> list[dict]:
    assert _DS is not None
    return [_check_one(_DS, i, max_unlabeled) for i in indices]


def check(
    dataset: Union[str, Path, SegDataset],
    classes: Union[ClassMap, str, Path, None] = None,
    workers: Optional[int] = None,
    max_unlabeled: float = 0.10,
    min_pixel_share: float = 0.001,
    min_class_images: int = 5,
    progress: bool = True,
    max_distance: int = DEFAULT_MAX_DISTANCE,
) -> dict:
    """Check every image and label of ``dataset``; returns the report (see module docstring).

    ``workers`` processes decode in parallel (default: all cores; 1 = in this process).
    ``max_distance``: perceptual-hash bits within which two images are near duplicates
    (-1 turns the near-duplicate check off).
    """
    t0 = time.perf_counter()
    ds = dataset if isinstance(dataset, SegDataset) else _open_quiet(dataset, classes)
    n = len(ds)
    workers = min(cpu_workers(workers), max(1, n))
    results: list[dict] = []
    from tqdm import tqdm

    bar = tqdm(total=n, unit="img", desc="checking", disable=not progress, leave=False)
    try:
        if workers == 1:
            for i in range(n):
                results.append(_check_one(ds, i, max_unlabeled))
                bar.update(1)
        else:
            chunk = max(1, min(64, n // (workers * 8)))
            chunks = [list(range(a, min(n, a + chunk))) for a in range(0, n, chunk)]
            with ProcessPoolExecutor(workers, initializer=_init, initargs=(ds,)) as pool:
                futures = [pool.submit(_check_chunk, c, max_unlabeled) for c in chunks]
                for fut in as_completed(futures):
                    part = fut.result()
                    results.extend(part)
                    bar.update(len(part))
    finally:
        bar.close()
    results.sort(key=lambda r: r["i"])
    report = _aggregate(ds, results, max_unlabeled, min_pixel_share, min_class_images, max_distance)
    report["seconds"] = round(time.perf_counter() - t0, 3)
    return report


def _open_quiet(path, classes) -> SegDataset:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the report lists the left-out images itself
        return open_dataset(path, classes=classes)


def _aggregate(
    ds: SegDataset,
    results: list[dict],
    max_unlabeled: float,
    min_pixel_share: float,
    min_class_images: int,
    max_distance: int = DEFAULT_MAX_DISTANCE,
) -> dict:
    findings = list(ds.issues)
    pixels: dict[int, int] = {}
    images: dict[int, int] = {}
    seen: dict[str, int] = {}
    for r in results:
        findings.extend(r["findings"])
        if r["counts"] is None:
            continue
        for v, c in r["counts"].items():
            pixels[v] = pixels.get(v, 0) + c
            images[v] = images.get(v, 0) + 1
        first = seen.setdefault(r["hash"], r["i"])
        if first != r["i"]:
            a, b = ds.samples[first], ds.samples[r["i"]]
            leak = a.split != b.split
            findings.append(
                finding(
                    "duplicate_image",
                    ds.image_path(r["i"]),
                    f"same pixels as {ds.image_path(first)}"
                    + (
                        f" (splits {a.split} and {b.split}: evaluation would score training "
                        "images); remove one"
                        if leak
                        else "; remove one, duplicates weigh their labels twice"
                    ),
                    "error" if leak else "warning",
                )
            )
    if max_distance >= 0:
        findings += _near_duplicates(ds, results, max_distance)
    findings += _split_classes(ds, results)
    class_pixels = {c.name: pixels.get(c.id, 0) for c in ds.classes}
    class_images = {c.name: images.get(c.id, 0) for c in ds.classes}
    labelled = sum(class_pixels.values())
    map_file = ds.classes.source
    for c in ds.classes:
        px, im = class_pixels[c.name], class_images[c.name]
        if px == 0:
            findings.append(
                finding(
                    "empty_class",
                    map_file,
                    f"class {c.name!r} (id {c.id}) is in the class map but no pixel has it; "
                    "label examples of it or remove it from the map",
                    "warning",
                )
            )
        elif labelled and (px / labelled < min_pixel_share or im < min_class_images):
            findings.append(
                finding(
                    "class_imbalance",
                    map_file,
                    f"class {c.name!r} (id {c.id}) has {px} px ({100 * px / labelled:.3f}% of "
                    f"labelled pixels, threshold {100 * min_pixel_share:g}%) in {im} images "
                    f"(threshold {min_class_images}); label more examples of it",
                    "warning",
                )
            )
    errors = [_public(f) for f in findings if f["severity"] == "error"]
    warns = [_public(f) for f in findings if f["severity"] != "error"]
    errors.sort(key=lambda f: (f["file"], f["kind"]))
    warns.sort(key=lambda f: (f["kind"], f["file"]))
    return {
        "dataset": printable(ds.display_root),
        "layout": ds.layout,
        "num_images": len(ds),
        "splits": ds.split_sizes(),
        "classes": [c.to_dict() for c in ds.classes],
        "errors": errors,
        "warnings": warns,
        "class_pixels": class_pixels,
        "class_images": class_images,
        "void_pixels": pixels.get(VOID, 0),
        # named void classes: their pixels are counted in void_pixels, never an error
        "ignored_classes": [c.to_dict() for c in ds.classes.ignored],
        "thresholds": {
            "max_distance": max_distance,
            "max_unlabeled": max_unlabeled,
            "min_pixel_share": min_pixel_share,
            "min_class_images": min_class_images,
        },
    }


def _near_duplicates(ds: SegDataset, results: list[dict], max_distance: int) -> list[dict]:
    """Pairs of images within ``max_distance`` pHash bits that are not byte-identical (those
    are ``duplicate_image`` already)."""
    done = [r for r in results if r["phash"] is not None]
    out = []
    for a, b, d in near_duplicates([r["phash"] for r in done], max_distance):
        ra, rb = done[a], done[b]
        if ra["hash"] == rb["hash"]:
            continue
        sa, sb = ds.samples[ra["i"]], ds.samples[rb["i"]]
        leak = sa.split != sb.split
        what = (
            f"splits {sa.split} and {sb.split}: evaluation would score a picture the model "
            "trained on; keep both in one split or remove one"
            if leak
            else "same split; near duplicates weigh their labels twice, keep the better one"
        )
        out.append(
            finding(
                "near_duplicate",
                ds.image_path(rb["i"]),
                f"looks like {ds.image_path(ra['i'])} (perceptual hashes differ in {d} of 64 "
                f"bits, threshold {max_distance}; {what})",
                "error" if leak else "warning",
            )
        )
    return out


def _split_classes(ds: SegDataset, results: list[dict]) -> list[dict]:
    """Classes labelled in one split and never in another that has images."""
    seen: dict[str, set[int]] = {}
    for r in results:
        split = ds.samples[r["i"]].split
        if r["counts"] is None or not split:
            continue
        seen.setdefault(split, set()).update(v for v, c in r["counts"].items() if c)
    train = seen.get("train")
    out = []
    if train is None:
        return out
    for c in ds.classes:
        for split, ids in sorted(seen.items()):
            if split == "train":
                continue
            if c.id in ids and c.id not in train:
                out.append(
                    finding(
                        "split_classes",
                        ds.classes.source,
                        f"class {c.name!r} (id {c.id}) is labelled in {split} but in no train "
                        "image: the model cannot learn it; move some of its images to train",
                        "warning",
                    )
                )
        if c.id in train and "val" in seen and c.id not in seen["val"]:
            out.append(
                finding(
                    "split_classes",
                    ds.classes.source,
                    f"class {c.name!r} (id {c.id}) is labelled in train but in no val image: "
                    "no validation score measures it; move some of its images to val",
                    "warning",
                )
            )
    return out


def _public(f: dict) -> dict:
    return {"kind": f["kind"], "file": f["file"], "detail": f["detail"]}


def _human(n: int) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:.1f}{unit}"
    return str(n)


def format_report(report: dict, limit: int = 20) -> str:
    """The report as text for a terminal (at most ``limit`` findings per kind)."""
    lines = []
    sp = ", ".join(f"{k} {v}" for k, v in report["splits"].items())
    lines.append(
        f"dataset  {report['dataset']}  ({report['layout']}, {report['num_images']} images"
        f"{'; ' + sp if sp else ''})"
    )
    labelled = sum(report["class_pixels"].values()) or 1
    width = max([len(c["name"]) for c in report["classes"]] + [5])
    lines.append(f"  {'id':>5}  {'class':<{width}}  {'pixels':>8}  {'share':>7}  {'images':>6}")
    for c in report["classes"]:
        px = report["class_pixels"][c["name"]]
        lines.append(
            f"  {c['id']:>5}  {c['name']:<{width}}  {_human(px):>8}  "
            f"{100 * px / labelled:>6.2f}%  {report['class_images'][c['name']]:>6}"
        )
    if report.get("void_pixels"):
        lines.append(f"  {'255':>5}  {'void':<{width}}  {_human(report['void_pixels']):>8}")
    if report.get("ignored_classes"):
        names = ", ".join(f"{c['id']}={c['name']}" for c in report["ignored_classes"])
        lines.append(f"  ignored classes (read as void, not errors): {names}")
    for title, items in (("errors", report["errors"]), ("warnings", report["warnings"])):
        if not items:
            continue
        lines.append(f"{title} ({len(items)})")
        per_kind: dict[str, int] = {}
        hidden: dict[str, int] = {}
        for f in items:
            k = f["kind"]
            per_kind[k] = per_kind.get(k, 0) + 1
            if per_kind[k] > limit:
                hidden[k] = hidden.get(k, 0) + 1
                continue
            lines.append(f"  {k:<16} {f['file']}\n  {'':<16} {f['detail']}")
        for k, m in hidden.items():
            lines.append(f"  {k:<16} ... and {m} more (write them all with --json)")
    ne, nw = len(report["errors"]), len(report["warnings"])
    verdict = "OK" if not ne else "NOT OK"
    lines.append(f"{verdict}: {ne} error{'s' * (ne != 1)}, {nw} warning{'s' * (nw != 1)}")
    return "\n".join(lines)
