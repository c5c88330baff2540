"""Hiding secrets in anything edgeseg shows: the one redaction of specs, URLs and messages.

Every place that shows a sink or trigger spec, a source URI, a configuration or an error that
may quote one (stats, the live view's ``/stats.json`` and ``/events``, logs, ``--json``,
reports, webhook errors) passes it through :func:`redact`. It replaces with ``***``:

- the password of a URL (``mqtt://user:PASSWORD@host`` → ``mqtt://user:***@host``);
- the value of a query parameter or ``key=value`` option whose name speaks of a secret
  (``password``, ``passwd``, ``pwd``, ``token``, ``secret``, ``key``, ``auth``, ``signature``,
  ``credential``, ``session``, ``cookie``: ``?password=x``, ``&api_key=x``,
  ``access_token=x``, ``X-Amz-Signature=x``);
- the value of such a header or mapping entry (``Authorization: Bearer x``,
  ``{'password': 'x'}``, ``"X-Api-Key": "x"``).

Redaction is for display only: the real values still reach the broker or server.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["MASK", "redact"]

#: What a hidden value becomes.
MASK = "***"

_SECRET_WORD = (
    r"pass(?:word|wd)?|pwd|token|secret|key|auth\w*|sig(?:nature)?|credential|session|cookie"
)
_NAME = rf"[\w.-]*(?:{_SECRET_WORD})[\w.-]*"

# scheme://user:password@host (up to the last '@' of the authority: passwords may hold '@').
_USERINFO = re.compile(r"(?P<pre>[A-Za-z][\w+.-]*://[^/?#@:\s]*):(?P<secret>[^/?#\s]*)@")
# name=value in a query string or an option list.
_PARAM = re.compile(
    rf"(?P<pre>(?:^|[?&;,\s])(?P<name>{_NAME})=)(?P<secret>[^&;,\s'\"]*)", re.IGNORECASE
)
# 'name': 'value' / "name": "value" (dict reprs, JSON).
_QUOTED = re.compile(
    rf"(?P<pre>(?P<q>['\"])(?P<name>{_NAME})(?P=q)\s*:\s*(?P<vq>['\"]))(?P<secret>(?:\\.|(?!(?P=vq)).)*)",
    re.IGNORECASE,
)
# Authorization: Bearer x (a header line).
_HEADER_NAME = (
    r"(?:proxy-)?authorization|(?:set-)?cookie|[\w-]*(?:api[-_]?key|token|secret|password)"
)
_HEADER = re.compile(
    rf"(?P<pre>(?:^|(?<=[\s,;{{]))(?P<name>{_HEADER_NAME})\s*:[ \t]*)(?P<secret>[^\r\n,;'\"}}]+)",
    re.IGNORECASE | re.MULTILINE,
)


def _mask(m: re.Match) -> str:
    return m.group("pre") + (MASK if m.group("secret") else "")


def redact(text: Any) -> str:
    """``text`` (a spec, URL, message or ``str()`` of anything) with its secrets replaced by
    ``***`` (see the module docstring); text without secrets comes back unchanged."""
    s = str(text)
    if not s:
        return s
    s = _USERINFO.sub(lambda m: f"{m.group('pre')}:{MASK}@", s)
    s = _QUOTED.sub(_mask, s)
    s = _PARAM.sub(_mask, s)
    s = _HEADER.sub(_mask, s)
    return s
