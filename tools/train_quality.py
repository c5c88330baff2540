"""Quality run of issue 4: the default model on the synthetic defect set at 256², CPU.

    python tools/train_quality.py [--out /tmp/edgeseg_quality] [--minutes 5] [-- extra train flags]

Synthesizes ``defects`` (200 images, 256², seed 0: 160 train / 20 val / 20 test), trains
``edgeseg train`` with its defaults under a time budget, then ``edgeseg eval`` on val and
test; prints the mIoU curve and the per-class IoU / boundary F1.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from edgeseg import data
from edgeseg.train import cli as train_cli
from edgeseg.train.evaluate import evaluate


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
    t0 = time.monotonic()
    rc = train_cli.main(
        ["--data", str(ds), "--out", str(run), "--time-limit", str(args.minutes), "--no-progress"]
        + args.extra
    )
    wall = time.monotonic() - t0
    if rc:
        return rc
    m = json.loads((run / "metrics.json").read_text())
    print(f"\ntraining wall time {wall:.0f} s (incl. scan/start-up); config {m['config']}")
    print("epoch  time_s  train_loss  val_mIoU  " + "  ".join(m["class_names"]))
    for h in m["history"]:
        pc = "  ".join(f"{(v or 0):.3f}" for v in h["per_class_iou"].values())
        print(
            f"{h['epoch']:5d}  {h['time_s']:6.0f}  {h['train_loss']:10.4f}  "
            f"{h['val_miou']:8.4f}  {pc}"
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
