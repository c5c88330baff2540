"""What a frame whose model output cannot be trusted gets: the fail-closed policy.

A :class:`~edgeseg.runtime.result.SegResult` is not ``valid`` when the network's input or
output held NaN/±Inf values (an FP16/INT8 engine that overflows, a broken export). Its class
map is meaningless — NaN logits come out as class 0, a clean-looking part — so it must never
pass a part. ``on_invalid`` says what happens instead:

- ``ng`` (default): the frame's verdict is NG with the reason, e.g.
  ``model output not finite (4096 px)``, with or without rules;
- ``error``: the frame still goes out as NG, then the run stops with an
  :class:`~edgeseg.errors.InvalidResultError`;
- ``skip``: the frame gets no verdict (neither OK nor NG); its record says ``valid: false``
  and the reason, and the line decides (e.g. re-trigger).
"""

from __future__ import annotations

from typing import Any, Optional

from edgeseg.errors import InvalidResultError, RulesError
from edgeseg.rules.verdict import Verdict

__all__ = [
    "ON_INVALID",
    "check_on_invalid",
    "invalid_message",
    "invalid_verdict",
    "is_valid",
    "reason_of",
]

ON_INVALID = ("ng", "error", "skip")


def check_on_invalid(value: Any, where: str) -> str:
    """``value`` as one of :data:`ON_INVALID`, else RulesError naming ``where``."""
    if isinstance(value, str) and value.lower() in ON_INVALID:
        return value.lower()
    raise RulesError(f"{where}: on_invalid must be one of {list(ON_INVALID)}, got {value!r}")


def is_valid(result: Any) -> bool:
    """The result's ``valid`` (results without the field count as valid)."""
    return bool(getattr(result, "valid", True))


def reason_of(result: Any) -> str:
    return getattr(result, "invalid_reason", None) or "model output not valid"


def invalid_verdict(
    result: Any, on_invalid: str = "ng", model: Optional[str] = None
) -> Optional[Verdict]:
    """The verdict of a result that is not valid: NG (``ng``, ``error``) or None (``skip``).

    With ``on_invalid="error"`` raises :class:`~edgeseg.errors.InvalidResultError` naming
    ``model`` when given (callers that must deliver the frame first build the NG verdict with
    ``"ng"``).
    """
    reason = reason_of(result)
    if on_invalid == "error":
        raise InvalidResultError(invalid_message(model, reason, 1))
    if on_invalid == "skip":
        return None
    return Verdict(ok=False, reasons=[reason], details=[], valid=False)


def invalid_message(model: Optional[str], reason: str, frames: int) -> str:
    """The error that stops a run on invalid model output (``model``: its path or name)."""
    what = "a frame" if frames == 1 else f"{frames} frames in a row"
    who = "the model" if model is None else f"model {model}"
    return (
        f"{who}: {what} with invalid output ({reason}); the model overflows or is "
        "broken — check it with `edgeseg predict MODEL IMAGE`, and rebuild a TensorRT engine "
        "in FP32 or re-calibrate / re-export the model (`edgeseg build --precision fp32`, "
        "`edgeseg export`)"
    )
