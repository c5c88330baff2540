"""Hostile files and unlucky users: nothing takes the machine down, no secret is shown.

Alias bombs and duplicate keys in YAML, decompression-bomb images and zips, file names that
are not UTF-8, credentials in sink specs, a full disk under the archive, a frame smaller than
the tile; plus property tests feeding random text and bytes to every reader (only
EdgesegError subclasses may come out).
"""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import stat
import struct
import subprocess
import sys
import tracemalloc
import urllib.request
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from edgeseg._redact import redact
from edgeseg._text import printable, short
from edgeseg._yaml import load_yaml
from edgeseg.data import check, format_report, open_dataset
from edgeseg.data.classes import ClassMap
from edgeseg.data.files import read_image, read_mask_image
from edgeseg.errors import DatasetError, EdgesegError, RulesError, TrainingError
from edgeseg.rules import Rules

CLASSES_YAML = "- {id: 0, name: background, color: [0, 0, 0]}\n- {id: 1, name: scratch}\n"
PROPERTY = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


# ======================================================================================
# YAML
# ======================================================================================
def billion_laughs() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    prev = "a"
    for name in "bcdefghi":
        lines.append(f"{name}: &{name} [{','.join(['*' + prev] * 9)}]")
        prev = name
    lines.append(f"rules: *{prev}")
    return "\n".join(lines) + "\n"


