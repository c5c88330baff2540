"""A synthesized inspection video: surface panels with defects moving past a fixed camera.

Panels are drawn by the same generator as the ``defects`` dataset (:mod:`edgeseg.data.synth`)
with another seed (never the training images), laid side by side on a strip that scrolls
``speed`` pixels per frame under a ``height``×``width`` camera window — a conveyor or a web
of material passing an inspection camera. The ground-truth class map of every frame is kept
next to the video (``*.gt.npz``) so the loop's output can be scored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np

from edgeseg.errors import DatasetError

__all__ = ["synth_inspection_video"]


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

    from edgeseg.data.synth import _defects_image, _finish, _surface

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
        rng = np.random.default_rng([seed, i])
        if rng.random() < clean_fraction:
            img, mask = _finish(_surface(rng, height), rng), np.zeros((height, height), np.uint8)
        else:
            img, mask = _defects_image(rng, height)
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
