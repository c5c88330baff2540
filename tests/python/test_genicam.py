"""GenICam source: pixel-format converters against numpy references, URI options, and the real
GigE Vision protocol against Aravis's camera simulator (arv-fake-gv-camera-0.8) on 127.0.0.1:
discovery, streaming, software and line triggers, buffer accounting; in the camera loop, an
HTTP line trigger answered with its frame's verdict, and the camera killed and restarted."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeseg.camera import genicam_formats as gf
from edgeseg.camera.frame import FrameDropped, open_source
from edgeseg.camera.genicam import GenICamSource
from edgeseg.camera.genicam_uri import frames_lost, parse_genicam_uri
from edgeseg.errors import SourceError

cv2 = pytest.importorskip("cv2")

# ---------------------------------------------------------------------------------------------
# Independent references: packers written from the format definitions (bit by bit, Python
# ints), and a bilinear demosaic written as "average of the same-colour pixels around".


def pack_pfnc(values: np.ndarray, bits: int) -> bytes:
    """PFNC ``MonoNp``: one little-endian bit stream, pixel i at bits [i*bits, (i+1)*bits)."""
    acc = 0
    for i, v in enumerate(values.reshape(-1).tolist()):
        acc |= int(v) << (i * bits)
    return acc.to_bytes((values.size * bits + 7) // 8, "little")


def pack_gige(values: np.ndarray, bits: int) -> bytes:
    """GigE Vision ``MonoNPacked``: per pixel pair, the high 8 bits of each in bytes 0 and 2,
    the low bits of pixel 0 in the low nibble and of pixel 1 in the high nibble of byte 1."""
    flat = values.reshape(-1).tolist()
    if len(flat) % 2:
        flat.append(0)
    low = (1 << (bits - 8)) - 1
    out = bytearray()
    for p0, p1 in zip(flat[0::2], flat[1::2]):
        out += bytes([p0 >> (bits - 8), (p0 & low) | ((p1 & low) << 4), p1 >> (bits - 8)])
    return bytes(out[: (values.size * 12 + 7) // 8])


def demosaic_reference(raw: np.ndarray, pattern: str) -> np.ndarray:
    h, w = raw.shape
    colour = np.empty((h, w), int)
    for k, name in enumerate(pattern):
        colour[k // 2 :: 2, k % 2 :: 2] = {"B": 0, "G": 1, "R": 2}[name]
    padded = np.pad(raw.astype(float), 1)
    out = np.zeros((h, w, 3))
    for c in range(3):
        mask = np.pad((colour == c).astype(float), 1)
        total = sum(
            padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
            * mask[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
        )
        count = sum(
            mask[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy in (-1, 0, 1) for dx in (-1, 0, 1)
        )
        out[..., c] = np.where(colour == c, raw, total / np.maximum(count, 1))
    return out


@pytest.mark.parametrize("name,bits", [("Mono10p", 10), ("Mono12p", 12)])
@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 9), w=st.integers(1, 13), seed=st.integers(0, 2**16))
def test_pfnc_packed_mono_matches_bitstream_reference(name, bits, h, w, seed):
    values = np.random.default_rng(seed).integers(0, 1 << bits, (h, w))
    data = pack_pfnc(values, bits)
    assert len(data) == gf.expected_size(name, w, h)
    np.testing.assert_array_equal(gf.unpack_mono(data, name, w, h), values)
    bgr = gf.bgr_from_buffer(data, name, w, h)
    assert bgr.shape == (h, w, 3) and bgr.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(bgr[..., c], values >> (bits - 8))


@pytest.mark.parametrize("name,bits", [("Mono10Packed", 10), ("Mono12Packed", 12)])
@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 9), w=st.integers(1, 13), seed=st.integers(0, 2**16))
def test_gige_packed_mono_matches_reference(name, bits, h, w, seed):
    values = np.random.default_rng(seed).integers(0, 1 << bits, (h, w))
    data = pack_gige(values, bits)
    np.testing.assert_array_equal(gf.unpack_mono(data, name, w, h), values)
    np.testing.assert_array_equal(
        gf.bgr_from_buffer(data, name, w, h)[..., 1], values >> (bits - 8)
    )


@pytest.mark.parametrize(
    "name,bits", [("Mono10", 10), ("Mono12", 12), ("Mono14", 14), ("Mono16", 16)]
)
def test_unpacked_mono_keeps_top_8_bits(rng, name, bits):
    values = rng.integers(0, 1 << bits, (31, 17)).astype("<u2")
    bgr = gf.bgr_from_buffer(values.tobytes(), gf.PIXEL_FORMATS[name], 17, 31)
    expected = (values >> (bits - 8)).astype(np.uint8)
    for c in range(3):
        np.testing.assert_array_equal(bgr[..., c], expected)


def test_mono8_and_interleaved_colour(rng):
    mono = rng.integers(0, 256, (5, 7), dtype=np.uint8)
    np.testing.assert_array_equal(gf.bgr_from_buffer(mono.tobytes(), "Mono8", 7, 5)[..., 2], mono)
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(gf.bgr_from_buffer(rgb.tobytes(), "RGB8", 7, 5), rgb[..., ::-1])
    np.testing.assert_array_equal(gf.bgr_from_buffer(rgb.tobytes(), "BGR8", 7, 5), rgb)


@pytest.mark.parametrize("pattern", ["RGGB", "GRBG", "GBRG", "BGGR"])
@pytest.mark.parametrize("depth", [8, 10, 12])
def test_bayer_demosaic_matches_bilinear_reference(rng, pattern, depth):
    h, w = 14, 20
    values = rng.integers(0, 1 << depth, (h, w))
    if depth == 8:
        data = values.astype(np.uint8).tobytes()
    else:
        data = values.astype("<u2").tobytes()
    name = f"Bayer{pattern[:2]}{depth}"
    got = gf.bgr_from_buffer(data, name, w, h).astype(float)
    ref = demosaic_reference(values >> (depth - 8), pattern)
    # OpenCV treats the border its own way; inside, bilinear is bilinear (up to rounding).
    assert np.abs(got - ref)[2:-2, 2:-2].max() <= 0.5


@pytest.mark.parametrize("pattern", ["RGGB", "GRBG", "GBRG", "BGGR"])
def test_bayer_flat_colour_comes_back(pattern):
    bgr = np.array([40, 120, 220])  # B, G, R
    h, w = 8, 10
    raw = np.empty((h, w), np.uint8)
    for k, name in enumerate(pattern):
        raw[k // 2 :: 2, k % 2 :: 2] = bgr["BGR".index(name)]
    got = gf.bgr_from_buffer(raw.tobytes(), f"Bayer{pattern[:2]}8", w, h)
    assert (got[2:-2, 2:-2] == bgr).all()


def test_converter_errors_name_the_problem():
    with pytest.raises(ValueError, match="needs 300 bytes, the buffer holds 10"):
        gf.bgr_from_buffer(b"\0" * 10, "Mono8", 20, 15)
    with pytest.raises(ValueError, match=r"0x02100032 is not supported; supported: .*Mono12p"):
        gf.bgr_from_buffer(b"\0" * 10, 0x02100032, 2, 2)
    assert gf.format_name(0x01080009) == "BayerRG8"


# ---------------------------------------------------------------------------------------------
# URI options (no camera needed)


def test_uri_options_are_parsed_and_checked():
    dev, opts = parse_genicam_uri(
        "genicam://Basler-acA1920-4012?exposure=2000&gain=3&pixel_format=BayerRG8&fps=30"
        "&trigger=Line1&packet_size=8192"
    )
    assert dev == "Basler-acA1920-4012"
    assert opts == {
        "exposure": 2000.0,
        "gain": 3.0,
        "pixel_format": "BayerRG8",
        "fps": 30.0,
        "trigger": "line1",
        "packet_size": 8192,
        "buffers": 32,
        "trigger_timeout": 2.0,
    }
    assert parse_genicam_uri("genicam://", trigger="software")[0] is None
    cases = {
        "genicam://?expo=3": "unknown option 'expo'; valid options: exposure, gain",
        "genicam://?fps=fast": "option fps='fast' is not a float",
        "genicam://?trigger=hardware": "use off, software or lineN",
        "genicam://?pixel_format=YUV422_8": "pixel_format='YUV422_8' is not supported",
        "genicam://?exposure=-5": "exposure must be > 0",
        "genicam://?buffers=1": "buffers must be >= 2",
    }
    for uri, message in cases.items():
        with pytest.raises(SourceError, match=message):
            GenICamSource(uri)


def test_frame_id_gaps_follow_gige_wraparound():
    assert frames_lost(None, 7) == 0
    assert frames_lost(10, 11) == 0
    assert frames_lost(10, 14) == 3
    assert frames_lost(65535, 1) == 0  # 16-bit block ids skip 0
    assert frames_lost(65533, 2) == 3  # 65534, 65535, 1
    assert frames_lost(30000, 1) == 0  # backwards, too far for a wrap: counter reset
    assert frames_lost(2**40, 5) == 0  # 64-bit ids (GigE Vision 2) never wrap


# ---------------------------------------------------------------------------------------------
# The real GigE Vision protocol: Aravis's camera simulator on the loopback interface

FAKE = shutil.which("arv-fake-gv-camera-0.8")
GVCP_PORT = 3956


def _aravis_state() -> str:
    from edgeseg.camera.aravis import load_aravis

    try:
        load_aravis("tests")
    except SourceError as exc:
        return f"needs Debian packages python3-gi and gir1.2-aravis-0.8: {exc}"
    return ""


ARAVIS_MISSING = _aravis_state()
needs_fake = pytest.mark.skipif(
    bool(ARAVIS_MISSING) or FAKE is None,
    reason=ARAVIS_MISSING or "needs arv-fake-gv-camera-0.8 from Debian package aravis-tools",
)


def _gvcp_port_bound() -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", GVCP_PORT))
        except OSError:
            return True
    return False


class FakeCamera:
    """arv-fake-gv-camera-0.8 on 127.0.0.1, started and stopped by PID."""

    def __init__(self, serial: str) -> None:
        self.serial = serial
        self.device_id = f"Aravis-Fake-{serial}"
        self.proc: subprocess.Popen | None = None

    def start(self, lost_per_thousand: int = 0) -> None:
        if _gvcp_port_bound():
            raise RuntimeError(
                f"127.0.0.1:{GVCP_PORT} is taken (another GigE Vision camera simulator running?)"
            )
        cmd = [FAKE, "-i", "127.0.0.1", "-s", self.serial]
        if lost_per_thousand:
            cmd += ["-r", str(lost_per_thousand)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not _gvcp_port_bound():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{FAKE} did not start (exit code {self.proc.poll()})")
            time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture(scope="module")
def fake_camera():
    cam = FakeCamera(f"ES{time.time_ns() % 100000:05d}")
    cam.start()
    try:
        yield cam
    finally:
        cam.kill()


@pytest.fixture
def camera(fake_camera):
    """The simulator, running normally (a test that restarts it leaves it like this)."""
    if fake_camera.proc is None or fake_camera.proc.poll() is not None:
        fake_camera.start()
    return fake_camera


def _read_frames(src, n: int, timeout: float = 5.0) -> list:
    return [src.read(timeout=timeout) for _ in range(n)]


@needs_fake
def test_discovery_and_cameras_cli(camera, capsys):
    from edgeseg.camera.aravis import list_devices
    from edgeseg.cli import main

    found = {d["id"]: d for d in list_devices()}
    assert found[camera.device_id]["serial"] == camera.serial
    assert found[camera.device_id]["protocol"] == "GigEVision"
    assert found[camera.device_id]["address"] == "127.0.0.1"

    assert main(["cameras", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert camera.device_id in [d["id"] for d in listed]
    assert main(["cameras", "--features", camera.device_id, "--json"]) == 0
    feats = json.loads(capsys.readouterr().out)
    assert "BayerRG8" in feats["pixel_formats"] and feats["trigger_sources"] == [
        "Line0",
        "Software",
    ]
    assert main(["cameras", "--features", "NoSuchCamera"]) == 1
    assert "devices found" in capsys.readouterr().err


@needs_fake
@pytest.mark.parametrize("fmt", ["Mono8", "Mono16", "BayerGB8", "RGB8"])
def test_streams_frames_with_camera_timestamps(camera, fmt):
    uri = f"genicam://{camera.device_id}?pixel_format={fmt}&fps=50&exposure=3000&gain=2"
    with open_source(uri) as src:
        assert isinstance(src, GenICamSource)
        info = src.device_info
        assert (info["pixel_format"], info["fps"], info["exposure_us"], info["gain_db"]) == (
            fmt,
            50.0,
            3000.0,
            2.0,
        )
        frames = _read_frames(src, 4)
        stats = src.stats()
    for f in frames:
        assert f.image.shape == (512, 512, 3) and f.image.dtype == np.uint8
        assert f.meta["pixel_format"] == fmt and f.source == uri
        if fmt.startswith("Mono"):
            assert (f.image[..., 0] == f.image[..., 2]).all()
    assert [f.index for f in frames] == [0, 1, 2, 3]
    ids = [f.meta["camera_frame_id"] for f in frames]
    assert all(frames_lost(a, b) == 0 and a != b for a, b in zip(ids, ids[1:]))
    stamps = [f.meta["camera_timestamp_ns"] for f in frames]
    assert stamps == sorted(stamps) and len(set(stamps)) == 4
    assert stats["frames"] == 4 and stats["incomplete"] == 0 and stats["connected"] is True


@needs_fake
def test_software_trigger_gives_one_frame_per_trigger(camera):
    with GenICamSource(f"genicam://{camera.device_id}?trigger=software") as src:
        assert src.supports_trigger and src.device_info["trigger_mode"] == "On"
        with pytest.raises(FrameDropped) as idle:
            src.read(timeout=0.5)  # no trigger, no frame
        assert idle.value.kind == "timeout"
        frames = []
        for k in range(4):
            src.fire_trigger(f"part-{k}")
            frames.append(src.read(timeout=5))
        with pytest.raises(FrameDropped):
            src.read(timeout=0.5)  # and nothing more
        stats = src.stats()
    assert [f.meta["trigger_id"] for f in frames] == [f"part-{k}" for k in range(4)]
    ids = [f.meta["camera_frame_id"] for f in frames]
    assert all(frames_lost(a, b) == 0 for a, b in zip(ids, ids[1:]))
    assert (stats["triggers"], stats["triggers_missed"], stats["frames"]) == (4, 0, 4)


@needs_fake
def test_triggers_faster_than_the_reader_keep_their_ids(camera):
    """A burst of triggers while nobody reads: each fires once the previous frame has arrived
    (the simulator, like many cameras, ignores a trigger while busy), the frames queue, and
    each comes out with its own trigger id."""
    with GenICamSource(f"genicam://{camera.device_id}?trigger=software") as src:
        for k in range(5):
            src.fire_trigger(f"burst-{k}")
        frames = _read_frames(src, 5)
        with pytest.raises(FrameDropped):
            src.read(timeout=0.5)
        stats = src.stats()
    assert [f.meta["trigger_id"] for f in frames] == [f"burst-{k}" for k in range(5)]
    assert (stats["triggers_missed"], stats["untriggered_frames"], stats["frames"]) == (0, 0, 5)


@needs_fake
def test_line_trigger_is_configured_and_free_run_has_no_software_trigger(camera):
    with GenICamSource(f"genicam://{camera.device_id}?trigger=line0") as src:
        assert src.hardware_trigger and not src.supports_trigger
        assert not src.live  # so the camera loop takes every frame instead of the newest
        assert (src.device_info["trigger_mode"], src.device_info["trigger_source"]) == (
            "On",
            "Line0",
        )
        with pytest.raises(FrameDropped, match="no frame within"):
            src.read(timeout=0.3)  # nobody pulses the line of a simulator
        with pytest.raises(SourceError, match="needs trigger=software"):
            src.fire_trigger("x")
    with pytest.raises(SourceError, match=r"no trigger source Line1; it offers \['Line0'"):
        GenICamSource(f"genicam://{camera.device_id}?trigger=line1").open()


@needs_fake
def test_frames_queue_in_order_while_the_reader_lags(camera):
    """What a hardware-triggered line relies on: frames the reader has not taken yet wait in
    Aravis's buffers and come out in camera order, none lost (here across the 16-bit id wrap
    a freshly started simulator reaches after 135 frames)."""
    camera.kill()
    camera.start()
    with GenICamSource(f"genicam://{camera.device_id}?fps=100&buffers=128") as src:
        first = src.read(timeout=5)
        time.sleep(0.3)  # the camera keeps sending meanwhile
        frames = _read_frames(src, 150)
        stats = src.stats()
    ids = [first.meta["camera_frame_id"]] + [f.meta["camera_frame_id"] for f in frames]
    assert sum(frames_lost(a, b) for a, b in zip(ids, ids[1:])) == 0
    assert 1 in ids  # wrapped: 65535 -> 1
    assert [f.index for f in frames] == list(range(1, 151))
    assert (stats["lost_frames"], stats["underruns"], stats["frames"]) == (0, 0, 151)


@needs_fake
def test_underruns_are_counted_and_show_as_index_gaps(camera):
    with GenICamSource(f"genicam://{camera.device_id}?fps=200&buffers=2") as src:
        src.read(timeout=5)
        time.sleep(0.3)  # two buffers fill, the rest of the frames find none
        frames = []
        while len(frames) < 5:
            try:
                frames.append(src.read(timeout=5))
            except FrameDropped as exc:  # a loaded host may also lose packets: counted below
                assert exc.kind == "incomplete"
        stats = src.stats()
    assert stats["underruns"] > 0 and stats["lost_frames"] > 0
    # every frame the camera sent has an index: delivered, incomplete or lost
    assert frames[-1].index == stats["frames"] + stats["incomplete"] + stats["lost_frames"] - 1


@needs_fake
def test_missing_packets_are_counted_never_raised(fake_camera):
    fake_camera.kill()
    fake_camera.start(lost_per_thousand=30)
    try:
        with GenICamSource(f"genicam://{fake_camera.device_id}?fps=100") as src:
            kinds = []
            for _ in range(30):
                try:
                    src.read(timeout=5)
                    kinds.append("frame")
                except FrameDropped as exc:
                    kinds.append(exc.kind)
            stats = src.stats()
    finally:
        fake_camera.kill()
    assert "incomplete" in kinds
    assert stats["incomplete"] == kinds.count("incomplete")
    assert stats["missing_packets"] > 0 and stats["status_missing_packets"] > 0


@needs_fake
def test_bad_device_and_format_name_the_fix(camera):
    with pytest.raises(SourceError, match=rf"devices found: \[.*'{camera.device_id}'"):
        GenICamSource("genicam://NoSuchCamera").open()
    with pytest.raises(SourceError, match=r"no pixel_format Mono12p; it offers \[.*BayerBG8"):
        GenICamSource(f"genicam://{camera.device_id}?pixel_format=Mono12p").open()


@needs_fake
def test_missing_typelib_names_the_package():
    code = (
        "from edgeseg.camera.aravis import load_aravis\n"
        "from edgeseg.errors import SourceError\n"
        "try:\n    load_aravis('genicam://cam', version='0.42')\n"
        "except SourceError as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "genicam://cam: Aravis 0.42 introspection data" in out.stdout
    assert "install gir1.2-aravis-0.42" in out.stdout


# ---------------------------------------------------------------------------------------------
# In the camera loop (edgeseg.camera.CameraLoop)


def _wait_for(cond, timeout: float) -> bool:
    """Polls ``cond`` until true or ``timeout`` s (a bound against hangs, not a speed claim)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


