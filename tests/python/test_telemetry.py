"""Prometheus metrics: the Telemetry API, the text exposition (parsed with prometheus_client's
own parser), and a camera loop that feeds them."""

from __future__ import annotations

import math
import uuid

import pytest

prom = pytest.importorskip(
    "prometheus_client", reason="needs prometheus-client: pip install 'edgeseg[line]'"
)
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from edgeseg.errors import EdgesegError  # noqa: E402
from edgeseg.rules.verdict import Verdict  # noqa: E402
from edgeseg.telemetry import BUCKETS, MAX_REASONS, Telemetry, reason_class, render  # noqa: E402


def _families() -> dict:
    body, content_type = render()
    assert content_type.startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(body.decode("utf-8"))}


def _value(families: dict, family: str, sample: str, **labels) -> float:
    for s in families[family].samples:
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise KeyError(f"{sample} {labels} not in the exposition")


def _camera() -> str:
    return f"cam-{uuid.uuid4().hex[:8]}"  # one registry per process: tests use fresh labels


def test_counters_and_histograms_parse_back():
    cam = _camera()
    t = Telemetry(cam)
    t.frame({"preprocess": 0.0015, "infer": 0.012, "postprocess": 0.0009, "rules": 0.0002})
    t.frame({"infer": 0.040, "sinks": 0.003, "bogus": 1.0, "total": float("nan")})
    t.drop()
    t.drop(2)
    t.reconnect()
    t.reload(True)
    t.reload(False)
    t.reload(False)
    fam = _families()
    assert _value(fam, "edgeseg_frames", "edgeseg_frames_total", camera=cam) == 2
    assert _value(fam, "edgeseg_frames_dropped", "edgeseg_frames_dropped_total", camera=cam) == 3
    assert (
        _value(fam, "edgeseg_source_reconnects", "edgeseg_source_reconnects_total", camera=cam) == 1
    )
    assert _value(fam, "edgeseg_reloads", "edgeseg_reloads_total", camera=cam, result="ok") == 1
    assert _value(fam, "edgeseg_reloads", "edgeseg_reloads_total", camera=cam, result="failed") == 2
    h = "edgeseg_stage_seconds"
    assert _value(fam, h, f"{h}_count", camera=cam, stage="infer") == 2
    assert _value(fam, h, f"{h}_sum", camera=cam, stage="infer") == pytest.approx(0.052)
    # 12 ms falls in the 15 ms bucket, 40 ms only from the 50 ms bucket on
    assert _value(fam, h, f"{h}_bucket", camera=cam, stage="infer", le="0.015") == 1
    assert _value(fam, h, f"{h}_bucket", camera=cam, stage="infer", le="0.05") == 2
    assert _value(fam, h, f"{h}_count", camera=cam, stage="preprocess") == 1
    assert _value(fam, h, f"{h}_count", camera=cam, stage="sinks") == 1
    with pytest.raises(KeyError):  # an unknown stage and a NaN were not observed
        _value(fam, h, f"{h}_count", camera=cam, stage="bogus")
    assert _value(fam, h, f"{h}_count", camera=cam, stage="total") == 0
    # buckets suited to stages of 1 to 100 ms
    les = sorted(
        float(s.labels["le"])
        for s in fam[h].samples
        if s.name == f"{h}_bucket" and s.labels["camera"] == cam and s.labels["stage"] == "infer"
    )
    assert les[:-1] == list(BUCKETS) and math.isinf(les[-1])
    assert sum(0.001 <= b <= 0.1 for b in BUCKETS) >= 10


def test_verdicts_by_ok_and_reason_class_with_bounded_labels():
    cam = _camera()
    t = Telemetry(cam)
    t.verdict(True, "")
    t.verdict(True, "ignored for OK")
    t.verdict(False, 'scratch: 12 px in zone "seal" > 0 px')
    t.verdict(False, "scratch")
    for i in range(MAX_REASONS + 5):
        t.verdict(False, f"class{i}")
    fam = _families()
    v = "edgeseg_verdicts"
    assert _value(fam, v, f"{v}_total", camera=cam, verdict="ok", reason="") == 2
    assert _value(fam, v, f"{v}_total", camera=cam, verdict="ng", reason="scratch") == 2
    reasons = {
        s.labels["reason"]
        for s in fam[v].samples
        if s.name == f"{v}_total" and s.labels["camera"] == cam
    }
    assert len(reasons) == MAX_REASONS + 1  # the bound, then everything else is "other"
    assert _value(fam, v, f"{v}_total", camera=cam, verdict="ng", reason="other") >= 5


