"""The label loop: perceptual hashes, polygons, pre-annotations (CVAT round trip, Label
Studio), frame selection, the low-confidence sample sink, and the loop end to end."""

from __future__ import annotations

import csv
import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from edgeseg.data.phash import hamming, near_duplicates, phash  # noqa: E402
from edgeseg.data.preannotate import polygons, rasterize_polygons  # noqa: E402


# ---------------------------------------------------------------------------------------
# pHash
# ---------------------------------------------------------------------------------------
def _reference_phash(image: np.ndarray) -> int:
    """pHash from OpenCV's grey conversion, area resize and DCT (an independent path)."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    small = cv2.resize(gray.astype(np.float32), (32, 32), interpolation=cv2.INTER_AREA)
    low = cv2.dct(small.astype(np.float64))[:8, :8]
    bits = (low > np.median(low)).ravel()
    return int("".join("1" if b else "0" for b in bits), 2)


def _scene(rng, h=256, w=256):
    img = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 6)
    img = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX)
    for _ in range(4):
        c = tuple(int(v) for v in rng.integers(0, 256, 3))
        p = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.circle(img, p, int(rng.integers(10, 60)), c, -1)
    return img


@pytest.mark.parametrize("shape", [(256, 256), (200, 310), (37, 61), (512, 96)])
def test_phash_matches_an_opencv_reference(rng, shape):
    for _ in range(3):
        img = _scene(rng, *shape)
        ours, ref = phash(img), _reference_phash(img)
        # grey weights and float rounding may flip a coefficient sitting on the median
        assert hamming(ours, ref) <= 2, (shape, f"{ours:016x}", f"{ref:016x}")


def test_phash_finds_near_duplicates_and_only_them(rng):
    scenes = [_scene(rng) for _ in range(12)]
    variants = []
    for img in scenes[:4]:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 60])
        jpeg = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        brighter = np.clip(img.astype(np.int16) + 12, 0, 255).astype(np.uint8)
        shifted = np.roll(img, 3, axis=1)
        variants += [jpeg, brighter, shifted]
    hashes = [phash(x) for x in scenes + variants]
    for k in range(4):
        for v in range(3):
            assert hamming(hashes[k], hashes[12 + 3 * k + v]) <= 6
    # unrelated scenes are far apart
    far = [hamming(hashes[a], hashes[b]) for a in range(12) for b in range(a + 1, 12)]
    assert min(far) > 10
    pairs = near_duplicates(hashes, 6)
    brute = [
        (a, b, hamming(hashes[a], hashes[b]))
        for a in range(len(hashes))
        for b in range(a + 1, len(hashes))
        if hamming(hashes[a], hashes[b]) <= 6
    ]
    assert pairs == brute
    assert {(k, 12 + 3 * k + v) for k in range(4) for v in range(3)} <= {
        (a, b) for a, b, _ in pairs
    }
    with pytest.raises(ValueError, match="expected an H×W"):
        phash(np.zeros((0, 4), np.uint8))


# ---------------------------------------------------------------------------------------
# polygons
# ---------------------------------------------------------------------------------------
def test_polygons_rasterize_back_to_the_mask_holes_included(rng):
    for _ in range(5):
        m = np.zeros((120, 160), np.uint8)
        for _ in range(3):
            c = (int(rng.integers(20, 140)), int(rng.integers(20, 100)))
            cv2.circle(m, c, int(rng.integers(8, 30)), 1, -1)
        hole = (int(rng.integers(40, 120)), int(rng.integers(30, 90)))
        cv2.circle(m, hole, 5, 0, -1)
        m[0, 0] = 1  # a one-pixel region
        polys = polygons(m.astype(bool))
        back = rasterize_polygons(m.shape, [(1, p) for p in polys])
        inter, union = np.logical_and(back, m).sum(), np.logical_or(back, m).sum()
        assert back[0, 0] == 1
        assert (back & ~m.astype(bool)).sum() <= 2 * len(polys) * 40  # only the slits
        assert inter / union >= 0.97
        assert (back == m).mean() >= 0.99
        areas = [cv2.contourArea(p.reshape(-1, 1, 2).astype(np.float32)) for p in polys]
        assert areas == sorted(areas, reverse=True)  # largest first


def test_a_hole_stays_a_hole():
    m = np.zeros((60, 60), bool)
    m[10:50, 10:50] = True
    m[25:35, 25:35] = False
    (poly,) = polygons(m)
    back = rasterize_polygons(m.shape, [(1, poly)]).astype(bool)
    assert not back[26:34, 26:34].all()  # the hole is open but for the slit
    assert back[26:34, 26:34].sum() <= 8
    assert (back == m).sum() >= m.size - 10


# ---------------------------------------------------------------------------------------
# pre-annotations from edgeseg predict
# ---------------------------------------------------------------------------------------
def _frames(tmp_path, n=6, seed=7):
    from edgeseg import data

    ds = data.synth(tmp_path / "frames_ds", "objects", n=n, size=64, seed=seed)
    return ds


def _archive(tmp_path, src_images):
    """An NG archive (the archive: sink's layout) holding the given images as originals."""
    root = tmp_path / "ng"
    for k, p in enumerate(src_images):
        e = root / f"20261201T101010.{k:03d}Z_f{k:06d}"
        e.mkdir(parents=True)
        shutil.copyfile(p, e / "original.png")
        shutil.copyfile(p, e / "overlay.png")  # not an input: only the original is
        (e / "mask.png").write_bytes(Path(p).read_bytes())
        (e / "record.json").write_text(json.dumps({"frame": k, "verdict": "NG"}))
    return root


def test_predict_writes_cvat_that_our_reader_reads_back(tiny_onnx, tmp_path):
    from edgeseg import cli
    from edgeseg.data import open_dataset
    from edgeseg.runtime import Segmenter

    ds = _frames(tmp_path)
    images = sorted((ds / "images").glob("*.png"))
    ng = _archive(tmp_path, images)
    out = tmp_path / "pre"
    rc = cli.main(
        ["predict", str(tiny_onnx), str(ng), "--out", str(out), "--no-progress"]
        + ["--save", "mask,cvat,labelstudio"]
    )
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == len(images)  # the originals only
    names = sorted(p.name for p in (ng).iterdir())
    assert sorted(p.name[: -len("_mask.png")] for p in out.glob("*_mask.png")) == names
    z = zipfile.ZipFile(out / "cvat.zip")
    listing = set(z.namelist())
    assert {"labelmap.txt", "ImageSets/Segmentation/default.txt"} <= listing
    for n in names:
        assert {f"SegmentationClass/{n}.png", f"SegmentationObject/{n}.png"} <= listing
        assert f"JPEGImages/{n}.png" in listing
    seg = Segmenter(tiny_onnx, backend="onnxruntime")
    assert z.read("labelmap.txt").decode().splitlines()[1:] == [
        f"{c.name}:{c.color[0]},{c.color[1]},{c.color[2]}::" for c in seg.classes
    ]
    back = open_dataset(out / "cvat.zip")
    assert back.layout == "cvat" and back.classes.names == seg.class_names
    seen = 0
    for i in range(len(back)):
        image, mask = back[i]
        key = back.samples[i].key
        entry = ng / key / "original.png"
        expect = seg.predict(cv2.imread(str(entry))).class_map
        assert np.array_equal(mask, expect), key  # predicted class map == re-read mask
        assert np.array_equal(image, cv2.imread(str(entry))[..., ::-1])
        seen += int(expect.any())
    assert seen  # the model finds the product on some frames: not blank maps compared
    # instances: one index per connected region of a non-background class
    from PIL import Image

    inst = np.asarray(Image.open(io.BytesIO(z.read(f"SegmentationObject/{names[0]}.png"))))
    _, mask0 = back[[s.key for s in back.samples].index(names[0])]
    assert ((inst > 0) == (mask0 > 0)).all()


def test_labelstudio_tasks_and_import(tiny_onnx, tmp_path):
    from edgeseg import cli
    from edgeseg.data import open_dataset
    from edgeseg.data.preannotate import import_labelstudio
    from edgeseg.runtime import Segmenter

    ds = _frames(tmp_path)
    out = tmp_path / "pre"
    argv = ["predict", str(tiny_onnx), str(ds / "images"), "--out", str(out), "--no-progress"]
    assert cli.main([*argv, "--save", "labelstudio"]) == 0
    ls = out / "labelstudio"
    tasks = json.loads((ls / "tasks.json").read_text())
    seg = Segmenter(tiny_onnx, backend="onnxruntime")
    config = (ls / "config.xml").read_text()
    for c in seg.classes[1:]:
        assert f'value="{c.name}"' in config
        assert f'background="#{c.color[0]:02x}{c.color[1]:02x}{c.color[2]:02x}"' in config
    assert len(tasks) == 6
    for t in tasks:
        (pred,) = t["predictions"]
        assert 0 < pred["score"] <= 1
        img = ls / "images" / t["data"]["image"].rsplit("/", 1)[-1]
        assert img.is_file() and t["data"]["image"].startswith("/data/local-files/?d=images/")
        for r in pred["result"]:
            pts = np.array(r["value"]["points"])
            assert r["type"] == "polygonlabels" and len(pts) >= 3
            assert (pts >= 0).all() and (pts <= 100).all()
            assert r["value"]["polygonlabels"][0] in seg.class_names[1:]
    # nobody corrected anything: the import gives the predictions back (polygon accuracy)
    cmap = tmp_path / "classes.yaml"
    from edgeseg.data.preannotate import class_map_of

    class_map_of(seg.classes).save(cmap)
    rep = import_labelstudio(ls / "tasks.json", tmp_path / "imported", classes=cmap)
    assert rep["images"] == 6 and rep["predicted_only"] == 6 and rep["new_classes"] == []
    back = open_dataset(tmp_path / "imported")
    agree = []
    for i in range(len(back)):
        image, mask = back[i]
        expect = seg.predict(image, rgb=True).class_map
        agree.append((mask == expect).mean())
    assert min(agree) >= 0.95, agree


# ---------------------------------------------------------------------------------------
# selection
# ---------------------------------------------------------------------------------------
def test_select_ranks_by_margin_and_skips_near_duplicates(tiny_onnx, tmp_path):
    from edgeseg import cli
    from edgeseg.data.select import image_scores
    from edgeseg.runtime import Segmenter

    ds = _frames(tmp_path, n=8, seed=3)
    pool = tmp_path / "pool"
    shutil.copytree(ds / "images", pool)
    first = sorted(pool.glob("*.png"))[0]
    img = cv2.imread(str(first))
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 70])
    (pool / "twin.jpg").write_bytes(buf.tobytes())  # a re-encoded copy
    out = tmp_path / "sel"
    argv = ["data", "select", str(pool), "--model", str(tiny_onnx), "--n", "4"]
    assert cli.main([*argv, "--out", str(out), "--no-progress", "--max-distance", "6"]) == 0
    rows = list(csv.DictReader(open(out / "selection.csv")))
    assert [int(r["rank"]) for r in rows] == [1, 2, 3, 4]
    seg = Segmenter(tiny_onnx, backend="onnxruntime")
    margins = {}
    for p in sorted(pool.iterdir()):
        lg = seg.logits(cv2.imread(str(p)))
        p_ = np.exp(lg - lg.max(0)) / np.exp(lg - lg.max(0)).sum(0)
        top = np.sort(p_, axis=0)
        margins[p.stem] = float((top[-1] - top[-2]).mean())
        assert abs(image_scores(lg)["mean_margin"] - margins[p.stem]) < 1e-5
    names = [r["name"] for r in rows]
    assert not {first.stem, "twin"} <= set(names)  # never both of a near-duplicate pair
    kept = [m for k, m in sorted(margins.items(), key=lambda kv: kv[1]) if k in names]
    assert [margins[n] for n in names] == kept
    # the lowest margins win, except a skipped twin
    ranked = [k for k, _ in sorted(margins.items(), key=lambda kv: kv[1])]
    expect = []
    for k in ranked:
        if (k == "twin" and first.stem in expect) or (k == first.stem and "twin" in expect):
            continue
        expect.append(k)
    assert names == expect[:4]
    assert all(float(r["score"]) == pytest.approx(1 - float(r["mean_margin"])) for r in rows)
    assert sorted(p.name for p in out.iterdir() if p.suffix != ".csv") == sorted(
        f"{n}{'.jpg' if n == 'twin' else '.png'}" for n in names
    )
    # disagreement with the mirrored image, rare classes, and bad input
    out2 = tmp_path / "sel2"
    assert cli.main([*argv, "--out", str(out2), "--by", "disagreement", "--no-progress"]) == 0
    d = [float(r["disagreement"]) for r in csv.DictReader(open(out2 / "selection.csv"))]
    assert d == sorted(d, reverse=True) and all(0 <= v <= 1 for v in d)
    out4 = tmp_path / "sel4"  # a second model: the same one agrees everywhere
    argv4 = [*argv, "--out", str(out4), "--by", "disagreement", "--model2", str(tiny_onnx)]
    assert cli.main([*argv4, "--no-progress"]) == 0
    assert {r["disagreement"] for r in csv.DictReader(open(out4 / "selection.csv"))} == {"0.0"}
    out3 = tmp_path / "sel3"
    rare = seg.class_names[1]
    argv3 = [*argv, "--out", str(out3), "--by", "rare-class", "--rare", rare, "--json", "-"]
    assert cli.main([*argv3, "--no-progress"]) == 0
    a = [float(r["rare_area"]) for r in csv.DictReader(open(out3 / "selection.csv"))]
    assert a == sorted(a, reverse=True) and a[0] > 0
    assert cli.main([*argv, "--out", str(out3), "--no-progress"]) == 2  # not empty
    assert (
        cli.main([*argv, "--out", str(tmp_path / "x"), "--rare", "nope", "--by", "rare-class"]) == 2
    )


