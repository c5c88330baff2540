"""``edgeseg station``: a station file with synthetic cameras and the shipped starter models,
run for real (in process, and as a process signalled with SIGHUP/SIGTERM), its HTTP server on
127.0.0.1, and the findings of ``--check``."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("aiohttp")
cv2 = pytest.importorskip("cv2")
pytest.importorskip("onnxruntime")

from edgeseg.errors import StationError  # noqa: E402
from edgeseg.starters import starter_file  # noqa: E402
from edgeseg.station import Station, load_station  # noqa: E402
from edgeseg.station.cli import main as station_main  # noqa: E402

TOKEN = "tok-7f3a9c"
TIMEOUT = 60.0
ALWAYS_OK = "rules:\n  - class: scratch\n    max_area_px: 100000000\n"
ALWAYS_NG = "rules:\n  - class: background\n    min_area_px: 100000000\n    name: never-enough\n"
BROKEN = "rules:\n  - class: rust\n    max_area_px: 10\n"


def wait_for(cond, what: str, timeout: float = TIMEOUT):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def site(tmp_path) -> Path:
    shutil.copy(starter_file("starter:defects", "onnx"), tmp_path / "defects.onnx")
    (tmp_path / "rules.yaml").write_text(ALWAYS_OK)
    return tmp_path


def write(site: Path, text: str, name: str = "station.yaml") -> Path:
    p = site / name
    p.write_text(text)
    return p


TWO_CAMERAS = """\
station: line-test
cameras:
  top:
    source: "synthetic://?size=128x96&fps=15&seed=1"
    model: defects.onnx
    rules: rules.yaml
    sinks: [jsonl:out/top.jsonl]
  side:
    source: "synthetic://?size=128x96&fps=15&seed=2"
    model: defects.onnx
    trigger: http
http:
  port: 0
  token: ${STATION_TEST_TOKEN}
  max_image_pixels: 20000
