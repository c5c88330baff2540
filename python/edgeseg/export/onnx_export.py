"""Export a trained edgeseg run to one self-contained ONNX file.

The graph: input ``images`` ``N×3×H×W`` float32 (RGB, normalized with the embedded
mean/std), output ``logits`` ``N×C×H×W`` float32 (raw logits — argmax, softmax and the
resize to the frame belong to the fused postprocess kernel, not to the network). BatchNorm is
folded into the preceding convolutions in torch before export, so the graph holds only Conv,
Relu/HardSwish, Sigmoid, MaxPool/GlobalAveragePool, Resize, Concat, Add, Mul (and shape
arithmetic for the resizes); the export refuses a graph that still has BatchNormalization.

Opset 17 (default): the newest opset that every TensorRT on JetPack 5 and 6 parses —
TensorRT 8.5 (JetPack 5.1) and 8.6 support opsets 7..17, TensorRT 10 (JetPack 6.x) up to
20+ — and it has everything these models need (Resize-13 semantics with
``half_pixel``/``linear`` matching ``align_corners=False``). Newer opsets buy nothing here
and lock out JetPack 5. ONNX Runtime runs it on every version from 1.12 on.

The legacy TorchScript exporter (``dynamo=False``) is used: it works offline and without
onnxscript, and yields a single file with the weights inline (< 2 GiB, no external data).
"""

from __future__ import annotations

import copy
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from torch import nn

from edgeseg.errors import InvalidArgumentError, ModelError, TrainingError
from edgeseg.onnx_metadata import METADATA_FORMAT, to_props

__all__ = ["DEFAULT_OPSET", "export_onnx", "fold_batchnorm"]

DEFAULT_OPSET = 17
INPUT_NAME = "images"
OUTPUT_NAME = "logits"
#: Tolerances the parity check reports against (float32, CPU).
PARITY_ATOL = 1e-3


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every ``BatchNorm2d`` that directly follows a ``Conv2d`` in an ``nn.Sequential``
    into the convolution (eval statistics), in place. Returns the number folded."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = 0
    for seq in model.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        names = list(seq._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = seq._modules[a], seq._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                seq._modules[a] = fuse_conv_bn_eval(conv, bn)
                seq._modules[b] = nn.Identity()
                folded += 1
    return folded


def _run_data(run_dir_or_ckpt: Path) -> Optional[str]:
    """The dataset a run was trained on (its ``config.yaml``), when it still exists."""
    run = run_dir_or_ckpt if run_dir_or_ckpt.is_dir() else run_dir_or_ckpt.parent
    conf = run / "config.yaml"
    if not conf.is_file():
        return None
    from edgeseg._yaml import load_yaml_file

    try:
        data = (load_yaml_file(conf) or {}).get("data")
    except Exception:
        return None
    return data if data and Path(data).exists() else None


def _parity_images(src: Path, images, limit: int) -> tuple[list[np.ndarray], str]:
    """``(list of HWC uint8 RGB images, where they came from)``."""
    if images is not None:
        out = []
        for im in images:
            if isinstance(im, np.ndarray):
                out.append(im)
                continue
            from PIL import Image

            try:
                with Image.open(im) as f:
                    out.append(np.asarray(f.convert("RGB")))
            except Exception as e:
                raise InvalidArgumentError(
                    f"{im}: not a readable image for the parity check ({e})"
                ) from None
        return out[:limit] if limit else out, "given images"
    data = _run_data(src)
    if data is not None:
        from edgeseg.data import open_dataset

        try:
            ds = open_dataset(data)
            names = ds.split_sizes()
            split = next((s for s in ("val", "test", "train") if names.get(s)), None)
            ds = ds.split(split) if split else ds
            out = [ds[i][0] for i in range(min(limit, len(ds)))]
            if out:
                return out, f"{data} ({split or 'all'} split, {len(out)} images)"
        except Exception:
            pass
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (64, 64, 3), np.uint8) for _ in range(2)], "random noise"


