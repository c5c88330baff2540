"""Training data path: the class-balanced crop, the RAM cache, the CPU defaults."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("albumentations")
pytest.importorskip("cv2")

from edgeseg import TrainingError  # noqa: E402
from edgeseg.train import create_model, defaults  # noqa: E402
from edgeseg.train import data as tdata  # noqa: E402
from edgeseg.train import trainer as trainer_mod  # noqa: E402
from edgeseg.train.config import TrainConfig  # noqa: E402
from edgeseg.train.distributed import Dist  # noqa: E402


def _mask() -> np.ndarray:
    """64² background with a big class-1 block and one class-3 pixel (a 'thin' class)."""
    m = np.zeros((64, 64), np.uint8)
    m[:, 40:] = 1
    m[5, 5] = 3
    m[0, :4] = 255
    return m


def test_class_balanced_crop_finds_the_rare_class():
    crop = tdata.ClassBalancedCrop(16, 16, ignore_values=[0, 255])
    image = np.zeros((64, 64, 3), np.uint8)
    hits = 0
    for seed in range(60):
        crop.set_random_seed(seed)
        out = crop(image=image, mask=_mask())
        assert out["image"].shape == (16, 16, 3) and out["mask"].shape == (16, 16)
        hits += int((out["mask"] == 3).any())
    # a class drawn uniformly from {1, 3}: about half the crops hold the single pixel
    # (a random crop would in about 1 in 16)
    assert 18 <= hits <= 42, hits


def test_class_balanced_crop_without_foreground_is_a_random_crop():
    crop = tdata.ClassBalancedCrop(16, 16, ignore_values=[0, 255])
    corners = set()
    for seed in range(10):
        crop.set_random_seed(seed)
        m = np.zeros((64, 64), np.uint8)
        m[10:20, 10:20] = 255
        out = crop(image=np.arange(64 * 64 * 3, dtype=np.uint32).reshape(64, 64, 3), mask=m)
        corners.add(int(out["image"][0, 0, 0]))
    assert len(corners) > 3


@pytest.mark.parametrize("crop", [32, 64])
def test_default_pipeline_sizes_and_mask_values(crop):
    tf = tdata.train_transform(64, crop, focus=1.0)
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    for seed in range(5):
        tf.set_random_seed(seed)
        out = tf(image=image, mask=_mask())
        assert out["image"].shape == (crop, crop, 3) and out["image"].dtype == np.uint8
        assert set(np.unique(out["mask"])) <= {0, 1, 3, 255}  # never interpolated


def test_zoomed_pipeline_keeps_the_foreground_focus():
    # a 6x6 rare-class block in a 128² image; 64 px crops after a 0.5-1x rescale
    m = np.zeros((128, 128), np.uint8)
    m[100:106, 20:26] = 3
    image = np.random.default_rng(1).integers(0, 255, (128, 128, 3), dtype=np.uint8)
    tf = tdata.train_transform(128, 64, zoom=(0.5, 1.0), focus=1.0)
    hits = 0
    for seed in range(40):
        tf.set_random_seed(seed)
        out = tf(image=image, mask=m)
        assert out["image"].shape == (64, 64, 3) and out["mask"].shape == (64, 64)
        assert set(np.unique(out["mask"])) <= {0, 3, 255}  # never interpolated
        hits += int((out["mask"] == 3).any())
    # every crop is placed on the block (a small rotation may move it off a few); a random
    # crop of the rescaled image would hold it in about a third of the draws
    assert hits >= 34, hits


def test_zoom_below_the_crop_pads_with_void():
    # a quarter-scale 128² image is 32² inside a 64² crop: three quarters of it void
    m = np.ones((128, 128), np.uint8)
    image = np.full((128, 128, 3), 200, np.uint8)
    tf = tdata.train_transform(128, 64, zoom=(0.25, 0.25), focus=0.0)
    for seed in range(5):
        tf.set_random_seed(seed)
        out = tf(image=image, mask=m)
        assert out["mask"].shape == (64, 64)
        void = float((out["mask"] == 255).mean())
        assert 0.7 <= void <= 0.85, void


class _Counting:
    """A two-image dataset that counts its decodes."""

    def __init__(self, classes, hw=(48, 80)):
        self.classes, self.hw, self.loads = classes, hw, 0

    def __len__(self):
        return 2

    def __getitem__(self, i):
        self.loads += 1
        image = np.full((*self.hw, 3), 10 * (i + 1), np.uint8)
        mask = np.zeros(self.hw, np.uint16)
        mask[: self.hw[0] // 2] = 1
        return image, mask


def test_trainset_cache_resizes_once_and_hands_out_copies():
    from edgeseg.data import task_classes

    ds = _Counting(task_classes("defects"))
    ts = tdata.TrainSet(ds, lambda image, mask: {"image": image, "mask": mask}, 32, cache=True)
    a, ma = ts[(0, 1)]
    assert a.shape == (32, 32, 3) and ma.shape == (32, 32)
    assert set(np.unique(ma.numpy())) == {0, 1}
    a[:] = 0  # a batch written in place must not reach the cache
    b, _ = ts[(0, 2)]
    assert int(b[0, 0, 0]) == 10 and ds.loads == 1
    ts[(1, 3)]
    assert ds.loads == 2
    nocache = tdata.TrainSet(ds, lambda image, mask: {"image": image, "mask": mask}, 32)
    nocache[(0, 1)]
    nocache[(0, 1)]
    assert ds.loads == 4


def test_unet_channel_cap_and_single_full_res_convs():
    full = create_model("unet", 4, width=0.25)
    lite = create_model("unet", 4, width=0.25, max_channels=96, full_res_convs=1)
    assert max(m.out_channels for m in lite.modules() if isinstance(m, torch.nn.Conv2d)) == 96
    assert len(lite.stem) == 1 and len(full.stem) == 2
    n = sum(p.numel() for p in lite.parameters())
    assert n < sum(p.numel() for p in full.parameters())
    with torch.no_grad():
        assert lite.eval()(torch.randn(1, 3, 64, 96)).shape == (1, 4, 64, 96)
    with pytest.raises(TrainingError, match="full_res_convs 3"):
        create_model("unet", 4, full_res_convs=3)


@pytest.mark.parametrize("bf16", [False, True])
def test_cpu_defaults(bf16, monkeypatch):
    monkeypatch.setattr(defaults, "cpu_bf16_fast", lambda: bf16)
    cfg = TrainConfig(data="x", out="y")
    picked = defaults.auto_settings(cfg, 160, torch.device("cpu"), Dist())
    assert picked["amp"] is bf16
    if bf16:  # bfloat16 on AMX: the half-width UNet costs what the quarter width does in fp32
        assert picked["model_kwargs"] == {"width": 0.5, "max_channels": 128}
    else:
        assert picked["model_kwargs"] == {"width": 0.25, "max_channels": 96, "full_res_convs": 1}
    assert picked["crop"] == 128 and picked["batch"] == 8 and picked["lr"] == pytest.approx(1e-2)
    # no --epochs, no --time-limit: the default budget on the clock, the plateau stop on
    assert picked["time_limit"] == defaults.DEFAULT_MINUTES
    assert picked["epochs"] >= 1000 and picked["patience"] == 0 and picked["plateau"] == 0.3
    # a time limit without --epochs: the clock ends the run, epoch patience is off
    cfg = TrainConfig(data="x", out="y", time_limit=5)
    picked = defaults.auto_settings(cfg, 160, torch.device("cpu"), Dist())
    assert picked["epochs"] >= 1000 and picked["patience"] == 0 and "time_limit" not in picked
    # --epochs without a time limit: epoch patience, no clock
    cfg = TrainConfig(data="x", out="y", epochs=40)
    picked = defaults.auto_settings(cfg, 160, torch.device("cpu"), Dist())
    assert picked["patience"] == 15 and picked["plateau"] == 0 and "time_limit" not in picked
    # ... but flags given are kept
    cfg = TrainConfig(data="x", out="y", time_limit=5, epochs=7, patience=3, amp=False)
    picked = defaults.auto_settings(cfg, 160, torch.device("cpu"), Dist())
    assert not {"epochs", "patience", "amp"} & set(picked)
    assert picked["model_kwargs"]["width"] == 0.25
    # a width given by the user is left alone
    cfg = TrainConfig(data="x", out="y", model_kwargs={"width": 0.5})
    picked = defaults.auto_settings(cfg, 160, torch.device("cpu"), Dist())
    assert "model_kwargs" not in picked
    with pytest.raises(TrainingError, match="crop_focus"):
        TrainConfig(data="x", out="y", crop_focus=1.5).validate()
    assert picked["zoom"] == [1.0, 1.0]  # scale jitter off (thin defects blur away)
    with pytest.raises(TrainingError, match=r"--zoom \[2, 1\]: use LO,HI"):
        TrainConfig(data="x", out="y", zoom=[2, 1]).validate()
    with pytest.raises(TrainingError, match="plateau 1.5"):
        TrainConfig(data="x", out="y", plateau=1.5).validate()
    with pytest.raises(TrainingError, match="clock 'gpu'"):
        TrainConfig(data="x", out="y", clock="gpu").validate()


def test_cli_zoom_and_clock_flags():
    from edgeseg.train import cli

    args = cli.build_parser().parse_args(
        ["--data", "d", "--out", "o", "--zoom", "0.5,1", "--clock", "cpu", "--plateau", "0.2"]
    )
    cfg = cli.config_from_args(args)
    assert cfg.zoom == [0.5, 1.0] and cfg.clock == "cpu" and cfg.plateau == 0.2
    args = cli.build_parser().parse_args(["--data", "d", "--out", "o", "--zoom", "half"])
    with pytest.raises(TrainingError, match="--zoom 'half': use LO,HI"):
        cli.config_from_args(args)


def test_lr_follows_the_larger_of_step_and_time_fraction():
    lr = trainer_mod._lr_at
    assert lr(0, 100, 10, 1.0) == pytest.approx(0.1)  # warm-up
    assert lr(10, 100, 10, 1.0) == pytest.approx(1.0)
    assert lr(100, 100, 10, 1.0) == pytest.approx(0.01)
    # a time budget half spent at step 10 of 100: the cosine is half way
    assert lr(10, 100, 10, 1.0, frac=0.5) == pytest.approx(0.505)
    assert lr(10, 100, 10, 1.0, frac=2.0) == pytest.approx(0.01)
    assert lr(55, 100, 10, 1.0, frac=0.1) == pytest.approx(0.505)


def test_data_hash_follows_pixels_and_labels_not_encoding(tmp_path):
    import shutil

    import cv2
    from PIL import Image

    from edgeseg import data

    src = data.synth(tmp_path / "a", "defects", n=6, size=64, seed=3)
    copy = tmp_path / "b"
    shutil.copytree(src, copy)
    first = sorted((copy / "images").iterdir())[0]
    # the same pixels written with another PNG compression level: a different file, same data
    img = cv2.imread(str(first), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(first), img, [cv2.IMWRITE_PNG_COMPRESSION, 0])
    ha = tdata.scan(data.open_dataset(src), "all").data_hash
    hb = tdata.scan(data.open_dataset(copy), "all").data_hash
    assert ha.startswith("blake2b:") and len(ha) == len("blake2b:") + 32
    assert ha == hb
    # one label pixel changed: a different hash
    mask_path = sorted((copy / "masks").iterdir())[0]
    mask = Image.open(mask_path)
    m = np.array(mask)
    m[0, 0] = 1 if m[0, 0] != 1 else 0
    edited = Image.fromarray(m)
    if mask.mode == "P":
        edited.putpalette(mask.getpalette())
    edited.save(mask_path)
    assert tdata.scan(data.open_dataset(copy), "all").data_hash != ha
