"""Ignore labels: 255 and named void classes through reading, the one class-id lookup, QA,
the loss and the metrics; the one error for labels outside the class map."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from edgeseg import DatasetError, TrainingError, UnknownLabelError
from edgeseg.data import ClassMap, check, convert, open_dataset
from edgeseg.data.cli import main as data_main
from edgeseg.metrics import ConfusionMatrix, summarize

YAML = (
    "- {id: 0, name: background, color: [0, 0, 0]}\n"
    "- {id: 1, name: unlabeled, color: [9, 9, 9], ignore: true}\n"
    "- {id: 2, name: scratch, color: [255, 0, 0]}\n"
)


def make(root, rng, n=4, yaml=YAML, h=10, w=12):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    masks = {}
    for k in range(n):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
            root / "images" / f"s{k}.png"
        )
        m = np.zeros((h, w), np.uint8)
        m[:3] = 1  # the named void class
        m[5:8, 2:9] = 2
        m[h - 1, 0] = 255
        Image.fromarray(m).save(root / "masks" / f"s{k}.png")
        masks[f"s{k}"] = m
    (root / "classes.yaml").write_text(yaml)
    return masks


def test_named_void_class_reads_as_void_and_is_no_class(tmp_path, rng):
    masks = make(tmp_path / "ds", rng)
    ds = open_dataset(tmp_path / "ds")
    assert ds.classes.names == ["background", "scratch"]
    assert [c.name for c in ds.classes.ignored] == ["unlabeled"]
    for i, s in enumerate(ds.samples):
        want = masks[s.key].copy()
        want[want == 1] = 255
        assert np.array_equal(ds[i][1], want)
    report = check(ds, workers=1, progress=False)
    assert report["errors"] == []  # reported, not an error
    assert report["void_pixels"] == 4 * (3 * 12 + 1)
    assert report["ignored_classes"] == [{"id": 1, "name": "unlabeled", "color": [9, 9, 9]}]
    # the map survives writing: classes.yaml keeps the ignored entry
    out = convert(ds, tmp_path / "copy")
    again = open_dataset(out)
    assert again.classes == ds.classes
    assert np.array_equal(again[0][1], ds[0][1])
    cvat = open_dataset(convert(ds, tmp_path / "cvat", to="cvat"))
    assert cvat.classes.ignored_ids == [1] and np.array_equal(cvat[0][1], ds[0][1])


def test_ignore_by_name_and_bad_names(tmp_path, rng):
    yaml = YAML.replace(", ignore: true", "")
    make(tmp_path / "ds", rng, yaml=yaml)
    plain = open_dataset(tmp_path / "ds")
    assert plain.classes.names == ["background", "unlabeled", "scratch"]
    ds = open_dataset(tmp_path / "ds", ignore=["unlabeled"])
    assert ds.classes.names == ["background", "scratch"]
    assert (ds[0][1][:3] == 255).all()
    with pytest.raises(DatasetError, match=r"cannot ignore 'nope': no such class; classes are"):
        open_dataset(tmp_path / "ds", ignore=["nope"])
    with pytest.raises(DatasetError, match="leaves no class"):
        ClassMap.from_names(["a"]).with_ignored(["a"])
    with pytest.raises(DatasetError, match="ignore 'yes' is not true or false"):
        ClassMap.from_list([{"id": 0, "name": "a", "ignore": "yes"}])


def test_cli_ignore_flag(tmp_path, rng, capsys):
    make(tmp_path / "ds", rng, yaml=YAML.replace(", ignore: true", ""))
    assert data_main(["info", str(tmp_path / "ds"), "--ignore", "unlabeled", "--json", "-"]) == 0
    out = capsys.readouterr().out
    assert '"ignored_classes"' in out and '"unlabeled"' in out
    rc = data_main(["check", str(tmp_path / "ds"), "--ignore", "unlabeled", "--no-progress"])
    assert rc == 0 and "ignored classes (read as void, not errors): 1=unlabeled" in (
        capsys.readouterr().out
    )


def test_one_lookup_and_one_error_for_unknown_labels(tmp_path, rng):
    cm = ClassMap.from_list(
        [{"id": 0, "name": "bg"}, {"id": 5, "name": "a"}, {"id": 300, "name": "b"}]
    )
    lut = cm.index_lut()
    assert lut[[0, 5, 300, 255, 7]].tolist() == [0, 1, 2, 255, 255]
    by_model = cm.index_lut(["b", "bg", "a", "extra"])
    assert by_model[[0, 5, 300]].tolist() == [1, 2, 0]
    with pytest.raises(DatasetError, match=r"classes \['a'\] are unknown to the model"):
        cm.index_lut(["bg", "b"])
    with pytest.raises(UnknownLabelError, match=r"m\.png: labels outside the class map: id 7"):
        cm.check_known({"id 7": 12}, "m.png")
    assert issubclass(UnknownLabelError, DatasetError)
    assert issubclass(UnknownLabelError, TrainingError)
    cm.check_known({}, "m.png")  # nothing unknown: no error


def test_metrics_skip_void_whatever_the_prediction(rng):
    target = rng.integers(0, 3, (2, 16, 16))
    target[:, :4] = 255
    pred = rng.integers(0, 3, (2, 16, 16))
    a = ConfusionMatrix(3).update(pred, target)
    pred2 = pred.copy()
    pred2[:, :4] = rng.integers(0, 3, (2, 4, 16))
    b = ConfusionMatrix(3).update(pred2, target)
    assert np.array_equal(a.matrix, b.matrix) and a.matrix.sum() == 2 * 12 * 16
    assert a.ignored == 2 * 4 * 16
    keep = target != 255
    ref = np.zeros((3, 3), np.int64)
    np.add.at(ref, (target[keep], pred[keep]), 1)
    assert np.array_equal(a.matrix, ref)
    assert summarize(a, ["x", "y", "z"])["ignored_pixels"] == 128
    assert a.merge(b).ignored == 256


def test_loss_gets_nothing_from_void_pixels(rng):
    torch = pytest.importorskip("torch")
    from edgeseg.train.losses import create_loss

    target = torch.from_numpy(rng.integers(0, 3, (2, 8, 8)))
    target[:, :3] = 255
    logits = torch.from_numpy(rng.normal(size=(2, 3, 8, 8)).astype(np.float32))
    other = logits.clone()
    other[:, :, :3] = torch.from_numpy(rng.normal(size=(2, 3, 3, 8)).astype(np.float32)) * 9
    for name in ("ce", "dice", "ce+dice"):
        loss = create_loss(name)
        assert torch.allclose(loss(logits, target), loss(other, target)), name
        changed = logits.clone()
        changed[:, :, 5:] += 3 * torch.arange(3).view(1, 3, 1, 1)
        assert not torch.allclose(loss(logits, target), loss(changed, target)), name
    ce = torch.nn.functional.cross_entropy(logits, target, ignore_index=255)
    assert torch.allclose(create_loss("ce")(logits, target), ce)


def test_training_and_evaluation_leave_ignored_classes_out(tmp_path, rng):
    pytest.importorskip("torch")
    pytest.importorskip("albumentations")
    import copy

    from conftest import TINY_TRAIN

    from edgeseg.train import TrainConfig, evaluate, load_checkpoint, train

    make(tmp_path / "ds", rng, n=8, h=64, w=64)
    cfg = {**copy.deepcopy(TINY_TRAIN), "epochs": 1, "max_steps": 2, "calibrate": False}
    with pytest.warns(UserWarning, match="val split has only"):
        train(TrainConfig(**cfg, data=str(tmp_path / "ds"), out=str(tmp_path / "run")))
    _, meta = load_checkpoint(tmp_path / "run" / "best.pt")
    assert [c["name"] for c in meta["classes"]] == ["background", "scratch"]
    assert meta["num_classes"] == 2 and meta["ignore_index"] == 255
    report = evaluate(tmp_path / "run", tmp_path / "ds", split=None, device="cpu")
    assert set(report["per_class_iou"]) == {"background", "scratch"}
    assert report["ignored_pixels"] == 8 * (3 * 64 + 1)
