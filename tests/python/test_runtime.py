"""Segmenter + SegResult end to end on a model trained and exported inside the test run
(conftest.tiny_onnx), against independent references: ONNX Runtime called directly with
OpenCV/numpy pre- and postprocessing, scikit-image connected components, PIL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from edgeseg import InvalidArgumentError, ModelError  # noqa: E402
from edgeseg.errors import DeviceUnavailableError  # noqa: E402
from edgeseg.runtime import Segmenter, SegResult, load_model_info  # noqa: E402


@pytest.fixture(scope="module")
def seg(tiny_onnx):
    return Segmenter(tiny_onnx, threads=2)


@pytest.fixture(scope="module")
def frames(tiny_run):
    """Real BGR frames: the tiny dataset's images at odd sizes (up- and downscaled)."""
    from edgeseg import data

    ds = data.open_dataset(tiny_run[0])
    imgs = [cv2.cvtColor(im, cv2.COLOR_RGB2BGR) for im, _ in ds]
    out = [cv2.resize(imgs[0], (97, 75)), cv2.resize(imgs[1], (150, 130)), imgs[2]]
    return out


def _reference(model_path, frame_bgr):
    """class map + confidence by ONNX Runtime with OpenCV/numpy pre- and postprocessing."""
    info = load_model_info(model_path)
    h, w = info.input_size
    rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
    x = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0
    x = (x - np.array(info.mean, np.float32)) / np.array(info.std, np.float32)
    blob = x.transpose(2, 0, 1)[None].astype(np.float32)
    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    logits = sess.run(None, {sess.get_inputs()[0].name: blob})[0][0]
    fh, fw = frame_bgr.shape[:2]
    up = np.stack([cv2.resize(c, (fw, fh), interpolation=cv2.INTER_LINEAR) for c in logits])
    e = np.exp(up - up.max(0, keepdims=True))
    prob = e / e.sum(0, keepdims=True)
    return up.argmax(0).astype(np.uint8), prob.max(0).astype(np.float32), up


def test_model_info_from_metadata(seg, tiny_onnx):
    info = seg.info
    assert info.kind == "onnx" and info.input_size == (64, 64)
    meta = json.loads({p.key: p.value for p in onnx.load(str(tiny_onnx)).metadata_props}["classes"])
    assert seg.class_names == [c["name"] for c in meta]
    assert [c.color for c in seg.classes] == [tuple(c["color"]) for c in meta]
    from edgeseg.runtime.backends import auto_choice

    d = seg.describe()
    assert d["backend"] == auto_choice("onnx", 0)[0] and d["choice"]["reason"]
    if d["backend"] == "onnxruntime":
        assert d["providers"][0] == "CPUExecutionProvider"


def test_predict_matches_independent_reference(seg, tiny_onnx, frames):
    for f in frames:
        res = seg.predict(f)
        ref_cm, ref_conf, up = _reference(tiny_onnx, f)
        assert res.class_map.shape == f.shape[:2] and res.class_map.dtype == np.uint8
        # Pixels whose two best logits are within float noise may flip; nothing else may.
        top2 = np.sort(up, axis=0)[-2:]
        clear = (top2[1] - top2[0]) > 1e-3
        assert np.array_equal(res.class_map[clear], ref_cm[clear])
        assert res.confidence.dtype == np.float32
        np.testing.assert_allclose(res.confidence, ref_conf, atol=2e-4)
        np.testing.assert_array_equal(
            res.counts_array, np.bincount(res.class_map.ravel(), minlength=len(seg.classes))
        )
        assert set(res.timings) >= {"preprocess", "inference", "postprocess", "total"}
        assert res.timings["inference"] > 0


def test_predict_found_the_objects(seg, tiny_run):
    """The tiny model segments its validation images clearly better than chance."""
    from edgeseg import data

    ds = data.open_dataset(tiny_run[0]).split("val")
    correct = total = 0
    for im, mask in ds:
        res = seg.predict(im, rgb=True)
        correct += int((res.class_map == mask).sum())
        total += mask.size
    assert correct / total > 0.7


