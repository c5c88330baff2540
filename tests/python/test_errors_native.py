"""The exception classes the native core registers: one per C++ error type, each a subclass of
edgeseg.EdgesegError and of the matching built-in, re-exported unchanged by edgeseg.errors."""

from __future__ import annotations

import pytest

import edgeseg.errors as errors
from edgeseg import _core


@pytest.mark.parametrize(
    ("name", "builtin"),
    [
        ("InvalidArgumentError", ValueError),
        ("CudaError", RuntimeError),
        ("TensorRTError", RuntimeError),
    ],
)
def test_native_error_classes_are_the_package_classes(name, builtin):
    cls = getattr(_core, name)
    assert getattr(errors, name) is cls
    assert name in errors.__all__
    assert issubclass(cls, errors.EdgesegError) and issubclass(cls, builtin)
    assert cls.__module__ == "edgeseg" and cls.__qualname__ == name
    assert cls.__doc__


def test_tensorrt_error_is_registered_in_every_build():
    """TensorRT failures have their own class even in cores built without TensorRT, so that
    `except edgeseg.errors.TensorRTError` is valid wherever edgeseg is installed; it is neither
    an argument error nor a CUDA error."""
    cls = _core.TensorRTError
    assert not issubclass(cls, (ValueError, _core.CudaError, _core.InvalidArgumentError))
    with pytest.raises(errors.EdgesegError, match="deserialize"):
        raise cls("TensorRT: x.engine: cannot deserialize the engine")


def test_argument_errors_are_translated_from_cpp():
    """The translator the TensorRT error shares: std::invalid_argument becomes
    InvalidArgumentError with the C++ message."""
    with pytest.raises(_core.InvalidArgumentError, match="set_num_threads: n must be >= 1"):
        _core.set_num_threads(0)
