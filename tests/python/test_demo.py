"""A shortened ``edgeseg demo`` (tiny sizes, seconds of training) writes every artifact, and
each one is sane: the overlay video has one frame per processed frame, every JSON-lines
record parses and agrees with the NG archive, and every link of report.html resolves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("matplotlib")

from edgeseg import demo  # noqa: E402
from edgeseg.report import load_jsonl, report_links  # noqa: E402


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo_out")
    summary = demo.run_demo(out, demo.DemoConfig.quick())
    return out, summary


def test_artifacts_exist_and_summary(demo_out):
    out, summary = demo_out
    for name in (
        "overlay.mp4",
        "results.jsonl",
        "report.html",
        "rules.yaml",
        "qa.json",
        "models/model.onnx",
        "run/best.pt",
        "inspection.mp4",
        "summary.json",
    ):
        assert (out / name).is_file(), name
    assert json.loads((out / "summary.json").read_text())["loop"] == summary["loop"]
    assert summary["loop"]["frames"] == demo.DemoConfig.quick().video_frames
    assert 0.0 <= summary["video_miou"] <= 1.0


def test_overlay_video_has_every_frame(demo_out):
    out, summary = demo_out
    cap = cv2.VideoCapture(str(out / "overlay.mp4"))
    n = 0
    shape = None
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        shape = frame.shape
        n += 1
    cap.release()
    size = demo.DemoConfig.quick().image_size
    assert n == summary["loop"]["frames"]
    assert shape == (size, size, 3)


def test_records_parse_and_match_the_archive(demo_out):
    out, summary = demo_out
    records = load_jsonl(out / "results.jsonl")
    assert [r["frame"] for r in records] == list(range(len(records)))
    for r in records:
        assert set(r) >= {
            "frame",
            "t_capture",
            "latency_ms",
            "counts",
            "area_fraction",
            "verdict",
            "reasons",
        }
        assert r["verdict"] in ("OK", "NG")
        assert (r["verdict"] == "NG") == bool(r["reasons"])
        assert abs(sum(r["area_fraction"].values()) - 1.0) < 1e-3
    ng = [r for r in records if r["verdict"] == "NG"]
    assert summary["loop"]["ng"] == len(ng)
    archived = sorted((out / "archive").rglob("*.json")) if (out / "archive").exists() else []
    archived_frames = sorted(json.loads(p.read_text())["frame"] for p in archived)
    assert archived_frames == [r["frame"] for r in ng]


def test_report_links_resolve_and_sections(demo_out):
    out, _ = demo_out
    page = (out / "report.html").read_text()
    links = report_links(out / "report.html")
    assert links and all((out / link).exists() for link in links)
    for section in (
        "Dataset QA",
        "Training",
        "FP32 vs quantized",
        "Camera loop",
        "Verdict log",
        "Artifacts",
    ):
        assert section in page
    assert "training_curves.png" in page
    assert "TensorRT engine skipped" in page


def test_replay_of_the_line_gives_the_demos_verdicts(demo_out, tmp_path, capsys):
    """tools/demo_verdicts.py runs the demo's model on its video again; on the same machine
    it must reproduce the demo's verdict log and agreement, and it refuses a folder that is
    not a finished demo."""
    import importlib.util

    out, summary = demo_out
    spec = importlib.util.spec_from_file_location(
        "demo_verdicts", Path(__file__).resolve().parents[2] / "tools" / "demo_verdicts.py"
    )
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    used = "model.int8.onnx" if summary["int8"] and summary["int8"]["passed"] else "model.onnx"
    replay = tmp_path / "replay"
    assert tool.main([str(out), "--model", str(out / "models" / used), "--out", str(replay)]) == 0
    got = json.loads((replay / "summary.json").read_text())
    assert got["frames"] == summary["loop"]["frames"]
    assert got["ng"] == summary["loop"]["ng"]
    assert got["verdict_agreement"] == summary["verdict_agreement"]
    verdicts = [r["verdict"] for r in load_jsonl(out / "results.jsonl")]
    assert [r["verdict"] for r in load_jsonl(replay / "results.jsonl")] == verdicts
    capsys.readouterr()
    assert tool.main([str(tmp_path / "nothing_here")]) == 2
    assert "not a finished demo folder" in capsys.readouterr().err
    # new videos of the demo's generator: one row per seed, agreement scored per video
    assert (
        tool.main(
            ["--seeds", "7", "--model", str(out / "models" / used), "--out", str(tmp_path / "v")]
        )
        == 0
    )
    printed = capsys.readouterr().out
    rows = json.loads(printed[printed.index("{\n") :])
    assert [r["seed"] for r in rows["videos"]] == [7]
    assert 0.0 <= rows["min_agreement"] == rows["mean_agreement"] <= 1.0
    assert len(load_jsonl(tmp_path / "v" / "run_7" / "results.jsonl")) == 150
