"""A synthesized inspection video: surface panels with defects moving past a fixed camera.

Panels are drawn by the same generator as the ``defects`` dataset (:mod:`edgeseg.data.synth`)
with another seed (never the training images), laid side by side on a strip that scrolls
``speed`` pixels per frame under a ``height``×``width`` camera window — a conveyor or a web
of material passing an inspection camera. The ground-truth class map of every frame is kept
next to the video (``*.gt.npz``) so the loop's output can be scored.

:func:`synth_line_dataset` writes labelled frames of such a line as a folder dataset (the
layout of :func:`edgeseg.data.synth`): each image is one camera window over two neighbouring
panels cut at a random offset, so the seam between two parts — an edge no single-surface
image shows — is in the training data as it is in every camera frame.
"""

from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np

from edgeseg.errors import DatasetError

__all__ = ["synth_inspection_video", "synth_line_dataset"]


def _panel(rng: np.random.Generator, size: int, clean_fraction: float):
    """One ``size``×``size`` RGB panel and its class map: defect-free with probability
    ``clean_fraction``, else drawn as the ``defects`` dataset's images."""
    from edgeseg.data.synth import _defects_image, _finish, _surface

    if rng.random() < clean_fraction:
        return _finish(_surface(rng, size), rng), np.zeros((size, size), np.uint8)
    return _defects_image(rng, size)


def synth_inspection_video(
    path: Union[str, Path],
    frames: int = 120,
    height: int = 256,
    width: int = 384,
    speed: int = 12,
    fps: float = 15.0,
    seed: int = 2024,
    clean_fraction: float = 0.5,
) -> dict:
    """Writes an MP4 (``mp4v``) of ``frames`` BGR frames and ``path + '.gt.npz'`` (key
    ``masks``: frames×H×W uint8 class ids of the ``defects`` classes). Returns ``{"path",
    "ground_truth", "frames", "fps", "size"}``. ``clean_fraction`` of the panels are drawn
    without defects (a line mostly makes good parts), the rest as in the dataset."""
    import cv2

    if frames < 1 or height < 32 or width < 32 or speed < 1:
        raise DatasetError(
            f"synth_inspection_video: frames >= 1, height/width >= 32 and speed >= 1 expected, "
            f"got frames={frames}, size={height}x{width}, speed={speed}"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    length = width + speed * (frames - 1)
    n_panels = -(-length // height) + 1
    strip = np.zeros((height, n_panels * height, 3), np.uint8)
    gt = np.zeros((height, n_panels * height), np.uint8)
    for i in range(n_panels):
        img, mask = _panel(np.random.default_rng([seed, i]), height, clean_fraction)
        strip[:, i * height : (i + 1) * height] = img[:, :, ::-1]  # RGB -> BGR
        gt[:, i * height : (i + 1) * height] = mask
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise DatasetError(f"{path}: OpenCV cannot write MP4 (mp4v) video here")
    masks = np.empty((frames, height, width), np.uint8)
    try:
        for f in range(frames):
            x = f * speed
            writer.write(np.ascontiguousarray(strip[:, x : x + width]))
            masks[f] = gt[:, x : x + width]
    finally:
        writer.release()
    gt_path = path.with_name(path.name + ".gt.npz")
    np.savez_compressed(gt_path, masks=masks)
    return {
        "path": str(path),
        "ground_truth": str(gt_path),
        "frames": frames,
        "fps": fps,
        "size": [height, width],
    }


def synth_line_dataset(
    out: Union[str, Path],
    n: int = 200,
    size: int = 256,
    seed: int = 0,
    clean_fraction: float = 0.2,
    overwrite: bool = False,
) -> Path:
    """Writes ``n`` labelled camera frames of a line of panels to the folder dataset ``out``
    (``images/``, palette ``masks/``, ``classes.yaml``, ``splits/`` 80/10/10, the ``defects``
    classes) and returns its path. Frame ``i`` is the ``size``×``size`` window at a random
    offset over two neighbouring panels (:func:`synth_inspection_video`'s panels, each
    defect-free with probability ``clean_fraction``); it depends only on ``seed`` and ``i``."""

    from PIL import Image

    from edgeseg.data.synth import dataset_folder, synth_split, task_classes

    if n < 1 or size < 32 or not 0 <= clean_fraction <= 1:
        raise DatasetError(
            f"synth_line_dataset: n >= 1, size >= 32 and clean_fraction in 0..1 expected, got "
            f"n={n}, size={size}, clean_fraction={clean_fraction}"
        )
    out = Path(out)
    dataset_folder(out, overwrite, "overwrite=True")
    classes = task_classes("defects")
    classes.save(out / "classes.yaml")
    palette = classes.palette().ravel().tolist()
    stems = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        (a, ma), (b, mb) = (_panel(rng, size, clean_fraction) for _ in range(2))
        x = int(rng.integers(0, size))
        img = np.concatenate([a[:, x:], b[:, :x]], axis=1)
        mask = np.ascontiguousarray(np.concatenate([ma[:, x:], mb[:, :x]], axis=1))
        stem = f"frame_{i:05d}"
        Image.fromarray(img).save(out / "images" / f"{stem}.png", compress_level=1)
        m = Image.frombytes("P", (size, size), mask.tobytes())
        m.putpalette(palette)
        m.save(out / "masks" / f"{stem}.png", compress_level=1)
        stems.append(stem)
    synth_split(out, stems, seed)
    return out
