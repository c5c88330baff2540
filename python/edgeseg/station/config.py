"""The station file: its keys, ``${VAR}`` substitution, and the findings of a bad one.

::

    station: line-3                      # a name for logs and the index page (optional)
    cameras:
      top:
        source: rtsp://10.0.0.21/stream  # any source URI edgeseg run takes
        model: models/defects.onnx       # cameras naming the same file share one model
        rules: rules/top.yaml            # optional: OK/NG verdicts
        sinks: [jsonl:out/top.jsonl, "mqtt://broker:1883/line3/top"]
        trigger: http                    # POST /v1/cameras/top/trigger (or mqtt://, opcua:)
    http: {bind: 127.0.0.1, port: 8080, token: "${EDGESEG_TOKEN}"}

Every key is listed in :data:`TOP_KEYS`, :data:`CAMERA_KEYS`, ... and documented in
``docs/reference/station.md``. Problems are collected, not stopped at: :func:`check_data`
returns every finding (``"station.yaml:12: cameras.top: unknown key 'modle'; did you mean
'model'? ..."``); :func:`load_station` raises one :class:`~edgeseg.errors.StationError` with
all of them. Values of ``token`` and any ``${VAR}`` are secrets: they never appear in a
finding, a log line or ``--json`` output.

One room: the schema of one file (its key lists, defaults, per-key checks, line numbers and
``${VAR}`` substitution) read top to bottom as the file is; the checks that need a model or a
source loaded live in :mod:`edgeseg.station.check`.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from edgeseg._redact import MASK, redact
from edgeseg._text import short
from edgeseg._yaml import load_yaml
from edgeseg.errors import EdgesegError, StationError

__all__ = [
    "CAMERA_KEYS",
    "HTTP_KEYS",
    "TOP_KEYS",
    "CameraConfig",
    "HttpConfig",
    "StationConfig",
    "check_data",
    "load_station",
]

TOP_KEYS = (
    "station",
    "cameras",
    "http",
    "live_view",
    "metrics",
    "logging",
    "outbox",
    "drain_timeout",
    "reload",
    "ready",
    "backend",
    "threads",
)
CAMERA_KEYS = (
    "source",
    "model",
    "rules",
    "sinks",
    "trigger",
    "live_view",
    "drop",
    "max_fps",
    "on_invalid",
    "max_invalid",
    "loop",
    "enabled",
)
HTTP_KEYS = (
    "bind",
    "port",
    "token",
    "allowed_hosts",
    "tls",
    "request_timeout",
    "idle_timeout",
    "max_connections",
    "max_image_bytes",
    "max_image_pixels",
)
TLS_KEYS = ("cert", "key")
LIVE_KEYS = ("enabled", "max_fps", "max_width", "jpeg_quality", "confidence", "max_clients")
METRICS_KEYS = ("enabled",)
LOGGING_KEYS = ("level", "format")
RELOAD_KEYS = ("mode", "interval")
READY_KEYS = ("max_outbox", "max_frame_age")
RELOAD_MODES = ("signal", "watch")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
CONF_MODES = ("off", "alpha", "heatmap")
DROP_MODES = ("latest", "none")
ON_INVALID = ("ng", "error", "skip")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass
class HttpConfig:
    """``http:``: where the one server listens and how it guards itself."""

    bind: str = "127.0.0.1"
    port: int = 8080
    token: Optional[str] = field(default=None, repr=False)
    allowed_hosts: list = field(default_factory=list)
    tls_cert: Optional[str] = None
    tls_key: Optional[str] = None
    request_timeout: float = 10.0
    idle_timeout: float = 30.0
    max_connections: int = 256
    max_image_bytes: int = 16 * 1024 * 1024
    max_image_pixels: int = 40_000_000

    @property
    def addr(self) -> str:
        return f"[{self.bind}]:{self.port}" if ":" in self.bind else f"{self.bind}:{self.port}"


@dataclass
class LiveConfig:
    """``live_view:``: the per-camera browser view (``/cameras/NAME/``)."""

    enabled: bool = True
    max_fps: float = 15.0
    max_width: Optional[int] = 1280
    jpeg_quality: int = 80
    confidence: str = "off"
    max_clients: int = 32


@dataclass
class CameraConfig:
    """One entry of ``cameras:``."""

    name: str
    source: str
    model: Path
    rules: Optional[Path] = None
    sinks: list = field(default_factory=list)
    trigger: Optional[str] = None
    live_view: bool = True
    drop: str = "latest"
    max_fps: Optional[float] = None
    on_invalid: Optional[str] = None
    max_invalid: int = 50
    loop: bool = False
    enabled: bool = True


@dataclass
class StationConfig:
    """A validated station file (:func:`load_station`)."""

    path: Path
    name: str
    cameras: list
    http: HttpConfig
    live_view: LiveConfig
    metrics: bool = True
    log_level: str = "info"
    log_format: str = "text"
    outbox: Optional[Path] = None
    drain_timeout: float = 10.0
    reload_mode: str = "signal"
    reload_interval: float = 2.0
    max_outbox: int = 10_000
    max_frame_age: float = 10.0
    backend: str = "auto"
    threads: Optional[int] = None

    def files(self) -> list[Path]:
        """The model and rules files reload watches."""
        out: list[Path] = []
        for c in self.cameras:
            for p in (c.model, c.rules):
                if p is not None and p not in out:
                    out.append(p)
        return out


class _Findings:
    """Collects findings with the line each one is about."""

    def __init__(self, source: str, lines: dict) -> None:
        self.source, self.lines, self.items = source, lines, []

    def add(self, path: tuple, message: str) -> None:
        line = None
        for n in range(len(path), -1, -1):
            line = self.lines.get(path[:n])
            if line is not None:
                break
        where = ".".join(str(p) for p in path)
        at = f"{self.source}:{line}" if line else self.source
        self.items.append(f"{at}: {where + ': ' if where else ''}{message}")


def _line_map(text: str) -> dict:
    """``{key path: line}`` for every mapping key and list item of the document."""
    import yaml

    out: dict = {}
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return out
    stack = [((), root)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = path + (k.value,)
                out.setdefault(key, k.start_mark.line + 1)
                stack.append((key, v))
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                key = path + (i,)
                out.setdefault(key, v.start_mark.line + 1)
                stack.append((key, v))
    return out


def _substitute(value: Any, path: tuple, f: _Findings, env: dict, secrets: set) -> Any:
    """``${VAR}`` / ``${VAR:-default}`` in every string; the values become secrets."""
    if isinstance(value, dict):
        return {k: _substitute(v, path + (k,), f, env, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, path + (i,), f, env, secrets) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def one(m: re.Match) -> str:
        name, default = m.group(1), m.group(2)
        if name in env:
            got = env[name]
        elif default is not None:
            got = default
        else:
            f.add(path, f"${{{name}}} is not set; export {name} (or write ${{{name}:-default}})")
            return ""
        if got:
            secrets.add(got)
        return got

    return _VAR.sub(one, value)


def _keys(d: dict, valid: tuple, path: tuple, f: _Findings) -> None:
    for key in d:
        if key in valid:
            continue
        close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else ""
        f.add(path + (key,), f"unknown key {short(key)}; {hint}valid keys are {list(valid)}")


def _section(data: dict, key: str, valid: tuple, f: _Findings) -> dict:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        f.add((key,), f"expected a mapping of {list(valid)}, got {short(value)}")
        return {}
    _keys(value, valid, (key,), f)
    return value


def _number(d: dict, key: str, path: tuple, f: _Findings, default, *, integer=False, lo=0.0):
    if key not in d or d[key] is None:
        return default
    v = d[key]
    ok = isinstance(v, (int, float)) and not isinstance(v, bool)
    if ok and integer:
        ok = float(v).is_integer()
    if not ok or v != v or v < lo or v in (float("inf"), float("-inf")):
        kind = "a whole number" if integer else "a number"
        f.add(path + (key,), f"expected {kind} >= {lo:g}, got {short(v)}")
        return default
    return int(v) if integer else float(v)


def _choice(d: dict, key: str, path: tuple, f: _Findings, options: tuple, default):
    if key not in d or d[key] is None:
        return default
    v = d[key]
    if isinstance(v, bool) and "off" in options:  # YAML reads a bare off as False
        v = "off" if v is False else v
    if v not in options:
        f.add(path + (key,), f"expected one of {list(options)}, got {short(v)}")
        return default
    return v


def _flag(d: dict, key: str, path: tuple, f: _Findings, default: bool) -> bool:
    if key not in d or d[key] is None:
        return default
    if not isinstance(d[key], bool):
        f.add(path + (key,), f"expected true or false, got {short(d[key])}")
        return default
    return d[key]


def _file(base: Path, value: Any, path: tuple, f: _Findings, what: str) -> Optional[Path]:
    if not isinstance(value, str) or not value.strip():
        f.add(path, f"expected the path of the {what}, got {short(value)}")
        return None
    p = Path(value).expanduser()
    p = p if p.is_absolute() else base / p
    if not p.is_file():
        f.add(path, f"{what} {p} does not exist (paths are relative to the station file)")
    return p


def check_data(
    data: Any, path: Path, text: str = "", env: Optional[dict] = None
) -> tuple[Optional[StationConfig], list[str], set]:
    """Validates a loaded station document: ``(config or None, findings, secrets)``."""
    f = _Findings(str(path), _line_map(text) if text else {})
    secrets: set = set()
    if not isinstance(data, dict):
        f.add((), "expected a mapping with 'cameras:' (and 'http:', ...), got " + short(data))
        return None, f.items, secrets
    data = _substitute(data, (), f, dict(os.environ if env is None else env), secrets)
    _keys(data, TOP_KEYS, (), f)
    base = path.parent
    name = data.get("station", path.stem)
    if not isinstance(name, str) or not name:
        f.add(("station",), f"expected a name, got {short(name)}")
        name = path.stem

    h = _section(data, "http", HTTP_KEYS, f)
    http = HttpConfig()
    if "bind" in h:
        if not isinstance(h["bind"], str) or not h["bind"]:
            f.add(
                ("http", "bind"), f"expected an address such as 127.0.0.1, got {short(h['bind'])}"
            )
        else:
            http.bind = h["bind"].strip("[]")
    http.port = _number(h, "port", ("http",), f, 8080, integer=True)
    if http.port > 65535:
        f.add(("http", "port"), f"{http.port} is not in 0..65535")
    if "token" in h and h["token"] is not None:
        tok = h["token"]
        if not isinstance(tok, str) or not tok.strip():
            f.add(("http", "token"), "the token is empty; set it (token: ${EDGESEG_TOKEN})")
        else:
            http.token = tok
            secrets.add(tok)
    hosts = h.get("allowed_hosts") or []
    if not isinstance(hosts, list) or not all(isinstance(x, str) and x for x in hosts):
        f.add(("http", "allowed_hosts"), f"expected a list of host names, got {short(hosts)}")
    else:
        http.allowed_hosts = list(hosts)
    tls = h.get("tls")
    if tls is not None:
        if not isinstance(tls, dict):
            f.add(("http", "tls"), "expected {cert: FILE, key: FILE}")
        else:
            _keys(tls, TLS_KEYS, ("http", "tls"), f)
            if not tls.get("cert") or not tls.get("key"):
                f.add(("http", "tls"), "TLS needs both 'cert' and 'key' (PEM files)")
            else:
                c = _file(base, tls["cert"], ("http", "tls", "cert"), f, "certificate")
                k = _file(base, tls["key"], ("http", "tls", "key"), f, "key file")
                http.tls_cert, http.tls_key = str(c), str(k)
    http.request_timeout = _number(h, "request_timeout", ("http",), f, 10.0, lo=0.1)
    http.idle_timeout = _number(h, "idle_timeout", ("http",), f, 30.0, lo=0.1)
    http.max_connections = _number(h, "max_connections", ("http",), f, 256, integer=True, lo=1)
    http.max_image_bytes = _number(
        h, "max_image_bytes", ("http",), f, http.max_image_bytes, integer=True, lo=1
    )  # noqa: E501
    http.max_image_pixels = _number(
        h, "max_image_pixels", ("http",), f, http.max_image_pixels, integer=True, lo=1
    )  # noqa: E501
    from edgeseg.server.http import is_loopback

    if http.token is None and not is_loopback(http.bind):
        f.add(
            ("http", "bind"),
            f"{http.bind} is reachable from other machines: set http.token (token: "
            "${EDGESEG_TOKEN}) or bind 127.0.0.1",
        )

    lv = _section(data, "live_view", LIVE_KEYS, f)
    live = LiveConfig(
        enabled=_flag(lv, "enabled", ("live_view",), f, True),
        max_fps=_number(lv, "max_fps", ("live_view",), f, 15.0, lo=0.1),
        max_width=_number(lv, "max_width", ("live_view",), f, 1280, integer=True, lo=16),
        jpeg_quality=_number(lv, "jpeg_quality", ("live_view",), f, 80, integer=True, lo=1),
        confidence=_choice(lv, "confidence", ("live_view",), f, CONF_MODES, "off"),
        max_clients=_number(lv, "max_clients", ("live_view",), f, 32, integer=True, lo=1),
    )
    if live.jpeg_quality > 100:
        f.add(("live_view", "jpeg_quality"), f"{live.jpeg_quality} is not in 1..100")
    m = _section(data, "metrics", METRICS_KEYS, f)
    lg = _section(data, "logging", LOGGING_KEYS, f)
    rl = data.get("reload")
    if isinstance(rl, str):  # reload: watch
        rl = {"mode": rl}
    if rl is not None and not isinstance(rl, dict):
        f.add(("reload",), f"expected 'signal', 'watch' or {{mode:, interval:}}, got {short(rl)}")
        rl = {}
    rl = rl or {}
    _keys(rl, RELOAD_KEYS, ("reload",), f)
    rd = _section(data, "ready", READY_KEYS, f)
    outbox = data.get("outbox")
    if outbox is not None and (not isinstance(outbox, str) or not outbox):
        f.add(("outbox",), f"expected a folder for the sinks' outboxes, got {short(outbox)}")
        outbox = None
    backend = data.get("backend", "auto")
    from edgeseg.runtime.backends import BACKENDS

    if backend not in BACKENDS:
        f.add(("backend",), f"expected one of {list(BACKENDS)}, got {short(backend)}")
        backend = "auto"

    cams = data.get("cameras")
    cameras = []
    if not isinstance(cams, dict) or not cams:
        f.add(("cameras",), "expected a mapping of camera names to {source:, model:, ...}")
        cams = {}
    for cname, spec in cams.items():
        cam = _camera(cname, spec, base, f)
        if cam is not None:
            cameras.append(cam)
    config = StationConfig(
        path=path,
        name=name,
        cameras=cameras,
        http=http,
        live_view=live,
        metrics=_flag(m, "enabled", ("metrics",), f, True),
        log_level=_choice(lg, "level", ("logging",), f, LOG_LEVELS, "info"),
        log_format=_choice(lg, "format", ("logging",), f, LOG_FORMATS, "text"),
        outbox=None if outbox is None else (base / Path(outbox).expanduser()),
        drain_timeout=_number(data, "drain_timeout", (), f, 10.0),
        reload_mode=_choice(rl, "mode", ("reload",), f, RELOAD_MODES, "signal"),
        reload_interval=_number(rl, "interval", ("reload",), f, 2.0, lo=0.05),
        max_outbox=_number(rd, "max_outbox", ("ready",), f, 10_000, integer=True),
        max_frame_age=_number(rd, "max_frame_age", ("ready",), f, 10.0, lo=0.1),
        backend=backend,
        threads=_number(data, "threads", (), f, None, integer=True, lo=1),
    )
    items = [_hide(x, secrets) for x in f.items]
    return (None if items else config), items, secrets


def _camera(name: Any, spec: Any, base: Path, f: _Findings) -> Optional[CameraConfig]:
    path = ("cameras", name)
    if not isinstance(name, str) or not _NAME.match(name):
        f.add(path, "a camera name is 1-63 letters, digits, '.', '_' or '-' (it is a URL path)")
        return None
    if not isinstance(spec, dict):
        f.add(path, f"expected {{source:, model:, ...}}, got {short(spec)}")
        return None
    _keys(spec, CAMERA_KEYS, path, f)
    n = len(f.items)
    source = spec.get("source")
    if source is None:
        f.add(path, "missing 'source:' (a camera URI, stream, video file or folder)")
    elif not isinstance(source, (str, int)) or isinstance(source, bool):
        f.add(path + ("source",), f"expected a source URI, got {short(source)}")
    if spec.get("model") is None:
        f.add(path, "missing 'model:' (an .onnx or .engine file, or starter:NAME)")
        model = None
    elif isinstance(spec["model"], str) and spec["model"].startswith("starter:"):
        from edgeseg.starters import resolve_model_path

        try:
            model = resolve_model_path(spec["model"])
        except EdgesegError as e:
            f.add(path + ("model",), str(e))
            model = None
    else:
        model = _file(base, spec["model"], path + ("model",), f, "model")
    rules = None
    if spec.get("rules") is not None:
        rules = _file(base, spec["rules"], path + ("rules",), f, "rules file")
    sinks = spec.get("sinks") or []
    if isinstance(sinks, str):
        sinks = [sinks]
    if not isinstance(sinks, list) or not all(isinstance(s, str) and s for s in sinks):
        f.add(path + ("sinks",), f"expected a list of sink specs, got {short(sinks)}")
        sinks = []
    trigger = spec.get("trigger")
    if trigger is not None and (not isinstance(trigger, str) or not trigger):
        f.add(path + ("trigger",), f"expected 'http' or a trigger spec, got {short(trigger)}")
        trigger = None
    cam = CameraConfig(
        name=name,
        source=str(source),
        model=model,  # type: ignore[arg-type]
        rules=rules,
        sinks=[_sink_path(s, base) for s in sinks],
        trigger=trigger,
        live_view=_flag(spec, "live_view", path, f, True),
        drop=_choice(spec, "drop", path, f, DROP_MODES, "latest"),
        max_fps=_number(spec, "max_fps", path, f, None, lo=0.01),
        on_invalid=_choice(spec, "on_invalid", path, f, ON_INVALID, None),
        max_invalid=_number(spec, "max_invalid", path, f, 50, integer=True),
        loop=_flag(spec, "loop", path, f, False),
        enabled=_flag(spec, "enabled", path, f, True),
    )
    return cam if len(f.items) == n else None


def _sink_path(spec: str, base: Path) -> str:
    """File sinks with a relative path are relative to the station file, like every path."""
    kind, sep, arg = spec.partition(":")
    if sep and kind in ("jsonl", "video", "images") and arg and arg != "-":
        p = Path(arg.split("?", 1)[0]).expanduser()
        if not p.is_absolute():
            return f"{kind}:{base / arg}"
    return spec


def _hide(text: str, secrets: set) -> str:
    for s in sorted(secrets, key=len, reverse=True):
        if len(s) >= 3:
            text = text.replace(s, MASK)
    return redact(text)


def read_station(path: Any) -> tuple[Any, str]:
    """The document and text of a station file; StationError for an unreadable or invalid
    YAML file (with the line)."""
    p = Path(path)
    try:
        text = p.read_bytes()
    except OSError as e:
        raise StationError(f"{p}: cannot read the station file: {e.strerror or e}") from None
    data = load_yaml(text, str(p), StationError)
    return data, text.decode("utf-8", errors="replace")


def load_station(path: Any, env: Optional[dict] = None) -> StationConfig:
    """The validated :class:`StationConfig` of a file; StationError listing every finding."""
    p = Path(path)
    data, text = read_station(p)
    config, findings, _ = check_data(data, p, text, env)
    if findings:
        n = len(findings)
        raise StationError(f"{p}: {n} problem{'s' * (n > 1)}:\n  " + "\n  ".join(findings))
    assert config is not None
    return config
