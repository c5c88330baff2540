"""The one place an ONNX Runtime session is made: the runtime's backend, export's parity
check, quantization's accuracy check and the metadata reader's fallback all call
:func:`ort_session`, so options and errors read the same everywhere."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Optional, Union

from edgeseg.errors import InvalidArgumentError, ModelError

__all__ = ["import_ort", "ort_session"]

#: what to install when onnxruntime is missing, unless the caller says otherwise
INSTALL = "pip install 'edgeseg[export]'"


def import_ort(path: Union[str, Path], needs: str, install: str = INSTALL) -> ModuleType:
    """The ``onnxruntime`` module; when it is missing, a :class:`~edgeseg.ModelError` naming
    ``path``, what ``needs`` it and what to ``install``."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ModelError(f"{path}: {needs} needs onnxruntime ({install})") from None
    return ort


def ort_session(
    path: Union[str, Path],
    threads: Optional[int] = 2,
    providers: Optional[list] = None,
    options=None,
    spin_stop: bool = False,
    needs: str = "running ONNX models",
    install: str = INSTALL,
    unreadable: str = "onnxruntime cannot load the model",
):
    """An ``onnxruntime.InferenceSession`` of the model ``path``.

    Args:
        path: The ``.onnx`` file.
        threads: Intra-op threads (None: ONNX Runtime's choice); one inter-op thread.
        providers: Execution providers, best first (default: the CPU alone).
        options: An ``onnxruntime.SessionOptions`` used as given (``threads`` and
            ``spin_stop`` are then ignored).
        spin_stop: Stop the intra-op threads spinning when ``run()`` returns (they would
            otherwise keep the cores that the pre- and postprocessing are about to use).
        needs: What needs onnxruntime, for the message when it is missing.
        install: What to install then.
        unreadable: How the message starts when the file does not load.

    Raises:
        ModelError: onnxruntime is missing, or the file is not a model it can load.
        InvalidArgumentError: ``threads`` or ``options`` of the wrong type.
    """
    ort = import_ort(path, needs, install)
    if options is not None:
        if not isinstance(options, ort.SessionOptions):
            raise InvalidArgumentError(
                "session_options: expected an onnxruntime.SessionOptions, got "
                f"{type(options).__name__}"
            )
        opts = options
    else:
        opts = ort.SessionOptions()
        if threads is not None:
            if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
                raise InvalidArgumentError(f"threads: expected an int >= 1, got {threads!r}")
            opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        if spin_stop:
            opts.add_session_config_entry("session.force_spinning_stop", "1")
    try:
        return ort.InferenceSession(
            str(path), opts, providers=providers or ["CPUExecutionProvider"]
        )
    except Exception as e:
        raise ModelError(
            f"{path}: {unreadable} ({type(e).__name__}: {str(e).strip()[:300]}); is the file "
            "truncated or of another format? Re-export it with `edgeseg export`"
        ) from None
