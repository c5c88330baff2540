"""``edgeseg run`` in a subprocess: a run to --max-frames, SIGINT/SIGTERM flushing every sink,
bad sources and options."""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
import time

import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("onnxruntime")

RUN = [sys.executable, "-m", "edgeseg.cli", "run"]


def _run(args, timeout=120):
    return subprocess.run(RUN + args, capture_output=True, text=True, timeout=timeout)


def test_run_to_max_frames_with_json_stats(tiny_onnx, tmp_path):
    out = tmp_path / "r.jsonl"
    p = _run(
        ["--model", str(tiny_onnx), "--source", "synthetic://?size=64x48&seed=2",
         "--sink", f"jsonl:{out}", "--max-frames", "15", "--json"]
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    stats = json.loads(p.stdout)
    assert stats["frames"] == 15 and stats["stopped_by"] == "end"
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["frame"] for r in recs] == list(range(15))
    assert all(sum(r["counts"].values()) == 64 * 48 for r in recs)
    assert "frames 15" in p.stderr and "latency p50/p99" in p.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_cleanly_and_flushes_every_sink(tiny_onnx, tmp_path, sig):
    out, video = tmp_path / "r.jsonl", tmp_path / "out.mp4"
    shots = tmp_path / "shots"
    p = subprocess.Popen(
        RUN + ["--model", str(tiny_onnx), "--source", "synthetic://?size=64x48&fps=30",
               "--sink", f"jsonl:{out}", "--sink", f"video:{video}",
               "--sink", f"images:{shots}?every=5", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        end = time.monotonic() + 90
        while time.monotonic() < end and p.poll() is None:
            if out.exists() and len(out.read_text().splitlines()) >= 8:
                break
            time.sleep(0.1)
        assert p.poll() is None, p.stderr.read()
        p.send_signal(sig)
        stdout, stderr = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
    assert p.returncode == 0, stderr
    stats = json.loads(stdout)
    assert stats["stopped_by"] == "signal" and stats["frames"] >= 8
    n = stats["frames"]
    assert len(out.read_text().splitlines()) == n  # every result reached the file
    cap = cv2.VideoCapture(str(video))  # the mp4 was finalized (readable, every frame)
    frames = 0
    while cap.read()[0]:
        frames += 1
    cap.release()
    assert frames == n
    assert len(list(shots.glob("*_overlay.png"))) == (n + 4) // 5
    assert stats["sinks"][f"video:{video}"]["failed"] == 0


def test_bad_source_and_options_are_clear_errors(tiny_onnx, tmp_path):
    p = _run(["--model", str(tiny_onnx), "--source", str(tmp_path / "line.mp4")])
    assert p.returncode == 2 and "line.mp4" in p.stderr and "no such video file" in p.stderr
    p = _run(["--model", str(tiny_onnx), "--source", "synthetic://", "--sink", "ftp:x"])
    assert p.returncode == 2 and "unknown kind 'ftp'" in p.stderr
    p = _run(["--model", str(tiny_onnx), "--source", "synthetic://", "--token", "t"])
    assert p.returncode == 2 and "--token protects the live view" in p.stderr
    if importlib.util.find_spec("edgeseg.sinks.serve") is None:
        p = _run(["--model", str(tiny_onnx), "--source", "synthetic://", "--serve", ":8080"])
        assert p.returncode == 2 and "--serve" in p.stderr
    p = _run(["--source", "synthetic://"])
    assert p.returncode == 2 and "--model" in p.stderr


@pytest.mark.skipif(
    importlib.util.find_spec("edgeseg.sinks.serve") is None, reason="no browser live view here"
)
def test_serve_flag_maps_to_the_serve_sink(tiny_onnx):
    p = _run(
        ["--model", str(tiny_onnx), "--source", "synthetic://?size=64x48", "--max-frames", "5",
         "--serve", "127.0.0.1:0", "--token", "s3cret", "--json"]
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    stats = json.loads(p.stdout)
    assert stats["sinks"]["serve:127.0.0.1:0"]["written"] == 5
