"""``edgeseg cameras``: the GenICam cameras (GigE Vision, USB3 Vision) Aravis finds, and their
main features with ``--features ID``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Optional

from edgeseg import _cli
from edgeseg.errors import SourceError

_COLUMNS = (
    ("id", "ID"),
    ("vendor", "VENDOR"),
    ("model", "MODEL"),
    ("serial", "SERIAL"),
    ("protocol", "INTERFACE"),
    ("address", "ADDRESS"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeseg cameras",
        description=(
            "List the GenICam cameras (GigE Vision, USB3 Vision) found through Aravis 0.8; "
            "open one in a loop with --source genicam://ID (genicam:// = the first one). "
            "GigE Vision discovery waits about a second for replies."
        ),
        epilog=_cli.epilog("edgeseg cameras", "edgeseg cameras --features --json"),
        formatter_class=_cli.HELP_FORMATTER,
    )
    parser.add_argument(
        "--features",
        metavar="ID",
        nargs="?",
        const="",
        default=None,
        help="print the main features of camera ID (the first camera when ID is left out): "
        "pixel formats, region, exposure/gain/frame-rate ranges, trigger sources, packet size",
    )
    _cli.add_json(parser, "the cameras (or features)")
    return parser


def _table(rows: list[dict]) -> str:
    cells = [[title for _, title in _COLUMNS]]
    cells += [[str(r.get(key) or "-") for key, _ in _COLUMNS] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(_COLUMNS))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


def _features_text(device: str, feats: dict) -> str:
    lines = [f"camera {device}"]
    width = max(len(k) for k in feats)
    for key, value in feats.items():
        shown = ", ".join(str(v) for v in value) if isinstance(value, list) else value
        lines.append(f"  {key.ljust(width)}  {'-' if value is None else shown}")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``edgeseg cameras``; 0 on success, 1 when the camera asked for cannot be
    opened, 2 when Aravis is not usable here."""
    from edgeseg.camera.aravis import device_features, list_devices, load_aravis

    args = build_parser().parse_args(argv)
    try:
        load_aravis("edgeseg cameras")
    except SourceError as exc:
        _cli.error("edgeseg cameras", exc)
        return _cli.EXIT_ERROR
    if args.features is not None:
        device = args.features or None
        try:
            feats = device_features(device, context="edgeseg cameras --features")
        except SourceError as exc:
            _cli.error("edgeseg cameras", exc)
            return _cli.EXIT_FINDINGS
        _cli.write_json(args.json, feats)
        if args.json != "-":
            print(_features_text(device or "(first found)", feats))
        return 0
    devices = list_devices()
    _cli.write_json(args.json, devices)
    if args.json == "-":
        pass
    elif devices:
        print(_table(devices))
    else:
        print(
            "no GenICam camera found (GigE Vision: camera and host need addresses on the same "
            "subnet; USB3 Vision: this user needs access to the USB device, e.g. udev rules)",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
