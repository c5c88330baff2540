"""ONNX export end to end: a tiny trained run -> one .onnx -> metadata, parity, eval."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("albumentations")
pytest.importorskip("cv2")

from edgeseg import ModelError, data, kernels  # noqa: E402
from edgeseg.cli import main as cli_main  # noqa: E402
from edgeseg.export import export_onnx, read_onnx_metadata  # noqa: E402
from edgeseg.train import evaluate, load_checkpoint  # noqa: E402
from edgeseg.train.models import create_model  # noqa: E402

SIZE = 64


@pytest.fixture(scope="module")
def run(tiny_run) -> tuple[Path, Path]:
    """(dataset, run directory) of the shared tiny trained model (conftest.tiny_run)."""
    return tiny_run


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    report = export_onnx(run[1], out, dynamic_batch=True, log=None)
    return out, report


def _val_images(ds: Path) -> list[np.ndarray]:
    return [im for im, _ in data.open_dataset(ds).split("val")]


def test_one_file_folded_graph_names_and_shapes(exported):
    path, report = exported
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.onnx"]  # no external data
    model = onnx.load(str(path), load_external_data=False)
    onnx.checker.check_model(model, full_check=True)
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    ops = {n.op_type for n in model.graph.node}
    assert "BatchNormalization" not in ops and "ArgMax" not in ops, ops
    assert "Conv" in ops and report["batchnorm_folded"] > 0
    assert model.opset_import[0].version == 17 == report["opset"]
    (inp,), (out,) = model.graph.input, model.graph.output

    def dims(v):
        return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]

    assert inp.name == "images" and out.name == "logits"
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert dims(inp)[1:] == [3, SIZE, SIZE] and isinstance(dims(inp)[0], str)
    assert dims(out)[1:] == [2, SIZE, SIZE]


def test_metadata_round_trip(run, exported):
    path, report = exported
    _, meta = load_checkpoint(run[1])
    md = read_onnx_metadata(path)
    assert md["classes"] == [
        {"id": c["id"], "name": c["name"], "color": list(c["color"])} for c in meta["classes"]
    ]
    assert md["mean"] == pytest.approx(meta["mean"]) and md["std"] == pytest.approx(meta["std"])
    assert md["input_size"] == [SIZE, SIZE] and md["num_classes"] == 2
    assert md["channel_order"] == "RGB" and md["resize"] == "stretch"
    assert md["model"] == "unet" and md["model_kwargs"]["width"] == 0.25
    assert md["dynamic_batch"] is True and md["edgeseg_version"]
    assert md["data_hash"] == meta["data_hash"] and md["data_hash"].startswith("blake2b:")
    assert md.get("logit_offsets") == meta.get("logit_offsets")  # the calibration, if applied
    assert report["metadata"]["classes"] == md["classes"]


def test_parity_with_torch_and_dynamic_batch(run, exported):
    ds, rundir = run
    path, report = exported
    par = report["parity"]
    assert par["images"] == 2 and "val split" in par["source"]
    assert par["max_abs_diff"] < 1e-3 and par["class_maps_identical"]
    # independently: a batch of 2 through ONNX Runtime vs the unfolded torch model
    state, meta = load_checkpoint(rundir)
    model = create_model(meta["model"], meta["num_classes"], **meta["model_kwargs"])
    model.load_state_dict(state)
    model.eval()
    blob = np.asarray(
        kernels.preprocess(_val_images(ds), (SIZE, SIZE), meta["mean"], meta["std"], "rgb")
    )
    assert blob.shape[0] == 2
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        ["logits"], {"images": blob}
    )[0]
    with torch.no_grad():
        ref = model(torch.from_numpy(blob)).numpy()
    assert got.shape == ref.shape == (2, 2, SIZE, SIZE)
    assert np.abs(got - ref).max() < 1e-3
    assert np.array_equal(got.argmax(1), ref.argmax(1))


def test_mbv3_with_real_batchnorm_statistics_and_other_size(run, tmp_path):
    """BatchNorm folding with non-trivial running statistics, static batch, --size H W."""
    _, meta = load_checkpoint(run[1])
    torch.manual_seed(0)
    model = create_model("mbv3_lraspp", 2, width=0.5, head_channels=32)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    ck = tmp_path / "mbv3.pt"
    meta = {**meta, "model": "mbv3_lraspp", "model_kwargs": {"width": 0.5, "head_channels": 32}}
    torch.save({"state_dict": model.state_dict(), "meta": meta}, ck)
    rng = np.random.default_rng(1)
    imgs = [rng.integers(0, 256, (48, 80, 3), np.uint8) for _ in range(2)]
    out = tmp_path / "mbv3.onnx"
    report = export_onnx(ck, out, size=(64, 96), images=imgs, log=None)
    assert report["input_shape"] == [1, 3, 64, 96] and report["output_shape"] == [1, 2, 64, 96]
    assert report["parity"]["max_abs_diff"] < 1e-3, report["parity"]
    assert report["parity"]["source"] == "given images"
    assert read_onnx_metadata(out)["input_size"] == [64, 96]
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert "BatchNormalization" not in ops


@pytest.mark.parametrize("kw", [{}, {"stem": "pool", "fine": True}])
def test_unet_without_full_resolution_convs_exports(run, tmp_path, kw):
    """UNet full_res_convs=0: BatchNorm folded (the stem's too), DepthToSpace in the graph,
    parity with torch at full-resolution logits, and ONNX Runtime's CPU int8 plan keeps the
    DepthToSpace (it feeds the float output) and the 3-channel stem in float."""
    from edgeseg.quant.cpu_plan import float_for_speed

    _, meta = load_checkpoint(run[1])
    kwargs = {"width": 0.25, "depth": 3, "full_res_convs": 0, **kw}
    torch.manual_seed(0)
    model = create_model("unet", 2, **kwargs)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    ck = tmp_path / "s2d.pt"
    torch.save({"state_dict": model.state_dict(), "meta": {**meta, "model_kwargs": kwargs}}, ck)
    rng = np.random.default_rng(2)
    imgs = [rng.integers(0, 256, (SIZE, SIZE, 3), np.uint8) for _ in range(2)]
    out = tmp_path / "s2d.onnx"
    report = export_onnx(ck, out, images=imgs, log=None)
    assert report["output_shape"] == [1, 2, SIZE, SIZE]
    assert report["parity"]["max_abs_diff"] < 1e-3, report["parity"]
    assert report["parity"]["class_maps_identical"]
    proto = onnx.load(str(out))
    ops = {n.op_type for n in proto.graph.node}
    assert "DepthToSpace" in ops and "BatchNormalization" not in ops
    plan = float_for_speed(proto, cpu_isa="no-vnni")
    d2s = [n.name for n in proto.graph.node if n.op_type == "DepthToSpace"]
    assert d2s and all(n in plan for n in d2s)
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    assert convs[0].name in plan and "input channels" in plan[convs[0].name]


def test_cli_export_then_eval_matches_pt(run, tmp_path, capsys):
    ds, rundir = run
    out = tmp_path / "cli.onnx"
    assert cli_main(["export", str(rundir), "-o", str(out), "--json", "-"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["parity"]["max_abs_diff"] < 1e-3 and report["input_shape"][0] == 1
    js = tmp_path / "eval.json"
    assert cli_main(["eval", str(out), "--data", str(ds), "--json", str(js), "--no-progress"]) == 0
    onnx_report = json.loads(js.read_text())
    pt_report = evaluate(rundir, ds, "val", device="cpu")
    assert set(onnx_report) == set(pt_report)
    assert onnx_report["num_images"] == pt_report["num_images"] == 2
    assert onnx_report["miou"] == pytest.approx(pt_report["miou"], abs=0.01)
    assert onnx_report["pixel_accuracy"] == pytest.approx(pt_report["pixel_accuracy"], abs=0.01)
    for name, iou in pt_report["per_class_iou"].items():
        assert onnx_report["per_class_iou"][name] == pytest.approx(iou, abs=0.01), name


def test_bad_files_raise_model_error_naming_the_file(exported, run, tmp_path, capsys):
    path, _ = exported
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.raises(ModelError, match="truncated.onnx"):
        read_onnx_metadata(truncated)
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a model\n" * 10)
    with pytest.raises(ModelError, match="notes.onnx"):
        read_onnx_metadata(text)
    plain = tmp_path / "plain.onnx"
    model = onnx.load(str(path))
    del model.metadata_props[:]
    onnx.save(model, str(plain))
    with pytest.raises(ModelError, match=r"plain\.onnx.*without edgeseg metadata"):
        read_onnx_metadata(plain)
    with pytest.raises(ModelError, match="plain.onnx"):
        evaluate(plain, run[0], "val")
    with pytest.raises(ModelError, match="missing.onnx"):
        read_onnx_metadata(tmp_path / "missing.onnx")
    assert cli_main(["eval", str(plain), "--data", str(run[0]), "--no-progress"]) == 2
    assert "plain.onnx" in capsys.readouterr().err


def test_eval_of_onnx_does_not_import_torch(tmp_path):
    """The runtime side (a Jetson without torch) evaluates ONNX models without torch."""
    import subprocess
    import sys

    code = (
        "import sys, edgeseg.cli\n"
        "try:\n"
        "    edgeseg.cli.main(['eval', 'missing.onnx', '--data', 'missing'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "False"
