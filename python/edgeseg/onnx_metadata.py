"""The edgeseg metadata embedded in an exported ONNX file (``metadata_props``), torch-free:
export writes it, the runtime, quantization and the engine builder read it.

Every value is a string (ONNX's rule); structured values are JSON. Keys:

==================  ==========================================================================
``edgeseg_format``  ``edgeseg-onnx/1`` (this layout)
``edgeseg_version`` the edgeseg that exported the file
``model``           architecture name; ``model_kwargs`` (JSON) its constructor arguments
``num_classes``     C, the logits' channel count
``classes``         JSON list of ``{"id", "name", "color"}`` (dataset id, name, RGB colour)
``input_size``      JSON ``[H, W]`` the graph was exported for
``mean`` ``std``    JSON, three floats each, in the input's channel order, on 0..1 pixels
``channel_order``   ``RGB``; ``layout`` ``NCHW``; ``scale`` pixel scale before mean/std (1/255)
``resize``          ``stretch`` (the frame is resized to ``input_size`` ignoring aspect);
                    ``interpolation`` ``bilinear``
``input_name``      ``images``; ``output_name`` ``logits`` (raw logits, no argmax)
``dynamic_batch``   ``true``/``false``
``data_hash``       hash of the training data (``blake2b:`` of the train split's decoded
                    pixels, labels and class map), when the checkpoint recorded one
``logit_offsets``   JSON ``{class name: offset}`` of the training's class-prior calibration,
                    already folded into the last convolution's bias (for the record)
==================  ==========================================================================
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Union

from edgeseg._ort import ort_session
from edgeseg.errors import ModelError

__all__ = ["JSON_KEYS", "METADATA_FORMAT", "read_onnx_metadata", "to_props"]

METADATA_FORMAT = "edgeseg-onnx/1"
JSON_KEYS = (
    "model_kwargs",
    "classes",
    "input_size",
    "mean",
    "std",
    "num_classes",
    "scale",
    "logit_offsets",
)
_REQUIRED = ("classes", "input_size", "mean", "std", "channel_order", "num_classes")


def to_props(meta: dict) -> dict[str, str]:
    """``meta`` (python values) -> ``metadata_props`` strings."""
    out = {}
    for k, v in meta.items():
        if v is None:
            continue
        if isinstance(v, bool):
            out[k] = "true" if v else "false"
        elif k in JSON_KEYS:
            out[k] = json.dumps(v)
        else:
            out[k] = str(v)
    return out


def _from_props(props: dict[str, str], path: Path) -> dict:
    if props.get("edgeseg_format") != METADATA_FORMAT:
        found = props.get("edgeseg_format")
        raise ModelError(
            f"{path}: an ONNX model without edgeseg metadata "
            f"({'no edgeseg_format key' if found is None else f'edgeseg_format {found!r}'}; "
            f"expected {METADATA_FORMAT!r}); export it with `edgeseg export RUN_DIR -o "
            f"{path.name}` so classes, mean/std and input size travel with it"
        )
    missing = [k for k in _REQUIRED if k not in props]
    if missing:
        raise ModelError(
            f"{path}: edgeseg metadata lacks {', '.join(missing)}; re-export the model with "
            "`edgeseg export`"
        )
    meta: dict = {}
    for k, v in props.items():
        if k in JSON_KEYS:
            try:
                meta[k] = json.loads(v)
            except (ValueError, RecursionError) as e:
                why = "nested too deeply" if isinstance(e, RecursionError) else "not valid JSON"
                raise ModelError(
                    f"{path}: metadata {k!r} is {why} ({v[:80]!r}); re-export the "
                    "model with `edgeseg export`"
                ) from None
        elif v in ("true", "false"):
            meta[k] = v == "true"
        else:
            meta[k] = v
    return meta


def _read_props(path: Path) -> dict[str, str]:
    try:
        import onnx
    except ImportError:
        onnx = None
    if onnx is not None:
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as e:
            raise ModelError(
                f"{path}: not a readable ONNX model ({type(e).__name__}: {e}); is the file "
                "truncated or of another format? Re-export it with `edgeseg export`"
            ) from None
        if not model.graph.node:
            raise ModelError(
                f"{path}: not an ONNX model (no graph nodes; truncated or another format?); "
                "re-export it with `edgeseg export`"
            )
        return {p.key: p.value for p in model.metadata_props}
    sess = ort_session(
        path,
        threads=None,
        needs="reading ONNX metadata (without the onnx package)",
        unreadable="not a readable ONNX model",
    )
    return dict(sess.get_modelmeta().custom_metadata_map)


def read_onnx_metadata(path: Union[str, Path]) -> dict:
    """The edgeseg metadata of an exported ``.onnx`` as python values (see the module doc).

    Raises :class:`~edgeseg.ModelError` naming the file when it is missing, not ONNX,
    truncated, or has no edgeseg metadata.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"{p}: no such ONNX file; export one with `edgeseg export RUN_DIR -o {p}`")
    return _from_props(_read_props(p), p)
