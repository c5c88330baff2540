"""TensorRT engine build (edgeseg build): fp32/fp16/int8 engines and their manifest, the
timing cache, the manifest check against another machine, and the errors (no TensorRT, not an
ONNX file, int8 without Q/DQ). Runs on TensorRT-RTX's builder, which needs no GPU."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgeseg import DeviceUnavailableError, EngineMismatchError, ModelError  # noqa: E402
from edgeseg.cli import main as cli_main  # noqa: E402
from edgeseg.engine import build_engine, builder, check_manifest, manifest  # noqa: E402
from edgeseg.onnx_metadata import METADATA_FORMAT, to_props  # noqa: E402

SIZE = 32
CLASSES = [
    {"id": 0, "name": "background", "color": [0, 0, 0]},
    {"id": 1, "name": "scratch", "color": [255, 0, 0]},
]


def _trt_or_skip():
    try:
        return builder.load_tensorrt()
    except DeviceUnavailableError as e:
        pytest.skip(f"no TensorRT Python module: {e}")


def _tiny_onnx(path: Path, qdq: bool = False, dynamic: bool = False) -> Path:
    """images [N,3,S,S] -> Conv3x3(3->8) -> Relu -> Conv1x1(8->2) -> logits, with edgeseg
    metadata; ``qdq``: int8 Q/DQ on activations and weights (TensorRT's explicit quantization)."""
    rng = np.random.default_rng(0)
    w1 = rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32)
    w2 = rng.normal(0, 0.3, (2, 8, 1, 1)).astype(np.float32)
    inits = [numpy_helper.from_array(np.zeros(8, np.float32), "b1")]
    nodes = []
    if qdq:
        inits += [
            numpy_helper.from_array(np.array(0.02, np.float32), "s_act"),
            numpy_helper.from_array(np.array(0, np.int8), "zp"),
            numpy_helper.from_array(np.round(w1 / 0.01).astype(np.int8), "w1_q"),
            numpy_helper.from_array(np.round(w2 / 0.01).astype(np.int8), "w2_q"),
            numpy_helper.from_array(np.array(0.01, np.float32), "s_w"),
        ]
        nodes += [
            helper.make_node("QuantizeLinear", ["images", "s_act", "zp"], ["x_q"]),
            helper.make_node("DequantizeLinear", ["x_q", "s_act", "zp"], ["x"]),
            helper.make_node("DequantizeLinear", ["w1_q", "s_w", "zp"], ["w1"]),
            helper.make_node("DequantizeLinear", ["w2_q", "s_w", "zp"], ["w2"]),
        ]
        x, relu_out = "x", "r"
        nodes += [
            helper.make_node("Conv", [x, "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c1"], ["r0"]),
            helper.make_node("QuantizeLinear", ["r0", "s_act", "zp"], ["r_q"]),
            helper.make_node("DequantizeLinear", ["r_q", "s_act", "zp"], [relu_out]),
        ]
    else:
        inits += [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")]
        nodes += [
            helper.make_node("Conv", ["images", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c1"], ["r"]),
        ]
    nodes.append(helper.make_node("Conv", ["r", "w2"], ["logits"]))
    n = "N" if dynamic else 1
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [n, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [n, 2, SIZE, SIZE])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = {
        "edgeseg_format": METADATA_FORMAT,
        "model": "tiny",
        "num_classes": 2,
        "classes": CLASSES,
        "input_size": [SIZE, SIZE],
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "scale": 1 / 255,
        "channel_order": "RGB",
        "layout": "NCHW",
        "resize": "stretch",
        "interpolation": "bilinear",
        "input_name": "images",
        "output_name": "logits",
        "dynamic_batch": dynamic,
        "precision": "int8" if qdq else "fp32",
    }
    helper.set_model_props(model, to_props(meta))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("build")
    return {
        "fp32": _tiny_onnx(base / "model.onnx"),
        "dyn": _tiny_onnx(base / "dyn.onnx", dynamic=True),
        "qdq": _tiny_onnx(base / "model.int8.onnx", qdq=True),
    }


@pytest.mark.tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_build_writes_engine_and_manifest(precision, models, tmp_path):
    trt = _trt_or_skip()
    out = tmp_path / "model.engine"
    m = build_engine(models["fp32"], out, precision=precision, workspace_mb=64, log=None)
    assert out.is_file() and out.stat().st_size == m["engine_bytes"] > 0
    on_disk = json.loads((tmp_path / "model.engine.json").read_text())
    assert on_disk == m
    assert m["format"] == "edgeseg-engine/1" and m["requested_precision"] == precision
    # A strongly typed builder (TensorRT for RTX) runs the float32 ONNX in float32 whatever was
    # asked: the manifest must say what the engine computes in, not what was requested.
    assert m["strongly_typed"] == (m["tensorrt"]["module"] == "tensorrt_rtx")
    assert m["precision"] == ("fp32" if m["strongly_typed"] else precision)
    assert m["onnx_sha256"] == hashlib.sha256(models["fp32"].read_bytes()).hexdigest()
    assert m["engine_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert m["tensorrt"]["version"] == trt.__version__
    assert m["tensorrt"]["module"] in ("tensorrt", "tensorrt_rtx")
    assert m["gpu"] and "compute_capability" in m
    assert m["dla_core"] is None and m["dla_fallback_layers"] == []
    assert m["workspace_mb"] == 64
    assert m["inputs"] == [{"name": "images", "shape": [1, 3, SIZE, SIZE], "dtype": "float32"}]
    assert m["outputs"] == [{"name": "logits", "shape": [1, 2, SIZE, SIZE], "dtype": "float32"}]
    assert m["classes"] == CLASSES and m["num_classes"] == 2
    pre = m["preprocessing"]
    assert pre["mean"] == [0.485, 0.456, 0.406] and pre["input_size"] == [SIZE, SIZE]
    assert pre["channel_order"] == "RGB" and pre["resize"] == "stretch"
    assert (
        m["build_command"].startswith("edgeseg build ")
        and f"--precision {precision}" in (m["build_command"])
    )
    if precision == "fp16":
        # Full TensorRT sets BuilderFlag.FP16; TensorRT-RTX has no such flag and says so.
        assert "FP16" in m["applied_flags"] or any("FP16" in n for n in m["notes"])


@pytest.mark.tensorrt
def test_int8_from_qdq_and_dynamic_batch_profile(models, tmp_path):
    _trt_or_skip()
    m = build_engine(models["qdq"], tmp_path / "q.engine", precision="int8", log=None)
    assert m["onnx_quantized"] is True and m["precision"] == "int8"
    assert m["requested_precision"] == "int8"
    d = build_engine(models["dyn"], tmp_path / "d.engine", "fp32", max_batch=4, log=None)
    assert d["optimization_profile"] == {
        "images": {"min": [1, 3, SIZE, SIZE], "opt": [1, 3, SIZE, SIZE], "max": [4, 3, SIZE, SIZE]}
    }
    assert d["inputs"][0]["shape"] == [-1, 3, SIZE, SIZE]


def test_int8_without_qdq_says_how_to_quantize(models, tmp_path):
    with pytest.raises(ModelError, match="edgeseg quantize .*--target tensorrt"):
        build_engine(models["fp32"], tmp_path / "x.engine", precision="int8", log=None)


@pytest.mark.tensorrt
def test_timing_cache_written_and_reused(models, tmp_path):
    _trt_or_skip()
    cache = tmp_path / "cache" / "trt.cache"
    first = build_engine(
        models["fp32"], tmp_path / "a.engine", "fp16", timing_cache=cache, log=None
    )
    assert cache.is_file() and cache.stat().st_size > 0
    assert first["timing_cache"]["reused"] is False and first["timing_cache"]["bytes_before"] == 0
    second = build_engine(
        models["fp32"], tmp_path / "b.engine", "fp16", timing_cache=cache, log=None
    )
    assert second["timing_cache"]["reused"] is True
    assert second["timing_cache"]["bytes_before"] == first["timing_cache"]["bytes_after"]
    assert "--timing-cache" in second["build_command"]


@pytest.mark.tensorrt
def test_manifest_mismatch_says_how_to_rebuild(models, tmp_path):
    _trt_or_skip()
    out = tmp_path / "model.engine"
    m = build_engine(models["fp32"], out, "fp16", log=None)
    here = {"tensorrt": dict(m["tensorrt"]), "gpu": m["gpu"], "compute_capability": "8.7"}
    assert check_manifest(out, dict(here, compute_capability=m["compute_capability"])) == m
    other = {"tensorrt": {"module": "tensorrt", "version": "0.0.1"}, "gpu": "Orin"}
    with pytest.raises(EngineMismatchError) as e:
        check_manifest(tmp_path / "model.engine.json", dict(other, compute_capability="8.7"))
    msg = str(e.value)
    assert "TensorRT version" in msg and "0.0.1" in msg
    assert f"edgeseg build {models['fp32']} --precision fp16 -o {out}" in msg
    m2 = dict(m, compute_capability="7.2", gpu="Xavier")
    with pytest.raises(EngineMismatchError, match=r"compute capability: built for 7\.2"):
        check_manifest(m2, here)


def test_check_manifest_without_manifest(tmp_path):
    with pytest.raises(ModelError, match="no engine manifest"):
        check_manifest(tmp_path / "none.engine", {})


def test_missing_tensorrt_names_what_to_install(models, tmp_path, monkeypatch):
    monkeypatch.setattr(manifest, "TENSORRT_MODULES", ("edgeseg_no_such_trt", "edgeseg_no_rtx"))
    with pytest.raises(DeviceUnavailableError) as e:
        build_engine(models["fp32"], tmp_path / "x.engine", "fp16", log=None)
    msg = str(e.value)
    assert "sudo apt install python3-libnvinfer" in msg and "pip install tensorrt" in msg
    assert "edgeseg_no_such_trt" in msg
    assert not (tmp_path / "x.engine").exists()


def test_not_onnx_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "photo.onnx"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not a model")
    with pytest.raises(ModelError, match="photo.onnx: not a readable ONNX model"):
        build_engine(bad, tmp_path / "x.engine", "fp16", log=None)
    assert cli_main(["build", str(bad), "-o", str(tmp_path / "x.engine")]) == 2
    assert "edgeseg build: error: " in capsys.readouterr().err
    with pytest.raises(ModelError, match="no such ONNX file"):
        build_engine(tmp_path / "missing.onnx", tmp_path / "x.engine", "fp16", log=None)


@pytest.mark.tensorrt
def test_cli_build_json(models, tmp_path, capsys):
    _trt_or_skip()
    out = tmp_path / "cli.engine"
    rc = cli_main(["build", str(models["fp32"]), "--precision", "fp32", "-o", str(out), "--json"])
    assert rc == 0 and out.is_file()
    assert json.loads(capsys.readouterr().out)["engine"] == "cli.engine"
    assert (
        cli_main(["build", str(models["fp32"]), "--dla", "7", "-o", str(out)]) == 2
    )  # no such DLA core


def test_onnx_precision_is_what_the_file_computes_in(models, tmp_path):
    """What a strongly typed build records: int8 for Q/DQ, fp16 for float16 weights, else fp32."""
    f16 = pytest.importorskip("onnxconverter_common.float16")
    from edgeseg.engine.builder import _onnx_precision

    half = f16.convert_float_to_float16(onnx.load(str(models["fp32"])), keep_io_types=True)
    onnx.save(half, str(tmp_path / "half.onnx"))
    assert _onnx_precision(models["fp32"], {}, qdq=False) == "fp32"
    assert _onnx_precision(tmp_path / "half.onnx", {}, qdq=False) == "fp16"
    assert _onnx_precision(models["qdq"], {}, qdq=True) == "int8"
