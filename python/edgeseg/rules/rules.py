"""``Rules``: inspection rules (class × zone limits) → an OK/NG :class:`Verdict` per frame.

Evaluation is vectorized: zone masks are rasterized once per frame size (bounding-box crops);
per zone and confidence threshold one ``cv2.calcHist`` of the class map gives every class's
area; connected components run only for rules with blob limits, only on the zone's crop, and
only when the class is present there.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Optional, Union

import numpy as np

from edgeseg.errors import RulesError
from edgeseg.rules.check import Check, judge
from edgeseg.rules.schema import TOP_KEYS, Rule, check_keys, number, parse_rule, parse_zone
from edgeseg.rules.verdict import Verdict
from edgeseg.rules.zones import FRAME_ZONE, Zone, ZoneMask

__all__ = ["Rules"]

_HIST_EXACT = 1 << 24  # calcHist counts in float32: exact below 2^24 pixels per bin


class Rules:
    """Inspection rules: per class and zone, limits on area (px or mm²) and blobs.

    Build from a YAML file (:meth:`from_file`), a dict (:meth:`from_dict`, same keys) or
    objects::

        Rules([Rule("scratch", zone="seal", max_area_mm2=0.5)],
              zones={"seal": [[420, 180], [860, 180], [860, 540], [420, 540]]},
              px_per_mm=12.5, classes=segmenter.classes)

    ``zones`` maps names to a vertex list (pixels), ``{"polygon": [...], "normalized": True}``
    or a :class:`Zone`; ``"frame"`` is the whole frame. ``classes`` (the model's ClassInfo list
    or names) checks class names now; without it they are checked on the first result.
    ``frame_size`` ``(width, height)`` checks pixel zones now; otherwise on the first frame.
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
    ) -> None:
        self.source = source
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
                raise RulesError(f"{source}: zone {name!r} is defined twice")
            self.zones[name] = zone
        if not isinstance(rules, (list, tuple)) or not rules:
            raise RulesError(f"{source}: 'rules' must be a non-empty list of rules, got {rules!r}")
        self._checks: list[Check] = []
        for i, spec in enumerate(rules):
            for rule in parse_rule(spec, i, source):
                chk = Check(rule, i, px_per_mm, source)
                if rule.zone not in self.zones:
                    raise RulesError(
                        f"{chk.where}: unknown zone {rule.zone!r}; "
                        + _suggest(rule.zone, list(self.zones), "the zones are")
                    )
                self._checks.append(chk)
        self._bound: Optional[tuple[str, ...]] = None
        self._masks: dict[tuple[int, int], dict[str, ZoneMask]] = {}
        if classes is not None:
            self.bind_classes(classes)
        if frame_size is not None:
            self.check_frame_size(frame_size)

    @classmethod
    def from_dict(cls, data: dict, classes: Optional[list] = None, source: str = "<dict>") -> Rules:
        """Rules from the dict form of a rules file (keys ``px_per_mm``, ``frame_size``,
        ``zones``, ``rules``; see the README's "Inspection rules")."""
        if not isinstance(data, dict):
            raise RulesError(
                f"{source}: expected a mapping with 'zones' and 'rules', got {type(data).__name__}"
            )
        check_keys(data, TOP_KEYS, source)
        if "rules" not in data:
            raise RulesError(f"{source}: missing 'rules:' (a list of rules)")
        zones = data.get("zones") or {}
        if not isinstance(zones, dict):
            raise RulesError(f"{source}: 'zones' must map zone names to polygons, got {zones!r}")
        size = data.get("frame_size")
        if size is not None:
            ok = isinstance(size, (list, tuple)) and len(size) == 2
            if not ok or not all(isinstance(v, int) and v > 0 for v in size):
                raise RulesError(f"{source}: frame_size must be [width, height], got {size!r}")
        return cls(data["rules"], zones, data.get("px_per_mm"), classes, size, source)

    @classmethod
    def from_file(cls, path: Union[str, Path], classes: Optional[list] = None) -> Rules:
        """Rules from a YAML (or JSON) file; ``classes``: the model's classes to check names."""
        import yaml

        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as e:
            raise RulesError(f"{p}: cannot read the rules file: {e.strerror or e}") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise RulesError(f"{p}: not valid YAML{at}: {getattr(e, 'problem', e)}") from None
        return cls.from_dict(data, classes, source=str(p))

    @property
    def rules(self) -> list[Rule]:
        """The rules, one per class and zone."""
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
            if chk.rule.class_name not in names:
                raise RulesError(
                    f"{chk.where}: unknown class {chk.rule.class_name!r}; "
                    + _suggest(chk.rule.class_name, list(names), "the model's classes are")
                )
            chk.index = names.index(chk.rule.class_name)
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

    def evaluate(self, result) -> Verdict:
        """The verdict on one :class:`~edgeseg.runtime.result.SegResult`: NG with one reason
        per broken limit, ``details`` with the measured area/blobs of every rule."""
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
        valid: dict[tuple[str, float], np.ndarray] = {}
        hists: dict[tuple[str, Optional[float]], np.ndarray] = {}
        reasons: list[str] = []
        details: list[dict] = []
        for chk in self._checks:
            zone = chk.rule.zone
            zm = masks[zone]
            key = (zone, chk.thr)
            ok_px = None
            if chk.thr is not None:
                ok_px = valid.get(key)
                if ok_px is None:
                    ok_px = valid[key] = (zm.crop(conf) >= chk.thr).view(np.uint8)
            if key not in hists:
                hists[key] = _histogram(result, zm, ok_px)
            area = int(hists[key][chk.index])
            blobs = None
            if chk.blobs:
                if area:
                    area, blobs = _blobs(zm.crop(cmap), chk.index, zm, ok_px, chk, area)
                else:
                    blobs = 0
            detail, why = judge(chk, area, blobs)
            details.append(detail)
            reasons.extend(why)
        return Verdict(ok=not reasons, reasons=reasons, details=details)


