"""Inspection rules against hand-built class maps with known areas and independent numpy
references (slicing for rectangles, a pure-Python flood fill for blobs)."""

from __future__ import annotations

import json
import re
from collections import deque
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("cv2")

from edgeseg.errors import RulesError  # noqa: E402
from edgeseg.rules import Rule, Rules, Verdict, Zone  # noqa: E402
from edgeseg.runtime.result import ClassInfo, SegResult  # noqa: E402

NAMES = ["background", "scratch", "dent", "label"]
CLASSES = [ClassInfo(i, n, (40 * i, 80, 200 - 40 * i), index=i) for i, n in enumerate(NAMES)]


def make_result(cmap: np.ndarray, conf: np.ndarray | None = None) -> SegResult:
    counts = np.bincount(cmap.reshape(-1), minlength=len(CLASSES)).astype(np.int64)
    return SegResult(cmap.astype(np.uint8), conf, CLASSES, counts)


def rect(x0: int, y0: int, x1: int, y1: int) -> list[list[int]]:
    """The zone polygon covering columns x0..x1 and rows y0..y1 (inclusive)."""
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def flood_blobs(mask: np.ndarray) -> list[int]:
    """Sizes of the 8-connected blobs of a boolean mask (reference, pure Python)."""
    seen = np.zeros_like(mask, bool)
    h, w = mask.shape
    sizes = []
    for y, x in zip(*np.nonzero(mask)):
        if seen[y, x]:
            continue
        seen[y, x] = True
        q, n = deque([(y, x)]), 0
        while q:
            cy, cx = q.popleft()
            n += 1
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    ny, nx = cy + dy, cx + dx
                    if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        q.append((ny, nx))
        sizes.append(n)
    return sizes


def test_rectangles_known_areas_and_reason_text():
    cm = np.zeros((120, 200), np.uint8)
    cm[30:36, 50:80] = 1  # 6 × 30 = 180 px scratch inside "seal"
    cm[100:110, 150:160] = 1  # 100 px scratch outside "seal"
    cm[5:15, 5:15] = 3  # 100 px label
    rules = Rules.from_dict(
        {
            "px_per_mm": 10,
            "zones": {"seal": rect(40, 20, 99, 59), "corner": rect(0, 0, 19, 19)},
            "rules": [
                {"class": "scratch", "zone": "seal", "max_area_mm2": 0.5},
                {"class": "scratch", "zone": "frame", "max_area_px": 280},
                {"class": "label", "zone": "corner", "min_area_px": 120},
            ],
        },
        classes=CLASSES,
    )
    v = rules.evaluate(make_result(cm))
    assert isinstance(v, Verdict) and not v.ok and v.label == "NG"
    assert v.reasons == [
        'scratch: 1.8 mm² in zone "seal" > 0.5 mm²',
        'label: 100 px in zone "corner" < 120 px',
    ]
    assert [d["area_px"] for d in v.details] == [180, 280, 100]
    assert [d["ok"] for d in v.details] == [False, True, False]
    assert v.details[0]["area_mm2"] == pytest.approx(1.8)
    assert v.details[0]["limits"] == {"max_area_mm2": 0.5}
    json.dumps(v.to_dict())  # JSON-able


def test_disk_and_triangle_zone_against_numpy():
    h, w = 90, 90
    yy, xx = np.mgrid[0:h, 0:w]
    disk = (xx - 40) ** 2 + (yy - 45) ** 2 <= 12**2
    cm = np.where(disk, 2, 0).astype(np.uint8)
    # Right triangle with legs of 30 px from (20, 30): pixels with dx, dy ≥ 0, dx + dy ≤ 30.
    tri = (xx >= 20) & (yy >= 30) & ((xx - 20) + (yy - 30) <= 30)
    rules = Rules(
        [Rule("dent", zone="tri", max_area_px=0), Rule("dent", max_area_px=int(disk.sum()))],
        zones={"tri": [[20, 30], [50, 30], [20, 60]]},
    )
    assert rules.zone_masks(h, w)["tri"].area == int(tri.sum()) == 31 * 32 // 2
    v = rules.evaluate(make_result(cm))
    assert [d["area_px"] for d in v.details] == [int((disk & tri).sum()), int(disk.sum())]
    assert v.reasons == [f'dent: {int((disk & tri).sum())} px in zone "tri" > 0 px']


