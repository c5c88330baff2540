"""``edgeseg run``: a model on a camera, stream, video or folder, results to sinks."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Optional

from edgeseg._cli import (
    EXIT_ERROR,
    EXIT_FINDINGS,
    HELP_FORMATTER,
    add_json,
    add_no_progress,
    deprecated,
    epilog,
    error,
    install_hint,
    write_json,
)
from edgeseg._redact import redact
from edgeseg.camera.loop import DRAIN_TIMEOUT, MAX_INVALID
from edgeseg.errors import EdgesegError
from edgeseg.rules.invalid import ON_INVALID
from edgeseg.runtime.backends import BACKENDS
from edgeseg.runtime.openvino_backend import OPENVINO_HINTS
from edgeseg.service import (
    LOG_FORMATS,
    LOG_LEVELS,
    Heartbeat,
    notify_status,
    notify_stopping,
    setup_logging,
)

PROG = "edgeseg run"

log = logging.getLogger("edgeseg.run")

_PICTURE_SINKS = {"video", "images", "window", "serve", "archive"}
_SINK_ALPHA = 0.5  # the picture sinks' default overlay opacity (the cached overlay must match)

EPILOG = """\
sources: 0 or /dev/video0 (V4L2), csi://0 (Jetson CSI), rtsp://..., http(s)://..., tcp://...,
  gst:<pipeline ! appsink>, a video file, an image folder or glob ('shots/*.png'),
  synthetic://?fps=30 (moving test scene)
