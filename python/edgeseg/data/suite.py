"""The accuracy suite: four segmentation datasets made from real photographs that Debian
packages ship, one per use case, each with a val split whose objects and surfaces never occur
in train. ``tools/bench_accuracy.py`` trains on them; the tests build them at tiny sizes.

* ``defects`` (defect detection) — photographed surfaces (GIMP's wood, stone, paper, fabric,
  leather... patterns) tiled at a random scale, orientation, tint and lighting, with the
  procedural scratches, stains and cracks of :mod:`edgeseg.data.synth` drawn on them; the
  mask records exactly the pixels drawn. Val surfaces are patterns train never saw.
* ``cutouts`` (background removal) — photo cut-outs with alpha from Tux Paint's stamp
  library (animals, food, plants, vehicles, household objects...) pasted with a soft shadow
  on photographed surfaces; ``object`` vs background. Split by stamp category
  (``animals/birds``, ``food/fruit``...): val objects are of kinds train never saw.
* ``zones`` (zone identification) — an image cut into 3-7 regions with wavy borders, each
  covered by a photographed material: ``wood``, ``stone`` or ``plant`` (foliage). Split by
  pattern, 30 % of each material's patterns held out for val.
* ``contamination`` (surface analysis) — a clean photographed surface with 0-4 soft-edged
  blobs of foreign matter: another photographed material (coffee, chocolate, leaves, soil,
  terracotta) or a liquid film (darkened, tinted surface); ``contamination``
  where the blob's opacity reaches 50 %. Split by surface and contaminant pattern.

Sources: ``gimp-data`` (``/usr/share/gimp/2.0/patterns``, GPL-3+), ``gimp-data-extras`` (the
foliage photographs of ``zones``, same folder, GPL-2+) and ``tuxpaint-stamps-default``
(``/usr/share/tuxpaint/stamps``, GPL-2+); nothing is downloaded. A missing package raises
:class:`~edgeseg.DatasetError` naming it. ``build(name, root)`` writes a folder dataset once
per (name, size, counts, seed, version) and reuses it; the output depends only on the
arguments (each image has its own seeded generator).
"""

from __future__ import annotations

import json
import math
import shutil
import struct
import zlib
from pathlib import Path
from typing import Optional, Union

import numpy as np

from edgeseg.data.classes import ClassInfo, ClassMap
from edgeseg.data.synth import _cv2 as _synth_cv2
from edgeseg.data.synth import draw_defects
from edgeseg.errors import DatasetError

__all__ = ["DATASETS", "PATTERN_DIR", "STAMP_DIR", "build", "dataset_classes", "sources"]

PATTERN_DIR = Path("/usr/share/gimp/2.0/patterns")
STAMP_DIR = Path("/usr/share/tuxpaint/stamps")
VERSION = 2

#: name -> (use case, classes, default train count, default val count)
DATASETS: dict[str, tuple[str, list[ClassInfo], int, int]] = {
    "defects": (
        "defect detection",
        [
            ClassInfo(0, "background", (0, 0, 0)),
            ClassInfo(1, "scratch", (255, 64, 64)),
            ClassInfo(2, "stain", (255, 200, 0)),
            ClassInfo(3, "crack", (0, 160, 255)),
        ],
        240,
        80,
    ),
    "cutouts": (
        "background removal",
        [ClassInfo(0, "background", (0, 0, 0)), ClassInfo(1, "object", (0, 200, 0))],
        300,
        100,
    ),
    "zones": (
        "zone identification",
        [
            ClassInfo(0, "wood", (160, 100, 40)),
            ClassInfo(1, "stone", (128, 128, 128)),
            ClassInfo(2, "plant", (60, 170, 60)),
        ],
        240,
        80,
    ),
    "contamination": (
        "surface analysis",
        [ClassInfo(0, "clean", (0, 0, 0)), ClassInfo(1, "contamination", (255, 120, 0))],
        240,
        80,
    ),
}

