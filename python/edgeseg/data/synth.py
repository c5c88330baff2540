"""Synthetic inspection data with exact masks: the default data of ``make demo`` and tests.

``synth(out, task="defects", n=200, size=256, seed=0)`` writes a folder dataset
(``images/*.png``, ``masks/*.png`` palette masks, ``classes.yaml``, ``splits/*.txt``).

* ``defects`` — surfaces cut from the CC0 textures scikit-image ships in its wheel (brick,
  grass, gravel), at random scale, orientation, tint and lighting (gradient + vignette +
  sensor noise). Defects are drawn procedurally and the mask records exactly the pixels
  drawn: ``scratch`` (1-3 px curved lines), ``stain`` (soft-edged blobs; the mask is where
  the blob's opacity reaches 50 %), ``crack`` (branching dark polylines). Each image has
  0-3 regions per class of varied size and contrast; about one image in five is
  defect-free.
* ``objects`` — background removal: 1-3 textured products (ellipses, rounded boxes,
  polygons) with shading and a soft shadow pasted on a surface; ``product`` vs background.

The output depends only on ``seed`` (each image has its own generator), not on ``workers``.
"""

from __future__ import annotations

import math
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Optional, Union

import numpy as np

from edgeseg.data.classes import ClassInfo, ClassMap
from edgeseg.data.dataset import cpu_workers
from edgeseg.errors import DatasetError

__all__ = ["TASKS", "synth", "synth_split", "task_classes"]

TASKS = ("defects", "objects")
TEXTURES = ("brick", "grass", "gravel")

_CLASSES = {
    "defects": [
        ClassInfo(0, "background", (0, 0, 0)),
        ClassInfo(1, "scratch", (255, 64, 64)),
        ClassInfo(2, "stain", (255, 200, 0)),
        ClassInfo(3, "crack", (0, 160, 255)),
    ],
    "objects": [ClassInfo(0, "background", (0, 0, 0)), ClassInfo(1, "product", (0, 200, 0))],
}

_TEX: Optional[list[np.ndarray]] = None


def task_classes(task: str) -> ClassMap:
    if task not in TASKS:
        raise DatasetError(f"unknown synth task {task!r}; choose one of {', '.join(TASKS)}")
    return ClassMap(_CLASSES[task], source=f"synthetic {task}")


def _cv2():
    try:
        import cv2
    except ImportError:
        raise DatasetError(
            "edgeseg data synth draws with OpenCV, which is not installed; "
            "pip install opencv-python-headless (or edgeseg[data])"
        ) from None
    return cv2


def _textures() -> list[np.ndarray]:
    global _TEX
    if _TEX is None:
        try:
            import skimage.data as skd
        except ImportError:
            raise DatasetError(
                "edgeseg data synth uses the CC0 textures bundled with scikit-image, which is "
                "not installed; pip install scikit-image (or edgeseg[data])"
            ) from None
        _TEX = [np.asarray(getattr(skd, name)(), np.float32) / 255.0 for name in TEXTURES]
    return _TEX


# --------------------------------------------------------------------------------------
# surfaces
# --------------------------------------------------------------------------------------
def _surface(rng: np.random.Generator, size: int) -> np.ndarray:
    cv2 = _cv2()
    tex = _textures()[rng.integers(len(TEXTURES))]
    scale = rng.uniform(0.6, 1.8)
    crop = int(min(tex.shape[0], max(16, size / scale)))
    y0 = rng.integers(0, tex.shape[0] - crop + 1)
    x0 = rng.integers(0, tex.shape[1] - crop + 1)
    t = cv2.resize(tex[y0 : y0 + crop, x0 : x0 + crop], (size, size), cv2.INTER_LINEAR)
    t = np.rot90(t, rng.integers(4))
    if rng.random() < 0.5:
        t = t[:, ::-1]
    t = (t - t.mean()) / (t.std() + 1e-6) * rng.uniform(0.05, 0.16)
    base = rng.uniform(0.35, 0.7)
    tint = np.clip(1.0 + rng.normal(0, 0.12, 3), 0.7, 1.3).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    ang = rng.uniform(0, 2 * math.pi)
    light = (
        1.0
        + rng.uniform(-0.35, 0.35) * (xx * math.cos(ang) + yy * math.sin(ang))
        - rng.uniform(0.0, 0.8) * (xx**2 + yy**2)
    )
    img = (base + t)[:, :, None] * tint[None, None, :] * light[:, :, None]
    return img.astype(np.float32)


