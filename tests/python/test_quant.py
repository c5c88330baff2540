"""Quantization end to end: a tiny trained run -> .onnx -> fp16 / int8 (cpu, tensorrt) behind
the mIoU gate; bad inputs; TensorRT-RTX parses and builds every flavour."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxconverter_common")
pytest.importorskip("albumentations")
pytest.importorskip("cv2")

from onnx import TensorProto, numpy_helper  # noqa: E402

from edgeseg import DatasetError, InvalidArgumentError, ModelError, data  # noqa: E402
from edgeseg.cli import main as cli_main  # noqa: E402
from edgeseg.export import export_onnx, read_onnx_metadata  # noqa: E402
from edgeseg.quant import quantize  # noqa: E402

SIZE = 64


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory) -> tuple[Path, Path]:
    """(dataset, float32 .onnx) of the shared tiny trained model (conftest.tiny_run)."""
    ds, run = tiny_run
    base = tmp_path_factory.mktemp("quant")
    export_onnx(run, base / "fp32" / "model.onnx", log=None)
    return ds, base / "fp32" / "model.onnx"


def _quant(exported, tmp_path, **kw):
    ds, model = exported
    out = tmp_path / "q.onnx"
    kw.setdefault("max_drop", 100.0)  # these tests check the file; the gate has its own test
    kw.setdefault("latency_runs", 2)
    return quantize(model, ds, out, log=None, **kw), out


def _io_float32(m) -> None:
    for v in list(m.graph.input) + list(m.graph.output):
        assert v.type.tensor_type.elem_type == TensorProto.FLOAT, v.name


def _dq_weights(m):
    """(weight DequantizeLinear nodes, {initializer name: tensor})."""
    inits = {t.name: t for t in m.graph.initializer}
    dqs = [n for n in m.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    return dqs, inits


@pytest.fixture(scope="module")
def int8_cpu(exported, tmp_path_factory):
    return _quant(
        exported, tmp_path_factory.mktemp("i8c"), precision="int8", target="cpu", cpu_isa="no-vnni"
    )


@pytest.fixture(scope="module")
def int8_trt(exported, tmp_path_factory):
    return _quant(exported, tmp_path_factory.mktemp("i8t"), precision="int8", target="tensorrt")


@pytest.fixture(scope="module")
def fp16(exported, tmp_path_factory):
    return _quant(exported, tmp_path_factory.mktemp("f16"), precision="fp16")


def test_int8_cpu_is_u8s8_qdq_per_channel(int8_cpu):
    report, out = int8_cpu
    assert report["passed"] and out.is_file()
    m = onnx.load(str(out))
    onnx.checker.check_model(m)
    _io_float32(m)
    ops = [n.op_type for n in m.graph.node]
    assert ops.count("QuantizeLinear") > 5 and ops.count("DequantizeLinear") > 5
    dqs, inits = _dq_weights(m)
    conv_w = [n for n in dqs if inits[n.input[0]].dims and len(inits[n.input[0]].dims) == 4]
    assert conv_w, "no quantized conv weights"
    for n in conv_w:
        w, scale = inits[n.input[0]], numpy_helper.to_array(inits[n.input[1]])
        assert w.data_type == TensorProto.INT8
        assert scale.ndim == 1 and scale.size == w.dims[0] > 1  # one scale per output channel
    acts = [n for n in m.graph.node if n.op_type == "QuantizeLinear"]
    zp = numpy_helper.to_array(inits[acts[0].input[2]])
    assert zp.dtype == np.uint8  # U8S8
    md = read_onnx_metadata(out)
    assert md["precision"] == "int8" and md["quant_target"] == "cpu"
    assert md["classes"] == read_onnx_metadata(report["model"])["classes"]


def _conv_weight_dtypes(m) -> dict[str, int]:
    """{Conv node name: data type of its weight initializer, through a DequantizeLinear}."""
    inits = {t.name: t for t in m.graph.initializer}
    producer = {o: n for n in m.graph.node for o in n.output}
    out = {}
    for n in m.graph.node:
        if n.op_type == "Conv":
            w = n.input[1]
            if w in producer and producer[w].op_type == "DequantizeLinear":
                w = producer[w].input[0]
            out[n.name] = inits[w].data_type
    return out


def test_int8_cpu_keeps_slow_int8_convs_float(int8_cpu):
    """The tiny UNet (width 0.25: 8 channels at full resolution) keeps its 8- and 2-channel
    convolutions float32 (ONNX Runtime's generic int8 path is slower there) and quantizes the
    rest; every node kept float for speed says why."""
    report, out = int8_cpu
    speed = report["nodes_float_for_speed"]
    dtypes = _conv_weight_dtypes(onnx.load(str(out)))
    src = onnx.load(report["model"])
    inits = {t.name: t for t in src.graph.initializer}
    cout = {n.name: inits[n.input[1]].dims[0] for n in src.graph.node if n.op_type == "Conv"}
    assert set(dtypes) == set(cout)
    for name, c in cout.items():
        if c < 16:
            assert dtypes[name] == TensorProto.FLOAT, name
            assert "output channels" in speed[name]
        else:
            assert dtypes[name] == TensorProto.INT8, name
            assert name not in speed
    assert any(v < 16 for v in cout.values()) and any(v >= 16 for v in cout.values())
    assert all(isinstance(v, str) and v for v in speed.values())
    assert report["all_int8"] is False


def test_int8_cpu_plan_for_vnni_quantizes_every_conv(exported, tmp_path):
    report, out = _quant(exported, tmp_path, precision="int8", target="cpu", cpu_isa="vnni")
    assert report["cpu_isa"] == "vnni" and report["nodes_float_for_speed"] == {}
    assert set(_conv_weight_dtypes(onnx.load(str(out))).values()) == {TensorProto.INT8}
    with pytest.raises(InvalidArgumentError, match="cpu_isa 'sse'"):
        _quant(exported, tmp_path, precision="int8", target="cpu", cpu_isa="sse")


def test_int8_cpu_all_int8_quantizes_every_conv(exported, tmp_path):
    report, out = _quant(exported, tmp_path, precision="int8", target="cpu", all_int8=True)
    assert report["nodes_float_for_speed"] == {} and report["all_int8"] is True
    dtypes = _conv_weight_dtypes(onnx.load(str(out)))
    assert dtypes and all(d == TensorProto.INT8 for d in dtypes.values())


def test_int8_tensorrt_symmetric_float_bias(int8_trt):
    report, out = int8_trt
    assert report["passed"] and report["target"] == "tensorrt"
    assert report["nodes_float_for_speed"] == {}  # TensorRT picks its own kernels
    m = onnx.load(str(out))
    _io_float32(m)
    dqs, inits = _dq_weights(m)
    assert dqs
    for n in dqs:  # no int32 (bias) DequantizeLinear: TensorRT's parser rejects them
        assert inits[n.input[0]].data_type == TensorProto.INT8
    for n in m.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2:
            zp = numpy_helper.to_array(inits[n.input[2]])
            assert zp.dtype == np.int8 and not zp.any()  # symmetric int8
    conv_bias = [n.input[2] for n in m.graph.node if n.op_type == "Conv" and len(n.input) > 2]
    assert conv_bias and all(inits[b].data_type == TensorProto.FLOAT for b in conv_bias)


def test_fp16_keeps_float32_io_and_runs(fp16, exported):
    report, out = fp16
    assert report["passed"] and report["precision"] == "fp16" and report["calib_images"] == 0
    m = onnx.load(str(out))
    _io_float32(m)
    assert any(t.data_type == TensorProto.FLOAT16 for t in m.graph.initializer)
    x = np.zeros((1, 3, SIZE, SIZE), np.float32)
    y = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"images": x})
    assert y[0].dtype == np.float32 and y[0].shape == (1, 2, SIZE, SIZE)


def test_report_fields(int8_cpu):
    report, out = int8_cpu
    on_disk = json.loads((out.parent / "quant_report.json").read_text())
    for r in (report, on_disk):
        assert r["passed"] and r["written"]
        assert 0 <= r["fp32"]["miou"] <= 1 and 0 <= r["quantized"]["miou"] <= 1
        assert r["fp32"]["miou"] > 0.3  # the tiny model found the objects
        assert r["miou_drop_points"] == pytest.approx(
            (r["fp32"]["miou"] - r["quantized"]["miou"]) * 100
        )
        assert set(r["per_class_iou_delta_points"]) == set(r["fp32"]["per_class_iou"])
        assert r["fp32"]["latency_ms"] > 0 and r["quantized"]["latency_ms"] > 0
        assert r["nodes_kept_float"] == [] and r["calib_images"] == 8
        assert r["calib_method"] == "minmax" and r["latency"]["threads"] == 2


def test_failed_gate_exits_nonzero_and_writes_no_model(exported, tmp_path, capsys):
    ds, model = exported
    out = tmp_path / "q.onnx"
    rc = cli_main(
        ["quantize", str(model), "--data", str(ds), "-o", str(out), "--max-drop", "-100"]
        + ["--max-float-nodes", "1", "--calib-images", "8"]
    )
    assert rc == 1
    assert "not written" in capsys.readouterr().err
    assert not out.exists() and not any(p.suffix == ".onnx" for p in tmp_path.iterdir())
    r = json.loads((tmp_path / "quant_report.json").read_text())
    assert r["passed"] is False and r["written"] is False and "reason" in r
    assert len(r["nodes_kept_float"]) == 1 and len(r["attempts"]) == 2  # one greedy step


def test_too_few_calibration_images(exported, tmp_path):
    ds, model = exported
    few = tmp_path / "few"
    shutil.copytree(ds, few)
    stems = (few / "splits" / "train.txt").read_text().split()
    (few / "splits" / "train.txt").write_text("\n".join(stems[:3]) + "\n")
    with pytest.raises(DatasetError, match="too few calibration images"):
        quantize(model, few, tmp_path / "q.onnx", log=None)
    with pytest.raises(InvalidArgumentError, match="calib_images"):
        quantize(model, ds, tmp_path / "q.onnx", calib_images=2, log=None)


def test_classes_differ(exported, tmp_path):
    _, model = exported
    other = data.synth(tmp_path / "defects", "defects", n=10, size=32)
    with pytest.raises(DatasetError, match="classes differ"):
        quantize(model, other, tmp_path / "q.onnx", log=None)
    rc = cli_main(["quantize", str(model), "--data", str(other), "-o", str(tmp_path / "q.onnx")])
    assert rc == 2


def test_bad_arguments_and_models(exported, int8_cpu, tmp_path):
    ds, model = exported
    with pytest.raises(InvalidArgumentError, match="precision"):
        quantize(model, ds, tmp_path / "q.onnx", precision="int4", log=None)
    with pytest.raises(InvalidArgumentError, match="overwrite"):
        quantize(model, ds, model, log=None)
    with pytest.raises(ModelError, match="already quantized|not float32"):
        quantize(int8_cpu[1], ds, tmp_path / "q.onnx", log=None)


def _trt():
    return pytest.importorskip(
        "tensorrt_rtx_bindings",
        reason="TensorRT-RTX wheels not installed (pip install tensorrt-rtx-cu13-libs "
        "tensorrt-rtx-cu13-bindings, in the [dev] extra on x86_64 Linux)",
    )


@pytest.mark.tensorrt
@pytest.mark.parametrize("flavour", ["fp32", "fp16", "int8_trt"])
def test_tensorrt_rtx_parses_and_builds(flavour, request, exported):
    """TensorRT-RTX's ONNX parser and builder (no GPU needed) accept each export, so a graph
    TensorRT rejects fails here rather than on a customer's Jetson."""
    trt = _trt()
    path = exported[1] if flavour == "fp32" else request.getfixturevalue(flavour)[1]
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    ok = parser.parse(path.read_bytes())
    errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
    assert ok, f"TensorRT-RTX cannot parse {flavour}: {errors}"
    config = builder.create_builder_config()
    engine = builder.build_serialized_network(network, config)
    assert engine is not None and engine.nbytes > 0, f"TensorRT-RTX cannot build {flavour}"
