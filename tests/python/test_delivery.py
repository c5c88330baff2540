"""Delivery you can count on: a camera loop whose MQTT broker goes away and comes back.

A real mosquitto on 127.0.0.1, the real camera loop on the synthetic scene: the broker is
stopped mid-run and restarted; every record arrives; the stop drains the outbox within
``drain_timeout``; a broker that never comes back ends the run after the drain with the
queued records counted and kept on disk.
"""

from __future__ import annotations

import json
import sqlite3
import threading

import pytest
from camera_helpers import WarmSegmenter, run_bounded
from line_helpers import MOSQUITTO, MOSQUITTO_REASON, Broker, Subscriber, dedupe, wait_for

from edgeseg.camera import CameraLoop
from edgeseg.camera.stats import format_stats
from edgeseg.errors import SinkError
from edgeseg.sinks.base import Sink, open_sink

pytest.importorskip("paho.mqtt.client", reason="needs paho-mqtt: pip install 'edgeseg[line]'")
pytest.importorskip("cv2", reason="the synthetic scene and the test segmenter need OpenCV")
pytestmark = pytest.mark.skipif(MOSQUITTO is None, reason=MOSQUITTO_REASON)

TOPIC = "line1/results"


def _scene(frames: int, fps: int = 0) -> str:
    pace = f"&fps={fps}" if fps else ""
    return f"synthetic://?width=64&height=48&seed=3&frames={frames}{pace}"


def _pending_on_disk(path) -> int:
    with sqlite3.connect(str(path)) as db:
        return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])


def test_broker_restarted_mid_run_every_record_arrives(tmp_path):
    broker = Broker(tmp_path / "broker")
    broker.start()
    sub = Subscriber(broker.port, f"{TOPIC}/#", client_id="delivery-sub")
    sink = open_sink(f"mqtt://127.0.0.1:{broker.port}/{TOPIC}", outbox=tmp_path / "outbox")
    frames = 120
    stopped, restarted = threading.Event(), threading.Event()

    def on_result(item) -> None:  # the broker goes away a third into the run ...
        if item.frame.index == 40 and not stopped.is_set():
            broker.stop()
            stopped.set()
        if item.frame.index == 80 and not restarted.is_set():  # ... and comes back
            broker.start()
            restarted.set()

    loop = CameraLoop(
        _scene(frames, fps=40),
        WarmSegmenter(),
        sinks=[sink],
        on_result=on_result,
        drop="none",
        drain_timeout=15.0,
    )
    try:
        final = run_bounded(loop, timeout=120)
        assert stopped.is_set() and restarted.is_set()
        spec = sink.spec
        d = final["sinks"][spec]
        assert d["delivered"] == frames, format_stats(final)
        assert d["queued"] == 0 and d["failed"] == 0
        assert sink.delivery_stats() == {"delivered": frames, "queued": 0, "failed": 0}
        assert f"delivered {frames} queued 0" in format_stats(final)
        wait_for(lambda: len(dedupe(sub.records(TOPIC))) == frames, 20, "every record")
        got = dedupe(sub.records(TOPIC))
        assert [r["frame"] for r in got] == list(range(frames))  # in order, none missing
        assert sink.stats()["connects"] >= 2  # it reconnected by itself
    finally:
        sub.close()
        broker.stop()


def test_stop_drains_the_outbox_when_the_broker_comes_back_during_the_drain(tmp_path):
    broker = Broker(tmp_path / "broker")
    broker.start()
    sub = Subscriber(broker.port, f"{TOPIC}/#", client_id="drain-sub")
    sink = open_sink(f"mqtt://127.0.0.1:{broker.port}/{TOPIC}", outbox=tmp_path / "outbox")
    broker.stop()  # down for the whole run: everything waits in the outbox
    frames = 30
    loop = CameraLoop(_scene(frames), WarmSegmenter(), sinks=[sink], drain_timeout=30.0)
    try:
        loop.start()
        wait_for(lambda: loop.join(0) and loop.stats.frames == frames, 60, "the frames")
        assert sink.delivery_stats()["queued"] == frames
        threading.Timer(1.0, broker.start).start()  # back while stop() drains
        final = loop.stop()
        d = final["sinks"][sink.spec]
        assert (d["delivered"], d["queued"], d["failed"]) == (frames, 0, 0), format_stats(final)
        assert _pending_on_disk(sink.outbox_path) == 0
        wait_for(lambda: len(dedupe(sub.records(TOPIC))) == frames, 20, "every record")
    finally:
        sub.close()
        broker.stop()