@pytest.mark.parametrize("seed", range(6))
def test_random_maps_match_reference(seed):
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(20, 50)), int(rng.integers(20, 60))
    cm = rng.choice(4, size=(h, w), p=[0.7, 0.1, 0.1, 0.1]).astype(np.uint8)
    conf = rng.random((h, w), dtype=np.float32)
    zones, refs = {}, {"frame": np.ones((h, w), bool)}
    for k in range(3):  # overlapping random rectangles
        x0, x1 = sorted(int(v) for v in rng.choice(w, 2, replace=False))
        y0, y1 = sorted(int(v) for v in rng.choice(h, 2, replace=False))
        zones[f"z{k}"] = rect(x0, y0, x1, y1)
        ref = np.zeros((h, w), bool)
        ref[y0 : y1 + 1, x0 : x1 + 1] = True
        refs[f"z{k}"] = ref
    # A right triangle (legs along the axes): pixels with dx, dy >= 0 and dx + dy <= L.
    leg = int(rng.integers(3, min(h, w) - 1))
    tx, ty = int(rng.integers(0, w - leg)), int(rng.integers(0, h - leg))
    zones["tri"] = [[tx, ty], [tx + leg, ty], [tx, ty + leg]]
    yy, xx = np.mgrid[0:h, 0:w]
    refs["tri"] = (xx >= tx) & (yy >= ty) & ((xx - tx) + (yy - ty) <= leg)
    specs = []
    for zone in refs:
        for cls in (1, 2, 3):
            thr = float(rng.choice([0.0, 0.3, 0.7]))
            min_blob = int(rng.choice([0, 2, 4]))
            specs.append(
                {"class": NAMES[cls], "zone": zone, "max_area_px": 10**6, "max_blobs": 10**6}
                | ({"min_confidence": thr} if thr else {})
                | ({"min_blob_area_px": min_blob} if min_blob else {})
            )
    rules = Rules.from_dict({"zones": zones, "rules": specs}, classes=CLASSES)
    v = rules.evaluate(make_result(cm, conf))
    assert v.ok
    for spec, d in zip(specs, v.details):
        m = (cm == NAMES.index(spec["class"])) & refs[spec["zone"]]
        m &= conf >= spec.get("min_confidence", 0.0)
        sizes = [s for s in flood_blobs(m) if s >= spec.get("min_blob_area_px", 0)]
        assert (d["area_px"], d["blobs"]) == (sum(sizes), len(sizes)), spec


def test_normalized_zone_matches_pixel_zone_and_is_cached_per_size():
    norm = {"polygon": [[0.25, 0.25], [0.75, 0.25], [0.75, 0.75], [0.25, 0.75]], "normalized": True}
    rules = Rules([{"class": "dent", "zone": "mid", "max_area_px": 0}], zones={"mid": norm})
    for h, w in ((64, 64), (40, 100), (33, 47)):
        cm = np.full((h, w), 2, np.uint8)
        ys = np.floor(np.array([0.25, 0.75]) * h + 0.5).astype(int)
        xs = np.floor(np.array([0.25, 0.75]) * w + 0.5).astype(int)
        want = (ys[1] - ys[0] + 1) * (xs[1] - xs[0] + 1)
        v = rules.evaluate(make_result(cm))
        assert v.details[0]["area_px"] == want, (h, w)
    pixel = Rules(
        [{"class": "dent", "zone": "mid", "max_area_px": 0}], zones={"mid": rect(16, 16, 48, 48)}
    )
    cm = np.random.default_rng(1).integers(0, 4, (64, 64)).astype(np.uint8)
    assert rules.evaluate(make_result(cm)).details == pixel.evaluate(make_result(cm)).details
    masks = rules.zone_masks(64, 64)
    assert rules.zone_masks(64, 64) is masks and rules.zone_masks(40, 100) is not masks