# photographed patterns by material (GIMP's Legacy, Sky and a few drawn ones are left out)
_MATERIALS = {
    "wood": [
        "Wood/bark",
        "Wood/burlwood",
        "Wood/corkboard",
        "Wood/parque1",
        "Wood/parque2",
        "Wood/parque3",
        "Wood/pine",
        "Wood/walnut",
        "Wood/wood1",
        "Wood/wood2",
        "Wood/wood3",
        "Wood/wood4",
        "Wood/wood5",
    ],
    "stone": [
        "Stone/amethyst",
        "Stone/brick",
        "Stone/cracked",
        "Stone/granite1",
        "Stone/ground1",
        "Stone/marble1",
        "Stone/marble2",
        "Stone/marble3",
        "Stone/pink_marble",
        "Stone/rock",
        "Stone/slate",
        "Stone/stone33",
        "Stone/terra",
        "Stone/Craters",
        "Stone/Moonfoot",
    ],
    "soft": [
        "Fabric/burlap",
        "Paper/crinklepaper",
        "Paper/paper",
        "Animal/leather",
        "Animal/leopard",
        "Plant/leaves",
    ],
}
# zone materials: each must look alike across its patterns, or no recipe can name an unseen one;
# the foliage photographs without a folder come from gimp-data-extras
_ZONE_MATERIALS = {
    "wood": _MATERIALS["wood"],
    "stone": _MATERIALS["stone"],
    "plant": ["Plant/leaves", "clovers", "leaves3", "leaves4", "leaves6"],
}
# contaminants: foreign matter on a surface
_CONTAMINANTS = ["Food/java", "Food/choc_swirl", "Plant/leaves", "Stone/ground1", "Stone/terra"]


