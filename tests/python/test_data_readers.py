"""Readers: folder (id / palette / colour / 16-bit masks), CVAT zip, LabelMe, image formats."""

from __future__ import annotations

import base64
import io
import json
import shutil
import zipfile

import numpy as np
import pytest
from PIL import Image

from edgeseg import DatasetError
from edgeseg.data import ClassMap, detect_layout, open_dataset

COLORS = {0: (0, 0, 0), 1: (255, 0, 0), 2: (0, 128, 255)}
YAML = "".join(
    f"- {{id: {i}, name: {n}, color: [{c[0]}, {c[1]}, {c[2]}]}}\n"
    for i, n, c in (
        (0, "background", COLORS[0]),
        (1, "scratch", COLORS[1]),
        (2, "stain", COLORS[2]),
    )
)


def rand_image(rng, h=24, w=32):
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def rand_mask(rng, h=24, w=32, ids=(0, 1, 2)):
    m = np.zeros((h, w), np.uint8)
    for cls in ids[1:]:
        y, x = rng.integers(0, h - 6), rng.integers(0, w - 6)
        m[y : y + 6, x : x + 6] = cls
    return m


def palette_png(mask, path):
    im = Image.frombytes("P", (mask.shape[1], mask.shape[0]), mask.tobytes())
    pal = np.zeros((256, 3), np.uint8)
    for i, c in COLORS.items():
        pal[i] = c
    im.putpalette(pal.ravel().tolist())
    im.save(path)


def colour_png(mask, path):
    rgb = np.zeros((*mask.shape, 3), np.uint8)
    for i, c in COLORS.items():
        rgb[mask == i] = c
    Image.fromarray(rgb).save(path)


def test_folder_all_mask_kinds_subfolders_and_splits(tmp_path, rng):
    root = tmp_path / "ds"
    (root / "images" / "lineA").mkdir(parents=True)
    (root / "masks" / "lineA").mkdir(parents=True)
    (root / "splits").mkdir()
    (root / "classes.yaml").write_text(YAML)
    expected = {}
    writers = {
        "id8": lambda m, p: Image.fromarray(m).save(p),
        "id16": lambda m, p: Image.fromarray(m.astype(np.uint16)).save(p),
        "pal": palette_png,
        "rgb": colour_png,
    }
    for k, (kind, write) in enumerate(writers.items()):
        key = f"lineA/{kind}" if k % 2 else kind
        img, mask = rand_image(rng), rand_mask(rng)
        Image.fromarray(img).save(root / "images" / f"{key}.png")
        write(mask, root / "masks" / f"{key}.png")
        expected[key] = (img, mask)
    (root / "splits" / "train.txt").write_text("id8\nlineA/id16\npal\n")
    (root / "splits" / "val.txt").write_text("# validation\nrgb\n")
    ds = open_dataset(root)
    assert ds.layout == "folder" and len(ds) == 4 and ds.classes.names[2] == "stain"
    assert ds.split_sizes() == {"train": 3, "val": 1}
    for i, s in enumerate(ds.samples):
        img, mask = ds[i]
        assert img.dtype == np.uint8 and img.shape == (24, 32, 3)
        assert mask.dtype == np.uint8
        np.testing.assert_array_equal(img, expected[s.key][0])
        np.testing.assert_array_equal(mask, expected[s.key][1], err_msg=s.key)
    val = ds.split("val")
    assert len(val) == 1 and val.samples[0].key == "lineA/rgb" and val.classes is ds.classes
    assert ds.label_path(0).endswith(".png") and ds.image_path(0).startswith(str(root))
    with pytest.raises(DatasetError, match="no split 'dev'"):
        ds.split("dev")


def test_seeded_split_is_deterministic(tmp_path, rng):
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.yaml").write_text(YAML)
    for i in range(30):
        Image.fromarray(rand_image(rng, 8, 8)).save(root / "images" / f"{i:03d}.png")
        Image.fromarray(rand_mask(rng, 8, 8, (0,))).save(root / "masks" / f"{i:03d}.png")
    a = {s.key: s.split for s in open_dataset(root).samples}
    b = {s.key: s.split for s in open_dataset(root).samples}
    c = {s.key: s.split for s in open_dataset(root, seed=1).samples}
    assert a == b and a != c
    assert sorted(a.values()).count("val") == 3 and sorted(a.values()).count("test") == 3


