"""Fine-tuning: ``--init RUN|CKPT|starter:NAME`` (classes matched by name, new classes get fresh
head rows, other architectures refused), the encoder learning-rate factor, frozen BatchNorm
statistics, and the small-val-split warning."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("albumentations")
pytest.importorskip("cv2")

from conftest import TINY_SIZE as SIZE  # noqa: E402
from conftest import TINY_TRAIN, write_splits  # noqa: E402

from edgeseg import TrainingError, data  # noqa: E402
from edgeseg.cli import main as cli_main  # noqa: E402
from edgeseg.train import TrainConfig, create_model, finetune, train  # noqa: E402

OLD = ["background", "crack", "scratch"]
NEW = ["background", "scratch", "stain", "crack"]


def _classes(names):
    return [{"id": i, "name": n, "color": [i, i, i]} for i, n in enumerate(names)]


@pytest.mark.parametrize(
    "kw",
    [
        {"width": 0.25, "depth": 3},
        # DepthToSpace head: 4 logits per class, and a second class-sized conv (fine=True)
        {"width": 0.25, "depth": 3, "full_res_convs": 0, "stem": "pool", "fine": True},
    ],
)
def test_init_matches_classes_by_name(kw):
    torch.manual_seed(0)
    old = create_model("unet", len(OLD), **kw)
    with torch.no_grad():
        for p in old.parameters():
            p.add_(torch.randn_like(p))  # distinct from any fresh init
    state = old.state_dict()
    meta = {"model": "unet", "model_kwargs": kw, "classes": _classes(OLD)}
    new = create_model("unet", len(NEW), **kw)
    fresh = copy.deepcopy(new.state_dict())
    # matching by name in any order (a starter's transfer; a run's own classes must keep
    # their order, see test_label_loop.py)
    rep = finetune.load_init(
        new, "unet", kw, _classes(NEW), state, meta, "old.pt", keep_classes=False
    )
    assert rep["matched"] == ["background", "scratch", "crack"]
    assert rep["new"] == ["stain"] and rep["dropped"] == []
    assert rep["class_tensors"] == sorted(
        ["head.weight", "head.bias"] + (["fine.weight", "fine.bias"] if kw.get("fine") else [])
    )
    got = new.state_dict()
    for k, v in got.items():
        if k in rep["class_tensors"]:
            per = v.shape[0] // len(NEW)  # 4 for the DepthToSpace head, 1 for fine
            for i, name in enumerate(NEW):
                rows = v[i * per : (i + 1) * per]
                if name in OLD:
                    j = OLD.index(name)
                    assert torch.equal(rows, state[k][j * per : (j + 1) * per]), (k, name)
                else:  # the new class keeps its fresh initialisation
                    assert torch.equal(rows, fresh[k][i * per : (i + 1) * per]), (k, name)
        else:
            assert torch.equal(v, state[k]), k
    assert "new (fresh head rows): stain" in finetune.init_note(rep)


def test_init_of_another_architecture_is_refused():
    kw = {"width": 0.25, "depth": 3}
    wide = create_model("unet", 3, width=0.5, depth=3)
    meta = {"model": "unet", "model_kwargs": {"width": 0.5, "depth": 3}, "classes": _classes(OLD)}
    new = create_model("unet", 3, **kw)
    before = copy.deepcopy(new.state_dict())
    with pytest.raises(TrainingError, match=r"tensor 'stem\.0\.0\.weight' has shape \(16, 3"):
        finetune.load_init(new, "unet", kw, _classes(OLD), wide.state_dict(), meta, "w.pt")
    assert all(torch.equal(v, before[k]) for k, v in new.state_dict().items())  # nothing loaded
    other = create_model("mbv3_lraspp", 3)
    with pytest.raises(TrainingError, match=r"no tensor 'stem\.0\.0\.weight'.*another arch"):
        finetune.load_init(new, "unet", kw, _classes(OLD), other.state_dict(), meta, "m.pt")
    cfg = TrainConfig(model="mbv3_lraspp")
    with pytest.raises(TrainingError, match=r"is a 'unet' model, not --model 'mbv3_lraspp'"):
        finetune.adopt_architecture(cfg, meta, "run/", model_given=True)
    cfg = TrainConfig(model_kwargs={"width": 0.25})
    with pytest.raises(TrainingError, match=r"trained with width=0.5.*asks for width=0.25"):
        finetune.adopt_architecture(cfg, meta, "run/", model_given=False)


@pytest.fixture(scope="module")
def defects(tmp_path_factory):
    """A tiny dataset of the starter's classes plus one it does not know (relabelled stain)."""
    ds = data.synth(tmp_path_factory.mktemp("ft") / "ds", "defects", n=10, size=SIZE)
    write_splits(ds, 8, 2)
    return ds


