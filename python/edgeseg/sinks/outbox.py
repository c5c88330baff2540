"""An on-disk outbox: records wait here, in order, until the receiver acknowledged them.

The MQTT and webhook sinks put every record into an :class:`Outbox` (one SQLite file in WAL
mode) before they try to send it, and delete it only once the broker or server acknowledged
it. A broker restart, a network cut or a restart of the process itself loses nothing: the
next sink opened on the same file sends what is left, oldest first.

The promise is **at-least-once, with ids**: every record carries a unique ``id`` (a UUID), and
a record whose acknowledgement was lost (a crash between "sent" and "acknowledged") is sent
again, so receivers that must not count twice deduplicate on ``id``.

Durability: ``sync="normal"`` (default) survives a crash or kill of the process; a power cut
can lose the last records written. ``sync="full"`` makes every ``put`` reach the disk first
(an fsync per record). ``max_bytes`` bounds the file; a full outbox, like a full disk, makes
``put`` raise :class:`~edgeseg.errors.SinkError`, which the sinks count and report.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from edgeseg.errors import SinkError
from edgeseg.sinks.base import LoopItem, Sink

__all__ = [
    "Outbox",
    "OutboxEntry",
    "OutboxSink",
    "default_outbox_dir",
    "outbox_path",
    "redact_spec",
    "with_id",
]

_log = logging.getLogger("edgeseg.sinks")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload TEXT NOT NULL,
    t_added REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS rejected (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload TEXT NOT NULL,
    t_added REAL NOT NULL,
    reason TEXT NOT NULL,
    t_rejected REAL NOT NULL
);
"""


@dataclass(frozen=True)
class OutboxEntry:
    """One waiting record: ``seq`` (delivery order), ``id`` (the record's UUID), ``topic``
    (where it goes; empty for webhooks), ``payload`` (the JSON text)."""

    seq: int
    id: str
    topic: str
    payload: str


def default_outbox_dir() -> Path:
    """``$EDGESEG_OUTBOX_DIR``, else ``$XDG_STATE_HOME/edgeseg/outbox``
    (``~/.local/state/edgeseg/outbox``)."""
    env = os.environ.get("EDGESEG_OUTBOX_DIR")
    if env:
        return Path(env)
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return Path(state) / "edgeseg" / "outbox"


def outbox_path(where: Union[str, Path, None], kind: str, endpoint: str) -> Path:
    """The outbox file of one sink: ``where`` may be a ``.sqlite3`` file, a directory (the file
    name comes from the sink's kind and endpoint, so each endpoint keeps its own) or None (the
    :func:`default_outbox_dir`)."""
    if where is not None and str(where).endswith((".sqlite3", ".db")):
        return Path(where)
    folder = Path(where) if where is not None else default_outbox_dir()
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", endpoint).strip("-")[:60]
    digest = hashlib.sha1(f"{kind}|{endpoint}".encode()).hexdigest()[:10]
    return folder / f"{kind}-{readable}-{digest}.sqlite3"


def redact_spec(spec: str) -> str:
    """``spec`` with passwords hidden (``user:***@``, ``password=***``), for messages and logs."""
    text = re.sub(r"(//[^/@:]*):[^/@]*@", r"\1:***@", str(spec))
    return re.sub(r"(?<=[?&])(password|token)=[^&]*", r"\1=***", text)


def with_id(record: dict) -> dict:
    """A copy of ``record`` with a unique ``id`` (a UUID4 string) unless it has one."""
    rec = dict(record)
    if not rec.get("id"):
        rec["id"] = str(uuid.uuid4())
    return rec


def _json_default(obj):
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


