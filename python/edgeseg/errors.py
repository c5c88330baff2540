"""The edgeseg exception tree.

Every error edgeseg raises derives from :class:`EdgesegError`. Argument errors are also
``ValueError`` (:class:`InvalidArgumentError`), CUDA and TensorRT failures also
``RuntimeError`` (:class:`CudaError`, :class:`TensorRTError`). These four classes are created
by the native core so that C++ errors map onto them directly.
"""

from __future__ import annotations

from edgeseg._core import CudaError, EdgesegError, InvalidArgumentError, TensorRTError

__all__ = [
    "CudaError",
    "DatasetError",
    "DeviceUnavailableError",
    "EdgesegError",
    "EngineMismatchError",
    "InvalidArgumentError",
    "InvalidResultError",
    "ModelError",
    "RulesError",
    "ServerError",
    "SinkError",
    "SourceError",
    "StationError",
    "TensorRTError",
    "TrainingError",
    "UnknownLabelError",
]


class DeviceUnavailableError(EdgesegError, RuntimeError):
    """A GPU path was requested on a machine or build that cannot run it."""


class DatasetError(EdgesegError):
    """A dataset, class map or label file cannot be used; the message names the file and the fix."""


class TrainingError(EdgesegError):
    """Training or evaluation cannot go on (bad data for training, NaN loss, no such device,
    out of memory); the message names the cause and the flag or file to change."""


class UnknownLabelError(DatasetError, TrainingError):
    """A label holds a value, colour or class name outside the class map. It is a dataset
    problem that also stops training and evaluation, so both ``except DatasetError`` and
    ``except TrainingError`` catch it; the message names the file, the values and the classes.
    Raised by :meth:`edgeseg.data.ClassMap.check_known` alone."""


class ModelError(EdgesegError):
    """A model file (ONNX, engine) cannot be read or lacks what edgeseg needs (e.g. its
    embedded metadata); the message names the file and how to get a usable one."""


class InvalidResultError(ModelError):
    """A model gave output that cannot be trusted (NaN/±Inf logits or input) where the policy
    is to stop (``on_invalid: error``, or too many invalid frames in a row); the message names
    the model, the reason and what to check."""


class EngineMismatchError(EdgesegError):
    """A TensorRT engine was built for another TensorRT version or GPU than the one it is about
    to run on; the message names the difference and the ``edgeseg build`` command that rebuilds
    it."""


class SourceError(EdgesegError):
    """A frame source (camera, stream, file, folder) cannot be opened or read; the message names
    the source and the likely fix."""


class SinkError(EdgesegError):
    """A sink (file, stream, broker, server) cannot take results; the message names the sink
    spec and the fix. At run time the loop counts and reports it and goes on."""


class RulesError(EdgesegError):
    """An inspection rules file or object is invalid (unknown class, bad zone, negative area);
    the message names the file, the rule and the fix."""


class ServerError(EdgesegError):
    """The HTTP server (live view, triggers, health, REST) cannot start as configured: a port
    in use, an address not of this machine, a non-loopback bind without a token, unreadable
    TLS files; the message names the setting and the fix."""


class StationError(EdgesegError):
    """A station file is invalid (unknown key, bad value, missing file, unset ``${VAR}``); the
    message names the file, the line and the fix."""