# ---------------------------------------------------------------------------------------
# sample sink
# ---------------------------------------------------------------------------------------
def _item(index, conf, valid=True):
    from edgeseg.camera.frame import Frame
    from edgeseg.runtime.result import ClassInfo, SegResult
    from edgeseg.sinks.base import LoopItem

    img = np.full((8, 8, 3), index % 256, np.uint8)
    res = SegResult(
        class_map=np.zeros((8, 8), np.uint8),
        confidence=np.full((8, 8), conf, np.float32),
        classes=[ClassInfo(0, 0, "background", (0, 0, 0))],
        counts_array=np.array([64]),
        nonfinite=0 if valid else 3,
    )
    frame = Frame(image=img, index=index, t_capture=1764583810.0 + index)
    return LoopItem(frame=frame, result=res, verdict=None, record={"frame": index})


def test_sample_sink_keeps_the_least_confident(tmp_path, rng):
    from edgeseg.errors import SinkError
    from edgeseg.sinks import open_sink

    sink = open_sink(f"sample:{tmp_path / 's'}?below=0.6&max=5")
    sink.open()
    confs = rng.uniform(0.2, 1.0, 40).round(4)
    for k, c in enumerate(confs):
        sink.write(_item(k, float(c)))
    sink.write(_item(99, 0.01, valid=False))  # not finite: never sampled
    want = sorted(c for c in confs if c < 0.6)[:5]
    got = [c for _, c in sink.kept()]
    assert got == pytest.approx(want, abs=1e-6)
    files = sorted((tmp_path / "s").glob("*.png"))
    assert len(files) == 5 and len(list((tmp_path / "s").glob("*.json"))) == 5
    recs = [json.loads(p.with_suffix(".json").read_text()) for p in files]
    assert sorted(r["mean_confidence"] for r in recs) == pytest.approx(want, abs=1e-6)
    assert sink.stats()["kept"] == 5 and sink.stats()["written"] >= 5
    # a restarted loop goes on with the same sample
    again = open_sink(f"sample:{tmp_path / 's'}?max=5")
    again.open()
    again.write(_item(200, 0.5))  # more confident than every frame kept: skipped
    assert [c for _, c in again.kept()] == pytest.approx(want, abs=1e-6)
    again.write(_item(201, 0.0))
    assert [c for _, c in again.kept()] == pytest.approx([0.0, *want[:4]], abs=1e-6)
    assert len(list((tmp_path / "s").glob("*.png"))) == 5
    with pytest.raises(SinkError, match="unknown option"):
        open_sink(f"sample:{tmp_path}?blow=0.5")
    with pytest.raises(SinkError, match="below must be within"):
        open_sink(f"sample:{tmp_path}?below=2")
    with pytest.raises(SinkError, match="max must be at least 1"):
        open_sink(f"sample:{tmp_path}?max=0")