live_view: {max_fps: 30}
drain_timeout: 5
"""


def call(st: Station, method: str, path: str, body=None, token: bool = True, headers=None):
    h = dict(headers or {})
    if token:
        h["Authorization"] = f"Bearer {TOKEN}"
    conn = http.client.HTTPConnection("127.0.0.1", st.server.port, timeout=TIMEOUT)
    try:
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def png(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def test_two_cameras_share_a_model_and_serve_live_views_rest_and_triggers(site):
    cfg = load_station(write(site, TWO_CAMERAS), env={"STATION_TEST_TOKEN": TOKEN})
    assert cfg.http.token == TOKEN and TOKEN not in repr(cfg.http)
    with Station(cfg) as st:
        wait_for(lambda: st.cameras["top"].frames >= 3, "frames from camera top")
        assert st.model_for(cfg.cameras[0].model) is st.model_for(cfg.cameras[1].model)
        assert st.cameras["top"].loop.segmenter is st.cameras["side"].loop.segmenter

        assert call(st, "GET", "/healthz", token=False)[0] == 200
        assert call(st, "GET", "/v1/status", headers={"Host": "rebind.example"})[0] == 421
        assert call(st, "GET", "/readyz", token=False)[0] == 401
        status, _, body = call(st, "GET", "/readyz")
        assert status == 200 and json.loads(body) == {"ready": True, "reasons": []}
        cams = json.loads(call(st, "GET", "/v1/status")[2])["cameras"]
        assert {n: c["state"] for n, c in cams.items()} == {"top": "running", "side": "running"}
        assert cams["top"]["frames"] >= 3 and cams["top"]["last_verdict"] == "OK"

        # the live view of each camera, under its name, behind the token
        assert call(st, "GET", "/cameras/top/frame.jpg", token=False)[0] == 401
        status, _, jpeg = call(st, "GET", "/cameras/top/frame.jpg")
        img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert status == 200 and img.shape == (96, 128, 3)
        status, headers, _ = call(st, "GET", "/cameras/side")
        assert status == 308 and headers["Location"] == "/cameras/side/"
        status, headers, page = call(st, "GET", "/")
        assert status == 200 and b"cameras/top/" in page and b"cameras/side/" in page
        assert TOKEN not in headers["Set-Cookie"]  # a hash of it

        # REST against the same model loaded independently
        from edgeseg.runtime import Segmenter

        ref = Segmenter(cfg.cameras[0].model)
        frame = np.random.default_rng(3).integers(0, 256, (90, 120, 3), dtype=np.uint8)
        frame[20:60, 30:90] = (40, 40, 200)
        expect = ref.predict(frame)
        status, _, body = call(st, "POST", "/v1/segment?camera=top", png(frame))
        out = json.loads(body)
        assert status == 200 and out["counts"] == expect.counts and out["verdict"] == "OK"
        assert (out["width"], out["height"]) == (120, 90)
        assert (
            sum(r["area_px"] for r in out["regions"])
            == sum(expect.counts.values()) - (expect.counts["background"])
        )
        status, headers, body = call(st, "POST", "/v1/segment?camera=top&format=mask", png(frame))
        import io

        from PIL import Image

        mask = np.array(Image.open(io.BytesIO(body)))
        assert status == 200 and headers["Content-Type"] == "image/png"
        assert np.array_equal(mask, expect.class_map)
        status, _, body = call(st, "POST", "/v1/segment?format=overlay", png(frame))
        over = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
        assert status == 200 and over.shape == (90, 120, 3)
        status, _, body = call(st, "POST", "/v1/segment", b"not an image at all")
        assert status == 400 and b"not an image" in body
        status, _, body = call(st, "POST", "/v1/segment", png(np.zeros((200, 200, 3), np.uint8)))
        assert status == 413 and b"40000" in body and b"max_image_pixels" in body
        assert call(st, "POST", "/v1/segment", png(frame), token=False)[0] == 401
        assert call(st, "POST", "/v1/segment?camera=nope", png(frame))[0] == 404
        assert call(st, "POST", "/v1/segment?format=gif", png(frame))[0] == 400

        # the HTTP trigger of camera side
        status, _, body = call(st, "POST", "/v1/cameras/side/trigger", b'{"id": "part-9"}')
        rec = json.loads(body)
        assert status == 200 and rec["trigger_id"] == "part-9" and "counts" in rec
        assert call(st, "POST", "/v1/cameras/side/trigger", b'{"id": "part-9"}')[0] == 409

        # /metrics: Prometheus text, per camera, behind the token
        from prometheus_client.parser import text_string_to_metric_families

        assert call(st, "GET", "/metrics", token=False)[0] == 401
        status, headers, body = call(st, "GET", "/metrics")
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
        fams = {f.name: f for f in text_string_to_metric_families(body.decode())}
        frames_by = {
            s.labels["camera"]: s.value
            for s in fams["edgeseg_frames"].samples
            if s.name == "edgeseg_frames_total"
        }
        assert frames_by.get("top", 0) >= 3 and frames_by.get("side", 0) >= 1
        sinks = {
            (s.labels["camera"], s.labels["sink"]) for s in fams["edgeseg_sink_queued"].samples
        }
        assert any(cam == "top" and "jsonl" in sink for cam, sink in sinks)
        cams = json.loads(call(st, "GET", "/v1/status")[2])["cameras"]
        ((spec, delivery),) = cams["top"]["sinks"].items()
        assert spec.startswith("jsonl:") and delivery["delivered"] >= 3 and delivery["failed"] == 0
        frames = st.cameras["top"].frames
    lines = (site / "out" / "top.jsonl").read_text().splitlines()
    assert len(lines) >= frames and all(json.loads(x)["verdict"] == "OK" for x in lines)
    assert st.problems()  # stopped: not ready any more


def test_a_failing_camera_does_not_stop_the_others(site):
    (site / "empty").mkdir()
    text = TWO_CAMERAS.replace("    trigger: http\n", "").replace(
        "http:\n", 'broken:\n    source: "empty/*.png"\n    model: defects.onnx\nhttp:\n'
    )
    text = text.replace("broken:", "  broken:")
    cfg = load_station(write(site, text), env={"STATION_TEST_TOKEN": TOKEN})
    with Station(cfg) as st:
        wait_for(lambda: st.cameras["side"].frames >= 2, "frames from camera side")
        broken = wait_for(
            lambda: st.cameras["broken"].state == "retrying" and st.cameras["broken"], "retry"
        )
        assert "empty" in broken.reason
        status, _, body = call(st, "GET", "/readyz")
        reasons = json.loads(body)["reasons"]
        assert status == 503 and len(reasons) == 1 and reasons[0].startswith("camera broken")
        assert st.cameras["top"].state == "running"


def test_check_reports_every_finding_with_lines_and_hides_secrets(site, capsys, monkeypatch):
    monkeypatch.setenv("STATION_SECRET", "hunter2-very-secret")
    monkeypatch.delenv("STATION_UNSET", raising=False)
    bad = write(
        site,
        """\
cameras:
  top:
    source: "synthetic://"
    modle: defects.onnx
  side:
    source: "synthetic://"
    model: missing.onnx
    rules: rules.yaml
    drop: sometimes
htttp:
  token: ${STATION_SECRET}
http:
  bind: 0.0.0.0
  token: ${STATION_UNSET}
  password_hint: ${STATION_SECRET}