class Outbox:
    """A persistent FIFO of records (see the module docstring).

    Thread-safe: the sink thread ``put``s while the delivery thread ``peek``s and ``ack``s.
    One outbox file is used by one sink at a time (an exclusive lock; a second user gets a
    :class:`~edgeseg.errors.SinkError` naming the file).
    """

    def __init__(
        self,
        path: Union[str, Path],
        *,
        max_bytes: Optional[int] = None,
        sync: str = "normal",
        owner: str = "outbox",
    ) -> None:
        if sync not in ("normal", "full"):
            raise SinkError(f"{owner}: outbox sync={sync!r}; expected 'normal' or 'full'")
        if max_bytes is not None and int(max_bytes) < 64 * 1024:
            raise SinkError(f"{owner}: outbox max_bytes={max_bytes}; expected at least 65536")
        self.path = Path(path)
        self.owner = owner
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lockfile = open(str(self.path) + ".lock", "a+")  # noqa: SIM115
        except OSError as e:
            raise SinkError(
                f"{owner}: cannot create the outbox {self.path}: {e}; pass outbox=DIR with a "
                "writable folder"
            ) from None
        try:
            fcntl.flock(self._lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lockfile.close()
            raise SinkError(
                f"{owner}: the outbox {self.path} is in use by another sink or process; give "
                "each sink its own outbox (outbox=DIR)"
            ) from None
        try:
            self._db = sqlite3.connect(str(self.path), timeout=10.0, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={sync.upper()}")
            self._db.executescript(_SCHEMA)
            if max_bytes is not None:
                page = self._db.execute("PRAGMA page_size").fetchone()[0]
                self._db.execute(f"PRAGMA max_page_count={max(16, int(max_bytes) // page)}")
            self._db.commit()
        except sqlite3.Error as e:
            self._lockfile.close()
            raise SinkError(
                f"{owner}: cannot open the outbox {self.path}: {e}; delete or move the file "
                "if it is damaged, or pass another outbox=DIR"
            ) from None
        self._closed = False

    def put(self, record: dict, topic: str = "") -> OutboxEntry:
        """Stores ``record`` (given an ``id`` if it has none) for delivery to ``topic``.

        Raises SinkError when the record cannot be stored (disk or ``max_bytes`` full, not
        JSON-able): the caller counts it as lost and reports it.
        """
        rec = with_id(record)
        try:
            payload = json.dumps(rec, separators=(",", ":"), default=_json_default)
        except (TypeError, ValueError) as e:
            raise SinkError(f"{self.owner}: the record is not JSON-able: {e}") from None
        with self._lock:
            self._check_open()
            try:
                cur = self._db.execute(
                    "INSERT INTO outbox (id, topic, payload, t_added) VALUES (?, ?, ?, ?)",
                    (rec["id"], topic, payload, time.time()),
                )
                self._db.commit()
            except sqlite3.Error as e:
                self._rollback()
                raise SinkError(
                    f"{self.owner}: cannot store the record in the outbox {self.path}: {e}; "
                    "free disk space (or raise the outbox's max_bytes)"
                ) from None
            return OutboxEntry(int(cur.lastrowid), rec["id"], topic, payload)

    def peek(self, limit: int = 100, after: int = 0) -> list[OutboxEntry]:
        """Up to ``limit`` waiting entries with ``seq > after``, oldest first."""
        with self._lock:
            self._check_open()
            rows = self._db.execute(
                "SELECT seq, id, topic, payload FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                (int(after), int(limit)),
            ).fetchall()
        return [OutboxEntry(int(s), i, t, p) for s, i, t, p in rows]

    def ack(self, seq: int) -> None:
        """The receiver acknowledged entry ``seq``: it leaves the outbox."""
        with self._lock:
            self._check_open()
            self._db.execute("DELETE FROM outbox WHERE seq = ?", (int(seq),))
            self._db.commit()

    def reject(self, seq: int, reason: str) -> None:
        """The receiver refused entry ``seq`` for good (e.g. HTTP 400): it moves to the
        ``rejected`` table of the same file (kept for inspection, counted, not retried)."""
        with self._lock:
            self._check_open()
            try:
                self._db.execute(
                    "INSERT OR REPLACE INTO rejected SELECT seq, id, topic, payload, t_added, ?, ? "
                    "FROM outbox WHERE seq = ?",
                    (reason, time.time(), int(seq)),
                )
                self._db.execute("DELETE FROM outbox WHERE seq = ?", (int(seq),))
                self._db.commit()
            except sqlite3.Error:
                self._rollback()
                self._db.execute("DELETE FROM outbox WHERE seq = ?", (int(seq),))
                self._db.commit()

    def pending(self) -> int:
        """How many entries wait for delivery."""
        with self._lock:
            if self._closed:
                return 0
            return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def rejected(self) -> list[tuple[str, str]]:
        """``(id, reason)`` of every rejected entry, oldest first."""
        with self._lock:
            self._check_open()
            rows = self._db.execute("SELECT id, reason FROM rejected ORDER BY seq").fetchall()
        return [(str(i), str(r)) for i, r in rows]

    def close(self) -> None:
        """Closes the file (what is left stays for the next sink); safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._db.close()
            finally:
                self._lockfile.close()

    def _check_open(self) -> None:
        if self._closed:
            raise SinkError(f"{self.owner}: the outbox {self.path} is closed")

    def _rollback(self) -> None:
        try:
            self._db.rollback()
        except sqlite3.Error:
            pass


class OutboxSink(Sink):
    """Base of the sinks that deliver through an :class:`Outbox` from a thread of their own.

    ``write`` only stores the record (milliseconds; never waits for the network) and wakes the
    delivery thread, which runs :meth:`_deliver` until ``close``. ``close`` waits up to
    ``close_timeout`` seconds for the outbox to drain; what is left stays on disk for the next
    start. Subclasses implement ``_deliver`` (and may override ``_topic_for``, ``_start``,
    ``_stop_io``).
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
        close_timeout: float = 5.0,
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
            self._outbox.put(item.record, topic=self._topic_for(item.record))
        except SinkError as e:
            self._count("lost", error=str(e))
            raise
        self._count("written")
        self._wake.set()

    def flush(self, timeout: float = 10.0) -> bool:
        """Waits up to ``timeout`` s until every stored record was delivered; True if so."""
        deadline = time.monotonic() + float(timeout)
        with self._acked:
            while self._outbox is not None and self._outbox.pending() > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._acked.wait(min(left, 0.2))
        return True

    def close(self) -> None:
        if self._outbox is None:
            return
        self.flush(self.close_timeout)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=max(5.0, self.close_timeout))
            self._thread = None
        try:
            self._stop_io()
        finally:
            self._outbox.close()
            self._outbox = None

    def stats(self) -> dict:
        with self._acked:
            out: dict = dict(self._counts)
            out["last_error"] = self._last_error
            out["pending"] = self._outbox.pending() if self._outbox is not None else 0
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
            self._count("delivered")

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
                if error != self._last_error:  # each new problem once, not every retry
                    _log.warning("sink %s: %s", self.label, error)
                self._last_error = error
            if key in ("delivered", "rejected"):
                self._acked.notify_all()
