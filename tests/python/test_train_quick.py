"""The trainer end to end on a handful of tiny synthetic images (seconds, not minutes)."""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("albumentations")
pytest.importorskip("cv2")

import yaml  # noqa: E402
from conftest import TINY_SIZE as SIZE  # noqa: E402
from conftest import TINY_TRAIN, write_splits  # noqa: E402
from PIL import Image  # noqa: E402

from edgeseg import TrainingError, data  # noqa: E402
from edgeseg.eval_cli import main as eval_main  # noqa: E402
from edgeseg.train import TrainConfig, evaluate, load_checkpoint, train  # noqa: E402
from edgeseg.train import trainer as trainer_mod  # noqa: E402


@pytest.fixture(scope="module")
def objects(tmp_path_factory) -> Path:
    """12 tiny 'objects' images (product vs background): 8 train, 4 val."""
    root = data.synth(tmp_path_factory.mktemp("objects") / "ds", "objects", n=12, size=SIZE)
    write_splits(root, 8, 4)
    return root


def _cfg(ds: Path, out: Path, **kw) -> TrainConfig:
    # deep copy: every config gets its own model_kwargs dict, as before
    return TrainConfig(**{**copy.deepcopy(TINY_TRAIN), "data": str(ds), "out": str(out), **kw})


def _majority_miou(ds: Path) -> float:
    """mIoU of predicting the most frequent class everywhere (the chance level)."""
    val = data.open_dataset(ds).split("val")
    masks = np.concatenate([m.ravel() for _, m in val])
    masks = masks[masks != 255]
    counts = np.bincount(masks, minlength=len(val.classes))
    # IoU of the majority class = its share; the others 0
    return float(counts.max() / counts.sum() / (counts > 0).sum())


def test_loss_falls_and_miou_beats_chance(objects, tmp_path):
    out = tmp_path / "run"
    summary = train(_cfg(objects, out), log=lambda *a: None)
    hist = summary["history"]
    assert len(hist) == 8
    assert hist[-1]["train_loss"] < 0.85 * hist[0]["train_loss"]
    chance = _majority_miou(objects)
    assert summary["best_val_miou"] > chance + 0.05, (summary["best_val_miou"], chance)
    # the run directory
    for name in ("best.pt", "last.pt", "metrics.json", "classes.yaml", "config.yaml"):
        assert (out / name).is_file(), name
    ck = torch.load(out / "best.pt", weights_only=True)
    meta = ck["meta"]
    assert meta["model"] == "unet" and meta["model_kwargs"]["width"] == 0.25
    assert [c["name"] for c in meta["classes"]] == ["background", "product"]
    assert meta["input_size"] == [SIZE, SIZE] and meta["channel_order"] == "RGB"
    assert meta["mean"] == pytest.approx([0.485, 0.456, 0.406])
    last = torch.load(out / "last.pt", weights_only=True)
    assert last["epoch"] == 8 and last["ema_updates"] == 32  # EMA of the weights is resumable
    assert set(last["ema_state_dict"]) == set(ck["state_dict"])
    # what each point of the curve cost: optimizer steps, training images, CPU seconds
    assert hist[-1]["steps"] == 32 and hist[-1]["images"] == 64 and hist[-1]["cpu_s"] > 0
    conf = yaml.safe_load((out / "config.yaml").read_text())
    assert conf["meta"]["classes"][1]["name"] == "product" and conf["epochs"] == 8
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["stopped"] == "completed"
    assert metrics["best_val_miou"] == pytest.approx(summary["best_val_miou"])

    # evaluation of the run reproduces the best epoch's val mIoU
    report = evaluate(out, objects, "val", device="cpu")
    assert report["miou"] == pytest.approx(summary["best_val_miou"], abs=1e-6)
    assert report["num_images"] == 4
    assert set(report["per_class_iou"]) == {"background", "product"}
    assert 0 <= report["boundary_f1"] <= 1 and 0 < report["pixel_accuracy"] <= 1
    js = tmp_path / "eval.json"
    assert (
        eval_main(
            [str(out / "best.pt"), "--data", str(objects), "--json", str(js), "--no-progress"]
        )
        == 0
    )
    assert json.loads(js.read_text())["miou"] == pytest.approx(report["miou"])

    # --resume continues from last.pt to more epochs
    more = train(_cfg(objects, out, epochs=9, resume=True), log=lambda *a: None)
    assert [h["epoch"] for h in more["history"]] == list(range(1, 10))


