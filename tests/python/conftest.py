"""Shared fixtures; tests are skipped by capability (never by failure) with a clear reason."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg import _core


def _cuda_state() -> tuple[bool, str]:
    if not _core.build_info()["cuda"]:
        return False, "edgeseg core built without CUDA (no nvcc at build time)"
    ok, reason = _core.cuda_available()
    return ok, reason


CUDA_OK, CUDA_REASON = _cuda_state()


def pytest_collection_modifyitems(config, items):
    if CUDA_OK:
        return
    skip_gpu = pytest.mark.skip(reason=f"needs a usable CUDA device: {CUDA_REASON}")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


TINY_SIZE = 64


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """(dataset, run directory): a tiny UNet trained for 8 epochs on 8 synthetic 64² "objects"
    images, shared by the export, quantization and engine tests (it finds the product, so
    comparisons are not between two blank maps)."""
    pytest.importorskip("torch")
    pytest.importorskip("albumentations")
    pytest.importorskip("cv2")
    from edgeseg import data
    from edgeseg.train import TrainConfig, train

    base = tmp_path_factory.mktemp("tiny_run")
    ds = data.synth(base / "ds", "objects", n=10, size=TINY_SIZE)
    stems = sorted(p.stem for p in (ds / "images").glob("*.png"))
    (ds / "splits" / "train.txt").write_text("\n".join(stems[:8]) + "\n")
    (ds / "splits" / "val.txt").write_text("\n".join(stems[8:]) + "\n")
    (ds / "splits" / "test.txt").write_text("")
    cfg = TrainConfig(
        data=str(ds),
        out=str(base / "run"),
        size=TINY_SIZE,
        crop=TINY_SIZE,
        epochs=8,
        batch=2,
        lr=5e-3,
        workers=0,
        progress=False,
        model_kwargs={"width": 0.25, "depth": 3},
        warmup_epochs=0.5,
        loss="ce",
        class_weights="none",
    )
    train(cfg, log=lambda *a: None)
    return ds, base / "run"
