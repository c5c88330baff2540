"""A rule compiled for evaluation (``Check``: limits checked and converted, once) and the
judgement of one measurement against it (``judge``: the detail record and the reasons)."""

from __future__ import annotations

import math
from typing import Optional

from edgeseg._text import short
from edgeseg.errors import RulesError
from edgeseg.rules.schema import Rule, number

__all__ = ["Check", "judge"]


class Check:
    """One rule compiled: limits in the units they were given, the scale, the class indices."""

    def __init__(self, rule: Rule, index: int, scale: Optional[float], source: str) -> None:
        self.rule = rule
        self.where = where = f"{source}: rule {index + 1} ({rule.label})"
        names = rule.classes
        if not names or not all(isinstance(c, str) and c for c in names):
            given = short(rule.group or rule.class_name)
            raise RulesError(f"{where}: class must be a name or a list of names, got {given}")
        twice = [c for i, c in enumerate(names) if c in names[:i]]
        if twice:
            raise RulesError(
                f"{where}: class {twice[0]!r} is listed twice in the group; list each once"
            )
        g = {k: getattr(rule, k) for k in _NUMERIC if getattr(rule, k) is not None}
        for k, v in g.items():
            g[k] = number(v, k, where, integer=k == "max_blobs")
        if "px_per_mm" in g:
            if g["px_per_mm"] <= 0:
                raise RulesError(f"{where}: px_per_mm must be > 0, got {g['px_per_mm']}")
            scale = g["px_per_mm"]
        self.scale = scale
        self.limits = {k: v for k, v in g.items() if k != "px_per_mm"}
        if not any(k in g for k in ("min_area_px", "max_area_px", "min_area_mm2", "max_area_mm2")):
            if "max_blobs" not in g:
                raise RulesError(
                    f"{where}: no limit; give one of min_area_px, max_area_px, min_area_mm2, "
                    "max_area_mm2, max_blobs"
                )
        for stem in ("min_area", "max_area", "min_blob_area"):
            if f"{stem}_px" in g and f"{stem}_mm2" in g:
                raise RulesError(f"{where}: give {stem}_px or {stem}_mm2, not both")
            if f"{stem}_mm2" in g and scale is None:
                raise RulesError(
                    f"{where}: {stem}_mm2 needs a scale; add 'px_per_mm: <pixels per "
                    "millimetre>' at the top of the file or to this rule (or use "
                    f"{stem}_px)"
                )
        self.min = self._limit(g, "min_area")
        self.max = self._limit(g, "max_area")
        blob = self._limit(g, "min_blob_area")
        self.min_blob_px = None if blob is None else blob[0] * (blob[2] if blob[1] == "mm²" else 1)
        if self.min is not None and self.max is not None:
            lo, hi = self.min[0] * self.min[2], self.max[0] * self.max[2]
            if lo > hi:
                raise RulesError(
                    f"{where}: the minimum area ({fmt(self.min[0])} {self.min[1]}) is larger "
                    f"than the maximum ({fmt(self.max[0])} {self.max[1]}); swap them or fix one"
                )
        conf = g.get("min_confidence")
        if conf is not None and conf > 1:
            raise RulesError(f"{where}: min_confidence must be in 0..1, got {conf}")
        self.thr = conf if conf else None
        self.max_blobs = g.get("max_blobs")
        self.blobs = self.max_blobs is not None or self.min_blob_px is not None
        #: The rule's class indices in the model (one, or the group's), set by binding.
        self.indices: tuple[int, ...] = ()

    def _limit(self, g: dict, stem: str) -> Optional[tuple[float, str, float]]:
        """(value as given, unit, px per unit) of a limit, or None."""
        if f"{stem}_px" in g:
            return g[f"{stem}_px"], "px", 1.0
        if f"{stem}_mm2" in g:
            return g[f"{stem}_mm2"], "mm²", float(self.scale) ** 2
        return None


_NUMERIC = (
    "min_area_px",
    "max_area_px",
    "min_area_mm2",
    "max_area_mm2",
    "max_blobs",
    "min_confidence",
    "min_blob_area_px",
    "min_blob_area_mm2",
    "px_per_mm",
)


def judge(chk: Check, area: int, blobs: Optional[int]) -> tuple[dict, list[str]]:
    """The detail record and the reasons (empty when OK) of one rule on one frame."""
    r = chk.rule
    mm2 = None if chk.scale is None else area / chk.scale**2
    why: list[str] = []
    where = f'in zone "{r.zone}"'
    tail = f' (rule "{r.name}")' if r.name else ""
    for lim, op in ((chk.max, ">"), (chk.min, "<")):
        if lim is None:
            continue
        value, unit, _ = lim
        measured = area if unit == "px" else mm2
        if (measured > value) if op == ">" else (measured < value):
            a, b = pair(measured, value)
            why.append(f"{r.class_name}: {a} {unit} {where} {op} {b} {unit}{tail}")
    if chk.max_blobs is not None and blobs is not None and blobs > chk.max_blobs:
        noun = "blob" if blobs == 1 else "blobs"
        why.append(f"{r.class_name}: {blobs} {noun} {where} > {chk.max_blobs}{tail}")
    detail = {
        "rule": r.label,
        "class": r.class_name,
        "zone": r.zone,
        "ok": not why,
        "area_px": area,
        "area_mm2": None if mm2 is None else round(mm2, 6),
        "blobs": blobs,
        "limits": dict(chk.limits),
        "reasons": why,
    }
    return detail, why


def fmt(v: float, digits: int = 3) -> str:
    """A number for a reason: ``digits`` significant digits, never in exponent form."""
    v = float(v)
    if v == 0 or v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    s = f"{v:.{digits}g}"
    if "e" in s:
        decimals = max(0, digits - 1 - int(math.floor(math.log10(abs(v)))))
        s = f"{v:.{decimals}f}"
        if "." in s:
            s = s.rstrip("0").rstrip(".")
    return s


def pair(measured: float, limit: float) -> tuple[str, str]:
    """Measured and limit formatted with enough digits that unequal values read unequal."""
    for digits in range(3, 12):
        a, b = fmt(measured, digits), fmt(limit, digits)
        if a != b:
            break
    return a, b