class _AreaRules:
    """NG when the segmented product covers more than ``limit`` of the frame."""

    def __init__(self, limit: float) -> None:
        self.limit = limit

    def evaluate(self, result):
        from edgeseg.rules.verdict import Verdict

        area = result.area_fraction["product"]
        if area > self.limit:
            return Verdict(False, [f"product: {area:.3f} > {self.limit}"])
        return Verdict(True)


def _post(url: str, trigger_id: str) -> tuple[int, dict]:
    import urllib.request

    req = urllib.request.Request(
        url,
        data=json.dumps({"id": trigger_id}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status, json.loads(resp.read())


@needs_fake
def test_http_trigger_fires_the_camera_and_answers_with_that_frames_verdict(camera):
    """The factory line POSTs a trigger; the loop fires the camera's software trigger; the
    answer is the record of exactly that frame — one at a time, then three parts at once."""
    from concurrent.futures import ThreadPoolExecutor

    from camera_helpers import WarmSegmenter

    from edgeseg.camera import CameraLoop
    from edgeseg.camera.triggers import open_trigger

    trig = open_trigger("http://127.0.0.1:0/trigger", timeout=20)
    src = GenICamSource(f"genicam://{camera.device_id}?trigger=software&pixel_format=BayerRG8")
    seen = []
    loop = CameraLoop(
        src, WarmSegmenter(), rules=_AreaRules(0.05), trigger=trig, on_result=seen.append
    )
    ids = [f"part-{k}" for k in range(6)]
    answers = {}
    with loop:
        for tid in ids[:3]:
            answers[tid] = _post(trig.url, tid)
        with ThreadPoolExecutor(3) as pool:
            answers.update(zip(ids[3:], pool.map(lambda t: _post(trig.url, t), ids[3:])))
        assert not loop.join(0.5)  # no trigger, no frame, no result
    assert [it.frame.meta["trigger_id"] for it in seen[:3]] == ids[:3]
    assert sorted(it.frame.meta["trigger_id"] for it in seen) == ids  # one frame per trigger
    by_id = {it.frame.meta["trigger_id"]: it for it in seen}
    for tid, (status, rec) in answers.items():  # each answer is the record of its own frame
        item = by_id[tid]
        assert status == 200 and rec["trigger_id"] == tid
        assert (rec["frame"], rec["verdict"]) == (item.frame.index, item.verdict.label)
        assert rec["camera_frame_id"] == item.frame.meta["camera_frame_id"]
        assert rec["camera_timestamp_ns"] == item.frame.meta["camera_timestamp_ns"]
    frame_ids = [it.frame.meta["camera_frame_id"] for it in seen]
    assert all(frames_lost(a, b) == 0 for a, b in zip(frame_ids, frame_ids[1:]))
    stats = loop.stats.snapshot()
    assert stats["frames"] == 6 and stats["source"]["triggers"] == 6
    assert stats["source"]["triggers_missed"] == 0


@needs_fake
def test_loop_survives_the_camera_going_away(camera):
    """Killed and restarted (power cycle): noticed, re-discovered with backoff, reopened with
    its options; the loop never stops and frame indices keep counting."""
    from camera_helpers import WarmSegmenter

    from edgeseg.camera import CameraLoop

    seen = []
    src = GenICamSource(f"genicam://{camera.device_id}?fps=30")
    loop = CameraLoop(src, WarmSegmenter(), on_result=seen.append)
    loop.start()
    try:
        assert _wait_for(lambda: loop.stats.frames >= 10, 30), loop.stats.snapshot()
        camera.kill()
        assert _wait_for(lambda: src.stats()["disconnects"] == 1, 30), src.stats()
        # the heartbeat noticed; re-discovery then fails at least once (and backs off)
        assert _wait_for(lambda: src.stats()["reconnect_attempts"] >= 1, 30), src.stats()
        gone = src.stats()
        assert not gone["connected"]
        assert f"cannot open camera {camera.device_id}" in gone["last_error"]
        n_down = loop.stats.frames
        camera.start()
        assert _wait_for(lambda: loop.stats.frames >= n_down + 10, 40), loop.stats.snapshot()
        assert loop.error is None and not loop.join(0)  # the loop never stopped
    finally:
        final = loop.stop()
    assert final["source"]["disconnects"] == 1 and final["source"]["reconnects"] == 1
    idx = [it.frame.index for it in seen]
    assert len(seen) == final["frames"] and idx == sorted(set(idx))  # indices count on