def test_rgb_flag_and_batch_equal_single(seg, frames):
    f = frames[0]
    a = seg.predict(f)
    b = seg.predict(np.ascontiguousarray(f[:, :, ::-1]), rgb=True)
    assert np.array_equal(a.class_map, b.class_map)
    batch = seg.predict_batch([frames[0], frames[1], frames[0]])
    assert [r.class_map.shape for r in batch] == [frames[0].shape[:2], frames[1].shape[:2]] * 1 + [
        frames[0].shape[:2]
    ]
    for r, f in zip(batch, [frames[0], frames[1], frames[0]]):
        np.testing.assert_array_equal(r.class_map, seg.predict(f).class_map)
    np.testing.assert_allclose(batch[0].confidence, a.confidence, atol=1e-5)


def test_segresult_fields_against_references(seg, frames, tmp_path):
    from PIL import Image
    from skimage import measure

    f = frames[1]
    res = seg.predict(f)
    n = len(seg.classes)
    cm = res.class_map
    assert res.counts == {c.name: int((cm == c.index).sum()) for c in seg.classes}
    assert abs(sum(res.area_fraction.values()) - 1.0) < 1e-9
    for c in seg.classes:
        assert res.area_fraction[c.name] == pytest.approx((cm == c.index).mean())
    # overlay: frame*(1-a) + colour*a on non-background pixels, rounded
    pal_bgr = np.array([c.color for c in seg.classes], np.float32)[:, ::-1]
    ref = f.astype(np.float32) * 0.6 + pal_bgr[cm] * 0.4
    ref[cm == 0] = f[cm == 0]
    ov = res.overlay(0.4)
    assert np.abs(ov.astype(int) - np.floor(ref + 0.5).astype(int)).max() <= 1
    # confidence as transparency: opacity alpha*confidence
    a = (0.8 * res.confidence)[..., None]
    ref_c = f * (1 - a) + pal_bgr[cm] * a
    ref_c[cm == 0] = f[cm == 0]
    ov_c = res.overlay(0.8, show_confidence=True).astype(int)
    assert np.abs(ov_c - np.floor(ref_c + 0.5)).max() <= 1
    heat = res.overlay(0.5, show_confidence="heatmap")
    assert heat.shape == f.shape and not np.array_equal(heat, ov)
    # regions against scikit-image (8-connectivity)
    for c in seg.classes[1:]:
        lab = measure.label(cm == c.index, connectivity=2)
        props = sorted(measure.regionprops(lab), key=lambda p: -p.area)
        regs = res.regions(c.name)
        assert len(regs) == len(props)
        for r, p in zip(regs, props):
            assert r.area == p.area
            y0, x0, y1, x1 = p.bbox
            assert r.bbox == (x0, y0, x1 - x0, y1 - y0)
            assert r.centroid == pytest.approx((p.centroid[1], p.centroid[0]), abs=1e-6)
            assert r.contour.ndim == 2 and r.contour.shape[1] == 2
            assert (r.contour[:, 0] >= x0).all() and (r.contour[:, 0] < x1).all()
            inside = res.confidence[lab == p.label].mean()
            assert r.mean_confidence == pytest.approx(float(inside), rel=1e-5)
    assert sum(r.area for r in res.regions(0)) == res.counts[seg.class_names[0]]
    # palette PNG round trip
    p = res.save_png(tmp_path / "m.png")
    img = Image.open(p)
    assert img.mode == "P"
    np.testing.assert_array_equal(np.asarray(img), cm)
    pal = np.array(img.getpalette()[: 3 * n]).reshape(n, 3)
    assert [tuple(x) for x in pal] == [c.color for c in seg.classes]
    d = json.loads(json.dumps(res.to_dict()))
    assert d["counts"] == res.counts and d["height"] == f.shape[0]
    for c in seg.classes:
        m = cm == c.index
        if m.any():
            assert d["mean_confidence"][c.name] == pytest.approx(float(res.confidence[m].mean()))


def test_overlay_alpha_from_the_fused_pass_equals_numpy(tiny_onnx, frames):
    seg = Segmenter(tiny_onnx, threads=2, overlay_alpha=0.5)
    res = seg.predict(frames[1])
    fused = res.overlay(0.5)
    res._overlay_cache = None
    assert np.abs(fused.astype(int) - res.overlay(0.5).astype(int)).max() <= 1


