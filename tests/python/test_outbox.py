"""The on-disk outbox: order, acknowledgement, ids, restarts, crashes, a full disk."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from line_helpers import make_item

from edgeseg.errors import SinkError
from edgeseg.sinks.outbox import Outbox, outbox_path, with_id
from edgeseg.sinks.webhook import WebhookSink


def test_order_ack_and_reopen(tmp_path):
    path = tmp_path / "ob.sqlite3"
    ob = Outbox(path)
    entries = [ob.put(make_item(i).record, topic=f"t/{i % 2}") for i in range(30)]
    assert [e.seq for e in entries] == sorted(e.seq for e in entries)
    ids = [e.id for e in entries]
    assert len(set(ids)) == 30
    assert all(uuid.UUID(i).version == 4 for i in ids)
    for e in entries[:10]:
        ob.ack(e.seq)
    ob.close()
    ob.close()  # twice is fine

    ob = Outbox(path)
    try:
        assert ob.pending() == 20
        got = ob.peek(100)
        assert [json.loads(e.payload)["frame"] for e in got] == list(range(10, 30))
        assert [e.id for e in got] == ids[10:]
        assert [e.topic for e in got] == [f"t/{i % 2}" for i in range(10, 30)]
        assert [e.seq for e in ob.peek(5, after=got[3].seq)] == [e.seq for e in got[4:9]]
        ob.reject(got[0].seq, "HTTP 400")
        assert ob.pending() == 19
        assert ob.rejected() == [(ids[10], "HTTP 400")]
    finally:
        ob.close()


def test_record_keeps_an_existing_id_and_is_not_mutated():
    rec = make_item(0).record
    out = with_id(rec)
    assert "id" not in rec and uuid.UUID(out["id"])
    assert with_id({"id": "abc", "frame": 1})["id"] == "abc"


def test_one_user_per_outbox_file(tmp_path):
    ob = Outbox(tmp_path / "ob.sqlite3")
    try:
        with pytest.raises(SinkError, match=r"ob\.sqlite3 is in use"):
            Outbox(tmp_path / "ob.sqlite3")
    finally:
        ob.close()
    Outbox(tmp_path / "ob.sqlite3").close()  # free again once closed


def test_outbox_path_separates_endpoints(tmp_path):
    a = outbox_path(tmp_path, "mqtt", "127.0.0.1:1883/line1/{verdict}")
    b = outbox_path(tmp_path, "mqtt", "127.0.0.1:1884/line1/{verdict}")
    assert a.parent == tmp_path and a != b and a.suffix == ".sqlite3"
    assert outbox_path(tmp_path / "x.sqlite3", "mqtt", "h:1/t") == tmp_path / "x.sqlite3"


_CHILD = """
import os, sys, time
sys.path.insert(0, {helpers!r})
from line_helpers import make_item
from edgeseg.sinks.outbox import Outbox
ob = Outbox({path!r})
for i in range({n}):
    ob.put(make_item(i).record)
print("stored", flush=True)
time.sleep(60)
"""


def test_records_survive_a_killed_process(tmp_path):
    path = tmp_path / "ob.sqlite3"
    code = _CHILD.format(helpers=str(Path(__file__).parent), path=str(path), n=25)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "stored"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        child.stdout.close()
    ob = Outbox(path)  # the dead process's lock went with it
    try:
        assert [json.loads(e.payload)["frame"] for e in ob.peek(100)] == list(range(25))
    finally:
        ob.close()


def test_full_outbox_is_an_error_naming_the_file_and_the_fix(tmp_path):
    ob = Outbox(tmp_path / "ob.sqlite3", max_bytes=64 * 1024)
    stored = 0
    try:
        with pytest.raises(SinkError, match=r"ob\.sqlite3.*free disk space"):
            for i in range(10_000):
                ob.put(make_item(i).record)
                stored += 1
        assert 20 < stored < 10_000
        assert ob.pending() == stored  # what was stored is intact
        for e in ob.peek(stored):
            ob.ack(e.seq)
        ob.put(make_item(0).record)  # room again once delivered
    finally:
        ob.close()


def test_bad_outbox_arguments(tmp_path):
    with pytest.raises(SinkError, match="sync='fast'.*'normal' or 'full'"):
        Outbox(tmp_path / "a.sqlite3", sync="fast")
    with pytest.raises(SinkError, match="max_bytes=10; expected at least 65536"):
        Outbox(tmp_path / "a.sqlite3", max_bytes=10)
    (tmp_path / "file").write_text("x")
    with pytest.raises(SinkError, match="cannot create the outbox"):
        Outbox(tmp_path / "file" / "a.sqlite3")


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir()
    if os.geteuid() != 0:
        return False
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)])
    return r.returncode == 0


def test_full_disk_is_counted_and_reported_and_the_sink_goes_on(tmp_path):
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "512k"):
        pytest.skip("needs root to mount a small tmpfs (a real full disk)")
    sink = None
    try:
        # Nothing listens on the webhook's port: every record must wait in the outbox.
        sink = WebhookSink("http://127.0.0.1:9/results", outbox=disk, close_timeout=0)
        sink.open()
        filler = disk / "filler"
        with open(filler, "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError:
                pass  # the disk is full now
        lost = 0
        for i in range(300):
            try:
                sink.write(make_item(i))
            except SinkError as e:
                assert "free disk space" in str(e)
                lost += 1
        st = sink.stats()
        assert lost > 0
        assert st["lost"] == lost
        assert st["written"] == 300 - lost
        assert "disk" in st["last_error"]
        filler.unlink()  # space again: the sink takes records again
        sink.write(make_item(300))
        assert sink.stats()["written"] == 301 - lost
    finally:
        if sink is not None:
            sink.close()
        subprocess.run(["umount", str(disk)], check=True)
