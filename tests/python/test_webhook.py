"""Webhook sink against a real local HTTP server, and the HTTP trigger."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional

import pytest
from line_helpers import StandInLoop, dedupe, free_port, make_item, wait_for

from edgeseg.camera.triggers import HttpTrigger, open_trigger
from edgeseg.errors import SinkError, SourceError
from edgeseg.sinks.base import open_sink


class Receiver:
    """A stdlib HTTP server in a thread: fails its first ``fail_first`` POSTs with 503 and
    answers 400 to records whose frame is in ``refuse_frames``; keeps the rest."""

    def __init__(self, fail_first: int = 0, refuse_frames=(), port: int = 0) -> None:
        self.fail_first = fail_first
        self.refuse_frames = set(refuse_frames)
        self.requests = 0
        self.records: list[dict] = []
        self.keys: list[str] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver._lock:
                    receiver.requests += 1
                    n = receiver.requests
                record = json.loads(body)
                if n <= receiver.fail_first:
                    code = 503
                elif record["frame"] in receiver.refuse_frames:
                    code = 400
                else:
                    code = 200
                    with receiver._lock:
                        receiver.records.append(record)
                        receiver.keys.append(self.headers["Idempotency-Key"])
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/results"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=10)


@pytest.fixture
def receiver_factory():
    made: list[Receiver] = []

    def make(**kw) -> Receiver:
        r = Receiver(**kw)
        made.append(r)
        return r

    try:
        yield make
    finally:
        for r in made:
            r.close()


def _sink(url: str, tmp_path, **opts):
    sink = open_sink(f"webhook:{url}", outbox=tmp_path / "outbox", backoff=0.02, **opts)
    sink.open()
    return sink


def test_server_failing_its_first_requests_gets_every_record(tmp_path, receiver_factory):
    rx = receiver_factory(fail_first=4)
    sink = _sink(rx.url, tmp_path)
    try:
        for i in range(15):
            sink.write(make_item(i, defect_px=i % 2))
        assert sink.flush(30), sink.stats()
        records = dedupe(rx.records)
        assert [r["frame"] for r in records] == list(range(15))
        assert rx.keys == [r["id"] for r in rx.records]  # Idempotency-Key is the id
        assert records[1]["verdict"] == "NG" and records[1]["reasons"]
        st = sink.stats()
        assert st["retries"] == 4 and st["delivered"] == 15 and st["pending"] == 0
        assert "HTTP 503" in st["last_error"]
    finally:
        sink.close()


def test_server_down_at_start_then_up(tmp_path, receiver_factory):
    port = free_port()
    sink = _sink(f"http://127.0.0.1:{port}/results", tmp_path, max_backoff=0.2)
    try:
        for i in range(5):
            sink.write(make_item(i))
        wait_for(lambda: sink.stats()["retries"] > 0, 10, "a failed attempt")
        st = sink.stats()
        assert st["pending"] == 5 and f"127.0.0.1:{port}" in st["last_error"]
        assert st["status"].startswith("retrying (cannot POST to http://127.0.0.1:")
        rx = receiver_factory(port=port)
        assert sink.flush(30), sink.stats()
        assert [r["frame"] for r in dedupe(rx.records)] == list(range(5))
        assert sink.stats()["status"] == "ok"
    finally:
        sink.close()


def test_refused_record_is_set_aside_and_the_rest_flows(tmp_path, receiver_factory):
    rx = receiver_factory(refuse_frames={2})
    sink = _sink(rx.url, tmp_path)
    try:
        for i in range(5):
            sink.write(make_item(i))
        assert sink.flush(30), sink.stats()
        assert [r["frame"] for r in rx.records] == [0, 1, 3, 4]
        st = sink.stats()
        assert st["rejected"] == 1 and "HTTP 400" in st["last_error"]
        assert [reason for _, reason in sink._outbox.rejected()] == ["HTTP 400 Bad Request"]
    finally:
        sink.close()


def test_process_restart_delivers_what_was_left(tmp_path, receiver_factory):
    port = free_port()
    sink = _sink(f"http://127.0.0.1:{port}/results", tmp_path, close_timeout=0.1)
    for i in range(6):
        sink.write(make_item(i))
    sink.close()
    rx = receiver_factory(port=port)
    sink = _sink(rx.url, tmp_path)
    try:
        assert sink.flush(30)
        assert [r["frame"] for r in dedupe(rx.records)] == list(range(6))
    finally:
        sink.close()


@pytest.mark.parametrize(
    "spec, message",
    [
        ("webhook:ftp://127.0.0.1/x", "expected webhook:http://HOST"),
        ("webhook:http://127.0.0.1:99999/x", "Port out of range"),
        ("webhook:results", "expected webhook:http://HOST"),
    ],
)
def test_bad_webhook_specs(spec, message):
    with pytest.raises(SinkError, match=message) as e:
        open_sink(spec)
    assert spec in str(e.value)


def test_bad_webhook_options(tmp_path):
    with pytest.raises(SinkError, match="ca='/no/ca.pem' is not a file"):
        open_sink("webhook:https://127.0.0.1/x", ca="/no/ca.pem")
    with pytest.raises(SinkError, match="backoff must be > 0"):
        open_sink("webhook:http://127.0.0.1/x", backoff=0)
    with pytest.raises(SinkError, match="headers must be a dict"):
        open_sink("webhook:http://127.0.0.1/x", headers="Authorization: x")
    with pytest.raises(SinkError, match="must be numbers"):
        open_sink("webhook:http://127.0.0.1/x", timeout="soon")


def _post(url: str, body: Optional[dict] = None, method: str = "POST") -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        with e:
            return e.code, json.loads(e.read() or b"{}")


@pytest.fixture
def http_trigger():
    trigger = open_trigger("http://127.0.0.1:0/trigger", timeout=10)
    assert isinstance(trigger, HttpTrigger)
    trigger.open()
    try:
        yield trigger
    finally:
        trigger.close()


def test_http_trigger_returns_the_record_of_its_frame(http_trigger, tmp_path, receiver_factory):
    rx = receiver_factory()
    sink = _sink(rx.url, tmp_path)
    loop = StandInLoop(http_trigger, [sink], defect_px=9)
    try:
        code, rec = _post(http_trigger.url, {"id": "part-42"})
        assert code == 200
        assert rec["trigger_id"] == "part-42" and rec["verdict"] == "NG"
        assert rec["counts"]["scratch"] == 9
        code, rec2 = _post(http_trigger.url + "?id=part-43")
        assert (code, rec2["trigger_id"]) == (200, "part-43")
        code, rec3 = _post(http_trigger.url)  # no id: one is made up and returned
        assert code == 200 and len(rec3["trigger_id"]) == 32
        assert _post(http_trigger.url, {"id": "part-42"})[0] == 409  # an id is used once
        assert _post(http_trigger.url, method="GET")[0] == 405
        assert _post(http_trigger.url.replace("/trigger", "/nope"))[0] == 404
        assert loop.processed == ["part-42", "part-43", rec3["trigger_id"]]
        assert sink.flush(30)
        assert [r["trigger_id"] for r in rx.records] == loop.processed  # sinks carry the id
    finally:
        loop.stop()
        sink.close()


def test_http_trigger_times_out_and_skips_the_stale_trigger(http_trigger):
    # No loop takes triggers: the caller gets 504, and the loop that starts later skips it.
    code, body = _post(http_trigger.url + "?timeout=0.2", {"id": "late"})
    assert code == 504 and body["id"] == "late"
    assert http_trigger.wait(0.1) is None
    assert http_trigger.stats()["skipped"] == 1 and http_trigger.stats()["timeouts"] == 1


def test_answer_that_comes_before_the_caller_waits_is_kept():
    trigger = HttpTrigger("http://127.0.0.1:0/trigger")  # the queue logic; no server needed
    tid = trigger.fire("fast", wait=True)
    assert trigger.wait(1) == tid
    trigger.done(tid, {"trigger_id": tid, "verdict": "OK"})  # before result() is called
    assert trigger.result(tid, timeout=1) == {"trigger_id": "fast", "verdict": "OK"}
    assert trigger.stats()["timeouts"] == 0


def test_closing_answers_waiting_callers_at_once():
    trigger = open_trigger("http://127.0.0.1:0/trigger", timeout=60)
    trigger.open()
    answer: list = []
    caller = threading.Thread(target=lambda: answer.append(_post(trigger.url, {"id": "p"})))
    try:
        caller.start()
        wait_for(lambda: trigger.stats()["triggers"] == 1, 10, "the caller's trigger")
    finally:
        trigger.close()  # nobody will process it: the caller hears so instead of waiting 60 s
    caller.join(timeout=10)
    assert answer == [(503, {"error": "trigger mode stopped", "id": "p"})]


def test_http_trigger_bad_input(http_trigger):
    req = urllib.request.Request(http_trigger.url, data=b"[1, 2]", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 400
    e.value.close()
    with pytest.raises(SourceError, match="port [0-9]+ on 127.0.0.1 is in use"):
        HttpTrigger(f"http://127.0.0.1:{http_trigger.port}/trigger").open()
    with pytest.raises(SourceError, match="expected http://HOST:PORT"):
        open_trigger("http://127.0.0.1/trigger")