def test_confidence_off(tiny_onnx, frames):
    res = Segmenter(tiny_onnx, confidence=False).predict(frames[0])
    assert res.confidence is None and "mean_confidence" not in res.to_dict()
    with pytest.raises(InvalidArgumentError, match="confidence=True"):
        res.overlay(show_confidence="heatmap")


def test_tiled_inference_has_no_seams(tiny_run, tmp_path):
    """A 64² model tiled over a 160×224 frame ≈ the same weights exported at 160×224 in one
    inference; structures crossing the tile borders are not cut."""
    from edgeseg.export import export_onnx

    small = tmp_path / "s.onnx"
    big = tmp_path / "b.onnx"
    export_onnx(tiny_run[1], small, size=(64, 64), dynamic_batch=True, log=None)
    export_onnx(tiny_run[1], big, size=(160, 224), log=None)
    from edgeseg import data

    ds = data.open_dataset(tiny_run[0])
    ims = [cv2.cvtColor(im, cv2.COLOR_RGB2BGR) for im, _ in ds]
    frame = np.zeros((160, 224, 3), np.uint8)
    for i, (y, x) in enumerate([(0, 0), (0, 64), (0, 128), (64, 32), (96, 96), (96, 160)]):
        frame[y : y + 64, x : x + 64] = ims[i % len(ims)]
    frame[70:90, :] = ims[0][20:40, 32:33]  # a band across every vertical tile border
    full = Segmenter(big).predict(frame)
    tiled = Segmenter(small, tile=(64, 64), overlap=16, tile_batch=3).predict(frame)
    assert tiled.timings["tiles"] == 3 * 5  # rows at 0, 48, 96; columns at 0, 48, 96, 144, 160
    agree = (tiled.class_map == full.class_map).mean()
    assert agree > 0.95, agree
    # no seam: agreement on the tile borders is as good as elsewhere
    border = np.zeros(frame.shape[:2], bool)
    for x in (48, 64, 96, 112, 144, 160):
        border[:, x - 2 : x + 2] = True
    assert (tiled.class_map == full.class_map)[border].mean() > 0.9
    untiled_small = Segmenter(small).predict(frame)  # the naive alternative: one squashed pass
    assert agree > (untiled_small.class_map == full.class_map).mean()


def test_tiles_larger_than_frame_and_bad_tile_args(tiny_onnx, frames):
    res = Segmenter(tiny_onnx, tile=(128, 128), overlap=16).predict(frames[0])
    assert res.class_map.shape == frames[0].shape[:2] and res.timings["tiles"] == 1
    with pytest.raises(InvalidArgumentError, match="overlap"):
        Segmenter(tiny_onnx, tile=(64, 64), overlap=40)
    with pytest.raises(InvalidArgumentError, match="tile"):
        Segmenter(tiny_onnx, tile=(8, 8))


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((32, 32, 3), np.float32), "uint8"),
        (np.zeros((32, 32, 4), np.uint8), "HxWx3"),
        (np.zeros((0, 32, 3), np.uint8), "empty"),
        (np.zeros((2, 32, 32, 3), np.uint8), "predict_batch"),
        ("frame.png", "no such image file"),  # paths are read; a missing one is refused
    ],
)
def test_bad_frames_raise_and_the_segmenter_keeps_working(seg, frames, bad, match):
    with pytest.raises(InvalidArgumentError, match=match):
        seg.predict(bad)
    assert seg.predict(frames[0]).class_map.shape == frames[0].shape[:2]


def test_bad_models(tiny_onnx, tmp_path):
    trunc = tmp_path / "trunc.onnx"
    trunc.write_bytes(Path(tiny_onnx).read_bytes()[:2000])
    with pytest.raises(ModelError, match="trunc.onnx"):
        Segmenter(trunc)
    with pytest.raises(ModelError, match="no such model"):
        Segmenter(tmp_path / "missing.onnx")
    # class count of the metadata does not match the graph
    m = onnx.load(str(tiny_onnx))
    props = {p.key: p for p in m.metadata_props}
    classes = json.loads(props["classes"].value)
    extra = classes + [{"id": 99, "name": "extra", "color": [1, 2, 3]}]
    props["classes"].value = json.dumps(extra)
    props["num_classes"].value = str(len(extra))
    wrong = tmp_path / "wrong.onnx"
    onnx.save(m, str(wrong))
    with pytest.raises(ModelError, match=r"outputs \d+ classes but its metadata lists"):
        Segmenter(wrong)
    props["num_classes"].value = str(len(classes))
    onnx.save(m, str(wrong))
    with pytest.raises(ModelError, match="metadata num_classes = 2 is invalid: expected 3"):
        Segmenter(wrong)
    with pytest.raises(InvalidArgumentError, match="backend"):
        Segmenter(tiny_onnx, backend="openvino2")
    with pytest.raises(InvalidArgumentError, match="edgeseg build"):
        Segmenter(tiny_onnx, backend="tensorrt")


