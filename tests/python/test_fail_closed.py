"""Fail closed: invalid (NaN/±Inf) model output never passes a part, and every model metadata
field is checked when the model opens (only ModelError comes out, naming file and field)."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pytest

from edgeseg import kernels
from edgeseg.camera import CameraLoop
from edgeseg.camera.cli import main as run_main
from edgeseg.camera.frame import Frame
from edgeseg.errors import InvalidResultError, ModelError, RulesError
from edgeseg.onnx_metadata import METADATA_FORMAT, to_props
from edgeseg.rules import Rules, Verdict
from edgeseg.runtime.model_info import _from_meta, load_model_info
from edgeseg.runtime.result import ClassInfo, SegResult
from edgeseg.sinks.base import LoopItem, make_record

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

SIZE = 32
SCENE = "synthetic://?width=64&height=48&seed=3"
CLASSES = [
    ClassInfo(0, "background", (0, 0, 0), index=0),
    ClassInfo(1, "defect", (255, 0, 0), index=1),
]
RULES = {"rules": [{"class": "defect", "max_area_px": 0}]}

# The fused postprocess counts non-finite logits per frame where the core reports them.
KERNEL_COUNTS = "nonfinite" in {f.name for f in dataclasses.fields(kernels.PostprocessResult)}
needs_counts = pytest.mark.skipif(
    not KERNEL_COUNTS,
    reason="this core's postprocess does not count non-finite logits "
    "(kernels.PostprocessResult has no 'nonfinite'), so Segmenter cannot mark results invalid",
)


def _meta(**over) -> dict:
    meta = {
        "edgeseg_format": METADATA_FORMAT,
        "model": "tiny",
        "num_classes": 2,
        "classes": [{"id": c.id, "name": c.name, "color": list(c.color)} for c in CLASSES],
        "input_size": [SIZE, SIZE],
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "scale": 1 / 255,
        "channel_order": "RGB",
        "layout": "NCHW",
        "resize": "stretch",
        "input_name": "images",
        "output_name": "logits",
        "dynamic_batch": False,
    }
    meta.update(over)
    return meta


def tiny_onnx(path: Path, output: str = "finite", props: dict | None = None) -> Path:
    """A 1×1-conv model (2 classes) whose logits are finite, all NaN (log of −1) or all +Inf
    (1/0), with edgeseg metadata (``props`` replaces the metadata strings)."""
    w = np.array([[[[1.0]], [[0.0]], [[-1.0]]], [[[-1.0]], [[0.0]], [[1.0]]]], np.float32)
    inits = [
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
    ]
    nodes = [helper.make_node("Conv", ["images", "w"], ["c"])]
    if output == "finite":
        nodes.append(helper.make_node("Identity", ["c"], ["logits"]))
    else:
        nodes.append(helper.make_node("Mul", ["c", "zero"], ["z"]))
        if output == "nan":  # log(0 − 1)
            nodes += [
                helper.make_node("Sub", ["z", "one"], ["m1"]),
                helper.make_node("Log", ["m1"], ["logits"]),
            ]
        else:  # 1 / 0
            nodes.append(helper.make_node("Div", ["one", "z"], ["logits"]))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2, SIZE, SIZE])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, props if props is not None else to_props(_meta()))
    onnx.save(model, str(path))
    return path


def invalid_result(nonfinite: int = 0, nonfinite_input: int = 0, h: int = 48, w: int = 64):
    """What a NaN/Inf model gives: class 0 everywhere, plus the non-finite counts."""
    cm = np.zeros((h, w), np.uint8)
    counts = np.array([h * w, 0], np.int64)
    return SegResult(
        cm,
        np.ones((h, w), np.float32),
        list(CLASSES),
        counts,
        frame=np.zeros((h, w, 3), np.uint8),
        nonfinite=nonfinite,
        nonfinite_input=nonfinite_input,
    )


class ScriptedSegmenter:
    """A segmenter that sees clean parts, except that its results for the calls ``bad(k)``
    carry the non-finite count a NaN-producing model leaves (class 0 everywhere)."""

    classes = CLASSES

    def __init__(self, bad) -> None:
        self.bad = bad
        self.calls = 0

    def predict(self, frame: np.ndarray, rgb: bool = False) -> SegResult:
        k, self.calls = self.calls, self.calls + 1
        h, w = frame.shape[:2]
        if self.bad(k):
            res = invalid_result(nonfinite=h * w, h=h, w=w)
            return dataclasses.replace(res, frame=frame)
        cm = np.zeros((h, w), np.uint8)  # a clean part
        counts = np.array([h * w, 0], np.int64)
        return SegResult(cm, None, list(CLASSES), counts, frame=frame)


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ---- row 1: NaN output → class 0, confidence 1 everywhere → used to pass every frame ----------
def test_nan_output_is_ng_with_rules_never_ok():
    rules = Rules.from_dict(RULES, CLASSES)
    res = invalid_result(nonfinite=48 * 64)
    assert not res.valid
    v = rules.evaluate(res)
    assert v is not None and not v.ok and v.label == "NG" and not v.valid
    assert v.reasons == ["model output not finite (3072 px)"]
    # the same class map with finite logits is OK: only the count makes it NG
    assert rules.evaluate(dataclasses.replace(res, nonfinite=0)).ok


def test_nan_frames_in_the_loop_are_ng_counted_and_carried(tmp_path):
    out = tmp_path / "r.jsonl"
    loop = CameraLoop(
        SCENE,
        ScriptedSegmenter(lambda k: True),
        sinks=[f"jsonl:{out}"],
        rules=Rules.from_dict(RULES, CLASSES),
        max_frames=20,
        max_invalid=0,
    )
    stats = loop.run()
    recs = _records(out)
    assert stats["frames"] == 20 and stats["invalid"] == 20
    assert [r["verdict"] for r in recs] == ["NG"] * 20
    assert all(r["valid"] is False for r in recs)
    assert recs[0]["invalid_reason"] == "model output not finite (3072 px)"
    assert recs[0]["reasons"] == ["model output not finite (3072 px)"]


def test_invalid_frames_are_ng_even_without_rules(tmp_path):
    out = tmp_path / "r.jsonl"
    seg = ScriptedSegmenter(lambda k: k % 2 == 1)
    stats = CameraLoop(SCENE, seg, sinks=[f"jsonl:{out}"], max_frames=6).run()
    recs = _records(out)
    assert stats["invalid"] == 3
    assert [r["verdict"] for r in recs] == [None, "NG"] * 3
    assert [r["valid"] for r in recs] == [True, False] * 3
    assert [r["invalid_reason"] for r in recs][:2] == [None, "model output not finite (3072 px)"]


def test_on_invalid_skip_gives_no_verdict_but_keeps_the_record(tmp_path):
    out = tmp_path / "r.jsonl"
    rules = Rules.from_dict({**RULES, "on_invalid": "skip"}, CLASSES)
    assert rules.evaluate(invalid_result(nonfinite=5)) is None
    loop = CameraLoop(
        SCENE, ScriptedSegmenter(lambda k: True), [f"jsonl:{out}"], rules=rules, max_frames=4
    )
    assert loop.on_invalid == "skip"
    stats = loop.run()
    recs = _records(out)
    assert stats["invalid"] == 4 and len(recs) == 4
    assert all(r["verdict"] is None and r["valid"] is False for r in recs)


def test_on_invalid_error_delivers_the_frame_then_stops(tmp_path):
    out = tmp_path / "r.jsonl"
    rules = Rules.from_dict({**RULES, "on_invalid": "error"}, CLASSES)
    with pytest.raises(InvalidResultError, match="model output not finite"):
        rules.evaluate(invalid_result(nonfinite=5))
    seg = ScriptedSegmenter(lambda k: k == 3)
    loop = CameraLoop(SCENE, seg, [f"jsonl:{out}"], rules=rules, max_frames=50)
    with pytest.raises(InvalidResultError, match="a frame with invalid output"):
        loop.run()
    recs = _records(out)
    assert [r["verdict"] for r in recs] == ["OK", "OK", "OK", "NG"]
    assert recs[-1]["valid"] is False


def test_max_invalid_stops_after_n_in_a_row_only(tmp_path):
    out = tmp_path / "r.jsonl"
    # invalid runs of 3 never reach 4; then 4 in a row stop the run
    pattern = [True, True, True, False] * 3 + [True] * 10
    seg = ScriptedSegmenter(lambda k: pattern[k] if k < len(pattern) else True)
    loop = CameraLoop(SCENE, seg, [f"jsonl:{out}"], max_invalid=4, max_frames=100)
    with pytest.raises(InvalidResultError, match="4 frames in a row") as e:
        loop.run()
    assert "ScriptedSegmenter" in str(e.value)
    recs = _records(out)
    assert len(recs) == 16 and recs[-1]["valid"] is False
    assert loop.stats.snapshot()["invalid"] == 13


def test_loop_and_rules_reject_unknown_policies():
    with pytest.raises(RulesError, match="on_invalid must be one of"):
        Rules.from_dict({**RULES, "on_invalid": "pass"}, CLASSES)
    with pytest.raises(ValueError, match="on_invalid"):
        CameraLoop(SCENE, ScriptedSegmenter(lambda k: False), on_invalid="ok")
    with pytest.raises(ValueError, match="max_invalid"):
        CameraLoop(SCENE, ScriptedSegmenter(lambda k: False), max_invalid=-1)
    with pytest.raises(ValueError, match="cannot be OK"):
        Verdict(ok=True, valid=False)


# ---- row 2: +Inf logits → 0×inf in the upsampling → parts of the frame silently class 0 ------
def test_partly_infinite_output_is_ng_and_input_reason_wins():
    rules = Rules.from_dict(RULES, CLASSES)
    part = rules.evaluate(invalid_result(nonfinite=17))
    assert not part.ok and part.reasons == ["model output not finite (17 px)"]
    both = rules.evaluate(invalid_result(nonfinite=17, nonfinite_input=3))
    assert both.reasons == ["model input not finite (3 values)"]


def _item(result: SegResult, verdict) -> LoopItem:
    frame = Frame(result.frame, 7, t_capture=time.time())
    return LoopItem(frame, result, verdict, make_record(frame, result, verdict, time.time()))


def test_sinks_keep_and_show_invalid_frames(tmp_path):
    from edgeseg.sinks import open_sink

    res = invalid_result(nonfinite=9)
    skipped = _item(res, None)  # on_invalid: skip
    assert skipped.record["valid"] is False
    archive = open_sink(f"archive:{tmp_path / 'a'}")
    archive.open()
    archive.write(skipped)
    archive.write(_item(dataclasses.replace(res, nonfinite=0), Verdict(ok=True)))
    (entry,) = archive.entries()
    kept = json.loads((entry / "record.json").read_text())
    assert kept["valid"] is False and kept["invalid_reason"] == "model output not finite (9 px)"
    images = open_sink(f"images:{tmp_path / 'i'}?only=ng&what=mask")
    images.open()
    images.write(skipped)
    assert len(list((tmp_path / "i").iterdir())) == 1

    serve = open_sink("serve:127.0.0.1:0", quiet=True)
    serve.open()
    try:
        serve.write(skipped)
        snap = serve.snapshot()
    finally:
        serve.close()
    assert snap["valid"] is False and snap["invalid_reason"] == "model output not finite (9 px)"
    assert snap["verdicts"][0]["label"] == "INVALID"
    page = (
        Path(__file__).parents[2] / "python" / "edgeseg" / "sinks" / "static" / "live.html"
    ).read_text()
    assert "s.valid === false" in page and 'id="invalid"' in page


# ---- row 3: malformed metadata → raw OverflowError/TypeError/IndexError/RecursionError ----------
DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize(
    "key, value, field",
    [
        ("classes", json.dumps([{"id": 0, "name": "bg", "color": [999, 0, 0]}]), "color"),
        ("classes", json.dumps([{"id": 0, "name": "bg", "color": [1e400, 0, 0]}]), "color"),
        ("input_size", "128", "input_size"),
        ("num_classes", "NaN", "num_classes"),
        ("mean", '"abc"', "mean"),
        ("classes", DEEP, "classes"),
        ("std", DEEP, "std"),
    ],
)
def test_malformed_metadata_raises_model_error(tmp_path, key, value, field):
    props = to_props(_meta())
    props[key] = value
    path = tiny_onnx(tmp_path / "m.onnx", props=props)
    with pytest.raises(ModelError) as e:
        load_model_info(path)
    msg = str(e.value)
    assert str(path) in msg and field in msg and "edgeseg export" in msg
    assert len(msg) < 600  # the value is shortened


def test_deeply_nested_engine_manifest_raises_model_error(tmp_path):
    eng = tmp_path / "m.engine"
    eng.write_bytes(b"\0")
    (tmp_path / "m.engine.json").write_text(DEEP)
    with pytest.raises(ModelError, match="nested too deeply"):
        load_model_info(eng)


# ---- row 4: loads, then every frame fails; `edgeseg run` exits 0 with "frames 0" --------------
@pytest.mark.parametrize(
    "over, field",
    [
        ({"mean": [float("nan"), 0.4, 0.4]}, "mean"),
        ({"std": [0.2, 0.0, 0.2]}, "std"),
        ({"mean": [0.4, 0.4]}, "mean"),
        ({"input_size": [0, 32]}, "input_size"),
        ({"input_size": [100000, 100000]}, "input_size"),
        ({"input_size": [16384, 16384]}, "input_size"),  # each side fits, the area does not
        ({"resize": "crop"}, "resize"),
        ({"channel_order": "RGBA"}, "channel_order"),
        ({"layout": "NHWC"}, "layout"),
    ],
)
def test_unusable_values_fail_at_load_naming_the_field(tmp_path, over, field):
    path = tiny_onnx(tmp_path / "m.onnx", props=to_props(_meta(**over)))
    with pytest.raises(ModelError) as e:
        load_model_info(path)
    msg = str(e.value)
    assert f"metadata {field} =" in msg and str(path) in msg
    other = {"mean": "std", "std": "mean"}.get(field)
    assert other is None or f"metadata {other} =" not in msg


def test_run_exits_nonzero_when_no_frame_was_processed(tmp_path, capsys):
    model = tiny_onnx(tmp_path / "m.onnx")
    shots = tmp_path / "shots"
    shots.mkdir()
    for k in range(3):
        (shots / f"{k}.png").write_bytes(b"not a png")
    code = run_main(["--model", str(model), "--source", str(shots), "--stats-every", "0"])
    err = capsys.readouterr().err
    assert code == 1 and "no frame was processed" in err


def test_run_on_a_valid_model_processes_and_exits_zero(tmp_path, capsys):
    model = tiny_onnx(tmp_path / "m.onnx")
    out = tmp_path / "r.jsonl"
    argv = ["--model", str(model), "--source", SCENE, "--max-frames", "3", "--stats-every", "0"]
    assert run_main([*argv, "--sink", f"jsonl:{out}"]) == 0
    recs = _records(out)
    assert len(recs) == 3 and all(r["valid"] is True for r in recs)


# ---- row 5: duplicate class names → counts of two classes merged under one name ---------------
@pytest.mark.parametrize(
    "classes, needle",
    [
        (
            [
                {"id": 0, "name": "a", "color": [0, 0, 0]},
                {"id": 1, "name": "a", "color": [1, 1, 1]},
            ],
            "name",
        ),
        (
            [
                {"id": 4, "name": "a", "color": [0, 0, 0]},
                {"id": 4, "name": "b", "color": [1, 1, 1]},
            ],
            "id",
        ),
    ],
)
def test_duplicate_class_names_or_ids_are_rejected(tmp_path, classes, needle):
    path = tiny_onnx(tmp_path / "m.onnx", props=to_props(_meta(classes=classes)))
    with pytest.raises(ModelError, match=rf"classes\[1\]\.{needle} = .*no other class"):
        load_model_info(path)


def test_valid_metadata_still_loads(tmp_path):
    info = load_model_info(tiny_onnx(tmp_path / "m.onnx"))
    assert info.class_names == ["background", "defect"] and info.input_size == (SIZE, SIZE)
    assert info.channel_order == "rgb" and info.resize == "stretch" and not info.dynamic_batch


# ---- property: any metadata → a ModelInfo or ModelError, nothing else -------------------------
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
)
_json = st.recursive(
    _leaf,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6), kids, max_size=4)
    ),
    max_leaves=20,
)
_field_keys = st.sampled_from(
    [
        "classes",
        "num_classes",
        "input_size",
        "mean",
        "std",
        "resize",
        "channel_order",
        "layout",
        "dynamic_batch",
        "model",
    ]
)


def _near_valid() -> st.SearchStrategy:
    """Valid metadata with some fields replaced by random JSON values."""
    return st.dictionaries(_field_keys, _json, max_size=4).map(lambda d: {**_meta(), **d})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(meta=_near_valid() | _json)
def test_property_metadata_values_give_model_error_only(meta):
    try:
        info = _from_meta(meta, Path("m.onnx"), "onnx")
    except ModelError as e:
        assert "m.onnx" in str(e)
    else:
        assert 1 <= info.num_classes <= 256 and all(0 < s <= 16384 for s in info.input_size)
        assert all(np.isfinite(info.mean)) and all(s > 0 for s in info.std)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(key=_field_keys, raw=st.binary(max_size=64) | _json.map(json.dumps))
def test_property_metadata_bytes_give_model_error_only(tmp_path, key, raw):
    props = to_props(_meta())
    props[key] = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    path = tiny_onnx(tmp_path / "m.onnx", props=props)
    try:
        load_model_info(path)
    except ModelError as e:
        assert str(path) in str(e)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.binary(max_size=64) | _json.map(json.dumps) | _near_valid().map(json.dumps))
def test_property_engine_manifest_bytes_give_model_error_only(tmp_path, raw):
    eng = tmp_path / "m.engine"
    eng.write_bytes(b"\0")
    text = raw if isinstance(raw, bytes) else raw.encode()
    if not isinstance(raw, bytes) and text.startswith(b"{") and b"preprocessing" not in text:
        m = json.loads(text)
        text = json.dumps(
            {
                "format": "edgeseg-engine/1",
                "preprocessing": m,
                "classes": m.get("classes"),
                "num_classes": m.get("num_classes"),
            }
        ).encode()
    (tmp_path / "m.engine.json").write_bytes(text)
    try:
        load_model_info(eng)
    except ModelError as e:
        assert "m.engine" in str(e)


# ---- end to end: a real ONNX model whose output is NaN / +Inf ---------------------------------
@needs_counts
@pytest.mark.parametrize("output", ["nan", "inf"])
def test_segmenter_marks_nonfinite_output_invalid_and_rules_say_ng(tmp_path, output):
    from edgeseg.runtime import Segmenter

    seg = Segmenter(tiny_onnx(tmp_path / "m.onnx", output), threads=1)
    frame = np.random.default_rng(0).integers(0, 255, (48, 64, 3), np.uint8)
    res = seg.predict(frame)
    assert not res.valid and res.nonfinite == 48 * 64
    v = Rules.from_dict(RULES, seg.classes).evaluate(res)
    assert not v.ok and v.reasons == [f"model output not finite ({48 * 64} px)"]
    assert seg.predict(frame).invalid_reason == "model output not finite (3072 px)"
    good = Segmenter(tiny_onnx(tmp_path / "g.onnx"), threads=1).predict(frame)
    assert good.valid and good.nonfinite == 0


@needs_counts
def test_run_stops_a_nan_model_with_a_clear_error(tmp_path, capsys):
    model = tiny_onnx(tmp_path / "nan.onnx", "nan")
    out = tmp_path / "r.jsonl"
    rules = tmp_path / "rules.yaml"
    rules.write_text(json.dumps(RULES))
    argv = ["--model", str(model), "--source", SCENE, "--rules", str(rules), "--stats-every", "0"]
    code = run_main([*argv, "--sink", f"jsonl:{out}", "--max-invalid", "5", "--json"])
    cap = capsys.readouterr()
    assert code == 1
    assert f"model {model}: 5 frames in a row with invalid output" in cap.err
    final = json.loads(cap.out)
    # the fifth invalid frame stops the run; a frame already in flight (pipelined backends)
    # still finishes, as NG, so that no result is lost
    assert 5 <= final["invalid"] <= 6 and final["stopped_by"] == "error"
    recs = _records(out)
    assert len(recs) == final["invalid"] == final["frames"]
    assert all(r["verdict"] == "NG" for r in recs) and not any(r["valid"] for r in recs)


@needs_counts
def test_predict_reports_invalid_images(tmp_path, capsys):
    import cv2

    from edgeseg.runtime.cli import main as predict_main

    img = tmp_path / "a.png"
    cv2.imwrite(str(img), np.full((40, 40, 3), 90, np.uint8))
    code = predict_main(
        [
            str(tiny_onnx(tmp_path / "inf.onnx", "inf")),
            str(img),
            "-o",
            str(tmp_path / "o"),
            "--no-progress",
        ]
    )
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert code == 1 and "model output not finite" in summary["failed"][0]["error"]
    assert not (tmp_path / "o" / "a_mask.png").exists()


def test_opcua_publishes_valid_and_the_reason(tmp_path):
    asyncua = pytest.importorskip("asyncua", reason="needs asyncua: pip install 'edgeseg[line]'")
    import asyncio

    from line_helpers import free_port

    from edgeseg.sinks import open_sink
    from edgeseg.sinks.opcua import NAMESPACE

    async def read(url: str, names: list[str]) -> dict:
        async with asyncua.Client(url=url, timeout=10) as client:
            idx = await client.get_namespace_index(NAMESPACE)
            out = {}
            for name in names:
                node = await client.nodes.objects.get_child([f"{idx}:EdgeSeg", f"{idx}:{name}"])
                out[name] = await node.read_value()
            return out

    url = f"opc.tcp://127.0.0.1:{free_port()}"
    sink = open_sink(f"opcua:{url}")
    sink.open()
    try:
        res = invalid_result(nonfinite=11)
        sink.write(_item(res, Verdict(ok=False, reasons=[res.invalid_reason], valid=False)))
        got = asyncio.run(read(url, ["Verdict", "Ok", "Valid", "InvalidReason"]))
        assert got == {
            "Verdict": "NG",
            "Ok": False,
            "Valid": False,
            "InvalidReason": "model output not finite (11 px)",
        }
        sink.write(_item(dataclasses.replace(res, nonfinite=0), Verdict(ok=True)))
        got = asyncio.run(read(url, ["Ok", "Valid", "InvalidReason"]))
        assert got == {"Ok": True, "Valid": True, "InvalidReason": ""}
    finally:
        sink.close()
