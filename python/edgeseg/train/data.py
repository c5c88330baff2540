"""Training-side data: albumentations pipelines, a torch view of :class:`SegDataset`, the
pre-training scan (label check, sizes, class pixel counts) and a seeded, rank-aware sampler.

Masks hold dataset class *ids*; the model predicts class *indices* ``0..C-1`` in the class
map's id order. :func:`id_lut` maps one to the other (void stays 255).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from edgeseg.data import VOID, ClassMap, SegDataset
from edgeseg.errors import TrainingError

__all__ = [
    "ClassBalancedCrop",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ScanResult",
    "SeededSampler",
    "TrainSet",
    "ValSet",
    "Loaders",
    "id_lut",
    "make_loaders",
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


try:  # a module-level class (picklable for loader workers) when albumentations is there
    from albumentations import CropNonEmptyMaskIfExists as _CropNonEmpty
except ImportError:  # the trainer says what to install when it needs it
    _CropNonEmpty = object


class ClassBalancedCrop(_CropNonEmpty):
    """A ``height``×``width`` crop around one pixel of a class drawn uniformly from the
    classes present in the mask (``ignore_values`` left out), so a thin class with a few
    hundred pixels is as likely to be in the crop as a large one; a random crop when only
    ignored values are present. Masks must be class-index maps (HW)."""

    def get_params_dependent_on_data(self, params, data):
        mask = data["mask"]
        mh, mw = mask.shape[:2]
        present = np.flatnonzero(np.bincount(mask.ravel(), minlength=256))
        present = [int(c) for c in present if c not in (self.ignore_values or ())]
        if present:
            ys, xs = np.nonzero(mask == self.py_random.choice(present))
            k = self.py_random.randrange(len(ys))
            x0 = int(np.clip(xs[k] - self.py_random.randint(0, self.width - 1), 0, mw - self.width))
            y0 = int(
                np.clip(ys[k] - self.py_random.randint(0, self.height - 1), 0, mh - self.height)
            )
        else:
            x0 = self.py_random.randint(0, mw - self.width)
            y0 = self.py_random.randint(0, mh - self.height)
        return {"crop_coords": (x0, y0, x0 + self.width, y0 + self.height)}


def id_lut(classes: ClassMap) -> np.ndarray:
    """``lut[id] -> index`` over all 16-bit ids; ids not in the map and void map to 255
    (:meth:`ClassMap.index_lut`, the one lookup training and evaluation share)."""
    return classes.index_lut()


def train_transform(
    size: int, crop: Optional[int] = None, zoom: Optional[tuple] = None, focus: float = 0.5
):
    """The default training pipeline (albumentations ``Compose``) for images already resized
    to ``size``² (what the model sees at deployment; :class:`TrainSet` does it with
    ``size=``).

    A ``crop``-px crop (default ``size``), with probability ``focus`` placed on a pixel of a
    foreground class drawn uniformly from those in the image (:class:`ClassBalancedCrop`),
    so thin, rare defects show up in most batches; ``zoom=(lo, hi)`` adds scale jitter: the
    image is first rescaled by a factor drawn from ``[lo, hi]`` (padded with void up to the
    crop), then cropped the same way (off by default: shrinking a 1-px scratch blurs it away
    in the image while the nearest-neighbour mask keeps it); flips, 90° rotations, small
    arbitrary rotations (mask nearest, borders void), colour jitter, a little blur or noise.
    Masks are only ever resampled nearest-neighbour.
    """
    A = _albumentations()
    cv2 = _cv2()
    crop = crop or size
    nearest = cv2.INTER_NEAREST
    zoomed = zoom is not None and tuple(zoom) != (1.0, 1.0)
    # scale jitter rescales the whole image first, so the crop that follows keeps its
    # foreground focus (thin defects stay as likely in a batch as without the jitter)
    scaling = (
        [
            A.RandomScale(
                scale_limit=(float(zoom[0]) - 1.0, float(zoom[1]) - 1.0),
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=nearest,
                p=1.0,
            ),
            A.PadIfNeeded(
                crop, crop, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=VOID, p=1.0
            ),
        ]
        if zoomed
        else []
    )
    if crop >= size and not zoomed:
        first = A.NoOp()
    else:
        focus = min(1.0, max(0.0, focus))
        first = A.OneOf(
            [
                A.RandomCrop(crop, crop, p=1.0 - focus),
                ClassBalancedCrop(crop, crop, ignore_values=[0, VOID], p=focus),
            ],
            p=1.0,
        )
    return A.Compose(
        [
            *scaling,
            first,
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.5),
            A.RandomRotate90(p=0.5),
            A.Rotate(
                limit=30,
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                fill_mask=VOID,
                mask_interpolation=nearest,
                p=0.2,
            ),
            A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=0.5),
            A.OneOf(
                [A.GaussianBlur(blur_limit=(3, 3), p=1.0), A.GaussNoise(std_range=(0.01, 0.03))],
                p=0.1,
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
    #: ``blake2b:<hex>`` of the decoded pixels, labels (as class ids) and sample keys, plus
    #: the class map: the same for a re-encoded copy of the data, different after any edit
    data_hash: str = ""


def scan(ds: SegDataset, what: str, progress: bool = False) -> ScanResult:
    """Decode every sample once: refuse labels outside the class map
    (:class:`~edgeseg.errors.UnknownLabelError`), count class pixels, find the smallest image.
    Raises :class:`TrainingError` naming the file and the fix."""
    if len(ds) == 0:
        raise TrainingError(
            f"{ds.display_root}: the {what} split is empty; list images in "
            f"splits/{what}.txt (or remove splits/ to get a seeded 80/10/10 split)"
        )
    from tqdm import tqdm

    lut = id_lut(ds.classes)
    counts = np.zeros(len(ds.classes), np.int64)
    min_side, min_file, sizes = 1 << 30, "", set()
    digests: list[tuple[str, str]] = []
    for i in tqdm(range(len(ds)), desc=f"scan {what}", unit="img", disable=not progress):
        item = ds.load(i)
        ds.classes.check_known(item.unknown, ds.label_path(i))
        h, w = item.mask.shape
        sizes.add((h, w))
        if min(h, w) < min_side:
            min_side, min_file = min(h, w), ds.image_path(i)
        counts += np.bincount(lut[item.mask.ravel()], minlength=256)[: len(ds.classes)]
        digests.append((ds.samples[i].key, ds.image_hash(item.image) + ds.image_hash(item.mask)))
    return ScanResult(len(ds), counts, min_side, min_file, sizes, _data_hash(digests, ds.classes))


def _data_hash(digests: list[tuple[str, str]], classes: ClassMap) -> str:
    """Order-independent hash of a split (sorted by sample key) and its class map."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr([(c.id, c.name) for c in classes]).encode())
    for key, digest in sorted(digests):
        h.update(f"{key}\0{digest}".encode("utf-8", "surrogateescape"))  # names as on disk
    return "blake2b:" + h.hexdigest()


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
    """``ds[(i, seed)] -> (HWC uint8 tensor, HW uint8 index tensor)`` after augmentation.

    ``size``: resize every image to ``size``² first (bilinear; the mask nearest), as
    deployment does. ``cache``: keep the decoded (and resized) samples in RAM after their
    first use, so later epochs skip PNG decoding (each loader worker holds its own copy).
    """

    def __init__(
        self, ds: SegDataset, transform: Callable, size: Optional[int] = None, cache: bool = False
    ):
        self.ds = ds
        self.transform = transform
        self.size = size
        self.lut = id_lut(ds.classes)
        self.cache: Optional[dict] = {} if cache else None

    def __len__(self) -> int:
        return len(self.ds)

    def sample(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """The decoded image and index mask ``i`` before augmentation."""
        if self.cache is not None and i in self.cache:
            return self.cache[i]
        image, mask = self.ds[i]
        target = self.lut[mask]
        if self.size is not None and image.shape[:2] != (self.size, self.size):
            cv2 = _cv2()
            image = resize_image(image, self.size)
            target = cv2.resize(target, (self.size, self.size), interpolation=cv2.INTER_NEAREST)
        if self.cache is not None:
            self.cache[i] = (image, target)
        return image, target

    def __getitem__(self, key):
        i, seed = key if isinstance(key, tuple) else (key, None)
        image, target = self.sample(i)
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
        # copies: a pipeline may hand back the cached arrays themselves (no crop, no flip)
        return torch.from_numpy(np.array(img, order="C")), torch.from_numpy(
            np.array(tgt, np.uint8, order="C")
        )


class ValSet(Dataset):
    """``ds[i] -> (HWC uint8 image resized to size², HW uint8 index mask at full size)``."""

    def __init__(self, ds: SegDataset, size: int, cache: bool = False):
        self.ds = ds
        self.size = size
        self.lut = id_lut(ds.classes)
        self.cache: Optional[dict] = {} if cache else None

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, key):
        i = key[0] if isinstance(key, tuple) else key
        if self.cache is not None and i in self.cache:
            image, target = self.cache[i]
        else:
            image, mask = self.ds[i]
            image, target = resize_image(image, self.size), self.lut[mask]
            if self.cache is not None:
                self.cache[i] = (image, target)
        return torch.from_numpy(np.array(image)), torch.from_numpy(np.array(target))


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


