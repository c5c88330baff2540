"""OPC UA server sink and trigger, read and called by a real asyncua client."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from line_helpers import StandInLoop, free_port, make_item

from edgeseg.camera.triggers import OpcuaTrigger, open_trigger
from edgeseg.errors import SinkError, SourceError
from edgeseg.sinks.base import open_sink
from edgeseg.sinks.opcua import NAMESPACE

asyncua = pytest.importorskip("asyncua", reason="needs asyncua: pip install 'edgeseg[line]'")
ua = asyncua.ua


@pytest.fixture
def endpoint():
    return f"opc.tcp://127.0.0.1:{free_port()}"


async def _read(url: str, names: list[str]) -> dict:
    async with asyncua.Client(url=url, timeout=10) as client:
        idx = await client.get_namespace_index(NAMESPACE)
        out = {}
        for name in names:
            path = [f"{idx}:EdgeSeg"] + [f"{idx}:{p}" for p in name.split("/")]
            node = await client.nodes.objects.get_child(path)
            out[name] = await node.read_value()
        return out


async def _call_trigger(url: str, trigger_id: str):
    async with asyncua.Client(url=url, timeout=10) as client:
        idx = await client.get_namespace_index(NAMESPACE)
        obj = await client.nodes.objects.get_child([f"{idx}:EdgeSeg"])
        return await obj.call_method(f"{idx}:Trigger", trigger_id)


def test_client_reads_the_latest_verdict_counts_and_health(endpoint):
    sink = open_sink(f"opcua:{endpoint}")
    sink.open()
    try:
        before = asyncio.run(_read(endpoint, ["Health", "FrameIndex"]))
        assert before == {"Health": "starting", "FrameIndex": -1}
        sink.write(make_item(0))
        sink.write(make_item(1, defect_px=12))
        names = ["Verdict", "Ok", "FrameIndex", "Reasons", "ReasonsText", "Frames", "NgCount"]
        names += ["Health", "Counts/scratch", "Counts/dent", "AreaFraction/scratch", "Stats"]
        got = asyncio.run(_read(endpoint, names))
        assert got["Verdict"] == "NG" and got["Ok"] is False
        assert got["FrameIndex"] == 1
        assert got["Reasons"] == ["scratch: 12 px > 0 px"]
        assert got["ReasonsText"] == "scratch: 12 px > 0 px"
        assert (got["Frames"], got["NgCount"]) == (2, 1)
        assert got["Health"] == "ok"
        assert (got["Counts/scratch"], got["Counts/dent"]) == (12, 7)
        assert got["AreaFraction/scratch"] == pytest.approx(12 / (48 * 64), abs=1e-6)
        assert json.loads(got["Stats"]) == {"fps": 10.0}
        sink.write(make_item(2))
        again = asyncio.run(_read(endpoint, ["Verdict", "Counts/scratch", "NgCount"]))
        assert again == {"Verdict": "OK", "Counts/scratch": 0, "NgCount": 1}
        assert sink.stats()["written"] == 3
    finally:
        sink.close()
    with pytest.raises((OSError, asyncio.TimeoutError)):  # the server is gone after close
        asyncio.run(_read(endpoint, ["Health"]))


def test_trigger_method_processes_one_frame_and_returns_its_record(endpoint):
    sink = open_sink(f"opcua:{endpoint}")
    sink.open()
    trigger = open_trigger(f"opcua:{endpoint}", timeout=10)  # shares the sink's server
    assert isinstance(trigger, OpcuaTrigger)
    trigger.open()
    loop = StandInLoop(trigger, [sink], defect_px=3)
    try:
        record = json.loads(asyncio.run(_call_trigger(endpoint, "part-7")))
        assert record["trigger_id"] == "part-7" and record["verdict"] == "NG"
        assert record["counts"]["scratch"] == 3
        got = asyncio.run(_read(endpoint, ["TriggerId", "Verdict", "Frames"]))
        assert got == {"TriggerId": "part-7", "Verdict": "NG", "Frames": 1}
        with pytest.raises(ua.UaStatusCodeError, match="BadInvalidArgument"):
            asyncio.run(_call_trigger(endpoint, "part-7"))  # an id is used once
        assert loop.processed == ["part-7"]
        loop.stop()
        trigger.timeout = 0.3  # no loop takes triggers now: the caller gets a timeout
        with pytest.raises(ua.UaStatusCodeError, match="BadTimeout"):
            asyncio.run(_call_trigger(endpoint, "nobody-home"))
        assert trigger.wait(0.1) is None  # the abandoned trigger is skipped, not processed
        assert trigger.stats()["timeouts"] == 1 and trigger.stats()["skipped"] == 1
    finally:
        loop.stop()
        trigger.close()
    try:  # the sink's server stays up without the trigger, and says so when called
        with pytest.raises(ua.UaStatusCodeError, match="BadInvalidState"):
            asyncio.run(_call_trigger(endpoint, "part-8"))
    finally:
        sink.close()


def test_bad_specs_and_busy_port():
    with pytest.raises(SinkError, match="expected opcua:opc.tcp://HOST:PORT") as e:
        open_sink("opcua:tcp://127.0.0.1:4840")
    assert "tcp://127.0.0.1:4840" in str(e.value)
    with pytest.raises(SinkError, match="expected opcua:opc.tcp://HOST:PORT"):
        open_sink("opcua:opc.tcp://127.0.0.1")
    with pytest.raises(SourceError, match="trigger 'opcua:http://x'"):
        open_trigger("opcua:http://x")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        sink = open_sink(f"opcua:opc.tcp://127.0.0.1:{port}")
        with pytest.raises(SinkError, match="cannot start the OPC UA server.*port in use"):
            sink.open()
