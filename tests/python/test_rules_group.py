"""Rules on a group of classes measured as one (``together: true``): area and blobs of the
union against an independent computation (numpy masks on the whole frame and OpenCV's
connected components with statistics), the split defect, the YAML form and the errors."""

from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import yaml

cv2 = pytest.importorskip("cv2")

from edgeseg.demo import DEMO_RULES  # noqa: E402
from edgeseg.errors import RulesError  # noqa: E402
from edgeseg.rules import Rule, Rules  # noqa: E402
from edgeseg.rules.measure import FrameMeasure  # noqa: E402
from edgeseg.runtime.result import ClassInfo, SegResult  # noqa: E402

NAMES = ["background", "scratch", "crack", "stain", "dent"]
CLASSES = [ClassInfo(i, n, (40 * i, 80, 200 - 40 * i), index=i) for i, n in enumerate(NAMES)]


def make_result(cmap: np.ndarray, conf: np.ndarray | None = None) -> SegResult:
    counts = np.bincount(cmap.reshape(-1), minlength=len(CLASSES)).astype(np.int64)
    return SegResult(cmap.astype(np.uint8), conf, CLASSES, counts)


def reference(mask: np.ndarray, min_blob: float) -> tuple[int, int]:
    """(area, blobs) of the 8-connected blobs of ``mask`` of at least ``min_blob`` px."""
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    sizes = stats[1:, cv2.CC_STAT_AREA]
    sizes = sizes[sizes >= min_blob]
    return int(sizes.sum()), len(sizes)


def split_scratch() -> np.ndarray:
    """A 3 × 20 px line, its left half read as scratch and its right half as crack."""
    cm = np.zeros((40, 60), np.uint8)
    cm[20:23, 10:20] = 1
    cm[20:23, 20:30] = 2
    return cm