# ---------------------------------------------------------------------------------------
# fine-tuning keeps the old classes
# ---------------------------------------------------------------------------------------
def test_class_order_and_vanished_classes_are_errors():
    from edgeseg.errors import TrainingError
    from edgeseg.train.finetune import check_class_order

    check_class_order(["bg", "scratch"], ["bg", "scratch", "dent"])  # appended: fine
    with pytest.raises(TrainingError, match=r"'scrach' looks like a renamed 'scratch'"):
        check_class_order(["bg", "scratch"], ["bg", "scrach"], "--init run")
    with pytest.raises(TrainingError, match=r"the model's order is \['bg', 'scratch'\]"):
        check_class_order(["bg", "scratch"], ["bg", "dent", "scratch"], "--init run")


# ---------------------------------------------------------------------------------------
# the loop end to end
# ---------------------------------------------------------------------------------------
def _percent(poly, w, h):
    return ((poly.astype(np.float64) + 0.5) / np.array([w, h]) * 100).tolist()


@pytest.mark.filterwarnings("ignore:.*the val split has only:UserWarning")
def test_label_loop_end_to_end(tiny_run, tiny_onnx, tmp_path, capsys):
    """predict → Label Studio pre-annotations → corrected polygons (and a new class) →
    import merged into the old dataset → fine-tune with --init → scored on the old val."""
    from PIL import Image

    from edgeseg import cli
    from edgeseg.data import open_dataset
    from edgeseg.train.evaluate import evaluate

    base, run = tiny_run
    frames = _frames(tmp_path, n=6, seed=11)
    shots = sorted((frames / "images").glob("*.png"))
    ng = _archive(tmp_path, shots)  # the NG frames of a line
    truth_of = {e.name: frames / "masks" / s.name for e, s in zip(sorted(ng.iterdir()), shots)}
    pre = tmp_path / "pre"
    argv = ["predict", str(tiny_onnx), str(ng), "--out", str(pre)]
    assert cli.main([*argv, "--save", "labelstudio", "--no-progress"]) == 0
    ls = pre / "labelstudio"
    tasks = json.loads((ls / "tasks.json").read_text())
    classes = open_dataset(base).classes
    # the labeller: replaces each prediction by the true outline, adds a "dent" on two images
    for k, t in enumerate(tasks):
        name = t["data"]["name"]
        truth = np.asarray(Image.open(truth_of[name]))
        h, w = truth.shape
        result = []
        for c in list(classes)[1:]:
            for poly in polygons(truth == c.id):
                value = {"points": _percent(poly, w, h), "polygonlabels": [c.name]}
                result.append(
                    {
                        "type": "polygonlabels",
                        "value": value,
                        "original_width": w,
                        "original_height": h,
                    }
                )
        if k < 2:
            box = np.array([[2, 2], [14, 2], [14, 10], [2, 10]])
            value = {"points": _percent(box, w, h), "polygonlabels": ["dent"]}
            result.append({"type": "polygonlabels", "value": value})
        t["annotations"] = [{"result": result}]
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks))
    merged = tmp_path / "merged"
    argv = ["data", "import", str(export), str(merged), "--base", str(base)]
    assert cli.main([*argv, "--images", str(ls / "images")]) == 0
    assert "6 annotated" in capsys.readouterr().out
    mds = open_dataset(merged)
    assert mds.classes.names == [*classes.names, "dent"]  # old order, the new class after
    assert mds.split_sizes() == {"train": 8 + 6, "val": 2}
    checked = 0
    for i, s in enumerate(mds.samples):
        if s.key in truth_of:
            checked += 1
            truth = np.asarray(Image.open(truth_of[s.key]))
            got = mds[i][1]
            if s.key in [t["data"]["name"] for t in tasks[:2]]:
                assert (got[3:10, 3:14] == mds.classes.by_name("dent").id).sum() >= 40
                got = np.where(got == mds.classes.by_name("dent").id, truth, got)
            assert (got == truth).mean() >= 0.97  # the corrected outlines came through
    assert checked == 6
    # fine-tune from the last model
    out = tmp_path / "ft"
    argv = ["train", "--data", str(merged), "--out", str(out), "--init", str(run)]
    argv += ["--size", "64", "--crop", "64", "--epochs", "2", "--max-steps", "3", "--batch", "2"]
    argv += ["--workers", "0", "--no-progress", "--no-calibrate", "--lr", "0.002"]
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    assert "new (fresh head rows): dent" in err
    assert "old val split" in err
    rep = json.loads((out / "compare_val.json").read_text())
    assert rep["split"] == "val" and rep["data"] == str(base)
    assert rep["old_miou"] == pytest.approx(evaluate(run, base, "val")["miou"], abs=1e-9)
    assert rep["new_miou"] == pytest.approx(evaluate(out, base, "val")["miou"], abs=1e-9)
    assert rep["gain"] == pytest.approx(rep["new_miou"] - rep["old_miou"], abs=1e-4)
    assert set(rep["per_class"]) == set(classes.names)
    import torch

    meta = torch.load(out / "best.pt", weights_only=True)["meta"]
    assert [c["name"] for c in meta["classes"]] == [*classes.names, "dent"]
    # an old class that vanished from the labels is an error naming it
    broken = tmp_path / "broken"
    shutil.copytree(merged, broken)
    text = (broken / "classes.yaml").read_text().replace(classes.names[1], "prodcut")
    (broken / "classes.yaml").write_text(text)
    bad = [*argv[:2], str(broken), "--out", str(tmp_path / "ft2"), *argv[5:]]
    assert cli.main(bad) == 2
    err = capsys.readouterr().err
    assert f"'prodcut' looks like a renamed '{classes.names[1]}'" in err