def test_mm2_global_and_per_rule_scale():
    cm = np.zeros((50, 50), np.uint8)
    cm[10:20, 10:15] = 1  # 50 px
    rules = Rules(
        [
            Rule("scratch", max_area_mm2=0.4),  # 10 px/mm: 0.5 mm²
            Rule("scratch", max_area_mm2=0.4, px_per_mm=20.0, name="fine camera"),  # 0.125 mm²
            Rule("scratch", min_area_mm2=0.6),
        ],
        px_per_mm=10.0,
    )
    v = rules.evaluate(make_result(cm))
    assert [d["area_mm2"] for d in v.details] == [0.5, 0.125, 0.5]
    assert v.reasons == [
        'scratch: 0.5 mm² in zone "frame" > 0.4 mm²',
        'scratch: 0.5 mm² in zone "frame" < 0.6 mm²',
    ]
    assert [d["rule"] for d in v.details] == ["scratch@frame", "fine camera", "scratch@frame"]


def test_reason_digits_grow_until_values_differ():
    cm = np.zeros((10, 100), np.uint8)
    cm[0, :50] = 1  # 50 px at 10 px/mm = 0.5 mm²
    # With 3 digits the limit 0.4999 would read "0.5 mm² > 0.5 mm²".
    v = Rules([Rule("scratch", max_area_mm2=0.4999)], px_per_mm=10).evaluate(make_result(cm))
    assert v.reasons == ['scratch: 0.5 mm² in zone "frame" > 0.4999 mm²']
    cm[0, :] = 1
    cm[1:4, :] = 1  # 400 px = 4 mm²
    v = Rules([Rule("scratch", max_area_mm2=1.23456)], px_per_mm=10).evaluate(make_result(cm))
    assert v.reasons == ['scratch: 4 mm² in zone "frame" > 1.23 mm²']


def test_min_confidence_counts_only_sure_pixels():
    cm = np.zeros((40, 40), np.uint8)
    cm[10:20, 10:30] = 1  # 200 px
    conf = np.full(cm.shape, 0.9, np.float32)
    conf[10:20, 10:20] = 0.4  # half of the scratch is unsure
    conf[10:20, 20:25] = 0.5  # exactly at the threshold: counts
    rules = Rules(
        [
            {"class": "scratch", "max_area_px": 150, "min_confidence": 0.5},
            {"class": "scratch", "zone": "left", "max_area_px": 0, "min_confidence": 0.5},
            {"class": "scratch", "max_area_px": 150},
        ],
        zones={"left": rect(0, 0, 19, 39)},
    )
    assert rules.needs_confidence
    v = rules.evaluate(make_result(cm, conf))
    assert [d["area_px"] for d in v.details] == [100, 0, 200]
    assert v.reasons == ['scratch: 200 px in zone "frame" > 150 px']
    with pytest.raises(RulesError, match="confidence=True"):
        rules.evaluate(make_result(cm, None))


def test_blob_filters_two_blobs_of_5_and_50_px():
    cm = np.zeros((60, 60), np.uint8)
    cm[5, 5:10] = 1  # 5 px speck
    cm[30:35, 30:40] = 1  # 50 px blob
    res = make_result(cm)
    v = Rules(
        [
            Rule("scratch", max_blobs=1, min_blob_area_px=10),
            Rule("scratch", max_blobs=1),
            Rule("scratch", max_area_px=49, min_blob_area_px=6),
            Rule("scratch", max_blobs=0, min_blob_area_px=51),
        ]
    ).evaluate(res)
    assert [(d["area_px"], d["blobs"]) for d in v.details] == [(50, 1), (55, 2), (50, 1), (0, 0)]
    assert v.reasons == [
        'scratch: 2 blobs in zone "frame" > 1',
        'scratch: 50 px in zone "frame" > 49 px',
    ]
    # mm² blob limits use the scale: 10 px/mm → 0.1 mm² = 10 px.
    v = Rules([Rule("scratch", max_blobs=0, min_blob_area_mm2=0.1)], px_per_mm=10).evaluate(res)
    assert v.reasons == ['scratch: 1 blob in zone "frame" > 0']


