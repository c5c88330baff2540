"""Benchmarks of the fused kernels against the pipelines users write today.

Every workload runs our kernel and its peers on the same inputs in one warm process and
reports medians and ratios. Peers: numpy+OpenCV (per-channel ``cv2.resize`` of the logits,
``np.argmax``, numpy softmax, palette LUT, ``cv2.addWeighted``), torch (``F.interpolate`` +
``softmax`` + ``max``) and, for preprocessing, ``cv2.dnn.blobFromImage`` + numpy mean/std.
A peer whose library is missing is reported as skipped, never faked.

Implementations run in interleaved rounds (each round times every implementation in turn), so
that load from other processes spreads over all of them alike. ``--simd avx2,avx512`` times our
kernels once per instruction-set tier in the same rounds (an AVX-512 machine then also shows
what an AVX2-only CPU runs); ``--compare-core PATH`` adds another build of the native module
(e.g. the previous release's ``_core*.so``) as a row, to measure a change in one process.

Run ``edgeseg bench`` or ``python tools/bench_kernels.py`` (``--json`` for scripts).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

import numpy as np

from edgeseg import _cli, _core, kernels
from edgeseg._platform import cpu_name

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


@dataclass
class Row:
    workload: str
    impl: str
    median_ms: Optional[float]
    p10_ms: Optional[float] = None
    p90_ms: Optional[float] = None
    speedup_vs_ours: Optional[float] = None  # peer_ms / ours_ms (how much faster ours is)
    note: str = ""


@dataclass
class Report:
    machine: dict = field(default_factory=dict)
    rows: list = field(default_factory=list)


def machine_info(threads: int) -> dict:
    cpu = cpu_name()
    info = _core.build_info()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": threads,
        "simd": info["simd"],
        "python": platform.python_version(),
        "numpy": np.__version__,
        "edgeseg": info["version"],
    }


def warm_allocator() -> str:
    """Puts glibc's allocator in the state a long-running camera loop reaches: large blocks are
    reused from the heap instead of being mmapped and trimmed per call. Otherwise every numpy
    temporary of a peer pays a page fault per 4 KiB (several ms per call on a VM), which would
    inflate our ratios. Returns a description for the report."""
    import ctypes
    import ctypes.util

    if not sys.platform.startswith("linux"):
        return "default (not glibc)"
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = libc.mallopt(m_mmap_threshold, 1 << 30) == 1
        ok = libc.mallopt(m_trim_threshold, 1 << 30) == 1 and ok
    except (OSError, AttributeError):
        return "default (mallopt unavailable)"
    return "warm (glibc mmap/trim thresholds 1 GiB)" if ok else "default (mallopt refused)"


def time_fn(fn: Callable[[], object], repeat: int, warmup: int) -> tuple[float, float, float]:
    """Median, p10 and p90 in milliseconds over `repeat` calls after `warmup` calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    samples.sort()
    q = statistics.quantiles(samples, n=10) if len(samples) >= 2 else samples * 9
    return statistics.median(samples), q[0], q[-1]


def load_core(path: str):
    """Another build of the native module, imported from its .so under a private name (its
    init symbol is PyInit__core whatever the package) so that it runs beside ours."""
    import importlib.machinery
    import importlib.util

    loader = importlib.machinery.ExtensionFileLoader("edgeseg_compare._core", path)
    spec = importlib.util.spec_from_file_location("edgeseg_compare._core", path, loader=loader)
    if spec is None:
        raise SystemExit(f"--compare-core: {path} is not a loadable extension module")
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _ours(fn: Callable[[], object], level: Optional[str]) -> Callable[[], object]:
    """Runs `fn` with the CPU kernels forced to `level` (None: the automatic choice)."""
    if level is None:
        return fn

    def run():
        kernels.set_simd_level(level)
        try:
            return fn()
        finally:
            kernels.set_simd_level(None)

    return run


