"""Showing untrusted values in messages: bounded reprs and printable file names.

Error messages quote what the user gave (a YAML value, a file name); both can be hostile. A
value is shown through :func:`short` (a repr bounded in depth, items and characters, built
without formatting the whole value first), a file name through :func:`printable` (bytes that
are not UTF-8 shown as ``\\xNN`` escapes instead of lone surrogates, which no JSON encoder,
terminal or HTML page can carry).
"""

from __future__ import annotations

import os
import reprlib
from typing import Any, Union

__all__ = ["SHORT_LIMIT", "json_safe", "printable", "short"]

#: Most characters of a value quoted in a message.
SHORT_LIMIT = 200

_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxdict = 8
_REPR.maxlist = 12
_REPR.maxtuple = 12
_REPR.maxset = 8
_REPR.maxstring = SHORT_LIMIT
_REPR.maxlong = 60
_REPR.maxother = SHORT_LIMIT


def short(value: Any, limit: int = SHORT_LIMIT) -> str:
    """``repr(value)`` for a message, at most ``limit`` characters (``...`` marks a cut); the
    time and memory it takes do not grow with the value."""
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def printable(name: Union[str, bytes, os.PathLike]) -> str:
    """A file name as text that is valid UTF-8: bytes that do not decode (kept by Python as
    lone surrogates) become visible ``\\xNN`` escapes; valid names come back unchanged."""
    try:
        raw = os.fsencode(name)
    except UnicodeEncodeError:  # surrogates that did not come from the file system
        return str(name).encode("utf-8", "backslashreplace").decode("utf-8")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("utf-8", "backslashreplace")


def json_safe(value: Any) -> Any:
    """``value`` with every string (keys too) that holds lone surrogates — file names that are
    not UTF-8 — made :func:`printable`, inside dicts, lists and tuples, so that the JSON
    written from it is valid UTF-8 and carries visible ``\\xNN`` escapes."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return printable(value)
        return value
    if isinstance(value, dict):
        return {json_safe(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