def test_folder_without_class_map_infers_from_palette(tmp_path, rng):
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    Image.fromarray(rand_image(rng)).save(root / "images" / "a.png")
    palette_png(rand_mask(rng), root / "masks" / "a.png")
    ds = open_dataset(root)
    assert ds.classes.ids == [0, 1, 2] and ds.classes.by_id(1).color == COLORS[1]
    assert any(f["kind"] == "no_class_map" for f in ds.issues)


def test_16bit_ids_above_255(tmp_path, rng):
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.yaml").write_text("- {id: 0, name: bg}\n- {id: 300, name: big}\n")
    m = np.zeros((8, 8), np.uint16)
    m[2:4] = 300
    m[5] = 7  # not in the map → void
    Image.fromarray(rand_image(rng, 8, 8)).save(root / "images" / "a.png")
    Image.fromarray(m).save(root / "masks" / "a.png")
    ds = open_dataset(root)
    mask = ds[0][1]
    assert mask.dtype == np.uint16 and (mask[2:4] == 300).all() and (mask[5] == 255).all()
    assert ds.load(0).unknown == {"id 7": 8}


def test_image_formats(tmp_path, rng):
    import cv2

    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.yaml").write_text(YAML)
    base = rand_image(rng)
    gray = base[:, :, 0]
    g16 = (gray.astype(np.uint16) << 8) | 0x7F
    c16 = (base.astype(np.uint16) << 8) | 0x80
    Image.fromarray(base).save(root / "images" / "png.png")
    Image.fromarray(base).save(root / "images" / "bmp.bmp")
    Image.fromarray(base).save(root / "images" / "tif8.tif")
    Image.fromarray(gray).save(root / "images" / "gray.png")
    Image.fromarray(g16).save(root / "images" / "gray16.tif")
    cv2.imwrite(str(root / "images" / "rgb16.tif"), c16[:, :, ::-1])
    yy, xx = np.mgrid[0:24, 0:32]
    smooth = np.dstack([xx * 8, yy * 10, 255 - xx * 8]).astype(np.uint8)
    Image.fromarray(smooth).save(root / "images" / "jpg.jpg", quality=95)
    Image.fromarray(np.dstack([base, np.full(gray.shape, 128, np.uint8)])).save(
        root / "images" / "rgba.png"
    )
    for stem in ("png", "bmp", "tif8", "gray", "gray16", "rgb16", "jpg", "rgba"):
        Image.fromarray(rand_mask(rng)).save(root / "masks" / f"{stem}.png")
    ds = open_dataset(root)
    got = {s.key: ds[i][0] for i, s in enumerate(ds.samples)}
    for k in ("png", "bmp", "tif8", "rgb16", "rgba"):
        np.testing.assert_array_equal(got[k], base, err_msg=k)
    for k in ("gray", "gray16"):
        np.testing.assert_array_equal(got[k], np.dstack([gray] * 3), err_msg=k)
    assert np.abs(got["jpg"].astype(int) - smooth).mean() < 4


@pytest.mark.parametrize("mask_frame", ["displayed", "stored"])
def test_exif_orientation_applied_to_image_and_mask(tmp_path, rng, mask_frame):
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.yaml").write_text(YAML)
    stored = rand_image(rng, 20, 30)
    stored_mask = np.zeros((20, 30), np.uint8)
    stored_mask[0:5, 0:10] = 1  # top-left of the stored pixels
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    im.save(root / "images" / "a.png", exif=exif.tobytes())
    shown_mask = np.rot90(stored_mask, -1)
    mask = shown_mask if mask_frame == "displayed" else stored_mask
    Image.fromarray(np.ascontiguousarray(mask)).save(root / "masks" / "a.png")
    img, m = open_dataset(root)[0]
    np.testing.assert_array_equal(img, np.rot90(stored, -1))
    np.testing.assert_array_equal(m, shown_mask)
    assert m.shape == (30, 20) and (m[0:10, 15:20] == 1).all()  # now top-right


