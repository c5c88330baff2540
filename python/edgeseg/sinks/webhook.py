"""Webhook sink: every record POSTed as JSON to a URL, retried with backoff, through the outbox.

Spec: ``webhook:http://HOST[:PORT]/PATH`` (or ``https://``). Options (keyword arguments):
``timeout`` (s per request, default 5), ``backoff`` (first retry delay in s, default 0.5,
doubled after every failure up to ``max_backoff``, default 30; a ``Retry-After`` header is
honoured within that bound), ``headers`` (dict of extra headers, e.g. ``Authorization``),
``ca`` (a PEM bundle for https), ``outbox``, ``outbox_max_bytes``, ``outbox_sync``,
``close_timeout`` (how long ``close`` drains the outbox unless the loop gives a
``drain_timeout``; default 10 s).

Each request carries one record (:func:`~edgeseg.sinks.base.make_record` plus ``id``) and the
header ``Idempotency-Key: <id>``; records go out one at a time, in order. A 2xx answer
delivers it; connection errors, timeouts, 408, 429 and 5xx are retried (forever, with
backoff: nothing is dropped while the server is away); any other 4xx means the server will
never take that record: it moves to the outbox's ``rejected`` table, is counted in
``stats()["rejected"]``, and the next record goes.
"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlsplit

from edgeseg.errors import SinkError
from edgeseg.sinks.base import register_sink
from edgeseg.sinks.delivery import OutboxSink
from edgeseg.sinks.outbox import Outbox, redact_spec

__all__ = ["WebhookSink"]

WEBHOOK_FORM = "webhook:http://HOST[:PORT]/PATH, e.g. webhook:http://127.0.0.1:8080/results"
_RETRY_CODES = (408, 425, 429)


class WebhookSink(OutboxSink):
    """POSTs every record to ``url`` (see the module docstring)."""

    kind = "webhook"

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        headers: Optional[dict] = None,
        ca: Optional[str] = None,
        outbox: Any = None,
        outbox_max_bytes: Optional[int] = None,
        outbox_sync: str = "normal",
        close_timeout: float = 10.0,
    ) -> None:
        spec = f"webhook:{url}"
        shown = redact_spec(spec)
        try:
            u = urlsplit(str(url))
            port = u.port
        except ValueError as e:
            raise SinkError(f"sink {shown!r}: {e}; expected {WEBHOOK_FORM}") from None
        if u.scheme not in ("http", "https") or not u.hostname:
            raise SinkError(f"sink {shown!r}: expected {WEBHOOK_FORM}")
        try:
            timeout, backoff, max_backoff = float(timeout), float(backoff), float(max_backoff)
        except (TypeError, ValueError):
            raise SinkError(f"sink {shown!r}: timeout and backoff must be numbers (s)") from None
        if headers is not None and not isinstance(headers, dict):
            raise SinkError(f"sink {shown!r}: headers must be a dict of name -> value")
        if not (timeout > 0 and backoff > 0 and max_backoff >= backoff):
            raise SinkError(
                f"sink {shown!r}: timeout and backoff must be > 0 and max_backoff >= backoff"
            )
        if ca is not None and not Path(ca).is_file():
            raise SinkError(f"sink {shown!r}: ca={ca!r} is not a file; give a PEM bundle")
        endpoint = f"{u.hostname}:{port or (443 if u.scheme == 'https' else 80)}{u.path}"
        super().__init__(
            spec,
            endpoint,
            outbox=outbox,
            outbox_max_bytes=outbox_max_bytes,
            outbox_sync=outbox_sync,
            close_timeout=close_timeout,
        )
        self.url = str(url)
        self._shown_url = redact_spec(self.url)
        self.timeout = float(timeout)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.headers = {str(k): str(v) for k, v in (headers or {}).items()}
        self._context = ssl.create_default_context(cafile=ca) if ca else None
        self._failures = 0  # consecutive, for the backoff

    def _deliver(self, outbox: Outbox) -> None:
        entries = outbox.peek(1)
        if not entries:
            self._wake.wait(0.5)
            self._wake.clear()
            return
        e = entries[0]
        req = urllib.request.Request(
            self.url,
            data=e.payload.encode("utf-8"),
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Idempotency-Key": e.id,
                "User-Agent": "edgeseg-webhook",
                **self.headers,
            },
        )
        retry_after: Optional[float] = None
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self._context) as r:
                r.read()
            self._failures = 0
            self._ack(outbox, e.seq)
            return
        except urllib.error.HTTPError as err:
            code = err.code
            err.close()
            if 400 <= code < 500 and code not in _RETRY_CODES:
                self._reject(
                    outbox,
                    e.seq,
                    f"HTTP {code} {err.reason}",
                    f"{self._shown_url} refused record {e.id}: HTTP {code}",
                )
                return
            retry_after = _seconds(err.headers.get("Retry-After") if err.headers else None)
            error = f"{self._shown_url} answered HTTP {code} {err.reason}"
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
            error = (
                f"cannot POST to {self._shown_url}: {redact_spec(reason)}; records wait in "
                f"{self.outbox_path}"
            )
        self._failures += 1
        self._count("retries", error=error)
        delay = min(self.max_backoff, self.backoff * 2 ** min(self._failures - 1, 30))
        if retry_after is not None:
            delay = min(self.max_backoff, max(delay, retry_after))
        self._stop.wait(delay)

    def stats(self) -> dict:
        out = super().stats()
        out["status"] = f"retrying ({out['last_error']})" if self._failures else "ok"
        return out


def _seconds(value: Optional[str]) -> Optional[float]:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: the backoff applies


register_sink("webhook", lambda url, **options: WebhookSink(url, **options))