""",
    )
    assert station_main(["--check", str(bad), "--json", str(site / "f.json")]) == 1
    err = capsys.readouterr().err
    findings = json.loads((site / "f.json").read_text())["findings"]
    text = "\n".join(findings)
    assert "hunter2" not in err and "hunter2" not in text
    assert f"{bad}:4: cameras.top.modle: unknown key 'modle'; did you mean 'model'?" in text
    assert f"{bad}:2: cameras.top: missing 'model:'" in text
    assert "missing.onnx does not exist" in text and f"{bad}:7:" in text
    assert f"{bad}:9: cameras.side.drop: expected one of ['latest', 'none']" in text
    assert f"{bad}:10: htttp: unknown key 'htttp'; did you mean 'http'?" in text
    assert "${STATION_UNSET} is not set" in text and f"{bad}:14:" in text
    assert "0.0.0.0 is reachable from other machines" in text
    assert "password_hint" in text  # an unknown key of http:

    (site / "rules.yaml").write_text(BROKEN)
    semantic = write(site, TWO_CAMERAS.replace("${STATION_TEST_TOKEN}", "t"), "s2.yaml")
    assert station_main(["--check", str(semantic)]) == 1
    err = capsys.readouterr().err
    assert "cameras.top.rules" in err and "rust" in err

    (site / "rules.yaml").write_text(ALWAYS_OK)
    assert station_main(["--check", str(semantic)]) == 0
    assert "ok (2 camera(s): top, side)" in capsys.readouterr().err
    with pytest.raises(StationError, match="problems"):
        load_station(bad)


def test_reload_models_in_process_keeps_the_old_one_when_the_new_fails(site):
    text = TWO_CAMERAS.replace("    rules: rules.yaml\n", "")
    cfg = load_station(write(site, text), env={"STATION_TEST_TOKEN": TOKEN})
    with Station(cfg) as st:
        top = st.cameras["top"]
        wait_for(lambda: top.last_record, "a record")
        assert set(top.last_record["counts"]) == {"background", "scratch", "stain", "crack"}
        assert st.reload() == {"ok": True, "reloaded": [], "errors": []}  # nothing changed

        shutil.copy(starter_file("starter:objects", "onnx"), site / "defects.onnx")
        os.utime(site / "defects.onnx", ns=(time.time_ns(), time.time_ns() + 10**9))
        assert st.changed_files() == [cfg.cameras[0].model]
        report = st.reload()
        assert report["ok"] and sorted(report["reloaded"]) == ["side", "top"]
        wait_for(lambda: set(top.last_record["counts"]) == {"background", "product"}, "new model")
        side = st.cameras["side"]  # adopts it between two frames (a trigger camera: idle)
        wait_for(lambda: side.loop.segmenter is top.loop.segmenter, "camera side on the new model")

        (site / "defects.onnx").write_bytes(b"this is not a model")
        report = st.reload()
        assert not report["ok"] and "defects.onnx" in report["errors"][0]
        assert "previous model keeps running" in report["errors"][0]
        n = top.frames
        wait_for(lambda: top.frames > n + 2, "frames after the failed reload")
        assert set(top.last_record["counts"]) == {"background", "product"}
        stats = json.loads(call(st, "GET", "/cameras/top/stats.json")[2])
        assert stats["notice"].startswith("reload failed: model")
        assert json.loads(call(st, "GET", "/v1/status")[2])["reloads"] == {"ok": 2, "failed": 1}


def _records(path: Path) -> list:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_sighup_reloads_rules_mid_run_and_a_broken_file_keeps_the_old_ones(site):
    text = TWO_CAMERAS.replace('fps=15&seed=1"\n', 'fps=15&seed=1"\n    drop: none\n')
    station_file = write(site, text)
    out = site / "out" / "top.jsonl"
    env = dict(os.environ, STATION_TEST_TOKEN=TOKEN)
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeseg", "station", str(station_file),
         "--json", str(site / "final.json")],
        stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        line = wait_for(lambda: proc.stderr.readline(), "the start line")
        while " at http://" not in line:
            line = proc.stderr.readline()
            assert line, "the station ended before it started serving"
        port = int(line.rsplit(":", 1)[1].strip().strip("/"))
        wait_for(lambda: len(_records(out)) >= 3, "records with the first rules")
        (site / "rules.yaml").write_text(ALWAYS_NG)
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: _records(out)[-1]["verdict"] == "NG", "records with the new rules")
        assert "never-enough" in _records(out)[-1]["reasons"][0]

        (site / "rules.yaml").write_text(BROKEN)
        proc.send_signal(signal.SIGHUP)

        def status():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
            conn.request("GET", f"/v1/status?token={TOKEN}")
            return json.loads(conn.getresponse().read())

        last = wait_for(lambda: (status()["last_reload"] or {}).get("ok") is False and status(), "")
        assert "rust" in last["last_reload"]["errors"][0] and last["ready"]
        n = len(_records(out))
        wait_for(lambda: len(_records(out)) > n + 3, "records after the broken reload")
        assert all(r["verdict"] == "NG" for r in _records(out)[n:])  # the previous rules go on
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(TIMEOUT)
    assert proc.returncode == 0
    recs = _records(out)
    frames = [r["frame"] for r in recs]
    assert frames == list(range(frames[0], frames[0] + len(frames)))  # no frame lost
    final = json.loads((site / "final.json").read_text())
    assert final["cameras"]["top"]["frames"] == len(recs)
    assert final["reloads"] == {"ok": 1, "failed": 1}


def test_live_view_of_a_station_camera_in_a_browser(site, request):
    from test_serve import CHROMIUM

    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    if not shutil.which(CHROMIUM):
        pytest.skip("needs Debian's chromium (tools/apt-packages.txt; make system-deps)")
    cfg = load_station(write(site, TWO_CAMERAS), env={"STATION_TEST_TOKEN": TOKEN})
    with Station(cfg) as st, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            context = browser.new_context()
            page = context.new_page()
            page.set_default_timeout(TIMEOUT * 1000)
            errors: list = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            base = st.server.url
            assert page.request.get(base + "cameras/top/").status == 401
            assert page.goto(f"{base}cameras/top/?token={TOKEN}").status == 200
            page.wait_for_function("document.getElementById('view').naturalWidth === 128")
            page.wait_for_function(
                "document.getElementById('frame').textContent.startsWith('frame')"
            )
            assert page.inner_text("#state") == "live"
            # camera side shows nothing until a trigger: fire one, then open its view; the
            # cookie the first page set lets the browser in without the token
            assert call(st, "POST", "/v1/cameras/side/trigger", b'{"id": "b-1"}')[0] == 200
            side = context.new_page()
            side.set_default_timeout(TIMEOUT * 1000)
            assert side.goto(f"{base}cameras/side/").status == 200
            side.wait_for_function("document.getElementById('view').naturalWidth === 128")
            assert errors == []
        finally:
            browser.close()


def test_broker_restarted_during_a_two_camera_station_run_every_record_arrives(site):
    from line_helpers import MOSQUITTO, MOSQUITTO_REASON, Broker, Subscriber, dedupe

    if MOSQUITTO is None:
        pytest.skip(MOSQUITTO_REASON)
    pytest.importorskip("paho.mqtt.client", reason="needs paho-mqtt: pip install 'edgeseg[line]'")
    broker = Broker(site / "broker")
    broker.start()
    sub = Subscriber(broker.port, "line1/#", client_id="station-sub")
    frames = 60
    text = f"""\
