"""The grammar every ``edgeseg`` subcommand shares.

* Errors: one line on stderr, ``edgeseg CMD: error: ...``, no traceback (tracebacks are for
  bugs); a missing optional dependency names the extra that brings it.
* Exit codes: 0 ok, 1 findings, 2 bad input, 130 interrupted.
* ``--json [FILE]``: the result as JSON on stdout (no FILE, or ``-``) or into FILE.
* ``--no-progress``: no progress bars; they are off anyway when stderr is not a terminal.
* Older spellings of a flag keep working and print a deprecation warning.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable, Optional, TypeVar

from edgeseg._redact import redact
from edgeseg._text import json_safe
from edgeseg.errors import EdgesegError

T = TypeVar("T")

#: Exit status of a command that succeeded.
EXIT_OK = 0
#: Exit status of a command that ran and found problems (label errors, a refused model, ...).
EXIT_FINDINGS = 1
#: Exit status of a command that failed on its input (argparse's own usage errors use 2 too).
EXIT_ERROR = 2
#: Exit status after Ctrl-C.
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = "exit codes: 0 ok, 1 findings, 2 bad input, 130 interrupted"


def guarded(prog: str, fn: Callable[[], T], extra: Optional[str] = None) -> tuple[bool, T]:
    """``(True, fn())``, or ``(False, None)`` after printing ``prog: error: ...`` when ``fn``
    raises an :class:`~edgeseg.EdgesegError` — or an ``ImportError`` when ``extra`` names the
    package extra that brings the missing module (``"train,export"`` →
    ``pip install 'edgeseg[train,export]'``)."""
    try:
        return True, fn()
    except EdgesegError as e:
        error(prog, e)
    except ImportError as e:
        if extra is None:
            raise
        error(prog, f"{e}; {install_hint(extra)}")
    return False, None  # type: ignore[return-value]


def install_hint(extra: str) -> str:
    """``install the extra: pip install 'edgeseg[quant]'`` (plural for several extras)."""
    plural = "s" if "," in extra else ""
    return f"install the extra{plural}: pip install 'edgeseg[{extra}]'"


def error_line(prog: str, message: object) -> str:
    """The one-line error every command uses: ``prog: error: message`` (secrets in the
    message redacted)."""
    return f"{prog}: error: {redact(message)}"


def error(prog: str, message: object) -> None:
    """Prints :func:`error_line` on stderr."""
    print(error_line(prog, message), file=sys.stderr)


def warn(prog: str, message: object) -> None:
    print(f"{prog}: warning: {redact(message)}", file=sys.stderr)


def add_json(parser: argparse.ArgumentParser, what: str = "the result") -> None:
    """``--json [FILE]``: ``what`` as JSON on stdout, or into FILE (``-`` is stdout)."""
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        default=None,
        metavar="FILE",
        help=f"{what} as JSON on stdout, or into FILE ('-': stdout)",
    )


def write_json(dest: Optional[str], obj: Any) -> None:
    """Writes ``obj`` as indented JSON to ``dest`` (``-``: stdout); nothing when ``dest`` is
    None."""
    if dest is None:
        return
    # Non-UTF-8 file names arrive as lone surrogates: shown as \xNN, never written raw.
    text = json.dumps(json_safe(obj), indent=2, default=str) + "\n"
    if dest == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        with open(dest, "w", encoding="utf-8") as f:
            f.write(text)


def add_no_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars (automatic when stderr is not a terminal)",
    )


def show_progress(args: argparse.Namespace) -> bool:
    """Progress bars only for a person watching: not with --no-progress, not into a pipe/log."""
    if getattr(args, "no_progress", False):
        return False
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


def deprecated(prog: str, old: str, new: str) -> type[argparse.Action]:
    """An argparse action for an older spelling: stores like ``new`` and warns once on stderr
    (``prog: warning: OLD is deprecated; use NEW``)."""

    class _Deprecated(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            warn(prog, f"{option_string or old} is deprecated; use {new}")
            setattr(namespace, self.dest, values)

    return _Deprecated


def epilog(*examples: str, extra: str = "") -> str:
    """The end of every ``--help``: examples, then the exit codes."""
    lines = ["examples:", *(f"  {e}" for e in examples)]
    if extra:
        lines += ["", extra]
    return "\n".join([*lines, "", EXIT_CODES_HELP])


HELP_FORMATTER = argparse.RawDescriptionHelpFormatter
