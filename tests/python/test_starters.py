"""Starter models shipped with the package: ``starter:NAME`` opens in the runtime (predict,
Segmenter), ``edgeseg info`` describes it from its card, the card's hashes match the files,
and unknown names are refused with the list of installed starters."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("onnxruntime")

from edgeseg import ModelError, Segmenter  # noqa: E402
from edgeseg.cli import main as cli_main  # noqa: E402
from edgeseg.starters import list_starters, starter_card, starter_file  # noqa: E402

#: the package data ships at most this much (model.onnx + weights.pt + card.json, all three
#: starters: two quarter-width models of 2.4 MB and one eighth-width of 0.6 MB)
MAX_TOTAL_BYTES = 6_000_000


def test_starters_are_installed_with_cards_that_match_their_files():
    names = list_starters()
    assert {"defects", "objects", "zones"} <= set(names)
    total = 0
    for name in names:
        card = starter_card(name, verify=True)
        assert card["name"] == name
        assert card["data"]["data_hash"].startswith("blake2b:")
        assert card["data"]["generator"].startswith("edgeseg.data.")
        assert 0.0 < card["metrics"]["test_miou"] <= 1.0
        for kind in ("onnx", "weights"):
            data = starter_file(name, kind).read_bytes()
            assert hashlib.sha256(data).hexdigest() == card["sha256"][kind]
            assert len(data) == card["bytes"][kind]
            total += len(data)
    assert total < MAX_TOTAL_BYTES


def test_predict_and_info_on_a_starter(tmp_path, capsys):
    card = starter_card("defects")
    img = tmp_path / "part.png"
    h, w = card["input_size"]
    cv2.imwrite(str(img), np.random.default_rng(0).integers(0, 256, (h, w, 3), np.uint8))
    assert cli_main(["predict", "starter:defects", str(img), "--out", str(tmp_path / "o")]) == 0
    rec = json.loads((tmp_path / "o" / "part.json").read_text())
    names = [c["name"] for c in card["classes"]]
    assert list(rec["counts"]) == names and sum(rec["counts"].values()) == h * w
    assert (tmp_path / "o" / "part_mask.png").is_file()
    capsys.readouterr()
    assert cli_main(["info", "starter:defects", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["classes"] == names and info["starter"]["sha256"] == card["sha256"]
    assert info["path"] == str(starter_file("defects", "onnx"))
    assert cli_main(["info", "starter:defects"]) == 0
    text = capsys.readouterr().out
    assert "edgeseg train --init starter:defects" in text and card["data"]["data_hash"] in text
    for name in list_starters():  # every card's data section prints (they differ by generator)
        assert cli_main(["info", f"starter:{name}"]) == 0
        assert starter_card(name)["data"]["data_hash"] in capsys.readouterr().out
    seg = Segmenter("starter:objects", threads=1)
    assert seg.class_names == [c["name"] for c in starter_card("objects")["classes"]]


def test_eval_of_a_starter_on_its_own_generator(tmp_path):
    pytest.importorskip("torch")
    from edgeseg import data
    from edgeseg.train import evaluate

    card = starter_card("objects")
    d = card["data"]
    # images of the generator the starter was trained on, another seed
    ds = data.synth(tmp_path / "ds", d["task"], n=4, size=d["size"], seed=d["seed"] + 1000)
    report = evaluate("starter:objects", ds, split=None)
    assert report["num_images"] == 4
    assert report == evaluate(starter_file("objects", "onnx"), ds, split=None)
    # it finds products (a background-only model scores 0 here)
    assert report["per_class_iou"]["product"] > 0.05, report["per_class_iou"]


def test_unknown_starter_is_refused(tmp_path, capsys):
    with pytest.raises(ModelError, match=r"starter:nope: no such starter model; installed "):
        Segmenter("starter:nope")
    img = tmp_path / "x.png"
    cv2.imwrite(str(img), np.zeros((32, 32, 3), np.uint8))
    assert cli_main(["predict", "starter:nope", str(img), "--out", str(tmp_path / "o")]) == 2
    assert "starter:defects" in capsys.readouterr().err  # the installed ones are listed
    assert cli_main(["info", "starter:nope"]) == 2


def test_zone_starter_tells_materials_apart(tmp_path, capsys):
    """starter:zones on photographed patterns it never saw in training (the suite's val
    patterns, another seed): predict works from the CLI, and it beats any one-class answer."""
    pytest.importorskip("torch")
    from edgeseg.data import suite
    from edgeseg.train import evaluate

    for need, pkg in (
        (suite.PATTERN_DIR, "gimp-data"),
        (suite.PATTERN_DIR / "leaves3.pat", "gimp-data-extras"),
    ):
        if not need.exists():
            pytest.skip(f"{pkg} is not installed ({need} missing)")
    card = starter_card("zones")
    d = card["data"]
    ds = suite.build("zones", tmp_path, size=d["size"], n_train=1, n_val=6, seed=d["seed"] + 7)
    img = next(iter(sorted((ds / "images").glob("val_*.png"))))
    assert cli_main(["predict", "starter:zones", str(img), "--out", str(tmp_path / "o")]) == 0
    rec = json.loads((tmp_path / "o" / f"{img.stem}.json").read_text())
    assert list(rec["counts"]) == ["wood", "stone", "plant"]
    report = evaluate("starter:zones", ds, split="val")
    # it tells wood from stone (one class everywhere scores 0 on the other)
    iou = report["per_class_iou"]
    assert iou["wood"] > 0.2 and iou["stone"] > 0.2, iou
