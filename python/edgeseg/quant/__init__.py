"""edgeseg.quant: FP16 / INT8 (QDQ) quantization of an exported ONNX model behind an mIoU gate
(onnx, onnxruntime and onnxconverter-common: ``pip install 'edgeseg[quant]'``).

::

    from edgeseg.quant import quantize
    report = quantize("model.onnx", "dataset/", "model.int8.onnx", precision="int8",
                      target="cpu", max_drop=1.0)   # = edgeseg quantize model.onnx ...
    report["passed"], report["miou_drop_points"], report["nodes_kept_float"]

See :mod:`edgeseg.quant.quantize` for what each precision and target produces and how the
gate keeps the most sensitive nodes in float.
"""

from __future__ import annotations

from edgeseg.quant.quantize import (
    CALIB_METHODS,
    MIN_CALIB_IMAGES,
    PRECISIONS,
    REPORT_NAME,
    TARGETS,
    quantize,
)

__all__ = ["CALIB_METHODS", "MIN_CALIB_IMAGES", "PRECISIONS", "REPORT_NAME", "TARGETS", "quantize"]
