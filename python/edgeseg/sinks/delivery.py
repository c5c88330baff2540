"""The delivery thread of the sinks that send through an on-disk :class:`Outbox` (MQTT,
webhook): ``write`` stores, a thread of the sink delivers, ``close`` drains with a bound.

Accounting (:meth:`OutboxSink.delivery_stats`): ``delivered`` records the receiver
acknowledged, ``queued`` records waiting in the outbox (also those left by an earlier run),
``failed`` records that will never arrive (the outbox could not store them, or the receiver
refused them for good: kept in the outbox's ``rejected`` table). Every record a ``write``
accepted is in exactly one of them.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Optional, Union

from edgeseg.errors import SinkError
from edgeseg.sinks.base import LoopItem, Sink
from edgeseg.sinks.outbox import Outbox, outbox_path, redact_spec, with_id

__all__ = ["OutboxSink"]

_log = logging.getLogger("edgeseg.sinks")


class OutboxSink(Sink):
    """Base of the sinks that deliver through an :class:`Outbox` from a thread of their own.

    ``write`` only stores the record (milliseconds; never waits for the network) and wakes the
    delivery thread, which runs :meth:`_deliver` until ``close``. ``close`` waits up to
    ``drain_timeout`` seconds (default ``close_timeout``, 10 s) for the outbox to drain, while
    the delivery thread goes on sending (and reconnecting); what is left stays on disk for
    the next start, and is counted as ``queued``. Subclasses implement ``_deliver`` (and may
    override ``_topic_for``, ``_start``, ``_stop_io``).
    """

    kind = "outbox"

    def __init__(
        self,
        spec: str,
        endpoint: str,
        *,
        outbox: Union[str, Path, None] = None,
        outbox_max_bytes: Optional[int] = None,
        outbox_sync: str = "normal",
        close_timeout: float = 10.0,
    ) -> None:
        self.spec = spec
        self.outbox_path = outbox_path(outbox, self.kind, endpoint)
        self._outbox_max_bytes = outbox_max_bytes
        self._outbox_sync = outbox_sync
        self.close_timeout = float(close_timeout)
        self._outbox: Optional[Outbox] = None
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._acked = threading.Condition()
        self._counts = {"written": 0, "delivered": 0, "lost": 0, "rejected": 0, "retries": 0}
        self._last_error: Optional[str] = None
        self._queued = 0  # records in the outbox (kept in step with put/ack/reject)

    @property
    def label(self) -> str:
        """The spec with passwords hidden, as messages and logs show it."""
        return redact_spec(self.spec)

    def open(self) -> None:
        if self._outbox is not None:
            return
        self._outbox = Outbox(
            self.outbox_path,
            max_bytes=self._outbox_max_bytes,
            sync=self._outbox_sync,
            owner=f"sink {self.label!r}",
        )
        with self._acked:
            self._queued = self._outbox.pending()
        self._stop.clear()
        try:
            self._start()
        except BaseException:
            self._outbox.close()
            self._outbox = None
            raise
        self._thread = threading.Thread(
            target=self._run, name=f"edgeseg-{self.kind}-delivery", daemon=True
        )
        self._thread.start()

    def write(self, item: LoopItem) -> None:
        if self._outbox is None:
            raise SinkError(f"sink {self.label!r}: write() before open()")
        try:
            record = with_id(item.record)  # the id first, so a topic template may use {id}
            self._outbox.put(record, topic=self._topic_for(record))
        except SinkError as e:
            self._count("lost", error=str(e))
            raise
        with self._acked:
            self._counts["written"] += 1
            self._queued += 1
        self._wake.set()

    def flush(self, timeout: float = 10.0) -> bool:
        """Waits up to ``timeout`` s until every stored record was delivered; True if so."""
        deadline = time.monotonic() + float(timeout)
        with self._acked:
            while self._outbox is not None and self._queued > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._acked.wait(min(left, 0.2))
        return True

    def close(self, drain_timeout: Optional[float] = None) -> None:
        """Drains the outbox for up to ``drain_timeout`` s (None: ``close_timeout``), then
        stops; what is left stays on disk for the next start (logged, and ``queued`` in
        :meth:`delivery_stats`). Safe to call twice."""
        if self._outbox is None:
            return
        timeout = self.close_timeout if drain_timeout is None else max(0.0, float(drain_timeout))
        if self._queued:
            _log.info(
                "sink %s: delivering %d queued record(s) before stopping (up to %.0f s)",
                self.label,
                self._queued,
                timeout,
            )
        self.flush(timeout)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=max(5.0, self.close_timeout))
            self._thread = None
        try:
            self._stop_io()
        finally:
            left = self._outbox.pending()
            with self._acked:
                self._outbox.close()
                self._outbox = None
                self._queued = left
        if left:
            _log.warning(
                "sink %s: stopped with %d record(s) not delivered, kept in the outbox %s; they "
                "go out at the next start with the same outbox",
                self.label,
                left,
                self.outbox_path,
            )

    def delivery_stats(self) -> dict:
        """``{"delivered", "queued", "failed"}`` (module docstring); cheap (no disk access)."""
        with self._acked:
            c = self._counts
            return {
                "delivered": c["delivered"],
                "queued": self._queued,
                "failed": c["lost"] + c["rejected"],
            }

    def stats(self) -> dict:
        with self._acked:
            out: dict = dict(self._counts)
            out["last_error"] = self._last_error
            out["pending"] = self._queued
        out.update(self.delivery_stats())
        out["outbox"] = str(self.outbox_path)
        return out

    # -- for subclasses -------------------------------------------------------------------
    def _topic_for(self, record: dict) -> str:
        return ""

    def _start(self) -> None:
        """Starts the network side (called by ``open`` before the delivery thread)."""

    def _stop_io(self) -> None:
        """Stops the network side (called by ``close`` after the delivery thread ended)."""

    def _deliver(self, outbox: Outbox) -> None:
        """One round of delivery; returns to let the thread check for ``close``."""
        raise NotImplementedError

    def _ack(self, outbox: Outbox, seq: int) -> None:
        """Removes ``seq`` from the outbox and counts it delivered, as one step for ``stats``."""
        with self._acked:
            outbox.ack(seq)
            self._queued -= 1
            self._count("delivered")

    def _reject(self, outbox: Outbox, seq: int, reason: str, error: str) -> None:
        """Moves ``seq`` to the outbox's ``rejected`` table: the receiver will never take it."""
        with self._acked:
            outbox.reject(seq, reason)
            self._queued -= 1
            self._count("rejected", error=error)

    def _run(self) -> None:
        outbox = self._outbox
        assert outbox is not None
        while not self._stop.is_set():
            try:
                self._deliver(outbox)
            except Exception as e:  # noqa: BLE001 - the thread must outlive any one failure
                self._count(None, error=f"delivery: {type(e).__name__}: {e}")
                self._stop.wait(1.0)

    def _count(self, key: Optional[str], n: int = 1, error: Optional[str] = None) -> None:
        with self._acked:
            if key is not None:
                self._counts[key] = self._counts.get(key, 0) + n
            if error is not None:
                error = redact_spec(error)
                if error != self._last_error:  # each new problem once, not every retry
                    _log.warning("sink %s: %s", self.label, error)
                self._last_error = error
            if key in ("delivered", "rejected"):
                self._acked.notify_all()
