"""``edgeseg demo``: the whole product on an embedded default (CPU, synthetic data).

Synthesizes labelled camera frames of the inspection line (panels with defects passing the
camera, :func:`edgeseg.data.video.synth_line_dataset`) and checks their labels, fine-tunes the
shipped defect model (``starter:defects``, trained on other frames of the same generator) on
them for the time budget — the path a user takes with ``edgeseg train --init`` — exports
ONNX, quantizes INT8 behind the accuracy gate, builds a TensorRT engine where TensorRT
exists (otherwise says why not), then runs the camera loop with inspection rules on a
synthesized inspection video (defective surfaces moving past the camera) into an overlay
video, a JSON-lines verdict log and an NG archive, and writes ``report.html``.

One room past 450 lines: one script of the product's steps in order, each a few lines that
call the product's own modules.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from edgeseg import _cli
from edgeseg.errors import EdgesegError
from edgeseg.runtime.result import SegResult

__all__ = ["DEMO_RULES", "DemoConfig", "inspect_video", "main", "run_demo"]

#: The line's inspection rules (written to demo_out/rules.yaml): no line defect (scratch and
#: crack pixels measured together, so a scratch read partly as a crack is still one blob)
#: larger than a speck anywhere in the inspected area, stains up to 2 % of it.
DEMO_RULES = {
    "zones": {
        "inspected": {
            "polygon": [[0.03, 0.03], [0.97, 0.03], [0.97, 0.97], [0.03, 0.97]],
            "normalized": True,
        }
    },
    "rules": [
        {
            "class": ["scratch", "crack"],
            "together": True,
            "zone": "inspected",
            "max_blobs": 0,
            "min_blob_area_px": 40,
            "min_confidence": 0.5,
        },
        {"class": "stain", "zone": "inspected", "max_area_px": 1300, "min_confidence": 0.5},
    ],
}


@dataclass
class DemoConfig:
    """Sizes of the demo; ``quick()`` is the seconds-long variant the tests run."""

    dataset_size: int = 160
    image_size: int = 256
    train_minutes: float = 3.0
    #: where training starts (``edgeseg train --init``): the shipped ``starter:defects`` on
    #: every CPU (the same model and verdicts on AVX2, AVX-512 and AMX machines); None: from
    #: scratch (the trainer's defaults for this CPU)
    init: Optional[str] = "starter:defects"
    model_kwargs: Optional[dict] = None
    calib_images: int = 64
    video_frames: int = 150
    fps: float = 15.0
    speed: int = 8
    threads: int = 2
    build_engine: bool = True
    #: TrainConfig fields that override the trainer's defaults: fine-tuning a trained model
    #: takes a fifth of the from-scratch CPU peak rate (1e-2), which would undo the starter;
    #: the demo trains for its whole budget (no plateau stop)
    train_overrides: Optional[dict] = field(default_factory=lambda: {"lr": 2e-3, "plateau": 0.0})
    #: what the training budget counts (``edgeseg train --clock``): "wall" seconds, or "cpu"
    #: seconds of this process per torch thread (the same work on a loaded machine)
    clock: str = "wall"

    @classmethod
    def quick(cls) -> DemoConfig:
        return cls(
            dataset_size=16,
            image_size=64,
            train_minutes=0.25,
            calib_images=8,
            video_frames=24,
            speed=4,
            build_engine=False,
            init="starter:defects",
            train_overrides={
                "batch": 2,
                "lr": 2e-3,
                "loss": "ce",
                "class_weights": "none",
                "warmup_epochs": 0.5,
            },
        )


class _Steps:
    def __init__(self, total: int) -> None:
        self.total, self.n, self.t0 = total, 0, time.perf_counter()
        self.times: dict[str, float] = {}
        self._t = self.t0
        self._name = ""

    def __call__(self, text: str) -> None:
        self._close()
        self.n += 1
        self._name = text
        print(f"[{self.n}/{self.total}] {text} ...", flush=True)

    def _close(self) -> None:
        now = time.perf_counter()
        if self._name:
            self.times[self._name] = round(now - self._t, 1)
        self._t = now

    def done(self) -> float:
        self._close()
        return time.perf_counter() - self.t0


def say(text: str) -> None:
    print(f"      {text}", flush=True)


def _train(ds: Path, run: Path, cfg: DemoConfig) -> dict:
    from edgeseg.train import TrainConfig, train

    tc = TrainConfig(
        data=str(ds),
        out=str(run),
        size=cfg.image_size,
        time_limit=cfg.train_minutes,
        clock=cfg.clock,
        workers=0,
        progress=sys.stderr.isatty(),
        init=cfg.init,
    )
    if cfg.model_kwargs:
        tc.model_kwargs = dict(cfg.model_kwargs)
    for k, v in (cfg.train_overrides or {}).items():
        setattr(tc, k, v)
    return train(tc, log=say)


def _quantize(fp32: Path, ds: Path, out: Path, cfg: DemoConfig) -> dict:
    from edgeseg.quant import quantize

    return quantize(
        fp32,
        ds,
        out,
        precision="int8",
        target="cpu",
        calib_images=cfg.calib_images,
        threads=cfg.threads,
        latency_runs=10,
        log=say,
    )


def _engine(onnx_path: Path, out: Path) -> tuple[Optional[dict], str]:
    try:
        from edgeseg.engine import build_engine, load_tensorrt

        load_tensorrt()
    except EdgesegError as e:
        return None, f"TensorRT engine skipped: {e}"
    try:
        m = build_engine(onnx_path, out, precision="fp16", log=say)
    except Exception as e:  # an optional step: any TensorRT failure is reported, not fatal
        return None, f"TensorRT engine build failed ({type(e).__name__}): {e}"
    return m, (
        f"TensorRT engine built with {m['tensorrt']['module']} {m['tensorrt']['version']} "
        f"({m['precision']}); on this machine without a GPU it is not run — the camera loop "
        "uses ONNX Runtime"
    )


class _Collector:
    """on_result callback: scores the loop's class maps against the video's ground truth and
    keeps a few NG results for the report's examples."""

    def __init__(self, gt: np.ndarray, num_classes: int, rules=None, keep: int = 4) -> None:
        from edgeseg.metrics import ConfusionMatrix

        self.gt, self.cm, self.keep, self.rules = gt, ConfusionMatrix(num_classes), keep, rules
        self.examples: list = []
        self.timings: dict[str, list] = {}
        self.verdicts_agree = self.verdicts = 0

    def __call__(self, item) -> None:
        i = item.frame.index
        if 0 <= i < len(self.gt):
            self.cm.update(item.result.class_map, self.gt[i])
            if item.verdict is not None and self.rules is not None:
                # the truth's verdict: the same rules on the ground-truth class map
                gt = self.gt[i]
                truth = SegResult(
                    class_map=gt,
                    confidence=np.ones(gt.shape, np.float32),
                    classes=item.result.classes,
                    counts_array=np.bincount(gt.ravel(), minlength=len(item.result.classes)),
                )
                truth_ng = not self.rules.evaluate(truth).ok
                self.verdicts += 1
                self.verdicts_agree += int(truth_ng == (not item.verdict.ok))
        for k, v in item.result.timings.items():
            self.timings.setdefault(k, []).append(v)
        ng = item.verdict is not None and not item.verdict.ok
        if ng and len(self.examples) < self.keep and i % 10 == 0:
            self.examples.append(item)