def _our_rows(fn: Callable[[], object], args) -> list:
    if not args.simd:
        return [("edgeseg (fused C++)", fn)]
    return [(f"edgeseg (fused C++, simd={lv})", _ours(fn, lv)) for lv in args.simd]


def _try_import(name: str):
    try:
        return __import__(name)
    except ImportError:
        return None


def make_postprocess_inputs(c: int, h: int, w: int, out_h: int, out_w: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((c, h, w), dtype=np.float32) * 3.0
    frame = rng.integers(0, 256, (out_h, out_w, 3), dtype=np.uint8)
    palette = rng.integers(0, 256, (c, 3), dtype=np.uint8)
    return logits, frame, palette


def numpy_opencv_postprocess(cv2, logits, out_h, out_w, frame=None, palette=None, alpha=0.5):
    """What users write today: per-channel cv2.resize, np.argmax, numpy softmax, LUT blend."""
    up = np.stack([cv2.resize(ch, (out_w, out_h), interpolation=cv2.INTER_LINEAR) for ch in logits])
    class_map = up.argmax(axis=0).astype(np.uint8)
    e = np.exp(up - up.max(axis=0, keepdims=True))
    confidence = 1.0 / e.sum(axis=0)
    overlay = None
    if frame is not None and palette is not None:
        overlay = cv2.addWeighted(frame, 1.0 - alpha, palette[class_map], alpha, 0.0)
    counts = np.bincount(class_map.ravel(), minlength=logits.shape[0])
    return class_map, confidence, overlay, counts


def torch_postprocess(torch, logits_t, out_h, out_w):
    """torch's pipeline: F.interpolate + softmax + max."""
    with torch.inference_mode():
        up = torch.nn.functional.interpolate(
            logits_t[None], size=(out_h, out_w), mode="bilinear", align_corners=False
        )[0]
        conf, class_map = up.softmax(0).max(0)
    return class_map, conf


def bench_postprocess(report: Report, name: str, c, h, w, out_h, out_w, overlay: bool, args):
    cv2 = _try_import("cv2")
    torch = _try_import("torch")
    logits, frame, palette = make_postprocess_inputs(c, h, w, out_h, out_w)
    frame_arg = frame if overlay else None
    palette_arg = palette if overlay else None

    def ours():
        return kernels.postprocess(
            logits, (out_h, out_w), frame=frame_arg, palette=palette_arg, confidence=True
        )

    rows = _our_rows(ours, args)
    if args.compare_core is not None:
        other = args.compare_core
        lg = logits[None]
        frames = None if frame_arg is None else [frame_arg]
        rows.append(
            (
                f"edgeseg (other core: {args.compare_core_name})",
                lambda: other.postprocess(
                    lg, out_h, out_w, frames, palette_arg, 0.5, True, True, [], None
                ),
            )
        )
    if cv2 is not None:
        rows.append(
            (
                "numpy+OpenCV",
                lambda: numpy_opencv_postprocess(cv2, logits, out_h, out_w, frame_arg, palette_arg),
            )
        )
    else:
        report.rows.append(Row(name, "numpy+OpenCV", None, note="skipped: cv2 not installed"))
    if torch is not None:
        lt = torch.from_numpy(logits)
        rows.append(
            ("torch (interpolate+softmax+max)", lambda: torch_postprocess(torch, lt, out_h, out_w))
        )
    else:
        report.rows.append(Row(name, "torch", None, note="skipped: torch not installed"))
    _run_rows(report, name, rows, args)


def bench_preprocess(report: Report, name: str, src_h, src_w, h, w, args):
    cv2 = _try_import("cv2")
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (src_h, src_w, 3), dtype=np.uint8)
    mean = np.asarray(MEAN, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(STD, np.float32).reshape(1, 3, 1, 1)

    def ours():
        return kernels.preprocess(img, (h, w), MEAN, STD, input_order="bgr", output_order="rgb")

    rows = _our_rows(ours, args)
    if args.compare_core is not None:
        other = args.compare_core
        rows.append(
            (
                f"edgeseg (other core: {args.compare_core_name})",
                lambda: other.preprocess(
                    [img], h, w, 3, list(MEAN), list(STD), True, False, False, 114
                ),
            )
        )
    if cv2 is not None:

        def blob_from_image():
            b = cv2.dnn.blobFromImage(img, 1.0 / 255.0, (w, h), swapRB=True)
            return (b - mean) / std

        def resize_numpy():
            r = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)[:, :, ::-1]
            x = r.astype(np.float32) / 255.0
            return np.ascontiguousarray(((x - MEAN) / STD).astype(np.float32).transpose(2, 0, 1))[
                None
            ]

        rows.append(("cv2.dnn.blobFromImage+std", blob_from_image))
        rows.append(("cv2.resize+numpy", resize_numpy))
    else:
        report.rows.append(Row(name, "OpenCV peers", None, note="skipped: cv2 not installed"))
    _run_rows(report, name, rows, args)