def test_reason_class_of_verdicts():
    assert reason_class(None) == ""
    assert reason_class(Verdict(ok=True)) == ""
    detail = {"rule": "r1", "class": "scratch", "ok": False}
    ok_detail = {"rule": "r0", "class": "dent", "ok": True}
    assert reason_class(Verdict(False, ["scratch: 3 px"], [ok_detail, detail])) == "scratch"
    assert reason_class(Verdict(False, ["model output NaN"], valid=False)) == "invalid_output"
    assert reason_class(Verdict(False, ["rules could not be evaluated: KeyError"])) == (
        "rules_error"
    )


class _Counting:
    spec = "mqtt://user:s3cret@broker:1883/line1"

    def __init__(self) -> None:
        self.d = {"delivered": 7, "queued": 3, "failed": 1}

    def delivery_stats(self) -> dict:
        return dict(self.d)


def test_sink_delivery_is_read_at_every_scrape_with_secrets_hidden():
    cam = _camera()
    t = Telemetry(cam)
    sink = _Counting()
    t.sinks([sink])
    body = render()[0].decode()
    assert "s3cret" not in body
    fam = _families()
    label = [
        s.labels["sink"]
        for s in fam["edgeseg_sink_queued"].samples
        if s.labels.get("camera") == cam
    ]
    assert len(label) == 1 and "broker:1883" in label[0]
    assert _value(fam, "edgeseg_sink_queued", "edgeseg_sink_queued", camera=cam) == 3
    sink.d = {"delivered": 10, "queued": 0, "failed": 1}
    fam = _families()
    assert _value(fam, "edgeseg_sink_queued", "edgeseg_sink_queued", camera=cam) == 0
    assert _value(fam, "edgeseg_sink_delivered", "edgeseg_sink_delivered_total", camera=cam) == 10
    assert _value(fam, "edgeseg_sink_failed", "edgeseg_sink_failed_total", camera=cam) == 1
    t.close()
    fam = _families()
    with pytest.raises(KeyError):
        _value(fam, "edgeseg_sink_queued", "edgeseg_sink_queued", camera=cam)


def test_process_metrics_and_a_bad_camera_name():
    assert (
        "process_cpu_seconds" in _families() or "process_cpu_seconds_total" in render()[0].decode()
    )
    with pytest.raises(EdgesegError, match="camera"):
        Telemetry("  ")


def test_the_camera_loop_feeds_the_metrics(tmp_path):
    pytest.importorskip("cv2", reason="the synthetic scene and the test segmenter need OpenCV")
    from camera_helpers import WarmSegmenter, run_bounded

    from edgeseg.camera import CameraLoop
    from edgeseg.rules import Rules

    cam = _camera()
    t = Telemetry(cam)
    rules = Rules.from_dict(
        {"rules": [{"class": "product", "max_area_px": 50}]}, WarmSegmenter().classes
    )
    jsonl = f"jsonl:{tmp_path / 'out.jsonl'}"
    loop = CameraLoop(
        "synthetic://?width=64&height=48&seed=3&frames=9",
        WarmSegmenter(),
        sinks=[jsonl],
        rules=rules,
        telemetry=t,
    )
    final = run_bounded(loop, timeout=60)
    fam = _families()
    assert _value(fam, "edgeseg_frames", "edgeseg_frames_total", camera=cam) == final["frames"] == 9
    h = "edgeseg_stage_seconds"
    for stage in ("infer", "rules", "sinks", "total"):
        assert _value(fam, h, f"{h}_count", camera=cam, stage=stage) == 9
    by_reason = {
        (x.labels["verdict"], x.labels["reason"]): x.value
        for x in fam["edgeseg_verdicts"].samples
        if x.name == "edgeseg_verdicts_total" and x.labels["camera"] == cam
    }
    assert sum(by_reason.values()) == 9
    assert set(by_reason) <= {("ok", ""), ("ng", "product")} and by_reason[("ng", "product")] > 0
    assert _value(fam, "edgeseg_sink_delivered", "edgeseg_sink_delivered_total", camera=cam) == 9
