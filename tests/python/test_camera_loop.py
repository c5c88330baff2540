"""CameraLoop: ordering, drop policies, stats, iterator/background use, failing sinks and
callbacks, corrupt frames, size changes, rules and trigger mode."""

from __future__ import annotations

import json
import queue
import shutil
import threading
import time

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from camera_helpers import WarmSegmenter, collect_bounded, run_bounded  # noqa: E402

from edgeseg.camera import CameraLoop, Frame, Source, Trigger  # noqa: E402
from edgeseg.errors import InvalidArgumentError, SinkError, SourceError  # noqa: E402
from edgeseg.rules.verdict import Verdict  # noqa: E402
from edgeseg.sinks import Sink  # noqa: E402

SCENE = "synthetic://?width=96&height=72&seed=1"


def _lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def _iou(a, b):
    return float((a & b).sum()) / max(1, int((a | b).sum()))


def test_every_frame_in_order_with_records_and_accuracy(tmp_path):
    out = tmp_path / "r.jsonl"
    seen = []
    loop = CameraLoop(
        f"{SCENE}&frames=25",
        WarmSegmenter(),
        sinks=[f"jsonl:{out}"],
        on_result=seen.append,
        drop="none",
    )
    stats = run_bounded(loop)
    recs = _lines(out)
    assert [r["frame"] for r in recs] == list(range(25))
    assert stats["frames"] == 25 and stats["captured"] == 25 and stats["dropped"] == 0
    assert stats["sinks"][f"jsonl:{out}"]["written"] == 25
    r = recs[3]
    assert set(r) >= {"frame", "t_capture", "latency_ms", "counts", "area_fraction", "verdict"}
    assert r["verdict"] is None and r["reasons"] == [] and r["latency_ms"] >= 0
    assert sum(r["counts"].values()) == 96 * 72
    for item in seen:  # the segmentation matches the scene's ground truth
        gt = item.frame.meta["ground_truth"] == 1
        assert _iou(item.result.class_map == 1, gt) > 0.9
        assert item.record["counts"]["product"] == int((item.result.class_map == 1).sum())
    for stage in ("capture", "queue", "inference", "sinks", "total"):
        lat = stats["latency_ms"][stage]
        assert 0 <= lat["p50"] <= lat["p99"]
    assert seen[-1].stats["frames"] >= 1 and "fps" in seen[-1].stats


def test_drop_latest_keeps_the_newest_and_accounts_for_every_frame():
    seg = WarmSegmenter(delay=0.03)  # ~30 fps model on a 200 fps camera
    loop = CameraLoop(f"{SCENE}&fps=200&frames=120", seg, drop="latest")
    items = collect_bounded(loop)
    stats = loop.stop()
    idx = [it.frame.index for it in items]
    assert idx == sorted(idx) and idx[-1] == 119  # the last frame is never lost
    gaps = sum(b - a - 1 for a, b in zip(idx, idx[1:])) + idx[0]
    assert stats["dropped"] > 0
    assert stats["dropped"] == gaps
    assert stats["frames"] + stats["dropped"] == stats["captured"] == 120


def test_drop_none_on_a_live_source_processes_every_frame():
    loop = CameraLoop(f"{SCENE}&fps=200&frames=40", WarmSegmenter(delay=0.01), drop="none")
    stats = run_bounded(loop)
    assert stats["frames"] == 40 and stats["dropped"] == 0


def test_background_start_stop_and_context_manager(tmp_path):
    out = tmp_path / "bg.jsonl"
    with CameraLoop(f"{SCENE}&fps=100", WarmSegmenter(), sinks=[f"jsonl:{out}"]) as loop:
        assert not loop.join(0.5)  # an endless source keeps running
    stats = loop.stats.snapshot()
    assert stats["frames"] > 0
    assert len(_lines(out)) == stats["frames"]  # closed and flushed on exit


def test_iterator_with_break_stops_promptly():
    loop = CameraLoop(SCENE, WarmSegmenter())
    got = []
    with loop:
        for item in loop:
            got.append(item.frame.index)
            if len(got) == 5:
                break
    t = threading.Thread(target=loop.stop)
    t.start()
    t.join(15)
    assert not t.is_alive() and got == [0, 1, 2, 3, 4]


def test_max_frames_and_max_fps():
    loop = CameraLoop(SCENE, WarmSegmenter(), max_frames=12, max_fps=40)
    t0 = time.monotonic()
    stats = run_bounded(loop)
    elapsed = time.monotonic() - t0
    assert stats["frames"] == 12
    assert elapsed >= 11 / 40  # 12 frames at most 40 per second: a lower bound load cannot break


class _FlakySink(Sink):
    """Fails on every third frame (as a full disk would), writes the others."""

    def __init__(self):
        self.got = []

    def write(self, item):
        if item.frame.index % 3 == 2:
            raise OSError(28, "No space left on device")
        self.got.append(item.frame.index)


