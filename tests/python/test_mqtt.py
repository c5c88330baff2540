"""MQTT sink and trigger against a real mosquitto broker on 127.0.0.1.

The promise tested: at-least-once delivery with ids, in order — across a broker restart and
across a restart (or kill) of the producing process; receivers dedupe on ``id``.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from line_helpers import (
    MOSQUITTO,
    MOSQUITTO_REASON,
    Broker,
    StandInLoop,
    Subscriber,
    dedupe,
    free_port,
    make_item,
    wait_for,
)

from edgeseg.camera.triggers import MqttTrigger, open_trigger
from edgeseg.errors import SinkError, SourceError
from edgeseg.sinks.base import open_sink

pytest.importorskip("paho.mqtt.client", reason="needs paho-mqtt: pip install 'edgeseg[line]'")
pytestmark = pytest.mark.skipif(MOSQUITTO is None, reason=MOSQUITTO_REASON)


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path / "broker")
    try:
        b.start()
        yield b
    finally:
        b.stop()


@pytest.fixture
def subscriber(broker):
    sub = Subscriber(broker.port, "#")
    try:
        yield sub
    finally:
        sub.close()


def _sink(port: int, tmp_path: Path, topic: str = "line1/results", **opts):
    sink = open_sink(f"mqtt://127.0.0.1:{port}/{topic}", outbox=tmp_path / "outbox", **opts)
    sink.open()
    return sink


def _frames(sub: Subscriber, prefix: str = "line1/results") -> list[int]:
    return [r["frame"] for r in dedupe(sub.records(prefix))]


def test_broker_restart_loses_nothing_and_keeps_order(tmp_path, broker, subscriber):
    sink = _sink(broker.port, tmp_path)
    try:
        for i in range(30):
            sink.write(make_item(i, defect_px=i % 3))
        broker.stop()  # mid-run: some records may be in flight
        for i in range(30, 60):
            sink.write(make_item(i))
        st = sink.stats()
        assert st["written"] == 60 and st["lost"] == 0
        assert st["pending"] >= 30  # nothing is acknowledged while the broker is away
        wait_for(lambda: not sink.stats()["connected"], 10, "the sink to see the broker gone")
        broker.start()
        for i in range(60, 90):
            sink.write(make_item(i))
        assert sink.flush(30), sink.stats()
        wait_for(lambda: len(_frames(subscriber)) >= 90, 30, "90 records at the subscriber")
        records = dedupe(subscriber.records("line1/results"))
        assert [r["frame"] for r in records] == list(range(90))
        assert len({r["id"] for r in records}) == 90
        assert records[1]["verdict"] == "NG" and records[3]["verdict"] == "OK"
        st = sink.stats()
        assert st["delivered"] == 90 and st["pending"] == 0 and st["connects"] >= 2
    finally:
        sink.close()


def test_unreachable_broker_at_start_is_reported_not_fatal(tmp_path):
    broker = Broker(tmp_path / "broker")  # not started yet
    sink = _sink(broker.port, tmp_path)
    sub = None
    try:
        for i in range(5):
            sink.write(make_item(i))
        wait_for(lambda: sink.stats()["last_error"] is not None, 10, "a reported error")
        st = sink.stats()
        assert st["connected"] is False and st["pending"] == 5
        assert f"127.0.0.1:{broker.port}" in st["last_error"]
        assert st["status"].startswith("not connected (cannot reach the broker at 127.0.0.1:")
        broker.start()
        sub = Subscriber(broker.port, "line1/#")
        wait_for(lambda: len(_frames(sub)) >= 5, 30, "the 5 waiting records")
        assert _frames(sub) == list(range(5))
    finally:
        sink.close()
        if sub is not None:
            sub.close()
        broker.stop()


def test_close_with_pending_then_reopen_delivers(tmp_path):
    broker = Broker(tmp_path / "broker")
    sink = _sink(broker.port, tmp_path, close_timeout=0.2)
    for i in range(10):
        sink.write(make_item(i))
    sink.close()
    assert sink.stats()["pending"] == 10  # reported as left in the outbox
    try:
        broker.start()
        sub = Subscriber(broker.port, "line1/#")
        try:
            sink = _sink(broker.port, tmp_path)
            assert sink.flush(30), sink.stats()
            wait_for(lambda: len(_frames(sub)) >= 10, 30, "the 10 records of the first run")
            assert _frames(sub) == list(range(10))
            sink.close()
        finally:
            sub.close()
    finally:
        broker.stop()


_CHILD = """
import sys, time
sys.path.insert(0, {helpers!r})
from line_helpers import make_item
from edgeseg.sinks.base import open_sink
sink = open_sink({spec!r}, outbox={outbox!r})
sink.open()
for i in range({n}):
    sink.write(make_item(i))