@pytest.mark.parametrize("seed", range(8))
def test_random_groups_zones_and_thresholds_match_reference(seed):
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(20, 70)), int(rng.integers(20, 90))
    # Blobby maps (upscaled noise) so that blobs of different classes touch.
    small = rng.choice(5, size=(h // 4 + 1, w // 4 + 1), p=[0.5, 0.15, 0.15, 0.1, 0.1])
    cm = np.kron(small, np.ones((4, 4), np.uint8))[:h, :w].astype(np.uint8)
    noise = rng.random((h, w)) < 0.1
    cm[noise] = rng.integers(0, 5, int(noise.sum()))
    conf = rng.random((h, w), dtype=np.float32)
    zones, refs = {}, {"frame": np.ones((h, w), bool)}
    for k in range(2):
        pts = np.column_stack([rng.integers(0, w, 3), rng.integers(0, h, 3)])
        (ax, ay), (bx, by) = pts[1] - pts[0], pts[2] - pts[0]
        if abs(ax * by - ay * bx) < 4:  # too thin to be a zone
            continue
        zones[f"z{k}"] = pts.tolist()
        ref = np.zeros((h, w), np.uint8)
        cv2.fillPoly(ref, [pts.astype(np.int32)], 1)
        refs[f"z{k}"] = ref.astype(bool)
    specs = []
    for zone in refs:
        for _ in range(3):
            group = rng.choice(np.arange(1, 5), size=int(rng.integers(1, 5)), replace=False)
            spec = {"class": [NAMES[c] for c in group], "together": True, "zone": zone}
            thr = float(rng.choice([0.0, 0.4, 0.8]))
            spec |= {"min_confidence": thr} if thr else {}
            if rng.random() < 0.6:
                spec |= {"max_blobs": 10**6, "min_blob_area_px": int(rng.choice([0, 3, 9]))}
            else:
                spec |= {"max_area_px": 10**6}
            specs.append(spec)
    # Rules on every class of one zone without blob limits: areas from one histogram.
    specs += [
        {"class": n, "zone": "frame", "min_confidence": 0.4, "max_area_px": 10**6} for n in NAMES
    ]
    rules = Rules.from_dict({"zones": zones, "rules": specs}, classes=CLASSES)
    v = rules.evaluate(make_result(cm, conf))
    assert v.ok and len(v.details) == len(specs)
    for spec, d in zip(specs, v.details):
        names = spec["class"] if isinstance(spec["class"], list) else [spec["class"]]
        m = np.isin(cm, [NAMES.index(n) for n in names]) & refs[spec["zone"]]
        m &= conf >= spec.get("min_confidence", 0.0)
        if "max_blobs" in spec:
            want = reference(m, spec["min_blob_area_px"])
        else:
            want = (int(m.sum()), None)
        assert (d["area_px"], d["blobs"]) == want, spec
        assert d["class"] == "+".join(names)
        assert d["rule"] == f"{'+'.join(names)}@{spec['zone']}"


def test_split_defect_is_one_blob_together_and_two_specks_apart():
    spec = {
        "class": ["scratch", "crack"],
        "zone": "inspected",
        "max_blobs": 0,
        "min_blob_area_px": 40,
        "min_confidence": 0.5,
    }
    data = {"zones": {"inspected": [[2, 2], [57, 2], [57, 37], [2, 37]]}, "rules": [spec]}
    res = make_result(split_scratch(), np.full((40, 60), 0.9, np.float32))
    apart = Rules.from_dict(data, classes=CLASSES).evaluate(res)
    assert apart.ok  # 30 px of scratch and 30 px of crack: two specks under 40 px
    assert [(d["rule"], d["area_px"], d["blobs"]) for d in apart.details] == [
        ("scratch@inspected", 0, 0),
        ("crack@inspected", 0, 0),
    ]
    together = Rules.from_dict(
        data | {"rules": [spec | {"together": True}]}, classes=CLASSES
    ).evaluate(res)
    assert not together.ok
    assert together.reasons == ['scratch+crack: 1 blob in zone "inspected" > 0']
    (d,) = together.details
    assert (d["rule"], d["class"], d["area_px"], d["blobs"]) == (
        "scratch+crack@inspected",
        "scratch+crack",
        60,
        1,
    )
    named = Rules.from_dict(
        data | {"rules": [spec | {"together": True, "name": "line defect"}]}, classes=CLASSES
    ).evaluate(res)
    assert named.reasons == ['scratch+crack: 1 blob in zone "inspected" > 0 (rule "line defect")']
    assert named.details[0]["rule"] == "line defect"


def test_group_area_sums_its_classes_and_zones_still_expand():
    cm = split_scratch()
    cm[0:5, 0:5] = 3  # 25 px stain, outside the group
    rules = Rules(
        [
            {
                "class": ["scratch", "crack"],
                "together": True,
                "zone": ["frame", "left"],
                "max_area_px": 40,
                "name": "line",
            }
        ],
        zones={"left": [[0, 0], [19, 0], [19, 39], [0, 39]]},
        classes=CLASSES,
    )
    v = rules.evaluate(make_result(cm))
    assert [(d["rule"], d["area_px"]) for d in v.details] == [
        ("line:scratch+crack@frame", 60),
        ("line:scratch+crack@left", 30),
    ]
    assert v.reasons == [
        'scratch+crack: 60 px in zone "frame" > 40 px (rule "line:scratch+crack@frame")'
    ]


def test_together_with_one_class_is_the_same_as_without():
    cm = split_scratch()
    base = {"class": "scratch", "max_blobs": 0, "min_blob_area_px": 5}
    res = make_result(cm)
    plain = Rules([base], classes=CLASSES).evaluate(res)
    for one in ({"together": True}, {"together": True, "class": ["scratch"]}):
        grouped = Rules([base | one], classes=CLASSES)
        assert grouped.rules == Rules([base], classes=CLASSES).rules
        v = grouped.evaluate(res)
        assert (v.ok, v.reasons, v.details) == (plain.ok, plain.reasons, plain.details)
    assert plain.reasons == ['scratch: 1 blob in zone "frame" > 0']


def test_union_mask_is_made_once_per_zone_and_threshold():
    rules = Rules(
        [
            Rule(("scratch", "crack"), max_area_px=10**6, min_confidence=0.5),
            Rule(("scratch", "crack"), max_blobs=5, min_confidence=0.5),
            Rule(("scratch", "crack"), max_blobs=5),
        ],
        classes=CLASSES,
    )
    res = make_result(split_scratch(), np.full((40, 60), 0.9, np.float32))
    fm = FrameMeasure(
        res.class_map, res.confidence, res.counts_array, rules.zone_masks(40, 60), frozenset()
    )
    checks = rules._checks
    assert [fm.area(c) for c in checks] == [60, 60, 60]
    assert list(fm._class) == [("frame", 0.5, (1, 2))]  # the third area: the class counts
    assert [fm.blobs(c, 60) for c in checks[1:]] == [(60, 1), (60, 1)]
    # One union mask per zone and threshold, shared by the rules that ask for it.
    assert list(fm._class) == [("frame", 0.5, (1, 2)), ("frame", None, (1, 2))]


def test_yaml_round_trip_and_rule_objects(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(DEMO_RULES, sort_keys=False))
    text = path.read_text()
    assert "together: true" in text
    loaded = Rules.from_file(path, classes=["background", "scratch", "stain", "crack"])
    assert [r.classes for r in loaded.rules] == [("scratch", "crack"), ("stain",)]
    assert [r.class_name for r in loaded.rules] == ["scratch+crack", "stain"]
    zones = {n: z for n, z in loaded.zones.items() if n != "frame"}
    again = Rules(loaded.rules, zones=zones, classes=["background", "scratch", "stain", "crack"])
    assert again.rules == loaded.rules
    # The Python form: a tuple of class names is a group.
    rule = Rule(("scratch", "crack"), zone="inspected", max_blobs=0, min_blob_area_px=40)
    assert (rule.class_name, rule.classes, rule.label) == (
        "scratch+crack",
        ("scratch", "crack"),
        "scratch+crack@inspected",
    )
    assert rule == Rule(["scratch", "crack"], zone="inspected", max_blobs=0, min_blob_area_px=40)
    assert Rules([asdict(rule)], zones=zones).rules == [rule]  # the dataclass's own field names


def test_demo_rules_flag_the_split_scratch():
    names = ["background", "scratch", "stain", "crack"]
    classes = [ClassInfo(i, n, (i, i, i), index=i) for i, n in enumerate(names)]
    cm = np.zeros((100, 100), np.uint8)
    cm[50:53, 20:35] = 1
    cm[50:53, 35:50] = 3  # 45 px scratch + 45 px crack: one 90 px line defect
    res = SegResult(
        cm, np.ones(cm.shape, np.float32), classes, np.bincount(cm.ravel(), minlength=4)
    )
    v = Rules.from_dict(DEMO_RULES, classes=classes).evaluate(res)
    assert v.reasons == ['scratch+crack: 1 blob in zone "inspected" > 0']


@pytest.mark.parametrize(
    ("spec", "classes", "message"),
    [
        (
            {"class": ["scratch", "crak"], "together": True, "max_blobs": 0},
            NAMES,
            "line3.yaml: rule 1 (scratch+crak@frame): unknown class 'crak'; did you mean 'crack'?",
        ),
        (
            {"class": ["scratch", "crack"], "together": "yes", "max_blobs": 0},
            NAMES,
            "line3.yaml: rule 1: together must be true (measure the listed classes as one) or "
            "false, got 'yes'",
        ),
        (
            {"class": ["scratch", "crack", "scratch"], "together": True, "max_blobs": 0},
            NAMES,
            "line3.yaml: rule 1 (scratch+crack+scratch@frame): class 'scratch' is listed twice",
        ),
        (
            {"class": ["scratch", "crack"], "togther": True, "max_blobs": 0},
            NAMES,
            "line3.yaml: rule 1: unknown key 'togther'; did you mean 'together'?",
        ),
        (
            {"class": ["scratch", "crack"], "together": True},
            NAMES,
            "line3.yaml: rule 1 (scratch+crack@frame): no limit",
        ),
    ],
)
def test_errors_name_the_file_rule_and_class(tmp_path, spec, classes, message):
    path = tmp_path / "line3.yaml"
    path.write_text(yaml.safe_dump({"rules": [spec]}))
    with pytest.raises(RulesError) as e:
        Rules.from_file(path, classes=classes)
    assert message in str(e.value)


def test_unknown_group_class_found_on_the_first_result():
    rules = Rules([Rule(("scratch", "scuff"), max_blobs=0)])  # no classes yet: bound lazily
    with pytest.raises(RulesError, match=r"rule 1 \(scratch\+scuff@frame\): unknown class 'scuff'"):
        rules.evaluate(make_result(split_scratch()))
    with pytest.raises(RulesError, match="class must be a name or a list of names"):
        Rules([Rule(("scratch", 3), max_blobs=0)])


def test_documented_group_example_flags_the_split_scratch():
    page = Path(__file__).resolve().parents[2] / "docs" / "reference" / "rules.md"
    section = page.read_text(encoding="utf-8").split("## Groups of classes", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    data = yaml.safe_load(block)  # its rules, on a seal zone over the whole test frame
    data["zones"] = {"seal": [[0, 0], [59, 0], [59, 39], [0, 39]]}
    rules = Rules.from_dict(data, classes=CLASSES)
    res = make_result(split_scratch(), np.ones((40, 60), np.float32))
    assert rules.evaluate(res).reasons == ['scratch+crack: 1 blob in zone "seal" > 0']
