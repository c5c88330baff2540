"""Helpers of the camera-loop tests: a small real segmenter and stream/video makers."""

from __future__ import annotations

import socket
import subprocess
import time

import numpy as np

from edgeseg.runtime.result import ClassInfo, SegResult

FFMPEG = "/usr/bin/ffmpeg"
CLASSES = [ClassInfo(0, 0, "background", (0, 0, 0)), ClassInfo(1, 1, "product", (0, 200, 0))]


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
