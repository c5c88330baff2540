"""``CameraLoop``: capture → inference (+ rules) → sinks, each in its own thread.

::

    from edgeseg import CameraLoop, Segmenter
    seg = Segmenter("model.onnx")
    with CameraLoop("rtsp://cam/stream", seg, sinks=["jsonl:out.jsonl"]) as loop:
        for item in loop:                       # LoopItem: frame, result, verdict, record, stats
            print(item.record["counts"], item.stats["fps"])

The three stages hand frames on through bounded queues. With ``drop="latest"`` (default)
a live source's capture thread keeps only the newest frame when inference is busy, so the
result is never older than one inference; every skipped frame counts in ``dropped``. With
``drop="none"`` (and always for files, folders and unpaced synthetic scenes) capture waits.
The inference thread runs ``segmenter.predict`` and ``rules.evaluate``; the sink thread
writes every sink, calls ``on_result`` and feeds the iterator. A failing sink or callback
is counted per sink (``stats["sinks"]``) and reported, and the loop goes on.

Fail closed: a result that is not ``valid`` (NaN/±Inf model output) is never measured by
the rules and never OK. ``on_invalid`` (else the rules' own, else ``ng``) gives it verdict NG
with the reason, stops the run (``error``) or no verdict (``skip``); every such frame counts
in ``stats["invalid"]``, and ``max_invalid`` invalid frames in a row stop the run with an
:class:`~edgeseg.errors.InvalidResultError` naming the model (see
:mod:`edgeseg.rules.invalid`).

Trigger mode (``trigger=``): one frame per trigger id (see :mod:`edgeseg.camera.trigger`);
the frame carries ``meta["trigger_id"]`` and ``trigger.done(id, record)`` follows its sinks.

Stopping drains: every sink's ``close`` gets what is left of ``drain_timeout`` (one bound for
all of them) to deliver what it holds; the final ``stats["sinks"]`` say per sink how many
records were delivered, are still queued (kept in an outbox on disk) and failed.
``telemetry=`` (an :class:`edgeseg.telemetry.Telemetry`) is fed frames, drops, reconnects,
stage times and verdicts; :meth:`CameraLoop.alive` tells a supervisor (the service
watchdog) whether every stage still turns.

One room past 450 lines: the capture, inference and sink stages share one run's queues,
stats, stop and drain state, and splitting them would pass that state between modules.
"""

from __future__ import annotations

import inspect
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Callable, Optional, Union

from edgeseg._redact import redact
from edgeseg.camera._queues import _END, _POLL, BlockingSlot, LatestSlot
from edgeseg.camera._ratelog import RateLimitedLog
from edgeseg.camera.frame import Frame, FrameDropped, Source, open_source
from edgeseg.camera.stats import LoopStats
from edgeseg.camera.trigger import Trigger
from edgeseg.errors import InvalidArgumentError, InvalidResultError, SinkError, SourceError
from edgeseg.rules.invalid import ON_INVALID, invalid_message, invalid_verdict, is_valid, reason_of
from edgeseg.rules.verdict import Verdict
from edgeseg.sinks.base import LoopItem, Sink, make_record, open_sink
from edgeseg.telemetry import reason_class

__all__ = ["CameraLoop"]

log = logging.getLogger("edgeseg.camera")

_JOIN = 10.0  # s: the longest stop() waits for one thread
DRAIN_TIMEOUT = 10.0  # s: default bound on delivering what the sinks hold at stop
_MAX_READ_FAILURES = 50  # unexpected read errors in a row that end the run
MAX_INVALID = 50  # default: invalid results in a row that end the run
_KEEP = object()  # swap(): leave the rules as they are


