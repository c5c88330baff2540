"""Shared random test vectors of the CPU kernels (written once, run by the x86 and the aarch64
builds of tests/cpp/kernel_vectors.cpp) and the comparison of the two builds' outputs."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from .common import CheckError, log

FLOAT_TOL = 1e-5


def hexf(values) -> str:
    return ",".join(float(np.float32(v)).hex() for v in values)


@dataclass
class Case:
    kind: str  # "pre" or "post"
    name: str
    fields: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)  # output suffix -> "u8" | "i64" | "f32" | "f16"

    def line(self) -> str:
        tokens = [f"{k}={v}" for k, v in self.fields.items()]
        return " ".join([self.kind, f"name={self.name}", *tokens])


def image(
    rng: np.random.Generator, h: int, w: int, c: int, step: int = 1, row_pad: int = 0
) -> tuple[bytes, int, int]:
    """A random HWC uint8 image viewed with a pixel step and padded rows: (bytes, row, pixel)."""
    pixel_stride = c * step
    row_stride = w * pixel_stride + row_pad
    buf = rng.integers(0, 256, size=h * row_stride, dtype=np.uint8)
    return buf.tobytes(), row_stride, pixel_stride


def pre_case(
    rng,
    vec_dir: Path,
    name: str,
    h,
    w,
    c,
    out_h,
    out_w,
    out_c,
    dtype,
    letterbox,
    swap_rb,
    step=1,
    row_pad=0,
) -> Case:
    data, row_stride, pixel_stride = image(rng, h, w, c, step, row_pad)
    (vec_dir / f"{name}.img").write_bytes(data)
    mean = rng.uniform(0.3, 0.6, 3)
    std = rng.uniform(0.2, 0.3, 3)
    fields = dict(
        input=f"{name}.img",
        h=h,
        w=w,
        c=c,
        rowStride=row_stride,
        pixelStride=pixel_stride,
        outH=out_h,
        outW=out_w,
        outC=out_c,
        dtype=dtype,
        letterbox=int(letterbox),
        swapRB=int(swap_rb),
        pad=114,
        mean=hexf(mean),
        std=hexf(std),
    )
    return Case("pre", name, fields, {"tensor": dtype, "letterbox": "text"})


def post_case(
    rng,
    vec_dir: Path,
    name: str,
    classes,
    h,
    w,
    out_h,
    out_w,
    dtype,
    *,
    letterbox_src=None,
    overlay=True,
    confidence=True,
    counts=True,
    transparent=(),
    frame_step=1,
    frame_row_pad=0,
    alpha=0.5,
) -> Case:
    logits = rng.normal(0.0, 3.0, size=(classes, h, w)).astype(np.float32)
    if dtype == "f16":
        raw = logits.astype(np.float16).view(np.uint16).tobytes()
    else:
        raw = logits.tobytes()
    (vec_dir / f"{name}.logits").write_bytes(raw)
    fields = dict(
        logits=f"{name}.logits",
        dtype=dtype,
        C=classes,
        h=h,
        w=w,
        outH=out_h,
        outW=out_w,
        alpha=hexf([alpha]),
        palette="-",
        transparent="-",
        frame="-",
        frameRowStride=0,
        framePixelStride=0,
        letterbox="-",
        confidence=int(confidence),
        counts=int(counts),
    )
    outputs = {"classmap": "u8"}
    if letterbox_src is not None:
        src_w, src_h = letterbox_src
        fields["letterbox"] = f"{src_w},{src_h},{w},{h}"
    if overlay:
        palette = rng.integers(0, 256, size=(classes, 3), dtype=np.uint8)
        (vec_dir / f"{name}.palette").write_bytes(palette.tobytes())
        flags = np.zeros(256, np.uint8)
        flags[list(transparent)] = 1
        (vec_dir / f"{name}.transparent").write_bytes(flags.tobytes())
        data, row_stride, pixel_stride = image(rng, out_h, out_w, 3, frame_step, frame_row_pad)
        (vec_dir / f"{name}.frame").write_bytes(data)
        fields.update(
            palette=f"{name}.palette",
            transparent=f"{name}.transparent",
            frame=f"{name}.frame",
            frameRowStride=row_stride,
            framePixelStride=pixel_stride,
        )
        outputs["overlay"] = "u8"
    if confidence:
        outputs["confidence"] = "f32"
    if counts:
        outputs["counts"] = "i64"
    return Case("post", name, fields, outputs)


def write_vectors(vec_dir: Path) -> list[Case]:
    """Small random cases (fixed seed) covering the kernels' branches."""
    if vec_dir.exists():
        shutil.rmtree(vec_dir)
    vec_dir.mkdir(parents=True)
    rng = np.random.default_rng(20240610)

    def pre(*args, **kwargs) -> Case:
        return pre_case(rng, vec_dir, *args, **kwargs)

    def post(*args, **kwargs) -> Case:
        return post_case(rng, vec_dir, *args, **kwargs)

    # name, source h w c, output h w c, dtype, letterbox, swapRB[, pixel step, row padding]
    cases = [
        pre("pre_bgr_down_f32", 37, 53, 3, 32, 48, 3, "f32", False, True),
        pre("pre_bgr_up_f32", 9, 7, 3, 40, 36, 3, "f32", False, False),
        pre("pre_letterbox_f16", 45, 29, 3, 40, 40, 3, "f16", True, True),
        pre("pre_letterbox_wide_f32", 21, 90, 3, 48, 48, 3, "f32", True, False),
        pre("pre_gray_to3_f32", 31, 47, 1, 24, 24, 3, "f32", True, False),
        pre("pre_gray_c1_f16", 20, 30, 1, 16, 16, 1, "f16", False, False),
        pre("pre_strided_f32", 40, 30, 3, 33, 17, 3, "f32", False, True, 2, 5),
    ]
    # name, classes, logits h w, output h w, dtype, options
    cases += [
        post("post_c19_f32", 19, 16, 24, 64, 96, "f32", transparent=[0]),
        post(
            "post_c19_f16_letterbox",
            19,
            32,
            32,
            30,
            50,
            "f16",
            letterbox_src=(50, 30),
            transparent=[0, 5],
        ),
        post("post_c19_down_f32", 19, 40, 40, 17, 23, "f32", overlay=False),
        post("post_c4_same_f32", 4, 12, 12, 12, 12, "f32", overlay=False, confidence=False),
        post(
            "post_c4_strided_frame",
            4,
            10,
            14,
            25,
            35,
            "f32",
            transparent=[1, 3],
            frame_step=2,
            frame_row_pad=7,
            alpha=0.3,
        ),
        post("post_c1_f16", 1, 9, 11, 20, 28, "f16"),
        post(
            "post_c4_f16_letterbox_tall",
            4,
            24,
            24,
            61,
            19,
            "f16",
            letterbox_src=(19, 61),
            overlay=False,
        ),
    ]
    lines = ["# edgeseg kernel vectors v1 (written by tools/jetson_check)"]
    lines += [c.line() for c in cases]
    (vec_dir / "manifest.txt").write_text("\n".join(lines) + "\n")
    return cases


