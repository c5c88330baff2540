"""Class-prior calibration: the exact coordinate step, the fold into the head bias, a run."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("albumentations")
pytest.importorskip("cv2")

from edgeseg.train import create_model  # noqa: E402
from edgeseg.train.calibrate import (  # noqa: E402
    collect_pixels,
    fit_logit_offsets,
    fold_logit_offsets,
    miou_of,
)


def _shifted(rng, n=20000, c=4, shift=(0.0, 1.5, 2.5, -0.5)):
    """Logits of a noisy classifier whose class priors were shifted by ``shift``."""
    t = rng.choice(c, n, p=[0.85, 0.05, 0.05, 0.05])
    logits = rng.normal(0, 1.0, (n, c)).astype(np.float32)
    logits[np.arange(n), t] += 2.0
    return logits + np.asarray(shift, np.float32), t


def test_fit_undoes_a_prior_shift_and_scores_match_argmax():
    rng = np.random.default_rng(0)
    logits, t = _shifted(rng)
    b, before, after = fit_logit_offsets(logits, t)
    assert b[0] == 0 and b.dtype == np.float32
    assert before == pytest.approx(miou_of(logits, t))
    assert after == pytest.approx(miou_of(logits, t, b))  # the binned score is the argmax's
    assert after > before + 0.05
    # the three foreground classes are alike but for the shift: the offsets undo it, so
    # offset + shift is about the same for each (the mIoU optimum for their common prior)
    shift = np.array([0.0, 1.5, 2.5, -0.5])
    assert b[2] < b[1] < b[3]
    assert np.ptp((b + shift)[1:]) <= 0.5


@pytest.mark.parametrize("seed", range(4))
def test_fit_is_coordinate_optimal_on_its_grid(seed):
    rng = np.random.default_rng(seed)
    c = int(rng.integers(2, 6))
    logits = rng.normal(0, 2.0, (3000, c)).astype(np.float32)
    t = np.where(rng.random(3000) < 0.6, logits.argmax(1), rng.integers(0, c, 3000))
    grid = np.round(np.arange(-2, 2.001, 0.5), 3)
    b, _, after = fit_logit_offsets(logits, t, grid=grid, passes=20)
    # no single class can move to another grid value and score higher
    for k in range(1, c):
        for v in grid:
            trial = b.copy()
            trial[k] = v
            assert miou_of(logits, t, trial) <= after + 1e-12


def test_fit_leaves_uninformed_classes_at_zero():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 1, (500, 3)).astype(np.float32)
    logits[:, 2] -= 50  # never predicted, never true: no offset changes anything
    t = logits[:, :2].argmax(1)
    b, before, after = fit_logit_offsets(logits, t)
    assert b[2] == 0 and before == after == 1.0


@pytest.mark.parametrize(
    "name,kw",
    [
        ("unet", {"width": 0.25, "max_channels": 32, "full_res_convs": 1}),
        ("unet", {"width": 0.25, "full_res_convs": 0}),
        ("unet", {"width": 0.25, "full_res_convs": 0, "stem": "pool", "fine": True}),
        ("mbv3_lraspp", {"width": 0.5}),
    ],
)
def test_fold_adds_the_offsets_to_every_logit(name, kw):
    torch.manual_seed(0)
    model = create_model(name, 3, **kw).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        before = model(x)
        offsets = np.array([0.0, -1.25, 0.75], np.float32)
        fold_logit_offsets(model, offsets)
        after = model(x)
    delta = (after - before).permute(0, 2, 3, 1).reshape(-1, 3).numpy()
    np.testing.assert_allclose(delta, np.broadcast_to(offsets, delta.shape), atol=1e-4)


def test_collect_pixels_samples_labelled_pixels_only():
    rng = np.random.default_rng(0)
    masks = [rng.integers(0, 3, (40, 50)).astype(np.uint8) for _ in range(3)]
    masks[0][:10] = 255
    logits = [rng.normal(0, 1, (3, 40, 50)).astype(np.float32) for _ in range(3)]
    loader = [(None, masks)]
    lg, t = collect_pixels(lambda im, shapes: logits, loader, 3, per_image=10_000)
    assert lg.shape == (2000 - 500 + 2000 + 2000, 3) and (t != 255).all()
    # every sampled row is the logit vector of a pixel with that label
    np.testing.assert_array_equal(lg[:1500], logits[0][:, 10:].reshape(3, -1).T)
    lg, t = collect_pixels(lambda im, shapes: logits, loader, 3, per_image=200, seed=1)
    assert 300 < t.size < 900


def test_training_calibrates_best_pt_and_eval_agrees(tmp_path):
    from edgeseg import data
    from edgeseg.train import TrainConfig, evaluate, load_checkpoint, train

    ds = data.synth(tmp_path / "ds", "defects", n=12, size=64, seed=2)
    cfg = TrainConfig(
        data=str(ds),
        out=str(tmp_path / "run"),
        size=64,
        crop=64,
        epochs=3,
        batch=4,
        workers=0,
        progress=False,
        amp=False,
        model_kwargs={"width": 0.25, "max_channels": 32},
    )
    summary = train(cfg, log=lambda *a: None)
    cal = summary["calibration"]
    assert set(cal) >= {"applied", "offsets", "val_miou_before", "val_miou_after", "images"}
    assert cal["train_miou_after"] >= cal["train_miou_before"]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["calibration"] == cal
    _, meta = load_checkpoint(tmp_path / "run")
    r = evaluate(tmp_path / "run", ds, "val")
    if cal["applied"]:
        assert cal["val_miou_after"] >= cal["val_miou_before"]
        assert meta["logit_offsets"] == cal["offsets"]
        assert summary["best_val_miou"] == pytest.approx(cal["val_miou_after"])
    else:
        assert "logit_offsets" not in meta
    assert r["miou"] == pytest.approx(summary["best_val_miou"], abs=1e-9)