def test_engine_needs_manifest_and_tensorrt(tiny_onnx, tmp_path):
    from edgeseg import build_info

    eng = tmp_path / "model.engine"
    eng.write_bytes(b"not really an engine")
    with pytest.raises(ModelError, match="model.engine.json"):
        Segmenter(eng)
    meta = load_model_info(tiny_onnx)
    manifest = {
        "format": "edgeseg-engine/1",
        "classes": [{"id": c.id, "name": c.name, "color": list(c.color)} for c in meta.classes],
        "num_classes": meta.num_classes,
        "preprocessing": {
            "input_size": list(meta.input_size),
            "mean": list(meta.mean),
            "std": list(meta.std),
            "channel_order": "RGB",
            "resize": "stretch",
        },
        "tensorrt": {"module": "tensorrt", "version": "8.6.2"},
        "compute_capability": "8.7",
    }
    (tmp_path / "model.engine.json").write_text(json.dumps(manifest))
    info = load_model_info(eng)
    assert info.kind == "engine" and info.class_names == meta.class_names
    if not build_info().get("tensorrt"):
        with pytest.raises(DeviceUnavailableError, match="without TensorRT"):
            Segmenter(eng)
    with pytest.raises(InvalidArgumentError, match="needs the .onnx"):
        Segmenter(eng, backend="onnxruntime")


def test_predict_cli(tiny_onnx, tiny_run, tmp_path):
    from PIL import Image

    from edgeseg.cli import main

    src = Path(tiny_run[0]) / "images"
    bad = tmp_path / "in" / "broken.png"
    bad.parent.mkdir()
    bad.write_bytes(b"\x89PNG garbage")
    out = tmp_path / "out"
    rc = main(
        [
            "predict",
            str(tiny_onnx),
            str(src),
            str(bad),
            "--out",
            str(out),
            "--no-progress",
            "--save",
            "mask,overlay,confidence,json",
        ]
    )
    n = len(list(src.glob("*.png")))
    assert rc == 1  # one unreadable image: reported, the others written
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == n + 1 and len(summary["failed"]) == 1
    assert "broken.png" in summary["failed"][0]["image"]
    first = sorted(src.glob("*.png"))[0]
    mask = np.asarray(Image.open(out / f"{first.stem}_mask.png"))
    seg = Segmenter(tiny_onnx)
    ref = seg.predict(cv2.imread(str(first)))
    np.testing.assert_array_equal(mask, ref.class_map)
    conf = cv2.imread(str(out / f"{first.stem}_confidence.png"), cv2.IMREAD_UNCHANGED)
    assert np.abs(conf.astype(float) / 255 - ref.confidence).max() < 0.51 / 255 + 1e-6
    rec = json.loads((out / f"{first.stem}.json").read_text())
    assert rec["counts"] == ref.counts
    assert cv2.imread(str(out / f"{first.stem}_overlay.jpg")).shape == ref.class_map.shape + (3,)
    assert sum(summary["counts"].values()) == sum(
        cv2.imread(str(p)).shape[0] * cv2.imread(str(p)).shape[1] for p in src.glob("*.png")
    )
    assert main(["predict", str(tiny_onnx), str(tmp_path / "nothing*"), "--out", str(out)]) == 2


def test_runtime_imports_without_torch(tiny_onnx):
    code = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, *a):\n"
        "        if name.split('.')[0] == 'torch': raise ImportError('torch blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import numpy as np, edgeseg\n"
        f"s = edgeseg.Segmenter({str(tiny_onnx)!r})\n"
        "r = s.predict(np.zeros((40, 50, 3), np.uint8))\n"
        "print(r.class_map.shape)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(40, 50)"


