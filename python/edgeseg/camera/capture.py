"""OpenCV ``VideoCapture`` sources: V4L2 cameras, CSI (GStreamer), network streams, files.

One class, :class:`CaptureSource`, with the URI deciding the backend:

- ``0`` / ``/dev/video0`` — V4L2;
- ``csi://0[?width=1920&height=1080&fps=30&flip=0]`` — Jetson CSI through ``nvarguscamerasrc``;
- ``gst:<pipeline ending in appsink>`` — any GStreamer pipeline;
- ``rtsp://``, ``rtsps://``, ``rtmp://``, ``http(s)://``, ``tcp://``, ``udp://`` — FFmpeg with
  low-latency options (small probe size and analyze duration, no input buffering; RTSP over
  TCP) unless ``OPENCV_FFMPEG_CAPTURE_OPTIONS`` is already set;
- a video file path — FFmpeg; the end of the file ends the source (``loop=True`` restarts it).

Live sources (everything but files) survive a drop: ``read`` reopens the stream with
exponential backoff and counts ``reconnects``; while it is down ``read(timeout)`` raises
:class:`FrameDropped` with ``kind="timeout"`` (no frame in time: the loop just asks again).
"""

from __future__ import annotations

import os
import re
import threading
import time
from typing import Optional
from urllib.parse import parse_qs, urlsplit

import numpy as np

from edgeseg._redact import redact
from edgeseg.camera.frame import Frame, FrameDropped, Source
from edgeseg.errors import SourceError

__all__ = ["CaptureSource", "gstreamer_available"]

_STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "tcp", "udp", "srt")
_LOW_LATENCY = {
    "probesize": "32768",
    "analyzeduration": "200000",
    "fflags": "nobuffer",
    "flags": "low_delay",
}
_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
_env_lock = threading.Lock()  # the FFmpeg options travel through a process-wide variable


def _cv2():
    try:
        import cv2
    except ImportError:
        raise SourceError(
            "camera sources read through OpenCV, which is not installed; "
            "pip install opencv-python-headless (or edgeseg[camera])"
        ) from None
    return cv2


def gstreamer_available() -> bool:
    """Whether this OpenCV was built with GStreamer (pip's opencv-python wheels are not)."""
    info = _cv2().getBuildInformation()
    m = re.search(r"GStreamer:\s*(\S+)", info)
    return bool(m) and m.group(1).upper() != "NO"


def _no_gstreamer(uri: str) -> SourceError:
    return SourceError(
        f"source {redact(uri)!r} needs an OpenCV built with GStreamer, and this one is not "
        "(cv2.getBuildInformation() says 'GStreamer: NO'; pip's opencv-python wheels never "
        "have it). On a Jetson use JetPack's OpenCV (apt install python3-opencv, and "
        "pip uninstall opencv-python opencv-python-headless in this environment), elsewhere "
        "build OpenCV with -DWITH_GSTREAMER=ON"
    )


def csi_pipeline(sensor: int, width: int = 1920, height: int = 1080, fps: int = 30, flip=0) -> str:
    """The GStreamer pipeline of a Jetson CSI camera delivering BGR to OpenCV's appsink."""
    return (
        f"nvarguscamerasrc sensor-id={sensor} ! "
        f"video/x-raw(memory:NVMM),width={width},height={height},framerate={fps}/1 ! "
        f"nvvidconv flip-method={flip} ! video/x-raw,format=BGRx ! videoconvert ! "
        "video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false"
    )