def _write_examples(out: Path, items) -> list[tuple[str, str]]:
    import cv2

    figs = []
    for it in items:
        name = f"example_{it.frame.index:05d}"
        both = np.concatenate(
            [it.result.overlay(0.5), it.result.overlay(0.6, show_confidence="heatmap")], axis=1
        )
        cv2.imwrite(str(out / "report_assets" / f"{name}.png"), both)
        figs.append(
            (
                f"frame {it.frame.index}: {'; '.join(it.verdict.reasons)} — left: classes, "
                "right: confidence (blue unsure … red sure)",
                f"report_assets/{name}.png",
            )
        )
    return figs


def draw_video(path: Path, cfg: DemoConfig, seed: int) -> dict:
    """The demo's inspection video (frames, size, conveyor speed and frame rate of ``cfg``)
    drawn with ``seed``; ``synth_inspection_video``'s report (``ground_truth``: the masks)."""
    from edgeseg.data.video import synth_inspection_video

    return synth_inspection_video(
        path,
        frames=cfg.video_frames,
        height=cfg.image_size,
        width=cfg.image_size,
        speed=cfg.speed,
        fps=cfg.fps,
        seed=seed,
    )


def inspect_video(model, video, gt: np.ndarray, rules_file, out, threads: int = 2) -> dict:
    """The demo's camera loop: ``model`` with ``rules_file`` on ``video`` into ``out``
    (``overlay.mp4``, ``results.jsonl``, ``archive/``), every frame scored against ``gt``
    (frames×H×W class ids). Returns ``{"stats", "collector", "records", "scores" (video
    mIoU and per-class IoU), "ng", "agreement"}``; agreement is the fraction of frames whose
    verdict equals the one the same rules give on the true class map."""
    from edgeseg.camera import CameraLoop
    from edgeseg.metrics import summarize
    from edgeseg.report import load_jsonl
    from edgeseg.rules import Rules
    from edgeseg.runtime import Segmenter

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seg = Segmenter(model, threads=threads, overlay_alpha=0.5)
    rules = Rules.from_file(rules_file, classes=seg.classes)
    collect = _Collector(gt, len(seg.classes), rules)
    results = out / "results.jsonl"
    for stale in (results, out / "overlay.mp4"):
        stale.unlink(missing_ok=True)
    loop = CameraLoop(
        str(video),
        seg,
        rules=rules,
        drop="none",
        on_result=collect,
        sinks=[f"video:{out / 'overlay.mp4'}", f"jsonl:{results}", f"archive:{out / 'archive'}"],
    )
    stats = loop.run()
    records = load_jsonl(results)
    scores = summarize(collect.cm, seg.class_names)
    n_ng = sum(r["verdict"] == "NG" for r in records)
    agree = collect.verdicts_agree / max(1, collect.verdicts)
    say(
        f"{stats['frames']} frames at {stats['fps_mean']:.1f} FPS; {n_ng} NG; video mIoU vs "
        f"ground truth {scores['miou']:.3f}; verdicts agree with the truth on "
        f"{100 * agree:.0f} % of frames"
    )
    return {
        "stats": stats,
        "collector": collect,
        "records": records,
        "scores": scores,
        "ng": n_ng,
        "agreement": agree,
    }


