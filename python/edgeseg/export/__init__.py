"""edgeseg.export: a trained run to a deployable ONNX file (torch: ``[train]``; onnx and
onnxruntime: ``[export]``).

::

    from edgeseg.export import export_onnx, read_onnx_metadata
    report = export_onnx("runs/a", "model.onnx")   # = edgeseg export runs/a -o model.onnx
    meta = read_onnx_metadata("model.onnx")        # classes, mean/std, input size, ...

The file carries everything the runtime needs (classes and colours, mean/std, input size,
resize mode, channel order) in its ``metadata_props``; :func:`read_onnx_metadata` reads it
back without torch. See :mod:`edgeseg.export.onnx_export` for the graph's contract and the
opset choice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgeseg.onnx_metadata import METADATA_FORMAT, read_onnx_metadata

if TYPE_CHECKING:  # pragma: no cover
    from edgeseg.export.onnx_export import export_onnx

__all__ = ["METADATA_FORMAT", "export_onnx", "read_onnx_metadata"]


def __getattr__(name: str):
    # export_onnx needs torch; reading metadata must not (the runtime on a Jetson has no torch).
    if name == "export_onnx":
        from edgeseg.export.onnx_export import export_onnx

        return export_onnx
    raise AttributeError(f"module 'edgeseg.export' has no attribute {name!r}")
