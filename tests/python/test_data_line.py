"""Labelled camera frames of the synthetic inspection line (``synth_line_dataset``): the folder
layout of ``synth``, clean labels, frames that depend only on the seed, and clear refusals."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("cv2")
pytest.importorskip("skimage")

from edgeseg import DatasetError  # noqa: E402
from edgeseg.data import check, open_dataset  # noqa: E402
from edgeseg.data.video import synth_line_dataset  # noqa: E402


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    return synth_line_dataset(tmp_path_factory.mktemp("line") / "ds", n=20, size=64, seed=4)


def test_layout_splits_and_labels(frames):
    ds = open_dataset(frames)
    assert ds.layout == "folder" and len(ds) == 20
    assert ds.classes.names == ["background", "scratch", "stain", "crack"]
    assert ds.split_sizes() == {"train": 16, "val": 2, "test": 2}
    splits = [
        (frames / "splits" / f"{s}.txt").read_text().split() for s in ("train", "val", "test")
    ]
    stems = sorted(p.stem for p in (frames / "images").glob("*.png"))
    assert sorted(sum(splits, [])) == stems  # disjoint and complete
    report = check(ds, workers=1, progress=False, min_class_images=1, min_pixel_share=0)
    assert report["errors"] == []
    seen = set()
    for i in range(len(ds)):
        img, mask = ds[i]
        assert img.shape == (64, 64, 3) and mask.shape == (64, 64)
        seen |= set(np.unique(mask).tolist())
    assert seen <= {0, 1, 2, 3} and len(seen) >= 3  # defects of several classes occur


def test_frames_depend_only_on_the_seed(frames, tmp_path):
    again = synth_line_dataset(tmp_path / "again", n=3, size=64, seed=4)
    other = synth_line_dataset(tmp_path / "other", n=3, size=64, seed=5)
    for i in range(3):
        name = f"frame_{i:05d}.png"
        a = np.asarray(Image.open(frames / "images" / name))
        assert np.array_equal(a, np.asarray(Image.open(again / "images" / name)))
        assert not np.array_equal(a, np.asarray(Image.open(other / "images" / name)))
        ma = np.asarray(Image.open(frames / "masks" / name))
        assert np.array_equal(ma, np.asarray(Image.open(again / "masks" / name)))


def test_bad_arguments_and_existing_folder_are_refused(frames, tmp_path):
    with pytest.raises(DatasetError, match="n >= 1"):
        synth_line_dataset(tmp_path / "x", n=0)
    with pytest.raises(DatasetError, match="clean_fraction"):
        synth_line_dataset(tmp_path / "x", n=2, size=64, clean_fraction=1.5)
    with pytest.raises(DatasetError, match="already holds a dataset"):
        synth_line_dataset(frames, n=2, size=64)
    out = synth_line_dataset(frames.parent / "ds2", n=2, size=64, seed=1)
    assert synth_line_dataset(out, n=3, size=64, seed=1, overwrite=True) == out
    assert len(list((out / "images").glob("*.png"))) == 3
