"""What flows through the camera loop: ``Frame`` (from a source) and the ``Source`` interface.

Contract shared by every source (files, V4L2, streams, synthetic, GenICam) and by the loop:

- ``open_source(uri, **options)`` picks the source class by URI scheme from the registry
  (``register_source``) and returns it unopened; the loop calls ``open()``, then ``read()``
  until it returns None (end of stream), then ``close()``.
- ``read(timeout)`` returns the next :class:`Frame` or None at the end; it raises
  :class:`~edgeseg.errors.SourceError` for a source that cannot be (re)opened, and
  :class:`FrameDropped` for one bad frame the loop should count and skip.
- ``stats()`` returns counters (``frames``, ``reconnects``, ``corrupt``, ``incomplete``, ...)
  that the loop merges into its own stats.
- A source that supports a software trigger sets ``supports_trigger = True`` and implements
  ``fire_trigger(trigger_id)``: the next frame it delivers carries ``meta["trigger_id"]``.
- ``live`` (default True): a camera or stream whose frames go stale; the loop's
  ``drop="latest"`` skips to the newest frame of live sources only (files, folders and unpaced
  synthetic scenes set it False and are never skipped).
- ``FrameDropped(kind="timeout")`` from ``read(timeout)`` means "no frame within the timeout"
  (e.g. while reconnecting): the loop asks again and counts nothing; other kinds
  (``corrupt``, ``incomplete``, ...) are counted as bad frames.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from edgeseg.errors import SourceError

__all__ = ["Frame", "FrameDropped", "Source", "open_source", "register_source", "source_schemes"]


@dataclass
class Frame:
    """One captured frame.

    ``image``: H×W×3 uint8 BGR (OpenCV's order); ``index``: 0-based, counts every frame the
    source delivered (gaps show drops); ``t_capture``: Unix seconds (``time.time()``) when the
    host received it; ``source``: the URI; ``meta``: extras such as ``camera_timestamp_ns``,
    ``camera_frame_id``, ``trigger_id``, ``path`` (file sources), ``ground_truth`` (synthetic).
    """

    image: np.ndarray
    index: int
    t_capture: float = field(default_factory=time.time)
    source: str = ""
    meta: dict = field(default_factory=dict)


class FrameDropped(Exception):  # noqa: N818 - a signal to the loop, not a failure of it
    """One frame could not be decoded/assembled; the loop counts it and reads on."""

    def __init__(self, reason: str, kind: str = "corrupt") -> None:
        super().__init__(reason)
        self.kind = kind


class Source:
    """Base class of frame sources (see the module docstring for the contract)."""

    uri: str = ""
    supports_trigger: bool = False
    live: bool = True

    def open(self) -> None:
        """Opens the device/stream/file; raises SourceError naming the URI and the fix."""

    def read(self, timeout: Optional[float] = None) -> Optional[Frame]:
        """The next frame, or None at the end of the stream."""
        raise NotImplementedError

    def close(self) -> None:
        """Releases the device; safe to call twice."""

    def stats(self) -> dict:
        """Counters of this source (frames, reconnects, corrupt, incomplete, ...)."""
        return {}

    def fire_trigger(self, trigger_id: str) -> None:
        raise SourceError(f"{self.uri}: this source has no software trigger")

    def __enter__(self) -> Source:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_REGISTRY: dict[str, Callable[..., Source]] = {}


def register_source(scheme: str, factory: Callable[..., Source]) -> None:
    """Registers ``factory(uri, **options) -> Source`` for URIs starting with ``scheme:``."""
    _REGISTRY[scheme.lower()] = factory


def source_schemes() -> list[str]:
    return sorted(_REGISTRY)


def open_source(uri, **options) -> Source:
    """The (unopened) source for ``uri``: see :mod:`edgeseg.camera.sources` for the forms."""
    if isinstance(uri, Source):
        return uri
    text = str(uri)
    scheme = text.split(":", 1)[0].lower() if ":" in text else ""
    factory = _REGISTRY.get(scheme) or _REGISTRY.get("")
    if factory is None:
        raise SourceError(
            f"source {text!r}: no source handles it; known schemes: {source_schemes()}"
        )
    return factory(text, **options)
