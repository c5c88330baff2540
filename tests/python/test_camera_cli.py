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
        [str(tiny_onnx), "--source", "synthetic://?size=64x48&seed=2",
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
        RUN + [str(tiny_onnx), "--source", "synthetic://?size=64x48&fps=30",
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
    p = _run([str(tiny_onnx), "--source", str(tmp_path / "line.mp4")])
    assert p.returncode == 2 and "line.mp4" in p.stderr and "no such video file" in p.stderr
    p = _run([str(tiny_onnx), "--source", "synthetic://", "--sink", "ftp:x"])
    assert p.returncode == 2 and "unknown kind 'ftp'" in p.stderr
    p = _run([str(tiny_onnx), "--source", "synthetic://", "--token", "t"])
    assert p.returncode == 2 and "--token protects the live view" in p.stderr
    if importlib.util.find_spec("edgeseg.sinks.serve") is None:
        p = _run([str(tiny_onnx), "--source", "synthetic://", "--serve", ":8080"])
        assert p.returncode == 2 and "--serve" in p.stderr
    p = _run(["--source", "synthetic://"])
    assert p.returncode == 2 and "the model is required" in p.stderr


def test_model_option_is_the_deprecated_spelling(tiny_onnx):
    p = _run(["--model", str(tiny_onnx), "--source", "synthetic://?size=64x48", "--max-frames",
              "2", "--json", "--no-progress"])  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "edgeseg run: warning: --model is deprecated; use the model as the first argument" in (
        p.stderr
    )
    assert json.loads(p.stdout)["frames"] == 2
    p = _run([str(tiny_onnx), "--model", str(tiny_onnx), "--source", "synthetic://"])
    assert p.returncode == 2 and "give the model once" in p.stderr


def test_json_file_and_no_progress(tiny_onnx, tmp_path):
    out = tmp_path / "stats.json"
    p = _run([str(tiny_onnx), "--source", "synthetic://?size=64x48", "--max-frames", "3",
              "--stats-every", "0.01", "--no-progress", f"--json={out}"])  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert p.stdout == "" and json.loads(out.read_text())["frames"] == 3
    assert p.stderr.count("latency p50/p99") == 1  # only the final stats, no live lines


def test_unreachable_stream_is_one_clear_line_and_bad_input(tiny_onnx):
    """An RTSP source that never answers: our message alone (no OpenCV/FFmpeg log lines before
    it) and exit 2, since nothing ran."""
    import os
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCV_")}
    url = f"rtsp://127.0.0.1:{port}/line1"
    p = subprocess.run(
        RUN + [str(tiny_onnx), "--source", url], capture_output=True, text=True, env=env,
        timeout=120,
    )  # fmt: skip
    assert p.returncode == 2, p.stderr
    lines = [x for x in p.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("edgeseg run: error: ") and url in lines[0]
    assert "WARN" not in p.stderr and "Connection" not in p.stderr


@pytest.mark.skipif(
    importlib.util.find_spec("edgeseg.sinks.serve") is None, reason="no browser live view here"
)
def test_serve_flag_maps_to_the_serve_sink(tiny_onnx):
    p = _run(
        [str(tiny_onnx), "--source", "synthetic://?size=64x48", "--max-frames", "5",
         "--serve", "127.0.0.1:0", "--token", "s3cret", "--json"]
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    stats = json.loads(p.stdout)
    assert stats["sinks"]["serve:127.0.0.1:0"]["written"] == 5


def test_rules_file_gives_verdicts_and_a_bad_one_is_a_clear_error(tiny_onnx, tmp_path):
    pytest.importorskip("edgeseg.rules.rules")
    rules, out = tmp_path / "rules.yaml", tmp_path / "v.jsonl"
    rules.write_text("rules:\n  - class: product\n    min_area_px: 1000000\n")  # never met
    p = _run(
        [str(tiny_onnx), "--source", "synthetic://?size=64x48", "--max-frames", "4",
         "--rules", str(rules), "--sink", f"jsonl:{out}"]
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(recs) == 4 and all(r["verdict"] == "NG" for r in recs)
    assert all(any("product" in why for why in r["reasons"]) for r in recs)
    rules.write_text("rules:\n  - class: rust\n    max_area_px: 10\n")
    p = _run([str(tiny_onnx), "--source", "synthetic://", "--rules", str(rules)])
    assert p.returncode == 2 and "rust" in p.stderr and "rules.yaml" in p.stderr


def test_trigger_flag_processes_one_frame_per_http_trigger(tiny_onnx, tmp_path):
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "r.jsonl"
    p = subprocess.Popen(
        RUN + [str(tiny_onnx), "--source", "synthetic://?size=64x48&fps=30",
               "--sink", f"jsonl:{out}", "--trigger", f"http://127.0.0.1:{port}/trigger",
               "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        answers = []
        for tid in ("part-1", "part-2", "part-3"):
            body = json.dumps({"id": tid}).encode()
            end = time.monotonic() + 60
            while True:
                try:
                    req = urllib.request.Request(
                        f"http://127.0.0.1:{port}/trigger", data=body, method="POST"
                    )
                    with urllib.request.urlopen(req, timeout=30) as r:
                        answers.append(json.loads(r.read()))
                    break
                except OSError:
                    if time.monotonic() > end or p.poll() is not None:
                        raise
                    time.sleep(0.2)
            time.sleep(0.3)  # free-running frames in between must not be processed
        p.send_signal(signal.SIGINT)
        stdout, stderr = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
    assert p.returncode == 0, stderr
    assert [a["trigger_id"] for a in answers] == ["part-1", "part-2", "part-3"]
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["trigger_id"] for r in recs] == ["part-1", "part-2", "part-3"]
    assert [r["frame"] for r in recs] == [a["frame"] for a in answers]
    assert json.loads(stdout)["frames"] == 3
