"""Class maps: classes.yaml and CVAT labelmap.txt validation."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg import DatasetError, EdgesegError
from edgeseg.data import VOID, ClassMap


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_classes_yaml_roundtrip(tmp_path):
    p = write(
        tmp_path / "classes.yaml",
        "- {id: 0, name: background, color: [0, 0, 0]}\n"
        "- {id: 2, name: crack, color: [0, 0, 255]}\n"
        "- {id: 1, name: scratch, color: [255, 0, 0]}\n"
        "- {id: 255, name: void, color: [224, 224, 192]}\n",
    )
    cm = ClassMap.load(p)
    assert cm.ids == [0, 1, 2] and cm.names == ["background", "scratch", "crack"]
    assert cm.void_color == (224, 224, 192)
    assert cm.by_color((0, 0, 255)).name == "crack" and "scratch" in cm
    assert cm.mask_dtype == np.uint8
    cm.save(tmp_path / "again.yaml")
    assert ClassMap.load(tmp_path / "again.yaml") == cm
    assert "color: [255, 0, 0]" in (tmp_path / "again.yaml").read_text()
    rgb = cm.colorize(np.array([[0, 1], [2, VOID]], np.uint8))
    assert rgb[0, 1].tolist() == [255, 0, 0] and rgb[1, 1].tolist() == [224, 224, 192]


def test_classes_yaml_accepts_mapping_and_missing_colours(tmp_path):
    p = write(tmp_path / "c.yaml", "classes:\n  - {id: 0, name: bg}\n  - {id: 1, name: dent}\n")
    cm = ClassMap.load(p)
    assert cm[1].color != cm[0].color


@pytest.mark.parametrize(
    "body, words",
    [
        ("- {id: 0, name: a, color: [0,0,0]}\n- {id: 0, name: b, color: [1,1,1]}\n", ["id 0"]),
        ("- {id: 0, name: a, color: [0,0,0]}\n- {id: 1, name: a, color: [1,1,1]}\n", ["'a'"]),
        ("- {id: 0, name: a, color: [9,9,9]}\n- {id: 1, name: b, color: [9,9,9]}\n", ["color"]),
        ("- {id: 0, name: a, color: [0,0,300]}\n", ["0..255"]),
        ("- {id: 0, name: a, colour: [0,0,0]}\n", ["colour"]),
        ("- {id: 1.5, name: a}\n", ["not an integer"]),
        ("[]\n", ["no classes"]),
        ("id: [\n", ["YAML"]),
    ],
)
def test_classes_yaml_invalid(tmp_path, body, words):
    p = write(tmp_path / "classes.yaml", body)
    with pytest.raises(DatasetError) as e:
        ClassMap.load(p)
    assert str(p) in str(e.value)
    for w in words:
        assert w in str(e.value)
    assert isinstance(e.value, EdgesegError)


def test_void_id_is_reserved():
    from edgeseg.data import ClassInfo

    with pytest.raises(DatasetError, match="255"):
        ClassMap([ClassInfo(0, "bg", (0, 0, 0)), ClassInfo(255, "x", (1, 2, 3))])


def test_labelmap(tmp_path):
    p = write(
        tmp_path / "labelmap.txt",
        "# label:color_rgb:parts:actions\nbackground:0,0,0::\n\nscratch:250,50,83::\n"
        "stain:51,221,255:spot:\n",
    )
    cm = ClassMap.from_labelmap(p)
    assert [(c.id, c.name, c.color) for c in cm] == [
        (0, "background", (0, 0, 0)),
        (1, "scratch", (250, 50, 83)),
        (2, "stain", (51, 221, 255)),
    ]
    assert ClassMap.from_labelmap(write(tmp_path / "again.txt", cm.labelmap_text())) == cm


def test_labelmap_duplicate_colour_names_file_line_and_fix(tmp_path):
    p = write(tmp_path / "labelmap.txt", "background:0,0,0::\na:1,2,3::\nb:1,2,3::\n")
    with pytest.raises(DatasetError) as e:
        ClassMap.from_labelmap(p)
    msg = str(e.value)
    assert f"{p}:3" in msg and "'a'" in msg and "line 2" in msg and "own colour" in msg


def test_labelmap_bad_colour(tmp_path):
    p = write(tmp_path / "labelmap.txt", "background:0,0::\n")
    with pytest.raises(DatasetError, match=r"labelmap.txt:1"):
        ClassMap.from_labelmap(p)
