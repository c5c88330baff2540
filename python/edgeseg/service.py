"""Running as a systemd service: readiness and watchdog notifications, and the log format.

**Notifications** speak systemd's ``sd_notify`` datagram protocol to the unix socket named by
``$NOTIFY_SOCKET`` (a path, or an abstract name starting with ``@``), as a unit with
``Type=notify`` and ``WatchdogSec=`` expects. Without ``$NOTIFY_SOCKET`` (not started by
systemd) every call is a no-op that returns False::

    notify_ready()              # READY=1: the first frame went through
    notify_watchdog()           # WATCHDOG=1: still alive; at least every watchdog_interval()
    notify_status("12.5 fps")   # STATUS=...: shown by systemctl status
    notify_stopping()           # STOPPING=1: draining outboxes, closing

:class:`Heartbeat` does the bookkeeping for a loop: READY once the first frame is done,
WATCHDOG every half ``$WATCHDOG_USEC`` while the caller says the loop is alive (so a stuck
stage stops the pings and systemd restarts the service).

**Logging**: :func:`setup_logging` sends the ``edgeseg`` loggers to stderr, as text
(``LEVEL logger: message``; under journald with the ``<N>`` priority prefix journald reads,
and no time stamp, which journald adds) or JSON (one object per line: ``ts``, ``level``,
``logger``, ``msg``, and ``exc`` with the traceback when there is one).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from typing import Optional, TextIO

__all__ = [
    "LOG_FORMATS",
    "LOG_LEVELS",
    "Heartbeat",
    "notify",
    "notify_ready",
    "notify_status",
    "notify_stopping",
    "notify_watchdog",
    "setup_logging",
    "watchdog_interval",
]

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")

_log = logging.getLogger("edgeseg.service")


def notify(state: str) -> bool:
    """Sends ``state`` (``KEY=VALUE`` lines) to ``$NOTIFY_SOCKET``; True when sent.

    No-op (False) without ``$NOTIFY_SOCKET``; a socket that cannot be reached, or whose
    queue is full, gives False and a debug log line: a notification never blocks or stops
    the station.
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            # never block the station on a listener that does not read (a full queue drops
            # this one message; the next WATCHDOG or STATUS comes soon)
            sock.send(state.encode("utf-8"), socket.MSG_DONTWAIT)
        return True
    except OSError as e:
        _log.debug("sd_notify to %s failed: %s", os.environ.get("NOTIFY_SOCKET"), e)
        return False


def notify_ready() -> bool:
    """``READY=1``: startup is finished (systemd's ``Type=notify`` waits for it)."""
    return notify("READY=1")


def notify_watchdog() -> bool:
    """``WATCHDOG=1``: the service is alive (``WatchdogSec=`` restarts it without these)."""
    return notify("WATCHDOG=1")


def notify_stopping() -> bool:
    """``STOPPING=1``: the service is shutting down (draining, closing)."""
    return notify("STOPPING=1")


def notify_status(text: str) -> bool:
    """``STATUS=text``: one line for ``systemctl status`` (line breaks become spaces)."""
    return notify("STATUS=" + " ".join(str(text).split()))


def watchdog_interval() -> Optional[float]:
    """The watchdog period in seconds from ``$WATCHDOG_USEC`` (None when there is none, or
    ``$WATCHDOG_PID`` names another process)."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid.strip() != str(os.getpid())):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1e6 if value > 0 else None


class Heartbeat:
    """READY after the first frame, WATCHDOG at half the watchdog period while alive.

    Call :meth:`beat` often (every few hundred ms) from the thread that supervises the
    loop; it sends at most what is due. ``interval`` defaults to :func:`watchdog_interval`.
    """

    def __init__(self, interval: Optional[float] = None, clock=time.monotonic) -> None:
        self.interval = watchdog_interval() if interval is None else float(interval)
        self.ready = False
        self._clock = clock
        self._last_ping: Optional[float] = None

    @property
    def period(self) -> Optional[float]:
        """How often WATCHDOG=1 is sent (half the watchdog interval), or None."""
        return None if not self.interval else self.interval / 2.0

    def beat(self, frames: int, alive: bool = True) -> None:
        """``frames`` processed so far; ``alive`` False when a stage of the loop is stuck
        (then no WATCHDOG goes out and systemd restarts the service)."""
        if not self.ready and frames > 0:
            self.ready = True
            notify_ready()
        period = self.period
        if period is None or not alive:
            return
        now = self._clock()
        if self._last_ping is None or now - self._last_ping >= period:
            self._last_ping = now
            notify_watchdog()


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


_SYSLOG_PRIORITY = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}


class _JournalFormatter(logging.Formatter):
    """``<N>`` syslog priority prefixes: journald keeps the level of every line."""

    def format(self, record: logging.LogRecord) -> str:
        prio = _SYSLOG_PRIORITY.get(record.levelname, 6)
        return "\n".join(f"<{prio}>{line}" for line in super().format(record).splitlines())


def _stream_is_journal(stream: TextIO) -> bool:
    """True when ``stream`` is the journald stream systemd connected (``$JOURNAL_STREAM``)."""
    value = os.environ.get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(x) for x in value.split(":"))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return st.st_dev == dev and st.st_ino == ino


_HANDLER_NAME = "edgeseg-service"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each record (it may be replaced
    after setup, e.g. by a test runner or a daemonizing wrapper)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def setup_logging(
    level: str = "info", fmt: str = "text", stream: Optional[TextIO] = None
) -> logging.Handler:
    """Sends the ``edgeseg`` loggers to ``stream`` (stderr) at ``level`` in ``fmt``.

    Args:
        level: ``debug``, ``info``, ``warning`` or ``error``.
        fmt: ``text`` (``LEVEL logger: message``; time stamps on a terminal only, journald
            priority prefixes under journald) or ``json`` (one object per line).
        stream: Where to write (default ``sys.stderr``).

    Returns:
        The handler (installed once: calling again replaces it).

    Raises:
        ValueError: An unknown level or format, naming the valid ones.
    """
    level_name = str(level).lower()
    if level_name not in LOG_LEVELS:
        raise ValueError(f"log level {level!r}: expected one of {list(LOG_LEVELS)}")
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format {fmt!r}: expected one of {list(LOG_FORMATS)}")
    handler = _StderrHandler() if stream is None else logging.StreamHandler(stream)
    stream = handler.stream
    handler.set_name(_HANDLER_NAME)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    elif _stream_is_journal(stream):
        handler.setFormatter(_JournalFormatter("%(levelname)s %(name)s: %(message)s"))
    elif getattr(stream, "isatty", lambda: False)():
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
        )
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("edgeseg")
    for old in [h for h in logger.handlers if h.get_name() == _HANDLER_NAME]:
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(getattr(logging, level_name.upper()))
    return handler
