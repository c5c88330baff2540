"""The browser live view (sink ``serve``): a real server on 127.0.0.1, real HTTP clients and a
real headless Chromium (Debian's ``chromium``, driven by Playwright) fed with real LoopItems."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
import warnings

import cv2
import numpy as np
import pytest

from edgeseg.camera.frame import Frame
from edgeseg.errors import SinkError
from edgeseg.rules.verdict import Verdict
from edgeseg.runtime.result import ClassInfo, SegResult
from edgeseg.sinks import LoopItem, make_record, open_sink
from edgeseg.sinks.serve import ServeSink, parse_addr

W, H = 320, 240
CLASSES = [
    ClassInfo(0, "background", (0, 0, 0), index=0),
    ClassInfo(1, "scratch", (255, 0, 0), index=1),
    ClassInfo(2, "dent", (0, 0, 255), index=2),
]
REASON = 'scratch: 1.8 mm² in zone "seal" > 0.5 mm²'
TIMEOUT = 20.0
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def make_item(i: int, size: tuple[int, int] = (H, W)) -> LoopItem:
    """Frame ``i``: grey, left half background (confidence 0.05), right half scratch (0.2); a
    white block moving along the bottom strip and a dent whose area grows with ``i``."""
    h, w = size
    img = np.full((h, w, 3), 128, np.uint8)
    x = (i * 7) % (w - 40)
    img[h - 50 : h - 10, x : x + 40] = 255
    cm = np.zeros((h, w), np.uint8)
    cm[:, w // 2 :] = 1
    cm[h - 30 :, : 1 + i % 100] = 2
    conf = np.where(cm == 0, 0.05, 0.2).astype(np.float32)
    result = SegResult(
        class_map=cm,
        confidence=conf,
        classes=CLASSES,
        counts_array=np.bincount(cm.ravel(), minlength=len(CLASSES)).astype(np.int64),
        frame=img,
        timings={"inference": 3.0 + i % 3, "total": 5.0 + i % 3},
    )
    frame = Frame(image=img, index=i, t_capture=time.time() - 0.01, source="synthetic://")
    verdict = Verdict(ok=True) if i % 10 < 5 else Verdict(ok=False, reasons=[REASON])
    stats = {"fps": 20.0 + i % 7, "latency_ms": {"p50": 4.0, "p99": 6.0 + i % 4}, "dropped": i}
    record = make_record(frame, result, verdict, time.time())
    return LoopItem(frame=frame, result=result, verdict=verdict, record=record, stats=stats)


class Feeder:
    """Writes a new item every 30 ms from its own thread, as the loop's sink thread does."""

    def __init__(self, sink: ServeSink) -> None:
        self.sink, self.stop, self.n = sink, threading.Event(), 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            self.sink.write(make_item(self.n))
            self.n += 1
            self.stop.wait(0.03)

    def __enter__(self) -> Feeder:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(TIMEOUT)


@pytest.fixture
def sink():
    s = ServeSink("127.0.0.1:0", quiet=True, max_fps=None)
    s.open()
    yield s
    s.close()


