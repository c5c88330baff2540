"""The verdict of the inspection rules on one frame."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Verdict"]


@dataclass
class Verdict:
    """OK/NG for one frame with readable reasons.

    ``ok``: True when every rule passed; ``reasons``: one sentence per failed rule, e.g.
    ``scratch: 1.8 mm² in zone "seal" > 0.5 mm²``; ``details``: JSON-able measurements per
    rule and zone (for reports and OPC UA variables); ``valid``: False when the verdict is
    NG because the model's output could not be trusted (no rule was measured, see
    :mod:`edgeseg.rules.invalid`).
    """

    ok: bool
    reasons: list[str] = field(default_factory=list)
    details: list[dict] = field(default_factory=list)
    valid: bool = True

    def __post_init__(self) -> None:
        if not self.valid and self.ok:
            raise ValueError("Verdict: a verdict on invalid model output cannot be OK")

    @property
    def label(self) -> str:
        return "OK" if self.ok else "NG"

    def to_dict(self) -> dict:
        return {
            "verdict": self.label,
            "reasons": list(self.reasons),
            "details": self.details,
            "valid": self.valid,
        }