def dataset_classes(name: str) -> ClassMap:
    if name not in DATASETS:
        raise DatasetError(f"unknown suite dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return ClassMap(DATASETS[name][1], source=f"suite {name}")


def _need(path: Path, package: str) -> None:
    if not path.is_dir():
        raise DatasetError(
            f"{path} is missing: the accuracy suite builds its images from the Debian package "
            f"{package}; install it (apt-get install {package}, or make bench-accuracy)"
        )


def _cv2():
    return _synth_cv2()


# -- sources -------------------------------------------------------------------------------
def read_pattern(path: Union[str, Path]) -> np.ndarray:
    """A GIMP ``.pat`` pattern as HxWx3 uint8 RGB (header: size, version, w, h, bytes, GPAT)."""
    b = Path(path).read_bytes()
    if len(b) < 24 or b[20:24] != b"GPAT":
        raise DatasetError(f"{path}: not a GIMP pattern (no GPAT header)")
    hs, _ver, w, h, bpp = struct.unpack(">5I", b[:20])
    px = np.frombuffer(b, np.uint8, w * h * bpp, hs).reshape(h, w, bpp)
    if bpp in (1, 2):
        px = np.repeat(px[:, :, :1], 3, 2)
    return np.ascontiguousarray(px[:, :, :3])


_PAT: dict[str, np.ndarray] = {}


def _package(name: str) -> str:
    """The Debian package that ships pattern ``name`` (GIMP's own ones sit in a folder)."""
    return "gimp-data" if "/" in name else "gimp-data-extras"


def _pattern(name: str) -> np.ndarray:
    if name not in _PAT:
        _need(PATTERN_DIR, "gimp-data")
        p = PATTERN_DIR / f"{name}.pat"
        if not p.is_file():
            pkg = _package(name)
            raise DatasetError(f"{p}: pattern missing; install {pkg} (apt-get install {pkg})")
        _PAT[name] = read_pattern(p).astype(np.float32) / 255.0
    return _PAT[name]


def _is_val(key: str, share: float) -> bool:
    """A fixed, name-based split (the same on every machine and for every seed)."""
    return (zlib.crc32(key.encode()) % 1000) < share * 1000


def _quota_split(names: list[str], share: float) -> dict[str, list[str]]:
    """Exactly ``round(share * n)`` names (at least one) to val, picked by a hash of the name:
    a short list still holds out a fair part of itself."""
    order = sorted(names, key=lambda n: zlib.crc32(n.encode()))
    k = min(len(names) - 1, max(1, round(share * len(names))))
    val = set(order[:k])
    return {"train": [n for n in names if n not in val], "val": [n for n in names if n in val]}


def _split_names(names: list[str], share: float) -> dict[str, list[str]]:
    val = [n for n in names if _is_val(n, share)]
    train = [n for n in names if not _is_val(n, share)]
    if not val:  # every list gives val at least one member and train the rest
        val, train = [train[-1]], train[:-1]
    return {"train": train, "val": val}


_STAMPS: Optional[list[tuple[str, str]]] = None
# drawn, not photographed: letters, signs, flags, symbols (the coin photos are kept)
_DRAWN = ("symbols", "town/flags", "town/roadsigns")


def _stamp_list() -> list[tuple[str, str]]:
    """(kind, path) of every photo cut-out with a real alpha outline (cartoons, drawn
    symbols and fully opaque stamps are left out); kind is the stamp's folder
    (``animals/birds``)."""
    global _STAMPS
    if _STAMPS is None:
        _need(STAMP_DIR, "tuxpaint-stamps-default")
        from PIL import Image

        out = []
        for p in sorted(STAMP_DIR.rglob("*.png")):
            rel = p.relative_to(STAMP_DIR)
            kind = "/".join(rel.parts[:-1]) or "misc"
            if "cartoon" in rel.parts or kind.startswith(_DRAWN) and "coins" not in kind:
                continue
            with Image.open(p) as im:
                if im.mode not in ("RGBA", "LA", "P", "PA"):
                    continue
                a = np.asarray(im.convert("RGBA"))[:, :, 3]
            see_through = float((a < 128).mean())
            if not 0.05 <= see_through <= 0.95:
                continue
            out.append((kind, str(p)))
        if not out:
            raise DatasetError(f"{STAMP_DIR}: no cut-outs found; reinstall tuxpaint-stamps-default")
        _STAMPS = out
    return _STAMPS


def sources(name: str) -> dict[str, list[str]]:
    """The source keys (pattern names, stamp kinds) behind each split of a dataset."""
    mats = {m: _split_names(v, 0.3) for m, v in _MATERIALS.items()}
    surf = {s: sorted(sum((mats[m][s] for m in mats), [])) for s in ("train", "val")}
    if name == "defects":
        return surf
    if name == "zones":
        zones = {m: _quota_split(v, 0.3) for m, v in _ZONE_MATERIALS.items()}
        return {s: sorted(sum((zones[m][s] for m in zones), [])) for s in ("train", "val")}
    if name == "contamination":
        cont = _split_names(_CONTAMINANTS, 0.3)
        return {
            s: surf[s] + [f"contaminant:{c}" for c in cont[s] if c not in surf[s]]
            for s in ("train", "val")
        }
    if name == "cutouts":
        kinds = sorted({k for k, _ in _stamp_list()})
        split = _split_names(kinds, 0.25)
        return {s: surf[s] + [f"stamp:{k}" for k in split[s]] for s in ("train", "val")}
    raise DatasetError(f"unknown suite dataset {name!r}; choose one of {', '.join(DATASETS)}")


# -- drawing -------------------------------------------------------------------------------
def _tile(tex: np.ndarray, size: int, rng: np.random.Generator, lo=0.7, hi=2.0) -> np.ndarray:
    """``size``² of a pattern tiled at a random scale, offset, orientation and tint."""
    cv2 = _cv2()
    s = rng.uniform(lo, hi)
    h, w = tex.shape[:2]
    t = cv2.resize(tex, (max(4, round(w * s)), max(4, round(h * s))), interpolation=cv2.INTER_AREA)
    reps = (size // t.shape[0] + 2, size // t.shape[1] + 2, 1)
    big = np.tile(t, reps)
    y0, x0 = rng.integers(0, t.shape[0]), rng.integers(0, t.shape[1])
    out = big[y0 : y0 + size, x0 : x0 + size]
    out = np.rot90(out, rng.integers(4))
    if rng.random() < 0.5:
        out = out[:, ::-1]
    tint = np.clip(1.0 + rng.normal(0, 0.08, 3), 0.8, 1.2).astype(np.float32)
    gain = rng.uniform(0.8, 1.15)
    return np.ascontiguousarray(out * tint * gain, dtype=np.float32)


def _light(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    size = img.shape[0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    ang = rng.uniform(0, 2 * math.pi)
    light = (
        1.0
        + rng.uniform(-0.3, 0.3) * (xx * math.cos(ang) + yy * math.sin(ang))
        - rng.uniform(0.0, 0.6) * (xx**2 + yy**2)
    )
    return img * light[:, :, None]


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    cv2 = _cv2()
    g = rng.normal(0, 1, (cells, cells)).astype(np.float32)
    return cv2.resize(g, (size, size), interpolation=cv2.INTER_CUBIC)


def _surface(rng, size, split, exclude=()) -> np.ndarray:
    names = [n for n in sources("defects")[split] if n not in exclude]
    return _tile(_pattern(names[rng.integers(len(names))]), size, rng)


def _defects(rng, size, split):
    img = _light(_surface(rng, size, split), rng)
    return img, draw_defects(img, rng, size)


def _load_stamp(path: str, longest: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGBA")
        s = longest / max(im.size)
        im = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.LANCZOS)
        return np.asarray(im, np.float32) / 255.0


def _cutouts(rng, size, split):
    cv2 = _cv2()
    img = _light(_surface(rng, size, split), rng)
    mask = np.zeros((size, size), np.uint8)
    kinds = set(sources("cutouts")[split])
    pool = [p for k, p in _stamp_list() if f"stamp:{k}" in kinds]
    for _ in range(1 if rng.random() < 0.7 else 2):
        rgba = _load_stamp(pool[rng.integers(len(pool))], int(size * rng.uniform(0.35, 0.85)))
        if rng.random() < 0.5:
            rgba = rgba[:, ::-1]
        h, w = rgba.shape[:2]
        cx, cy = rng.uniform(0.25, 0.75, 2) * size
        m = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-25, 25), 1.0)
        m[:, 2] += (cx - w / 2, cy - h / 2)
        warped = cv2.warpAffine(rgba, m, (size, size), flags=cv2.INTER_LINEAR)
        alpha = warped[:, :, 3]
        dx, dy = rng.integers(2, max(3, size // 20), 2)
        shadow = cv2.GaussianBlur(np.roll(alpha, (int(dy), int(dx)), (0, 1)), (0, 0), size / 70)
        img *= (1 - rng.uniform(0.25, 0.55) * shadow)[:, :, None]
        obj = warped[:, :, :3] * rng.uniform(0.85, 1.15)
        img = img * (1 - alpha[:, :, None]) + obj * alpha[:, :, None]
        mask[alpha >= 0.5] = 1
    return img, mask


def _zones(rng, size, split):
    names = {m: [n for n in sources("zones")[split] if n in v] for m, v in _ZONE_MATERIALS.items()}
    mats = list(_ZONE_MATERIALS)
    k = int(rng.integers(3, 8))
    seeds = rng.uniform(0, size, (k, 2))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    amp = rng.uniform(0.02, 0.08) * size
    wy = yy + amp * _smooth_noise(rng, size, 4)
    wx = xx + amp * _smooth_noise(rng, size, 4)
    d = np.stack([(wy - sy) ** 2 + (wx - sx) ** 2 for sy, sx in seeds])
    cell = d.argmin(0)
    cls = rng.integers(0, 3, k)
    cls[: min(k, 3)] = rng.permutation(3)[: min(k, 3)]  # most images show every material
    img = np.zeros((size, size, 3), np.float32)
    mask = np.zeros((size, size), np.uint8)
    for i in range(k):
        sel = cell == i
        if not sel.any():
            continue
        pool = names[mats[cls[i]]]
        img[sel] = _tile(_pattern(pool[rng.integers(len(pool))]), size, rng)[sel]
        mask[sel] = cls[i]
    return _light(img, rng), mask


def _contamination(rng, size, split):
    cv2 = _cv2()
    src = sources("contamination")[split]
    conts = [c.split(":", 1)[1] for c in src if c.startswith("contaminant:")]
    conts += [c for c in _CONTAMINANTS if c in src]
    img = _surface(rng, size, split, exclude=_CONTAMINANTS)
    mask = np.zeros((size, size), np.uint8)
    n = 0 if rng.random() < 0.15 else int(rng.integers(1, 5))
    for _ in range(n):
        r = rng.uniform(0.04, 0.2) * size
        cy, cx = rng.uniform(0, size, 2)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        dist = np.sqrt(((yy - cy) / rng.uniform(0.6, 1.0)) ** 2 + (xx - cx) ** 2) / r
        dist += 0.35 * _smooth_noise(rng, size, 8)
        soft = rng.uniform(0.1, 0.4)
        alpha = np.clip((1 - dist) / soft + 0.5, 0, 1)
        if rng.random() < 0.5:  # foreign matter
            layer = _tile(_pattern(conts[rng.integers(len(conts))]), size, rng)
            strength = rng.uniform(0.7, 1.0)
        else:  # liquid film: a darker, tinted surface
            tint = np.array(rng.choice([[0.55, 0.4, 0.25], [0.4, 0.4, 0.4], [0.6, 0.55, 0.3]]))
            layer = img * tint.astype(np.float32)
            strength = rng.uniform(0.55, 0.9)
        a = cv2.GaussianBlur(alpha, (0, 0), 1.0) * strength
        img = img * (1 - a[:, :, None]) + layer * a[:, :, None]
        mask[a >= 0.5 * strength] = 1
    return _light(img, rng), mask


_DRAW = {
    "defects": _defects,
    "cutouts": _cutouts,
    "zones": _zones,
    "contamination": _contamination,
}


# -- writing -------------------------------------------------------------------------------
def build(
    name: str,
    root: Union[str, Path],
    size: int = 256,
    n_train: Optional[int] = None,
    n_val: Optional[int] = None,
    seed: int = 0,
) -> Path:
    """The folder dataset ``name`` under ``root`` (built on first use, then reused)."""
    from PIL import Image

    classes = dataset_classes(name)
    _, _, dt, dv = DATASETS[name]
    n_train, n_val = n_train or dt, n_val or dv
    if size < 32 or n_train < 1 or n_val < 1:
        raise DatasetError(
            f"suite {name}: size >= 32 and at least one train and one val image "
            f"(got size={size}, n_train={n_train}, n_val={n_val})"
        )
    out = Path(root) / f"{name}_{size}_{n_train}_{n_val}_s{seed}_v{VERSION}"
    stamp = out / "built.json"
    if stamp.is_file():
        return out
    sources(name)  # fails early, naming a missing package
    shutil.rmtree(out, ignore_errors=True)
    for sub in ("images", "masks", "splits"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    classes.save(out / "classes.yaml")
    palette = classes.palette().ravel().tolist()
    stems: dict[str, list[str]] = {"train": [], "val": []}
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            rng = np.random.default_rng([seed, 0 if split == "train" else 1, i])
            img, mask = _DRAW[name](rng, size, split)
            img = img + rng.normal(0, rng.uniform(0.003, 0.012), img.shape).astype(np.float32)
            img8 = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
            stem = f"{split}_{i:05d}"
            Image.fromarray(img8).save(out / "images" / f"{stem}.png", compress_level=1)
            m = Image.frombytes("P", (size, size), np.ascontiguousarray(mask).tobytes())
            m.putpalette(palette)
            m.save(out / "masks" / f"{stem}.png", compress_level=1)
            stems[split].append(stem)
    for split, items in stems.items():
        (out / "splits" / f"{split}.txt").write_text("".join(f"{s}\n" for s in items))
    info = {"name": name, "use_case": DATASETS[name][0], "size": size, "seed": seed}
    stamp.write_text(json.dumps({**info, "sources": sources(name)}, indent=1))
    return out