def test_import_dataset_merges_by_class_name(tmp_path, rng):
    """A CVAT export whose labels are in another order, with a new one, merged into a base."""
    from PIL import Image

    from edgeseg import cli, data
    from edgeseg.data import open_dataset
    from edgeseg.data.convert import convert

    base = data.synth(tmp_path / "base", "objects", n=4, size=32)
    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    (src / "masks").mkdir()
    (src / "classes.yaml").write_text(
        "- {id: 0, name: background, color: [0, 0, 0]}\n"
        "- {id: 1, name: dent, color: [200, 0, 200]}\n"
        "- {id: 2, name: product, color: [0, 200, 0]}\n"
    )
    masks = {}
    for k in range(3):
        m = rng.integers(0, 3, (32, 32)).astype(np.uint8)
        m[0, 0] = 255  # void stays void
        masks[f"shot{k}"] = m
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
            src / "images" / f"shot{k}.png"
        )
        im = Image.frombytes("P", (32, 32), m.tobytes())
        im.putpalette([0, 0, 0, 200, 0, 200, 0, 200, 0] + [0] * (253 * 3))
        im.save(src / "masks" / f"shot{k}.png")
    convert(src, tmp_path / "cvat.zip", to="cvat")
    out = tmp_path / "merged"
    assert (
        cli.main(["data", "import", str(tmp_path / "cvat.zip"), str(out), "--base", str(base)]) == 0
    )
    merged = open_dataset(out)
    assert merged.classes.names == ["background", "product", "dent"]
    before = open_dataset(base)
    assert merged.split_sizes()["train"] == before.split_sizes().get("train", 0) + 3
    remap = np.array([0, 2, 1], np.uint8)  # src ids -> merged ids, by name
    for i, s in enumerate(merged.samples):
        if s.key in masks:
            want = np.where(masks[s.key] == 255, 255, remap[np.minimum(masks[s.key], 2)])
            assert np.array_equal(merged[i][1], want)
    # a second import of the same shots clashes by name
    again = ["data", "import", str(tmp_path / "cvat.zip"), str(tmp_path / "m2"), "--base", str(out)]
    assert cli.main(again) == 2