def get(url: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def open_stream(sink: ServeSink, query: str = "") -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", sink.port, timeout=TIMEOUT)
    conn.request("GET", "/stream.mjpg" + query)
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.getheader("Content-Type").startswith("multipart/x-mixed-replace")
    return resp


def read_part(resp: http.client.HTTPResponse) -> tuple[dict, bytes]:
    """One part of a multipart MJPEG response: its headers and the JPEG (HTTP/1.1 chunks are
    undone by http.client)."""
    line = resp.readline()
    while line.strip() == b"":
        line = resp.readline()
    assert line.strip() == b"--edgeseg-frame"
    headers = {}
    for line in iter(resp.readline, b"\r\n"):
        key, _, value = line.decode().partition(":")
        headers[key.strip().lower()] = value.strip()
    data = resp.read(int(headers["content-length"]))
    return headers, data


def next_new_part(resp: http.client.HTTPResponse, shown: str) -> tuple[dict, bytes]:
    """The next part of another frame than ``shown`` (a frame that waited a second for its
    successor is sent once more, so browsers show it)."""
    headers, data = read_part(resp)
    if headers["x-frame-index"] == shown:
        headers, data = read_part(resp)
    return headers, data


def decode(jpeg: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None, "the server sent bytes that are not a JPEG"
    return img


# -- HTTP level --------------------------------------------------------------------------------


def test_port_zero_url_newest_frame_only_and_no_encoding_without_viewer(sink):
    assert sink.port != 0 and sink.url == f"http://127.0.0.1:{sink.port}/"
    for i in range(50):
        sink.write(make_item(i))
    assert sink.stats()["jpeg_encoded"] == 0  # nobody watches: nothing encoded
    resp = open_stream(sink)
    headers, jpeg = read_part(resp)
    assert headers["x-frame-index"] == "49"  # the newest frame, not a queue from frame 0
    assert decode(jpeg).shape == (H, W, 3)
    second = open_stream(sink)
    assert read_part(second)[0]["x-frame-index"] == "49"
    assert sink.stats()["jpeg_encoded"] == 1  # one encode per frame and mode, however many watch
    sink.write(make_item(50))
    assert next_new_part(resp, "49")[0]["x-frame-index"] == "50"
    assert next_new_part(second, "49")[0]["x-frame-index"] == "50"
    resp.close()
    second.close()


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback (::1) on this machine")
def test_ipv6_loopback():
    with ServeSink("[::1]:0", quiet=True) as s:
        s.write(make_item(3))
        assert s.url == f"http://[::1]:{s.port}/"
        assert json.loads(get(s.url + "stats.json")[2])["frame"] == 3


def test_confidence_modes_change_the_served_image(sink):
    sink.write(make_item(0))
    px = {}
    for mode in ("off", "alpha", "heatmap"):
        status, headers, body = get(f"{sink.url}frame.jpg?conf={mode}")
        assert status == 200 and headers["Content-Type"] == "image/jpeg"
        img = decode(body).astype(int)  # BGR
        px[mode] = (img[60, W // 4], img[60, 3 * W // 4])  # background, scratch
    (bg, sc) = px["off"]
    assert abs(bg[2] - bg[0]) < 15 and sc[2] - sc[0] > 100  # grey; scratch red at alpha 0.5
    (bg, sc) = px["alpha"]
    assert abs(bg[2] - bg[0]) < 15 and 5 < sc[2] - sc[0] < 60  # red faded by confidence 0.2
    (bg, sc) = px["heatmap"]
    assert bg[0] - bg[2] > 60 and sc[0] - sc[2] > 40  # unsure pixels turn blue
    assert get(f"{sink.url}frame.jpg?conf=rainbow")[0] == 400


def test_results_without_confidence_or_frame_still_stream(sink):
    item = make_item(0)
    item.result.confidence = None
    sink.write(item)
    off = get(f"{sink.url}frame.jpg?conf=off")[2]
    assert get(f"{sink.url}frame.jpg?conf=heatmap")[2] == off  # falls back to the plain overlay
    assert json.loads(get(f"{sink.url}stats.json")[2])["has_confidence"] is False
    item = make_item(1)
    item.result.frame = None
    sink.write(item)
    img = decode(get(f"{sink.url}frame.jpg")[2]).astype(int)
    assert np.abs(img[60, 3 * W // 4] - (0, 0, 255)).max() < 20  # the class colour alone (BGR)


def test_stats_json_carries_record_classes_verdicts_and_loop_stats(sink):
    assert get(f"{sink.url}frame.jpg")[0] == 503  # no frame yet, says so
    for i in range(12):
        sink.write(make_item(i))
    status, _, body = get(f"{sink.url}stats.json")
    s = json.loads(body)
    assert status == 200 and s["frame"] == 11 and s["verdict"] == "OK"
    assert [c["name"] for c in s["classes"]] == ["background", "scratch", "dent"]
    assert s["classes"][1]["color"] == "#ff0000"
    assert s["classes"][1]["area_fraction"] == 0.5
    assert s["classes"][2]["area_fraction"] == pytest.approx(30 * 12 / (W * H))
    assert s["loop"] == {"fps": 24.0, "latency_ms": {"p50": 4.0, "p99": 9.0}, "dropped": 11}
    # frames 0-4 OK, 5-9 NG, 10-11 OK: three runs, newest first
    assert [(v["label"], v["first_frame"], v["last_frame"]) for v in s["verdicts"]] == [
        ("OK", 10, 11),
        ("NG", 5, 9),
        ("OK", 0, 4),
    ]
    assert s["verdicts"][1]["reasons"] == [REASON]


def test_token_protects_every_endpoint():
    with ServeSink("127.0.0.1:0", token="s3cret", quiet=True) as s:
        s.write(make_item(0))
        for path in ("", "index.html", "stream.mjpg", "frame.jpg", "events", "stats.json"):
            status, headers, body = get(s.url + path)
            assert status == 401, path
            assert b"token" in body and "Bearer" in headers["WWW-Authenticate"]
            assert get(f"{s.url}{path}?token=wrong")[0] == 401
        assert get(f"{s.url}stats.json?token=s3cret")[0] == 200
        assert get(f"{s.url}stats.json", {"Authorization": "Bearer s3cret"})[0] == 200
        assert get(f"{s.url}frame.jpg", {"X-Edgeseg-Token": "s3cret"})[0] == 200
        status, headers, _ = get(f"{s.url}?token=s3cret")
        cookie = headers["Set-Cookie"].split(";")[0]
        assert status == 200 and "s3cret" not in cookie  # the cookie holds a hash, not the token
        assert get(f"{s.url}stats.json", {"Cookie": cookie})[0] == 200
        assert get(f"{s.url}stats.json", {"Cookie": cookie[:-1] + "x"})[0] == 401


def test_close_disconnects_viewers_and_leaves_no_threads():
    before = set(threading.enumerate())
    s = ServeSink("127.0.0.1:0", quiet=True)
    s.open()
    s.write(make_item(0))
    resp = open_stream(s)
    read_part(resp)
    assert s.stats()["clients"] == 1
    s.close()
    while resp.fp.read(4096):  # ends (EOF) instead of waiting for frames; a hang times out
        pass
    left = [t.name for t in threading.enumerate() if t not in before and t.is_alive()]
    assert left == []
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", s.port), timeout=TIMEOUT).close()
    s.close()  # twice is fine


def test_stalled_viewer_never_blocks_write():
    """A viewer that stops reading fills its socket; write() goes on and close() still ends."""
    rng = np.random.default_rng(0)
    noisy = [make_item(i, size=(480, 640)) for i in range(4)]
    for it in noisy:  # incompressible frames fill the socket buffers quickly
        it.result.frame[:] = rng.integers(0, 256, it.result.frame.shape, dtype=np.uint8)
    with ServeSink("127.0.0.1:0", quiet=True, max_fps=None, jpeg_quality=95) as s:
        stalled = socket.create_connection(("127.0.0.1", s.port), timeout=TIMEOUT)
        stalled.sendall(b"GET /stream.mjpg HTTP/1.0\r\n\r\n")
        writer = threading.Thread(target=lambda: [s.write(noisy[i % 4]) for i in range(400)])
        writer.start()
        writer.join(TIMEOUT)
        assert not writer.is_alive() and s.stats()["written"] == 400
    stalled.settimeout(TIMEOUT)
    try:
        while stalled.recv(1 << 16):  # the server closed it: drains to EOF (a hang times out)
            pass
    except ConnectionResetError:
        pass  # closed with unsent frames still queued: a reset ends it just as well
    stalled.close()


def test_addresses_ports_and_options_are_checked():
    assert parse_addr("8081") == ("127.0.0.1", 8081)
    assert parse_addr(":0") == ("127.0.0.1", 0)
    assert parse_addr("0.0.0.0:9000") == ("0.0.0.0", 9000)
    assert parse_addr("[::1]:8080") == ("::1", 8080)
    with pytest.raises(SinkError, match="port 'http'.*HOST:PORT"):
        ServeSink("127.0.0.1:http")
    with pytest.raises(SinkError, match="0..65535"):
        ServeSink("127.0.0.1:70000")
    with pytest.raises(SinkError, match="brackets"):
        ServeSink("::1:8080")
    with pytest.raises(SinkError, match="confidence='rainbow'"):
        ServeSink(confidence="rainbow")
    with pytest.raises(SinkError, match="token"):
        ServeSink(token="")
    with pytest.raises(SinkError, match="cannot listen on 203.0.113.7"):
        ServeSink("203.0.113.7:0", "t0k", quiet=True).open()  # TEST-NET-3: not an address of ours
    with ServeSink("127.0.0.1:0", quiet=True) as first:
        with pytest.raises(SinkError, match=f"port {first.port} on 127.0.0.1 is in use.*:0"):
            ServeSink(f"127.0.0.1:{first.port}", quiet=True).open()


def test_wildcard_bind_without_token_is_refused_and_registry_builds_it():
    with pytest.raises(SinkError, match="reachable from other machines.*token.*127.0.0.1"):
        ServeSink("0.0.0.0:0", quiet=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sink = open_sink("serve:0.0.0.0:0", token="t0k", quiet=True)
        assert isinstance(sink, ServeSink) and sink.spec == "serve:0.0.0.0:0"
        sink.open()
        assert sink.url == f"http://127.0.0.1:{sink.port}/"
        assert get(sink.url + "stats.json")[0] == 401
        assert get(sink.url + "stats.json?token=t0k")[0] == 200
        sink.close()
    assert (open_sink("serve").host, open_sink("serve").port) == ("127.0.0.1", 8080)


# -- in a real headless browser -------------------------------------------------------------

# Reads the <img> through a canvas: with x >= 0 the red minus blue of pixel (x, y), else a
# checksum of the strip the white block moves in. Passed as a function (the page's CSP forbids
# evaluating strings).
READ_JS = """([x, y]) => { const img = document.getElementById('view');
  if (!img.naturalWidth) return null;
  const c = document.createElement('canvas'); c.width = img.naturalWidth;
  c.height = img.naturalHeight; const g = c.getContext('2d'); g.drawImage(img, 0, 0);
  if (x < 0) { let h = 0; for (const v of g.getImageData(0, c.height - 50, c.width, 40).data)
    h = (h * 31 + v) >>> 0; return h; }
  const p = g.getImageData(x, y, 1, 1).data; return p[0] - p[2]; }"""
# True once READ_JS gives a value inside [lo, hi], or (for a checksum) one other than `first`.
WAIT_JS = f"""([x, y, lo, hi, first]) => {{ const v = ({READ_JS})([x, y]);
  if (v === null) return false;
  return first !== null ? v !== first : lo <= v && v <= hi; }}"""


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    if not shutil.which(CHROMIUM):
        pytest.skip("needs Debian's chromium (tools/apt-packages.txt; make system-deps)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT * 1000)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    yield pg
    context.close()
    assert errors == [], "the page logged errors"


def test_browser_page_shows_frames_and_live_stats(sink, page):
    with Feeder(sink):
        resp = page.goto(sink.url)
        assert resp.status == 200 and page.title() == "edgeseg live view"
        page.wait_for_function("document.getElementById('view').naturalWidth > 0")
        assert page.evaluate("document.getElementById('view').naturalWidth") == W
        first = page.evaluate(READ_JS, [-1, 0])
        page.wait_for_function(WAIT_JS, arg=[-1, 0, 0, 0, first])  # a newer frame shows
        page.wait_for_function("document.getElementById('frame').textContent.startsWith('frame')")
        stats1 = page.inner_text("#loop-stats")
        page.wait_for_function(
            "s => document.getElementById('loop-stats').innerText !== s", arg=stats1
        )
        assert "fps" in stats1 and "latency_ms.p99" in stats1 and "dropped" in stats1
        assert page.inner_text("#areas li[data-class=scratch]").split() == ["scratch", "50.00", "%"]
        page.wait_for_function(
            "r => document.getElementById('verdicts').innerText.includes(r)", arg=REASON
        )
        assert page.inner_text("#state") == "live"
        assert sink.stats()["clients"] == 2  # the MJPEG stream and the event stream


def test_browser_confidence_switch_changes_the_stream(sink, page):
    with Feeder(sink):
        page.goto(sink.url)
        x, y = 3 * W // 4, 60  # in the scratch half, away from the moving block
        page.wait_for_function(WAIT_JS, arg=[x, y, 100, 255, None])  # off: red at alpha 0.5
        page.check("input[value=heatmap]")
        page.wait_for_function(WAIT_JS, arg=[x, y, -255, -40, None])  # unsure: blue
        page.check("input[value=alpha]")
        page.wait_for_function(WAIT_JS, arg=[x, y, 5, 60, None])  # red faded by confidence
        page.check("input[value=off]")
        page.wait_for_function(WAIT_JS, arg=[x, y, 100, 255, None])


def test_browser_with_token(page):
    with ServeSink("127.0.0.1:0", token="s3cret", quiet=True) as s, Feeder(s):
        assert page.request.get(s.url).status == 401  # (a navigation would log the 401)
        assert page.goto(f"{s.url}?token=s3cret").status == 200
        page.wait_for_function("document.getElementById('view').naturalWidth > 0")
        page.wait_for_function("document.getElementById('frame').textContent.startsWith('frame')")


def test_a_lone_frame_is_sent_again_so_browsers_show_it(sink):
    """A triggered camera may deliver one frame and then nothing for minutes: its part is
    repeated once (from the cache, no second encoding) so the browser displays it."""
    sink.write(make_item(7))
    resp = open_stream(sink)
    first, second = read_part(resp), read_part(resp)  # the second one within about a second
    assert first[0]["x-frame-index"] == second[0]["x-frame-index"] == "7"
    assert first[1] == second[1] and sink.stats()["jpeg_encoded"] == 1
    sink.write(make_item(8))
    assert read_part(resp)[0]["x-frame-index"] == "8"
    resp.close()