def test_billion_laughs_is_refused_without_expanding(tmp_path):
    text = billion_laughs()
    assert len(text) < 600  # a few hundred bytes that expand to 9**9 strings
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    tracemalloc.start()
    try:
        with pytest.raises(RulesError, match="aliases are expanded") as info:
            Rules.from_file(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20e6, f"{peak / 1e6:.0f} MB traced: the aliases were expanded"
    assert str(path) in str(info.value) and len(str(info.value)) < 500


def test_recursive_alias_is_refused(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("rules: &r\n  - *r\n")
    with pytest.raises(RulesError, match="recursive alias"):
        Rules.from_file(path)


def test_duplicate_keys_are_refused_with_both_lines(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - class: scratch\n    max_area_px: 5\n    max_area_px: 500\n")
    with pytest.raises(RulesError) as info:
        Rules.from_file(path)
    msg = str(info.value)
    assert "duplicate key 'max_area_px' at line 4 (first at line 3)" in msg and str(path) in msg


def test_duplicate_keys_in_class_map_and_train_config(tmp_path):
    classes = tmp_path / "classes.yaml"
    classes.write_text("- {id: 0, name: bg, name: scratch}\n")
    with pytest.raises(DatasetError, match="duplicate key 'name'"):
        ClassMap.load(classes)
    from edgeseg.train.cli import build_parser, config_from_args

    conf = tmp_path / "train.yaml"
    conf.write_text("epochs: 5\nlr: 0.01\nepochs: 50\n")
    args = build_parser().parse_args(["--out", str(tmp_path / "run"), "--config", str(conf)])
    with pytest.raises(
        TrainingError, match=r"duplicate key 'epochs' at line 3 \(first at line 1\)"
    ):
        config_from_args(args)


def test_anchors_and_merge_keys_still_work(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(
        "base: &base {class: scratch, min_confidence: 0.5}\n"
        "rules:\n"
        "  - <<: *base\n    max_area_px: 10\n"
        "  - <<: *base\n    min_confidence: 0.8\n    max_blobs: 0\n"
    )
    data = load_yaml(path.read_text(), str(path), RulesError)
    rules = Rules.from_dict({"rules": data["rules"]}, source=str(path))
    assert [r.max_area_px for r in rules.rules] == [10, None]
    assert [r.min_confidence for r in rules.rules] == [0.5, 0.8]


def test_size_bound_and_syntax_errors_keep_line_numbers(tmp_path, monkeypatch):
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - class: scratch\n    max_blobs: [0\n")
    with pytest.raises(RulesError, match=r"not valid YAML at line \d+, column \d+"):
        Rules.from_file(path)
    monkeypatch.setenv("EDGESEG_MAX_YAML_BYTES", "100")
    path.write_text("rules:\n" + "  - {class: scratch, max_blobs: 0}\n" * 10)
    with pytest.raises(RulesError, match="EDGESEG_MAX_YAML_BYTES"):
        Rules.from_file(path)


def test_error_messages_quote_bounded_values(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("rules: " + json.dumps(["x" * 1000] * 1000) + "\n")
    with pytest.raises(RulesError) as info:
        Rules.from_file(path)
    assert "rule 1" in str(info.value) and len(str(info.value)) < 600
    assert len(short(list(range(10**6)))) <= 200


# ======================================================================================
# images: the pixel budget
# ======================================================================================
def huge_png(path: Path, width: int = 30000, height: int = 30000) -> Path:
    """A valid 1-bit PNG of width × height black pixels (height a multiple of 1000), about
    100 kB on disk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"\0" * (1 + (width + 7) // 8) * 1000
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(rows) for _ in range(height // 1000)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
    return path


def small_dataset(root: Path, rng, n: int = 6, size: int = 32, names=None) -> Path:
    """A folder dataset of ``n`` random images with a square of class 1; ``names`` (bytes)
    are written as given, whatever their encoding."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.yaml").write_text(CLASSES_YAML)
    for name in names or [b"img%02d" % i for i in range(n)]:
        img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        mask = np.zeros((size, size), np.uint8)
        mask[4:12, 4:12] = 1
        for folder, arr in (("images", img), ("masks", mask)):
            path = os.fsdecode(os.path.join(os.fsencode(root / folder), name + b".png"))
            Image.fromarray(arr).save(path)
    return root


def test_huge_image_is_a_finding_not_an_oom(tmp_path, rng):
    root = small_dataset(tmp_path / "ds", rng)
    huge_png(root / "images" / "img00.png")
    huge_png(root / "masks" / "img01.png")
    assert (root / "images" / "img00.png").stat().st_size < 1e6
    report = check(root, workers=1, progress=False)
    big = {f["file"].rsplit("/", 1)[-1]: f for f in report["errors"] if f["kind"] == "too_large"}
    assert set(big) == {"img00.png", "img01.png"}, report["errors"]
    assert "30000×30000" in big["img00.png"]["detail"]
    assert "EDGESEG_MAX_IMAGE_PIXELS" in big["img00.png"]["detail"]
    assert "NOT OK" in format_report(report)


def test_pixel_budget_is_configurable_and_reaches_opencv(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "a.png")
    monkeypatch.setenv("EDGESEG_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(DatasetError, match=r"40 = 2\.0 Mpx|50×40"):
        read_image(str(tmp_path / "a.png"))
    with pytest.raises(DatasetError, match="EDGESEG_MAX_IMAGE_PIXELS"):
        read_mask_image((tmp_path / "a.png").read_bytes(), "a.png")
    monkeypatch.setenv("EDGESEG_MAX_IMAGE_PIXELS", "3000")
    assert read_image(str(tmp_path / "a.png")).rgb.shape == (40, 50, 3)
    pytest.importorskip("cv2")
    code = (  # OpenCV 4 returns None above its limit, OpenCV 5 raises
        "import os, edgeseg, cv2\n"
        "try:\n"
        f"    refused = cv2.imread({str(tmp_path / 'a.png')!r}) is None\n"
        "except cv2.error as e:\n"
        "    refused = 'CV_IO_MAX_IMAGE_PIXELS' in str(e)\n"
        "print(os.environ['OPENCV_IO_MAX_IMAGE_PIXELS'], refused)"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_IO_MAX_IMAGE_PIXELS"}
    env["EDGESEG_MAX_IMAGE_PIXELS"] = "1000"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["1000", "True"]


def test_predict_refuses_a_huge_image(tmp_path, tiny_onnx):
    from edgeseg.runtime.cli import main

    huge_png(tmp_path / "big.png")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "ok.png")
    out = tmp_path / "out"
    rc = main(
        [
            str(tiny_onnx),
            str(tmp_path / "big.png"),
            str(tmp_path / "ok.png"),
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert rc == 1
    summary = json.loads((out / "summary.json").read_text())
    assert [f["image"].rsplit("/", 1)[-1] for f in summary["failed"]] == ["big.png"]
    assert "EDGESEG_MAX_IMAGE_PIXELS" in summary["failed"][0]["error"]
    assert (out / "ok_mask.png").exists()


# ======================================================================================
# zips
# ======================================================================================
def _zip_dataset(src: Path, dest: Path, extra=()) -> Path:
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(src.rglob("*")):
            if p.is_file():
                z.write(p, p.relative_to(src.parent).as_posix())
        for name, data in extra:
            z.writestr(name, data)
    return dest


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """tempfile's folder moved under tmp_path, to see what an archive unpacked."""
    import tempfile

    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _unpacked_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_zip_bomb_member_is_refused_before_extraction(tmp_path, rng, private_tmp):
    ds = small_dataset(tmp_path / "ds", rng)
    zero = bytes(64 * 1024 * 1024)
    archive = _zip_dataset(ds, tmp_path / "ds.zip", [("ds/images/bomb.bmp", zero)])
    assert archive.stat().st_size < 1e6
    with pytest.raises(DatasetError, match="EDGESEG_MAX_ZIP_RATIO") as info:
        open_dataset(archive)
    assert "bomb.bmp" in str(info.value)
    assert _unpacked_bytes(private_tmp) < 1e6


def test_zip_total_budget_and_lying_headers(tmp_path, rng, private_tmp, monkeypatch):
    ds = small_dataset(tmp_path / "ds", rng)
    archive = _zip_dataset(ds, tmp_path / "ds.zip")
    assert len(open_dataset(archive)) == 6  # within the budget: opens as before
    monkeypatch.setenv("EDGESEG_MAX_ZIP_BYTES", "1000")
    with pytest.raises(DatasetError, match="EDGESEG_MAX_ZIP_BYTES"):
        open_dataset(archive)
    monkeypatch.delenv("EDGESEG_MAX_ZIP_BYTES")
    # a member whose headers declare 10 bytes but that holds 5 MB
    liar = tmp_path / "liar.zip"
    with zipfile.ZipFile(liar, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("ds/images/a.bmp", bytes(5_000_000))
    raw = bytearray(liar.read_bytes())
    for sig, off in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = raw.find(sig)
        raw[at + off : at + off + 4] = struct.pack("<I", 10)
    liar.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match="cannot extract|more bytes than"):
        open_dataset(liar)
    assert _unpacked_bytes(private_tmp) < 1e6


def test_zip_path_traversal_is_refused(tmp_path, rng, private_tmp):
    ds = small_dataset(tmp_path / "ds", rng)
    for evil in ("../../evil.txt", "/tmp/evil.txt", "ds/../../evil.txt"):
        archive = _zip_dataset(ds, tmp_path / "evil.zip", [(evil, b"owned")])
        with pytest.raises(DatasetError, match="points outside the archive"):
            open_dataset(archive)
    assert not list(tmp_path.rglob("evil.txt"))


# ======================================================================================
# file names that are not UTF-8
# ======================================================================================
LATIN1 = b"caf\xe9"  # "café" in Latin-1: not UTF-8


def test_non_utf8_names_end_to_end(tmp_path, rng):
    pytest.importorskip("torch")
    root = small_dataset(tmp_path / "ds", rng, names=[LATIN1, b"ok1", b"ok2", b"ok3", b"ok4"])
    report = check(root, workers=1, progress=False)
    text = json.dumps(report, ensure_ascii=False)
    text.encode("utf-8")  # no lone surrogates
    assert report["num_images"] == 5
    from edgeseg.train.data import scan

    ds = open_dataset(root)
    first = scan(ds, "all").data_hash
    assert first.startswith("blake2b:") and scan(open_dataset(root), "all").data_hash == first
    # a finding about that file shows the byte visibly
    os.remove(os.path.join(os.fsencode(root / "masks"), LATIN1 + b".png"))
    report = check(root, workers=1, progress=False)
    files = [f["file"] for f in report["errors"] + report["warnings"]]
    assert any("caf\\xe9.png" in f for f in files), files
    json.dumps(report, ensure_ascii=False).encode("utf-8")
    assert printable(os.fsdecode(LATIN1)) == "caf\\xe9" and printable("café") == "café"


def test_train_on_non_utf8_names(tmp_path, rng):
    pytest.importorskip("torch")
    pytest.importorskip("albumentations")
    from edgeseg.train.cli import main

    names = [LATIN1 + b"%d" % i for i in range(6)]
    root = small_dataset(tmp_path / "ds", rng, names=names, size=64)
    (root / "splits").mkdir()
    stems = sorted(os.fsdecode(n) for n in names)
    (root / "splits" / "train.txt").write_text(
        "\n".join(stems[:4]) + "\n", "utf-8", "surrogateescape"
    )
    (root / "splits" / "val.txt").write_text(
        "\n".join(stems[4:]) + "\n", "utf-8", "surrogateescape"
    )
    (root / "splits" / "test.txt").write_text("")
    rc = main(
        [
            "--data",
            str(root),
            "--out",
            str(tmp_path / "run"),
            "--size",
            "64",
            "--epochs",
            "1",
            "--max-steps",
            "1",
            "--batch",
            "2",
            "--workers",
            "0",
            "--width",
            "0.25",
            "--no-progress",
            "--device",
            "cpu",
        ]
    )
    assert rc == 0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())


# ======================================================================================
# secrets
# ======================================================================================
@pytest.mark.parametrize(
    "text, hidden, kept",
    [
        ("mqtt://user:PASSWORD@host:1883/t", "PASSWORD", "mqtt://user:***@host:1883/t"),
        ("mqtt://h/t?username=u&password=PW1&qos=1", "PW1", "username=u&password=***&qos=1"),
        ("webhook:https://h/x?token=T0K&api_key=K3Y", "T0K", "api_key=***"),
        ("rtsp://admin:adm1n@cam/stream", "adm1n", "rtsp://admin:***@cam/stream"),
        ("headers {'Authorization': 'Bearer S3CR3T'}", "S3CR3T", "'Authorization': '***'"),
        ('{"client_secret": "abc\\"def"}', "abc", '"client_secret": "***"'),
        ("Authorization: Bearer S3CR3T\nX-Other: 1", "S3CR3T", "X-Other: 1"),
        ("https://h/x?X-Amz-Signature=5IG&a=1", "5IG", "a=1"),
    ],
)
def test_redact(text, hidden, kept):
    out = redact(text)
    assert hidden not in out and kept in out
    assert redact("mqtt://host:1883/line/results?qos=1") == "mqtt://host:1883/line/results?qos=1"
    assert redact("KeyError: 'x'") == "KeyError: 'x'"


def test_secrets_never_reach_stats_live_view_or_logs(tmp_path, caplog):
    pytest.importorskip("cv2")
    sys.path.insert(0, str(Path(__file__).parent))
    from camera_helpers import WarmSegmenter, free_port, run_bounded

    from edgeseg.camera import CameraLoop
    from edgeseg.camera.stats import format_stats
    from edgeseg.sinks import open_sink

    port = free_port()  # nothing listens: the webhook fails, and says so
    hook = open_sink(
        f"webhook:http://user:PASSW0RD@127.0.0.1:{port}/in?token=T0KEN",
        outbox=str(tmp_path / "outbox"),
        backoff=0.05,
        max_backoff=0.1,
        close_timeout=0.5,
    )
    serve = open_sink("serve:127.0.0.1:0", quiet=True)
    loop = CameraLoop(
        "synthetic://?width=64&height=48&seed=1&frames=8", WarmSegmenter(), sinks=[hook, serve]
    )
    with caplog.at_level(logging.DEBUG):
        loop.start()
        try:
            live = [urllib.request.urlopen(serve.url + "stats.json", timeout=5).read().decode()]
        finally:
            final = run_bounded(loop)
    shown = [json.dumps(final), format_stats(final), caplog.text, *live, hook.spec]
    shown.append(json.dumps(hook.stats()))
    for text in shown:
        assert "PASSW0RD" not in text and "T0KEN" not in text, text
    assert any("user:***@127.0.0.1" in k for k in final["sinks"])


def test_secrets_never_reach_edgeseg_run_output(tmp_path, tiny_onnx, capsys, monkeypatch):
    pytest.importorskip("cv2")
    from camera_helpers import free_port

    from edgeseg.camera.cli import main

    monkeypatch.setenv("EDGESEG_OUTBOX_DIR", str(tmp_path / "outbox"))
    spec = f"webhook:http://user:PASSW0RD@127.0.0.1:{free_port()}/in?token=T0KEN"
    rc = main(
        [
            "--model",
            str(tiny_onnx),
            "--source",
            "synthetic://?width=64&height=64&frames=3",
            "--sink",
            spec,
            "--json",
            "--stats-every",
            "0.1",
        ]
    )
    out = capsys.readouterr()
    assert rc == 0 and json.loads(out.out)["frames"] == 3
    assert "user:***@127.0.0.1" in out.out
    for text in (out.out, out.err):
        assert "PASSW0RD" not in text and "T0KEN" not in text


def test_outbox_and_archive_are_private_whatever_the_umask(tmp_path):
    sys.path.insert(0, str(Path(__file__).parent))
    from line_helpers import make_item

    from edgeseg.sinks.archive import ArchiveSink
    from edgeseg.sinks.outbox import Outbox

    old = os.umask(0)
    try:
        box = Outbox(tmp_path / "state" / "edgeseg" / "o.sqlite3")
        box.put({"a": 1})
        archive = ArchiveSink(tmp_path / "ng" / "line1")
        archive.open()
        archive.write(make_item(1, defect_px=5))
    finally:
        os.umask(old)
    box.close()
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    for d in (
        tmp_path / "state",
        tmp_path / "state" / "edgeseg",
        tmp_path / "ng",
        tmp_path / "ng" / "line1",
        *archive.entries(),
    ):
        assert mode(d) == 0o700, d
    files = list((tmp_path / "state" / "edgeseg").iterdir()) + [
        f for e in archive.entries() for f in e.iterdir()
    ]
    assert len(files) >= 2 + 4
    for f in files:
        assert mode(f) == 0o600, f


# ======================================================================================
# a full disk, a small frame
# ======================================================================================
def test_disk_full_logs_once_then_summaries_and_counts_every_failure(tmp_path, caplog, monkeypatch):
    pytest.importorskip("cv2")
    sys.path.insert(0, str(Path(__file__).parent))
    from camera_helpers import WarmSegmenter, run_bounded

    from edgeseg.camera import CameraLoop
    from edgeseg.rules.verdict import Verdict
    from edgeseg.sinks.archive import ArchiveSink

    def full(self, img, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(ArchiveSink, "_save", full)

    class AlwaysNG:
        def evaluate(self, result):
            return Verdict(ok=False, reasons=["scratch: too large"])

    sink = ArchiveSink(tmp_path / "ng")
    sink.spec = f"archive:{tmp_path / 'ng'}"
    loop = CameraLoop(
        "synthetic://?width=64&height=48&seed=1&frames=40",
        WarmSegmenter(),
        sinks=[sink],
        rules=AlwaysNG(),
    )
    with caplog.at_level(logging.WARNING, logger="edgeseg.camera"):
        final = run_bounded(loop)
    lines = [r.getMessage() for r in caplog.records if "archive:" in r.getMessage()]
    assert final["sinks"][sink.spec]["failed"] == 40 and final["frames"] == 40
    assert 1 <= len(lines) <= 2, lines
    assert "disk is full" in lines[0]
    assert not list((tmp_path / "ng").iterdir())  # no half-written entries


def test_rate_limited_log_summarizes():
    from edgeseg.camera._ratelog import RateLimitedLog

    records = []

    class Catch(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logger = logging.getLogger("edgeseg.test.ratelog")
    logger.addHandler(Catch())
    now = [0.0]
    rl = RateLimitedLog(logger, interval=60, clock=lambda: now[0])
    for i in range(100):
        now[0] = i * 1.0
        rl.failure("sink a", f"frame {i}", f"disk full {i}")
    rl.flush()
    assert records[0] == "sink a failed on frame 0: disk full 0"
    assert records[1].startswith("sink a: 60 more failure(s) in the last 60 s")
    assert records[2].startswith("sink a: 39 more failure(s)") and "disk full 99" in records[2]
    assert len(records) == 3


def test_tiled_segmenter_pads_a_frame_smaller_than_the_tile(tiny_onnx, rng):
    from edgeseg import Segmenter

    frame = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    tiled = Segmenter(tiny_onnx, tile=(64, 64), overlap=16).predict(frame)
    assert tiled.class_map.shape == (40, 50)
    padded = np.pad(frame, ((0, 24), (0, 14), (0, 0)), mode="edge")
    whole = Segmenter(tiny_onnx).predict(padded)
    assert (tiled.class_map == whole.class_map[:40, :50]).mean() > 0.99
    wide = rng.integers(0, 256, (30, 300, 3), dtype=np.uint8)  # smaller in one direction
    assert Segmenter(tiny_onnx, tile=(64, 64), overlap=16).predict(wide).class_map.shape == (
        30,
        300,
    )


# ======================================================================================
# property tests: random input, only EdgesegError comes out
# ======================================================================================
YAMLISH = st.text(alphabet=st.sampled_from(list("&*[]{}:-,!|>#%@`'\"? \n\tab01.<~")), max_size=200)


@PROPERTY
@given(text=st.one_of(st.text(max_size=300), YAMLISH), raw=st.binary(max_size=200))
def test_random_yaml_to_the_loaders(tmp_path, text, raw):
    from edgeseg.train.cli import build_parser, config_from_args

    for content in (text.encode("utf-8", "surrogatepass"), raw):
        path = tmp_path / "f.yaml"
        path.write_bytes(content)
        for load in (
            Rules.from_file,
            ClassMap.load,
            lambda p: config_from_args(
                build_parser().parse_args(["--out", str(tmp_path / "run"), "--config", str(p)])
            ),
        ):
            try:
                load(path)
            except EdgesegError:
                pass


PNG_HEAD = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"


@PROPERTY
@given(raw=st.binary(max_size=400), head=st.sampled_from([b"", PNG_HEAD, b"\xff\xd8\xff", b"BM"]))
def test_random_bytes_as_images(raw, head):
    for fn in (read_image, read_mask_image):
        try:
            fn(head + raw, "x.png")
        except DatasetError:
            pass


@PROPERTY
@given(raw=st.binary(max_size=400), zipped=st.booleans())
def test_random_bytes_as_zips(tmp_path, raw, zipped):
    path = tmp_path / "d.zip"
    if zipped:  # a real archive around random members: gets past the zip header check
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("d/images/a.png", raw)
            z.writestr("d/masks/a.png", raw[::-1])
            z.writestr("d/classes.yaml", raw[:50])
        data = buf.getvalue()
        data = data[: len(data) - (raw[0] % 40 if raw else 0)]  # sometimes truncated
    else:
        data = b"PK\x03\x04" + raw
    path.write_bytes(data)
    try:
        open_dataset(path)
    except DatasetError:
        pass
