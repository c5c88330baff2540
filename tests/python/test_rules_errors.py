"""Bad rules files: every problem is a RulesError naming the file, the rule or zone and the fix."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

pytest.importorskip("cv2")

from edgeseg.errors import EdgesegError, RulesError  # noqa: E402
from edgeseg.rules import Rule, Rules  # noqa: E402
from edgeseg.rules.zones import polygon_problem  # noqa: E402
from edgeseg.runtime.result import ClassInfo, SegResult  # noqa: E402

NAMES = ["background", "scratch", "dent"]
SQUARE = [[10, 10], [60, 10], [60, 40], [10, 40]]


def load(tmp_path, data: dict, classes=NAMES) -> Rules:
    path = tmp_path / "line3.yaml"
    path.write_text(yaml.safe_dump(data))
    return Rules.from_file(path, classes=classes)


def error(tmp_path, data: dict, classes=NAMES) -> str:
    with pytest.raises(RulesError) as e:
        load(tmp_path, data, classes)
    msg = str(e.value)
    assert msg.startswith(str(tmp_path / "line3.yaml") + ": "), msg
    return msg


def one(**rule) -> dict:
    return {"px_per_mm": 10, "zones": {"seal": SQUARE}, "rules": [rule]}


def test_rules_error_is_an_edgeseg_error():
    assert issubclass(RulesError, EdgesegError)


def test_unknown_class_lists_the_models_classes(tmp_path):
    msg = error(tmp_path, one(**{"class": "scrach", "zone": "seal", "max_area_px": 5}))
    assert "rule 1 (scrach@seal): unknown class 'scrach'; did you mean 'scratch'?" in msg
    assert "the model's classes are ['background', 'scratch', 'dent']" in msg
    infos = [ClassInfo(i, n, (0, 0, 0), index=i) for i, n in enumerate(NAMES)]
    with pytest.raises(RulesError, match="unknown class 'rust'"):
        load(tmp_path, one(**{"class": "rust", "max_area_px": 5}), classes=infos)


def test_unknown_zone_suggests_the_close_one(tmp_path):
    msg = error(tmp_path, one(**{"class": "dent", "zone": "sael", "max_area_px": 5}))
    assert "unknown zone 'sael'; did you mean 'seal'? the zones are ['frame', 'seal']" in msg


@pytest.mark.parametrize(
    ("data", "want"),
    [
        ({"zone": {}, "rules": []}, "unknown key 'zone'; did you mean 'zones'?"),
        (
            one(**{"class": "dent", "max_aera_mm2": 1}),
            "rule 1: unknown key 'max_aera_mm2'; did you mean 'max_area_mm2'?",
        ),
        (
            one(**{"class": "dent", "min_confidnce": 0.5, "max_blobs": 0}),
            "did you mean 'min_confidence'?",
        ),
        (
            {"zones": {"seal": {"polgon": SQUARE}}, "rules": [{"class": "dent", "max_blobs": 0}]},
            "zone 'seal': unknown key 'polgon'; did you mean 'polygon'?",
        ),
        (one(**{"class": "dent", "colour": "red", "max_blobs": 0}), "valid keys are ['name',"),
    ],
)
def test_unknown_keys_suggest_the_valid_key(tmp_path, data, want):
    assert want in error(tmp_path, data)


def test_self_intersecting_polygon(tmp_path):
    bowtie = [[10, 10], [60, 40], [60, 10], [10, 40]]
    data = {"zones": {"seal": bowtie}, "rules": [{"class": "dent", "max_blobs": 0}]}
    msg = error(tmp_path, data)
    assert "zone 'seal': it intersects itself: edge (10, 10)-(60, 40) meets edge" in msg
    assert "list the vertices in order around the outline" in msg


@pytest.mark.parametrize(
    ("points", "want"),
    [
        ([[0, 0], [5, 5]], "at least 3 vertices, got 2"),
        ([[0, 0], [5, 0], [5, 0], [0, 5]], "vertex 1 (5, 0) repeats"),
        ([[0, 0], [5, 5], [10, 10]], "no area"),
        ([[0, 0], [10, 0], [5, 0], [5, 5]], "intersects itself"),  # folds back on itself
        ([[0, 0], [10, 0], [10, 10], [5, 0.5], [0, 10]], None),  # concave: fine
        ([[0, 0], [5, 0], [10, 0], [10, 10], [0, 10]], None),  # collinear vertex: fine
        ([[0, 0], [10, 0], [10, 10], [0, 10], [10, 5]], "intersects itself"),
    ],
)
def test_polygon_problems(points, want):
    got = polygon_problem(np.array(points, float))
    assert (got is None) if want is None else (want in got), got


def test_zone_out_of_frame_at_first_frame_or_with_frame_size(tmp_path):
    data = {"zones": {"seal": [[1200, 600], [1300, 600], [1300, 700]]}, "rules": []}
    data["rules"] = [{"class": "dent", "zone": "seal", "max_blobs": 0}]
    rules = load(tmp_path, data)  # frame size unknown yet: loads
    cm = np.zeros((720, 1280), np.uint8)
    res = SegResult(
        cm,
        None,
        [ClassInfo(i, n, (0, 0, 0), index=i) for i, n in enumerate(NAMES)],
        np.array([cm.size, 0, 0]),
    )
    with pytest.raises(RulesError) as e:
        rules.evaluate(res)
    msg = str(e.value)
    assert "zone 'seal': vertex (1300, 600) is outside the 1280×720 frame" in msg
    assert "'normalized: true'" in msg and str(tmp_path / "line3.yaml") in msg
    rules.check_frame_size((1400, 800))  # fits a bigger frame
    assert "outside the 1280×720 frame" in error(tmp_path, {**data, "frame_size": [1280, 720]})


def test_normalized_outside_0_1_and_negative_pixels(tmp_path):
    norm = {"polygon": [[0.1, 0.1], [1.2, 0.1], [0.5, 0.9]], "normalized": True}
    msg = error(tmp_path, {"zones": {"lid": norm}, "rules": [{"class": "dent", "max_blobs": 0}]})
    assert "zone 'lid': normalized vertex (1.2, 0.1) is outside 0..1" in msg
    neg = [[-5, 0], [10, 0], [10, 10]]
    msg = error(tmp_path, {"zones": {"lid": neg}, "rules": [{"class": "dent", "max_blobs": 0}]})
    assert "vertex (-5, 0) is outside the frame (negative)" in msg


@pytest.mark.parametrize(
    ("rule", "want"),
    [
        ({"max_area_px": -3}, "rule 1 (dent@frame): max_area_px is negative (-3)"),
        ({"min_area_mm2": -0.5}, "min_area_mm2 is negative"),
        ({"max_blobs": 1.5}, "max_blobs must be a whole number"),
        ({"max_area_px": "big"}, "max_area_px must be a number ≥ 0, got 'big'"),
        (
            {"min_area_px": 50, "max_area_px": 10},
            "the minimum area (50 px) is larger than the maximum (10 px); swap them",
        ),
        ({"min_area_mm2": 2, "max_area_px": 150}, "the minimum area (2 mm²) is larger"),
        ({"min_area_px": 5, "min_area_mm2": 1}, "give min_area_px or min_area_mm2, not both"),
        ({"min_confidence": 1.5, "max_blobs": 0}, "min_confidence must be in 0..1"),
        ({"min_confidence": 0.5}, "no limit; give one of min_area_px"),
        ({"px_per_mm": 0, "max_area_mm2": 1}, "px_per_mm must be > 0"),
    ],
)
def test_bad_limits(tmp_path, rule, want):
    assert want in error(tmp_path, one(**{"class": "dent", **rule}))


@pytest.mark.parametrize("key", ["max_area_mm2", "min_area_mm2", "min_blob_area_mm2"])
def test_mm2_without_a_scale(tmp_path, key):
    data = {"rules": [{"class": "dent", "max_blobs": 3, key: 1.0}]}
    msg = error(tmp_path, data)
    stem = key[: -len("_mm2")]
    assert f"rule 1 (dent@frame): {stem}_mm2 needs a scale; add 'px_per_mm:" in msg
    assert f"(or use {stem}_px)" in msg
    # The same rule with a per-rule scale loads.
    data["rules"][0]["px_per_mm"] = 4
    assert len(load(tmp_path, data)) == 1


def test_file_and_structure_problems(tmp_path):
    with pytest.raises(RulesError, match=r"missing\.yaml: cannot read the rules file"):
        Rules.from_file(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - class: dent\n    max_blobs: [0\n")
    with pytest.raises(RulesError, match=r"bad\.yaml: not valid YAML at line \d+, column \d+"):
        Rules.from_file(bad)
    assert "missing 'rules:'" in error(tmp_path, {"zones": {}})
    assert "'rules' must be a non-empty list" in error(tmp_path, {"rules": []})
    assert "missing 'class: <class name>'" in error(tmp_path, {"rules": [{"max_blobs": 0}]})
    frame = {"zones": {"frame": SQUARE}, "rules": [{"class": "dent", "max_blobs": 0}]}
    assert "'frame' is the built-in whole-frame zone" in error(tmp_path, frame)
    size = {"frame_size": [1280], "rules": [{"class": "dent", "max_blobs": 0}]}
    assert "frame_size must be [width, height]" in error(tmp_path, size)


def test_python_objects_are_checked_the_same_way():
    with pytest.raises(RulesError, match=r"<rules>: rule 2 \(dent@frame\): max_area_px is neg"):
        Rules([Rule("dent", max_blobs=0), Rule("dent", max_area_px=-1)])
    with pytest.raises(RulesError, match="zone 'z' is defined twice"):
        from edgeseg.rules import Zone

        z = Zone("z", np.array(SQUARE, float))
        Rules([Rule("dent", max_blobs=0)], zones=[z, z])
