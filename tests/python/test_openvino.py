"""The OpenVINO backend against ONNX Runtime (FP32 and INT8 QDQ exports of the tiny trained
model), the auto choice and its reason, the fallbacks (OpenVINO missing, a model it cannot
compile, an unwritable cache), ONNX Runtime's pass-through options, and the camera loop with
frames in flight (order kept, nothing lost)."""

from __future__ import annotations

import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from camera_helpers import WarmSegmenter, collect_bounded, run_bounded  # noqa: E402

from edgeseg import InvalidArgumentError, ModelError  # noqa: E402
from edgeseg.camera import CameraLoop  # noqa: E402
from edgeseg.runtime import Segmenter, load_model_info  # noqa: E402
from edgeseg.runtime.backends import auto_choice, create_backend  # noqa: E402
from edgeseg.runtime.openvino_backend import openvino_version  # noqa: E402

HAVE_OV = openvino_version() is not None
needs_ov = pytest.mark.skipif(not HAVE_OV, reason="OpenVINO is not installed (edgeseg[openvino])")
SCENE = "synthetic://?width=96&height=72&seed=1"


@pytest.fixture(scope="module")
def frames(tiny_run):
    """BGR frames of the tiny dataset at several sizes (up- and downscaled), plus noise."""
    from edgeseg import data

    ds = data.open_dataset(tiny_run[0])
    imgs = [cv2.cvtColor(im, cv2.COLOR_RGB2BGR) for im, _ in ds]
    rng = np.random.default_rng(7)
    noise = rng.integers(0, 256, (80, 120, 3), dtype=np.uint8)
    return [cv2.resize(imgs[0], (97, 75)), cv2.resize(imgs[1], (150, 130)), *imgs[2:6], noise]