def test_a_broker_that_never_comes_back_ends_the_run_with_the_queue_kept(tmp_path):
    broker = Broker(tmp_path / "broker")
    port = broker.port  # never started: nothing listens there
    sink = open_sink(f"mqtt://127.0.0.1:{port}/{TOPIC}", outbox=tmp_path / "outbox")
    frames = 12
    loop = CameraLoop(_scene(frames), WarmSegmenter(), sinks=[sink], drain_timeout=0.5)
    final = run_bounded(loop, timeout=60)
    d = final["sinks"][sink.spec]
    assert (d["delivered"], d["queued"], d["failed"]) == (0, frames, 0)
    assert d["written"] == frames  # accepted by write(), yet not delivered
    text = format_stats(final)
    assert f"delivered 0 queued {frames} (kept in {sink.outbox_path}) failed 0" in text
    assert "written" not in text.split("sink mqtt", 1)[1]
    assert _pending_on_disk(sink.outbox_path) == frames  # kept for the next start

    # the next start with the same outbox delivers them
    broker.start()
    sub = Subscriber(port, f"{TOPIC}/#", client_id="next-start-sub")
    try:
        again = open_sink(f"mqtt://127.0.0.1:{port}/{TOPIC}", outbox=tmp_path / "outbox")
        again.open()
        assert again.delivery_stats()["queued"] == frames
        again.close(drain_timeout=20)
        assert again.delivery_stats() == {"delivered": frames, "queued": 0, "failed": 0}
        wait_for(lambda: len(dedupe(sub.records(TOPIC))) == frames, 20, "the kept records")
    finally:
        sub.close()
        broker.stop()


class _EveryOtherFails(Sink):
    """A synchronous sink whose write raises on odd frames (a full disk, say)."""

    spec = "every-other"

    def write(self, item) -> None:
        if item.frame.index % 2:
            raise SinkError(f"frame {item.frame.index}: no space left")


def test_synchronous_sinks_count_what_they_delivered(tmp_path):
    jsonl = open_sink(f"jsonl:{tmp_path / 'out.jsonl'}")
    flaky = _EveryOtherFails()
    loop = CameraLoop(_scene(5), WarmSegmenter(), sinks=[jsonl, flaky])
    final = run_bounded(loop, timeout=60)
    assert jsonl.delivery_stats() == {"delivered": 5, "queued": 0, "failed": 0}
    assert final["sinks"][jsonl.spec]["delivered"] == 5
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 5
    assert flaky.delivery_stats() == {"delivered": 3, "queued": 0, "failed": 2}
    assert "sink every-other: delivered 3 queued 0 failed 2" in format_stats(final)


def test_drain_timeout_must_be_seconds():
    from edgeseg.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match="drain_timeout"):
        CameraLoop(_scene(1), WarmSegmenter(), drain_timeout=-1)


def test_edgeseg_run_states_what_stayed_queued(tiny_onnx, tmp_path, capsys):
    from edgeseg.camera.cli import main

    port = Broker(tmp_path / "broker").port  # nothing listens there
    spec = f"mqtt://127.0.0.1:{port}/{TOPIC}"
    out = tmp_path / "final.json"
    rc = main(
        [
            str(tiny_onnx),
            "--source",
            _scene(6),
            "--sink",
            spec,
            "--drain-timeout",
            "0.5",
            "--stats-every",
            "0",
            f"--json={out}",
        ]  # fmt: skip
    )
    err = capsys.readouterr().err
    assert rc == 0, err
    assert f"sink {spec}: delivered 0 queued 6 (kept in " in err
    d = json.loads(out.read_text())["sinks"][spec]
    assert (d["delivered"], d["queued"], d["failed"]) == (0, 6, 0)
    assert _pending_on_disk(d["outbox"]) == 6
    with pytest.raises(SystemExit) as e:
        main([str(tiny_onnx), "--source", _scene(1), "--drain-timeout", "-1"])
    assert e.value.code == 2
    assert "--drain-timeout: expected seconds >= 0" in capsys.readouterr().err