class CameraLoop:
    """Runs a segmenter on a source and hands every result to sinks (module docstring).

    Capture, inference (+ rules) and sinks run in three threads joined by bounded queues.
    ``run()`` blocks and returns the final stats; ``start()`` / ``stop()`` run it in the
    background; it is a context manager and an iterator of :class:`LoopItem`.

    Args:
        source: A URI (``rtsp://…``, ``0``, ``csi://0``, ``genicam://``, a video file, an
            image folder or glob, ``synthetic://``) or a :class:`~edgeseg.camera.frame.Source`.
        segmenter: An :class:`edgeseg.Segmenter` (anything with ``predict(frame_bgr)``).
        sinks: Sink specs (``"jsonl:out.jsonl"``, ``"mqtt://host/topic"``, ...) or
            :class:`~edgeseg.sinks.base.Sink` objects.
        rules: An :class:`edgeseg.Rules` (anything with ``evaluate(result) -> Verdict``).
        on_result: A callback ``on_result(item)`` called from the sink thread.
        drop: ``"latest"``: a live source keeps only its newest frame while inference is busy;
            ``"none"``: every frame is queued.
        max_fps: Cap on processed frames per second.
        trigger: A :class:`~edgeseg.camera.trigger.Trigger`: one frame per external trigger.
        max_frames: Stop after that many results.
        queue_size: Depth of the bounded queues between the threads.
        on_invalid: ``"ng"`` | ``"error"`` | ``"skip"`` for results with NaN/±Inf model
            input or output (default: the rules' ``on_invalid``, else ``"ng"``).
        max_invalid: Invalid results in a row that stop the run with an error (0: never).
        drain_timeout: Seconds ``stop()`` gives the sinks, all together, to deliver what
            they hold (outboxes); what is left stays queued on disk and is counted.
        telemetry: An :class:`edgeseg.telemetry.Telemetry` (anything with ``frame``,
            ``drop``, ``reconnect``, ``verdict`` and ``sinks``) fed by the loop.

    Raises:
        InvalidArgumentError: A bad ``drop`` or ``max_fps``, or objects of the wrong kind.
        SourceError: An unknown source URI (here) or a source that cannot be opened (at
            ``start()``).
        SinkError: An unknown or malformed sink spec.
    """

    def __init__(
        self,
        source: Union[str, int, Source],
        segmenter,
        sinks: Sequence[Union[str, Sink]] = (),
        rules=None,
        on_result: Optional[Callable[[LoopItem], None]] = None,
        drop: str = "latest",
        max_fps: Optional[float] = None,
        trigger: Optional[Trigger] = None,
        max_frames: Optional[int] = None,
        queue_size: int = 4,
        on_invalid: Optional[str] = None,
        max_invalid: int = MAX_INVALID,
        drain_timeout: float = DRAIN_TIMEOUT,
        telemetry=None,
    ) -> None:
        if drop not in ("latest", "none"):
            raise InvalidArgumentError(f"drop: expected 'latest' or 'none', got {drop!r}")
        if max_fps is not None and not max_fps > 0:
            raise InvalidArgumentError(f"max_fps: expected a positive number, got {max_fps!r}")
        if not hasattr(segmenter, "predict"):
            raise InvalidArgumentError(
                f"segmenter: expected an edgeseg.Segmenter (an object with predict(frame)), "
                f"got {type(segmenter).__name__}"
            )
        if rules is not None and not hasattr(rules, "evaluate"):
            raise InvalidArgumentError(
                f"rules: expected an edgeseg.Rules (an object with evaluate(result)), "
                f"got {type(rules).__name__}"
            )
        if on_invalid is None:
            on_invalid = getattr(rules, "on_invalid", None) or "ng"
        if on_invalid not in ON_INVALID:
            raise InvalidArgumentError(
                f"on_invalid: expected one of {list(ON_INVALID)}, got {on_invalid!r}"
            )
        if not isinstance(max_invalid, int) or isinstance(max_invalid, bool) or max_invalid < 0:
            raise InvalidArgumentError(
                f"max_invalid: expected an int >= 0 (0: never stop), got {max_invalid!r}"
            )
        try:
            drain_timeout = float(drain_timeout)
        except (TypeError, ValueError):
            drain_timeout = -1.0
        if not 0 <= drain_timeout < float("inf"):
            raise InvalidArgumentError(
                f"drain_timeout: expected seconds >= 0, got {drain_timeout!r}"
            )
        import edgeseg.camera.sources  # noqa: F401 - registers the URI schemes
        import edgeseg.sinks  # noqa: F401 - registers the sink kinds

        self.source = open_source(source)
        self.segmenter = segmenter
        self.sinks = [open_sink(s) for s in sinks]
        self.rules = rules
        self.on_result = on_result
        self.drop = drop
        self.max_fps = max_fps
        self.trigger = trigger
        self.max_frames = max_frames
        self.queue_size = int(queue_size)
        self.on_invalid = on_invalid
        self.max_invalid = max_invalid
        self.drain_timeout = drain_timeout
        self.telemetry = telemetry
        self._beats: dict[str, float] = {}  # stage -> monotonic time of its last turn
        self.stats = LoopStats()
        self._sink_log = RateLimitedLog(log)  # a full disk: one line, then summaries
        self._stop = threading.Event()
        self._abort = threading.Event()
        self._threads: dict[str, threading.Thread] = {}
        # items for the iterator: the last few are kept until iteration begins, then it waits
        self._out: queue.Queue = queue.Queue(maxsize=max(8, self.queue_size))
        self._consuming = False
        self._started = False
        self._closed = False
        self._finished = threading.Event()
        self._fatal: Optional[BaseException] = None
        self._pending: deque = deque()  # (trigger_id, t) waiting for a frame
        self._pending_cv = threading.Condition()
        self._swap_lock = threading.Lock()
        self._swap: Optional[tuple] = None  # (segmenter or None, rules or _KEEP) to adopt
        self.swaps = 0  # replacements adopted (see swap())

    def __repr__(self) -> str:
        state = "running" if self._started and not self._closed else "stopped"
        uri = getattr(self.source, "uri", type(self.source).__name__)
        return f"CameraLoop({str(uri)!r}, {len(self.sinks)} sinks, {state})"

    # ---- public control ---------------------------------------------------------------
    @property
    def live(self) -> bool:
        return bool(getattr(self.source, "live", True))

    @property
    def error(self) -> Optional[BaseException]:
        """The error that ended the run early (None while running or after a clean end)."""
        return self._fatal

    def swap(self, segmenter=None, rules=_KEEP) -> None:
        """Replaces the segmenter and/or the rules (None: no rules) between two frames: the
        frames in flight finish on the old ones, the next frame taken runs on the new ones;
        ``swaps`` counts the replacements adopted. Thread-safe; a reload calls it."""
        if segmenter is not None and not hasattr(segmenter, "predict"):
            raise InvalidArgumentError(
                f"swap: expected an edgeseg.Segmenter, got {type(segmenter).__name__}"
            )
        if rules is not _KEEP and rules is not None and not hasattr(rules, "evaluate"):
            raise InvalidArgumentError(f"swap: expected an edgeseg.Rules, got {type(rules)}")
        with self._swap_lock:
            self._swap = (segmenter, rules)
        if not self._started:
            self._adopt()

    def _adopt(self):
        with self._swap_lock:
            pending, self._swap = self._swap, None
        if pending is not None:
            seg, rules = pending
            if seg is not None:
                self.segmenter = seg
            if rules is not _KEEP:
                self.rules = rules
            self.swaps += 1
        return self.segmenter

    def start(self) -> CameraLoop:
        """Opens the source, the sinks and the trigger and starts the threads."""
        if self._started:
            return self
        self.source.open()
        opened: list[Sink] = []
        try:
            for s in self.sinks:
                s.open()
                opened.append(s)
            if self.trigger is not None:
                self.trigger.open()
        except BaseException:
            for s in opened:
                _quiet(s.close)
            _quiet(self.source.close)
            raise
        self._started = True
        self.stats = LoopStats()  # the clock starts once everything is open
        self.stats.watch_sinks(self.sinks)
        if self.telemetry is not None:
            self.telemetry.sinks(self.sinks)
        dropping = self.drop == "latest" and self.live and self.trigger is None
        self._q1 = LatestSlot() if dropping else BlockingSlot(self.queue_size)
        self._q2 = BlockingSlot(self.queue_size)
        stages = [("capture", self._capture), ("inference", self._infer), ("sinks", self._sink)]
        if self.trigger is not None:
            stages.append(("trigger", self._trigger_thread))
        for name, fn in stages:
            t = threading.Thread(
                target=self._guard, args=(fn,), name=f"edgeseg-{name}", daemon=True
            )
            self._threads[name] = t
        now = time.monotonic()
        self._beats = {name: now for name in self._threads}
        for t in self._threads.values():
            t.start()
        return self

    def alive(self, max_age: float) -> bool:
        """True while running and every stage turned within ``max_age`` s (each stage turns
        at least every few hundred ms, also while idle): False when one is stuck in a
        model, a driver or a sink, or has ended."""
        if not self._started or self._closed:
            return False
        now = time.monotonic()
        return all(
            t.is_alive() and now - self._beats.get(name, 0.0) <= max_age
            for name, t in self._threads.items()
        )

    def stop(self, timeout: float = _JOIN) -> dict:
        """Stops capturing, lets the frames in flight through, flushes and closes every sink;
        returns the final stats. Threads that do not end within ``timeout`` are abandoned
        (they are daemons) and the sinks are closed anyway."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for t in self._threads.values():
            if t is not threading.current_thread():
                t.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in self._threads.values()):
            self._abort.set()
            log.warning("camera loop: a stage did not stop within %.0f s; closing anyway", timeout)
        self._close_all()
        return self.stats.snapshot()

    def join(self, timeout: Optional[float] = None) -> bool:
        """Waits for the end of the source (or ``max_frames``); True when it has ended."""
        return self._finished.wait(timeout)

    def run(self) -> dict:
        """Runs until the source ends, ``max_frames`` or ``stop()``; returns the final stats.

        Re-raises the error that ended a run early (e.g. a SourceError from a source that
        could not be reopened within its ``reconnect_timeout``)."""
        self.start()
        try:
            while not self._finished.wait(_POLL):
                pass
        finally:
            final = self.stop()
        if self._fatal is not None:
            raise self._fatal
        return final

    def __enter__(self) -> CameraLoop:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __iter__(self) -> Iterator[LoopItem]:
        """Yields every LoopItem (starting the loop if needed) until the loop ends.

        While someone iterates, the sink thread waits for them; the few items produced
        before iteration begins (``with loop: for item in loop:``) are kept for it. An
        iteration that started the loop also stops it (sinks flushed) when it ends or is left.
        """
        owner = not self._started
        self._consuming = True
        self.start()
        try:
            while True:
                try:
                    item = self._out.get(timeout=_POLL)
                except queue.Empty:
                    if self._finished.is_set() or self._abort.is_set():
                        break
                    continue
                if item is _END:
                    break
                yield item
        finally:
            self._consuming = False
            if owner:
                self.stop()
        if self._fatal is not None:
            raise self._fatal

    # ---- threads ----------------------------------------------------------------------
    def _alive(self, name: str) -> Callable[[], bool]:
        t = self._threads.get(name)
        return lambda: t is not None and t.is_alive() and not self._abort.is_set()

    def _guard(self, fn) -> None:
        try:
            fn()
        except BaseException as e:  # a stage died: end the run, keep the reason
            log.error("camera loop %s stopped: %s", threading.current_thread().name, redact(e))
            if self._fatal is None:
                self._fatal = e
            self.stats.error("source" if isinstance(e, SourceError) else "inference", str(e))
            self._stop.set()
            self._abort.set()
            self._finished.set()

    def _capture(self) -> None:
        src = self.source
        software = bool(getattr(src, "supports_trigger", False))
        by_trigger = self.trigger is not None and not software  # the loop picks the frames
        consumer = self._alive("inference")
        held: Optional[str] = None  # trigger id waiting for its frame (non-live sources)
        failures = 0  # reads in a row that raised an unexpected error
        beats, tele = self._beats, self.telemetry
        reconnects = 0
        while not self._stop.is_set():
            beats["capture"] = time.monotonic()
            if by_trigger and not self.live and held is None:
                held = self._next_trigger(None)
                if held is None:
                    continue
            t0 = time.time()
            try:
                frame = src.read(_POLL * 2)
                failures = 0
            except FrameDropped as e:
                if e.kind != "timeout":
                    self.stats.count("corrupt")
                    self.stats.error("source", str(e))
                self.stats.set_source_stats(src.stats())
                continue
            except SourceError:
                raise
            except Exception as e:  # a decoder/driver hiccup: count it, retry, give up at last
                failures += 1
                self.stats.count("corrupt")
                self.stats.error("source", f"{type(e).__name__}: {e}")
                if failures >= _MAX_READ_FAILURES:
                    raise SourceError(
                        f"source {getattr(src, 'uri', src)!r}: {failures} reads in a row failed, "
                        f"the last with {type(e).__name__}: {e}"
                    ) from e
                self._stop.wait(0.05)
                continue
            t1 = time.time()
            src_stats = src.stats()
            self.stats.set_source_stats(src_stats)
            if tele is not None:
                n = int(src_stats.get("reconnects", 0) or 0)
                if n > reconnects:
                    tele.reconnect(n - reconnects)
                    reconnects = n
            if frame is None:
                break
            if not _valid(frame):
                self.stats.count("corrupt")
                self.stats.error("source", f"frame {frame.index}: not an H×W×3 uint8 image")
                continue
            self.stats.count("captured")
            self.stats.add_latency("capture", (t1 - t0) * 1000)
            if by_trigger:
                tid = held if not self.live else self._next_trigger(frame.t_capture)
                held = None
                if tid is None:
                    continue  # a live camera's frame that no trigger asked for
                frame.meta["trigger_id"] = tid
            if self._q1.put((frame, t1), consumer):
                self.stats.count("dropped")
                if tele is not None:
                    tele.drop()
        self._q1.put(_END, consumer)

    def _next_trigger(self, t_frame: Optional[float]) -> Optional[str]:
        """A pending trigger id: the oldest (waiting a moment for one when ``t_frame`` is
        None), or for a live camera the oldest one fired before that frame was captured."""
        with self._pending_cv:
            if t_frame is None:
                if not self._pending:
                    self._pending_cv.wait(_POLL)
                return self._pending.popleft()[0] if self._pending else None
            if self._pending and self._pending[0][1] <= t_frame:
                return self._pending.popleft()[0]
            return None

    def _trigger_thread(self) -> None:
        src, trig = self.source, self.trigger
        software = bool(getattr(src, "supports_trigger", False))
        beats = self._beats
        while not self._stop.is_set():
            beats["trigger"] = time.monotonic()
            try:
                tid = trig.wait(_POLL)
            except Exception as e:  # a broken trigger channel is reported; keep listening
                self.stats.error("trigger", str(e))
                self._stop.wait(_POLL)
                continue
            if not tid:
                continue
            if software:
                try:
                    src.fire_trigger(tid)
                except Exception as e:
                    self.stats.error("trigger", f"{tid}: {e}")
                continue
            with self._pending_cv:
                self._pending.append((tid, time.time()))
                self._pending_cv.notify()

    def _infer(self) -> None:
        """Takes frames, runs them and hands results on in frame order. With a segmenter
        that keeps several frames in flight (``pipeline_depth`` > 1, e.g. OpenVINO), frame
        n+1 is preprocessed and frame n-1 postprocessed while frame n is inferred; the frames
        in flight are always finished, also when the source ends or the loop stops."""
        min_dt = 1.0 / self.max_fps if self.max_fps else 0.0
        next_t = 0.0
        producer, consumer = self._alive("capture"), self._alive("sinks")
        seg = self.segmenter
        depth = int(getattr(seg, "pipeline_depth", 1) or 1)
        submit = getattr(seg, "submit", None) if depth > 1 else None
        inflight: deque = deque()  # (frame, t_start, result getter) in frame order
        ended = False
        self._invalid_run = 0

        def finish_oldest() -> None:
            nonlocal ended
            if self._complete(*inflight.popleft(), consumer):
                ended = True  # stopped for invalid output: take no new frame, finish the rest

        beats = self._beats
        while not self._abort.is_set():
            beats["inference"] = time.monotonic()
            full = len(inflight) >= depth or (
                self.max_frames is not None and self.stats.frames + len(inflight) >= self.max_frames
            )
            if inflight and (ended or full):
                finish_oldest()
                continue
            if ended or (full and not inflight):
                break
            if self._swap is not None:  # the frames in flight finish on the old model first
                if inflight:
                    finish_oldest()
                    continue
                seg = self._adopt()
                depth = int(getattr(seg, "pipeline_depth", 1) or 1)
                submit = getattr(seg, "submit", None) if depth > 1 else None
            if min_dt:
                now = time.monotonic()
                if now < next_t:
                    if inflight:  # finish what runs before waiting for the next slot
                        finish_oldest()
                        continue
                    if self._abort.wait(next_t - now):
                        break
                next_t = max(next_t + min_dt, time.monotonic())
            try:
                got = self._q1.get(0 if inflight else _POLL)
            except queue.Empty:
                if inflight:
                    finish_oldest()
                elif not producer():
                    break
                continue
            if got is _END:
                ended = True
                continue
            frame, t_read = got
            t0 = time.time()
            self.stats.add_latency("queue", (t0 - t_read) * 1000)
            try:
                if submit is not None:
                    job = submit(frame.image).result
                else:
                    job = _done(seg.predict(frame.image))
            except Exception as e:
                # one frame the model cannot take: count it and go on
                self.stats.error("inference", f"frame {frame.index}: {type(e).__name__}: {e}")
                continue
            inflight.append((frame, t0, job))
        if self.max_frames is not None and self.stats.frames >= self.max_frames:
            self._stop.set()
        self._q2.put(_END, consumer)

    def _complete(self, frame: Frame, t0: float, job: Callable, consumer) -> bool:
        """Takes the result of one frame in flight, applies the rules — or, when its model
        input or output was not finite, the fail-closed policy — and hands it on. True when
        the run must stop (``on_invalid="error"`` or ``max_invalid`` invalid results in a
        row); the frame itself still reaches the sinks."""
        try:
            result = job()
        except Exception as e:
            self.stats.error("inference", f"frame {frame.index}: {type(e).__name__}: {e}")
            return False
        t1 = time.time()
        self.stats.add_latency("inference", (t1 - t0) * 1000)
        verdict = None
        halt: Optional[InvalidResultError] = None
        if not is_valid(result):
            # fail closed: the rules never measure it; it is NG, stops the run, or no verdict
            self._invalid_run += 1
            self.stats.invalid_frame(f"frame {frame.index}: {reason_of(result)}")
            if self._invalid_run == 1:  # once per run of invalid frames, not once per frame
                log.warning(
                    "frame %d: %s; never OK (on_invalid=%s)",
                    frame.index,
                    reason_of(result),
                    self.on_invalid,
                )
            if self.on_invalid == "error" or 0 < self.max_invalid <= self._invalid_run:
                model = str(getattr(getattr(self.segmenter, "info", None), "path", "")) or (
                    type(self.segmenter).__name__
                )
                halt = InvalidResultError(
                    invalid_message(model, reason_of(result), self._invalid_run)
                )
            policy = "ng" if self.on_invalid == "error" else self.on_invalid
            verdict = invalid_verdict(result, policy)
        else:
            self._invalid_run = 0
            if self.rules is not None:
                try:
                    verdict = self.rules.evaluate(result)
                except Exception as e:
                    # fail closed: a frame the rules could not judge is NG, never unjudged
                    why = f"rules could not be evaluated: {type(e).__name__}: {str(e)[:200]}"
                    self.stats.error("rules", f"frame {frame.index}: {why}")
                    verdict = Verdict(ok=False, reasons=[why])
                self.stats.add_latency("rules", (time.time() - t1) * 1000)
        t_done = time.time()
        record = make_record(frame, result, verdict, t_done)
        self.stats.add_latency("total", (t_done - frame.t_capture) * 1000)
        self.stats.frame_done(t_done)
        item = LoopItem(frame, result, verdict, record)
        if self.telemetry is not None:
            item.stage_seconds = _stage_seconds(result, t0, t1, t_done, frame.t_capture)
        self._q2.put(item, consumer)
        if halt is None:
            return False
        if self._fatal is None:  # frames still in flight finish (NG) without a second error
            log.error("camera loop stopped: %s", halt)
            self._fatal = halt
        self._stop.set()
        return True

    def _sink(self) -> None:
        producer = self._alive("inference")
        beats = self._beats
        while not self._abort.is_set():
            beats["sinks"] = time.monotonic()
            try:
                item = self._q2.get(_POLL)
            except queue.Empty:
                if not producer():
                    break
                continue
            if item is _END:
                break
            self._deliver(item)
        self._finished.set()
        self._offer(_END)

    def _deliver(self, item: LoopItem) -> None:
        t0 = time.time()
        item.stats = self.stats.snapshot(max_age=0.1)
        for s in self.sinks:
            try:
                s.handle(item)
                self.stats.sink_result(s.spec, True)
            except Exception as e:  # counted and reported; the loop goes on
                msg = str(e) if isinstance(e, SinkError) else f"{type(e).__name__}: {e}"
                self.stats.sink_result(s.spec, False, msg)
                self._sink_log.failure(f"sink {s.spec}", f"frame {item.frame.index}", msg)
        if self.on_result is not None:
            try:
                self.on_result(item)
                self.stats.sink_result("on_result", True)
            except Exception as e:
                self.stats.sink_result("on_result", False, f"{type(e).__name__}: {e}")
        tid = item.frame.meta.get("trigger_id")
        if self.trigger is not None and tid is not None:
            try:
                self.trigger.done(tid, item.record)
            except Exception as e:
                self.stats.error("trigger", f"done({tid}): {e}")
        t1 = time.time()
        self.stats.add_latency("sinks", (t1 - t0) * 1000)
        tele = self.telemetry
        if tele is not None:
            stages = item.stage_seconds
            stages["sinks"] = t1 - t0
            tele.frame(stages)
            if item.verdict is not None:
                tele.verdict(item.verdict.ok, reason_class(item.verdict))
        self._offer(item)

    def _offer(self, item) -> None:
        """Hands an item to the iterator: waits while one is iterating, else keeps the newest."""
        while not self._abort.is_set():
            try:
                self._out.put(item, timeout=_POLL if self._consuming else 0)
                return
            except queue.Full:
                if not self._consuming:
                    try:
                        self._out.get_nowait()  # nobody iterates (yet): drop the oldest
                    except queue.Empty:
                        pass

    def _close_all(self) -> None:
        if self._closed or not self._started:
            return
        self._closed = True
        deadline = time.monotonic() + self.drain_timeout
        for s in self.sinks:
            try:
                _close_sink(s, max(0.0, deadline - time.monotonic()))
            except Exception as e:
                msg = str(e) if isinstance(e, SinkError) else f"{type(e).__name__}: {e}"
                self.stats.sink_result(s.spec, False, f"close: {msg}")
            self.stats.set_sink_extra(s.spec, _quiet(s.stats) or {})
        self._sink_log.flush()
        if self.trigger is not None:
            _quiet(self.trigger.close)
        _quiet(self.source.close)
        self.stats.set_source_stats(_quiet(self.source.stats) or {})
        self.stats.finish()
        self._finished.set()


def _done(result) -> Callable:
    return lambda: result


def _stage_seconds(result, t0: float, t1: float, t_done: float, t_capture: float) -> dict:
    """Seconds per telemetry stage of one frame: the segmenter's own split when it gives one
    (``result.timings`` in ms), else its whole call as ``infer``."""
    timings = getattr(result, "timings", None) or {}
    out = {"rules": t_done - t1, "total": t_done - t_capture}
    if "inference" in timings:
        out["infer"] = timings["inference"] / 1000.0
        for stage in ("preprocess", "postprocess"):
            if stage in timings:
                out[stage] = timings[stage] / 1000.0
    else:
        out["infer"] = t1 - t0
    return out


def _close_sink(sink: Sink, drain_timeout: float) -> None:
    """``sink.close(drain_timeout=...)``, or ``close()`` for a sink written before that
    parameter existed."""
    close = sink.close
    try:
        takes = "drain_timeout" in inspect.signature(close).parameters
    except (TypeError, ValueError):
        takes = False
    if takes:
        close(drain_timeout=drain_timeout)
    else:
        close()


def _valid(frame: Frame) -> bool:
    img = frame.image
    return (
        img is not None
        and getattr(img, "ndim", 0) == 3
        and img.shape[2] == 3
        and img.dtype.name == "uint8"
        and img.size > 0
    )


def _quiet(fn):
    try:
        return fn()
    except Exception as e:
        log.warning("while closing: %s", redact(e))
        return None