@pytest.mark.filterwarnings("ignore:.*the val split has only:UserWarning")
def test_train_init_from_starter_and_from_a_run(defects, tmp_path, capsys):
    run = tmp_path / "a"
    argv = ["train", "--data", str(defects), "--size", str(SIZE), "--crop", str(SIZE)]
    argv += ["--epochs", "1", "--max-steps", "2", "--batch", "2", "--workers", "0"]
    argv += ["--no-progress", "--no-calibrate"]
    with pytest.warns(UserWarning, match=r"val split has only 2 image\(s\) \(train 8\)"):
        assert cli_main([*argv, "--out", str(run), "--init", "starter:defects"]) == 0
    err = capsys.readouterr().err
    assert "--init starter:defects: loaded" in err
    assert "classes matched by name: background, scratch, stain, crack" in err
    ck = torch.load(run / "best.pt", weights_only=True)
    from edgeseg.starters import starter_file

    starter = torch.load(starter_file("defects", "weights"), weights_only=True)
    assert ck["meta"]["model_kwargs"] == starter["meta"]["model_kwargs"]  # architecture adopted
    assert ck["meta"]["init"]["matched"] == ["background", "scratch", "stain", "crack"]
    # a run directory as --init, with a lower encoder rate and frozen encoder statistics
    run2 = tmp_path / "b"
    extra = ["--init", str(run), "--encoder-lr-mult", "0", "--freeze-bn", "encoder"]
    with pytest.warns(UserWarning):
        assert cli_main([*argv, "--out", str(run2), *extra]) == 0
    assert f"--init {run}: loaded" in capsys.readouterr().err
    ck2 = torch.load(run2 / "last.pt", weights_only=True)["state_dict"]
    src = torch.load(run / "best.pt", weights_only=True)["state_dict"]
    enc = [k for k in ck2 if k.startswith(("stem.", "down."))]
    dec = [k for k in ck2 if k.startswith("up.") and k.endswith("weight")]
    assert enc and all(torch.equal(ck2[k], src[k]) for k in enc)  # frozen encoder, stats kept
    assert any(not torch.equal(ck2[k], src[k]) for k in dec)  # the decoder trained
    # --init of another model than the one asked for
    bad = [*argv, "--out", str(tmp_path / "c"), "--init", str(run), "--model", "mbv3_lraspp"]
    assert cli_main(bad) == 2
    assert "is a 'unet' model, not --model 'mbv3_lraspp'" in capsys.readouterr().err
    assert cli_main([*argv, "--out", str(tmp_path / "d"), "--init", "starter:nope"]) == 2
    assert "starter:nope: no such starter model; installed starters: " in capsys.readouterr().err


def test_param_groups_and_freeze_bn():
    model = create_model("unet", 3, width=0.25, depth=3)
    groups = finetune.param_groups(model, "unet", 1e-4, encoder_lr_mult=0.1)
    n = sum(len(g["params"]) for g in groups)
    assert n == len(list(model.parameters()))
    plain = finetune.param_groups(model, "unet", 1e-4)  # weights first, then biases and norms
    assert [g["weight_decay"] for g in plain] == [1e-4, 0.0]
    assert [g["lr_mult"] for g in plain] == [1.0, 1.0]
    enc = {id(p) for nm, p in model.named_parameters() if nm.startswith(("stem.", "down."))}
    for g in groups:
        is_enc = {id(p) in enc for p in g["params"]}
        assert len(is_enc) == 1
        assert g["lr_mult"] == (0.1 if is_enc.pop() else 1.0)
        assert g["weight_decay"] == (1e-4 if g["params"][0].ndim > 1 else 0.0)
    model.train()
    frozen = finetune.freeze_bn_stats(model, "unet", "encoder")
    bns = [(nm, m) for nm, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert frozen == sum(nm.startswith(("stem.", "down.")) for nm, _ in bns) > 0
    for nm, m in bns:
        assert m.training != nm.startswith(("stem.", "down.")), nm


def test_small_val_split_warns_with_the_numbers(tmp_path):
    ds = data.synth(tmp_path / "ds", "objects", n=5, size=SIZE)
    write_splits(ds, 4, 1)
    cfg = TrainConfig(data=str(ds), out=str(tmp_path / "r"), **copy.deepcopy(TINY_TRAIN))
    cfg.epochs, cfg.max_steps, cfg.calibrate = 1, 1, False
    with pytest.warns(UserWarning, match=r"only 1 image\(s\) \(train 4\).*fewer than 8"):
        train(cfg, log=lambda *a: None)