@pytest.fixture(scope="module")
def int8_onnx(tiny_run, tmp_path_factory):
    """The tiny model exported with a static batch and quantized to INT8 QDQ for the CPU."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxconverter_common")
    from edgeseg.export import export_onnx
    from edgeseg.quant import quantize

    ds, run = tiny_run
    base = tmp_path_factory.mktemp("ov_int8")
    export_onnx(run, base / "fp32.onnx", log=None)
    quantize(
        base / "fp32.onnx", ds, base / "int8.onnx", target="cpu", cpu_isa="no-vnni",
        max_drop=100.0, latency_runs=2, calib_images=8, log=None,
    )  # fmt: skip
    return base / "int8.onnx"


def _parity(a: Segmenter, b: Segmenter, frames, conf_atol: float = 1e-3) -> None:
    """Class maps >= 99.9 % equal, confidence within ``conf_atol``, counts of the maps."""
    equal = total = 0
    for f in frames:
        ra, rb = a.predict(f), b.predict(f)
        equal += int((ra.class_map == rb.class_map).sum())
        total += ra.class_map.size
        np.testing.assert_allclose(ra.confidence, rb.confidence, atol=conf_atol)
        diff = int((ra.class_map != rb.class_map).sum())
        assert int(np.abs(ra.counts_array - rb.counts_array).sum()) <= 2 * diff
        np.testing.assert_array_equal(
            rb.counts_array, np.bincount(rb.class_map.ravel(), minlength=len(b.classes))
        )
    assert equal / total >= 0.999, f"class maps agree on {equal / total:.5f} only"


@needs_ov
@pytest.mark.parametrize("which", ["fp32", "int8"])
def test_openvino_matches_onnxruntime(which, tiny_onnx, int8_onnx, frames, tmp_path):
    model = tiny_onnx if which == "fp32" else int8_onnx
    ref = Segmenter(model, backend="onnxruntime", threads=2)
    ov = Segmenter(model, backend="openvino", threads=2, cache_dir=tmp_path / "cache")
    assert ov.backend.name == "openvino" and ov.describe()["threads"] == 2
    if which == "fp32":
        _parity(ref, ov, frames)
    else:
        # Two INT8 engines round their requantized activations differently (one step of a
        # layer's scale moves a logit by a few 1e-3), so the bound is the INT8 model's own
        # error: OpenVINO's INT8 may differ from ONNX Runtime's INT8 by no more than that
        # differs from the float model, and by less than 1e-3 on average.
        fp = Segmenter(tiny_onnx, backend="onnxruntime", threads=2)
        own = max(
            float(np.abs(fp.predict(f).confidence - ref.predict(f).confidence).max())
            for f in frames
        )
        _parity(ref, ov, frames, conf_atol=max(own, 1e-3))
        d = np.concatenate(
            [np.abs(ref.predict(f).confidence - ov.predict(f).confidence).ravel() for f in frames]
        )
        assert d.mean() < 1e-3
    # the batch path (a dynamic-batch export compiles per batch size) gives the same maps
    if which == "fp32":
        batch = ov.predict_batch(frames[2:5])
        for r, f in zip(batch, frames[2:5]):
            np.testing.assert_array_equal(r.class_map, ov.predict(f).class_map)
    # the compiled model went into the cache, and a second load uses it
    assert any((tmp_path / "cache").iterdir())
    again = Segmenter(model, backend="openvino", threads=2, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(
        again.predict(frames[0]).class_map, ov.predict(frames[0]).class_map
    )


@needs_ov
def test_submit_keeps_frames_apart(tiny_onnx, frames):
    """Frames in flight on separate infer requests give each its own result, in any number."""
    seg = Segmenter(tiny_onnx, backend="openvino", threads=2, cache_dir=False)
    assert seg.pipeline_depth >= 2
    expected = [seg.predict(f).class_map for f in frames]
    handles = [seg.submit(f) for f in frames]  # more than the requests kept: none waits
    got = [h.result().class_map for h in handles]
    for e, g in zip(expected, got):
        np.testing.assert_array_equal(e, g)
    h = seg.submit(frames[0])
    assert h.result() is h.result()  # taken once, kept


@needs_ov
def test_auto_picks_openvino_on_x86_and_says_why(tiny_onnx):
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip(f"auto takes OpenVINO on x86 CPUs only, this is {platform.machine()}")
    seg = Segmenter(tiny_onnx, device=None)
    d = seg.describe()
    assert d["backend"] == "openvino"
    assert d["choice"]["requested"] == "auto"
    assert "x86 CPU" in d["choice"]["reason"] and openvino_version() in d["choice"]["reason"]
    assert auto_choice("onnx", None)[0] == "openvino"
    assert auto_choice("engine", None)[0] == "tensorrt"


def test_auto_without_openvino_takes_onnxruntime(tiny_onnx, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    name, reason = auto_choice("onnx", None)
    if name == "onnxruntime" and "not an x86" in reason:
        pytest.skip(reason)
    assert name == "onnxruntime" and "pip install 'edgeseg[openvino]'" in reason
    seg = Segmenter(tiny_onnx, device=None)
    assert seg.describe()["backend"] == "onnxruntime"
    assert "OpenVINO is not installed" in seg.describe()["choice"]["reason"]
    with pytest.raises(ModelError, match=r"pip install 'edgeseg\[openvino\]'"):
        Segmenter(tiny_onnx, backend="openvino")


def test_auto_on_other_cpus_takes_onnxruntime(monkeypatch):
    import platform

    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    name, reason = auto_choice("onnx", None)
    assert name == "onnxruntime" and "not an x86 CPU (aarch64)" in reason


def _uncompilable(tiny_onnx, tmp_path):
    """The tiny model with a no-op branch through an operator ONNX Runtime runs and
    OpenVINO's ONNX reader does not know (ai.onnx.ml Binarizer), feeding the output."""
    from onnx import helper

    m = onnx.load(str(tiny_onnx))
    g = m.graph
    out = g.output[0].name
    g.node[-1].output[0] = "logits_core"
    g.node.extend(
        [
            helper.make_node("Binarizer", ["logits_core"], ["bin"], domain="ai.onnx.ml"),
            helper.make_node("Mul", ["bin", "zero"], ["nothing"]),
            helper.make_node("Add", ["logits_core", "nothing"], [out]),
        ]
    )
    g.initializer.append(onnx.numpy_helper.from_array(np.zeros((), np.float32), "zero"))
    if not any(o.domain == "ai.onnx.ml" for o in m.opset_import):
        m.opset_import.append(helper.make_opsetid("ai.onnx.ml", 3))
    path = tmp_path / "uncompilable.onnx"
    onnx.save(m, str(path))
    return path


