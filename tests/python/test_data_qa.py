"""Label QA: every finding kind planted and found; a clean dataset reports none; the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from edgeseg import cli
from edgeseg.data import check, format_report

YAML = (
    "- {id: 0, name: background, color: [0, 0, 0]}\n"
    "- {id: 1, name: scratch, color: [255, 0, 0]}\n"
    "- {id: 2, name: stain, color: [0, 128, 255]}\n"
    "- {id: 3, name: crack, color: [0, 255, 0]}\n"
)
COLORS = {0: (0, 0, 0), 1: (255, 0, 0), 2: (0, 128, 255), 3: (0, 255, 0)}
LOOSE = {"min_pixel_share": 0.0, "min_class_images": 1}


def colour(mask):
    rgb = np.zeros((*mask.shape, 3), np.uint8)
    for k, c in COLORS.items():
        rgb[mask == k] = c
    return rgb


def clean_dataset(root, rng, n=8, size=32):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.yaml").write_text(YAML)
    for i in range(n):
        img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        mask = np.zeros((size, size), np.uint8)
        mask[4:12, 4:12] = 1
        mask[14:24, 2:10] = 2
        mask[20:30, 16:30] = 3
        Image.fromarray(img).save(root / "images" / f"img{i:02d}.png")
        Image.fromarray(colour(mask)).save(root / "masks" / f"img{i:02d}.png")
    return root


def kinds(findings):
    return {(f["kind"], f["file"].rsplit("/", 1)[-1]) for f in findings}


def test_clean_dataset_reports_nothing(tmp_path, rng):
    root = clean_dataset(tmp_path / "clean", rng)
    report = check(root, workers=1, progress=False)
    assert report["errors"] == [] and report["warnings"] == []
    assert report["num_images"] == 8
    assert report["class_images"] == {"background": 8, "scratch": 8, "stain": 8, "crack": 8}
    assert report["class_pixels"]["scratch"] == 8 * 64
    assert sum(report["class_pixels"].values()) == 8 * 32 * 32
    assert [c["name"] for c in report["classes"]] == ["background", "scratch", "stain", "crack"]
    assert "OK: 0 errors, 0 warnings" in format_report(report)


def plant_everything(root, rng):
    clean_dataset(root, rng)
    im, mk = root / "images", root / "masks"
    (im / "img00.png").rename(im / "orphan.png")  # image without a mask
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(mk / "stray.png")  # mask, no image
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(mk / "img01.png")  # wrong size
    data = (im / "img02.png").read_bytes()
    (im / "img02.png").write_bytes(data[: len(data) // 2])  # truncated
    (im / "img03.png").write_bytes(b"this is not an image\n")  # not an image
    m = np.array(Image.open(mk / "img04.png"))
    m[0:3, :] = (12, 34, 56)  # a colour no class has: 96 px
    Image.fromarray(m).save(mk / "img04.png")
    (im / "img06.png").write_bytes((im / "img05.png").read_bytes())  # duplicate
    m = np.zeros((32, 32, 3), np.uint8)
    m[:, :20] = (99, 99, 99)  # 62% unknown → unknown_value + unlabeled
    Image.fromarray(m).save(mk / "img07.png")
    # crack only in img05/img06 (rare); stain everywhere; a class nobody uses:
    (root / "classes.yaml").write_text(YAML + "- {id: 4, name: dent, color: [9, 9, 9]}\n")
    for name in ("img04.png", "img07.png"):
        arr = np.array(Image.open(mk / name))
        arr[(arr == COLORS[3]).all(-1)] = 0
        Image.fromarray(arr).save(mk / name)
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text(
        "\n".join(f"img{i:02d}" for i in range(1, 8) if i != 6) + "\norphan\n"
    )
    (root / "splits" / "val.txt").write_text("img06\n")


def test_every_finding_kind_is_planted_and_found(tmp_path, rng):
    root = tmp_path / "bad"
    plant_everything(root, rng)
    report = check(root, workers=1, progress=False, min_pixel_share=0.0, min_class_images=3)
    errors, warns = kinds(report["errors"]), kinds(report["warnings"])
    assert ("missing_mask", "orphan.png") in errors
    assert ("missing_image", "stray.png") in errors
    assert ("size_mismatch", "img01.png") in errors
    assert ("unreadable", "img02.png") in errors
    assert ("unreadable", "img03.png") in errors
    assert ("unknown_value", "img04.png") in errors
    assert ("unknown_value", "img07.png") in errors
    assert ("duplicate_image", "img06.png") in errors  # train vs val: a leak
    assert ("unlabeled", "img07.png") in warns
    assert ("class_imbalance", "classes.yaml") in warns
    assert ("empty_class", "classes.yaml") in warns
    by = {(f["kind"], f["file"].rsplit("/", 1)[-1]): f["detail"] for f in report["errors"]}
    assert "colour (12, 34, 56): 96 px" in by[("unknown_value", "img04.png")]
    assert "32x32" in by[("size_mismatch", "img01.png")]
    assert "img05.png" in by[("duplicate_image", "img06.png")]
    imbalance = [f["detail"] for f in report["warnings"] if f["kind"] == "class_imbalance"]
    assert any("'crack'" in d for d in imbalance)
    assert any("'dent'" in d for d in [f["detail"] for f in report["warnings"]])
    for f in report["errors"] + report["warnings"]:
        assert set(f) == {"kind", "file", "detail"} and f["detail"]
    # nothing dropped silently: every image file is in the report or was checked
    assert report["num_images"] == 7
    # the multi-process path gives the same report
    multi = check(root, workers=2, progress=False, min_pixel_share=0.0, min_class_images=3)
    for key in ("errors", "warnings", "class_pixels", "class_images", "num_images"):
        assert multi[key] == report[key], key


def test_duplicate_within_a_split_is_a_warning(tmp_path, rng):
    root = clean_dataset(tmp_path / "d", rng, n=4)
    (root / "images" / "img01.png").write_bytes((root / "images" / "img00.png").read_bytes())
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("img00\nimg01\nimg02\nimg03\n")
    report = check(root, workers=1, progress=False, **LOOSE)
    assert report["errors"] == []
    assert kinds(report["warnings"]) == {("duplicate_image", "img01.png")}


def test_cli_check_json_and_exit_codes(tmp_path, rng, capsys):
    clean = clean_dataset(tmp_path / "clean", rng)
    out = tmp_path / "clean.json"
    rc = cli.main(["data", "check", str(clean), "--json", str(out), "--no-progress"])
    assert rc == 0
    report = json.loads(out.read_text())
    for key in ("num_images", "classes", "errors", "warnings", "class_pixels", "class_images"):
        assert key in report
    assert "OK: 0 errors" in capsys.readouterr().out

    bad = tmp_path / "bad"
    plant_everything(bad, rng)
    rc = cli.main(["data", "check", str(bad), "--json", str(out), "--no-progress", "--limit", "1"])
    text = capsys.readouterr().out
    assert rc == 1 and "NOT OK" in text and "unknown_value" in text and "more" in text
    assert json.loads(out.read_text())["errors"]

    # only warnings → exit 0
    rc = cli.main(["data", "check", str(clean), "--no-progress", "--min-class-images", "100"])
    assert rc == 0 and "class_imbalance" in capsys.readouterr().out


def test_cli_check_unusable_dataset(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "r.json"
    rc = cli.main(["data", "check", str(tmp_path / "empty"), "--json", str(out)])
    assert rc == 2  # bad input, not findings
    assert json.loads(out.read_text())["errors"][0]["kind"] == "invalid_dataset"
    err = capsys.readouterr().err
    assert "cannot tell the dataset layout" in err and err.startswith("edgeseg data check: error:")


def test_cli_check_missing_path_is_bad_input(tmp_path, capsys):
    rc = cli.main(["data", "check", str(tmp_path / "nothere"), "--no-progress"])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("edgeseg data check: error:") and "nothere" in err


@pytest.mark.parametrize("bad", [b"", b"\x89PNG\r\n\x1a\n" + b"\0" * 40])
def test_unreadable_masks(tmp_path, rng, bad):
    root = clean_dataset(tmp_path / "m", rng, n=3)
    (root / "masks" / "img01.png").write_bytes(bad)
    report = check(root, workers=1, progress=False, **LOOSE)
    assert kinds(report["errors"]) == {("unreadable", "img01.png")}
    assert "mask" in report["errors"][0]["detail"]


def test_cli_data_help(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["data", "--help"])
    assert e.value.code == 0 and "check" in capsys.readouterr().out


def _smooth(rng, size=64):
    """A smooth random picture: structure a perceptual hash can tell apart."""
    small = rng.integers(0, 256, (4, 4, 3)).astype(np.uint8)
    return np.asarray(Image.fromarray(small).resize((size, size), Image.BICUBIC))


def leak_dataset(root, rng, n=6, size=64):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "splits").mkdir()
    (root / "classes.yaml").write_text(YAML)
    for i in range(n):
        mask = np.zeros((size, size), np.uint8)
        mask[20:40, 20:40] = 1 + i % 3
        Image.fromarray(_smooth(rng, size)).save(root / "images" / f"img{i:02d}.png")
        Image.fromarray(colour(mask)).save(root / "masks" / f"img{i:02d}.png")
    return root


def test_near_duplicates_across_splits_slivers_and_split_classes(tmp_path, rng):
    root = leak_dataset(tmp_path / "leak", rng)
    im, mk = root / "images", root / "masks"
    # img05 is img00 re-shot a little brighter: the same scene in train and val
    a = np.asarray(Image.open(im / "img00.png")).astype(np.int16)
    Image.fromarray(np.clip(a + 9, 0, 255).astype(np.uint8)).save(im / "img05.png")
    # img01: the scratch polygon stops one pixel short of the top edge (background band)
    m = np.zeros((64, 64), np.uint8)
    m[1:30, 10:50] = 1
    Image.fromarray(colour(m)).save(mk / "img01.png")
    # img02: a one-pixel band of stain along the left edge over background
    m = np.zeros((64, 64), np.uint8)
    m[:, :1] = 2
    m[20:40, 20:40] = 2
    Image.fromarray(colour(m)).save(mk / "img02.png")
    # crack (3) only in val (img05), scratch (1) never in val
    for name, cls in (("img03", 2), ("img04", 2), ("img05", 3), ("img00", 2)):
        m = np.zeros((64, 64), np.uint8)
        m[20:40, 20:40] = cls
        Image.fromarray(colour(m)).save(mk / f"{name}.png")
    (root / "splits" / "train.txt").write_text("img00\nimg01\nimg02\nimg03\n")
    (root / "splits" / "val.txt").write_text("img04\nimg05\n")
    report = check(root, workers=1, progress=False, **LOOSE)
    errors, warns = kinds(report["errors"]), kinds(report["warnings"])
    assert errors == {("near_duplicate", "img05.png")}
    detail = report["errors"][0]["detail"]
    assert "img00.png" in detail and "splits train and val" in detail  # names both files
    slivers = {
        f["file"].rsplit("/", 1)[-1]: f["detail"]
        for f in report["warnings"]
        if f["kind"] == "border_sliver"
    }
    assert set(slivers) == {"img01.png", "img02.png"}
    assert "'background' 40 px long" in slivers["img01.png"] and "top edge" in slivers["img01.png"]
    assert "x 10..49" in slivers["img01.png"] and "'scratch'" in slivers["img01.png"]
    assert "'stain' 64 px long" in slivers["img02.png"] and "left edge" in slivers["img02.png"]
    split = [f["detail"] for f in report["warnings"] if f["kind"] == "split_classes"]
    assert any("'crack'" in d and "labelled in val but in no train image" in d for d in split)
    assert any("'scratch'" in d and "in train but in no val image" in d for d in split)
    assert ("near_duplicate", "img05.png") not in warns
    # the same pair within one split is a warning; -1 turns the check off
    (root / "splits" / "train.txt").write_text("img00\nimg01\nimg02\nimg03\nimg05\n")
    (root / "splits" / "val.txt").write_text("img04\n")
    report = check(root, workers=1, progress=False, **LOOSE)
    assert ("near_duplicate", "img05.png") in kinds(report["warnings"])
    assert not any(f["kind"] == "near_duplicate" for f in report["errors"])
    off = check(root, workers=1, progress=False, max_distance=-1, **LOOSE)
    assert not any(f["kind"] == "near_duplicate" for f in off["warnings"] + off["errors"])
