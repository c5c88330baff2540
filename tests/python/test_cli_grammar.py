"""One grammar for every command: the model first, -o/--output FILE vs --out DIR, --json [FILE],
--no-progress (automatic off a terminal), `edgeseg CMD: error: ...`, exit codes, an example at
the end of every --help, older spellings accepted with a warning. And the Python side:
Segmenter.predict on paths, PIL images and arrays alike, seg(...) and short reprs."""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeseg import _cli
from edgeseg.cli import DELEGATED
from edgeseg.cli import main as cli_main

cv2 = pytest.importorskip("cv2")

COMMANDS = ["info", *DELEGATED]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_help_ends_with_an_example_and_the_exit_codes(command, capsys):
    if command == "train":
        pytest.importorskip("torch")
    with pytest.raises(SystemExit) as e:
        cli_main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "examples:\n  edgeseg " in out or "examples:\n  torchrun " in out
    assert out.rstrip().endswith(_cli.EXIT_CODES_HELP)
    assert "--json" in out or command in ("demo", "data")
    if command in ("eval", "export", "quantize", "build", "predict", "run"):
        import importlib

        parser = importlib.import_module(DELEGATED[command][0]).build_parser()
        positionals = [a.dest for a in parser._actions if not a.option_strings]
        assert positionals[0] == "model"  # the model is the first positional argument


def test_json_bare_is_stdout_and_json_file_is_a_file(tmp_path, capsys):
    assert cli_main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert "version" in info and "simd" in info
    out = tmp_path / "info.json"
    assert cli_main(["info", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["version"] == info["version"]
    assert "edgeseg " in capsys.readouterr().out  # the human summary still printed


def test_data_check_json_dash_prints_only_json(tmp_path, capsys):
    pytest.importorskip("skimage")
    from edgeseg import data

    ds = data.synth(tmp_path / "d", "objects", n=4, size=32, workers=1, progress=False)
    rc = cli_main(["data", "check", str(ds), "--json", "-"])
    assert rc in (0, 1)
    report = json.loads(capsys.readouterr().out)  # nothing but JSON on stdout
    assert report["num_images"] == 4


def test_no_progress_is_automatic_off_a_terminal(monkeypatch):
    ns = argparse.Namespace(no_progress=False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal
    assert _cli.show_progress(ns) is False

    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", Tty())
    assert _cli.show_progress(ns) is True
    assert _cli.show_progress(argparse.Namespace(no_progress=True)) is False


def test_train_model_is_the_older_spelling_of_arch(capsys):
    pytest.importorskip("torch")
    from edgeseg.train.cli import build_parser

    args = build_parser().parse_args(["--data", "d", "--out", "r", "--arch", "mbv3_lraspp"])
    assert args.model == "mbv3_lraspp" and capsys.readouterr().err == ""
    args = build_parser().parse_args(["--data", "d", "--out", "r", "--model", "unet"])
    assert args.model == "unet"
    assert "edgeseg train: warning: --model is deprecated; use --arch" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--out", "r", "--arch", "nope"])


def test_predict_out_dir_json_and_the_older_o(tiny_onnx, tmp_path, capsys):
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), np.full((40, 56, 3), 90, np.uint8))
    out = tmp_path / "p"
    rc = cli_main(["predict", str(tiny_onnx), str(img), "--out", str(out), "--json"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == 1 and (out / "a_mask.png").is_file()
    rc = cli_main(["predict", str(tiny_onnx), str(img), "-o", str(tmp_path / "q")])
    assert rc == 0 and (tmp_path / "q" / "a_mask.png").is_file()
    assert "edgeseg predict: warning: -o is deprecated; use --out DIR" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli_main(["predict", str(tiny_onnx), str(img)])
    assert e.value.code == 2 and "--out DIR" in capsys.readouterr().err


def test_errors_are_one_line_with_the_command_and_exit_2(tmp_path, capsys):
    rc = cli_main(["predict", str(tmp_path / "missing.onnx"), str(tmp_path), "--out", "x"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("edgeseg predict: error: ") and err.count("\n") == 1
    rc = cli_main(["eval", str(tmp_path / "missing.onnx"), "--data", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("edgeseg eval: error: ")


def test_predict_takes_paths_pil_images_and_arrays_alike(tiny_onnx, tmp_path):
    from PIL import Image

    from edgeseg import InvalidArgumentError, Segmenter

    rng = np.random.default_rng(3)
    bgr = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    path = tmp_path / "x.png"
    cv2.imwrite(str(path), bgr)
    seg = Segmenter(tiny_onnx)
    ref = seg.predict(bgr)
    pil = Image.open(path)
    for res in (
        seg.predict(path),
        seg.predict(str(path)),
        seg.predict(pil),
        seg(bgr),
        seg.predict(np.ascontiguousarray(bgr[:, :, ::-1]), rgb=True),
        seg.predict(pil, rgb=True),
    ):
        np.testing.assert_array_equal(res.class_map, ref.class_map)
        np.testing.assert_allclose(res.confidence, ref.confidence, atol=1e-6)
    batch = seg.predict_batch([path, bgr, pil])
    for res in batch:
        np.testing.assert_array_equal(res.class_map, ref.class_map)
    with pytest.raises(InvalidArgumentError, match="no such image file"):
        seg.predict(tmp_path / "nothere.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(InvalidArgumentError, match="bad.png: not a readable image"):
        seg.predict(tmp_path / "bad.png")
    with pytest.raises(InvalidArgumentError, match="an image path or a PIL image"):
        seg.predict(42)


def test_reprs_are_short(tiny_onnx):
    from edgeseg import Segmenter
    from edgeseg.camera import CameraLoop

    seg = Segmenter(tiny_onnx)
    r = repr(seg)
    assert r.startswith(f"Segmenter({Path(tiny_onnx).name!r}") and "classes" in r and len(r) < 100
    res = seg.predict(np.zeros((30, 40, 3), np.uint8))
    rr = repr(res)
    assert rr.startswith("SegResult(30×40, ") and "array" not in rr and len(rr) < 200
    loop = CameraLoop("synthetic://?size=40x30&frames=1", seg, sinks=["jsonl:-"])
    assert repr(loop) == "CameraLoop('synthetic://?size=40x30&frames=1', 1 sinks, stopped)"