def test_failing_sinks_are_counted_and_the_loop_goes_on(tmp_path):
    good = tmp_path / "good.jsonl"
    flaky = _FlakySink()
    flaky.spec = "flaky"

    def bad_callback(item):
        if item.frame.index == 4:
            raise RuntimeError("callback bug")

    loop = CameraLoop(
        f"{SCENE}&frames=9",
        WarmSegmenter(),
        sinks=[f"jsonl:{good}", "jsonl:/dev/full", flaky],
        on_result=bad_callback,
        drop="none",
    )
    stats = run_bounded(loop)
    assert len(_lines(good)) == 9
    full = stats["sinks"]["jsonl:/dev/full"]
    assert full["failed"] == 9 and full["written"] == 0
    assert "No space left" in full["last_error"]
    assert stats["sinks"]["flaky"]["failed"] == 3 and flaky.got == [0, 1, 3, 4, 6, 7]
    cb = stats["sinks"]["on_result"]
    assert cb == {"written": 8, "failed": 1, "last_error": "RuntimeError: callback bug"}


def test_images_folder_removed_mid_run_is_counted(tmp_path):
    shots = tmp_path / "shots"

    def sabotage(item):
        if item.frame.index == 2:  # the folder disappears and a file takes its name
            shutil.rmtree(shots)
            shots.write_text("in the way")

    loop = CameraLoop(
        f"{SCENE}&frames=6",
        WarmSegmenter(),
        sinks=[f"images:{shots}"],
        on_result=sabotage,
        drop="none",
    )
    stats = run_bounded(loop)
    s = stats["sinks"][f"images:{shots}"]
    assert s["written"] == 3 and s["failed"] == 3 and "cannot write" in s["last_error"]