def make_cvat(root, rng, subsets=("default",), palette_mask=False, void=False):
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    (root / "SegmentationObject").mkdir()
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "labelmap.txt").write_text(
        "# label:color_rgb:parts:actions\n"
        "background:0,0,0::\nscratch:255,0,0::\nstain:0,128,255::\n"
    )
    expected = {}
    for i in range(4):
        stem = f"frame_{i:06d}"
        img, mask = rand_image(rng), rand_mask(rng)
        if void and i == 0:
            mask[0, :] = 255
        Image.fromarray(img).save(root / "JPEGImages" / f"{stem}.png")
        rgb = np.zeros((*mask.shape, 3), np.uint8)
        for k, c in COLORS.items():
            rgb[mask == k] = c
        rgb[mask == 255] = (224, 224, 192)
        if palette_mask and i == 1:
            Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=8).save(
                root / "SegmentationClass" / f"{stem}.png"
            )
        else:
            Image.fromarray(rgb).save(root / "SegmentationClass" / f"{stem}.png")
        expected[stem] = (img, mask)
    stems = sorted(expected)
    if subsets == ("default",):
        (root / "ImageSets" / "Segmentation" / "default.txt").write_text("\n".join(stems) + "\n")
    else:
        (root / "ImageSets" / "Segmentation" / "train.txt").write_text("\n".join(stems[:3]))
        (root / "ImageSets" / "Segmentation" / "val.txt").write_text(stems[3] + "\n")
    return expected


def zip_dir(src, dst, prefix=""):
    with zipfile.ZipFile(dst, "w") as z:
        for p in sorted(src.rglob("*")):
            z.write(p, prefix + p.relative_to(src).as_posix())
    return dst


def test_cvat_zip(tmp_path, rng):
    src = tmp_path / "export"
    expected = make_cvat(src, rng, subsets=("train", "val"), palette_mask=True, void=True)
    archive = zip_dir(src, tmp_path / "task_1-segmentation mask 1.1.zip", prefix="export/")
    ds = open_dataset(archive)
    assert ds.layout == "cvat" and ds.classes.names == ["background", "scratch", "stain"]
    assert ds.split_sizes() == {"train": 3, "val": 1}
    for i, s in enumerate(ds.samples):
        img, mask = ds[i]
        np.testing.assert_array_equal(img, expected[s.key][0])
        np.testing.assert_array_equal(mask, expected[s.key][1])
        assert ds.load(i).unknown == {}
    assert ds.image_path(0).startswith(f"{archive}!JPEGImages/")
    shutil.rmtree(src)
    tmpdir = ds.root
    del ds
    import gc

    gc.collect()
    assert not tmpdir.exists()  # the extracted copy goes with the dataset


def test_cvat_default_subset_gets_seeded_split(tmp_path, rng):
    make_cvat(tmp_path / "cvat", rng)
    ds = open_dataset(tmp_path / "cvat")
    assert sum(ds.split_sizes().values()) == 4 and ds.split_sizes()["val"] == 1


def test_cvat_labelmap_duplicate_colour(tmp_path, rng):
    make_cvat(tmp_path / "cvat", rng)
    (tmp_path / "cvat" / "labelmap.txt").write_text("background:0,0,0::\na:9,9,9::\nb:9,9,9::\n")
    with pytest.raises(DatasetError, match=r"labelmap.txt:3.*'a'"):
        open_dataset(tmp_path / "cvat")


def labelme_doc(shapes, h, w, image_path=None, image_data=None):
    return {
        "version": "5.4.1",
        "flags": {},
        "shapes": [
            {"label": lb, "points": pts, "group_id": None, "shape_type": kind, "flags": {}}
            for lb, kind, pts in shapes
        ],
        "imagePath": image_path,
        "imageData": image_data,
        "imageHeight": h,
        "imageWidth": w,
    }


def test_labelme_shapes_embedded_and_referenced(tmp_path, rng):
    root = tmp_path / "lm"
    root.mkdir()
    img = rand_image(rng, 40, 50)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    shapes = [
        ("stain", "polygon", [[5, 5], [30, 5], [30, 30], [5, 30]]),
        ("scratch", "rectangle", [[20, 25], [10, 20]]),  # corners in any order
        ("stain", "circle", [[40, 10], [43, 10]]),
    ]
    doc = labelme_doc(shapes, 40, 50, image_path="emb.png", image_data=None)
    doc["imageData"] = base64.b64encode(buf.getvalue()).decode()
    doc["imagePath"] = "not_here.png"
    (root / "emb.json").write_text(json.dumps(doc))
    Image.fromarray(img).save(root / "ref.jpg", quality=100)
    ref = labelme_doc([("scratch", "polygon", [[0, 0], [10, 0], [0, 10]])], 40, 50, "ref.jpg")
    (root / "ref.json").write_text(json.dumps(ref))
    assert detect_layout(root) == "labelme"
    ds = open_dataset(root)
    assert ds.classes.names == ["background", "scratch", "stain"]
    by_key = {s.key: i for i, s in enumerate(ds.samples)}
    image, mask = ds[by_key["emb"]]
    np.testing.assert_array_equal(image, img)
    stain, scratch = ds.classes.by_name("stain").id, ds.classes.by_name("scratch").id
    assert (mask[5:31, 5:10] == stain).all()
    assert (mask[20:26, 10:21] == scratch).all()  # drawn after the polygon: on top
    assert mask[4, 4] == 0 and mask[10, 40] == stain and mask[10, 46] == 0
    assert (mask == 255).sum() == 0
    _, m2 = ds[by_key["ref"]]
    assert m2[1, 1] == scratch and m2[9, 9] == 0