def test_deterministic_under_a_seed(objects, tmp_path):
    runs = []
    for k in range(2):
        train(_cfg(objects, tmp_path / f"r{k}", epochs=1, max_steps=2), log=lambda *a: None)
        runs.append(load_checkpoint(tmp_path / f"r{k}" / "last.pt")[0])
    for name, t in runs[0].items():
        assert torch.equal(t, runs[1][name]), name


def test_bfloat16_autocast_on_the_cpu_learns_and_is_repeatable(objects, tmp_path):
    # what the CPU default turns on where AMX runs bfloat16 natively; works on any CPU
    runs = []
    for k in range(2):
        out = tmp_path / f"bf{k}"
        s = train(_cfg(objects, out, amp=True, calibrate=False), log=lambda *a: None)
        runs.append((s, load_checkpoint(out / "last.pt")[0]))
    hist = runs[0][0]["history"]
    assert hist[-1]["train_loss"] < 0.85 * hist[0]["train_loss"]
    assert runs[0][0]["best_val_miou"] > _majority_miou(objects)
    for name, t in runs[0][1].items():
        assert t.dtype == torch.float32 or not t.is_floating_point()  # weights stay fp32
        assert torch.equal(t, runs[1][1][name]), name


def test_validation_every_n_epochs_and_after_the_last(objects, tmp_path, monkeypatch):
    s = train(_cfg(objects, tmp_path / "v3", val_every=3), log=lambda *a: None)
    assert [h["epoch"] for h in s["history"]] == [3, 6, 8]
    assert s["epochs_run"] == 8 and s["validations"] == 3
    assert torch.load(tmp_path / "v3" / "last.pt", weights_only=True)["epoch"] == 8
    # automatic: a validation that costs far more than an epoch's training runs rarely; the
    # run's clock jumps 1000 s in each validation, so the machine's speed does not decide
    real, real_clock = trainer_mod.validate, trainer_mod.time.monotonic
    jump = {"s": 0.0}

    def slow(*a, **k):
        jump["s"] += 1000.0
        return real(*a, **k)

    monkeypatch.setattr(trainer_mod.time, "monotonic", lambda: real_clock() + jump["s"])
    monkeypatch.setattr(trainer_mod, "validate", slow)
    s = train(_cfg(objects, tmp_path / "auto", val_every=None), log=lambda *a: None)
    assert [h["epoch"] for h in s["history"]] == [1, 8]


def test_time_limit_lets_the_clock_end_the_run_and_calibrates(objects, tmp_path, monkeypatch):
    # a clock that advances 1 s per reading: the 0.5-minute budget ends after ~30 readings,
    # whatever the machine's speed
    fake = {"t": 0.0}

    def tick():
        fake["t"] += 1.0
        return fake["t"]

    monkeypatch.setattr(trainer_mod.time, "monotonic", tick)
    cfg = _cfg(objects, tmp_path / "clock", epochs=None, time_limit=0.5, calibrate=True)
    s = train(cfg, log=lambda *a: None)
    assert s["stopped"] == "time_limit"
    assert s["config"]["epochs"] >= 1000 and s["config"]["patience"] == 0
    last = s["history"][-1]
    assert last["epoch"] < 1000  # ended by the clock, not by the epoch cap
    # the learning rate reached the end of its cosine when the (fake) clock ran out
    assert last["lr"] < 0.2 * cfg.lr
    assert "offsets" in s["calibration"]


def _scripted_validation(monkeypatch, mious):
    """Validation that returns the next mIoU of ``mious`` (2 classes), the last one after."""
    calls = {"n": 0}

    def scripted(*a, **k):
        v = mious[min(calls["n"], len(mious) - 1)]
        calls["n"] += 1
        cm = trainer_mod.ConfusionMatrix(2)
        # IoU of both classes = v: a diagonal of v, the rest split off-diagonal
        cm.matrix = np.array([[v, (1 - v) / 2], [(1 - v) / 2, v]]) * 1000
        return cm

    monkeypatch.setattr(trainer_mod, "validate", scripted)


