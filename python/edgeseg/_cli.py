"""What every ``edgeseg`` subcommand does with an expected failure: one line on stderr naming
the command, exit status 2, no traceback (tracebacks are for bugs)."""

from __future__ import annotations

import sys
from typing import Callable, Optional, TypeVar

from edgeseg.errors import EdgesegError

T = TypeVar("T")

#: The exit status of a command that failed on its input (argparse's own usage errors use 2).
EXIT_ERROR = 2


def guarded(prog: str, fn: Callable[[], T], extra: Optional[str] = None) -> tuple[bool, T]:
    """``(True, fn())``, or ``(False, None)`` after printing ``prog: error: ...`` when ``fn``
    raises an :class:`~edgeseg.EdgesegError` — or an ``ImportError`` when ``extra`` names the
    package extra that brings the missing module (``"train,export"`` →
    ``pip install 'edgeseg[train,export]'``)."""
    try:
        return True, fn()
    except EdgesegError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
    except ImportError as e:
        if extra is None:
            raise
        plural = "s" if "," in extra else ""
        print(
            f"{prog}: error: {e}; install the extra{plural}: pip install 'edgeseg[{extra}]'",
            file=sys.stderr,
        )
    return False, None  # type: ignore[return-value]