def _finish(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    img = img + rng.normal(0, rng.uniform(0.004, 0.015), img.shape).astype(np.float32)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


# --------------------------------------------------------------------------------------
# defects: each draws on its own layer, the mask is exactly what was drawn
# --------------------------------------------------------------------------------------
def _blend(img: np.ndarray, alpha: np.ndarray, color: np.ndarray) -> None:
    a = alpha[:, :, None]
    img *= 1 - a
    img += a * color[None, None, :]


def _stain(img, mask, rng, size, cls):
    cv2 = _cv2()
    r = rng.uniform(0.025, 0.11) * size
    cx, cy = rng.uniform(0, size, 2)
    k = 18
    ang = np.linspace(0, 2 * math.pi, k, endpoint=False) + rng.uniform(0, 1)
    noise = np.convolve(np.tile(rng.normal(0, 0.25, k), 3), np.ones(3) / 3, "same")[k : 2 * k]
    rad = r * np.clip(1 + noise, 0.5, 1.6)
    stretch = rng.uniform(0.6, 1.0)
    pts = np.stack([cx + rad * np.cos(ang), cy + stretch * rad * np.sin(ang)], 1)
    layer = np.zeros((size, size), np.float32)
    cv2.fillPoly(layer, [np.round(pts * 4).astype(np.int32)], 1.0, cv2.LINE_AA, shift=2)
    sigma = max(0.8, r * rng.uniform(0.15, 0.4))
    alpha = cv2.GaussianBlur(layer, (0, 0), sigma)
    inside = alpha >= 0.5
    if not inside.any():
        return
    strength = rng.uniform(0.3, 0.75)
    color = np.array(
        rng.choice([[0.25, 0.18, 0.1], [0.1, 0.1, 0.1], [0.55, 0.45, 0.2], [0.9, 0.9, 0.85]]),
        np.float32,
    )
    _blend(img, np.clip(alpha * strength, 0, 1), color)
    mask[inside] = cls


def _bezier(rng, size):
    length = rng.uniform(0.15, 0.7) * size
    p0 = rng.uniform(0.05, 0.95, 2) * size
    ang = rng.uniform(0, 2 * math.pi)
    p3 = p0 + length * np.array([math.cos(ang), math.sin(ang)])
    bend = rng.normal(0, 0.3, (2, 2)) * length
    p1 = p0 + (p3 - p0) / 3 + bend[0]
    p2 = p0 + 2 * (p3 - p0) / 3 + bend[1]
    t = np.linspace(0, 1, max(8, int(length / 3)))[:, None]
    return (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3


def _scratch(img, mask, rng, size, cls):
    cv2 = _cv2()
    pts = np.round(_bezier(rng, size)).astype(np.int32)
    layer = np.zeros((size, size), np.uint8)
    cv2.polylines(layer, [pts], False, 1, int(rng.integers(1, 4)), cv2.LINE_8)
    drawn = layer.astype(bool)
    if not drawn.any():
        return
    bright = rng.random() < 0.6
    color = np.full(3, 0.95 if bright else 0.08, np.float32)
    _blend(img, drawn.astype(np.float32) * rng.uniform(0.3, 0.8), color)
    mask[drawn] = cls


def _walk(rng, start, angle, steps, size):
    pts = [np.asarray(start, np.float64)]
    for _ in range(steps):
        angle += rng.normal(0, 0.35)
        step = rng.uniform(2.0, 5.0) * size / 256
        pts.append(pts[-1] + step * np.array([math.cos(angle), math.sin(angle)]))
    return np.array(pts), angle


def _crack(img, mask, rng, size, cls):
    cv2 = _cv2()
    layer = np.zeros((size, size), np.uint8)
    start = rng.uniform(0.1, 0.9, 2) * size
    main, _ = _walk(rng, start, rng.uniform(0, 2 * math.pi), int(rng.integers(15, 60)), size)
    cv2.polylines(layer, [np.round(main).astype(np.int32)], False, 1, 2, cv2.LINE_8)
    for _ in range(int(rng.integers(1, 4))):
        at = main[rng.integers(len(main))]
        d = main[-1] - main[0]
        base = math.atan2(d[1], d[0]) + rng.choice([-1, 1]) * rng.uniform(0.5, 1.2)
        branch, _ = _walk(rng, at, base, int(rng.integers(5, 25)), size)
        cv2.polylines(layer, [np.round(branch).astype(np.int32)], False, 1, 1, cv2.LINE_8)
    drawn = layer.astype(bool)
    if not drawn.any():
        return
    _blend(img, drawn.astype(np.float32) * rng.uniform(0.45, 0.85), np.full(3, 0.04, np.float32))
    mask[drawn] = cls


def draw_defects(img: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """Draws 0–3 scratches (class 1), stains (2) and cracks (3) into ``img`` (one image in
    five stays defect-free) and returns their ``size``×``size`` uint8 mask."""
    mask = np.zeros((size, size), np.uint8)
    if rng.random() >= 0.2:
        counts = rng.integers(0, 4, 3)
        if counts.sum() == 0:
            counts[rng.integers(3)] = 1
        # stains below, cracks, then scratches on top (a later defect owns shared pixels)
        for draw, cls, k in (
            (_stain, 2, counts[1]),
            (_crack, 3, counts[2]),
            (_scratch, 1, counts[0]),
        ):
            for _ in range(int(k)):
                draw(img, mask, rng, size, cls)
    return mask


def _defects_image(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    img = _surface(rng, size)
    mask = draw_defects(img, rng, size)
    return _finish(img, rng), mask


def _objects_image(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    cv2 = _cv2()
    img = _surface(rng, size)
    mask = np.zeros((size, size), np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        layer = np.zeros((size, size), np.uint8)
        cx, cy = rng.uniform(0.15, 0.85, 2) * size
        r = rng.uniform(0.1, 0.25) * size
        kind = rng.integers(3)
        if kind == 0:
            axes = (int(r), int(r * rng.uniform(0.5, 1.0)))
            cv2.ellipse(layer, (int(cx), int(cy)), axes, rng.uniform(0, 180), 0, 360, 1, -1)
        elif kind == 1:
            w, h = r * rng.uniform(0.7, 1.3), r * rng.uniform(0.5, 1.0)
            rr = int(min(w, h) * 0.3)
            box = np.zeros((size, size), np.uint8)
            x0, y0, x1, y1 = int(cx - w), int(cy - h), int(cx + w), int(cy + h)
            cv2.rectangle(box, (x0 + rr, y0), (x1 - rr, y1), 1, -1)
            cv2.rectangle(box, (x0, y0 + rr), (x1, y1 - rr), 1, -1)
            for px, py in (
                (x0 + rr, y0 + rr),
                (x1 - rr, y0 + rr),
                (x0 + rr, y1 - rr),
                (x1 - rr, y1 - rr),
            ):
                cv2.circle(box, (px, py), rr, 1, -1)
            m = cv2.getRotationMatrix2D((cx, cy), rng.uniform(0, 180), 1.0)
            layer = cv2.warpAffine(box, m, (size, size), flags=cv2.INTER_NEAREST)
        else:
            k = int(rng.integers(5, 9))
            ang = np.sort(rng.uniform(0, 2 * math.pi, k))
            rad = r * rng.uniform(0.7, 1.0, k)
            pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1)
            cv2.fillPoly(layer, [np.round(pts).astype(np.int32)], 1)
        shape = layer.astype(bool)
        if not shape.any():
            continue
        # soft shadow on the surface (not part of the product)
        dx, dy = rng.integers(2, max(3, size // 25), 2)
        shadow = cv2.GaussianBlur(
            np.roll(layer.astype(np.float32), (int(dy), int(dx)), (0, 1)), (0, 0), size / 80
        )
        img *= (1 - 0.45 * shadow)[:, :, None]
        product = _surface(rng, size) * rng.uniform(0.8, 1.5)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        shade = 1.0 + 0.25 * ((cx - xx) + (cy - yy)) / (r * 2)
        product *= np.clip(shade, 0.6, 1.4)[:, :, None]
        img[shape] = product[shape]
        mask[shape] = 1
    return _finish(img, rng), mask


def _write_one(out: str, task: str, size: int, seed: int, i: int, palette: list) -> None:
    from PIL import Image

    rng = np.random.default_rng([seed, i])
    make = _defects_image if task == "defects" else _objects_image
    img, mask = make(rng, size)
    name = f"{task[:-1] if task.endswith('s') else task}_{i:05d}.png"
    Image.fromarray(img).save(Path(out) / "images" / name, compress_level=1)
    m = Image.frombytes("P", (size, size), mask.tobytes())
    m.putpalette(palette)
    m.save(Path(out) / "masks" / name, compress_level=1)


def _write_chunk(args) -> int:
    out, task, size, seed, indices, palette = args
    for i in indices:
        _write_one(out, task, size, seed, i, palette)
    return len(indices)


def synth(
    out: Union[str, Path],
    task: str = "defects",
    n: int = 200,
    size: int = 256,
    seed: int = 0,
    workers: Optional[int] = None,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Write a synthetic folder dataset to ``out`` and return its path (see module docstring)."""
    classes = task_classes(task)
    if n < 1 or size < 32:
        raise DatasetError(f"synth needs n >= 1 and size >= 32 (got n={n}, size={size})")
    _cv2()
    _textures()  # load once here so forked workers share it
    out = Path(out)
    dataset_folder(out, overwrite, "--overwrite")
    classes.save(out / "classes.yaml")
    palette = classes.palette().ravel().tolist()
    workers = min(cpu_workers(workers), max(1, n // 32))
    from tqdm import tqdm

    bar = tqdm(total=n, unit="img", desc=f"synth {task}", disable=not progress, leave=False)
    try:
        if workers == 1:
            for i in range(n):
                _write_one(str(out), task, size, seed, i, palette)
                bar.update(1)
        else:
            step = max(1, n // (workers * 4))
            jobs = [
                (str(out), task, size, seed, list(range(a, min(n, a + step))), palette)
                for a in range(0, n, step)
            ]
            with ProcessPoolExecutor(workers) as pool:
                for done in pool.map(_write_chunk, jobs):
                    bar.update(done)
    finally:
        bar.close()
    prefix = task[:-1] if task.endswith("s") else task
    synth_split(out, [f"{prefix}_{i:05d}" for i in range(n)], seed)
    return out


def dataset_folder(out: Path, overwrite: bool, flag: str) -> None:
    """Empty ``images/``, ``masks/`` and ``splits/`` under ``out`` for a generated dataset;
    a dataset already there is replaced only with ``overwrite`` (``flag`` names that option
    in the error)."""
    if (out / "images").exists() or (out / "masks").exists():
        if not overwrite:
            raise DatasetError(
                f"{out}: already holds a dataset (images/ or masks/); choose another folder "
                f"or pass {flag}"
            )
        for sub in ("images", "masks", "splits"):
            shutil.rmtree(out / sub, ignore_errors=True)
    for sub in ("images", "masks", "splits"):
        (out / sub).mkdir(parents=True, exist_ok=True)


def synth_split(out: Path, stems: list[str], seed: int) -> None:
    """Writes ``out/splits/{train,val,test}.txt``: a seeded 80/10/10 split of ``stems``."""
    n = len(stems)
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, round(0.1 * n)) if n >= 3 else 0
    n_test = max(1, round(0.1 * n)) if n >= 10 else 0
    parts = {
        "val": sorted(stems[j] for j in order[:n_val]),
        "test": sorted(stems[j] for j in order[n_val : n_val + n_test]),
        "train": sorted(stems[j] for j in order[n_val + n_test :]),
    }
    for name, items in parts.items():
        (out / "splits" / f"{name}.txt").write_text("".join(f"{s}\n" for s in items))
