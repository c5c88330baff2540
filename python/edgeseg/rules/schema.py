"""The rules file: its keys, the ``Rule`` object, and the checks that turn bad input into a
:class:`~edgeseg.errors.RulesError` naming the file, the rule and the fix.

The YAML (or dict) form::

    px_per_mm: 12.5              # optional: pixels per millimetre, for limits in mm²
    frame_size: [1280, 720]      # optional: check pixel zones against it at load time
    on_invalid: ng               # NaN/Inf model output: ng (default) | error | skip
    zones:
      seal:
        polygon: [[420, 180], [860, 180], [860, 540], [420, 540]]   # frame pixels (x, y)
      label:
        polygon: [[0.1, 0.6], [0.4, 0.6], [0.4, 0.95], [0.1, 0.95]]
        normalized: true         # fractions of the frame's width and height
    rules:
      - class: scratch           # a class name of the model (or a list of names)
        zone: seal               # a zone name, a list of them, or "frame" (the default)
        max_area_mm2: 0.5
        min_confidence: 0.6      # only pixels at least this sure count
        min_blob_area_px: 20     # blobs (8-connected) smaller than this are specks: ignored
      - class: dent
        max_blobs: 0
      - class: [scratch, crack]  # the group measured as one class (their pixels' union)
        together: true
        max_blobs: 0
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, replace
from typing import Any, Optional, Union

import numpy as np

from edgeseg._text import short
from edgeseg.errors import RulesError
from edgeseg.rules.zones import FRAME_ZONE, Zone, polygon_problem

__all__ = ["RULE_KEYS", "TOP_KEYS", "ZONE_KEYS", "Rule", "parse_rule", "parse_zone"]

TOP_KEYS = ("px_per_mm", "frame_size", "on_invalid", "zones", "rules")
ZONE_KEYS = ("polygon", "normalized")
#: Limits a rule may set; at least one is needed.
LIMIT_KEYS = (
    "min_area_px",
    "max_area_px",
    "min_area_mm2",
    "max_area_mm2",
    "max_blobs",
)
RULE_KEYS = (
    "name",
    "class",
    "zone",
    *LIMIT_KEYS,
    "min_confidence",
    "min_blob_area_px",
    "min_blob_area_mm2",
    "px_per_mm",
    "together",
)
#: Joins the class names of a group in its label (``scratch+crack@seal``).
GROUP_SEP = "+"


@dataclass(frozen=True)
class Rule:
    """One check of one class, or of a group of classes measured as one, in one zone (all
    limits optional; at least one area or blob limit). Areas ``*_px`` are pixels, ``*_mm2``
    square millimetres through ``px_per_mm`` (this rule's, else the file's).
    ``min_confidence``: a pixel counts only when the model is at least this sure of it.
    ``min_blob_area_*``: connected blobs (8-connectivity) smaller than this are ignored (areas
    and blob counts). ``max_blobs``: most blobs allowed.

    ``class_name`` given as a list or tuple of names makes a group: its pixels count as one
    class (the area is their sum, blobs are the connected parts of their union), so a defect
    the model reads part as one class and part as another is measured whole. After
    construction ``class_name`` is the names joined by ``+`` and :attr:`classes` the names.
    """

    class_name: Union[str, tuple[str, ...]]
    zone: str = FRAME_ZONE
    min_area_px: Optional[float] = None
    max_area_px: Optional[float] = None
    min_area_mm2: Optional[float] = None
    max_area_mm2: Optional[float] = None
    max_blobs: Optional[int] = None
    min_confidence: Optional[float] = None
    min_blob_area_px: Optional[float] = None
    min_blob_area_mm2: Optional[float] = None
    px_per_mm: Optional[float] = None
    name: Optional[str] = None
    group: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        names = self.class_name
        names = tuple(names) if isinstance(names, (list, tuple)) else tuple(self.group)
        if len(names) == 1:
            object.__setattr__(self, "class_name", names[0])
            object.__setattr__(self, "group", ())
        elif names:
            object.__setattr__(self, "class_name", GROUP_SEP.join(map(str, names)))
            object.__setattr__(self, "group", names)

    @property
    def classes(self) -> tuple[str, ...]:
        """The class names the rule measures (one, or the group's)."""
        return self.group or (self.class_name,)

    @property
    def label(self) -> str:
        """The rule's name in reasons and errors (``name``, else ``class@zone``, with a
        group's classes joined by ``+``)."""
        return self.name or f"{self.class_name}@{self.zone}"


def check_keys(d: dict, valid: tuple[str, ...], where: str) -> None:
    """Raises RulesError for a key of ``d`` outside ``valid``, suggesting the close one."""
    for key in d:
        if key in valid:
            continue
        close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise RulesError(f"{where}: unknown key {short(key)}; {hint}valid keys are {list(valid)}")


def number(value: Any, what: str, where: str, *, integer: bool = False) -> float:
    """``value`` as a finite number ≥ 0 (an int with ``integer``), else RulesError."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if ok and np.isfinite(float(value)) and (not integer or float(value).is_integer()):
        if float(value) < 0:
            raise RulesError(f"{where}: {what} is negative ({value}); limits are ≥ 0")
        return int(value) if integer else float(value)
    kind = "a whole number ≥ 0" if integer else "a number ≥ 0"
    raise RulesError(f"{where}: {what} must be {kind}, got {short(value)}")


def parse_zone(name: Any, spec: Any, source: str) -> Zone:
    """A :class:`Zone` from its YAML form: ``{polygon: [[x, y], ...], normalized: bool}`` or
    just the list of vertices (pixels)."""
    where = f"{source}: zone {short(name)}"
    if not isinstance(name, str) or not name:
        raise RulesError(f"{source}: zone names must be non-empty strings, got {short(name)}")
    if name == FRAME_ZONE:
        raise RulesError(
            f"{where}: {FRAME_ZONE!r} is the built-in whole-frame zone; give yours another name"
        )
    if isinstance(spec, Zone):
        spec = {"polygon": spec.points, "normalized": spec.normalized}
    if not isinstance(spec, dict):
        spec = {"polygon": spec}
    check_keys(spec, ZONE_KEYS, where)
    if "polygon" not in spec:
        raise RulesError(f"{where}: missing 'polygon: [[x, y], [x, y], [x, y], ...]'")
    normalized = spec.get("normalized", False)
    if not isinstance(normalized, bool):
        raise RulesError(f"{where}: normalized must be true or false, got {short(normalized)}")
    try:
        pts = np.array(spec["polygon"], dtype=np.float64)
    except (TypeError, ValueError):
        pts = np.zeros((0,))
    if pts.ndim != 2 or pts.shape[1] != 2 or not np.isfinite(pts).all():
        raise RulesError(
            f"{where}: polygon must be a list of [x, y] number pairs, got {short(spec['polygon'])}"
        )
    problem = polygon_problem(pts)
    if problem:
        raise RulesError(f"{where}: {problem}")
    if normalized and ((pts < 0) | (pts > 1)).any():
        bad = pts[((pts < 0) | (pts > 1)).any(axis=1)][0]
        raise RulesError(
            f"{where}: normalized vertex ({bad[0]:g}, {bad[1]:g}) is outside 0..1; normalized "
            "coordinates are fractions of the frame's width and height (drop 'normalized: "
            "true' for pixel coordinates)"
        )
    if not normalized and (pts < 0).any():
        bad = pts[(pts < 0).any(axis=1)][0]
        raise RulesError(
            f"{where}: vertex ({bad[0]:g}, {bad[1]:g}) is outside the frame (negative); pixel "
            "coordinates start at (0, 0), the top-left corner"
        )
    return Zone(name, pts, normalized)


def parse_rule(spec: Any, index: int, source: str) -> list[Rule]:
    """The :class:`Rule` objects of one entry of ``rules:``: one per class and zone listed,
    or with ``together: true`` one per zone for the listed classes as a group."""
    if isinstance(spec, Rule):
        return [spec]
    where = f"{source}: rule {index + 1}"
    if not isinstance(spec, dict):
        raise RulesError(
            f"{where}: expected a mapping such as {{class: scratch, ...}}, got {short(spec)}"
        )
    if "class_name" in spec and "class" not in spec:  # the field names of Rule
        group = spec.get("group") or ()
        spec = {("class" if k == "class_name" else k): v for k, v in spec.items() if k != "group"}
        if group:
            spec |= {"class": list(group), "together": True}
    check_keys(spec, RULE_KEYS, where)
    if "class" not in spec:
        raise RulesError(f"{where}: missing 'class: <class name>'")
    classes = _names(spec["class"], "class", where)
    zones = _names(spec.get("zone", FRAME_ZONE), "zone", where)
    name = spec.get("name")
    if name is not None and not isinstance(name, str):
        raise RulesError(f"{where}: name must be a string, got {short(name)}")
    together = spec.get("together", False)
    if not isinstance(together, bool):
        raise RulesError(
            f"{where}: together must be true (measure the listed classes as one) or false, "
            f"got {short(together)}"
        )
    units = [tuple(classes)] if together else [(c,) for c in classes]
    kw = {
        k: v
        for k, v in spec.items()
        if k not in ("name", "class", "zone", "together") and v is not None
    }
    out = []
    many = len(units) * len(zones) > 1
    for unit in units:
        cls = unit[0] if len(unit) == 1 else unit
        for zone in zones:
            rule = Rule(class_name=cls, zone=zone, **kw)
            if name is not None:
                label = f"{name}:{rule.class_name}@{zone}" if many else name
                rule = replace(rule, name=label)
            out.append(rule)
    return out


def _names(value: Any, what: str, where: str) -> list[str]:
    vals = value if isinstance(value, (list, tuple)) else [value]
    if not vals or not all(isinstance(v, str) and v for v in vals):
        raise RulesError(f"{where}: {what} must be a name or a list of names, got {short(value)}")
    return list(vals)