def test_labelme_label_missing_from_class_map(tmp_path, rng):
    root = tmp_path / "lm"
    root.mkdir()
    Image.fromarray(rand_image(rng, 20, 20)).save(root / "a.png")
    doc = labelme_doc([("dent", "rectangle", [[0, 0], [4, 4]])], 20, 20, "a.png")
    (root / "a.json").write_text(json.dumps(doc))
    cm = ClassMap.from_names(["background", "scratch"])
    ds = open_dataset(root, classes=cm)
    item = ds.load(0)
    assert item.unknown == {"label 'dent'": 25} and (item.mask[:5, :5] == 255).all()


def test_empty_and_unknown_layouts(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="cannot tell the dataset layout"):
        open_dataset(tmp_path / "empty")
    (tmp_path / "f" / "images").mkdir(parents=True)
    (tmp_path / "f" / "masks").mkdir()
    with pytest.raises(DatasetError, match="no usable image/label pairs"):
        open_dataset(tmp_path / "f")
    with pytest.raises(DatasetError, match="no such file"):
        open_dataset(tmp_path / "nope")
    (tmp_path / "x.zip").write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="not a folder or a .zip"):
        open_dataset(tmp_path / "x.zip")


def test_missing_mask_is_left_out_loudly_and_bad_files_name_themselves(tmp_path, rng):
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.yaml").write_text(YAML)
    for stem in ("a", "b", "c"):
        Image.fromarray(rand_image(rng)).save(root / "images" / f"{stem}.png")
    Image.fromarray(rand_mask(rng)).save(root / "masks" / "a.png")
    Image.fromarray(rand_mask(rng, 10, 10)).save(root / "masks" / "b.png")
    with pytest.warns(UserWarning, match="1 image.*no label"):
        ds = open_dataset(root)
    assert len(ds) == 2 and [f["kind"] for f in ds.issues] == ["missing_mask"]
    with pytest.raises(DatasetError, match=r"b.png: mask is 10x10 but its image .* is 32x24"):
        ds[1]
    (root / "images" / "a.png").write_bytes((root / "images" / "a.png").read_bytes()[:200])
    with pytest.raises(DatasetError, match=r"a.png: cannot read the image .*truncated"):
        ds[0]


def test_labelme_broken_json_and_missing_image_are_reported(tmp_path, rng):
    from edgeseg.data import check

    root = tmp_path / "lm"
    root.mkdir()
    Image.fromarray(rand_image(rng, 20, 20)).save(root / "a.png")
    Image.fromarray(rand_image(rng, 20, 20)).save(root / "unlabelled.png")
    good = labelme_doc([("dent", "polygon", [[0, 0], [9, 0], [0, 9]])], 20, 20, "a.png")
    (root / "a.json").write_text(json.dumps(good))
    (root / "b.json").write_text(json.dumps(labelme_doc([], 20, 20, "b.png")))
    (root / "c.json").write_text("{not json")
    bad_shape = labelme_doc([("dent", "hexagon", [[0, 0], [9, 0], [0, 9]])], 20, 20, "a.png")
    (root / "d.json").write_text(json.dumps(bad_shape))
    report = check(root, workers=1, progress=False, min_class_images=1)
    found = {(f["kind"], f["file"].rsplit("/", 1)[-1]) for f in report["errors"]}
    assert found == {
        ("missing_image", "b.json"),
        ("unreadable", "c.json"),
        ("unreadable", "d.json"),
        ("missing_mask", "unlabelled.png"),
    }
    d = [f["detail"] for f in report["errors"] if f["file"].endswith("d.json")][0]
    assert "hexagon" in d and "polygon" in d