station: line-mqtt
cameras:
  top:
    source: "synthetic://?width=64&height=48&seed=1&frames={frames}&fps=20"
    model: defects.onnx
    sinks: ["mqtt://127.0.0.1:{broker.port}/line1/top"]
  side:
    source: "synthetic://?width=64&height=48&seed=2&frames={frames}&fps=20"
    model: defects.onnx
    sinks: ["mqtt://127.0.0.1:{broker.port}/line1/side"]
    drop: none
http:
  port: 0
outbox: outbox
drain_timeout: 20
"""
    cfg = load_station(write(site, text), env={})
    try:
        with Station(cfg) as st:
            wait_for(lambda: st.cameras["top"].frames >= 15, "frames before the broker stops")
            broker.stop()  # the broker goes away mid-run ...
            time.sleep(1.5)
            broker.start()  # ... and comes back
            wait_for(
                lambda: all(c.state == "ended" for c in st.cameras.values()),
                "both sources to end",
                timeout=120,
            )
            status = st.status()
        for cam in ("top", "side"):
            wait_for(
                lambda cam=cam: len(dedupe(sub.records(f"line1/{cam}"))) >= st.cameras[cam].frames,
                f"every record of camera {cam}",
                timeout=30,
            )
            got = dedupe(sub.records(f"line1/{cam}"))
            assert st.cameras[cam].frames > 0
            assert len(got) == st.cameras[cam].frames
            assert sorted(r["frame"] for r in got) == sorted({r["frame"] for r in got})
        ((spec, d),) = status["cameras"]["top"]["sinks"].items()
        assert spec.startswith("mqtt://") and d["failed"] == 0
    finally:
        sub.close()
        broker.stop()
