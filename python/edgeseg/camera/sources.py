"""Frame sources by URI, registered with :func:`edgeseg.camera.frame.register_source`.

=================================  ==========================================================
``0``, ``/dev/video0``             V4L2 camera through OpenCV (``width``/``height``/``fps``)
``csi://0?width=&height=&fps=``    Jetson CSI camera (GStreamer ``nvarguscamerasrc``)
``gst:<pipeline> ! appsink``       any GStreamer pipeline (needs OpenCV with GStreamer)
``rtsp://``, ``http(s)://``,       network streams through FFmpeg with low-latency options;
``tcp://``, ``udp://``, ``rtmp://``  reopened with backoff when they drop
``path/video.mp4``                 a video file (``loop=True`` to restart at the end)
``dir/``, ``dir/*.png``, ``a.png``  images, sorted by path (``loop``, ``fps``)
``synthetic://?fps=30&frames=N``   moving test scene with ground truth (``meta``)
=================================  ==========================================================

``open_source(uri, **options)`` returns the source unopened; options go to its class
(:class:`~edgeseg.camera.capture.CaptureSource`,
:class:`~edgeseg.camera.images.ImageFolderSource`,
:class:`~edgeseg.camera.synthetic.SyntheticSource`). Every source has ``live``: True for
cameras and streams (and paced folders/synthetic scenes) — the loop's ``drop="latest"``
applies to live sources only; files are never skipped.
"""

from __future__ import annotations

from edgeseg.camera.capture import CaptureSource, gstreamer_available
from edgeseg.camera.frame import Source, open_source, register_source
from edgeseg.camera.images import ImageFolderSource, looks_like_images
from edgeseg.camera.synthetic import SyntheticSource

__all__ = [
    "CaptureSource",
    "ImageFolderSource",
    "SyntheticSource",
    "gstreamer_available",
    "open_source",
]


def _default(uri: str, **options) -> Source:
    """Paths and camera indices: image folders/globs/files, else a camera or video file."""
    path = uri[7:] if uri.startswith("file://") else uri
    if looks_like_images(path):
        return ImageFolderSource(uri, **options)
    return CaptureSource(uri, **options)


def _capture(uri: str, **options) -> Source:
    return CaptureSource(uri, **options)


register_source("", _default)
register_source("file", _default)
for _scheme in ("rtsp", "rtsps", "rtmp", "http", "https", "tcp", "udp", "srt", "csi", "gst"):
    register_source(_scheme, _capture)
register_source("synthetic", SyntheticSource)
