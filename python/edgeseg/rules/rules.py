"""``Rules``: inspection rules (class × zone limits) → an OK/NG :class:`Verdict` per frame.

Evaluation is vectorized: zone masks are rasterized once per frame size (bounding-box crops)
and every measurement is made once per frame and shared by the rules that need it (see
:mod:`edgeseg.rules.measure`).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Optional, Union

from edgeseg._text import short
from edgeseg._yaml import load_yaml_file
from edgeseg.errors import RulesError
from edgeseg.rules.check import Check, judge
from edgeseg.rules.invalid import check_on_invalid, invalid_verdict, is_valid
from edgeseg.rules.measure import HIST_MIN_CLASSES, FrameMeasure
from edgeseg.rules.schema import TOP_KEYS, Rule, check_keys, number, parse_rule, parse_zone
from edgeseg.rules.verdict import Verdict
from edgeseg.rules.zones import FRAME_ZONE, Zone, ZoneMask

__all__ = ["Rules"]


class Rules:
    """Inspection rules: per class (or group of classes measured as one) and zone, limits on
    area (px or mm²) and blobs.

    Build from a YAML file (:meth:`from_file`), a dict (:meth:`from_dict`, same keys) or
    objects::

        Rules([Rule("scratch", zone="seal", max_area_mm2=0.5)],
              zones={"seal": [[420, 180], [860, 180], [860, 540], [420, 540]]},
              px_per_mm=12.5, classes=segmenter.classes)

    ``zones`` maps names to a vertex list (pixels), ``{"polygon": [...], "normalized": True}``
    or a :class:`Zone`; ``"frame"`` is the whole frame. ``classes`` (the model's ClassInfo list
    or names) checks class names now; without it they are checked on the first result.
    ``frame_size`` ``(width, height)`` checks pixel zones now; otherwise on the first frame.
    ``on_invalid`` (``ng`` | ``error`` | ``skip``): the verdict of a result whose model output
    was not finite (see :mod:`edgeseg.rules.invalid`); such a result is never OK.
    Every problem raises :class:`~edgeseg.errors.RulesError` naming ``source``, the rule and
    the fix.
    """

    def __init__(
        self,
        rules: list[Union[Rule, dict]],
        zones: Optional[Union[dict, list[Zone]]] = None,
        px_per_mm: Optional[float] = None,
        classes: Optional[list] = None,
        frame_size: Optional[tuple[int, int]] = None,
        source: str = "<rules>",
        on_invalid: str = "ng",
    ) -> None:
        self.source = source
        self.on_invalid = check_on_invalid(on_invalid, source)
        if px_per_mm is not None:
            px_per_mm = number(px_per_mm, "px_per_mm", source)
            if px_per_mm <= 0:
                raise RulesError(f"{source}: px_per_mm must be > 0, got {px_per_mm}")
        self.px_per_mm = px_per_mm
        self.zones: dict[str, Zone] = {FRAME_ZONE: Zone(FRAME_ZONE)}
        items = zones.items() if isinstance(zones, dict) else [(z.name, z) for z in zones or []]
        for name, spec in items:
            zone = parse_zone(name, spec, source)
            if name in self.zones:
                raise RulesError(f"{source}: zone {short(name)} is defined twice")
            self.zones[name] = zone
        if not isinstance(rules, (list, tuple)) or not rules:
            raise RulesError(
                f"{source}: 'rules' must be a non-empty list of rules, got {short(rules)}"
            )
        self._checks: list[Check] = []
        for i, spec in enumerate(rules):
            for rule in parse_rule(spec, i, source):
                chk = Check(rule, i, px_per_mm, source)
                if rule.zone not in self.zones:
                    raise RulesError(
                        f"{chk.where}: unknown zone {short(rule.zone)}; "
                        + _suggest(rule.zone, list(self.zones), "the zones are")
                    )
                self._checks.append(chk)
        per_key: dict[tuple[str, Optional[float]], set[str]] = {}
        for chk in self._checks:
            if not chk.blobs and (chk.rule.zone, chk.thr) != (FRAME_ZONE, None):
                per_key.setdefault((chk.rule.zone, chk.thr), set()).update(chk.rule.classes)
        self._hist_keys = frozenset(k for k, v in per_key.items() if len(v) >= HIST_MIN_CLASSES)
        self._bound: Optional[tuple[str, ...]] = None
        self._masks: dict[tuple[int, int], dict[str, ZoneMask]] = {}
        if classes is not None:
            self.bind_classes(classes)
        if frame_size is not None:
            self.check_frame_size(frame_size)

    @classmethod
    def from_dict(cls, data: dict, classes: Optional[list] = None, source: str = "<dict>") -> Rules:
        """Rules from the dict form of a rules file.

        Args:
            data: A mapping with the keys of a rules file: ``px_per_mm``, ``frame_size``,
                ``zones`` and ``rules`` (see the "Inspection rules" reference page).
            classes: The model's classes (``ClassInfo`` or names) to check the rules' class
                names against now; without them they are checked on the first result.
            source: The name used in error messages.

        Returns:
            The compiled :class:`Rules`.

        Raises:
            RulesError: Unknown keys, classes or zones (with suggestions), bad polygons,
                negative or contradictory limits, mm² limits without a scale.
        """
        if not isinstance(data, dict):
            raise RulesError(
                f"{source}: expected a mapping with 'zones' and 'rules', got {type(data).__name__}"
            )
        check_keys(data, TOP_KEYS, source)
        if "rules" not in data:
            raise RulesError(f"{source}: missing 'rules:' (a list of rules)")
        zones = data.get("zones") or {}
        if not isinstance(zones, dict):
            raise RulesError(
                f"{source}: 'zones' must map zone names to polygons, got {short(zones)}"
            )
        size = data.get("frame_size")
        if size is not None:
            ok = isinstance(size, (list, tuple)) and len(size) == 2
            if not ok or not all(isinstance(v, int) and v > 0 for v in size):
                raise RulesError(f"{source}: frame_size must be [width, height], got {short(size)}")
        on_invalid = data.get("on_invalid", "ng")
        return cls(data["rules"], zones, data.get("px_per_mm"), classes, size, source, on_invalid)

    @classmethod
    def from_file(cls, path: Union[str, Path], classes: Optional[list] = None) -> Rules:
        """Rules from a YAML (or JSON) file.

        Args:
            path: The rules file.
            classes: The model's classes (``segmenter.classes``) to check the class names
                against now.

        Returns:
            The compiled :class:`Rules`.

        Raises:
            RulesError: The file cannot be read or parsed, or a rule is invalid; the message
                names the file, the rule and the fix.
        """
        p = Path(path)
        data = load_yaml_file(p, RulesError, "rules file")
        return cls.from_dict(data, classes, source=str(p))

    @property
    def rules(self) -> list[Rule]:
        """The rules, one per class (or group of classes) and zone."""
        return [c.rule for c in self._checks]

    @property
    def needs_confidence(self) -> bool:
        """True when a rule has ``min_confidence`` (create the Segmenter with confidence)."""
        return any(c.thr is not None for c in self._checks)

    def __len__(self) -> int:
        return len(self._checks)

    def __repr__(self) -> str:
        return f"Rules({len(self)} rules, zones={list(self.zones)}, source={self.source!r})"

    def bind_classes(self, classes: list) -> None:
        """Checks every rule's class against the model's classes (ClassInfo or names)."""
        names = tuple(getattr(c, "name", c) for c in classes)
        for chk in self._checks:
            for cls in chk.rule.classes:
                if cls not in names:
                    raise RulesError(
                        f"{chk.where}: unknown class {short(cls)}; "
                        + _suggest(cls, list(names), "the model's classes are")
                    )
            chk.indices = tuple(names.index(c) for c in chk.rule.classes)
        self._bound = names

    def check_frame_size(self, size: tuple[int, int]) -> None:
        """Checks that every pixel zone fits a ``(width, height)`` frame (RulesError if not)."""
        width, height = (int(v) for v in size)
        for zone in self.zones.values():
            bad = zone.out_of_frame(height, width)
            if bad is not None:
                raise RulesError(
                    f"{self.source}: zone {zone.name!r}: vertex ({bad[0]:g}, {bad[1]:g}) is "
                    f"outside the {width}×{height} frame; pixel coordinates go from (0, 0) to "
                    f"({width}, {height}): fix the polygon, or give it in 0..1 with "
                    "'normalized: true'"
                )

    def zone_masks(self, height: int, width: int) -> dict[str, ZoneMask]:
        """The zones rasterized for a ``height`` × ``width`` frame (cached per size)."""
        masks = self._masks.get((height, width))
        if masks is None:
            self.check_frame_size((width, height))
            masks = {n: z.rasterize(height, width) for n, z in self.zones.items()}
            self._masks[(height, width)] = masks
        return masks

    def evaluate(self, result) -> Optional[Verdict]:
        """The verdict on one segmented frame.

        A result that is not ``valid`` (NaN/±Inf model input or output) is never measured:
        NG with its reason, :class:`~edgeseg.errors.InvalidResultError` or None, per
        ``on_invalid``.

        Args:
            result: A :class:`~edgeseg.runtime.result.SegResult`.

        Returns:
            A :class:`~edgeseg.rules.verdict.Verdict`: NG with one reason per broken limit,
            ``details`` with the measured area and blobs of every rule; None for an invalid
            result under ``on_invalid: skip``.

        Raises:
            RulesError: A rule names a class the result does not have, a rule needs
                confidence the result lacks, or a pixel zone leaves the frame.
            InvalidResultError: An invalid result under ``on_invalid: error``.
        """
        if not is_valid(result):
            return invalid_verdict(result, self.on_invalid)
        names = tuple(c.name for c in result.classes)
        if names != self._bound:
            self.bind_classes(result.classes)
        cmap = result.class_map
        height, width = cmap.shape
        masks = self.zone_masks(height, width)
        conf = result.confidence
        if conf is None and self.needs_confidence:
            raise RulesError(
                f"{self.source}: a rule has min_confidence but the result has no confidence; "
                "create the Segmenter with confidence=True"
            )
        counts = result.counts_array
        counts = counts if counts is not None and len(counts) == len(names) else None
        fm = FrameMeasure(cmap, conf, counts, masks, self._hist_keys)
        reasons: list[str] = []
        details: list[dict] = []
        for chk in self._checks:
            area = fm.area(chk)
            blobs = None
            if chk.blobs:
                area, blobs = fm.blobs(chk, area) if area else (0, 0)
            detail, why = judge(chk, area, blobs)
            details.append(detail)
            reasons.extend(why)
        return Verdict(ok=not reasons, reasons=reasons, details=details)


def _suggest(value: str, valid: list[str], what: str) -> str:
    close = difflib.get_close_matches(value, valid, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{hint}{what} {valid}"
