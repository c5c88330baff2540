"""The ``archive:DIR`` sink: NG evidence on disk, the quota, and failures that the loop counts."""

from __future__ import annotations

import calendar
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from edgeseg.camera.frame import Frame
from edgeseg.errors import SinkError
from edgeseg.rules import Verdict
from edgeseg.runtime.result import ClassInfo, SegResult
from edgeseg.sinks.archive import ArchiveSink
from edgeseg.sinks.base import LoopItem, make_record, open_sink

CLASSES = [
    ClassInfo(0, "background", (0, 0, 0), index=0),
    ClassInfo(1, "scratch", (255, 0, 0), index=1),
    ClassInfo(2, "dent", (0, 255, 0), index=2),
]


def make_item(index: int, ok: bool = False, t: float = 1700000000.25, size=(48, 64), seed=0):
    rng = np.random.default_rng(seed + index)
    h, w = size
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)  # BGR noise: compresses badly
    cmap = np.zeros((h, w), np.uint8)
    cmap[5:15, 10:30] = 1
    cmap[30:40, 40:50] = 2
    counts = np.bincount(cmap.ravel(), minlength=3)
    result = SegResult(cmap, None, CLASSES, counts, frame=image, rgb=False)
    frame = Frame(image=image, index=index, t_capture=t + index)
    detail = {"rule": "scratch@frame", "area_px": 200, "blobs": None, "ok": ok}
    reasons = [] if ok else ['scratch: 200 px in zone "frame" > 10 px']
    verdict = Verdict(ok=ok, reasons=reasons, details=[detail])
    return LoopItem(frame, result, verdict, make_record(frame, result, verdict, t + index + 0.02))


def test_ng_frames_are_archived_with_original_overlay_mask_and_json(tmp_path):
    sink = open_sink(f"archive:{tmp_path / 'ng'}?format=png")
    sink.open()
    sink.write(make_item(7))
    sink.write(make_item(8, ok=True))
    item = make_item(9)
    item.verdict = None  # no rules: nothing to archive
    sink.write(item)
    entries = sorted((tmp_path / "ng").iterdir())
    # 1700000007.25 s = 2023-11-14 22:13:27.250 UTC
    assert [e.name for e in entries] == ["20231114T221327.250Z_f000007"]
    e = entries[0]
    assert sorted(p.name for p in e.iterdir()) == [
        "mask.png",
        "original.png",
        "overlay.png",
        "record.json",
    ]
    it = make_item(7)
    assert np.array_equal(np.asarray(Image.open(e / "original.png")), it.frame.image[..., ::-1])
    want_overlay = it.result.overlay(alpha=0.5)[..., ::-1]
    assert np.array_equal(np.asarray(Image.open(e / "overlay.png")), want_overlay)
    mask = Image.open(e / "mask.png")
    assert mask.mode == "P" and np.array_equal(np.asarray(mask), it.result.class_map)
    assert mask.getpalette()[3:6] == [255, 0, 0]
    rec = json.loads((e / "record.json").read_text())
    assert rec["frame"] == 7 and rec["verdict"] == "NG"
    assert rec["reasons"] == ['scratch: 200 px in zone "frame" > 10 px']
    assert rec["details"][0]["area_px"] == 200 and rec["counts"]["dent"] == 100
    assert "mask.png" in rec["files"]
    assert sink.stats()["written"] == 1 and sink.stats()["skipped_ok"] == 2


def test_jpeg_and_a_result_without_frame(tmp_path):
    sink = ArchiveSink(tmp_path, quality=95)
    sink.open()
    item = make_item(3)
    yy, xx = np.mgrid[0:48, 0:64]
    item.frame.image = np.stack([xx * 4, yy * 5, xx + yy], axis=-1).astype(np.uint8)  # smooth
    item.result.frame = None  # the overlay is drawn on the loop's frame instead
    sink.write(item)
    (entry,) = sink.entries()
    assert {p.name for p in entry.iterdir()} == {
        "original.jpg",
        "overlay.jpg",
        "mask.png",
        "record.json",
    }
    orig = np.asarray(Image.open(entry / "original.jpg")).astype(int)
    assert np.abs(orig - item.frame.image[..., ::-1]).mean() < 3.0  # lossy, RGB order
    over = np.asarray(Image.open(entry / "overlay.jpg")).astype(int)
    with_frame = SegResult(item.result.class_map, None, CLASSES, item.result.counts_array)
    with_frame.frame = item.frame.image
    want = with_frame.overlay(alpha=0.5)[..., ::-1].astype(int)
    assert np.abs(over - want).mean() < 3.0 and np.abs(over - orig)[5:15, 10:30].mean() > 40