def test_blobs_are_cut_at_the_zone_border():
    cm = np.zeros((30, 30), np.uint8)
    cm[10, 0:30] = 1  # one line through two zones
    rules = Rules(
        [Rule("scratch", zone=z, max_blobs=9) for z in ("a", "b", "frame")],
        zones={"a": rect(0, 0, 9, 29), "b": rect(20, 0, 29, 29)},
    )
    d = rules.evaluate(make_result(cm)).details
    assert [(x["area_px"], x["blobs"]) for x in d] == [(10, 1), (10, 1), (30, 1)]


def test_lists_of_classes_and_zones_expand_and_classes_bind_lazily():
    rules = Rules.from_dict(
        {
            "zones": {"a": rect(0, 0, 4, 4)},
            "rules": [{"class": ["scratch", "dent"], "zone": ["a", "frame"], "max_area_px": 3}],
        }
    )
    assert [(r.class_name, r.zone) for r in rules.rules] == [
        ("scratch", "a"),
        ("scratch", "frame"),
        ("dent", "a"),
        ("dent", "frame"),
    ]
    cm = np.zeros((10, 10), np.uint8)
    cm[0, 0:4] = 2
    assert rules.evaluate(make_result(cm)).reasons == [
        'dent: 4 px in zone "a" > 3 px',
        'dent: 4 px in zone "frame" > 3 px',
    ]
    other = [
        ClassInfo(0, "background", (0, 0, 0), index=0),
        ClassInfo(1, "dent", (1, 2, 3), index=1),
    ]
    with pytest.raises(RulesError, match=r"unknown class 'scratch'.*\['background', 'dent'\]"):
        rules.evaluate(SegResult(cm.clip(0, 1), None, other, np.array([96, 4])))


def test_ok_frame_and_zone_objects():
    rules = Rules(
        [Rule("dent", zone="z", max_area_px=0)],
        zones=[Zone("z", np.array(rect(1, 1, 3, 3), float))],
    )
    v = rules.evaluate(make_result(np.zeros((8, 8), np.uint8)))
    assert v.ok and v.reasons == [] and v.details[0]["area_px"] == 0 and v.details[0]["ok"]


