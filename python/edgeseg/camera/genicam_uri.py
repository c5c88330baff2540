"""The ``genicam://[DEVICE_ID]?options`` URI: parsing and checking (no camera needed)."""

from __future__ import annotations

from typing import Any, Optional
from urllib.parse import parse_qsl, unquote

from edgeseg.camera.genicam_formats import SUPPORTED_FORMATS
from edgeseg.errors import SourceError

__all__ = ["frames_lost", "parse_genicam_uri"]

_OPTIONS = {
    "exposure": float,
    "gain": float,
    "pixel_format": str,
    "fps": float,
    "trigger": str,
    "packet_size": int,
    "buffers": int,
    "trigger_timeout": float,
}


def parse_genicam_uri(uri: str, **overrides: Any) -> tuple[Optional[str], dict]:
    """``(device_id or None, options)`` of a ``genicam://`` URI, keyword ``overrides`` on top.

    Options are converted and checked; SourceError names the URI, the option and the fix.
    """
    text = str(uri)
    if not text.lower().startswith("genicam:"):
        raise SourceError(f"{text!r} is not a genicam: URI (genicam://[DEVICE_ID]?options)")
    rest = text.split(":", 1)[1].lstrip("/")
    device, _, query = rest.partition("?")
    raw: dict[str, Any] = {}
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as exc:
        raise SourceError(f"{text}: malformed query string {query!r} ({exc})") from exc
    raw.update(pairs)
    raw.update(overrides)
    opts: dict[str, Any] = {"trigger": "off", "buffers": 32, "trigger_timeout": 2.0}
    for key, value in raw.items():
        if key not in _OPTIONS:
            raise SourceError(
                f"{text}: unknown option {key!r}; valid options: {', '.join(_OPTIONS)}"
            )
        try:
            opts[key] = _OPTIONS[key](value)
        except (TypeError, ValueError):
            raise SourceError(
                f"{text}: option {key}={value!r} is not a {_OPTIONS[key].__name__}"
            ) from None
    for key in ("exposure", "fps", "packet_size", "trigger_timeout"):
        if key in opts and opts[key] <= 0:
            raise SourceError(f"{text}: option {key} must be > 0, got {opts[key]}")
    if opts["buffers"] < 2:
        raise SourceError(f"{text}: option buffers must be >= 2, got {opts['buffers']}")
    trig = opts["trigger"].strip().lower()
    if trig not in ("off", "software") and not (trig.startswith("line") and trig[4:].isdigit()):
        raise SourceError(
            f"{text}: trigger={opts['trigger']!r}; use off, software or lineN (line0, line1, ...)"
        )
    opts["trigger"] = trig
    if "pixel_format" in opts and opts["pixel_format"] not in SUPPORTED_FORMATS:
        raise SourceError(
            f"{text}: pixel_format={opts['pixel_format']!r} is not supported; "
            f"supported: {', '.join(SUPPORTED_FORMATS)}"
        )
    return (unquote(device) or None), opts


def frames_lost(prev: Optional[int], cur: int) -> int:
    """Frames the camera sent between ids ``prev`` and ``cur`` that never arrived.

    GigE Vision 1.x block ids are 16 bits and skip 0 when they wrap; a jump backwards or of
    more than 2**15 is taken as a counter reset (camera restarted), not as loss.
    """
    if prev is None:
        return 0
    delta = cur - prev
    if delta <= 0 and prev <= 0xFFFF and cur <= 0xFFFF:
        delta = (0xFFFF - prev) + cur
    return delta - 1 if 0 < delta <= 2**15 else 0