print("written", flush=True)
time.sleep(60)
"""


def test_killed_process_records_are_delivered_by_the_next_one(tmp_path):
    broker = Broker(tmp_path / "broker")  # down while the first process writes
    spec = f"mqtt://127.0.0.1:{broker.port}/line1/results"
    code = _CHILD.format(
        helpers=str(Path(__file__).parent), spec=spec, outbox=str(tmp_path / "outbox"), n=20
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "written"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        child.stdout.close()
    try:
        broker.start()
        sub = Subscriber(broker.port, "line1/#")
        sink = _sink(broker.port, tmp_path)
        try:
            wait_for(lambda: len(_frames(sub)) >= 20, 30, "the killed process's 20 records")
            assert _frames(sub) == list(range(20))
        finally:
            sink.close()
            sub.close()
    finally:
        broker.stop()


def test_topic_template_status_and_last_will(tmp_path, broker, subscriber):
    sink = _sink(broker.port, tmp_path, topic="line1/{verdict}")
    try:
        for i in range(4):
            sink.write(make_item(i, defect_px=i % 2))
        assert sink.flush(10)
        wait_for(lambda: len(subscriber.records("line1/")) >= 4, 10, "4 records")
        by_topic = {}
        for topic, payload, _ in subscriber.messages:
            if payload.startswith(b"{"):
                by_topic.setdefault(topic, []).append(json.loads(payload)["frame"])
        assert by_topic == {"line1/OK": [0, 2], "line1/NG": [1, 3]}
        assert subscriber.payloads("line1/status")[-1] == b"online"
    finally:
        sink.close()
    wait_for(lambda: subscriber.payloads("line1/status")[-1] == b"offline", 10, "offline")

    # An abrupt death: the broker publishes the last will.
    code = _CHILD.format(
        helpers=str(Path(__file__).parent),
        spec=f"mqtt://127.0.0.1:{broker.port}/line2/results?keepalive=5",
        outbox=str(tmp_path / "outbox2"),
        n=1,
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "written"
        wait_for(lambda: b"online" in subscriber.payloads("line2/results/status"), 10, "online")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        child.stdout.close()
    wait_for(lambda: subscriber.payloads("line2/results/status")[-1] == b"offline", 15, "will")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl to make certificates")
@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason=MOSQUITTO_REASON)
def test_tls_and_password(tmp_path):
    d = tmp_path / "pki"
    d.mkdir()

    def run(*args):
        subprocess.run(args, cwd=d, check=True, capture_output=True)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    run("openssl", "req", "-x509", *ec, "-days", "2", "-keyout", "ca.key", "-out", "ca.pem",
        "-subj", "/CN=edgeseg test CA")  # fmt: skip
    run("openssl", "req", *ec, "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=127.0.0.1")  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "san.ext")  # fmt: skip
    run("openssl", "req", *ec, "-keyout", "client.key", "-out", "client.csr",
        "-subj", "/CN=camera-1")  # fmt: skip
    run("openssl", "x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "client.pem", "-days", "2")  # fmt: skip
    run("mosquitto_passwd", "-b", "-c", str(d / "passwd"), "line", "s3cret")
    tls_port = free_port()
    conf = (  # the TLS listener wants a client certificate and a password
        f"allow_anonymous false\npassword_file {d}/passwd\n"
        f"listener {tls_port} 127.0.0.1\ncafile {d}/ca.pem\ncertfile {d}/server.pem\n"
        f"keyfile {d}/server.key\nrequire_certificate true\n"
    )
    broker = Broker(tmp_path / "broker", extra_conf=conf)
    broker.start()
    sub = bad = nocert = good = None
    try:
        sub = Subscriber(broker.port, "line1/#", username="line", password="s3cret")
        query = f"?ca={d}/ca.pem&username=line"
        certs = f"&cert={d}/client.pem&key={d}/client.key"
        bad = _sink(
            tls_port,
            tmp_path / "bad",
            topic="line1/results" + query + certs + "&password=no",
            close_timeout=0.2,
        )
        nocert = _sink(
            tls_port, tmp_path / "nocert", topic="line1/results" + query + "&password=s3cret",
            close_timeout=0.2,
        )  # fmt: skip
        good = _sink(
            tls_port, tmp_path / "good", topic="line1/results" + query + certs, password="s3cret"
        )
        bad.write(make_item(0))
        nocert.write(make_item(2))
        good.write(make_item(1))
        assert good.flush(20), good.stats()
        wait_for(lambda: bad.stats()["last_error"] is not None, 10, "the refusal")
        assert "refused" in bad.stats()["last_error"] and bad.stats()["pending"] == 1
        wait_for(lambda: nocert.stats()["last_error"] is not None, 10, "the TLS failure")
        assert nocert.stats()["connected"] is False and nocert.stats()["pending"] == 1
        assert "closed the connection before accepting it" in nocert.stats()["last_error"]
        wait_for(lambda: len(_frames(sub)) >= 1, 10, "the record over TLS")
        assert _frames(sub) == [1]
    finally:
        for s in (bad, nocert, good):
            if s is not None:
                s.close()
        if sub is not None:
            sub.close()
        broker.stop()


def test_full_outbox_is_counted_reported_and_the_sink_goes_on(tmp_path):
    sink = _sink(free_port(), tmp_path, outbox_max_bytes=65536, close_timeout=0)
    try:
        lost = 0
        for i in range(2000):
            try:
                sink.write(make_item(i))
            except SinkError as e:
                assert "free disk space" in str(e)
                lost += 1
        st = sink.stats()
        assert lost > 0 and st["lost"] == lost and st["written"] == 2000 - lost
        assert "outbox" in st["last_error"]
    finally:
        sink.close()


@pytest.mark.parametrize(
    "spec, message",
    [
        ("mqtt://:1883/t", "no broker host"),
        ("mqtt://127.0.0.1:1883", "no topic"),
        ("mqtt://127.0.0.1:99999/t", "Port out of range"),
        ("mqtt://127.0.0.1/t?colour=red", r"unknown option\(s\) \['colour'\]"),
        ("mqtt://127.0.0.1/line/{a.b}", "must be a record key"),
        ("mqtt://127.0.0.1/line/#", "'#'.*not allowed"),
        ("mqtt://127.0.0.1/line/+", "cannot hold"),
        ("mqtt://127.0.0.1/t?ca=/no/such/ca.pem", "ca='/no/such/ca.pem' is not a file"),
        ("mqtt://127.0.0.1/t?qos=5", "qos=5"),
    ],
)
def test_bad_specs_name_the_spec_and_the_form(spec, message):
    with pytest.raises(SinkError, match=message) as e:
        open_sink(spec)
    assert spec in str(e.value)


def test_passwords_stay_out_of_messages():
    with pytest.raises(SinkError) as e:
        open_sink("mqtt://line:hunter2@127.0.0.1/t?password=s3cret&colour=red")
    assert "hunter2" not in str(e.value) and "s3cret" not in str(e.value)
    assert "line:***@127.0.0.1" in str(e.value) and "password=***" in str(e.value)


def test_mqtt_trigger_answers_with_the_record(tmp_path, broker, subscriber):
    trigger = open_trigger(f"mqtt://127.0.0.1:{broker.port}/line1/trigger")
    assert isinstance(trigger, MqttTrigger)
    trigger.open()
    sink = _sink(broker.port, tmp_path)
    loop = StandInLoop(trigger, [sink])
    try:
        wait_for(trigger.connected.is_set, 10, "the trigger to subscribe")
        subscriber.client.publish("line1/trigger", b"part-1", qos=1)
        subscriber.client.publish(
            "line1/trigger", json.dumps({"id": "part-2", "reply_to": "plc/answers"}), qos=1
        )
        wait_for(lambda: len(subscriber.records("plc/answers")) >= 1, 10, "the reply_to answer")
        wait_for(lambda: len(subscriber.records("line1/trigger/result")) >= 1, 10, "an answer")
        assert [r["trigger_id"] for r in subscriber.records("line1/trigger/result")] == ["part-1"]
        assert subscriber.records("plc/answers")[0]["trigger_id"] == "part-2"
        assert subscriber.records("plc/answers")[0]["verdict"] == "NG"
        assert loop.processed == ["part-1", "part-2"]
        assert sink.flush(10)
        wait_for(lambda: len(subscriber.records("line1/results")) >= 2, 10, "the sink records")
        assert [r["trigger_id"] for r in subscriber.records("line1/results")] == loop.processed
    finally:
        loop.stop()
        trigger.close()
        sink.close()


def test_mqtt_trigger_waits_for_a_broker_that_is_down_at_start(tmp_path):
    broker = Broker(tmp_path / "broker")  # not started yet
    trigger = open_trigger(f"mqtt://127.0.0.1:{broker.port}/line1/trigger")
    trigger.open()  # not fatal
    loop = StandInLoop(trigger)
    sub = None
    try:
        wait_for(lambda: trigger.stats()["last_error"] is not None, 10, "a reported error")
        assert trigger.stats()["connected"] is False
        assert f"127.0.0.1:{broker.port}" in trigger.stats()["last_error"]
        broker.start()
        wait_for(trigger.connected.is_set, 15, "the trigger to connect")
        sub = Subscriber(broker.port, "line1/#")
        sub.client.publish("line1/trigger", b"late-part", qos=1)
        wait_for(lambda: len(sub.records("line1/trigger/result")) >= 1, 10, "the answer")
        assert sub.records("line1/trigger/result")[0]["trigger_id"] == "late-part"
    finally:
        loop.stop()
        trigger.close()
        if sub is not None:
            sub.close()
        broker.stop()


def test_bad_trigger_specs():
    with pytest.raises(SourceError, match="unknown kind 'ftp'.*mqtt://HOST:PORT/TOPIC"):
        open_trigger("ftp://127.0.0.1/trigger")
    with pytest.raises(SourceError, match="trigger 'mqtt://127.0.0.1'.*no topic"):
        open_trigger("mqtt://127.0.0.1")
    with pytest.raises(SourceError, match="cannot be a template"):
        open_trigger("mqtt://127.0.0.1/line/{verdict}")