def test_corrupt_frames_size_changes_and_model_errors_are_counted(tmp_path):
    d = tmp_path / "mixed"
    d.mkdir()
    sizes = [(64, 48), (64, 48), (80, 60), (64, 48), (33, 17)]
    for i, (w, h) in enumerate(sizes):
        img = np.zeros((h, w, 3), np.uint8)
        img[: h // 2, :, 2] = 200  # a warm top half
        cv2.imwrite(str(d / f"{i}.png"), img)
    (d / "2b.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")

    class Picky(WarmSegmenter):
        def predict(self, frame_bgr, rgb=False):
            if frame_bgr.shape[1] % 2:
                raise ValueError("odd width")
            return super().predict(frame_bgr, rgb)

    seen = []
    vid = tmp_path / "out.avi"
    loop = CameraLoop(str(d), Picky(), sinks=[f"video:{vid}"], on_result=seen.append)
    stats = run_bounded(loop)
    assert [it.result.shape for it in seen] == [(48, 64), (48, 64), (60, 80), (48, 64)]
    assert all(it.record["area_fraction"]["product"] == 0.5 for it in seen)
    assert stats["corrupt"] == 1 and stats["errors"]["inference"] == 1
    assert stats["source"]["size_changes"] == 3
    assert stats["sinks"][f"video:{vid}"]["resized"] == 1
    cap = cv2.VideoCapture(str(vid))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    cap.release()


class _AreaRules:
    """NG when products cover more than ``limit`` of the frame."""

    def __init__(self, limit):
        self.limit = limit

    def evaluate(self, result):
        a = result.area_fraction["product"]
        if a > self.limit:
            return Verdict(False, [f"product: {a:.3f} > {self.limit}"])
        return Verdict(True)


def test_rules_verdicts_reach_records_and_only_ng_images(tmp_path):
    out, ng = tmp_path / "v.jsonl", tmp_path / "ng"
    areas = []
    loop = CameraLoop(
        f"{SCENE}&frames=30",
        WarmSegmenter(),
        sinks=[f"jsonl:{out}", f"images:{ng}?only=ng&what=overlay,mask"],
        on_result=lambda it: areas.append(it.result.area_fraction["product"]),
        rules=_AreaRules(0.076),
        drop="none",
    )
    run_bounded(loop)
    recs = _lines(out)
    n_ng = sum(a > 0.076 for a in areas)
    assert 0 < n_ng < 30
    assert [r["verdict"] for r in recs] == ["NG" if a > 0.076 else "OK" for a in areas]
    assert all(r["reasons"][0].startswith("product: ") for r in recs if r["verdict"] == "NG")
    assert len(list(ng.glob("*_overlay.png"))) == n_ng == len(list(ng.glob("*_mask.png")))


class _BrokenRules:
    """Rules that fail on every other frame (a zone that leaves a resized frame, say)."""

    def evaluate(self, result):
        self.n = getattr(self, "n", -1) + 1
        if self.n % 2:
            raise ValueError("zone 'seal' leaves the frame")
        return Verdict(True)


def test_a_frame_the_rules_cannot_judge_is_ng_with_the_reason(tmp_path):
    out = tmp_path / "v.jsonl"
    loop = CameraLoop(
        f"{SCENE}&frames=8",
        WarmSegmenter(),
        sinks=[f"jsonl:{out}"],
        rules=_BrokenRules(),
        drop="none",
    )
    stats = run_bounded(loop)
    recs = _lines(out)
    assert [r["verdict"] for r in recs] == ["OK", "NG"] * 4
    for r in recs[1::2]:
        assert r["reasons"] == [
            "rules could not be evaluated: ValueError: zone 'seal' leaves the frame"
        ]
    assert stats["errors"]["rules"] == 4


class _QueueTrigger(Trigger):
    """Trigger ids pushed by the test (as an MQTT/HTTP trigger would); answers recorded."""

    def __init__(self):
        self.q = queue.Queue()
        self.answers = {}
        self.closed = False

    def wait(self, timeout=None):
        try:
            return self.q.get(timeout=timeout)
        except queue.Empty:
            return None

    def done(self, trigger_id, record):
        self.answers[trigger_id] = record

    def close(self):
        self.closed = True


@pytest.mark.parametrize("scene", [SCENE, f"{SCENE}&fps=100"], ids=["file-like", "live"])
def test_trigger_mode_one_frame_per_trigger(scene):
    trig = _QueueTrigger()
    seen = []
    loop = CameraLoop(scene, WarmSegmenter(), trigger=trig, on_result=seen.append)
    with loop:
        for k in range(4):
            trig.q.put(f"part-{k}")
            deadline = threading.Event()
            for _ in range(100):  # wait (up to 10 s) for the answer before the next trigger
                if f"part-{k}" in trig.answers:
                    break
                deadline.wait(0.1)
        assert not loop.join(0.3)  # no trigger, no frames
    assert [it.frame.meta["trigger_id"] for it in seen] == [f"part-{k}" for k in range(4)]
    assert sorted(trig.answers) == [f"part-{k}" for k in range(4)]
    assert trig.answers["part-2"]["trigger_id"] == "part-2"
    assert trig.closed and loop.stats.snapshot()["frames"] == 4


def test_bad_arguments_and_sources_fail_at_start(tmp_path):
    with pytest.raises(InvalidArgumentError, match="drop"):
        CameraLoop(SCENE, WarmSegmenter(), drop="oldest")
    with pytest.raises(InvalidArgumentError, match="segmenter"):
        CameraLoop(SCENE, object())
    with pytest.raises(SinkError, match="unknown kind 'ftp'"):
        CameraLoop(SCENE, WarmSegmenter(), sinks=["ftp:x"])
    with pytest.raises(SourceError, match="no such video file"):
        CameraLoop(str(tmp_path / "x.mp4"), WarmSegmenter())
    loop = CameraLoop(SCENE, WarmSegmenter(), sinks=["window"])
    if loop.sinks[0].__class__.__name__ == "WindowSink":
        from edgeseg.sinks.files import display_available

        if not display_available()[0]:
            with pytest.raises(SinkError, match="cannot open a window.*--serve"):
                run_bounded(loop)


class _HiccupSource(Source):
    """A source whose driver throws now and then (every 3rd read), or always."""

    live = False

    def __init__(self, n, always=False):
        self.uri, self.n, self.always, self.reads, self.i = "hiccup://", n, always, 0, 0

    def read(self, timeout=None):
        self.reads += 1
        if self.always or self.reads % 3 == 0:
            raise RuntimeError("driver hiccup")
        if self.i >= self.n:
            return None
        self.i += 1
        return Frame(np.zeros((24, 32, 3), np.uint8), self.i - 1)


def test_source_errors_are_counted_and_a_dead_source_ends_the_run():
    stats = run_bounded(CameraLoop(_HiccupSource(10), WarmSegmenter()))
    assert stats["frames"] == 10 and stats["corrupt"] == 5
    assert "driver hiccup" in stats["last_error"]
    loop = CameraLoop(_HiccupSource(10, always=True), WarmSegmenter())
    with pytest.raises(SourceError, match="hiccup://.*50 reads in a row failed"):
        run_bounded(loop)
    assert loop.stats.snapshot()["frames"] == 0


def test_iteration_that_starts_the_loop_owns_it(tmp_path):
    out = tmp_path / "it.jsonl"
    loop = CameraLoop(f"{SCENE}&frames=6", WarmSegmenter(), sinks=[f"jsonl:{out}"], drop="none")
    items = collect_bounded(loop)
    assert [it.frame.index for it in items] == list(range(6))
    assert loop._closed and len(out.read_text().splitlines()) == 6  # stopped, sinks closed
    loop = CameraLoop(SCENE, WarmSegmenter())  # endless: leaving the for loop stops it

    def first_three():
        for item in loop:
            if item.frame.index == 2:
                return item.frame.index

    def wait_stopped():
        first_three()
        return not any(t.is_alive() for t in loop._threads.values())

    assert _bounded_call(wait_stopped)


def _bounded_call(fn, timeout=60):
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("v", fn()), daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "did not finish in time"
    return box["v"]