def _check_graph(path: Path, opset: int) -> None:
    import onnx

    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path), load_external_data=False)
    bn = [n.name for n in model.graph.node if n.op_type == "BatchNormalization"]
    if bn:
        raise ModelError(f"{path}: BatchNormalization nodes remain after folding: {bn[:5]}")
    for t in model.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            raise ModelError(f"{path}: initializer {t.name} is stored as external data")
    ops = {n.op_type for n in model.graph.node}
    if "ArgMax" in ops:
        raise ModelError(f"{path}: the graph contains ArgMax; edgeseg exports raw logits")


def export_onnx(
    run_dir_or_ckpt: Union[str, Path],
    out_path: Union[str, Path],
    size: Optional[Sequence[int]] = None,
    dynamic_batch: bool = False,
    opset: int = DEFAULT_OPSET,
    images=None,
    parity_images: int = 4,
    log=print,
) -> dict:
    """Export a run directory (its ``best.pt``) or a checkpoint to ``out_path``.

    ``size``: ``(H, W)`` of the graph's input (default: the training size). ``images``: paths
    or HWC uint8 RGB arrays for the torch↔ONNX Runtime parity check (default: up to
    ``parity_images`` images of the run's dataset, found through its ``config.yaml``;
    random noise when that is gone). Returns ``{"path", "opset", "input_shape",
    "output_shape", "bytes", "batchnorm_folded", "parity": {"max_abs_diff",
    "class_maps_identical", "differing_pixels", "images", "source"}, "metadata"}`` and
    prints a summary through ``log`` (None: silent).

    Args:
        run_dir_or_ckpt: A run folder of ``edgeseg train`` (its ``best.pt``) or a checkpoint.
        out_path: The ``.onnx`` file to write.
        size: ``(H, W)`` of the graph's input (default: the training size).
        dynamic_batch: A variable batch dimension (default: batch 1).
        opset: ONNX opset (17 by default: TensorRT 8.5+ parses it).
        images: Images for the parity check (paths or HWC uint8 RGB arrays).
        parity_images: How many of the run's images the parity check uses by default.
        log: Where the summary goes (None: silent).

    Returns:
        The export report described above.

    Raises:
        ModelError: The run or checkpoint cannot be loaded, or the exported graph fails
            ``onnx.checker``.
        InvalidArgumentError: A bad ``size`` or ``opset``.
    """
    src, out = Path(run_dir_or_ckpt), Path(out_path)
    if not isinstance(opset, int) or not 11 <= opset <= 20:
        raise InvalidArgumentError(
            f"opset {opset!r}: use 11..20 (17 is what TensorRT on JetPack 5 and 6 parses)"
        )
    try:
        from edgeseg.train.checkpoint import load_model

        model, meta = load_model(src)
    except TrainingError as e:
        raise ModelError(str(e)) from None
    if size is None:
        h, w = (int(v) for v in meta["input_size"])
    else:
        try:
            h, w = (int(v) for v in size)
        except (TypeError, ValueError):
            raise InvalidArgumentError(f"size: expected (H, W), got {size!r}") from None
        if h < 8 or w < 8:
            raise InvalidArgumentError(f"size: expected H, W >= 8, got ({h}, {w})")
    import edgeseg

    classes = [
        {"id": int(c["id"]), "name": c["name"], "color": [int(v) for v in c["color"]]}
        for c in meta["classes"]
    ]
    data_hash = next(
        (meta[k] for k in ("data_hash", "dataset_hash", "data_sha256") if meta.get(k)), None
    )
    props_meta = {
        "edgeseg_format": METADATA_FORMAT,
        "edgeseg_version": edgeseg.__version__,
        "model": meta["model"],
        "model_kwargs": meta.get("model_kwargs", {}),
        "num_classes": int(meta["num_classes"]),
        "classes": classes,
        "input_size": [h, w],
        "mean": [float(v) for v in meta["mean"]],
        "std": [float(v) for v in meta["std"]],
        "channel_order": meta.get("channel_order", "RGB"),
        "layout": "NCHW",
        "scale": float(meta.get("scale", 1 / 255)),
        "resize": "stretch",
        "interpolation": meta.get("resize", "bilinear"),
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "dynamic_batch": bool(dynamic_batch),
        "data_hash": data_hash,
        "logit_offsets": meta.get("logit_offsets"),
    }

    fused = copy.deepcopy(model)
    n_folded = fold_batchnorm(fused)
    fused.eval()
    dummy = torch.zeros(1, 3, h, w)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        tmp_path = Path(tmp) / "model.onnx"
        kw = dict(
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            do_constant_folding=True,
            training=torch.onnx.TrainingMode.EVAL,
            dynamic_axes=(
                {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
            ),
        )
        with torch.no_grad(), warnings.catch_warnings():
            # the TorchScript exporter is chosen on purpose (see the module doc)
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                torch.onnx.export(fused, (dummy,), str(tmp_path), dynamo=False, **kw)
            except TypeError:  # torch < 2.5 has no dynamo argument
                torch.onnx.export(fused, (dummy,), str(tmp_path), **kw)
        import onnx

        proto = onnx.load(str(tmp_path))  # pulls in any external data the exporter wrote
        del proto.metadata_props[:]
        onnx.helper.set_model_props(proto, to_props(props_meta))
        proto.doc_string = f"edgeseg {edgeseg.__version__}: {meta['model']} semantic segmentation"
        onnx.save_model(proto, str(out), save_as_external_data=False)
    _check_graph(out, opset)

    parity = _parity(model, out, src, images, parity_images, (h, w), meta, dynamic_batch)
    in_shape = ["N" if dynamic_batch else 1, 3, h, w]
    report = {
        "path": str(out),
        "opset": opset,
        "input": INPUT_NAME,
        "output": OUTPUT_NAME,
        "input_shape": in_shape,
        "output_shape": [in_shape[0], int(meta["num_classes"]), h, w],
        "bytes": out.stat().st_size,
        "batchnorm_folded": n_folded,
        "parity": parity,
        "metadata": {k: v for k, v in props_meta.items() if v is not None},
    }
    if log is not None:
        log(
            f"exported {src} -> {out} ({report['bytes'] / 1e6:.2f} MB, opset {opset}, input "
            f"{INPUT_NAME} {'x'.join(str(v) for v in in_shape)}, {n_folded} BatchNorm folded)"
        )
        log(
            f"parity torch vs onnxruntime on {parity['images']} image(s) from "
            f"{parity['source']}: max |dlogit| {parity['max_abs_diff']:.3g}, class maps "
            f"{'identical' if parity['class_maps_identical'] else 'DIFFER'} "
            f"({parity['differing_pixels']} px differ)"
        )
    return report


def _parity(model, path: Path, src: Path, images, limit, hw, meta, dynamic_batch) -> dict:
    """Max |Δlogit| and class-map equality of torch (unfolded, float32) vs ONNX Runtime."""
    from edgeseg import kernels
    from edgeseg._ort import ort_session

    imgs, source = _parity_images(src, images, limit)
    sess = ort_session(path)
    blob = np.asarray(
        kernels.preprocess(imgs, hw, meta["mean"], meta["std"], input_order="rgb")
    ).astype(np.float32)
    max_diff, differ = 0.0, 0
    step = len(blob) if dynamic_batch else 1
    for i in range(0, len(blob), step):
        x = blob[i : i + step]
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        got = sess.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
        max_diff = max(max_diff, float(np.abs(ref - got).max()))
        differ += int((ref.argmax(1) != got.argmax(1)).sum())
    return {
        "max_abs_diff": max_diff,
        "class_maps_identical": differ == 0,
        "differing_pixels": differ,
        "images": len(imgs),
        "source": source,
        "within_tolerance": max_diff < PARITY_ATOL,
    }
