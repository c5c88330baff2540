"""``edgeseg station FILE``: run a station file; ``--check FILE``: its findings."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, Optional

from edgeseg._cli import (
    EXIT_ERROR,
    EXIT_FINDINGS,
    EXIT_OK,
    HELP_FORMATTER,
    add_json,
    epilog,
    error,
    write_json,
)
from edgeseg.errors import EdgesegError

PROG = "edgeseg station"
_WATCHDOG = 5.0  # s between two watchdog notifications (systemd WatchdogSec must be larger)

EPILOG = epilog(
    "edgeseg station --check station.yaml",
    "EDGESEG_TOKEN=s3cret edgeseg station station.yaml",
    "kill -HUP $(pidof edgeseg)   # reload the models and rules files that changed",
    extra="""\
signals: SIGHUP reloads the model and rules files that changed (a file that fails keeps the old
  one running; the reason is logged, shown on the live views and counted); SIGINT or SIGTERM
  stop: the frames in flight finish and every sink drains (drain_timeout).
exit status: 0 stopped by a signal or every source ended (--check: no findings); 1 findings of
  --check; 2 a station file that is invalid or a server that cannot start.""",
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Run the cameras of a station file in one process, with one HTTP server "
        "for live views, triggers, health, metrics and REST; reload on SIGHUP.",
        epilog=EPILOG,
        formatter_class=HELP_FORMATTER,
    )
    p.add_argument("file", help="the station file (YAML; docs/reference/station.md)")
    p.add_argument(
        "--check",
        action="store_true",
        help="validate the file (keys, values, models, rules, sources, sinks) and exit: 0 when "
        "it can run, 1 with the findings",
    )
    add_json(p, "the findings (--check) or the final status")
    return p


def _setup_logging(level: str, fmt: str) -> None:
    try:
        from edgeseg.service import setup_logging  # type: ignore[import-not-found]
    except ImportError:
        logging.basicConfig(
            level=getattr(logging, level.upper()),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        return
    setup_logging(level, fmt)


def _service() -> Any:
    """edgeseg.service (sd_notify) where installed, else None."""
    try:
        import edgeseg.service as service  # type: ignore[import-not-found]
    except ImportError:
        return None
    return service


def _check(args: argparse.Namespace) -> int:
    from edgeseg.station.check import check_station

    config, findings = check_station(args.file)
    if args.json:
        write_json(args.json, {"ok": not findings, "findings": findings})
    for f in findings:
        print(f, file=sys.stderr)
    if findings:
        n = len(findings)
        print(f"{PROG}: {n} finding{'s' * (n > 1)} in {args.file}", file=sys.stderr)
        return EXIT_FINDINGS
    assert config is not None
    names = ", ".join(c.name for c in config.cameras)
    print(f"{PROG}: {args.file}: ok ({len(config.cameras)} camera(s): {names})", file=sys.stderr)
    return EXIT_OK


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.check:
        return _check(args)
    from edgeseg.station import Station, load_station

    try:
        config = load_station(args.file)
    except EdgesegError as e:
        error(PROG, e)
        return EXIT_ERROR
    _setup_logging(config.log_level, config.log_format)
    service = _service()
    try:
        station = Station(config)
        station.start()
    except EdgesegError as e:
        error(PROG, e)
        return EXIT_ERROR
    stop, reload = threading.Event(), threading.Event()
    handlers = {
        signal.SIGINT: lambda *_: stop.set(),
        signal.SIGTERM: lambda *_: stop.set(),
        signal.SIGHUP: lambda *_: reload.set(),
    }
    previous = {s: signal.signal(s, h) for s, h in handlers.items()}
    print(
        f"{PROG}: {config.name}: {len(station.cameras)} camera(s) at {station.server.url}",
        file=sys.stderr,
    )
    if service is not None:
        service.notify_ready()
    try:
        t_watch = t_dog = time.monotonic()
        while not stop.wait(0.2):
            now = time.monotonic()
            if reload.is_set():
                reload.clear()
                station.reload()
            elif config.reload_mode == "watch" and now - t_watch >= config.reload_interval:
                t_watch = now
                if station.changed_files():
                    station.reload()
            if service is not None and now - t_dog >= _WATCHDOG:
                t_dog = now
                service.notify_watchdog()
                problems = station.problems()
                service.notify_status("ready" if not problems else "; ".join(problems)[:200])
            if all(c.state == "ended" for c in station.cameras.values()):
                break
    finally:
        if service is not None:
            service.notify_stopping()
        station.stop()
        for s, h in previous.items():
            signal.signal(s, h)
    final = station.status()
    write_json(args.json, final)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