def test_quota_removes_the_oldest_first_also_across_restarts(tmp_path):
    d = tmp_path / "ng"
    sink = open_sink(f"archive:{d}?quota_mb=0.05&format=png")  # 52 kB; an entry is ~19 kB
    sink.open()
    for i in range(6):
        sink.write(make_item(i))
    st = sink.stats()
    names = sorted(p.name for p in d.iterdir())
    assert names == [p.name for p in sink.entries()]
    assert [n[-7:] for n in names] == ["f000004", "f000005"]
    assert st["written"] == 6 and st["removed"] == 4 and st["entries"] == 2
    on_disk = sum(f.stat().st_size for p in d.iterdir() for f in p.iterdir())
    assert on_disk == st["bytes"] <= 0.05 * 1024 * 1024
    sink.close()
    again = ArchiveSink(d, quota_mb=0.03, format="png")  # room for one: one is removed at open
    again.open()
    assert [p.name[-7:] for p in again.entries()] == ["f000005"]
    assert again.stats()["removed"] == 1


def test_an_entry_larger_than_the_quota_is_reported(tmp_path):
    sink = ArchiveSink(tmp_path, quota_mb=0.001, format="png")
    sink.open()
    with pytest.raises(SinkError, match="larger than the quota quota_mb=0.001"):
        sink.write(make_item(1))
    assert list(tmp_path.iterdir()) == [] and sink.stats()["failed"] == 1


def test_unwritable_folder_raises_and_the_next_write_works(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    sink = open_sink(f"archive:{blocker / 'ng'}")
    with pytest.raises(SinkError, match=r"archive:.*a_file/ng: cannot use the folder .*ENOTDIR"):
        sink.open()
    d = tmp_path / "ng"
    sink = ArchiveSink(d)
    sink.open()
    d.rmdir()
    d.write_text("the folder was replaced by a file")
    with pytest.raises(SinkError, match=r"cannot write entry 20231114T221321\.250Z_f000001"):
        sink.write(make_item(1))
    assert sink.stats()["failed"] == 1 and "cannot write" in sink.stats()["last_error"]
    d.unlink()
    d.mkdir()
    sink.write(make_item(2))  # the loop goes on
    assert [p.name[-7:] for p in d.iterdir()] == ["f000002"]
    assert sink.stats()["written"] == 1


def test_disk_full_is_a_sink_error(tmp_path):
    sink = ArchiveSink(tmp_path, min_free_mb=1e12)  # a petabyte free: no disk has it
    sink.open()
    with pytest.raises(SinkError, match=r"disk full: .* MB free .*below min_free_mb=1e\+12"):
        sink.write(make_item(1))
    assert sink.stats()["failed"] == 1 and list(tmp_path.iterdir()) == []


@pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX resource limits")
def test_a_write_failing_midway_leaves_no_partial_entry(tmp_path):
    # A file-size limit makes the second image's write fail with EFBIG, like a disk filling
    # up mid-entry; it runs in a child process so the limit touches nothing else.
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_archive import make_item
        from edgeseg.errors import SinkError
        from edgeseg.sinks.archive import ArchiveSink
        sink = ArchiveSink({str(tmp_path)!r}, format="png")
        sink.open()
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4000, resource.RLIM_INFINITY))
        try:
            sink.write(make_item(1, size=(96, 128)))
        except SinkError as e:
            print("SinkError:", e)
        print("failed", sink.stats()["failed"])
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "SinkError: archive:" in out.stdout and "(EFBIG)" in out.stdout
    assert "failed 1" in out.stdout
    assert list(tmp_path.iterdir()) == []  # the temporary folder was removed


def test_bad_options(tmp_path):
    with pytest.raises(SinkError, match="unknown option 'qouta_mb'; did you mean 'quota_mb'"):
        open_sink(f"archive:{tmp_path}?qouta_mb=5")
    with pytest.raises(SinkError, match="format must be 'jpg' or 'png'"):
        open_sink(f"archive:{tmp_path}", format="bmp")
    with pytest.raises(SinkError, match="quota_mb must be a number > 0"):
        open_sink(f"archive:{tmp_path}?quota_mb=-1")
    with pytest.raises(SinkError, match="needs a folder"):
        open_sink("archive:")
    sink = open_sink(f"archive:{tmp_path}?quota_mb=5", quota_mb=7, format="jpeg")
    assert sink.quota == 7 and sink.format == "jpg"


def test_time_is_utc(tmp_path):
    sink = ArchiveSink(tmp_path)
    sink.open()
    t = calendar.timegm((2026, 1, 2, 3, 4, 5, 0, 0, 0))  # 2026-01-02 03:04:05 UTC
    item = make_item(0, t=t)
    sink.write(item)
    assert sink.entries()[0].name == "20260102T030405.000Z_f000000"