@pytest.mark.parametrize("improving", [False, True])
def test_plateau_stops_a_converged_run_but_not_an_improving_one(
    objects, tmp_path, monkeypatch, improving
):
    fake = {"t": 0.0}

    def tick():
        fake["t"] += 1.0
        return fake["t"]

    monkeypatch.setattr(trainer_mod.time, "monotonic", tick)
    # mIoU flat from the start, or rising by 0.01 per validation (0.5 -> 0.99 over 50 calls)
    mious = [0.5 + 0.01 * i for i in range(50)] if improving else [0.6]
    _scripted_validation(monkeypatch, mious)
    cfg = _cfg(objects, tmp_path / "p", epochs=None, time_limit=1.0, val_every=1, calibrate=False)
    s = train(cfg, log=lambda *a: None)
    assert s["config"]["plateau"] == 0.3 and s["config"]["time_limit"] == 1.0
    if improving:
        assert s["stopped"] == "time_limit"
    else:
        assert s["stopped"] == "converged"
        # not before half of the budget (60 fake seconds), and well before its end
        assert 30 <= s["history"][-1]["time_s"] < 55


def test_nan_loss_stops_with_the_last_good_checkpoint(objects, tmp_path, monkeypatch):
    real = trainer_mod.create_loss
    calls = {"n": 0}

    def nan_after_one_epoch(name, weight=None):
        loss = real(name, weight)

        class Wrapped(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.inner = loss

            def forward(self, logits, target):
                calls["n"] += 1
                value = self.inner(logits, target)
                return value * float("nan") if calls["n"] > 2 else value

        return Wrapped()

    monkeypatch.setattr(trainer_mod, "create_loss", nan_after_one_epoch)
    out = tmp_path / "nan"
    with pytest.raises(TrainingError, match=r"loss became nan.*last\.pt \(epoch 1\).*--lr"):
        train(_cfg(objects, out, epochs=3, max_steps=2), log=lambda *a: None)
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 1
    assert (out / "best.pt").is_file()


def test_ctrl_c_keeps_checkpoints(objects, tmp_path, monkeypatch):
    real = trainer_mod.validate
    calls = {"n": 0}

    def interrupt_second_validation(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(trainer_mod, "validate", interrupt_second_validation)
    out = tmp_path / "int"
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(objects, out, epochs=3, max_steps=1), log=lambda *a: None)
    assert json.loads((out / "metrics.json").read_text())["stopped"] == "interrupted"
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 1


def test_bad_inputs_give_clear_errors(objects, tmp_path):
    quiet = {"log": lambda *a: None}
    with pytest.raises(TrainingError, match="--device cuda: .*use --device cpu"):
        if torch.cuda.is_available():
            pytest.skip("a CUDA device is present")
        train(_cfg(objects, tmp_path / "a", device="cuda"), **quiet)
    with pytest.raises(TrainingError, match="unknown model 'resnet'; available models"):
        train(_cfg(objects, tmp_path / "a", model="resnet"), **quiet)
    with pytest.raises(TrainingError, match="smaller than the 128px training crop.*--size"):
        train(_cfg(objects, tmp_path / "a", size=128, crop=128), **quiet)

    # an empty val split
    bad = tmp_path / "emptyval"
    import shutil

    shutil.copytree(objects, bad)
    (bad / "splits" / "val.txt").write_text("")
    with pytest.raises(TrainingError, match="val split is empty"):
        train(_cfg(bad, tmp_path / "b"), **quiet)

    # a label outside the class map: names the file and the fix
    write_splits(bad, 8, 4)
    first = sorted((bad / "masks").glob("*.png"))[0]
    m = np.array(Image.open(first))
    m[:4, :4] = 7
    Image.fromarray(m).save(first)
    with pytest.raises(TrainingError, match=rf"{first.name}: labels outside the class map: id 7"):
        train(_cfg(bad, tmp_path / "c"), **quiet)
    assert not (tmp_path / "c").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_gloo_ddp(objects, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
        "-m", "edgeseg.cli", "train", "--data", str(objects), "--out", str(out),
        "--size", str(SIZE), "--crop", str(SIZE), "--epochs", "2", "--batch", "2",
        "--workers", "0", "--width", "0.25", "--device", "cpu", "--no-progress", "--json",
    ]  # fmt: skip
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "cpu x2" in r.stderr  # the run knew it had two ranks
    assert r.stdout.count('"best_val_miou"') == 1  # only rank 0 reports
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2
    # 8 train images / (2 ranks x batch 2) = 2 steps per epoch on each rank
    assert torch.load(out / "best.pt", weights_only=True)["meta"]["num_classes"] == 2
