"""Soak test of the camera loop: many frames through every line sink while the services churn.

A synthetic scene (``synthetic://``) → a tiny 1×1-convolution ONNX model made here (classes
background/product, with edgeseg metadata) → rules (OK/NG) → ``archive:`` (with a quota),
``jsonl:``, ``mqtt://`` to a real mosquitto on 127.0.0.1 that is restarted every
``--restart-every`` seconds, and the live view (``serve:``) with viewers that connect to the
MJPEG stream, the event stream and the stats and leave again. At the end it prints, as JSON:

- RSS, Python threads, OS threads and open file descriptors before the loop started (after a
  warm-up run of the same pipeline) and after it stopped, and RSS at every tenth of the run;
- capture → result latency p50/p99 over every frame, and the loop's FPS;
- records lost: frames processed minus the frames the MQTT subscriber received (by frame
  index; redeliveries count once) minus those still waiting in the outbox; JSON lines; archive
  entries and bytes against the quota; broker restarts; viewer connections.

Usage: ``python tools/soak.py --frames 100000 [--restart-every 20] [--json-out soak.json]``
(needs mosquitto, paho-mqtt and onnx). Exit status 1 when a record was lost or a resource
grew past its bound (``--max-rss-growth-mb``, and threads/fds back to their start count).
"""

from __future__ import annotations

import argparse
import getpass
import http.client
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

SIZE = 64
CLASSES = [
    {"id": 0, "name": "background", "color": [0, 0, 0]},
    {"id": 1, "name": "product", "color": [0, 200, 0]},
]


