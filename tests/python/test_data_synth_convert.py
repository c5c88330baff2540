"""Synthetic inspection data and pixel-exact conversion between layouts."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from edgeseg import DatasetError, cli
from edgeseg.data import check, convert, open_dataset, synth


@pytest.fixture(scope="module")
def defects(tmp_path_factory):
    return synth(tmp_path_factory.mktemp("syn") / "defects", n=40, size=96, seed=3, workers=2)


def test_synth_defects_layout_and_content(defects):
    ds = open_dataset(defects)
    assert ds.layout == "folder" and len(ds) == 40
    assert ds.classes.names == ["background", "scratch", "stain", "crack"]
    assert ds.split_sizes() == {"train": 32, "val": 4, "test": 4}
    report = check(ds, workers=1, progress=False, min_class_images=1, min_pixel_share=0)
    assert report["errors"] == [] and report["warnings"] == []
    per_image = []
    for i in range(len(ds)):
        img, mask = ds[i]
        assert img.shape == (96, 96, 3) and mask.dtype == np.uint8
        assert set(np.unique(mask).tolist()) <= {0, 1, 2, 3}
        per_image.append({c: int((mask == c).sum()) for c in (1, 2, 3)})
    assert sum(1 for p in per_image if not any(p.values())) >= 2  # defect-free images
    assert sum(1 for p in per_image if all(p.values())) >= 2  # all classes in one image
    assert len({img.mean().round(1) for img, _ in (ds[i] for i in range(10))}) == 10


def test_scratches_are_thin_and_masks_exact(defects):
    import cv2

    ds = open_dataset(defects)
    thick = total = 0
    for i in range(len(ds)):
        img, mask = ds[i]
        s = (mask == 1).astype(np.uint8)
        total += int(s.sum())
        thick += int(cv2.erode(s, np.ones((5, 5), np.uint8)).sum())
    assert total > 0 and thick / total < 0.05  # 1-3 px lines: nothing survives a 5x5 erosion


def test_synth_is_deterministic_and_objects_task(tmp_path):
    a = synth(tmp_path / "a", n=6, size=64, seed=7, workers=1)
    b = synth(tmp_path / "b", n=6, size=64, seed=7, workers=1)
    for sub in ("images", "masks"):
        for p in sorted((a / sub).iterdir()):
            assert p.read_bytes() == (b / sub / p.name).read_bytes()
    with pytest.raises(DatasetError, match="--overwrite"):
        synth(a, n=2, size=64)
    o = synth(tmp_path / "o", task="objects", n=6, size=64, seed=0, workers=1)
    ds = open_dataset(o)
    assert ds.classes.names == ["background", "product"]
    assert all((ds[i][1] == 1).any() for i in range(len(ds)))
    with pytest.raises(DatasetError, match="defects, objects"):
        synth(tmp_path / "x", task="cats")


def same_samples(a, b):
    assert a.classes == b.classes and len(a) == len(b)
    bk = {s.key: i for i, s in enumerate(b.samples)}
    for i, s in enumerate(a.samples):
        j = bk[s.key]
        assert s.split == b.samples[j].split
        ia, ma = a[i]
        ib, mb = b[j]
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(ma, mb)
        assert ma.dtype == mb.dtype


def test_roundtrip_folder_cvat_folder(defects, tmp_path):
    src = open_dataset(defects)
    cvat = convert(defects, tmp_path / "cvat", to="cvat")
    assert (cvat / "labelmap.txt").read_text().startswith("# label:color_rgb")
    assert Image.open(next((cvat / "SegmentationClass").iterdir())).mode == "RGB"
    back = convert(cvat, tmp_path / "folder", to="folder")
    same_samples(src, open_dataset(cvat))
    same_samples(src, open_dataset(back))
    for p in (defects / "masks").iterdir():  # pixel for pixel, palette included
        assert np.array_equal(
            np.array(Image.open(p)), np.array(Image.open(back / "masks" / p.name))
        )


def test_roundtrip_cvat_zip_folder_cvat_with_void_and_sparse_ids(tmp_path, rng):
    root = tmp_path / "f"
    (root / "images" / "sub").mkdir(parents=True)
    (root / "masks" / "sub").mkdir(parents=True)
    (root / "classes.yaml").write_text(
        "- {id: 0, name: background, color: [0, 0, 0]}\n- {id: 5, name: dent, color: [1, 2, 3]}\n"
    )
    for k in ("a", "sub/b", "sub/c"):
        m = np.zeros((20, 24), np.uint8)
        m[2:8, 3:9] = 5
        m[15:, :] = 255
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(
            root / "images" / f"{k}.bmp"
        )
        Image.fromarray(m).save(root / "masks" / f"{k}.png")
    src = open_dataset(root)
    z = convert(root, tmp_path / "out.zip", to="cvat")
    assert z.is_file()
    via_zip = open_dataset(z)
    assert via_zip.layout == "cvat"
    same_samples(src, via_zip)
    folder = convert(z, tmp_path / "again", to="folder")
    cvat2 = convert(folder, tmp_path / "cvat2", to="cvat")
    same_samples(src, open_dataset(folder))
    same_samples(via_zip, open_dataset(cvat2))
    with pytest.raises(DatasetError, match="already exists"):
        convert(folder, tmp_path / "cvat2", to="cvat")


def test_labelme_to_folder_keeps_embedded_image_bytes(tmp_path, rng):
    root = tmp_path / "lm"
    root.mkdir()
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(buf, format="JPEG")
    doc = {
        "version": "5.4.1",
        "shapes": [
            {"label": "dent", "points": [[3, 3], [20, 4], [12, 25]], "shape_type": "polygon"},
            {"label": "rust", "points": [[30, 10], [35, 10]], "shape_type": "circle"},
        ],
        "imagePath": "gone.jpg",
        "imageData": base64.b64encode(buf.getvalue()).decode(),
        "imageHeight": 30,
        "imageWidth": 40,
    }
    (root / "part.json").write_text(json.dumps(doc))
    src = open_dataset(root)
    out = convert(root, tmp_path / "f", to="folder")
    assert (out / "images" / "part.jpg").read_bytes() == buf.getvalue()
    same_samples(src, open_dataset(out))


def test_cli_synth_convert(tmp_path, capsys):
    out = tmp_path / "s"
    rc = cli.main(["data", "synth", str(out), "--n", "4", "--size", "48", "--no-progress"])
    assert rc == 0 and (out / "classes.yaml").is_file()
    rc = cli.main(["data", "convert", str(out), str(tmp_path / "c"), "--to", "cvat"])
    assert rc == 0 and (tmp_path / "c" / "labelmap.txt").is_file()
    capsys.readouterr()
    rc = cli.main(["data", "info", str(tmp_path / "c"), "--json"])
    info = json.loads(capsys.readouterr().out)
    assert rc == 0 and info["layout"] == "cvat" and info["num_images"] == 4
    rc = cli.main(["data", "convert", str(tmp_path / "nope"), str(tmp_path / "d"), "--to", "cvat"])
    assert rc == 2 and "no such file" in capsys.readouterr().err


def test_data_layer_imports_without_torch_or_opencv():
    import subprocess
    import sys

    code = (
        "import sys, edgeseg.data; "
        "bad = [m for m in ('torch', 'cv2', 'skimage') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_synth_without_opencv_says_what_to_install(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(DatasetError, match="pip install opencv-python-headless"):
        synth(tmp_path / "x", n=2, size=64)
