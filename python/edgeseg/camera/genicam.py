"""``genicam://[DEVICE_ID]?options``: GigE Vision / USB3 Vision cameras through Aravis 0.8.

``DEVICE_ID`` is what ``edgeseg cameras`` lists (Aravis's ``Vendor-Model-Serial`` id, the
serial number or the IP address); empty means the first camera found. Options (query string or
keyword arguments to :class:`GenICamSource`):

``exposure`` (µs, turns auto exposure off), ``gain`` (dB, turns auto gain off),
``pixel_format`` (a PFNC name, see :mod:`edgeseg.camera.genicam_formats`), ``fps``,
``trigger`` (``off`` = free run; ``software``: one frame per :meth:`GenICamSource.fire_trigger`;
``line0``/``line1``/...: one frame per edge on that input line, frames queued in order),
``packet_size`` (bytes, GigE Vision), ``buffers`` (frames Aravis can hold while the reader is
busy, default 32), ``trigger_timeout`` (s, default 2: a software trigger whose frame has not
arrived by then counts as missed).

A frame's ``meta`` holds ``camera_timestamp_ns``, ``camera_frame_id``, ``pixel_format`` and,
for software triggers, ``trigger_id``. Buffers that arrive incomplete (missing packets, ...)
are counted and raised as :class:`FrameDropped` (kind ``incomplete``); ``read(timeout)``
raises FrameDropped kind ``timeout`` when no frame came in time — also while a lost camera is
being re-discovered (with backoff, in a background thread; the message and ``stats()`` say so):
like the other live sources, a loop just asks again.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any, Optional

from edgeseg.camera.aravis import camera_features, configure_camera, load_aravis, stream_counters
from edgeseg.camera.frame import Frame, FrameDropped, Source, register_source
from edgeseg.camera.genicam_formats import bgr_from_buffer, format_name
from edgeseg.camera.genicam_uri import frames_lost, parse_genicam_uri
from edgeseg.errors import SourceError

__all__ = ["GenICamSource", "parse_genicam_uri"]

_BACKOFF = (0.5, 10.0)  # first and longest wait between reconnection attempts, seconds
_POLL = 0.1  # longest single wait, so close() is noticed
_CLOCK_SLACK_NS = 1_000_000  # Aravis stamps arrivals in µs; a stale frame is >= trigger_timeout old


class GenICamSource(Source):
    """A GenICam camera (GigE Vision / USB3 Vision) read through Aravis; see the module doc."""

    def __init__(self, uri: str = "genicam://", **options: Any) -> None:
        self.uri = str(uri)
        self.device_id, self.options = parse_genicam_uri(self.uri, **options)
        trig = self.options["trigger"]
        self.supports_trigger = trig == "software"
        #: True for a hardware line trigger: every frame is a part, none may be dropped.
        self.hardware_trigger = trig.startswith("line")
        #: The camera loop drops frames of live sources to stay current (drop="latest"); a
        #: line-triggered camera is not "live" in that sense: the loop waits for every frame,
        #: which stays queued in Aravis's buffers meanwhile, and processes them in order.
        self.live = not self.hardware_trigger
        self._aravis: Any = None
        self._glib: Any = None
        self._cam: Any = None
        self._stream: Any = None
        self._lock = threading.RLock()
        self._cv = threading.Condition(self._lock)
        self._closed = True
        self._reconnecting: Optional[threading.Thread] = None
        # software triggers not yet matched to a frame:
        # (trigger id, host time ns when fired, frames the stream had received by then)
        self._pending: collections.deque = collections.deque()
        self._index = 0
        self._in_pop = 0  # readers inside timeout_pop_buffer
        self._generation = 0  # connection count; control-lost of an older one is ignored
        self._last_frame_id: Optional[int] = None
        self._last_error = ""
        self._stream_base: collections.Counter = collections.Counter()
        self._counts: collections.Counter = collections.Counter()
        self.device_info: dict = {}

    # -- connection --------------------------------------------------------------------------

    def open(self) -> None:
        """Finds and opens the camera, applies the options, starts acquisition.

        SourceError when Aravis is not installed, no camera matches or an option is rejected.
        """
        try:
            import cv2  # noqa: F401 - pixel-format conversion (demosaicing)
        except ImportError as exc:
            raise SourceError(
                f"{self.uri}: converting camera frames needs OpenCV: "
                "pip install opencv-python-headless"
            ) from exc
        self._aravis, self._glib = load_aravis(self.uri)
        with self._lock:
            if not self._closed:
                return
            self._closed = False
        try:
            self._connect()
        except BaseException:
            self.close()
            raise

    def _connect(self) -> None:
        aravis, glib = self._aravis, self._glib
        aravis.update_device_list()  # the stream's interface address comes from discovery
        try:
            cam = aravis.Camera.new(self.device_id)
        except glib.Error as exc:
            found = [aravis.get_device_id(i) for i in range(aravis.get_n_devices())]
            raise SourceError(
                f"{self.uri}: cannot open camera {self.device_id or '(first found)'}: "
                f"{exc.message}; devices found: {found or 'none'} — check power, cable and "
                "subnet, and run `edgeseg cameras`"
            ) from exc
        configure_camera(cam, self.options, self.uri)
        try:
            stream = cam.create_stream(None, None)
            if stream is None:
                raise SourceError(f"{self.uri}: Aravis could not create a stream")
            if cam.is_gv_device():
                # A kernel receive buffer sized for a whole frame: a GigE camera sends each
                # frame as one burst at line rate, and the default buffer drops packets of it.
                stream.set_property("socket-buffer", aravis.GvStreamSocketBuffer.AUTO)
            payload = cam.get_payload()
            for _ in range(self.options["buffers"]):
                stream.push_buffer(aravis.Buffer.new_allocate(payload))
            generation = self._generation + 1
            cam.get_device().connect("control-lost", self._on_control_lost, generation)
            cam.start_acquisition()
        except glib.Error as exc:
            raise SourceError(f"{self.uri}: cannot start acquisition: {exc.message}") from exc
        info = camera_features(cam)
        with self._cv:
            self._cam, self._stream = cam, stream
            self._generation = generation
            self._last_frame_id = None
            self.device_info = info
            self._cv.notify_all()

    def _on_control_lost(self, device, generation: int) -> None:
        """Aravis's heartbeat thread lost the camera: re-discover it in the background."""
        stamp = time.strftime("%H:%M:%S")
        self._lost(f"control of the camera lost (no heartbeat reply) at {stamp}", generation)

    def _lost(self, reason: str, generation: Optional[int] = None) -> None:
        with self._cv:
            if self._closed or self._cam is None:
                return
            if generation is not None and generation != self._generation:
                return
            self._counts["disconnects"] += 1
            self._last_error = reason
            old = self._detach()
            self._counts["triggers_lost"] += len(self._pending)
            self._pending.clear()
            self._cv.notify_all()
            self._reconnecting = threading.Thread(
                target=self._reconnect, args=(old,), name=f"genicam-reconnect {self.uri}"
            )
            self._reconnecting.daemon = True
            self._reconnecting.start()

    def _reconnect(self, old: list) -> None:
        """Drops the lost camera (Aravis waits out its control-channel timeouts, seconds), then
        retries discovery + open with exponential backoff until it works or the source closes."""
        with self._cv:
            self._cv.wait_for(lambda: self._in_pop == 0, timeout=5 * _POLL + 1)
        old.clear()  # the last references: Aravis releases the dead device here, in this thread
        wait = _BACKOFF[0]
        while True:
            with self._cv:
                if self._closed:
                    return
            try:
                self._connect()
            except Exception as exc:  # SourceError, or a GLib.Error of a half-booted camera
                with self._cv:
                    self._last_error = str(exc)
                    self._counts["reconnect_attempts"] += 1
                    self._cv.wait_for(lambda: self._closed, timeout=wait)
                wait = min(wait * 2, _BACKOFF[1])
                continue
            with self._cv:
                self._counts["reconnects"] += 1
                held = self._detach() if self._closed else []  # closed while connecting
            self._stop(held)
            return

    def _detach(self) -> list:
        """Takes the camera and stream out of the source (under the lock); :meth:`_stop` them
        outside it — releasing a camera that stopped answering takes Aravis seconds."""
        self._add_stream_counters()
        held = [self._cam, self._stream]
        self._cam = self._stream = None
        return held

    def _stop(self, held: list) -> None:
        if held and held[0] is not None:
            try:
                held[0].stop_acquisition()
            except self._glib.Error:
                pass
        held.clear()

    def close(self) -> None:
        """Stops acquisition and releases the camera; safe to call twice."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
            held = self._detach()
            thread = self._reconnecting
        self._stop(held)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30)

    # -- frames ------------------------------------------------------------------------------

    def read(self, timeout: Optional[float] = None) -> Optional[Frame]:
        """The next frame in the camera's order; None once closed. FrameDropped (kind
        ``timeout``/``incomplete``/``corrupt``) for no or a bad frame."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._cv:
                if self._closed:
                    return None
                stream = self._stream
                if stream is None:
                    left = _POLL if deadline is None else min(_POLL, deadline - time.monotonic())
                    if left <= 0:
                        raise FrameDropped(
                            f"{self.uri}: camera disconnected, re-discovering it "
                            f"({self._counts['reconnect_attempts']} attempts; last: "
                            f"{self._last_error})",
                            kind="timeout",
                        )
                    self._cv.wait(left)
                    continue
                self._in_pop += 1
            frame = None
            try:
                left = _POLL if deadline is None else min(_POLL, deadline - time.monotonic())
                if left > 0:
                    buf = stream.timeout_pop_buffer(max(1, int(left * 1e6)))
                    if buf is not None:
                        try:
                            frame = self._frame(buf)
                        finally:
                            stream.push_buffer(buf)
            finally:
                # The reconnect thread drops a lost camera only once no reader holds its
                # stream, so the seconds Aravis spends releasing a dead device never land here.
                stream = None
                with self._cv:
                    self._in_pop -= 1
                    self._cv.notify_all()
            if frame is not None:
                return frame
            if deadline is not None and time.monotonic() >= deadline:
                raise FrameDropped(f"{self.uri}: no frame within {timeout} s", kind="timeout")

    def _frame(self, buf) -> Frame:
        t_capture = time.time()
        aravis = self._aravis
        frame_id = buf.get_frame_id()
        host_ns = buf.get_system_timestamp()  # when the frame began to arrive (wall clock)
        with self._cv:
            lost = frames_lost(self._last_frame_id, frame_id)
            self._last_frame_id = frame_id
            self._counts["lost_frames"] += lost
            index = self._index + lost
            self._index = index + 1
            for _ in range(min(lost, len(self._pending))):  # one trigger per lost frame
                self._pending.popleft()
                self._counts["triggers_lost"] += 1
            trigger_id = None
            if self._pending and host_ns >= self._pending[0][1] - _CLOCK_SLACK_NS:
                trigger_id = self._pending.popleft()[0]
            elif self._pending:  # it began arriving before the trigger: not that trigger's
                self._counts["untriggered_frames"] += 1
            self._cv.notify_all()
        status = buf.get_status()
        tag = f" (trigger {trigger_id})" if trigger_id else ""
        if status != aravis.BufferStatus.SUCCESS:
            nick = status.value_nick.replace("-", "_")
            self._counts["incomplete"] += 1
            self._counts[f"status_{nick}"] += 1
            raise FrameDropped(
                f"{self.uri}: frame {frame_id}{tag} arrived {nick}", kind="incomplete"
            )
        if buf.get_payload_type() not in (
            aravis.BufferPayloadType.IMAGE,
            aravis.BufferPayloadType.EXTENDED_CHUNK_DATA,
        ):
            self._counts["corrupt"] += 1
            raise FrameDropped(f"{self.uri}: frame {frame_id}{tag} carries no image", "corrupt")
        try:
            fmt = format_name(buf.get_image_pixel_format())
            image = bgr_from_buffer(
                buf.get_image_data(), fmt, buf.get_image_width(), buf.get_image_height()
            )
        except ValueError as exc:
            self._counts["corrupt"] += 1
            raise FrameDropped(f"{self.uri}: frame {frame_id}{tag}: {exc}", "corrupt") from exc
        self._counts["frames"] += 1
        meta = {
            "camera_timestamp_ns": buf.get_timestamp(),
            "camera_frame_id": frame_id,
            "host_timestamp_ns": host_ns,
            "pixel_format": fmt,
        }
        if trigger_id is not None:
            meta["trigger_id"] = trigger_id
        return Frame(image=image, index=index, t_capture=t_capture, source=self.uri, meta=meta)

    def fire_trigger(self, trigger_id: str) -> None:
        """Fires the camera's software trigger; the frame it produces carries ``trigger_id``.

        Triggers may come faster than frames are read (the frames wait in Aravis's buffers, in
        order, each tagged with its own trigger), but one is in flight at a time: a camera busy
        with a frame may ignore a trigger, so this first waits until the previous trigger's
        frame has arrived (up to ``trigger_timeout`` s; after that it counts it as missed —
        keep the timeout above exposure + readout + transfer). A frame that began arriving
        before the oldest pending trigger was fired (a missed trigger's late frame) comes
        without a ``trigger_id`` and counts as ``untriggered_frames``.
        SourceError without ``trigger=software`` or while the camera is disconnected.
        """
        if not self.supports_trigger:
            raise SourceError(
                f"{self.uri}: software trigger needs trigger=software "
                f"(now trigger={self.options['trigger']})"
            )
        with self._cv:
            self._await_previous_frame()
            cam = self._cam
            if cam is None:
                self._counts["triggers_lost"] += 1
                raise SourceError(
                    f"{self.uri}: trigger {trigger_id} not fired: camera "
                    + ("closed" if self._closed else "disconnected, reconnecting")
                )
            self._pending.append((trigger_id, time.time_ns(), self._arrivals()))
            self._counts["triggers"] += 1
        try:
            cam.software_trigger()
        except self._glib.Error as exc:
            with self._cv:
                self._pending = collections.deque(p for p in self._pending if p[0] != trigger_id)
                self._counts["triggers_lost"] += 1
            self._lost(f"software trigger failed: {exc.message}")
            raise SourceError(f"{self.uri}: trigger {trigger_id} failed: {exc.message}") from exc

    def _await_previous_frame(self) -> None:
        """(Lock held.) Waits until the newest pending trigger's frame has arrived."""
        if not self._pending or self._pending[-1][2] is None:
            return
        prev = self._pending[-1]
        end = time.monotonic() + self.options["trigger_timeout"]
        while not self._closed and self._pending and self._pending[-1] is prev:
            got = self._arrivals()
            if got is None or got > prev[2]:
                return
            left = end - time.monotonic()
            if left <= 0:
                self._pending.pop()
                self._counts["triggers_missed"] += 1
                return
            self._cv.wait(min(left, 0.005))  # Aravis's counters change without a signal

    def _arrivals(self) -> Optional[int]:
        """(Lock held.) Frames the current stream has received, complete or failed."""
        if self._stream is None:
            return None
        get = self._stream.get_info_uint64_by_name
        try:
            return int(get("n_completed_buffers")) + int(get("n_failures"))
        except Exception:  # an Aravis without these infos: no pacing, mapping by order only
            return None

    # -- statistics --------------------------------------------------------------------------

    def _add_stream_counters(self) -> None:
        if self._stream is not None:
            self._stream_base.update(stream_counters(self._stream))

    def stats(self) -> dict:
        """Counters: ``frames``, ``incomplete``, ``corrupt``, ``lost_frames`` (frame-id gaps),
        ``underruns`` (no free buffer), ``missing_packets``, ``resent_packets``,
        ``disconnects``, ``reconnects``, ``reconnect_attempts``, ``triggers``,
        ``triggers_missed``, ``triggers_lost``, ``untriggered_frames``,
        ``status_<aravis status>``, ``connected``, ``last_error``."""
        with self._cv:
            out = collections.Counter(
                {
                    k: 0
                    for k in (
                        "frames incomplete corrupt lost_frames disconnects reconnects "
                        "reconnect_attempts triggers triggers_missed triggers_lost "
                        "untriggered_frames"
                    ).split()
                }
            )
            out.update(self._counts)
            out.update(self._stream_base)
            if self._stream is not None:
                out.update(stream_counters(self._stream))
            result: dict = dict(out)
            result["connected"] = self._cam is not None
            result["last_error"] = self._last_error
            return result


register_source("genicam", GenICamSource)