def run_demo(out_dir, cfg: Optional[DemoConfig] = None) -> dict:
    """Runs every step into ``out_dir``; returns the summary (also ``summary.json``)."""
    import yaml

    from edgeseg import data
    from edgeseg.data.video import synth_line_dataset
    from edgeseg.export import export_onnx
    from edgeseg.report import write_report

    cfg = cfg or DemoConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report_assets").mkdir(exist_ok=True)
    notes: list[str] = []
    step = _Steps(8)

    step(
        f"synthesizing the line's labelled camera frames ({cfg.dataset_size} images, "
        f"{cfg.image_size}²) and checking their labels"
    )
    ds = synth_line_dataset(
        out / "dataset", n=cfg.dataset_size, size=cfg.image_size, seed=0, overwrite=True
    )
    qa = data.check(ds, workers=1, progress=False)
    (out / "qa.json").write_text(json.dumps(qa, indent=2) + "\n")
    say(
        f"{qa['num_images']} images; QA: {len(qa['errors'])} errors, {len(qa['warnings'])} warnings"
    )

    step(
        f"fine-tuning {cfg.init} on them for {cfg.train_minutes:g} min on the CPU"
        if cfg.init
        else f"training the default model for {cfg.train_minutes:g} min on the CPU"
    )
    run = out / "run"
    metrics = _train(ds, run, cfg)
    cal = metrics.get("calibration") or {}
    say(
        f"best val mIoU {metrics.get('best_val_miou') or 0:.3f} after "
        f"{metrics.get('epochs_run')} epochs"
        + (
            f" (class-prior calibration: {cal['val_miou_before']:.3f} before)"
            if cal.get("applied")
            else ""
        )
    )

    step("exporting ONNX (parity-checked against torch)")
    models = out / "models"
    fp32 = models / "model.onnx"
    exp = export_onnx(run, fp32, log=None)
    say(
        f"{fp32} ({exp['bytes'] / 1e6:.1f} MB), max |Δlogit| vs torch "
        f"{exp['parity']['max_abs_diff']:.2e}"
    )

    step("quantizing INT8 (calibrated on the training images, gated on validation mIoU)")
    int8 = models / "model.int8.onnx"
    try:
        q = _quantize(fp32, ds, int8, cfg)
    except EdgesegError as e:
        q = None
        notes.append(f"INT8 quantization failed: {e}")
    model_for_loop = int8 if q and q.get("passed") else fp32
    if q and not q.get("passed"):
        notes.append(f"INT8 gate failed ({q.get('reason')}); the loop runs the FP32 model")

    step("building a TensorRT engine")
    if cfg.build_engine:
        _, note = _engine(fp32, models / "model.engine")
    else:
        note = "TensorRT engine skipped (quick demo)"
    say(note)
    notes.append(note)

    step(f"synthesizing the inspection video ({cfg.video_frames} frames)")
    video = draw_video(out / "inspection.mp4", cfg, seed=2024)
    gt = np.load(video["ground_truth"])["masks"]

    step(
        f"camera loop: {model_for_loop.name} on the video, rules, overlay video, verdict log, "
        "NG archive"
    )
    (out / "rules.yaml").write_text(yaml.safe_dump(DEMO_RULES, sort_keys=False))
    run_loop = inspect_video(
        model_for_loop, video["path"], gt, out / "rules.yaml", out, cfg.threads
    )
    stats, collect, records = run_loop["stats"], run_loop["collector"], run_loop["records"]
    video_scores, n_ng, agree = run_loop["scores"], run_loop["ng"], run_loop["agreement"]

    step("writing report.html")
    seg_stages = {
        k: {"p50": float(np.percentile(v, 50)), "p99": float(np.percentile(v, 99))}
        for k, v in collect.timings.items()
    }
    examples = _write_examples(out, collect.examples)
    elapsed = step.done()
    artifacts = [
        ("overlay video of the camera loop", "overlay.mp4"),
        ("one JSON record per frame: counts, area fractions, verdict, reasons", "results.jsonl"),
        ("NG archive: original, overlay, mask, JSON per NG frame", "archive"),
        ("the inspection rules", "rules.yaml"),
        ("the synthesized inspection video", "inspection.mp4"),
        ("FP32 ONNX model with its metadata", "models/model.onnx"),
        ("training run: checkpoints, metrics, config", "run"),
        ("dataset QA report", "qa.json"),
    ]
    if model_for_loop == int8:
        artifacts.append(("INT8 model", "models/model.int8.onnx"))
    if q:
        artifacts.append(("quantization report", "models/quant_report.json"))
    if (models / "model.engine").exists():
        artifacts.append(("TensorRT engine manifest", "models/model.engine.json"))
    summary_lines = [
        f"Demo of {time.strftime('%Y-%m-%d %H:%M')}: {elapsed:.0f} s on this machine. "
        f"Steps (s): " + ", ".join(f"{k.split(' (')[0]} {v}" for k, v in step.times.items()),
        f"Camera loop on {model_for_loop.name}: {stats['frames']} frames, "
        f"{stats['fps_mean']:.1f} FPS, {n_ng} NG; segmentation of the video vs its ground "
        f"truth: mIoU {video_scores['miou']:.3f} ("
        + ", ".join(
            f"{k} {v:.2f}" for k, v in video_scores["per_class_iou"].items() if v is not None
        )
        + f"); the verdict agrees with the ground truth's (the same rules on the true class "
        f"map) on {100 * agree:.0f} % of the frames.",
    ]
    report = write_report(
        out,
        summary=summary_lines,
        dataset_qa=qa,
        training_metrics=metrics,
        quant_report=q,
        loop_stats={**stats, "segmenter_ms": seg_stages},
        examples=examples,
        records=records,
        artifacts=artifacts,
        notes=notes,
    )
    summary = {
        "seconds": round(elapsed, 1),
        "steps_s": step.times,
        "train_best_miou": metrics.get("best_val_miou"),
        "init": cfg.init,
        "train_minutes": cfg.train_minutes,
        "clock": cfg.clock,
        "int8": None if not q else {"passed": q.get("passed"), "drop": q.get("miou_drop_points")},
        "loop": {"frames": stats["frames"], "fps": stats["fps_mean"], "ng": n_ng},
        "video_miou": video_scores["miou"],
        "verdict_agreement": round(agree, 4),
        "report": str(report),
        "notes": notes,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"done in {elapsed:.0f} s: open {report}", flush=True)
    return summary


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(
        prog="edgeseg demo",
        description=__doc__.split("\n\n")[0],
        epilog=_cli.epilog("edgeseg demo --out demo_out", "edgeseg demo --quick --out /tmp/demo"),
        formatter_class=_cli.HELP_FORMATTER,
    )
    ap.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    ap.add_argument("--quick", action="store_true", help="a seconds-long run (tiny sizes)")
    ap.add_argument("--train-minutes", type=float, help="training budget (default 3)")
    ap.add_argument("--frames", type=int, help="video frames (default 150)")
    ap.add_argument(
        "--init",
        help="model to fine-tune (edgeseg train --init: a run, checkpoint or starter:NAME; "
        "default starter:defects), or 'none' to train from scratch",
    )
    ap.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        help="what the training budget counts: wall seconds (default) or this process's CPU "
        "seconds per thread (the same work on a busy machine)",
    )
    args = ap.parse_args(argv)
    cfg = DemoConfig.quick() if args.quick else DemoConfig()
    if args.train_minutes is not None:
        cfg.train_minutes = args.train_minutes
    if args.frames is not None:
        cfg.video_frames = args.frames
    if args.clock is not None:
        cfg.clock = args.clock
    if args.init is not None:
        cfg.init = None if args.init.lower() == "none" else args.init
        if cfg.init is None:  # from scratch: the trainer's own peak learning rate
            cfg.train_overrides = {
                k: v for k, v in (cfg.train_overrides or {}).items() if k != "lr"
            }
    try:
        run_demo(Path(args.out), cfg)
    except EdgesegError as e:
        _cli.error("edgeseg demo", e)
        return _cli.EXIT_FINDINGS
    return 0


if __name__ == "__main__":
    sys.exit(main())