sinks: jsonl:FILE or jsonl:- (one JSON record per frame), video:out.mp4,
  images:DIR[?what=overlay,mask,confidence&every=N&only=ng], window,
  sample:DIR[?below=0.6&max=500] (the least confident frames, for labelling),
  and those of the line integration (mqtt://, webhook:, opcua:, archive:) when installed

Ctrl-C (SIGINT) or SIGTERM stops cleanly: every sink is flushed, outboxes (mqtt://, webhook:)
  get --drain-timeout s to deliver what they hold (what is left stays queued on disk for the
  next start), and the final stats say per sink: delivered, queued, failed.
under systemd (Type=notify): READY after the first frame, WATCHDOG at half WatchdogSec while
  every stage turns, STATUS with the frame rate; logs go to the journal with their levels.

fail closed: a frame whose model output is NaN/Inf is never OK (--on-invalid: ng = verdict NG
  with the reason, error = stop, skip = no verdict); --max-invalid such frames in a row stop
  the run.
exit status: 0 the source ended or a signal stopped the run; 1 an error stopped a running loop
  (or no frame was processed); 2 bad arguments, model, rules, or a source, sink or trigger
  that cannot be opened at start.
"""
EPILOG = epilog(
    "edgeseg run model.onnx --source rtsp://cam/stream --sink jsonl:- --serve 127.0.0.1:8080",
    "edgeseg run model.onnx --source line.mp4 --sink video:out.mp4 --max-frames 500 --json",
    extra=EPILOG.rstrip(),
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Run a segmentation model on a live source and send every result to sinks.",
        epilog=EPILOG,
        formatter_class=HELP_FORMATTER,
    )
    p.add_argument("model", nargs="?", help="model file (.onnx, or a TensorRT .engine)")
    p.add_argument(
        "--model",
        dest="model_option",
        metavar="MODEL",
        action=deprecated(PROG, "--model", "the model as the first argument"),
        help=argparse.SUPPRESS,
    )
    p.add_argument("--source", required=True, help="camera/stream URI, video file or folder")
    p.add_argument(
        "--sink", action="append", default=[], metavar="SPEC", help="a sink spec (repeatable)"
    )
    p.add_argument("--serve", metavar="ADDR", help="browser live view at ADDR (127.0.0.1:8080)")
    p.add_argument(
        "--token",
        help="access token the live view and the HTTP trigger require (needed to bind an "
        "address other than 127.0.0.1)",
    )
    p.add_argument("--rules", metavar="FILE", help="inspection rules (YAML) for OK/NG verdicts")
    p.add_argument("--max-frames", type=int, help="stop after N processed frames")
    p.add_argument("--max-fps", type=float, help="process at most this many frames per second")
    p.add_argument(
        "--drop",
        choices=("latest", "none"),
        default="latest",
        help="live sources: skip to the newest frame when busy (latest) or queue (none)",
    )
    p.add_argument("--loop", action="store_true", help="restart a video file or folder at its end")
    p.add_argument(
        "--backend",
        default="auto",
        choices=BACKENDS,
        help="inference backend (default: TensorRT for .engine; for .onnx OpenVINO on an x86 "
        "CPU where installed, else ONNX Runtime)",
    )
    p.add_argument(
        "--hint",
        choices=OPENVINO_HINTS,
        default="latency",
        help="OpenVINO: latency (one frame fastest, default) or throughput (more streams)",
    )
    p.add_argument(
        "--trigger",
        metavar="SPEC",
        help="trigger mode: one frame per external trigger — mqtt://HOST:PORT/TOPIC, "
        "http://127.0.0.1:PORT/trigger or opcua:opc.tcp://127.0.0.1:4840",
    )
    p.add_argument(
        "--on-invalid",
        choices=ON_INVALID,
        help="a frame whose model output is NaN/Inf: verdict NG with the reason (ng, the "
        "default), stop the run (error), or no verdict (skip); overrides the rules file's "
        "on_invalid",
    )
    p.add_argument(
        "--max-invalid",
        type=_count,
        default=MAX_INVALID,
        metavar="N",
        help=f"stop with an error after N invalid frames in a row (default {MAX_INVALID}, "
        "0 = never)",
    )
    p.add_argument("--threads", type=int, help="CPU inference threads")
    p.add_argument("--stats-every", type=float, default=5.0, help="live stats period (s), 0=off")
    p.add_argument(
        "--drain-timeout",
        type=_seconds,
        default=DRAIN_TIMEOUT,
        metavar="S",
        help=f"at the end, how long the sinks may take to deliver what their outboxes hold "
        f"(default {DRAIN_TIMEOUT:g} s; the rest stays queued on disk)",
    )
    p.add_argument("--log-level", choices=LOG_LEVELS, default="info", help="log level")
    p.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="text",
        help="text, or json (one object per line, for log collectors)",
    )
    add_no_progress(p)
    add_json(p, "the final stats")
    return p


def _count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return n


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not 0 <= v < float("inf"):
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text!r}")
    return v


def _sinks(args: argparse.Namespace) -> list:
    from edgeseg.sinks import open_sink

    sinks = [open_sink(s) for s in args.sink]
    if args.serve:
        if importlib.util.find_spec("edgeseg.sinks.serve") is None:
            raise EdgesegError(
                "--serve: the browser live view (edgeseg.sinks.serve) is not part of this "
                "installation; use --sink images:DIR or --sink video:FILE meanwhile"
            )
        sinks.append(open_sink(f"serve:{args.serve}", token=args.token))
    elif args.token and not str(args.trigger or "").startswith("http:"):
        raise EdgesegError(
            "--token protects the live view and the HTTP trigger: give --serve ADDR or "
            "--trigger http://HOST:PORT/PATH with it"
        )
    return sinks


def _rules(path: Optional[str], segmenter):
    if not path:
        return None
    try:
        from edgeseg.rules import Rules  # type: ignore[attr-defined]
    except ImportError:
        raise EdgesegError(
            f"--rules {path}: inspection rules (edgeseg.rules.Rules) are not part of this "
            "installation"
        ) from None
    return Rules.from_file(path, segmenter.classes)


def _source(args: argparse.Namespace):
    from edgeseg.camera import open_source

    return open_source(args.source, loop=True) if args.loop else open_source(args.source)


def _trigger(spec: Optional[str], token: Optional[str] = None):
    if not spec:
        return None
    from edgeseg.camera.triggers import open_trigger

    if spec.startswith("http:"):  # on the HTTP server: the same token as the live view
        return open_trigger(spec, token=token)
    return open_trigger(spec)


def _quiet_opencv() -> None:
    """OpenCV's and FFmpeg's own log lines (``[ WARN:0@4.3] global cap.cpp ...``, ``[tcp @ 0x..]
    Connection ... refused``) would bury our one-line error: errors only, unless the user chose
    a level. Set before OpenCV loads (it reads them once)."""
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET


def _backend_line(d: dict) -> str:
    """``backend openvino (auto: x86 CPU and ...)`` for the run header."""
    extra = [f"{k} {d[k]}" for k in ("hint", "threads", "streams") if d.get(k) is not None]
    text = f"backend {d.get('backend')}" + (f" [{', '.join(extra)}]" if extra else "")
    choice = d.get("choice")
    return text + (f" (auto: {choice['reason']})" if choice else "")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.model and args.model_option:
        parser.error("give the model once: as the first argument (--model is the older spelling)")
    args.model = args.model or args.model_option
    if not args.model:
        parser.error("the model is required: edgeseg run MODEL --source SOURCE")
    if args.no_progress:  # the periodic stats lines are this command's progress display
        args.stats_every = 0.0
    setup_logging(args.log_level, args.log_format)
    _quiet_opencv()
    from edgeseg.camera import CameraLoop
    from edgeseg.camera.stats import format_stats

    try:
        from edgeseg.runtime import Segmenter

        source = _source(args)
        # sinks that show pictures get the overlay from the fused postprocess (C++, no GIL)
        # instead of drawing it in numpy on the sink thread
        pictures = bool(args.serve) or any(
            s.split(":", 1)[0].lower() in _PICTURE_SINKS for s in args.sink
        )
        segmenter = Segmenter(
            args.model,
            backend=args.backend,
            threads=args.threads,
            overlay_alpha=_SINK_ALPHA if pictures else None,
            hint=args.hint,
        )
        loop = CameraLoop(
            source,
            segmenter,
            sinks=_sinks(args),
            rules=_rules(args.rules, segmenter),
            drop=args.drop,
            max_fps=args.max_fps,
            max_frames=args.max_frames,
            trigger=_trigger(args.trigger, args.token),
            on_invalid=args.on_invalid,
            max_invalid=args.max_invalid,
            drain_timeout=args.drain_timeout,
        )
    except EdgesegError as e:
        error(PROG, e)
        return EXIT_ERROR
    except ImportError as e:  # OpenCV or ONNX Runtime missing
        error(PROG, f"{e}; {install_hint('camera')}")
        return EXIT_ERROR

    stop = threading.Event()

    def on_signal(signum, _frame) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    status = 0
    try:
        loop.start()
    except EdgesegError as e:  # the source, a sink or the trigger cannot be opened
        error(PROG, e)
        for s, h in previous.items():
            signal.signal(s, h)
        return EXIT_ERROR
    heartbeat = Heartbeat()
    # a stage that has not turned for the whole watchdog period is stuck
    stuck_after = heartbeat.interval or 60.0
    try:
        log.info(
            "%s -> %d sink(s); %s",
            redact(args.source),
            len(loop.sinks),
            _backend_line(segmenter.describe()),
        )
        waited = 0.0
        while not loop.join(0.2) and not stop.is_set():
            waited += 0.2
            heartbeat.beat(loop.stats.frames, loop.alive(stuck_after))
            if args.stats_every and waited >= args.stats_every:
                waited = 0.0
                snap = loop.stats.snapshot()
                log.info("%s", format_stats(snap))
                notify_status(f"{snap['frames']} frames, {snap['fps']:.1f} fps")
        notify_stopping()
        final = loop.stop()
        if loop.error is not None:
            error(PROG, f"stopped by an error: {loop.error}")
            status = EXIT_FINDINGS
    except EdgesegError as e:
        error(PROG, e)
        loop.stop()
        return EXIT_FINDINGS
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    final["stopped_by"] = "signal" if stop.is_set() else ("error" if status else "end")
    if args.log_format == "json":
        log.info("%s", format_stats(final))
    else:
        print(format_stats(final), file=sys.stderr)
    if not final.get("frames") and not stop.is_set() and status == 0:
        why = final.get("last_error") or "the source delivered no usable frame"
        error(PROG, f"no frame was processed ({why})")
        status = EXIT_FINDINGS
    write_json(args.json, final)
    return status


if __name__ == "__main__":
    sys.exit(main())
