"""Quality run: the default model on the synthetic defect set at 256², CPU, under a budget.

    python tools/train_quality.py [--out /tmp/edgeseg_quality] [--minutes 5] [-- extra train flags]

Synthesizes ``defects`` (200 images, 256², seed 0: 160 train / 20 val / 20 test), trains
``edgeseg train`` with its defaults under a time budget, then ``edgeseg eval`` on val and
test; prints the mIoU curve (with the optimizer steps, images and CPU seconds behind each
point), the per-class IoU / boundary F1 and the machine's load average during training —
on a shared machine the wall-clock budget buys fewer steps, and ``cpu_s`` says how much of
the cores the run really had (a quiet 2-core machine gives about 2 CPU-s per second).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

from edgeseg import data
from edgeseg._platform import usable_cpus
from edgeseg.train import cli as train_cli
from edgeseg.train.evaluate import evaluate


def _load() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


class LoadSampler(threading.Thread):
    """1-minute load average every few seconds while training runs."""

    def __init__(self, every: float = 5.0):
        super().__init__(daemon=True)
        self.every, self.samples, self.stop = every, [], threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.every):
            self.samples.append(_load())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/edgeseg_quality")
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("extra", nargs="*", help="more edgeseg train flags (after --)")
    args = ap.parse_args()
    out = Path(args.out)
    ds = out / "defects256"
    if not (ds / "images").exists():
        data.synth(ds, task="defects", n=args.n, size=256, seed=0)
    run = out / "run"
    cores = usable_cpus()
    print(f"cores {cores}, load average before training {open('/proc/loadavg').read().strip()}")
    sampler = LoadSampler()
    sampler.start()
    t0 = time.monotonic()
    rc = train_cli.main(
        ["--data", str(ds), "--out", str(run), "--time-limit", str(args.minutes), "--no-progress"]
        + args.extra
    )
    wall = time.monotonic() - t0
    sampler.stop.set()
    if rc:
        return rc
    m = json.loads((run / "metrics.json").read_text())
    loads = sampler.samples or [_load()]
    print(f"\ntraining wall time {wall:.0f} s (incl. scan/start-up); config {m['config']}")
    print(
        f"load average (1 min) during training: mean {sum(loads) / len(loads):.2f}, "
        f"max {max(loads):.2f} over {len(loads)} samples on {cores} cores"
    )
    print(
        "epoch  time_s  cpu_s  steps  crops  crops/s  train_loss  val_mIoU  "
        + "  ".join(m["class_names"])
    )
    for h in m["history"]:
        pc = "  ".join(f"{(v or 0):.3f}" for v in h["per_class_iou"].values())
        ips = h.get("images", 0) / max(h["time_s"], 1e-9)
        print(
            f"{h['epoch']:5d}  {h['time_s']:6.0f}  {h.get('cpu_s', 0):5.0f}  "
            f"{h.get('steps', 0):5d}  {h.get('images', 0):5d}  {ips:7.1f}  "
            f"{h['train_loss']:10.4f}  {h['val_miou']:8.4f}  {pc}"
        )
    last = m["history"][-1]
    print(
        f"best val mIoU {m['best_val_miou']:.4f} at epoch {m['best_epoch']} ({m['stopped']}); "
        f"{last.get('steps', 0)} steps, {last.get('images', 0)} training crops, "
        f"{last.get('cpu_s', 0):.0f} CPU-s in {last['time_s']:.0f} s "
        f"({last.get('cpu_s', 0) / max(last['time_s'], 1e-9):.2f} of {cores} cores)"
    )
    cal = m.get("calibration")
    if cal and "offsets" in cal:
        shown = ", ".join(f"{k} {v:+g}" for k, v in cal["offsets"].items())
        print(
            f"calibration ({cal['images']} train images, {cal['seconds']:.1f} s, inside the "
            f"budget): logit offsets {shown}; train mIoU {cal['train_miou_before']:.4f} -> "
            f"{cal['train_miou_after']:.4f}, val {cal['val_miou_before']:.4f} -> "
            f"{cal['val_miou_after']:.4f} ({'applied' if cal['applied'] else 'not applied'})"
        )
    for split in ("val", "test"):
        r = evaluate(run, ds, split, device="cpu")
        print(
            f"\n{split}: mIoU {r['miou']:.4f}  pixel acc {r['pixel_accuracy']:.4f}  "
            f"boundary F1 {r['boundary_f1']:.4f}"
        )
        for name in r["per_class_iou"]:
            print(
                f"  {name:<11} IoU {r['per_class_iou'][name]:.4f}  "
                f"boundary F1 {r['per_class_boundary_f1'][name]:.4f}"
            )
        (out / f"eval_{split}.json").write_text(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
