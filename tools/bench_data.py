#!/usr/bin/env python3
"""``edgeseg data check`` throughput (img/s) on a synthetic 512² dataset, new path vs old.

Runs in one process, interleaved rounds, each path on the same files:

* ``check``: :func:`edgeseg.data.qa.check` as it is now (every check, near duplicates and
  slivers included), with ``--workers`` processes;
* ``check@REV``: the same function from ``python/edgeseg/data/qa.py`` at git revision
  ``--old-rev`` (the QA before the near-duplicate/sliver work), when git and that revision
  are there, reading through Pillow alone as the reader of that revision did;
* ``check-pillow``: today's check with the reader's libspng path off (what the decoder
  alone gains);
* ``decode``: Pillow decoding image and mask and nothing else, in as many processes: the
  floor of a QA that looks at every pixel through Pillow.

Prints the median img/s of each path and its ratio to ``check``, then the perceptual hash
of the decoded images: edgeseg's (:mod:`edgeseg.data.phash`) against ImageHash's ``phash``
(from a PIL image, as it takes them) where ImageHash is installed. ``--json`` for scripts.
State the machine and its load with any figure (``lscpu``, ``uptime``).

Example: ``python tools/bench_data.py --n 200 --size 512 --workers 2 --rounds 3``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import types
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
QA = "python/edgeseg/data/qa.py"


def _old_check(rev: str):
    """``check`` from qa.py at ``rev``, or None when git or the revision is not there."""
    try:
        src = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{rev}:{QA}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    mod = types.ModuleType("edgeseg.data._qa_bench_old")
    mod.__file__ = f"{rev}:{QA}"
    sys.modules[mod.__name__] = mod  # worker processes unpickle its functions by name
    exec(compile(src, mod.__file__, "exec"), mod.__dict__)
    return mod.check


def _decode(paths: list[tuple[str, str]]) -> int:
    from PIL import Image

    for img, mask in paths:
        for p in (img, mask):
            with Image.open(p) as im:
                np.asarray(im)
    return len(paths)


def _decode_all(pairs: list[tuple[str, str]], workers: int) -> None:
    if workers == 1:
        _decode(pairs)
        return
    chunks = [pairs[i::workers] for i in range(workers)]
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_decode, chunks))


def _bench_phash(ds, n: int, rounds: int) -> dict:
    """Median ms per image of edgeseg's pHash and ImageHash's on the same decoded images."""
    from edgeseg.data.phash import phash

    images = [ds.load(i).image for i in range(n)]
    fns = {"edgeseg": phash}
    try:
        import imagehash
        from PIL import Image

        fns["imagehash"] = lambda a: imagehash.phash(Image.fromarray(a))
    except ImportError:
        pass
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for a in images:
            for k, fn in fns.items():
                t = time.perf_counter()
                fn(a)
                times[k].append(time.perf_counter() - t)
    return {k: round(float(np.median(v)) * 1000, 3) for k, v in times.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", help="dataset to check (default: synthesize one)")
    ap.add_argument("--n", type=int, default=200, help="images to synthesize (200)")
    ap.add_argument("--size", type=int, default=512, help="image side to synthesize (512)")
    ap.add_argument("--workers", type=int, default=2, help="processes (2)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--old-rev", default="3c19081", help="git revision of the old qa.py")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    from edgeseg.data import open_dataset, synth
    from edgeseg.data.qa import check

    tmp = None
    if args.data:
        data = Path(args.data)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="edgeseg-bench-data-")
        data = synth(Path(tmp.name) / "ds", "defects", n=args.n, size=args.size, seed=1)
    ds = open_dataset(data)
    pairs = [(s.image, s.label) for s in ds.samples if s.image]
    n = len(ds)
    from edgeseg.data import files

    fast = files._png_fast

    def pillow_only(fn):
        def run():
            files._png_fast = lambda im, src: None  # forked workers inherit it
            try:
                return fn(data, workers=args.workers, progress=False)
            finally:
                files._png_fast = fast

        return run

    paths = {"check": lambda: check(data, workers=args.workers, progress=False)}
    paths["check-pillow"] = pillow_only(check)
    old = _old_check(args.old_rev)
    if old is not None:
        paths[f"check@{args.old_rev}"] = pillow_only(old)
    paths["decode"] = lambda: _decode_all(pairs, args.workers)
    times: dict[str, list[float]] = {k: [] for k in paths}
    for _ in range(args.rounds):
        for name, fn in paths.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    rates = {k: n / float(np.median(v)) for k, v in times.items()}
    hashes = _bench_phash(ds, min(n, 60), args.rounds)
    out = {
        "dataset": str(data),
        "images": n,
        "size": args.size if not args.data else None,
        "workers": args.workers,
        "rounds": args.rounds,
        "img_per_s": {k: round(v, 1) for k, v in rates.items()},
        "ratio_to_check": {k: round(v / rates["check"], 3) for k, v in rates.items()},
        "phash_ms": hashes,
        "load": os.getloadavg()[0],
    }
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"{n} images, {args.workers} workers, {args.rounds} rounds, load {out['load']:.2f}")
        for k, v in rates.items():
            print(f"  {k:<20} {v:8.1f} img/s  ({v / rates['check']:.2f}x check)")
        for k, v in hashes.items():
            print(f"  phash {k:<14} {v:8.3f} ms/img  ({v / hashes['edgeseg']:.2f}x edgeseg)")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