@needs_ov
def test_auto_falls_back_to_onnxruntime_when_openvino_cannot_compile(tiny_onnx, frames, tmp_path):
    path = _uncompilable(tiny_onnx, tmp_path)
    with pytest.raises(ModelError, match="OpenVINO cannot") as e:
        Segmenter(path, backend="openvino", cache_dir=False)
    assert "uncompilable.onnx" in str(e.value) and "onnxruntime" in str(e.value)
    seg = Segmenter(path, device=None)
    d = seg.describe()
    assert d["backend"] == "onnxruntime"
    assert "OpenVINO cannot" in d["choice"]["reason"] and "so ONNX Runtime" in d["choice"]["reason"]
    ref = Segmenter(tiny_onnx, backend="onnxruntime")
    np.testing.assert_array_equal(
        seg.predict(frames[0]).class_map, ref.predict(frames[0]).class_map
    )


@needs_ov
def test_unwritable_cache_dir_warns_and_compiles_uncached(tiny_onnx, frames, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")  # a folder below a file cannot exist, even for root
    with pytest.warns(RuntimeWarning, match="not writable.*compiling without a cache"):
        seg = Segmenter(tiny_onnx, backend="openvino", cache_dir=blocker / "cache")
    d = seg.describe()
    assert d["cache_dir"] is None and "not writable" in d["cache_note"]
    assert seg.predict(frames[0]).class_map.shape == frames[0].shape[:2]


@needs_ov
def test_openvino_bad_arguments(tiny_onnx):
    with pytest.raises(InvalidArgumentError, match="hint"):
        Segmenter(tiny_onnx, backend="openvino", hint="fastest")
    with pytest.raises(InvalidArgumentError, match="threads"):
        Segmenter(tiny_onnx, backend="openvino", threads=0)
    with pytest.raises(InvalidArgumentError, match="openvino_config"):
        Segmenter(tiny_onnx, backend="openvino", openvino_config=["CPU"])


def test_onnxruntime_providers_and_session_options_pass_through(tiny_onnx, frames):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    a = Segmenter(tiny_onnx, session_options=so, providers=["CPUExecutionProvider"])
    assert a.describe()["backend"] == "onnxruntime"  # auto: ORT options choose ORT
    assert "ONNX Runtime" in a.describe()["choice"]["reason"]
    assert a.backend.session.get_session_options().intra_op_num_threads == 1
    b = Segmenter(tiny_onnx, backend="onnxruntime", threads=2)
    np.testing.assert_array_equal(a.predict(frames[1]).class_map, b.predict(frames[1]).class_map)
    with pytest.raises(InvalidArgumentError, match="NopeExecutionProvider.*available"):
        Segmenter(tiny_onnx, backend="onnxruntime", providers=["NopeExecutionProvider"])
    with pytest.raises(InvalidArgumentError, match="SessionOptions"):
        Segmenter(tiny_onnx, backend="onnxruntime", session_options={"threads": 1})
    with pytest.raises(InvalidArgumentError, match="providers"):
        create_backend(
            load_model_info(tiny_onnx), "onnxruntime", None, providers="CPUExecutionProvider"
        )


class _Pipelined:
    """WarmSegmenter run by a two-thread pool: ``submit`` returns at once, results come back
    out of order inside the pool (random delays), as with several infer requests."""

    pipeline_depth = 3

    def __init__(self) -> None:
        self.inner = WarmSegmenter()
        self.classes = self.inner.classes
        self.pool = ThreadPoolExecutor(2)
        self.rng = np.random.default_rng(3)
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = 0

    def predict(self, frame, rgb=False):
        return self.inner.predict(frame, rgb)

    def _run(self, frame, delay):
        time.sleep(delay)
        try:
            return self.inner.predict(frame)
        finally:
            with self.lock:
                self.in_flight -= 1

    def submit(self, frame):
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return self.pool.submit(self._run, frame, float(self.rng.uniform(0, 0.01)))


def test_pipelined_loop_keeps_order_and_loses_nothing(tmp_path):
    seg = _Pipelined()
    out = tmp_path / "r.jsonl"
    stats = run_bounded(CameraLoop(f"{SCENE}&frames=60", seg, sinks=[f"jsonl:{out}"], drop="none"))
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["frame"] for r in recs] == list(range(60))
    assert stats["frames"] == stats["captured"] == 60
    assert 2 <= seg.max_in_flight <= seg.pipeline_depth
    assert stats["latency_ms"]["total"]["p50"] <= stats["latency_ms"]["total"]["p99"]


