"""Dataset formats written to their published layouts: Pascal VOC 2012, Cityscapes, COCO
(polygons, RLE), Label Studio (brush RLE, percent polygons), Roboflow semantic masks. Each
is read, checked against masks the test builds itself, converted to a folder dataset and
read back pixel for pixel; malformed exports become findings naming the file and item."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from edgeseg.data import VOID, check, convert, detect_layout, open_dataset
from edgeseg.data.cli import main as data_main

# -- helpers --------------------------------------------------------------------------------


def save_rgb(path, rng, h, w):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)


def voc_palette() -> list[int]:
    """The VOC colour map (bit-interleaved class id), written from its definition."""
    pal = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


def save_palette(path, mask):
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(mask.astype(np.uint8), mode="L").convert("P")
    im.putpalette(voc_palette())
    im.save(path)


def round_trip(ds, tmp_path):
    """Convert to a folder dataset and read it back: every sample identical."""
    out = convert(ds, tmp_path / "as_folder")
    back = open_dataset(out)
    assert len(back) == len(ds)
    by_key = {s.key: i for i, s in enumerate(back.samples)}
    for i, s in enumerate(ds.samples):
        img, mask = ds[i]
        img2, mask2 = back[by_key[s.key]]
        assert np.array_equal(img, img2) and np.array_equal(mask, mask2), s.key
        assert back.samples[by_key[s.key]].split == s.split
    assert back.classes.names == ds.classes.names


def kinds(report, severity="errors"):
    return {(f["kind"], f["file"].rsplit("/", 1)[-1]) for f in report[severity]}


# -- Pascal VOC 2012 -----------------------------------------------------------------------


def make_voc(root, rng, n=6):
    masks = {}
    for k in range(n):
        stem = f"2007_{k:06d}"
        save_rgb(root / "JPEGImages" / f"{stem}.jpg", rng, 20, 24)
        m = np.zeros((20, 24), np.uint8)
        cls = 1 + k % 20
        m[4:12, 5:15] = cls
        m[3, 5:15] = VOID  # the object border VOC draws in the void colour
        save_palette(root / "SegmentationClass" / f"{stem}.png", m)
        masks[stem] = m
    for k in range(3):  # detection-only images: no mask, in no segmentation list
        save_rgb(root / "JPEGImages" / f"2008_{k:06d}.jpg", rng, 20, 24)
    sets = root / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    stems = sorted(masks)
    (sets / "train.txt").write_text("\n".join(stems[:4]) + "\n")
    (sets / "val.txt").write_text("\n".join(stems[4:]) + "\n")
    (sets / "trainval.txt").write_text("\n".join(stems) + "\n")
    return masks


def test_voc_trainval_is_a_union_and_255_is_void(tmp_path, rng):
    root = tmp_path / "VOC2012"
    masks = make_voc(root, rng)
    assert detect_layout(root) == "voc"
    ds = open_dataset(root)
    assert ds.layout == "voc" and len(ds.classes) == 21
    assert ds.classes.names[:3] == ["background", "aeroplane", "bicycle"]
    assert ds.split_sizes() == {"train": 4, "val": 2}
    for i, s in enumerate(ds.samples):
        assert np.array_equal(ds[i][1], masks[s.key])
    report = check(ds, workers=1, progress=False)
    assert report["errors"] == []
    assert not [w for w in report["warnings"] if w["kind"] == "split_mismatch"]
    assert [w["kind"] for w in report["warnings"]].count("not_segmented") == 1
    assert report["void_pixels"] == 6 * 10
    round_trip(ds, tmp_path)


def test_voc_listed_image_without_mask_and_real_split_conflict(tmp_path, rng):
    root = tmp_path / "VOC2012"
    make_voc(root, rng)
    sets = root / "ImageSets" / "Segmentation"
    (sets / "val.txt").write_text("2007_000004\n2007_000005\n2007_000000\n2008_000000\n")
    (sets / "trainval.txt").unlink()
    with pytest.warns(UserWarning, match="no label"):
        report = check(open_dataset(root), workers=1, progress=False)
    found = kinds(report)
    assert ("missing_mask", "2008_000000.jpg") in found
    assert any(k == "split_mismatch" and "val.txt" in f for k, f in found)


def test_split_union_in_a_folder_dataset(tmp_path, rng):
    root = tmp_path / "ds"
    for k in range(6):
        save_rgb(root / "images" / f"a{k}.png", rng, 8, 8)
        save_palette(root / "masks" / f"a{k}.png", np.zeros((8, 8), np.uint8))
    sp = root / "splits"
    sp.mkdir()
    (sp / "train.txt").write_text("a0\na1\na2\n")
    (sp / "val.txt").write_text("a3\na4\n")
    (sp / "test.txt").write_text("a5\n")
    (sp / "all.txt").write_text("a0\na1\na2\na3\na4\na5\n")
    (sp / "trainval.txt").write_text("a0\na1\na2\na3\na4\n")
    ds = open_dataset(root)
    assert ds.split_sizes() == {"train": 3, "val": 2, "test": 1}
    assert not [f for f in ds.issues if f["kind"] == "split_mismatch"]
    (sp / "trainval.txt").write_text("a0\na1\na3\n")  # not a union of whole lists
    ds = open_dataset(root)
    # a0, a1 in train and trainval; a3 in trainval and val
    assert [f["kind"] for f in ds.issues].count("split_mismatch") == 3


# -- Cityscapes ----------------------------------------------------------------------------

#: label id -> train id of the 19 benchmark classes (all other label ids are void)
TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10}
TRAIN_IDS |= {24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}


def make_cityscapes(root, rng):
    ids = {}
    for split, city, n in (("train", "aachen", 3), ("val", "lindau", 2)):
        for k in range(n):
            stem = f"{city}_{k:06d}_000019"
            save_rgb(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", rng, 16, 32)
            lab = rng.integers(0, 34, (16, 32)).astype(np.uint8)
            p = root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(lab).save(p)
            Image.fromarray(lab).save(str(p).replace("labelIds", "color"))  # not read
            ids[f"{split}/{city}/{stem}"] = lab
    return ids


def test_cityscapes_train_ids_and_all_ids(tmp_path, rng):
    root = tmp_path / "cityscapes"
    ids = make_cityscapes(root, rng)
    assert detect_layout(root) == "cityscapes"
    ds = open_dataset(root)
    assert ds.split_sizes() == {"train": 3, "val": 2}
    assert len(ds.classes) == 19 and ds.classes.names[0] == "road"
    assert ds.classes.names[18] == "bicycle"
    lut = np.full(256, VOID, np.uint8)
    for lid, tid in TRAIN_IDS.items():
        lut[lid] = tid
    for i, s in enumerate(ds.samples):
        assert np.array_equal(ds[i][1], lut[ids[s.key]])
    assert check(ds, workers=1, progress=False)["errors"] == []
    round_trip(ds, tmp_path)

    everything = open_dataset(root, cityscapes_ids="all")
    assert len(everything.classes) == 34 and everything.classes.by_id(26).name == "car"
    for i, s in enumerate(everything.samples):
        assert np.array_equal(everything[i][1], ids[s.key])


def test_cityscapes_missing_label_and_stray_values(tmp_path, rng):
    root = tmp_path / "cs"
    make_cityscapes(root, rng)
    lonely = root / "leftImg8bit" / "val" / "lindau" / "lindau_000009_000019_leftImg8bit.png"
    save_rgb(lonely, rng, 16, 32)
    bad = root / "gtFine" / "train" / "aachen" / "aachen_000000_000019_gtFine_labelIds.png"
    Image.fromarray(np.full((16, 32), 77, np.uint8)).save(bad)
    with pytest.warns(UserWarning, match="no label"):
        report = check(open_dataset(root), workers=1, progress=False)
    found = kinds(report)
    assert ("missing_mask", "lindau_000009_000019_leftImg8bit.png") in found
    assert ("unknown_value", "aachen_000000_000019_gtFine_labelIds.png") in found


# -- COCO ----------------------------------------------------------------------------------


def coco_rle(mask: np.ndarray) -> dict:
    """Uncompressed COCO RLE from its definition: column-major runs, starting with zeros."""
    flat = mask.ravel(order="F").astype(np.uint8)
    counts, value, run = [], 0, 0
    for v in flat.tolist():
        if v == value:
            run += 1
        else:
            counts.append(run)
            value, run = v, 1
    counts.append(run)
    return {"counts": counts, "size": list(mask.shape)}


def make_coco(root, rng):
    h, w = 40, 48
    (root / "images").mkdir(parents=True)
    for k in range(3):
        save_rgb(root / "images" / f"im{k}.jpg", rng, h, w)
    big = np.zeros((h, w), np.uint8)
    big[5:35, 5:40] = 1
    small = np.zeros((h, w), np.uint8)
    small[10:20, 10:20] = 1
    other = np.zeros((h, w), np.uint8)
    other[30:38, 30:46] = 1
    from pycocotools import mask as mu

    compressed = mu.encode(np.asfortranarray(other))
    compressed["counts"] = compressed["counts"].decode("ascii")
    doc = {
        "images": [
            {"id": 1, "file_name": "im0.jpg", "width": w, "height": h},
            {"id": 2, "file_name": "im1.jpg", "width": w, "height": h},
            {"id": 3, "file_name": "im2.jpg", "width": w, "height": h},
        ],
        "categories": [
            {"id": 3, "name": "bolt", "supercategory": "part"},
            {"id": 7, "name": "plate", "supercategory": "part"},
        ],
        "annotations": [
            # the small region comes first in the file: size, not file order, decides
            {"id": 11, "image_id": 1, "category_id": 3, "segmentation": coco_rle(small)},
            {"id": 12, "image_id": 1, "category_id": 7, "segmentation": coco_rle(big)},
            {"id": 13, "image_id": 1, "category_id": 3, "segmentation": compressed},
            {
                "id": 14,
                "image_id": 2,
                "category_id": 7,
                "segmentation": [[10, 10, 30, 10, 30, 30, 10, 30]],
            },
        ],
    }
    ann = root / "annotations"
    ann.mkdir()
    (ann / "instances_train.json").write_text(json.dumps(doc))
    expect = np.zeros((h, w), np.uint8)
    expect[big > 0] = 7
    expect[small > 0] = 3
    expect[other > 0] = 3
    return doc, expect


def test_coco_rle_polygons_and_overlap_order(tmp_path, rng):
    root = tmp_path / "coco"
    _, expect = make_coco(root, rng)
    assert detect_layout(root) == "coco"
    ds = open_dataset(root)
    assert ds.classes.names == ["background", "bolt", "plate"]
    assert ds.classes.ids == [0, 3, 7]
    assert ds.split_sizes() == {"train": 3}
    by_key = {s.key: i for i, s in enumerate(ds.samples)}
    assert np.array_equal(ds[by_key["images/im0"]][1], expect)
    poly = ds[by_key["images/im1"]][1]
    assert (poly[12:29, 12:29] == 7).all() and (poly[:8] == 0).all() and (poly[32:] == 0).all()
    assert not ds[by_key["images/im2"]][1].any()  # no annotation: background
    assert check(ds, workers=1, progress=False)["errors"] == []
    round_trip(ds, tmp_path)


def test_coco_malformed_export_is_reported_by_item(tmp_path, rng):
    root = tmp_path / "coco"
    doc, _ = make_coco(root, rng)
    doc["images"].append({"id": 4, "file_name": "gone.jpg", "width": 48, "height": 40})
    doc["annotations"] += [
        {"id": 21, "image_id": 99, "category_id": 3, "segmentation": [[1, 1, 5, 1, 5, 5]]},
        {"id": 22, "image_id": 2, "category_id": 42, "segmentation": [[1, 1, 9, 1, 9, 9]]},
        {"id": 23, "image_id": 3, "category_id": 3, "segmentation": [[60, 1, 70, 1, 70, 9]]},
        {"id": 24, "image_id": 1, "category_id": 7, "segmentation": [[40, 30, 60, 30, 60, 39]]},
    ]
    (root / "annotations" / "instances_train.json").write_text(json.dumps(doc))
    report = check(open_dataset(root), workers=1, progress=False)
    errors = {(f["kind"], f["file"].split("instances_train.json")[-1]): f for f in report["errors"]}
    assert ("missing_image", " (image id 4)") in errors
    assert ("missing_image", " (annotation id 21)") in errors
    assert "category id 42" in errors[("unknown_value", " (image id 2)")]["detail"]
    assert "annotation id 23" in errors[("outside_image", " (image id 3)")]["detail"]
    partly = [f for f in report["warnings"] if f["kind"] == "outside_image"]
    assert len(partly) == 1 and "annotation id 24" in partly[0]["detail"]

    bad_rle = dict(doc)
    bad_rle["annotations"] = [
        {"id": 31, "image_id": 1, "category_id": 3, "segmentation": coco_rle(np.zeros((40, 40)))}
    ]
    (root / "annotations" / "instances_train.json").write_text(json.dumps(bad_rle))
    report = check(open_dataset(root), workers=1, progress=False)
    (err,) = [f for f in report["errors"] if f["kind"] == "size_mismatch"]
    assert err["file"].endswith("(image id 1)") and "annotation id 31" in err["detail"]


# -- Label Studio ---------------------------------------------------------------------------


def brush_rle(values: np.ndarray, sizes=(2, 6, 10, 16)) -> list[int]:
    """Label Studio brush RLE of ``values`` (8-bit words), from the format's description:
    literal chunks for single values, repeat chunks for runs."""
    bits = [f"{len(values):032b}", f"{8 - 1:05b}", *(f"{s - 1:04b}" for s in sizes)]
    vals = values.tolist()
    i = 0
    while i < len(vals):
        j = i
        while j < len(vals) and vals[j] == vals[i] and j - i < (1 << sizes[3]):
            j += 1
        if j - i == 1:  # a literal chunk of the values up to the next repeat
            k = i
            while k < len(vals) and (k + 1 >= len(vals) or vals[k + 1] != vals[k]) and k - i < 3:
                k += 1
            n = max(1, k - i)
            bits += ["0", "00", f"{n - 1:0{sizes[0]}b}", *(f"{v:08b}" for v in vals[i : i + n])]
            i += n
            continue
        n = j - i
        cls = next(c for c, s in enumerate(sizes) if n - 1 < (1 << s))
        bits += ["1", f"{cls:02b}", f"{n - 1:0{sizes[cls]}b}", f"{vals[i]:08b}"]
        i = j
    s = "".join(bits)
    s += "0" * (-len(s) % 8)
    return [int(s[k : k + 8], 2) for k in range(0, len(s), 8)]


def test_brush_rle_decoder_on_hand_made_streams(rng):
    from edgeseg.data.formats.labelstudio import decode_brush_rle

    for shape in ((1, 1), (3, 5), (17, 23)):
        m = (rng.random(shape) < 0.3).astype(np.uint8) * 255
        flat = np.repeat(m.ravel(), 4)
        assert np.array_equal(decode_brush_rle(brush_rle(flat)), flat)
    with pytest.raises(Exception, match="ends early"):
        decode_brush_rle(brush_rle(np.full(100, 255, np.uint8))[:-2])


def ls_task(tid, image, results, w, h):
    for r in results:
        r.setdefault("original_width", w)
        r.setdefault("original_height", h)
        r.setdefault("from_name", "tag")
        r.setdefault("to_name", "image")
    return {
        "id": tid,
        "data": {"image": image},
        "annotations": [{"id": tid * 10, "result": results}],
    }


def make_labelstudio(root, rng):
    h, w = 20, 40
    save_rgb(root / "images" / "part1.png", rng, h, w)  # uploads carry an 8-hex prefix
    save_rgb(root / "images" / "part2.png", rng, h, w)
    brush = np.zeros((h, w), np.uint8)
    brush[2:9, 3:30] = 255
    rgba = np.repeat(brush.ravel(), 4)
    tasks = [
        ls_task(
            1,
            "/data/upload/4/1a2b3c4d-part1.png",
            [
                {
                    "id": "b1",
                    "type": "brushlabels",
                    "value": {"format": "rle", "rle": brush_rle(rgba), "brushlabels": ["dent"]},
                },
                {  # later region on top: a polygon over part of the brush
                    "id": "p1",
                    "type": "polygonlabels",
                    "value": {
                        "points": [[50, 0], [100, 0], [100, 100], [50, 100]],
                        "polygonlabels": ["rust"],
                        "closed": True,
                    },
                },
                {"id": "c1", "type": "choices", "value": {"choices": ["ok"]}},
            ],
            w,
            h,
        ),
        ls_task(2, "/data/local-files/?d=images/part2.png", [], w, h),
    ]
    (root / "export.json").write_text(json.dumps(tasks))
    expect = np.zeros((h, w), np.uint8)
    expect[brush > 0] = 1
    return tasks, expect


def test_labelstudio_brush_and_polygons(tmp_path, rng):
    root = tmp_path / "ls"
    _, expect = make_labelstudio(root, rng)
    assert detect_layout(root) == "labelstudio"
    ds = open_dataset(root)
    assert ds.classes.names == ["background", "dent", "rust"]
    by_key = {s.key: i for i, s in enumerate(ds.samples)}
    mask = ds[by_key["images/part1"]][1]
    assert np.array_equal(mask[:, :19], expect[:, :19])  # brush left of the polygon
    assert (mask[1:-1, 21:-1] == 2).all()  # the polygon (right half) covers the brush
    assert not ds[by_key["images/part2"]][1].any()
    assert ds.label_path(by_key["images/part1"]).endswith("export.json (task 1)")
    assert check(ds, workers=1, progress=False)["errors"] == []
    round_trip(ds, tmp_path)


def test_labelstudio_malformed_export_is_reported_by_task(tmp_path, rng):
    root = tmp_path / "ls"
    tasks, _ = make_labelstudio(root, rng)
    small = np.repeat(np.zeros(10 * 10, np.uint8), 4)
    tasks[1]["annotations"][0]["result"] = [
        {
            "id": "b2",
            "type": "brushlabels",
            "original_width": 40,
            "original_height": 20,
            "value": {"format": "rle", "rle": brush_rle(small), "brushlabels": ["dent"]},
        }
    ]
    tasks[0]["annotations"][0]["result"][1]["value"]["polygonlabels"] = ["paint"]
    tasks.append(ls_task(3, "/data/upload/4/deadbeef-missing.png", [], 40, 20))
    save_rgb(root / "images" / "part4.png", rng, 20, 40)
    save_rgb(root / "images" / "part5.png", rng, 20, 40)
    far = {"points": [[120, 0], [150, 0], [150, 50]], "polygonlabels": ["rust"]}
    box = {"x": 10, "y": 10, "width": 20, "height": 20, "rectanglelabels": ["rust"]}
    tasks.append(ls_task(4, "part4.png", [{"type": "polygonlabels", "value": far}], 40, 20))
    tasks.append(ls_task(5, "part5.png", [{"type": "rectanglelabels", "value": box}], 40, 20))
    (root / "export.json").write_text(json.dumps(tasks))
    ds = open_dataset(root, classes=_classes(root, ["background", "dent", "rust"]))
    report = check(ds, workers=1, progress=False)
    errors = {(f["kind"], f["file"].split("export.json")[-1]): f for f in report["errors"]}
    assert ("missing_image", " (task 3)") in errors
    assert "RLE holds 400 values" in errors[("size_mismatch", " (task 2)")]["detail"]
    assert "label 'paint'" in errors[("unknown_value", " (task 1)")]["detail"]
    assert "entirely outside" in errors[("outside_image", " (task 4)")]["detail"]
    assert "rectanglelabels regions are not read" in errors[("unreadable", " (task 5)")]["detail"]


def _classes(root, names):
    path = root / "classes.yaml"
    path.write_text("".join(f"- {{id: {i}, name: {n}}}\n" for i, n in enumerate(names)))
    return path


# -- Roboflow -------------------------------------------------------------------------------


def make_roboflow(root, rng):
    masks = {}
    for folder, n in (("train", 3), ("valid", 2), ("test", 1)):
        d = root / folder
        d.mkdir(parents=True)
        (d / "_classes.csv").write_text("Pixel Value, Class\n0, background\n1, crack\n2, chip\n")
        for k in range(n):
            stem = f"img{k}_jpg.rf.{k:08x}"
            save_rgb(d / f"{stem}.jpg", rng, 12, 16)
            m = rng.integers(0, 3, (12, 16)).astype(np.uint8)
            Image.fromarray(m).save(d / f"{stem}_mask.png")
            masks[f"{folder}/{stem}"] = m
    return masks


def test_roboflow_semantic_masks(tmp_path, rng):
    root = tmp_path / "rf"
    masks = make_roboflow(root, rng)
    assert detect_layout(root) == "roboflow"
    ds = open_dataset(root)
    assert ds.classes.names == ["background", "crack", "chip"]
    assert ds.split_sizes() == {"train": 3, "val": 2, "test": 1}
    for i, s in enumerate(ds.samples):
        assert np.array_equal(ds[i][1], masks[s.key])
    round_trip(ds, tmp_path)


def test_roboflow_missing_files_and_disagreeing_classes(tmp_path, rng):
    root = tmp_path / "rf"
    make_roboflow(root, rng)
    save_rgb(root / "train" / "lonely.jpg", rng, 12, 16)
    Image.fromarray(np.zeros((12, 16), np.uint8)).save(root / "valid" / "orphan_mask.png")
    with pytest.warns(UserWarning, match="no label"):
        report = check(open_dataset(root), workers=1, progress=False)
    assert {("missing_mask", "lonely.jpg"), ("missing_image", "orphan_mask.png")} <= kinds(report)
    (root / "test" / "_classes.csv").write_text("Pixel Value, Class\n0, background\n1, chip\n")
    with pytest.raises(Exception, match="differ"):
        open_dataset(root)


# -- the CLI --------------------------------------------------------------------------------


def test_cli_convert_from_a_named_format(tmp_path, rng, capsys):
    root = tmp_path / "VOC2012"
    make_voc(root, rng)
    assert data_main(["convert", str(root), str(tmp_path / "out"), "--from", "voc"]) == 0
    back = open_dataset(tmp_path / "out")
    assert back.split_sizes() == {"train": 4, "val": 2}
    rc = data_main(["convert", str(root), str(tmp_path / "o2"), "--from", "coco"])
    assert rc == 2 and "no usable image/label pairs" in capsys.readouterr().err
    rc = data_main(["info", str(root), "--ignore", "nonesuch"])
    assert rc == 2 and "cannot ignore 'nonesuch': no such class" in capsys.readouterr().err


def test_coco_hostile_structure_is_an_error_not_a_crash(tmp_path, rng):
    root = tmp_path / "coco"
    doc, _ = make_coco(root, rng)
    path = root / "annotations" / "instances_train.json"
    bad_rle = {"counts": ["a", 3], "size": [40, 48]}
    ann = {"id": 5, "image_id": 1, "category_id": 3, "segmentation": bad_rle}
    broken = dict(doc, annotations=[ann])
    path.write_text(json.dumps(broken))
    report = check(open_dataset(root), workers=1, progress=False)
    (err,) = [f for f in report["errors"] if f["kind"] == "unreadable"]
    assert err["file"].endswith("(image id 1)") and "annotation id 5" in err["detail"]
    path.write_text(json.dumps(dict(doc, images=5)))
    with pytest.raises(Exception, match="images must be lists in a COCO file"):
        open_dataset(root, layout="coco")