def test_documented_example_loads_and_evaluates(tmp_path):
    page = Path(__file__).resolve().parents[2] / "docs" / "reference" / "rules.md"
    section = page.read_text(encoding="utf-8").split("# Inspection rules", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    path = tmp_path / "rules.yaml"
    path.write_text(block)
    rules = Rules.from_file(path, classes=NAMES)
    cm = np.zeros((720, 1280), np.uint8)
    cm[450:650, 100:480] = 3  # the label, in its zone
    cm[300, 500:781] = 1  # a 281 px scratch on the seal: 1.8 mm² at 12.5 px/mm
    res = SegResult(
        cm, np.ones(cm.shape, np.float32), CLASSES, np.bincount(cm.ravel(), minlength=4)
    )
    v = rules.evaluate(res)
    assert v.reasons == ['scratch: 1.8 mm² in zone "seal" > 0.5 mm²']  # as the page shows
    assert v.details[0]["area_px"] == 281 and v.details[0]["area_mm2"] == 1.7984


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 12),
    w=st.integers(1, 40),
    n_classes=st.sampled_from([1, 2, 4, 255]),
    box=st.tuples(*[st.floats(0, 1) for _ in range(4)]),
    thr=st.sampled_from([0.0, 0.5, 1.0]),
    min_blob=st.integers(0, 3),
    seed=st.integers(0, 2**16),
)
def test_property_edge_shapes_match_reference(h, w, n_classes, box, thr, min_blob, seed):
    rng = np.random.default_rng(seed)
    classes = [ClassInfo(i, f"c{i}", (i, i, i), index=i) for i in range(n_classes)]
    cm = rng.integers(0, n_classes, (h, w)).astype(np.uint8)
    conf = rng.choice(np.array([0.25, 0.5, 1.0], np.float32), size=(h, w))
    u0, u1 = sorted(box[:2])
    v0, v1 = sorted(box[2:])
    x0, x1 = int(np.floor(u0 * (w - 1) + 0.5)), int(np.floor(u1 * (w - 1) + 0.5))
    y0, y1 = int(np.floor(v0 * (h - 1) + 0.5)), int(np.floor(v1 * (h - 1) + 0.5))
    if x0 == x1 or y0 == y1:  # a degenerate rectangle is rejected; use the whole frame
        zones, ref = {}, np.ones((h, w), bool)
        zone = "frame"
    else:
        zones, zone = {"z": rect(x0, y0, x1, y1)}, "z"
        ref = np.zeros((h, w), bool)
        ref[y0 : y1 + 1, x0 : x1 + 1] = True
    cls = int(rng.integers(0, n_classes))
    spec = {"class": f"c{cls}", "zone": zone, "max_area_px": h * w, "max_blobs": h * w}
    spec |= {"min_confidence": thr} if thr else {}
    spec |= {"min_blob_area_px": min_blob} if min_blob else {}
    rules = Rules([spec], zones=zones, classes=classes)
    counts = np.bincount(cm.ravel(), minlength=n_classes)
    d = rules.evaluate(SegResult(cm, conf, classes, counts)).details[0]
    m = (cm == cls) & ref & (conf >= thr)
    sizes = [s for s in flood_blobs(m) if s >= min_blob]
    assert (d["area_px"], d["blobs"]) == (sum(sizes), len(sizes))


@pytest.mark.parametrize("thr", [None, 0.5])
def test_zone_with_many_classes_uses_one_histogram_and_agrees(thr):
    rng = np.random.default_rng(7)
    cm = rng.integers(0, 4, (50, 70)).astype(np.uint8)
    conf = rng.random((50, 70), dtype=np.float32)
    zone = {"polygon": [[5, 5], [60, 8], [40, 45]]}  # a triangle: a masked crop
    specs = [{"class": n, "zone": "z", "max_area_px": 10**6} for n in NAMES]
    if thr is not None:
        specs = [s | {"min_confidence": thr} for s in specs]
    many = Rules(specs, zones={"z": zone})
    few = [Rules([s], zones={"z": zone}) for s in specs]  # one class per zone: comparisons
    assert many._hist_keys and not few[0]._hist_keys  # the two measuring paths
    res = make_result(cm, conf)
    got = [d["area_px"] for d in many.evaluate(res).details]
    assert got == [r.evaluate(res).details[0]["area_px"] for r in few]
    inside = many.zone_masks(50, 70)["z"]
    assert sum(got) == (
        inside.area
        if thr is None
        else int((inside.crop(conf) >= thr)[inside.mask.view(bool)].sum())
    )


def test_blobs_separated_by_one_empty_line_stay_apart_and_diagonals_join():
    cm = np.zeros((200, 300), np.uint8)
    cm[10, 10] = cm[12, 10] = 1  # one empty row between: 2 blobs
    cm[50, 100] = cm[50, 102] = 1  # one empty column between: 2 blobs
    cm[150, 200] = cm[151, 201] = cm[152, 202] = 1  # a diagonal: 1 blob of 3
    cm[199, 299] = cm[0, 0] = 1  # corners: 2 blobs
    d = Rules([Rule("scratch", max_blobs=99)]).evaluate(make_result(cm)).details[0]
    assert (d["area_px"], d["blobs"]) == (9, 7)
    d = Rules([Rule("scratch", max_blobs=99, min_blob_area_px=3)]).evaluate(make_result(cm))
    assert (d.details[0]["area_px"], d.details[0]["blobs"]) == (3, 1)
