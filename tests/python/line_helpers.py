"""Helpers of the line-integration tests: real LoopItems, free ports, a real mosquitto broker
and an MQTT subscriber that collects what arrives."""

from __future__ import annotations

import getpass
import json
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from edgeseg.camera.frame import Frame
from edgeseg.rules.verdict import Verdict
from edgeseg.runtime.result import ClassInfo, SegResult
from edgeseg.sinks.base import LoopItem, make_record

MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").is_file() else None
)
MOSQUITTO_REASON = "needs the mosquitto broker: apt-get install mosquitto (tools/apt-packages.txt)"

CLASSES = [
    ClassInfo(0, "background", (0, 0, 0), index=0),
    ClassInfo(1, "scratch", (255, 0, 0), index=1),
    ClassInfo(2, "dent", (0, 255, 0), index=2),
]


def make_item(index: int, defect_px: int = 0, trigger_id: Optional[str] = None) -> LoopItem:
    """A real LoopItem: a 48×64 frame whose class map holds ``defect_px`` scratch pixels
    (NG when > 0) and 7 dent pixels."""
    h, w = 48, 64
    class_map = np.zeros((h, w), np.uint8)
    class_map.reshape(-1)[:defect_px] = 1
    class_map[40, 10:17] = 2
    counts = np.bincount(class_map.reshape(-1), minlength=len(CLASSES)).astype(np.int64)
    meta = {} if trigger_id is None else {"trigger_id": trigger_id}
    frame = Frame(np.zeros((h, w, 3), np.uint8), index, t_capture=time.time(), meta=meta)
    result = SegResult(class_map, None, CLASSES, counts, frame=frame.image)
    verdict = Verdict(ok=defect_px == 0)
    if defect_px:
        verdict.reasons.append(f"scratch: {defect_px} px > 0 px")
    record = make_record(frame, result, verdict, t_done=time.time())
    return LoopItem(frame, result, verdict, record, {"fps": 10.0})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    """Polls ``cond`` until true; fails naming ``what`` after ``timeout`` s (a bound on a
    wait, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


class Broker:
    """A mosquitto process on 127.0.0.1 with a generated config; ``start``/``stop`` by PID
    (stop is SIGTERM, so the broker saves its persistent sessions like a service stop)."""

    def __init__(self, workdir: Path, extra_conf: str = "", port: Optional[int] = None) -> None:
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.extra_conf = extra_conf
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> None:
        conf = self.dir / "mosquitto.conf"
        conf.write_text(
            # mosquitto started as root drops to the user "mosquitto", who cannot read the
            # test's private folders: stay the current user.
            f"user {getpass.getuser()}\n"
            f"listener {self.port} 127.0.0.1\n"
            + ("" if "allow_anonymous" in self.extra_conf else "allow_anonymous true\n")
            + f"persistence true\npersistence_location {self.dir}/\n"
            + f"log_dest file {self.dir}/mosquitto.log\n"
            + self.extra_conf
        )
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace")
                raise RuntimeError(f"mosquitto exited ({self.proc.returncode}): {err}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"mosquitto did not listen on {self.port}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        proc.stderr.close()


class Subscriber:
    """A paho client with a persistent session (survives a broker restart with the broker's
    persistence) that collects every message on ``topic`` (QoS 1)."""

    def __init__(
        self,
        port: int,
        topic: str,
        client_id: str = "test-subscriber",
        username: Optional[str] = None,
        password: Optional[str] = None,
    ) -> None:
        import paho.mqtt.client as mqtt

        self.topic = topic
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False
        )
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        if username:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            self.close()
            raise RuntimeError("the test subscriber could not subscribe")

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        client.subscribe(self.topic, qos=1)

    def _on_message(self, client, userdata, msg) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def records(self, topic_prefix: str = "") -> list[dict]:
        """The JSON records received (in arrival order) on topics starting with the prefix."""
        with self._lock:
            msgs = list(self.messages)
        out = []
        for topic, payload, _ in msgs:
            if topic.startswith(topic_prefix) and payload.startswith(b"{"):
                out.append(json.loads(payload))
        return out

    def payloads(self, topic: str) -> list[bytes]:
        with self._lock:
            return [p for t, p, _ in self.messages if t == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def dedupe(records: list[dict]) -> list[dict]:
    """First occurrence of every ``id``, arrival order kept."""
    seen: set = set()
    out = []
    for r in records:
        if r["id"] not in seen:
            seen.add(r["id"])
            out.append(r)
    return out


class StandInLoop:
    """What the camera loop does in trigger mode, reduced to the contract: take a trigger id,
    make one frame's item (NG, ``defect_px`` scratch pixels), write it to the sinks, answer
    ``done``. A thread; ``stop`` joins it."""

    def __init__(self, trigger, sinks=(), defect_px: int = 5) -> None:
        self.trigger = trigger
        self.sinks = list(sinks)
        self.defect_px = defect_px
        self.processed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            tid = self.trigger.wait(0.05)
            if tid is None:
                continue
            item = make_item(n, defect_px=self.defect_px, trigger_id=tid)
            for sink in self.sinks:
                sink.write(item)
            self.processed.append(tid)
            self.trigger.done(tid, item.record)
            n += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