def test_pipelined_loop_stopped_midway_delivers_every_captured_frame():
    seg = _Pipelined()
    loop = CameraLoop(f"{SCENE}&fps=300", seg, drop="none")
    items = []
    loop.on_result = items.append
    loop.start()
    deadline = time.monotonic() + 30
    while len(items) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    stats = loop.stop()
    idx = [it.frame.index for it in items]
    assert len(idx) >= 20 and idx == list(range(len(idx)))
    assert stats["frames"] == stats["captured"] == len(items)


def test_pipelined_loop_max_frames_is_exact():
    seg = _Pipelined()
    items = collect_bounded(CameraLoop(f"{SCENE}&frames=50", seg, drop="none", max_frames=17))
    assert [it.frame.index for it in items] == list(range(17))


@needs_ov
def test_loop_on_openvino_matches_predict(tiny_onnx):
    seg = Segmenter(tiny_onnx, backend="openvino", threads=2, cache_dir=False)
    items = collect_bounded(CameraLoop(f"{SCENE}&frames=24", seg, drop="none"))
    assert [it.frame.index for it in items] == list(range(24))
    for it in items[::5]:
        np.testing.assert_array_equal(it.result.class_map, seg.predict(it.frame.image).class_map)


@needs_ov
def test_cli_backend_openvino(tiny_onnx, tiny_run, tmp_path, capsys):
    from edgeseg.cli import main

    imgs = sorted((tiny_run[0] / "images").glob("*.png"))[:2]
    assert main(["predict", str(tiny_onnx), *map(str, imgs), "-o", str(tmp_path / "p"),
                 "--backend", "openvino", "--no-progress"]) == 0  # fmt: skip
    summary = json.loads((tmp_path / "p" / "summary.json").read_text())
    assert summary["backend"]["backend"] == "openvino" and summary["failed"] == []
    capsys.readouterr()
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["openvino"] == openvino_version()
    assert info["onnx_backend"]["backend"] in ("openvino", "onnxruntime")
    assert info["onnx_backend"]["reason"]


@needs_ov
def test_eval_backends_agree(tiny_onnx, tiny_run):
    from edgeseg.export.onnx_eval import evaluate_onnx

    a = evaluate_onnx(tiny_onnx, tiny_run[0], "val", backend="onnxruntime")
    b = evaluate_onnx(tiny_onnx, tiny_run[0], "val", backend="openvino")
    assert set(a) == set(b) and a["num_images"] == b["num_images"] > 0
    assert abs(a["miou"] - b["miou"]) < 1e-3
    with pytest.raises(InvalidArgumentError, match="backend"):
        evaluate_onnx(tiny_onnx, tiny_run[0], "val", backend="tensorflow")


@needs_ov
def test_run_header_names_the_backend_and_why(tiny_onnx, tmp_path):
    import subprocess

    out = tmp_path / "r.jsonl"
    p = subprocess.run(
        [sys.executable, "-m", "edgeseg.cli", "run", "--model", str(tiny_onnx),
         "--source", "synthetic://?size=64x48&seed=2", "--sink", f"jsonl:{out}",
         "--max-frames", "12", "--hint", "throughput", "--threads", "2", "--json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    header = next(ln for ln in p.stderr.splitlines() if "sink(s);" in ln)
    name, reason = auto_choice("onnx", 0)
    assert f"backend {name}" in header and reason in header
    if name == "openvino":
        assert "hint throughput" in header
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["frame"] for r in recs] == list(range(12))
