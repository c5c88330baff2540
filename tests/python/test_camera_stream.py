"""Live streams on 127.0.0.1 — MPEG-TS over TCP from Debian's ffmpeg, RTSP (H.264) from a
GStreamer RTSP server — killed mid-run and restarted: the loop survives, reconnects and keeps
delivering, and the drop shows in the stats."""

from __future__ import annotations

import json
import os
import time

import pytest

cv2 = pytest.importorskip("cv2")

from camera_helpers import (  # noqa: E402
    FFMPEG,
    RTSP_PACKAGES,
    WarmSegmenter,
    free_port,
    rtsp_available,
    start_rtsp_server,
    start_ts_server,
    stop_process,
)

from edgeseg.camera import CameraLoop, open_source  # noqa: E402

pytestmark = pytest.mark.skipif(
    not os.access(FFMPEG, os.X_OK), reason=f"needs {FFMPEG} (Debian package ffmpeg)"
)

SERVERS = {
    "tcp": (start_ts_server, "tcp://127.0.0.1:{port}"),
    "rtsp": (start_rtsp_server, "rtsp://127.0.0.1:{port}/test"),
}


@pytest.fixture(params=["tcp", "rtsp"])
def server_kind(request):
    if request.param == "rtsp" and not rtsp_available():
        pytest.skip(f"the RTSP test server needs Debian's {RTSP_PACKAGES}")
    return request.param


def _wait_for(cond, timeout):
    """Polls ``cond`` until true or ``timeout`` s (a bound against hangs, not a speed claim)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def test_stream_killed_and_restarted_loop_reconnects(tmp_path, server_kind):
    start, url = SERVERS[server_kind]
    port = free_port()
    server = start(port)
    out = tmp_path / "live.jsonl"
    try:
        src = open_source(url.format(port=port), open_timeout=10, backoff=(0.1, 0.5))
        assert src.live and src.kind == "stream"
        loop = CameraLoop(src, WarmSegmenter(), sinks=[f"jsonl:{out}"])
        loop.start()
        try:
            assert _wait_for(lambda: loop.stats.frames >= 10, 30), loop.stats.snapshot()
            d0 = src.stats()["disconnects"]  # 0 unless a busy machine already timed a read out
            stop_process(server)  # the camera goes away mid-run
            assert _wait_for(lambda: src.stats()["disconnects"] > d0, 15), src.stats()
            assert not src.stats()["connected"]
            n_down = loop.stats.frames
            server = start(port)  # and comes back
            assert _wait_for(lambda: loop.stats.frames >= n_down + 10, 30), loop.stats.snapshot()
            assert loop.error is None and not loop.join(0)  # the loop never stopped
        finally:
            final = loop.stop()
    finally:
        stop_process(server)
    drops = final["source"]["disconnects"]
    assert final["reconnects"] >= 1
    assert (
        drops - 1 <= final["reconnects"] <= drops
    )  # every drop recovered (all but one at the end)
    assert final["frames"] >= n_down + 10
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(recs) == final["frames"]
    idx = [r["frame"] for r in recs]
    assert idx == sorted(set(idx))  # frame indices keep counting across the reconnect
    assert all(r["counts"]["background"] + r["counts"]["product"] == 160 * 120 for r in recs)


def test_stream_low_latency_options_are_passed_and_respect_the_environment(monkeypatch):
    src = open_source("rtsp://127.0.0.1:1/x")
    opts = src._ffmpeg_env()
    assert "fflags;nobuffer" in opts and "probesize;32768" in opts
    assert "rtsp_transport;tcp" in opts
    src = open_source("tcp://127.0.0.1:1", ffmpeg_options={"probesize": 500000})
    assert "probesize;500000" in src._ffmpeg_env() and "rtsp_transport" not in src._ffmpeg_env()
    monkeypatch.setenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", "fflags;discardcorrupt")
    assert open_source("tcp://127.0.0.1:1")._ffmpeg_env() is None  # the user's own choice wins
