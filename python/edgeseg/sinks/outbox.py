"""An on-disk outbox: records wait here, in order, until the receiver acknowledged them.

The MQTT and webhook sinks (:mod:`edgeseg.sinks.delivery`) put every record into an
:class:`Outbox` (one SQLite file in WAL mode) before they try to send it, and delete it only
once the broker or server acknowledged it. A broker restart, a network cut or a restart of
the process itself loses nothing: the next sink opened on the same file sends what is left,
oldest first.

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
import os
import re
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from edgeseg._redact import redact
from edgeseg.errors import SinkError
from edgeseg.sinks._private import private_dirs, private_file
from edgeseg.sinks.encode import encode_record

__all__ = [
    "Outbox",
    "OutboxEntry",
    "default_outbox_dir",
    "outbox_path",
    "redact_spec",
    "with_id",
]

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


#: ``spec`` with its secrets hidden, for messages and logs (:func:`edgeseg._redact.redact`).
redact_spec = redact


def with_id(record: dict) -> dict:
    """A copy of ``record`` with a unique ``id`` (a UUID4 string) unless it has one."""
    rec = dict(record)
    if not rec.get("id"):
        rec["id"] = str(uuid.uuid4())
    return rec


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
            private_dirs(self.path.parent)
            private_file(str(self.path) + ".lock")
            private_file(self.path)  # SQLite gives its -wal and -shm files the same mode
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
            payload = encode_record(rec)
        except SinkError as e:
            raise SinkError(f"{self.owner}: {e}") from None
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
