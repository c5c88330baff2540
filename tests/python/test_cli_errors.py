"""The shared error handling of the edgeseg subcommands (edgeseg._cli.guarded)."""

import pytest

from edgeseg import DatasetError
from edgeseg._cli import EXIT_ERROR, guarded
from edgeseg.export import cli as export_cli


def test_guarded_passes_the_result_through():
    assert guarded("edgeseg x", lambda: {"a": 1}) == (True, {"a": 1})


def test_guarded_reports_edgeseg_errors_on_one_line(capsys):
    def fail():
        raise DatasetError("/data/x: the val split is empty; list images in splits/val.txt")

    assert guarded("edgeseg eval", fail) == (False, None)
    err = capsys.readouterr().err
    assert (
        err == "edgeseg eval: error: /data/x: the val split is empty; list images in "
        "splits/val.txt\n"
    )


@pytest.mark.parametrize(
    ("extra", "hint"),
    [
        ("quant", "install the extra: pip install 'edgeseg[quant]'"),
        ("train,export", "install the extras: pip install 'edgeseg[train,export]'"),
    ],
)
def test_guarded_names_the_extra_for_a_missing_module(capsys, extra, hint):
    def fail():
        raise ImportError("No module named 'onnx'")

    assert guarded("edgeseg quantize", fail, extra=extra) == (False, None)
    assert capsys.readouterr().err == f"edgeseg quantize: error: No module named 'onnx'; {hint}\n"


def test_guarded_lets_bugs_through():
    with pytest.raises(ImportError):
        guarded("edgeseg build", lambda: __import__("no_such_module_edgeseg"))
    with pytest.raises(ZeroDivisionError):
        guarded("edgeseg build", lambda: 1 / 0, extra="quant")


def test_a_subcommand_exits_2_with_the_message(tmp_path, capsys):
    missing = tmp_path / "nope"
    assert export_cli.main([str(missing), "-o", str(tmp_path / "m.onnx")]) == EXIT_ERROR == 2
    err = capsys.readouterr().err
    assert err.startswith(f"edgeseg export: error: {missing}") and "run directory" in err
    assert not (tmp_path / "m.onnx").exists()
