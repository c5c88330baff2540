"""systemd integration: sd_notify datagrams on a real unix socket, the log formats, the unit
file checked by systemd-analyze, and ``edgeseg run`` speaking to a notify socket."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edgeseg import service

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "deploy" / "edgeseg-station@.service"


class NotifySocket:
    """A unix datagram socket as systemd listens on (a path, or an abstract name)."""

    def __init__(self, tmp_path: Path, abstract: bool = False) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"edgeseg-test-{os.getpid()}-{id(self)}"
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            path = tmp_path / "notify.sock"
            self.sock.bind(str(path))
            self.address = str(path)
        self.sock.settimeout(5.0)

    def messages(self, n: int) -> list[str]:
        return [self.sock.recv(4096).decode() for _ in range(n)]

    def pending(self) -> list[str]:
        self.sock.setblocking(False)
        out = []
        try:
            while True:
                out.append(self.sock.recv(4096).decode())
        except BlockingIOError:
            pass
        finally:
            self.sock.settimeout(5.0)
        return out

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_notifications_reach_the_socket(tmp_path, monkeypatch, abstract):
    ns = NotifySocket(tmp_path, abstract)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", ns.address)
        assert service.notify_ready()
        assert service.notify_watchdog()
        assert service.notify_status("12.5 fps\n3 queued")
        assert service.notify_stopping()
        assert ns.messages(4) == ["READY=1", "WATCHDOG=1", "STATUS=12.5 fps 3 queued", "STOPPING=1"]
    finally:
        ns.close()


def test_without_a_socket_every_notification_is_a_no_op(tmp_path, monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert service.notify_ready() is False
    assert service.notify_watchdog() is False
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens.sock"))
    assert service.notify_ready() is False  # logged at debug level, never raised


def test_watchdog_interval_and_heartbeat(tmp_path, monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert service.watchdog_interval() == 4.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert service.watchdog_interval() is None  # meant for another process
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert service.watchdog_interval() == 4.0
    monkeypatch.setenv("WATCHDOG_USEC", "garbage")
    assert service.watchdog_interval() is None

    ns = NotifySocket(tmp_path)
    now = [100.0]
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", ns.address)
        hb = service.Heartbeat(interval=4.0, clock=lambda: now[0])
        assert hb.period == 2.0
        hb.beat(frames=0)  # no frame yet: not ready; the watchdog is fed while alive
        assert ns.pending() == ["WATCHDOG=1"]
        now[0] += 1.0
        hb.beat(frames=1)  # first frame: READY, watchdog not due yet
        assert ns.pending() == ["READY=1"]
        now[0] += 1.5
        hb.beat(frames=5, alive=False)  # a stuck stage: no WATCHDOG, systemd will restart
        assert ns.pending() == []
        hb.beat(frames=5, alive=True)
        assert ns.pending() == ["WATCHDOG=1"]
        hb.beat(frames=6)
        assert ns.pending() == []  # READY once, WATCHDOG at most every period
    finally:
        ns.close()


def _emit(fmt: str, stream) -> None:
    service.setup_logging("info", fmt, stream=stream)
    log = logging.getLogger("edgeseg.test")
    log.debug("not shown at info")
    log.info("frames %d", 42)
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("sink failed")


def test_json_logs_are_one_object_per_line():
    buf = io.StringIO()
    try:
        _emit("json", buf)
    finally:
        service.setup_logging("info", "text")
    lines = buf.getvalue().splitlines()
    docs = [json.loads(line) for line in lines]  # every line is one JSON object
    assert [d["msg"] for d in docs] == ["frames 42", "sink failed"]
    assert [d["level"] for d in docs] == ["info", "error"]
    assert docs[0]["logger"] == "edgeseg.test" and isinstance(docs[0]["ts"], float)
    assert "ValueError: boom" in docs[1]["exc"]


def test_text_logs_carry_journald_priorities_under_journald(tmp_path, monkeypatch):
    path = tmp_path / "journal"
    with open(path, "w") as stream:
        st = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        try:
            _emit("text", stream)
        finally:
            service.setup_logging("info", "text")
    lines = path.read_text().splitlines()
    assert lines[0] == "<6>INFO edgeseg.test: frames 42"
    assert lines[1] == "<3>ERROR edgeseg.test: sink failed"
    assert all(line.startswith("<3>") for line in lines[1:])  # the traceback keeps its level
    monkeypatch.setenv("JOURNAL_STREAM", "1:2")  # another stream: plain text
    buf = io.StringIO()
    try:
        _emit("text", buf)
    finally:
        service.setup_logging("info", "text")
    assert buf.getvalue().splitlines()[0] == "INFO edgeseg.test: frames 42"


def test_bad_log_settings_name_the_choices():
    with pytest.raises(ValueError, match=r"\['debug', 'info', 'warning', 'error'\]"):
        service.setup_logging("loud", "text")
    with pytest.raises(ValueError, match=r"\['text', 'json'\]"):
        service.setup_logging("info", "xml")


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="needs systemd-analyze: apt-get install systemd (tools/apt-packages.txt)",
)
def test_the_unit_template_verifies(tmp_path):
    text = UNIT.read_text()
    for key in (
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "ReadWritePaths=",
        "DynamicUser=yes",
    ):
        assert key in text, key
    exec_line = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    assert exec_line.split()[1:] == ["station", "/etc/edgeseg/%i.yaml"]
    # the template names where edgeseg is installed; here it is this environment's
    edgeseg = Path(sys.executable).with_name("edgeseg")
    if not edgeseg.exists():
        pytest.skip("the edgeseg entry point is not installed next to this Python")
    unit = tmp_path / UNIT.name
    unit.write_text(text.replace(exec_line.split()[0][len("ExecStart=") :], str(edgeseg)))
    r = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(tmp_path / "edgeseg-station@line1.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    mine = [line for line in r.stderr.splitlines() if "edgeseg-station@" in line]
    assert r.returncode == 0 and not mine, r.stderr
    # a typo is what the check catches
    unit.write_text(unit.read_text().replace("WatchdogSec=", "WatchdogSecs="))
    r = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(tmp_path / "edgeseg-station@line1.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Unknown key" in r.stderr and "WatchdogSecs" in r.stderr


def test_edgeseg_run_notifies_ready_watchdog_and_stopping(tiny_onnx, tmp_path):
    pytest.importorskip("cv2", reason="the synthetic scene needs OpenCV")
    ns = NotifySocket(tmp_path)
    msgs: list[str] = []
    done = threading.Event()

    def listen() -> None:  # as systemd does: read every datagram as it comes
        ns.sock.settimeout(0.1)
        while not done.is_set():
            try:
                msgs.append(ns.sock.recv(4096).decode())
            except (socket.timeout, OSError):
                continue

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    env = dict(os.environ, NOTIFY_SOCKET=ns.address, WATCHDOG_USEC="400000")
    env.pop("WATCHDOG_PID", None)
    try:
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "edgeseg",
                "run",
                str(tiny_onnx),
                "--source",
                "synthetic://?width=64&height=64&frames=40&fps=20",
                "--drop",
                "none",
                "--sink",
                f"jsonl:{tmp_path / 'out.jsonl'}",
                "--log-format",
                "json",
                "--stats-every",
                "0.5",
            ],  # fmt: skip
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert r.returncode == 0, r.stderr
    finally:
        done.set()
        listener.join(5)
        ns.close()
    assert msgs.count("READY=1") == 1
    assert msgs.count("WATCHDOG=1") >= 2  # every 0.2 s over a run of about 2 s
    assert any(m.startswith("STATUS=") and "fps" in m for m in msgs)
    assert msgs[-1] == "STOPPING=1" and msgs.index("READY=1") < msgs.index("STOPPING=1")
    ours = [line for line in r.stderr.splitlines() if line.startswith("{")]
    docs = [json.loads(line) for line in ours]  # our lines are JSON objects, one per line
    assert any(d["logger"] == "edgeseg.run" and "fps" in d["msg"] for d in docs)
    assert "delivered 40 queued 0 failed 0" in docs[-1]["msg"]  # the final summary
    assert not [line for line in r.stderr.splitlines() if line.startswith(("INFO", "edgeseg"))]


def test_the_loop_tells_a_stuck_stage_from_an_idle_one():
    pytest.importorskip("cv2", reason="the synthetic scene and the test segmenter need OpenCV")
    from camera_helpers import WarmSegmenter

    from edgeseg.camera import CameraLoop

    release = threading.Event()

    class StuckAtFive(WarmSegmenter):
        def predict(self, frame_bgr, rgb=False):
            if self.calls == 5:
                release.wait(30)  # a driver or model that hangs
            return super().predict(frame_bgr, rgb)

    seg = StuckAtFive()
    loop = CameraLoop("synthetic://?width=64&height=48&seed=2&fps=20", seg)
    try:
        loop.start()
        deadline = time.monotonic() + 30
        while loop.stats.frames < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert loop.alive(1.0)  # turning
        while seg.calls < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(1.5)
        assert not loop.alive(1.0)  # inference has not turned for 1.5 s
        release.set()
        time.sleep(0.5)
        assert loop.alive(1.0)
    finally:
        release.set()
        loop.stop()
    assert not loop.alive(1.0)  # stopped