def tiny_model(path: Path) -> Path:
    """A 1×1 convolution, product logit = red − blue, with edgeseg metadata."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgeseg.onnx_metadata import METADATA_FORMAT, to_props

    # the input is RGB after mean/std: product where red − blue > 0.6
    w = np.array([[[[0.0]], [[0.0]], [[0.0]]], [[[1.0]], [[0.0]], [[-1.0]]]], np.float32)
    b = np.array([0.6, 0.0], np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["images", "w", "b"], ["logits"])],
        "soak",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2, SIZE, SIZE])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = {
        "edgeseg_format": METADATA_FORMAT,
        "model": "soak-1x1",
        "num_classes": 2,
        "classes": CLASSES,
        "input_size": [SIZE, SIZE],
        "mean": [0.5, 0.5, 0.5],
        "std": [0.25, 0.25, 0.25],
        "scale": 1 / 255,
        "channel_order": "RGB",
        "layout": "NCHW",
        "resize": "stretch",
        "input_name": "images",
        "output_name": "logits",
        "dynamic_batch": False,
    }
    helper.set_model_props(model, to_props(meta))
    onnx.save(model, str(path))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def resources() -> dict:
    """RSS (MiB), Python threads, OS threads and open file descriptors of this process."""
    rss_kb = 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
    return {
        "rss_mb": round(rss_kb / 1024, 1),
        "threads": threading.active_count(),
        "os_threads": len(os.listdir("/proc/self/task")),
        "fds": len(os.listdir("/proc/self/fd")),
    }


class Broker:
    """mosquitto on 127.0.0.1 with persistence, restartable on the same port (by its PID)."""

    def __init__(self, workdir: Path) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(exe).is_file():
            raise SystemExit("soak: needs the mosquitto broker (apt-get install mosquitto)")
        self.exe = exe
        self.dir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"user {getpass.getuser()}\nlistener {self.port} 127.0.0.1\nallow_anonymous true\n"
            f"persistence true\npersistence_location {workdir}/\n"
            f"log_dest file {workdir}/mosquitto.log\nmax_queued_messages 0\n"
        )

    def start(self) -> None:
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"soak: mosquitto did not start on port {self.port}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def restart(self, down_s: float) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()
        self.restarts += 1


class Collector:
    """A persistent-session QoS 1 subscriber: which frame indices arrived (a bitmap, so that
    the harness itself does not grow with the run and blur the RSS figures)."""

    def __init__(self, port: int, topic: str, frames: int) -> None:
        import paho.mqtt.client as mqtt

        self.seen = np.zeros(frames, bool)
        self.messages = 0
        self.foreign = 0  # records with an index outside the run (none expected)
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="soak-collector", clean_session=False
        )
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise SystemExit("soak: the MQTT collector could not subscribe")

    def _on_message(self, client, userdata, msg) -> None:
        if not msg.payload.startswith(b"{"):
            return  # the status topic's online/offline
        k = int(json.loads(msg.payload)["frame"])
        with self._lock:
            self.messages += 1
            if 0 <= k < len(self.seen):
                self.seen[k] = True
            else:
                self.foreign += 1

    def count(self) -> int:
        with self._lock:
            return self.messages

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def viewers(port: int, stop: threading.Event, counts: dict, seed: int = 0) -> None:
    """Viewers of the live view: each connects to a route, reads for a while and leaves."""
    rnd = random.Random(seed)
    routes = ["/stream.mjpg", "/events", "/stats.json", "/frame.jpg", "/"]
    while not stop.is_set():
        route = rnd.choice(routes)
        stay = rnd.uniform(0.1, 1.5)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", route)
            resp = conn.getresponse()
            t_end = time.monotonic() + stay
            while time.monotonic() < t_end and not stop.is_set():
                if not resp.read(8192):
                    break
            counts["connections"] += 1
        except (OSError, http.client.HTTPException) as e:
            counts["errors"] += 1
            counts["last_error"] = f"{route}: {type(e).__name__}: {e}"
        finally:
            conn.close()
        stop.wait(rnd.uniform(0.0, 0.3))


def build_loop(model, work, broker_port, serve_port, frames, on_result, topic="soak"):
    from edgeseg.camera import CameraLoop
    from edgeseg.rules import Rules
    from edgeseg.runtime import Segmenter

    seg = Segmenter(model, threads=1, overlay_alpha=0.5)
    rules = Rules.from_dict(
        {"rules": [{"class": "product", "max_area_px": 9230}]}, seg.classes, source="soak-rules"
    )
    sinks = [
        f"archive:{work / 'archive'}?quota_mb=20&min_free_mb=10",
        f"jsonl:{work / 'records.jsonl'}",
        f"mqtt://127.0.0.1:{broker_port}/{topic}/{{verdict}}?client_id={topic}-sink"
        f"&outbox={work / 'outbox'}&close_timeout=20",
        f"serve:127.0.0.1:{serve_port}",
    ]
    from edgeseg.sinks import open_sink

    opened = [open_sink(s, quiet=True) if s.startswith("serve:") else s for s in sinks]
    source = f"synthetic://?width=320&height=240&seed=7&frames={frames}"
    return CameraLoop(source, seg, sinks=opened, rules=rules, drop="none", on_result=on_result), seg


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="soak.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=10000, help="frames to process")
    ap.add_argument("--restart-every", type=float, default=20.0, help="broker restart period (s)")
    ap.add_argument("--down", type=float, default=1.0, help="seconds the broker stays down")
    ap.add_argument("--viewers", type=int, default=3, help="concurrent live-view viewers")
    ap.add_argument("--max-rss-growth-mb", type=float, default=64.0)
    ap.add_argument("--work", help="working folder (default: a temporary one, removed)")
    ap.add_argument("--json-out", help="also write the figures to this file")
    args = ap.parse_args(argv)

    work = Path(args.work or tempfile.mkdtemp(prefix="edgeseg-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    broker = Broker(work / "broker")
    broker.start()
    collector = Collector(broker.port, "soak/#", args.frames)
    model = tiny_model(work / "soak.onnx")
    serve_port = free_port()

    # preallocated, so that the harness does not grow with the run
    latencies = np.zeros(args.frames, np.float32)
    processed = np.zeros(args.frames, bool)
    done = [0]

    def on_result(item) -> None:
        k = int(item.frame.index)
        if 0 <= k < args.frames:
            processed[k] = True
        if done[0] < args.frames:
            latencies[done[0]] = item.record["latency_ms"]
        done[0] += 1

    # warm-up: the same pipeline for a few frames, so that imports, the ORT session and first
    # allocations are in the "before" figures; then the real run on fresh sinks
    warm, seg = build_loop(model, work / "warm", broker.port, serve_port, 50, None, "warm")
    warm.run()
    seg.close()
    before = resources()

    loop, seg = build_loop(model, work / "run", broker.port, serve_port, args.frames, on_result)
    stop = threading.Event()
    view_counts = {"connections": 0, "errors": 0, "last_error": None}
    threads = [
        threading.Thread(target=viewers, args=(serve_port, stop, view_counts, i), daemon=True)
        for i in range(args.viewers)
    ]

    def churn() -> None:
        while not stop.wait(args.restart_every):
            broker.restart(args.down)

    threads.append(threading.Thread(target=churn, daemon=True))
    t0 = time.monotonic()
    loop.start()
    for t in threads:
        t.start()
    trace: list[list] = []  # [frames, RSS MiB] at every tenth of the run
    try:
        while not loop.join(1.0):
            n = done[0]
            if n >= (len(trace) + 1) * args.frames / 10:
                trace.append([n, resources()["rss_mb"]])
            print(f"\rsoak: {n}/{args.frames} frames", end="", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print("\nsoak: interrupted; stopping", file=sys.stderr)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    final = loop.stop(timeout=60)
    elapsed = time.monotonic() - t0
    seg.close()
    print(file=sys.stderr)

    # the subscriber gets what was in flight, then the outbox says what is still waiting
    quiet_since, last = time.monotonic(), collector.count()
    while time.monotonic() - quiet_since < 3.0:
        time.sleep(0.2)
        if collector.count() != last:
            quiet_since, last = time.monotonic(), collector.count()
    after = resources()
    collector.close()
    broker.stop()

    mqtt_stats = next(v for k, v in final["sinks"].items() if k.startswith("mqtt"))
    from edgeseg.sinks.outbox import Outbox

    box = Outbox(mqtt_stats["outbox"])
    waiting = np.zeros(args.frames, bool)
    for e in box.peek(limit=10**9):
        waiting[int(json.loads(e.payload)["frame"])] = True
    box.close()
    lost = np.flatnonzero(processed & ~collector.seen & ~waiting).tolist()
    jsonl = sum(1 for _ in open(work / "run" / "records.jsonl"))
    archive = next(v for k, v in final["sinks"].items() if k.startswith("archive"))
    lat = latencies[: min(done[0], args.frames)]
    out = {
        "frames": done[0],
        "elapsed_s": round(elapsed, 1),
        "fps": round(done[0] / max(elapsed, 1e-9), 1),
        "latency_ms": {
            "p50": round(float(np.percentile(lat, 50)), 2) if len(lat) else None,
            "p99": round(float(np.percentile(lat, 99)), 2) if len(lat) else None,
            "max": round(float(lat.max()), 2) if len(lat) else None,
        },
        "resources_before": before,
        "resources_after": after,
        "rss_mb_trace": trace,
        "mqtt": {
            "received_unique": int(collector.seen.sum()),
            "received_messages": collector.messages,
            "received_foreign": collector.foreign,
            "in_outbox": int(waiting.sum()),
            "lost": len(lost),
            "lost_frames_first": lost[:10],
            "broker_restarts": broker.restarts,
            "sink": {k: mqtt_stats.get(k) for k in ("delivered", "pending", "failed")},
        },
        "jsonl_lines": jsonl,
        "archive": {k: archive.get(k) for k in ("entries", "bytes", "removed", "skipped_ok")},
        "viewers": view_counts,
        "loop": {k: final.get(k) for k in ("frames", "dropped", "corrupt", "invalid", "errors")},
        "sink_failures": {k: v.get("failed") for k, v in final["sinks"].items()},
    }
    text = json.dumps(out, indent=2, default=str)
    print(text)
    if args.json_out:
        Path(args.json_out).write_text(text + "\n")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    grew = after["rss_mb"] - before["rss_mb"] > args.max_rss_growth_mb
    leaked = after["fds"] > before["fds"] or after["os_threads"] > before["os_threads"]
    bad = lost or jsonl != done[0] or grew or leaked or collector.foreign
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
