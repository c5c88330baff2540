"""The accuracy suite's command line: variants of the default recipe."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("yaml")

TOOL = Path(__file__).resolve().parents[2] / "tools" / "bench_accuracy.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_accuracy", TOOL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_variant_is_one_setting_parsed_as_yaml(bench):
    assert bench.parse_variant("zoom=[0.5, 1]") == ("default zoom=[0.5, 1]", {"zoom": [0.5, 1]})
    assert bench.parse_variant("crop-focus=0.5") == ("default crop_focus=0.5", {"crop_focus": 0.5})
    name, overrides = bench.parse_variant("model_kwargs={width: 0.5}")
    assert overrides == {"model_kwargs": {"width": 0.5}}


@pytest.mark.parametrize(
    "text, says",
    [
        ("zooom=[0.5, 1]", "KEY a TrainConfig setting"),
        ("zoom", "use KEY=VALUE"),
        ("zoom=[0.5, 1", "VALUE is not YAML"),
    ],
)
def test_bad_variant_names_the_flag_and_the_settings(bench, text, says):
    with pytest.raises(SystemExit) as e:
        bench.parse_variant(text)
    assert f"--variant {text!r}" in str(e.value) and says in str(e.value)
    if "setting" in says:
        assert "zoom" in str(e.value) and "crop_focus" in str(e.value)  # the valid keys