def compare_case(case: Case, x86: Path, arm: Path) -> tuple[str, str, float, Optional[str]]:
    """Returns (status, outputs compared, max float diff, failure or None)."""
    sx = (x86 / f"{case.name}.status").read_text().strip()
    sa = (arm / f"{case.name}.status").read_text().strip()
    if sx != sa:
        return "differs", "-", 0.0, f"x86 said {sx!r}, aarch64 said {sa!r}"
    if sx != "ok":
        return "error", "-", 0.0, f"both builds raised on a valid case: {sx}"
    max_diff = 0.0
    for suffix, kind in case.outputs.items():
        bx = (x86 / f"{case.name}.{suffix}").read_bytes()
        ba = (arm / f"{case.name}.{suffix}").read_bytes()
        if len(bx) != len(ba):
            return "ok", suffix, 0.0, f"{suffix}: sizes differ ({len(bx)} vs {len(ba)} bytes)"
        if kind == "f32":
            ax = np.frombuffer(bx, np.float32)
            aa = np.frombuffer(ba, np.float32)
            if not (np.isfinite(ax).all() and np.isfinite(aa).all()):
                return "ok", suffix, float("nan"), f"{suffix}: non-finite values"
            diff = float(np.max(np.abs(ax.astype(np.float64) - aa))) if ax.size else 0.0
            max_diff = max(max_diff, diff)
            if diff > FLOAT_TOL:
                i = int(np.argmax(np.abs(ax - aa)))
                return (
                    "ok",
                    suffix,
                    diff,
                    (
                        f"{suffix}: max |x86 - aarch64| = {diff:.3g} > {FLOAT_TOL:g} "
                        f"(element {i}: {ax[i]!r} vs {aa[i]!r})"
                    ),
                )
        elif bx != ba:
            ax = np.frombuffer(bx, np.uint8)
            aa = np.frombuffer(ba, np.uint8)
            n = int(np.count_nonzero(ax != aa))
            first = int(np.argmax(ax != aa))
            return (
                "ok",
                suffix,
                max_diff,
                (f"{suffix} ({kind}): {n} of {ax.size} bytes differ, first at byte {first}"),
            )
    return "ok", ",".join(case.outputs), max_diff, None


def check_parity(cases: list[Case], x86: Path, arm: Path) -> int:
    """Prints the table; returns the number of cases compared."""
    log(f"  {'case':<30} {'status':<12} {'max |dfloat|':>12}  outputs")
    failures = []
    real = 0
    for case in cases:
        status, outputs, diff, failure = compare_case(case, x86, arm)
        real += status == "ok"
        mark = "FAIL" if failure else status
        log(f"  {case.name:<30} {mark:<12} {diff:>12.2e}  {outputs}")
        if failure:
            failures.append(f"{case.name}: {failure}")
    if failures:
        raise CheckError("aarch64 outputs differ from x86:\n  " + "\n  ".join(failures))
    return real
