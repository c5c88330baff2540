"""Shared fixtures; tests are skipped by capability (never by failure) with a clear reason."""

from __future__ import annotations

import copy

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

#: Training settings of the tiny models tests train (seconds on 2 cores); pass data/out and any
#: override to ``TrainConfig(**TINY_TRAIN, ...)``.
TINY_TRAIN = dict(
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
    amp=False,  # float32 everywhere (bfloat16 has its own test)
    val_every=1,
)


def write_splits(root, n_train: int, n_val: int) -> None:
    """splits/{train,val,test}.txt of a synthesized dataset: the first n_train sorted stems,
    then n_val for val, an empty test split."""
    stems = sorted(p.stem for p in (root / "images").glob("*.png"))
    (root / "splits" / "train.txt").write_text("\n".join(stems[:n_train]) + "\n")
    (root / "splits" / "val.txt").write_text("\n".join(stems[n_train : n_train + n_val]) + "\n")
    (root / "splits" / "test.txt").write_text("")


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
    write_splits(ds, 8, 2)
    cfg = TrainConfig(data=str(ds), out=str(base / "run"), **copy.deepcopy(TINY_TRAIN))
    train(cfg, log=lambda *a: None)
    return ds, base / "run"


@pytest.fixture(scope="session")
def tiny_onnx(tiny_run, tmp_path_factory):
    """Path of the shared tiny run exported to ONNX (64², dynamic batch): the model the
    runtime, camera-loop and line-integration tests run."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from edgeseg.export import export_onnx

    out = tmp_path_factory.mktemp("tiny_onnx") / "tiny.onnx"
    export_onnx(tiny_run[1], out, dynamic_batch=True, log=None)
    return out
