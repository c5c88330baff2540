"""One record encoder: NaN/Inf, numpy, paths, dates and enums come out the same from every
sink (JSON lines, MQTT, webhook, OPC UA, archive) and trigger reply; an unknown type is an
error naming its key when the record is built."""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import json
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from line_helpers import MOSQUITTO, MOSQUITTO_REASON, Broker, Subscriber, free_port, make_item
from line_helpers import wait_for as _wait_for

from edgeseg.errors import SinkError
from edgeseg.sinks.base import make_record, open_sink
from edgeseg.sinks.encode import encode_record, jsonable


class Shade(enum.Enum):
    DARK = "dark"
    LIGHT = 2


ODD = {
    "nan": float("nan"),
    "inf": float("-inf"),
    "np_float": np.float32(1.5),
    "np_nan": np.float64("nan"),
    "np_int": np.int64(7),
    "np_bool": np.bool_(True),
    "array": np.array([[1.0, np.inf], [0.25, 3.0]], np.float32),
    "path": Path("shots") / "a.png",
    "when": dt.datetime(2026, 3, 4, 5, 6, 7, 125000, tzinfo=dt.timezone.utc),
    "day": dt.date(2026, 3, 4),
    "shade": Shade.DARK,
    "shades": (Shade.LIGHT, None),
    "tags": {"b", "a"},
    3: "int key",
    np.int16(4): "numpy key",
}
EXPECTED = {
    "nan": None,
    "inf": None,
    "np_float": 1.5,
    "np_nan": None,
    "np_int": 7,
    "np_bool": True,
    "array": [[1.0, None], [0.25, 3.0]],
    "path": "shots/a.png",
    "when": "2026-03-04T05:06:07.125000+00:00",
    "day": "2026-03-04",
    "shade": "dark",
    "shades": [2, None],
    "tags": ["a", "b"],
    "3": "int key",
    "4": "numpy key",
}


def _odd_item(index: int = 0):
    item = make_item(index, defect_px=3)
    item.record["extra"] = dict(ODD)  # what a callback may add after the record was built
    return item


def _check(record: dict) -> None:
    assert record["extra"] == EXPECTED
    assert record["frame"] >= 0 and record["verdict"] == "NG"


def test_jsonable_rules_and_strict_json():
    assert jsonable(ODD) == EXPECTED
    text = encode_record({"x": ODD})
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"x": EXPECTED}
    assert json.loads(encode_record({"x": 1}, indent=1)) == {"x": 1}


@pytest.mark.parametrize(
    "value, kind",
    [(b"raw", "bytes"), (object(), "object"), (np.array([object()]), "numpy array of object")],
)
def test_unknown_types_name_the_key(value, kind):
    with pytest.raises(SinkError, match=rf"record\['outer'\]\['inner'\]: a value of type {kind}"):
        jsonable({"outer": {"inner": value}})
    with pytest.raises(SinkError, match="keys must be text or numbers"):
        jsonable({("a", "b"): 1})


def test_make_record_fails_at_build_time_naming_the_meta_key():
    item = make_item(0)
    item.frame.meta["trigger_id"] = b"\x00\x01"
    with pytest.raises(SinkError, match=r"record\['trigger_id'\]: a value of type bytes"):
        make_record(item.frame, item.result, item.verdict, t_done=0.0)
    item.frame.meta["trigger_id"] = np.int32(5)
    item.frame.meta["path"] = Path("x") / "y.png"
    rec = make_record(item.frame, item.result, item.verdict, t_done=0.0)
    assert rec["trigger_id"] == 5 and type(rec["trigger_id"]) is int and rec["path"] == "x/y.png"


def test_jsonl_sink(tmp_path):
    sink = open_sink(f"jsonl:{tmp_path / 'out.jsonl'}")
    sink.open()
    sink.write(_odd_item())
    sink.close()
    _check(json.loads((tmp_path / "out.jsonl").read_text()))


def test_archive_sink(tmp_path):
    pytest.importorskip("PIL")
    sink = open_sink(f"archive:{tmp_path / 'ng'}")
    sink.open()
    sink.write(_odd_item())
    (entry,) = sink.entries()
    _check(json.loads((entry / "record.json").read_text()))


class _Receiver:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                receiver.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/results"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_webhook_sink(tmp_path):
    rx = _Receiver()
    try:
        sink = open_sink(f"webhook:{rx.url}", outbox=tmp_path / "outbox")
        sink.open()
        sink.write(_odd_item())
        sink.close(drain_timeout=20)
        assert sink.delivery_stats()["delivered"] == 1
        _check(json.loads(rx.bodies[0]))
    finally:
        rx.close()


@pytest.mark.skipif(MOSQUITTO is None, reason=MOSQUITTO_REASON)
def test_mqtt_sink(tmp_path):
    pytest.importorskip("paho.mqtt.client", reason="needs paho-mqtt: pip install 'edgeseg[line]'")
    broker = Broker(tmp_path / "broker")
    broker.start()
    sub = Subscriber(broker.port, "enc/#", client_id="encoder-sub")
    try:
        sink = open_sink(f"mqtt://127.0.0.1:{broker.port}/enc/r", outbox=tmp_path / "outbox")
        sink.open()
        sink.write(_odd_item())
        sink.close(drain_timeout=20)
        _wait_for(lambda: sub.records("enc/r"), 20, "the record")
        _check(sub.records("enc/r")[0])
    finally:
        sub.close()
        broker.stop()


def test_opcua_sink_last_record():
    asyncua = pytest.importorskip("asyncua", reason="needs asyncua: pip install 'edgeseg[line]'")
    from edgeseg.sinks.opcua import NAMESPACE

    endpoint = f"opc.tcp://127.0.0.1:{free_port()}"
    sink = open_sink(f"opcua:{endpoint}")
    sink.open()

    async def read() -> str:
        async with asyncua.Client(url=endpoint, timeout=10) as client:
            idx = await client.get_namespace_index(NAMESPACE)
            node = await client.nodes.objects.get_child([f"{idx}:EdgeSeg", f"{idx}:LastRecord"])
            return await node.read_value()

    try:
        item = _odd_item()
        item.stats = {"fps": float("nan"), "latency": np.float32(2.5)}
        sink.write(item)
        _check(json.loads(asyncio.run(read())))
    finally:
        sink.close()


def test_http_trigger_reply():
    from edgeseg.camera.triggers import HttpTrigger

    trig = HttpTrigger(f"http://127.0.0.1:{free_port()}/trigger", timeout=20)
    trig.open()
    try:

        def answer() -> None:
            tid = trig.wait(20)
            trig.done(tid, _odd_item().record)

        threading.Thread(target=answer, daemon=True).start()
        req = urllib.request.Request(trig.url, data=b"{}", method="POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            _check(json.loads(r.read()))
    finally:
        trig.close()


@pytest.mark.parametrize("first", ["edgeseg._opcua", "edgeseg.camera.triggers"])
def test_every_sink_kind_registers_whatever_is_imported_first(first):
    import subprocess
    import sys

    code = f"import {first}\nfrom edgeseg.sinks.base import sink_kinds\nprint(sink_kinds())"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    kinds = r.stdout.strip()
    for kind in ("jsonl", "archive", "mqtt", "webhook", "opcua"):
        assert f"'{kind}'" in kinds, (first, kinds)