def test_segresult_direct_construction_errors():
    from edgeseg.runtime import ClassInfo

    cm = np.zeros((4, 5), np.uint8)
    cm[1:3, 1:4] = 1
    res = SegResult(
        class_map=cm,
        confidence=None,
        classes=[
            ClassInfo(0, "bg", (0, 0, 0), index=0),
            ClassInfo(3, "dent", (255, 0, 0), index=1),
        ],
        counts_array=np.bincount(cm.ravel(), minlength=2),
    )
    assert res.counts == {"bg": 14, "dent": 6}
    assert res.regions("dent")[0].bbox == (1, 1, 3, 2)
    with pytest.raises(InvalidArgumentError, match=r"\['bg', 'dent'\]"):
        res.mask("scratch")
    with pytest.raises(InvalidArgumentError, match="no frame"):
        res.overlay()


def test_ort_providers_best_first(monkeypatch, tmp_path):
    from edgeseg.runtime.backends import ort_cache_dir, ort_providers

    monkeypatch.setenv("EDGESEG_CACHE", str(tmp_path / "c"))
    assert ort_cache_dir() == tmp_path / "c" / "ort_trt"
    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    got = ort_providers(gpu, 1)
    assert [p[0] if isinstance(p, tuple) else p for p in got] == gpu
    trt_opts, cuda_opts = got[0][1], got[1][1]
    assert trt_opts["device_id"] == 1 and cuda_opts == {"device_id": 1}
    assert trt_opts["trt_engine_cache_enable"] is True
    assert trt_opts["trt_engine_cache_path"] == str(tmp_path / "c" / "ort_trt")
    # device=None: the CPU only, whatever the build offers; a CPU build: the CPU only
    assert ort_providers(gpu, None) == ["CPUExecutionProvider"]
    assert ort_providers(["CPUExecutionProvider"], 0) == ["CPUExecutionProvider"]
    assert [p[0] for p in ort_providers(["CUDAExecutionProvider"], 0)[:1]] == [
        "CUDAExecutionProvider"
    ]


@pytest.mark.gpu
@pytest.mark.tensorrt
def test_tensorrt_backend_matches_onnxruntime(tiny_onnx, tiny_run, tmp_path):
    """The C++ TensorRT backend (CUDA preprocess -> enqueueV3 -> CUDA fused postprocess)
    against the ONNX Runtime backend on the same frames, where a GPU and a core built with
    TensorRT exist (not on CI: there it is skipped, and it has not run anywhere yet)."""
    from edgeseg import build_info
    from edgeseg.engine import build_engine

    if not build_info().get("tensorrt"):
        pytest.skip("the core was built without TensorRT (EDGESEG_ENABLE_TENSORRT=ON)")
    eng = tmp_path / "tiny.engine"
    build_engine(tiny_onnx, eng, precision="fp32", log=None)
    trt = Segmenter(eng, backend="tensorrt")
    ref = Segmenter(tiny_onnx, backend="onnxruntime")
    frames = [cv2.imread(str(p)) for p in sorted((Path(tiny_run[0]) / "images").glob("*.png"))]
    frames.append(cv2.resize(frames[0], (200, 150)))  # another frame size than the model's
    for frame in frames:
        a, b = trt.predict(frame), ref.predict(frame)
        assert a.class_map.shape == b.class_map.shape == frame.shape[:2]
        assert (a.class_map == b.class_map).mean() > 0.999
        np.testing.assert_allclose(a.confidence, b.confidence, atol=2e-3)
        assert sum(a.counts.values()) == frame.shape[0] * frame.shape[1]
    batch = trt.predict_batch(frames[:2])
    assert all((r.class_map == trt.predict(f).class_map).all() for r, f in zip(batch, frames))


@pytest.mark.parametrize("alpha", ["2", "-0.1"])
def test_predict_cli_rejects_alpha_up_front(tmp_path, capsys, alpha):
    """A bad --alpha fails once, before any model or image is read (not once per image)."""
    from edgeseg.cli import main

    img = tmp_path / "a.png"
    cv2.imwrite(str(img), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(SystemExit) as e:
        main(["predict", "m.onnx", str(img), "--out", str(tmp_path / "o"), "--alpha", alpha])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--alpha" in err and "0..1" in err and err.count("error") == 1
    assert not (tmp_path / "o").exists()
