"""``timm_unet`` (the optional ``[zoo]`` extra): a timm encoder with weights only from a local
file, trained through ``edgeseg train`` and exported to an ONNX graph of export-clean ops."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("albumentations")
pytest.importorskip("cv2")
try:
    import timm
except Exception as e:  # a torchvision of another torch build raises RuntimeError, not ImportError
    pytest.skip(
        f"timm (the optional [zoo] extra) is not importable: {type(e).__name__}: {e}",
        allow_module_level=True,
    )

import yaml  # noqa: E402
from conftest import TINY_SIZE as SIZE  # noqa: E402
from conftest import write_splits  # noqa: E402

from edgeseg import TrainingError, data  # noqa: E402
from edgeseg.cli import main as cli_main  # noqa: E402
from edgeseg.train import create_model, load_model  # noqa: E402

ENCODER = "resnet18"
#: every op type the default timm_unet may leave in the exported graph (BatchNorm is folded)
ALLOWED_OPS = {"Conv", "Relu", "MaxPool", "Add", "Resize", "Concat"}
#: the size arithmetic of each resize (``F.interpolate(size=skip.shape[-2:])``), as in the
#: built-in models: allowed only where it ends in a Resize's ``sizes`` input
SHAPE_OPS = {"Shape", "Slice", "Constant"}


def _check_ops(path: Path, extra: frozenset = frozenset()) -> set:
    graph = onnx.load(str(path)).graph
    ops = {n.op_type for n in graph.node}
    known = ALLOWED_OPS | SHAPE_OPS | {"Identity"} | extra
    assert ops <= known, ops - known
    assert "BatchNormalization" not in ops and {"Conv", "Resize", "Concat"} <= ops
    users: dict[str, list] = {}
    for n in graph.node:
        for i, name in enumerate(n.input):
            users.setdefault(name, []).append((n, i))
    for start in (n for n in graph.node if n.op_type in ("Shape", "Slice")):
        todo = list(start.output)
        while todo:  # every path from a Shape/Slice ends in a Resize's sizes (input 3)
            for user, i in users.get(todo.pop(), []):
                if user.op_type == "Resize":
                    assert i == 3, f"{start.name} feeds Resize input {i}"
                else:
                    assert user.op_type in ("Slice", "Concat"), f"{start.name} -> {user.op_type}"
                    todo.extend(user.output)
    inits = {t.name for t in graph.initializer}
    for n in graph.node:
        if n.op_type == "Identity":  # the exporter aliases equal initializers (zero biases)
            assert n.input[0] in inits, f"{n.name} is not an initializer alias"
        if n.op_type == "Resize":
            assert {a.name: a.s for a in n.attribute}.get("mode") == b"linear", "bilinear"
    return ops


@pytest.fixture(scope="module")
def cls_state(tmp_path_factory) -> tuple[Path, dict]:
    """A timm classification model of the encoder (random init, pretrained=False) saved as a
    nested .pth state dict, as a training script would write it."""
    torch.manual_seed(1)
    sd = timm.create_model(ENCODER, pretrained=False).state_dict()
    path = tmp_path_factory.mktemp("weights") / f"{ENCODER}_cls.pth"
    torch.save({"state_dict": sd, "epoch": 90}, path)
    return path, sd


def test_importing_edgeseg_train_does_not_import_timm():
    code = (
        "import sys, edgeseg.train as t; "
        "print('timm_unet' in t.model_names(), 'timm' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "False"]


def test_forward_logits_at_input_resolution():
    model = create_model("timm_unet", 3).eval()
    assert model.encoder_name == ENCODER and model.encoder_weights is None
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 3, 64, 64)
        assert model(torch.zeros(2, 3, 96, 160)).shape == (2, 3, 96, 160)


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_encoder_weights_from_a_local_classification_checkpoint(cls_state, tmp_path, fmt):
    path, sd = cls_state
    if fmt == "safetensors":
        from safetensors.torch import save_file

        path = tmp_path / "w.safetensors"
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    model = create_model("timm_unet", 3, weights=str(path))
    enc = model.encoder.state_dict()
    for k, v in enc.items():
        assert torch.equal(v, sd[k]), k
    rep = model.encoder_weights
    assert rep["loaded"] == rep["total"] == len(enc)
    assert rep["ignored"] == 2  # fc.weight, fc.bias of the classifier
    assert f"{len(enc)}/{len(enc)}" in model.init_note and str(path) in model.init_note
    # a fresh model without weights differs (the load did something)
    other = create_model("timm_unet", 3).encoder.state_dict()
    assert not torch.equal(other["conv1.weight"], enc["conv1.weight"])


def test_bad_weights_files_are_refused(cls_state, tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(TrainingError, match="nope.pth: no such file"):
        create_model("timm_unet", 3, weights=str(missing))
    unrelated = tmp_path / "unrelated.pth"
    torch.save({"model": {"backbone.stem.weight": torch.zeros(8, 3, 3, 3)}}, unrelated)
    with pytest.raises(TrainingError, match=r"no tensor name matches.*backbone\.stem\.weight"):
        create_model("timm_unet", 3, weights=str(unrelated))
    # resnet18 weights into resnet34: the shared layers match, the rest would stay random
    with pytest.raises(TrainingError, match=r"encoder tensors missing: layer1\.2\."):
        create_model("timm_unet", 3, encoder="resnet34", weights=str(cls_state[0]))
    with pytest.raises(TrainingError, match=r"has no model 'resnet_nope'.*list_models"):
        create_model("timm_unet", 3, encoder="resnet_nope")


def test_train_cli_export_onnx_clean_ops_and_parity(cls_state, tmp_path, capsys):
    ds = data.synth(tmp_path / "ds", "objects", n=6, size=SIZE)
    write_splits(ds, 4, 2)
    weights = tmp_path / "enc.pth"
    weights.write_bytes(cls_state[0].read_bytes())
    conf = tmp_path / "train.yaml"
    settings = dict(
        size=SIZE, crop=SIZE, epochs=1, max_steps=1, batch=2, workers=0, loss="ce",
        class_weights="none", model_kwargs={"weights": str(weights), "decoder_channels": 16},
    )  # fmt: skip
    conf.write_text(yaml.safe_dump(settings))
    run = tmp_path / "run"
    argv = ["train", "--data", str(ds), "--out", str(run), "--model", "timm_unet"]
    assert cli_main([*argv, "--config", str(conf), "--no-progress"]) == 0
    assert f"loaded 120/120 encoder tensors of {ENCODER} from {weights}" in capsys.readouterr().err
    meta = torch.load(run / "best.pt", weights_only=True)["meta"]
    assert meta["model"] == "timm_unet"
    assert meta["model_kwargs"] == {"decoder_channels": 16, "dropout": 0.1}  # no weights path
    # export, eval and --resume rebuild from meta / last.pt: the weights file is not needed
    weights.unlink()
    resume = [*argv, "--resume", "--epochs", "2", "--no-progress"]
    assert cli_main(resume) == 0
    capsys.readouterr()
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] == 2
    out = tmp_path / "m.onnx"
    assert cli_main(["export", str(run), "-o", str(out), "--json", "-"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["parity"]["max_abs_diff"] < 1e-3 and report["parity"]["class_maps_identical"]
    assert _check_ops(out) >= {"MaxPool", "Add", "Relu"}
    # ONNX Runtime against the rebuilt torch model on a fresh input
    model, _ = load_model(run)
    x = np.random.default_rng(0).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = sess.run(["logits"], {"images": x})[0]
    assert got.shape == (1, 2, SIZE, SIZE)
    np.testing.assert_allclose(got, ref, atol=1e-3, rtol=0)


def test_mobilenetv3_encoder_exports_clean(tmp_path):
    """A MobileNetV3 encoder through export_onnx (the small 0.5x one for speed; the same blocks
    as mobilenetv3_large_100): squeeze-excite adds ReduceMean, HardSigmoid and Mul, HardSwish
    its activations; no BatchNorm, no custom op; ORT matches torch."""
    from edgeseg.export import export_onnx

    kw = {"encoder": "mobilenetv3_small_050", "decoder_channels": 8}
    model = create_model("timm_unet", 2, **kw).eval()
    meta = {
        "model": "timm_unet",
        "model_kwargs": kw,
        "num_classes": 2,
        "classes": [{"id": i, "name": f"c{i}", "color": [i, i, i]} for i in range(2)],
        "input_size": [SIZE, SIZE],
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
    }
    ck = tmp_path / "mbv3.pt"
    torch.save({"state_dict": model.state_dict(), "meta": meta}, ck)
    imgs = [np.random.default_rng(1).integers(0, 256, (SIZE, SIZE, 3), np.uint8)]
    report = export_onnx(ck, tmp_path / "mbv3.onnx", images=imgs, log=None)
    assert report["parity"]["max_abs_diff"] < 1e-3, report["parity"]
    extra = frozenset({"HardSwish", "HardSigmoid", "ReduceMean", "Mul"})
    assert _check_ops(tmp_path / "mbv3.onnx", extra) >= extra


def test_bench_encoders_exports_builds_and_times(tmp_path, capsys):
    """tools/bench_encoders.py takes a timm encoder through train, export (with parity) and,
    where a TensorRT package is installed, an engine build, next to the default model."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "tools" / "bench_encoders.py"
    spec = importlib.util.spec_from_file_location("bench_encoders", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "r.json"
    argv = ["--encoders", ENCODER, "--size", "64", "--threads", "1", "--rounds", "1"]
    argv += ["--runs", "2", "--out", str(tmp_path / "w"), "--json", str(out)]
    assert mod.main(argv) == 0
    rows = {r["encoder"]: r for r in json.loads(out.read_text())["rows"]}
    assert list(rows) == ["default", ENCODER]
    for r in rows.values():
        assert r["export"] == "ok" and r["class_maps_identical"], r
        assert r["parity_max_abs"] < 1e-3 and r["ort_ms"] > 0
        assert r["extra_ops"] == []  # both are plain CNNs once BatchNorm is folded
    assert rows["default"]["vs_default"] == 1.0
    assert rows[ENCODER]["params_m"] > 10 * rows["default"]["params_m"]  # resnet18: 12 M
    table = capsys.readouterr().out
    assert f"| {ENCODER} | " in table and "× default" in table