class CaptureSource(Source):
    """A camera, stream or video file read by OpenCV (see the module docstring).

    Options: ``open_timeout`` (s to keep trying at ``open()``, live sources), ``read_timeout``
    (s FFmpeg waits for data before declaring the stream lost), ``reconnect`` (reopen live
    sources that drop), ``backoff`` (first and longest wait between reopen attempts),
    ``reconnect_timeout`` (give up with SourceError after that long down; None = never),
    ``loop`` (restart a file at its end), ``ffmpeg_options`` (extra FFmpeg input options),
    ``width``/``height``/``fps`` (requested V4L2 mode or CSI mode).
    """

    def __init__(
        self,
        uri,
        *,
        open_timeout: float = 5.0,
        read_timeout: float = 2.0,
        reconnect: bool = True,
        backoff: tuple[float, float] = (0.1, 2.0),
        reconnect_timeout: Optional[float] = None,
        loop: bool = False,
        ffmpeg_options: Optional[dict] = None,
        width: Optional[int] = None,
        height: Optional[int] = None,
        fps: Optional[float] = None,
    ) -> None:
        self.uri = str(uri)
        self.shown = redact(self.uri)  # in messages, stats and records: no password
        self.open_timeout = float(open_timeout)
        self.read_timeout = float(read_timeout)
        self.reconnect = bool(reconnect)
        self.backoff = (float(backoff[0]), float(backoff[1]))
        self.reconnect_timeout = reconnect_timeout
        self.loop = bool(loop)
        self.ffmpeg_options = dict(ffmpeg_options or {})
        self.mode = (width, height, fps)
        self._target, self._api, self.kind = self._resolve()
        self.live = self.kind != "file"
        self._cap = None
        self._index = 0
        self._size: Optional[tuple[int, int]] = None
        self._down_since: Optional[float] = None
        self._next_try = 0.0
        self._delay = self.backoff[0]
        self._closed = False
        self._counts = {
            "frames": 0,
            "disconnects": 0,
            "reconnects": 0,
            "corrupt": 0,
            "size_changes": 0,
        }
        self.last_error: Optional[str] = None

    # ---- resolving the URI ------------------------------------------------------------
    def _resolve(self):
        cv2 = _cv2()
        u = self.uri
        if re.fullmatch(r"\d+", u):
            return int(u), cv2.CAP_V4L2, "v4l2"
        if re.fullmatch(r"/dev/video\d+", u):
            return u, cv2.CAP_V4L2, "v4l2"
        scheme = u.split(":", 1)[0].lower() if ":" in u else ""
        if scheme == "csi":
            parts = urlsplit(u)
            q = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            sensor = parts.netloc or "0"
            if not sensor.isdigit():
                raise SourceError(
                    f"source {u!r}: expected csi://N with N the sensor id, e.g. csi://0"
                )
            w, h, f = self.mode
            pipe = csi_pipeline(
                int(sensor),
                int(q.get("width", w or 1920)),
                int(q.get("height", h or 1080)),
                int(float(q.get("fps", f or 30))),
                int(q.get("flip", 0)),
            )
            return pipe, cv2.CAP_GSTREAMER, "csi"
        if scheme == "gst":
            pipe = u[4:].strip()
            if "appsink" not in pipe:
                raise SourceError(
                    f"source {u!r}: a gst: pipeline must end in an appsink OpenCV can read, "
                    "e.g. gst:videotestsrc ! videoconvert ! video/x-raw,format=BGR ! appsink"
                )
            return pipe, cv2.CAP_GSTREAMER, "gst"
        if scheme in _STREAM_SCHEMES:
            return u, cv2.CAP_FFMPEG, "stream"
        path = u[7:] if scheme == "file" else u
        if not os.path.isfile(path):
            raise SourceError(
                f"source {u!r}: no such video file (and not a camera index, /dev/videoN, "
                "csi://N, gst:..., a stream URL, an image folder/glob or synthetic://)"
            )
        return path, cv2.CAP_FFMPEG, "file"

    # ---- opening ----------------------------------------------------------------------
    def _ffmpeg_env(self) -> Optional[str]:
        if self._api != _cv2().CAP_FFMPEG or self.kind == "file" or os.environ.get(_ENV):
            return None
        opts = dict(_LOW_LATENCY)
        if urlsplit(self.uri).scheme.lower() in ("rtsp", "rtsps"):
            opts["rtsp_transport"] = "tcp"
        opts.update({k: str(v) for k, v in self.ffmpeg_options.items()})
        return "|".join(f"{k};{v}" for k, v in opts.items())

    def _try_open(self) -> bool:
        cv2 = _cv2()
        if self._api == cv2.CAP_GSTREAMER and not gstreamer_available():
            raise _no_gstreamer(self.uri)
        params: list[int] = []
        if self._api == cv2.CAP_FFMPEG:
            params = [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                int(max(0.5, self.read_timeout) * 1000),
                cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                int(self.read_timeout * 1000),
            ]
        env = self._ffmpeg_env()
        with _env_lock:
            if env is not None:
                os.environ[_ENV] = env
            try:
                cap = cv2.VideoCapture(self._target, self._api, params)
            finally:
                if env is not None:
                    os.environ.pop(_ENV, None)
        if not cap.isOpened():
            cap.release()
            return False
        if self.kind == "v4l2":
            w, h, f = self.mode
            if w:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, int(w))
            if h:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, int(h))
            if f:
                cap.set(cv2.CAP_PROP_FPS, float(f))
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._cap = cap
        return True

    def _fix(self) -> str:
        if self.kind == "v4l2":
            return (
                "check that the camera is plugged in (ls /dev/video*), that this user may "
                "read it (the 'video' group) and that no other program holds it"
            )
        if self.kind == "stream":
            return (
                "check the address, port, path and credentials, that the camera or server is "
                f"up and reachable (try: ffprobe '{self.shown}'), and any firewall"
            )
        if self.kind == "file":
            return f"OpenCV's FFmpeg cannot decode it; check it with: ffprobe '{self._target}'"
        return "check the pipeline with gst-launch-1.0 (ending in fakesink instead of appsink)"

    def open(self) -> None:
        """Opens the source, retrying live ones for ``open_timeout`` seconds."""
        self._closed = False
        deadline = time.monotonic() + (self.open_timeout if self.live else 0.0)
        delay = self.backoff[0]
        while True:
            if self._try_open():
                return
            if time.monotonic() + delay > deadline:
                break
            time.sleep(delay)
            delay = min(self.backoff[1], delay * 2)
        waited = f" (tried for {self.open_timeout:g} s)" if self.live else ""
        raise SourceError(
            f"source {self.shown!r} ({self.kind}) cannot be opened{waited}: {self._fix()}"
        )

    # ---- reading ----------------------------------------------------------------------
    def _lost(self, why: str) -> None:
        cap, self._cap = self._cap, None  # "connected" turns False before the count moves
        self.last_error = why
        self._counts["disconnects"] += 1
        if cap is not None:
            cap.release()
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
        self._delay = self.backoff[0]
        self._next_try = now + self._delay

    def _reopen(self, deadline: float) -> None:
        """Reopens a live source with backoff; FrameDropped("timeout") when not up yet."""
        while self._cap is None:
            now = time.monotonic()
            rt = self.reconnect_timeout
            if rt is not None and self._down_since is not None and now - self._down_since > rt:
                raise SourceError(
                    f"source {self.shown!r} has been down for more than {rt:g} s "
                    f"({self.last_error}): {self._fix()}"
                )
            if now < self._next_try:
                if self._next_try > deadline:
                    time.sleep(max(0.0, deadline - now))
                    raise FrameDropped(f"{self.shown}: reconnecting", kind="timeout")
                time.sleep(self._next_try - now)
            if self._try_open():
                self._counts["reconnects"] += 1
                self._down_since = None
                return
            self._delay = min(self.backoff[1], self._delay * 2)
            self._next_try = time.monotonic() + self._delay

    def read(self, timeout: Optional[float] = None) -> Optional[Frame]:
        """The next frame; None at the end of a file (or after ``close``)."""
        deadline = time.monotonic() + (1e9 if timeout is None else float(timeout))
        while not self._closed:
            if self._cap is None:
                if not self.live:
                    return None
                self._reopen(deadline)
            ok, img = self._cap.read()
            if ok and img is not None and img.size:
                return self._frame(img)
            if not self.live:
                if self.loop and self._counts["frames"] > 0:
                    self._cap.set(_cv2().CAP_PROP_POS_FRAMES, 0)
                    ok, img = self._cap.read()
                    if ok and img is not None and img.size:
                        return self._frame(img)
                return None
            if not self.reconnect:
                raise SourceError(
                    f"source {self.shown!r}: the stream ended or dropped: {self._fix()}"
                )
            self._lost("no frame from the stream (dropped or ended)")
        return None

    def _frame(self, img: np.ndarray) -> Frame:
        t = time.time()
        img = _to_bgr(img, self.shown, self._counts)
        size = (img.shape[1], img.shape[0])
        if self._size is not None and size != self._size:
            self._counts["size_changes"] += 1
        self._size = size
        frame = Frame(img, self._index, t, self.shown, {})
        self._index += 1
        self._counts["frames"] += 1
        return frame

    def close(self) -> None:
        self._closed = True
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def stats(self) -> dict:
        d = dict(self._counts)
        d["connected"] = self._cap is not None
        if self._size:
            d["size"] = list(self._size)
        return d


def _to_bgr(img: np.ndarray, uri: str, counts: dict) -> np.ndarray:
    """H×W×3 uint8 BGR from what a decoder gave (gray, BGRA, 16-bit); FrameDropped if unusable."""
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    if img.dtype != np.uint8 or img.ndim not in (2, 3) or min(img.shape[:2]) == 0:
        counts["corrupt"] = counts.get("corrupt", 0) + 1
        raise FrameDropped(f"{uri}: unusable frame {img.dtype} {img.shape}")
    if img.ndim == 2:
        return np.ascontiguousarray(np.repeat(img[:, :, None], 3, axis=2))
    if img.shape[2] == 4:
        return np.ascontiguousarray(img[:, :, :3])
    if img.shape[2] == 1:
        return np.ascontiguousarray(np.repeat(img, 3, axis=2))
    if img.shape[2] != 3:
        counts["corrupt"] = counts.get("corrupt", 0) + 1
        raise FrameDropped(f"{uri}: unusable frame with {img.shape[2]} channels")
    return img
