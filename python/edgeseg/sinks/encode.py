"""The one JSON encoder of per-frame records: every sink and trigger reply sends the same text.

:func:`jsonable` turns a record into plain JSON types once, when the record is built
(:func:`~edgeseg.sinks.base.make_record`), so a value no sink could send is an error that
names its key there, not a crash in a delivery thread later. :func:`encode_record` writes the
JSON text (compact, or indented for files meant for people).

One behaviour for every value:

- ``NaN`` and ``±Inf`` (float, numpy) → ``null``: JSON has no such numbers, and a receiver
  must never read one as a measurement;
- numpy scalars → their Python value; numpy arrays, tuples, lists and sets → lists (a set
  sorted, so the text does not change from run to run);
- ``pathlib`` paths → their text; ``datetime`` / ``date`` / ``time`` → ISO 8601;
  enums → their value (encoded by the same rules);
- dict keys → text (``str``, ``int``, ``float``, ``bool``, numpy scalars, enums);
- anything else (bytes, objects) → :class:`~edgeseg.errors.SinkError` naming the key path,
  the type and what to put there instead.
"""

from __future__ import annotations

import datetime as _dt
import enum
import json
import math
from pathlib import PurePath
from typing import Any, Optional

import numpy as np

from edgeseg.errors import SinkError

__all__ = ["encode_record", "jsonable"]

_PLAIN = (str, int, bool, type(None))


def jsonable(value: Any, where: str = "record") -> Any:
    """``value`` in plain JSON types (see the module docstring); ``where`` names it in errors.

    Raises:
        SinkError: A value of a type no sink can send, naming its key path (``record["x"]``).
    """
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {_key(k, where): jsonable(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.generic):
        return jsonable(value.item(), where)
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biufU":
            raise SinkError(_unsupported(where, f"numpy array of {value.dtype}"))
        return jsonable(value.tolist(), where)
    if isinstance(value, enum.Enum):
        return jsonable(value.value, where)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        items = [jsonable(v, f"{where}{{}}") for v in value]
        try:
            return sorted(items)
        except TypeError:
            return sorted(items, key=repr)
    raise SinkError(_unsupported(where, type(value).__name__))


def encode_record(record: dict, indent: Optional[int] = None) -> str:
    """The JSON text of ``record`` (compact unless ``indent``), by the rules of :func:`jsonable`.

    Raises:
        SinkError: A value no sink can send (named by its key path).
    """
    plain = jsonable(record)
    if indent is None:
        return json.dumps(plain, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return json.dumps(plain, indent=indent, ensure_ascii=False, allow_nan=False)


def _key(key: Any, where: str) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, enum.Enum):
        key = key.value
    if isinstance(key, np.generic):
        key = key.item()
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, (int, float)):
        return str(key)
    if isinstance(key, str):
        return key
    raise SinkError(
        f"{where}: a key of type {type(key).__name__} ({key!r:.40}); record keys must be "
        "text or numbers"
    )


def _unsupported(where: str, kind: str) -> str:
    return (
        f"{where}: a value of type {kind} cannot be sent by the sinks; put a number, text, "
        "list or dict there (or str(value))"
    )