@dataclass
class Loaders:
    """The training and validation loaders of a run, their samplers and the batch size."""

    train: DataLoader
    train_sampler: SeededSampler
    val: DataLoader
    val_sampler: SeededSampler
    batch: int


def make_loaders(cfg, train_ds: SegDataset, val_ds: SegDataset, transform, d, device) -> Loaders:
    """The loaders of a run (``cfg``: its TrainConfig, ``d``: this process's rank, ``device``:
    its torch device). ``transform`` replaces the default augmentation pipeline when given."""
    tf = (
        transform
        if transform is not None
        else train_transform(cfg.size, cfg.crop, zoom=cfg.zoom, focus=cfg.crop_focus)
    )
    # decoded samples stay in RAM when they fit (PNG decoding is a tenth of a CPU step)
    cache = (len(train_ds) + len(val_ds)) * cfg.size**2 * 4 * max(1, cfg.workers) < 2 << 30
    tsampler = SeededSampler(len(train_ds), cfg.seed, True, d.rank, d.world)
    batch = max(1, min(cfg.batch, len(tsampler)))
    pin = device.type == "cuda"
    tloader = DataLoader(
        TrainSet(train_ds, tf, size=cfg.size if transform is None else None, cache=cache),
        batch_size=batch,
        sampler=tsampler,
        num_workers=cfg.workers,
        drop_last=len(tsampler) >= 2 * batch,
        pin_memory=pin,
        persistent_workers=cfg.workers > 0,
    )
    vsampler = SeededSampler(len(val_ds), cfg.seed, False, d.rank, d.world, pad=False)
    vloader = DataLoader(
        ValSet(val_ds, cfg.size, cache=cache),
        batch_size=batch,
        sampler=vsampler,
        num_workers=cfg.workers,
        collate_fn=collate_val,
        pin_memory=pin,
    )
    return Loaders(tloader, tsampler, vloader, vsampler, batch)
