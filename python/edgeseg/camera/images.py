"""Image folders and globs as a frame source (sorted by path, optional loop and pacing)."""

from __future__ import annotations

import glob
import os
import time
from pathlib import Path
from typing import Optional

from edgeseg._limits import check_image_file
from edgeseg.camera.frame import Frame, FrameDropped, Source
from edgeseg.camera.pacing import FramePacer
from edgeseg.errors import EdgesegError, SourceError

__all__ = ["IMAGE_EXTENSIONS", "ImageFolderSource", "looks_like_images"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")


def looks_like_images(uri: str) -> bool:
    """Whether ``uri`` names an image folder, a glob or a single image file."""
    return (
        os.path.isdir(uri) or any(c in uri for c in "*?[") or uri.lower().endswith(IMAGE_EXTENSIONS)
    )


class ImageFolderSource(Source):
    """The images of a folder (its top level; ``recursive=True`` for subfolders) or a glob
    such as ``shots/*.png``, in sorted path order.

    ``loop=True`` starts over at the end; ``fps`` paces delivery like a camera (then the
    source counts as live, so ``drop="latest"`` applies). An unreadable image is skipped and
    counted as ``corrupt`` (the loop goes on); ``frame.meta["path"]`` names each file.
    """

    def __init__(
        self, uri, *, loop: bool = False, fps: Optional[float] = None, recursive: bool = False
    ) -> None:
        self.uri = str(uri)
        self.loop = bool(loop)
        self.fps = float(fps) if fps else None
        self.recursive = bool(recursive)
        self.live = self.fps is not None
        self._paths: list[str] = []
        self._pos = 0
        self._index = 0
        self._pacer = FramePacer(self.fps)
        self._counts = {"frames": 0, "corrupt": 0, "size_changes": 0, "files": 0}
        self._size: Optional[tuple[int, int]] = None

    def open(self) -> None:
        u = self.uri[7:] if self.uri.startswith("file://") else self.uri
        if os.path.isdir(u):
            pattern = "**/*" if self.recursive else "*"
            paths = [str(p) for p in Path(u).glob(pattern) if p.suffix.lower() in IMAGE_EXTENSIONS]
        elif any(c in u for c in "*?["):
            paths = [p for p in glob.glob(u, recursive=True) if os.path.isfile(p)]
        elif os.path.isfile(u):
            paths = [u]
        else:
            raise SourceError(f"source {self.uri!r}: no such folder, glob or image file")
        self._paths = sorted(paths)
        if not self._paths:
            raise SourceError(
                f"source {self.uri!r}: no images found (looked for "
                f"{', '.join(IMAGE_EXTENSIONS)}{'' if self.recursive else ' at the top level'})"
            )
        self._counts["files"] = len(self._paths)
        self._pos = 0
        self._pacer.start()

    def read(self, timeout: Optional[float] = None) -> Optional[Frame]:
        import cv2

        if self._pos >= len(self._paths):
            if not self.loop or not self._paths:
                return None
            self._pos = 0
        self._pacer.wait(timeout, f"{self.uri}: next image not due yet")
        path = self._paths[self._pos]
        self._pos += 1
        try:
            check_image_file(path)  # the pixel budget, from the header
        except EdgesegError as e:
            self._counts["corrupt"] += 1
            raise FrameDropped(str(e)) from None
        try:
            img = cv2.imread(path, cv2.IMREAD_COLOR)
        except cv2.error:  # OpenCV's own pixel limit (OpenCV 5 raises, 4 returns None)
            img = None
        if img is None or img.size == 0:
            self._counts["corrupt"] += 1
            raise FrameDropped(f"{path}: not a readable image (corrupt or unsupported)")
        size = (img.shape[1], img.shape[0])
        if self._size is not None and size != self._size:
            self._counts["size_changes"] += 1
        self._size = size
        frame = Frame(img, self._index, time.time(), self.uri, {"path": path})
        self._index += 1
        self._counts["frames"] += 1
        return frame

    def stats(self) -> dict:
        return dict(self._counts)