def _run_rows(report: Report, name: str, rows, args) -> None:
    samples: list[list[float]] = [[] for _ in rows]
    rounds = max(1, min(args.rounds, args.repeat))
    for r in range(rounds):
        per_round = args.repeat // rounds + (1 if r < args.repeat % rounds else 0)
        for (_, fn), acc in zip(rows, samples):
            # Let the previous implementation's thread pools (OpenMP, OpenBLAS, OpenCV, ours)
            # stop spinning, so that none runs against another one's busy-waiting threads.
            time.sleep(args.pause / rounds)
            for _ in range(args.warmup if r == 0 else 1):
                fn()
            for _ in range(per_round):
                t0 = time.perf_counter()
                fn()
                acc.append((time.perf_counter() - t0) * 1e3)
    results = []
    for (impl, _), acc in zip(rows, samples):
        acc.sort()
        q = statistics.quantiles(acc, n=10) if len(acc) >= 2 else acc * 9
        med = statistics.median(acc)
        results.append(Row(name, impl, med, q[0], q[-1]))
        if not args.json:
            print(f"  {name:<44} {impl:<32} {med:9.3f} ms", file=sys.stderr)
    ours_ms = results[0].median_ms
    for r in results:
        r.speedup_vs_ours = r.median_ms / ours_ms if ours_ms else None
    report.rows.extend(results)


WORKLOADS = {
    "post-c4": (
        "postprocess C=4 128x128 -> 1280x720 (class+conf+overlay)",
        4,
        128,
        128,
        720,
        1280,
        True,
    ),
    "post-c19": (
        "postprocess C=19 256x512 -> 2048x1024 (class+conf)",
        19,
        256,
        512,
        1024,
        2048,
        False,
    ),
}


def format_table(report: Report) -> str:
    lines = [
        "| workload | implementation | median ms | p10 ms | ours is N× faster |",
        "|---|---|---:|---:|---:|",
    ]
    for r in report.rows:
        if r.median_ms is None:
            lines.append(f"| {r.workload} | {r.impl} | – | – | {r.note} |")
            continue
        first = r.speedup_vs_ours is not None and abs(r.speedup_vs_ours - 1.0) < 1e-12
        ratio = "1.0 (ours)" if first else f"{r.speedup_vs_ours:.2f}×"
        lines.append(f"| {r.workload} | {r.impl} | {r.median_ms:.3f} | {r.p10_ms:.3f} | {ratio} |")
    m = report.machine
    lines.append("")
    lines.append(
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['threads']} threads, simd={m['simd']}, "
        f"Python {m['python']}, numpy {m['numpy']}, edgeseg {m['edgeseg']}, "
        f"allocator {m.get('allocator', 'default')}."
    )
    return "\n".join(lines)


