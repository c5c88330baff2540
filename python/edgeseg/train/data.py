"""Training-side data: albumentations pipelines, a torch view of :class:`SegDataset`, the
pre-training scan (label check, sizes, class pixel counts) and a seeded, rank-aware sampler.

Masks hold dataset class *ids*; the model predicts class *indices* ``0..C-1`` in the class
map's id order. :func:`id_lut` maps one to the other (void stays 255).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from edgeseg.data import VOID, ClassMap, SegDataset
from edgeseg.errors import TrainingError

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ScanResult",
    "SeededSampler",
    "TrainSet",
    "ValSet",
    "id_lut",
    "scan",
    "train_transform",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _cv2():
    try:
        import cv2
    except ImportError:
        raise TrainingError(
            "training needs OpenCV for augmentation; pip install 'edgeseg[train]'"
        ) from None
    return cv2


def _albumentations():
    try:
        import albumentations as A
    except ImportError:
        raise TrainingError("training needs albumentations; pip install 'edgeseg[train]'") from None
    return A


def id_lut(classes: ClassMap) -> np.ndarray:
    """``lut[id] -> index`` over all 16-bit ids; ids not in the map and void map to 255."""
    if len(classes) > 255:
        raise TrainingError(f"{classes.source}: {len(classes)} classes; at most 255 are supported")
    lut = np.full(65536, VOID, np.uint8)
    for k, c in enumerate(classes):
        lut[c.id] = k
    return lut


def train_transform(size: int, crop: Optional[int] = None, zoom=(0.75, 1.33)):
    """The default training pipeline (albumentations ``Compose``).

    A random crop of ``crop`` px (default ``size``) at roughly the scale the model sees at
    deployment (the image resized to ``size``), zoomed by ``zoom``; flips, 90° rotations,
    small arbitrary rotations (mask nearest, borders void), colour jitter, blur or noise.
    Masks are only ever resampled nearest-neighbour.
    """
    A = _albumentations()
    cv2 = _cv2()
    crop = crop or size
    base = (crop / size) ** 2  # share of the image area a crop covers at deployment scale
    lo = min(1.0, base / zoom[1] ** 2)
    hi = min(1.0, base / zoom[0] ** 2)
    nearest = cv2.INTER_NEAREST
    return A.Compose(
        [
            A.RandomResizedCrop(
                size=(crop, crop), scale=(lo, hi), mask_interpolation=nearest, p=1.0
            ),
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.5),
            A.RandomRotate90(p=0.5),
            A.Rotate(
                limit=30,
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                fill_mask=VOID,
                mask_interpolation=nearest,
                p=0.3,
            ),
            A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=0.5),
            A.OneOf(
                [A.GaussianBlur(blur_limit=(3, 5), p=1.0), A.GaussNoise(std_range=(0.02, 0.06))],
                p=0.3,
            ),
        ]
    )


@dataclass
class ScanResult:
    """What training needs to know about a split before it starts."""

    num_images: int
    class_pixels: np.ndarray  # per class index
    min_side: int
    min_side_file: str
    sizes: set = field(default_factory=set)


def scan(ds: SegDataset, what: str, progress: bool = False) -> ScanResult:
    """Decode every sample once: refuse labels outside the class map, count class pixels,
    find the smallest image. Raises :class:`TrainingError` naming the file and the fix."""
    if len(ds) == 0:
        raise TrainingError(
            f"{ds.display_root}: the {what} split is empty; list images in "
            f"splits/{what}.txt (or remove splits/ to get a seeded 80/10/10 split)"
        )
    from tqdm import tqdm

    lut = id_lut(ds.classes)
    counts = np.zeros(len(ds.classes), np.int64)
    min_side, min_file, sizes = 1 << 30, "", set()
    for i in tqdm(range(len(ds)), desc=f"scan {what}", unit="img", disable=not progress):
        item = ds.load(i)
        if item.unknown:
            found = ", ".join(f"{k} ({v} px)" for k, v in list(item.unknown.items())[:5])
            raise TrainingError(
                f"{ds.label_path(i)}: labels outside the class map: {found}; classes are "
                f"{', '.join(f'{c.id}={c.name}' for c in ds.classes)}. Fix the mask or add the "
                "class to classes.yaml (edgeseg data check lists every such file)"
            )
        h, w = item.mask.shape
        sizes.add((h, w))
        if min(h, w) < min_side:
            min_side, min_file = min(h, w), ds.image_path(i)
        counts += np.bincount(lut[item.mask.ravel()], minlength=256)[: len(ds.classes)]
    return ScanResult(len(ds), counts, min_side, min_file, sizes)


class SeededSampler(Sampler):
    """Shuffles with ``seed + epoch``, shards across ranks and hands every sample its own
    augmentation seed, so a run is the same whatever the number of workers.

    Yields ``(index, sample_seed)``. Training pads the order so every rank gets the same
    number of samples; evaluation (``pad=False``) splits it without duplicates.
    """

    def __init__(
        self, n: int, seed: int, shuffle: bool, rank: int = 0, world: int = 1, pad: bool = True
    ):
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.rank, self.world, self.pad = rank, world, pad
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        if self.pad and self.n % self.world:
            order += order[: self.world - self.n % self.world]
        return order[self.rank :: self.world]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for i in self._order():
            seed = np.random.SeedSequence([self.seed, self.epoch, i]).generate_state(1)[0]
            yield i, int(seed)

    def __len__(self) -> int:
        return len(self._order())


class TrainSet(Dataset):
    """``ds[(i, seed)] -> (HWC uint8 tensor, HW uint8 index tensor)`` after augmentation."""

    def __init__(self, ds: SegDataset, transform: Callable):
        self.ds = ds
        self.transform = transform
        self.lut = id_lut(ds.classes)

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, key):
        i, seed = key if isinstance(key, tuple) else (key, None)
        image, mask = self.ds[i]
        target = self.lut[mask]
        if seed is not None:
            if hasattr(self.transform, "set_random_seed"):
                self.transform.set_random_seed(seed)
            random.seed(seed)
            np.random.seed(seed % (1 << 32))  # noqa: NPY002 (user pipelines may use it)
        out = self.transform(image=image, mask=target)
        img, tgt = out["image"], out["mask"]
        if not isinstance(img, np.ndarray) or img.ndim != 3 or tgt.shape != img.shape[:2]:
            raise TrainingError(
                "the augmentation pipeline must return image HWC uint8 and a mask of the same "
                f"size (got image {getattr(img, 'shape', type(img))}, mask "
                f"{getattr(tgt, 'shape', type(tgt))}); leave ToTensorV2/Normalize out of it, "
                "the trainer normalizes"
            )
        return torch.from_numpy(np.ascontiguousarray(img)), torch.from_numpy(
            np.ascontiguousarray(tgt.astype(np.uint8))
        )


class ValSet(Dataset):
    """``ds[i] -> (HWC uint8 image resized to size², HW uint8 index mask at full size)``."""

    def __init__(self, ds: SegDataset, size: int):
        self.ds = ds
        self.size = size
        self.lut = id_lut(ds.classes)

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, key):
        i = key[0] if isinstance(key, tuple) else key
        image, mask = self.ds[i]
        image = resize_image(image, self.size)
        return torch.from_numpy(image), torch.from_numpy(self.lut[mask])


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Bring an image to the model input (bilinear; area when shrinking a lot)."""
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return np.array(image, copy=True)
    cv2 = _cv2()
    interp = cv2.INTER_AREA if min(h, w) > 2 * size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interp)


def collate_val(batch):
    return torch.stack([b[0] for b in batch]), [b[1] for b in batch]
