"""Helpers of the camera-loop tests: a small real segmenter and stream/video makers."""

from __future__ import annotations

import os
import socket
import subprocess
import time

import numpy as np

from edgeseg.runtime.result import ClassInfo, SegResult

FFMPEG = "/usr/bin/ffmpeg"
CLASSES = [
    ClassInfo(0, "background", (0, 0, 0), index=0),
    ClassInfo(1, "product", (0, 200, 0), index=1),
]


class WarmSegmenter:
    """Segments the synthetic scene's products (warm-tinted on a neutral surface) by a
    threshold on red minus blue: a real, deterministic segmenter with the Segmenter interface.
    ``delay`` (s) stands for a slower model (sleeping releases the GIL as inference does)."""

    def __init__(self, threshold: int = 30, delay: float = 0.0) -> None:
        self.threshold = threshold
        self.delay = delay
        self.classes = CLASSES
        self.calls = 0

    def predict(self, frame_bgr: np.ndarray, rgb: bool = False) -> SegResult:
        import cv2

        if self.delay:
            time.sleep(self.delay)
        self.calls += 1
        warm = cv2.subtract(frame_bgr[:, :, 2], frame_bgr[:, :, 0])
        cm = (warm > self.threshold).astype(np.uint8)
        conf = np.clip(0.5 + np.abs(warm.astype(np.float32) - self.threshold) / 64.0, 0.5, 1.0)
        counts = np.bincount(cm.reshape(-1), minlength=2).astype(np.int64)
        return SegResult(cm, conf, list(CLASSES), counts, frame=frame_bgr, rgb=rgb)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ts_server(port: int, size: str = "160x120", rate: int = 25) -> subprocess.Popen:
    """ffmpeg serving a live MPEG-TS test pattern on tcp://127.0.0.1:PORT (one client)."""
    cmd = [
        FFMPEG, "-hide_banner", "-loglevel", "error", "-re",
        "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}",
        "-c:v", "mpeg2video", "-q:v", "5", "-g", "5",
        "-f", "mpegts", f"tcp://127.0.0.1:{port}?listen=1",
    ]  # fmt: skip
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL)


def stop_process(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.kill()
    p.wait(timeout=10)


SYSTEM_PYTHON = "/usr/bin/python3"
RTSP_PACKAGES = "python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good/-ugly"


def rtsp_available() -> bool:
    """Whether Debian's python3 can run the GStreamer RTSP test server (with x264enc)."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return False
    probe = (
        "import gi; gi.require_version('GstRtspServer', '1.0'); gi.require_version('Gst', '1.0');"
        "from gi.repository import Gst, GstRtspServer; Gst.init(None);"
        "assert Gst.ElementFactory.find('x264enc') and Gst.ElementFactory.find('rtph264pay')"
    )
    try:
        r = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def start_rtsp_server(port: int) -> subprocess.Popen:
    """tests/python/rtsp_server.py under Debian's python3: rtsp://127.0.0.1:PORT/test."""
    script = os.path.join(os.path.dirname(__file__), "rtsp_server.py")
    p = subprocess.Popen(
        [SYSTEM_PYTHON, script, str(port)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    line = p.stdout.readline()  # "ready" once listening (EOF if it failed)
    if line.strip() != "ready":
        stop_process(p)
        raise RuntimeError(f"RTSP test server did not start: {p.stderr.read()}")
    return p


def run_bounded(loop, timeout: float = 60.0) -> dict:
    """``loop.run()`` in a thread joined with a timeout: a stuck loop fails the test instead
    of hanging it. Re-raises what ``run`` raised."""
    return _bounded(loop, lambda: loop.run(), timeout)


def collect_bounded(loop, timeout: float = 60.0) -> list:
    """``list(loop)`` (every LoopItem) in a thread joined with a timeout."""
    return _bounded(loop, lambda: list(loop), timeout)


def _bounded(loop, fn, timeout: float):
    import threading

    box: dict = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # handed to the test's thread
            box["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        loop.stop(timeout=5)
        raise AssertionError(f"the loop did not end within {timeout} s: {loop.stats.snapshot()}")
    if "error" in box:
        raise box["error"]
    return box["value"]