def run(argv: Optional[Sequence[str]] = None) -> tuple[Report, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        prog="edgeseg bench",
        description="Benchmark the fused kernels against numpy+OpenCV and torch (medians of "
        "repeated calls in one warm process; ratios = peer time / our time).",
        epilog=_cli.epilog("edgeseg bench", "edgeseg bench --only post-c4 --json bench.json"),
        formatter_class=_cli.HELP_FORMATTER,
    )
    parser.add_argument(
        "--threads", type=int, default=2, help="threads for every library (default 2)"
    )
    parser.add_argument("--repeat", type=int, default=30, help="timed calls per implementation")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls before timing")
    parser.add_argument(
        "--only",
        choices=["pre", "post-c4", "post-c19"],
        action="append",
        help="run only these workloads (repeatable)",
    )
    parser.add_argument(
        "--pause",
        type=float,
        default=0.5,
        help="seconds of idle time before each implementation (lets other thread pools "
        "stop spinning; default 0.5)",
    )
    parser.add_argument(
        "--cold-allocator",
        action="store_true",
        help="keep glibc's default allocator thresholds (large temporaries then pay page "
        "faults on every call, as in a fresh process)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="interleaved rounds the repeats are split into (default 5)",
    )
    parser.add_argument(
        "--simd",
        default=None,
        help="comma-separated instruction-set tiers to time our kernels on, e.g. "
        "'avx2,avx512' (tiers this CPU runs: see edgeseg.kernels.set_simd_level)",
    )
    parser.add_argument(
        "--compare-core",
        default=None,
        metavar="PATH",
        help="another build of the native module (_core*.so) to time beside ours",
    )
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a rough look)")
    _cli.add_json(parser, "the report")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    if args.repeat < 1 or args.warmup < 0 or args.pause < 0 or args.rounds < 1:
        parser.error("--repeat and --rounds must be >= 1, --warmup >= 0 and --pause >= 0")
    if args.simd is not None:
        args.simd = [lv.strip() for lv in args.simd.split(",") if lv.strip()]
        for lv in args.simd:
            try:
                kernels.set_simd_level(lv)
            except ValueError as e:
                parser.error(f"--simd: {e}")
            finally:
                kernels.set_simd_level(None)
    args.compare_core_name = None
    if args.compare_core is not None:
        if not os.path.isfile(args.compare_core):
            parser.error(f"--compare-core: no such file: {args.compare_core}")
        args.compare_core_name = os.path.basename(
            os.path.dirname(os.path.abspath(args.compare_core))
        )
        args.compare_core = load_core(args.compare_core)
        args.compare_core.set_num_threads(args.threads)
    if args.quick:
        args.repeat, args.warmup = min(args.repeat, 7), min(args.warmup, 2)

    kernels.set_num_threads(args.threads)
    cv2 = _try_import("cv2")
    if cv2 is not None:
        cv2.setNumThreads(args.threads)
    torch = _try_import("torch")
    if torch is not None:
        torch.set_num_threads(args.threads)

    report = Report(machine=machine_info(args.threads))
    if args.simd:
        report.machine["simd_tiers"] = args.simd
    report.machine["allocator"] = warm_allocator() if not args.cold_allocator else "default"
    selected = args.only or ["pre", "post-c4", "post-c19"]
    if "pre" in selected:
        bench_preprocess(report, "preprocess 1920x1080 -> 512x512 NCHW", 1080, 1920, 512, 512, args)
    for key in ("post-c4", "post-c19"):
        if key in selected:
            label, c, h, w, oh, ow, ov = WORKLOADS[key]
            bench_postprocess(report, label, c, h, w, oh, ow, ov, args)
    return report, args


def main(argv: Optional[Sequence[str]] = None) -> int:
    ok, result = _cli.guarded("edgeseg bench", lambda: run(argv))
    if not ok:
        return _cli.EXIT_ERROR
    report, args = result
    _cli.write_json(
        args.json, {"machine": report.machine, "rows": [asdict(r) for r in report.rows]}
    )
    if args.json != "-":
        print(format_table(report))
    return 0