def _histogram(result, zm: ZoneMask, ok_px: Optional[np.ndarray]) -> np.ndarray:
    """Pixels per class index inside a zone (only pixels with ``ok_px`` when given)."""
    n = len(result.classes)
    if zm.whole_frame and ok_px is None and len(result.counts_array) == n:
        return np.asarray(result.counts_array)
    crop = zm.crop(result.class_map)
    mask = zm.mask
    if ok_px is not None:
        import cv2

        mask = ok_px if mask is None else cv2.bitwise_and(mask, ok_px)
    if crop.size >= _HIST_EXACT:
        sel = crop if mask is None else crop[mask.view(bool)]
        return np.bincount(sel.reshape(-1), minlength=max(n, 256))
    import cv2

    hist = cv2.calcHist([crop], [0], mask, [256], [0, 256])
    return np.rint(hist.reshape(-1)).astype(np.int64)


def _blobs(
    crop: np.ndarray, index: int, zm: ZoneMask, ok_px: Optional[np.ndarray], chk: Check, area: int
) -> tuple[int, int]:
    """(area in px of the blobs kept, number of blobs kept) of one class in one zone, whose
    pixel count there is ``area``."""
    import cv2

    m = crop == index
    if zm.mask is not None:
        m &= zm.mask.view(bool)
    if ok_px is not None:
        m &= ok_px.view(bool)
    x, y, w, h = cv2.boundingRect(m.view(np.uint8))
    m = m[y : y + h, x : x + w]
    # Labels without OpenCV's stats pass plus a bincount of the blob pixels is several times
    # faster than connectedComponentsWithStats; there are at most area + 1 labels.
    ltype = cv2.CV_16U if area < 65535 else cv2.CV_32S
    n, labels = cv2.connectedComponents(m.view(np.uint8), connectivity=8, ltype=ltype)
    areas = np.bincount(labels[m], minlength=n)[1:]
    if chk.min_blob_px is not None:
        areas = areas[areas >= chk.min_blob_px]
    return int(areas.sum()), int(len(areas))


def _suggest(value: str, valid: list[str], what: str) -> str:
    close = difflib.get_close_matches(value, valid, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{hint}{what} {valid}"
