"""``edgeseg data``: check, synthesize, convert, describe, select and import datasets.

Exit codes: 0 success (``check``: no errors, warnings allowed), 1 ``check`` found errors or
``select`` could not read some images (listed in its JSON), 2 the dataset, the model or the
arguments could not be used (message on stderr).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from typing import Optional

from edgeseg._cli import (
    EXIT_ERROR,
    HELP_FORMATTER,
    add_json,
    add_no_progress,
    epilog,
    error,
    guarded,
    show_progress,
    write_json,
)
from edgeseg.errors import DatasetError


def _add_source(p) -> None:
    """--from / --ignore / --cityscapes-ids: how to read a dataset (check, convert, info)."""
    from edgeseg.data.formats import FORMATS

    p.add_argument(
        "--from",
        dest="layout",
        choices=FORMATS,
        metavar="FORMAT",
        help=f"the dataset's format instead of detecting it: {', '.join(FORMATS)}",
    )
    p.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="CLASS",
        help="a class whose pixels are void (ignored by training and metrics); repeatable",
    )
    p.add_argument(
        "--cityscapes-ids",
        choices=("train", "all"),
        default="train",
        help="Cityscapes: the 19 train classes, other ids void (default), or all 34 label ids",
    )


def _open(path: str, args, classes=None, quiet: bool = True):
    from edgeseg.data.dataset import open_dataset

    with warnings.catch_warnings():
        if quiet:  # check and info list the left-out images themselves
            warnings.simplefilter("ignore")
        return open_dataset(
            path,
            classes=classes,
            layout=args.layout,
            ignore=args.ignore,
            cityscapes_ids=args.cityscapes_ids,
        )


def _add_check(sub) -> None:
    p = sub.add_parser(
        "check",
        help="label QA: missing/unreadable files, unknown colours, gaps, imbalance, duplicates "
        "and near duplicates across splits, border slivers, classes missing from a split",
        description="Decode every image and label and report what breaks the labelling rules. "
        "Exit code 0 when there are only warnings, 1 when there are label errors, 2 when the "
        "dataset cannot be opened at all (no such path, unknown layout).",
        epilog=epilog(
            "edgeseg data check data/defects",
            "edgeseg data check data/defects --json qa.json --no-progress",
        ),
        formatter_class=HELP_FORMATTER,
    )
    p.add_argument("dataset", help="dataset folder or .zip (folder, CVAT or LabelMe layout)")
    add_json(p, "the full report")
    p.add_argument("--classes", metavar="YAML", help="class map to use instead of the dataset's")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument(
        "--max-unlabeled",
        type=float,
        default=0.10,
        help="warn when more than this fraction of an image is void/unknown (default 0.10)",
    )
    p.add_argument(
        "--min-pixel-share",
        type=float,
        default=0.001,
        help="warn when a class has less than this share of labelled pixels (default 0.001)",
    )
    p.add_argument(
        "--min-class-images",
        type=int,
        default=5,
        help="warn when a class appears in fewer images (default 5)",
    )
    p.add_argument(
        "--max-distance",
        type=int,
        default=6,
        help="perceptual-hash bits (of 64) within which two images are near duplicates "
        "(default 6; -1 turns the check off)",
    )
    p.add_argument("--limit", type=int, default=20, help="findings printed per kind (default 20)")
    _add_source(p)
    add_no_progress(p)
    p.set_defaults(func=_cmd_check)


def _cmd_check(args) -> int:
    from edgeseg.data.qa import check, format_report

    try:
        report = check(
            _open(args.dataset, args, args.classes),
            classes=args.classes,
            workers=args.workers,
            max_unlabeled=args.max_unlabeled,
            min_pixel_share=args.min_pixel_share,
            min_class_images=args.min_class_images,
            progress=show_progress(args),
            max_distance=args.max_distance,
        )
    except DatasetError as e:
        # The dataset could not even be opened: still give scripts a report to read.
        report = {
            "dataset": args.dataset,
            "num_images": 0,
            "classes": [],
            "errors": [{"kind": "invalid_dataset", "file": args.dataset, "detail": str(e)}],
            "warnings": [],
            "class_pixels": {},
            "class_images": {},
        }
        error("edgeseg data check", e)
        bad_input = True
    else:
        if args.json != "-":
            print(format_report(report, limit=args.limit))
        bad_input = False
    write_json(args.json, report)
    # 2: the input is not a dataset (nothing was checked); 1: findings in a dataset.
    return 2 if bad_input else 1 if report["errors"] else 0


def _add_synth(sub) -> None:
    p = sub.add_parser(
        "synth",
        help="write a synthetic inspection dataset with exact masks",
        description="Write a folder dataset (images/, masks/, classes.yaml, splits/) of "
        "textured surfaces with scratches, stains and cracks (--task defects) or textured "
        "products on a surface (--task objects). Deterministic for a seed.",
        epilog=epilog("edgeseg data synth data/defects --task defects --n 200 --size 256"),
        formatter_class=HELP_FORMATTER,
    )
    p.add_argument("out", help="output folder")
    p.add_argument("--task", choices=("defects", "objects"), default="defects")
    p.add_argument("--n", type=int, default=200, help="number of images (default 200)")
    p.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset already in OUT")
    add_no_progress(p)
    add_json(p, "a summary")
    p.set_defaults(func=_cmd_synth)


def _cmd_synth(args) -> int:
    from edgeseg.data.synth import synth

    out = synth(
        args.out,
        task=args.task,
        n=args.n,
        size=args.size,
        seed=args.seed,
        workers=args.workers,
        overwrite=args.overwrite,
        progress=show_progress(args),
    )
    summary = {"path": str(out), "task": args.task, "n": args.n, "size": args.size}
    write_json(args.json, summary)
    if args.json != "-":
        print(f"wrote {args.n} {args.task} images to {out}")
    return 0


def _add_convert(sub) -> None:
    p = sub.add_parser(
        "convert",
        help="convert a dataset to a folder dataset or a CVAT export, pixel for pixel",
        description="Read SRC in any supported format (folder, CVAT, Pascal VOC, Cityscapes, "
        "COCO, Label Studio, Roboflow, LabelMe; detected, or named by --from) and write DST as "
        "a folder dataset or a CVAT 'Segmentation mask 1.1' export (a DST ending in .zip "
        "writes an archive).",
        epilog=epilog(
            "edgeseg data convert data/defects data/defects_cvat.zip --to cvat",
            "edgeseg data convert VOCdevkit/VOC2012 data/voc --from voc",
            "edgeseg data convert labelstudio_export/ data/parts --from labelstudio",
        ),
        formatter_class=HELP_FORMATTER,
    )
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument(
        "--to", choices=("folder", "cvat"), default="folder", help="target layout (folder)"
    )
    p.add_argument("--classes", metavar="YAML", help="class map to use instead of SRC's")
    p.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    _add_source(p)
    add_no_progress(p)
    p.set_defaults(func=_cmd_convert)


def _cmd_convert(args) -> int:
    from edgeseg.data.convert import convert

    out = convert(
        _open(args.src, args, args.classes, quiet=False),
        args.dst,
        to=args.to,
        classes=args.classes,
        overwrite=args.overwrite,
        progress=show_progress(args),
    )
    print(f"wrote {args.to} dataset {out}")
    return 0


def _add_info(sub) -> None:
    p = sub.add_parser(
        "info",
        help="layout, classes and split sizes of a dataset (fast)",
        epilog=epilog("edgeseg data info data/defects --json"),
        formatter_class=HELP_FORMATTER,
    )
    p.add_argument("dataset")
    add_json(p, "the dataset's layout, classes and splits")
    _add_source(p)
    p.set_defaults(func=_cmd_info)


def _cmd_info(args) -> int:
    ds = _open(args.dataset, args)
    info = {
        "dataset": ds.display_root,
        "layout": ds.layout,
        "num_images": len(ds),
        "splits": ds.split_sizes(),
        "classes": [c.to_dict() for c in ds.classes],
        "ignored_classes": [c.to_dict() for c in ds.classes.ignored],
        "issues": len(ds.issues),
    }
    write_json(args.json, info)
    if args.json != "-":
        print(repr(ds))
        for c in ds.classes:
            print(f"  {c.id:>5}  {c.name}  {c.color}")
        if ds.issues:
            print(f"{len(ds.issues)} problem(s) found while pairing files: run edgeseg data check")
    return 0


def _add_select(sub) -> None:
    from edgeseg.data.select import CRITERIA

    p = sub.add_parser(
        "select",
        help="pick the images worth labelling (uncertainty, disagreement, rare classes)",
        description="Score every image of SRC (a folder or an NG archive) with --model and copy "
        "the --n best to --out with selection.csv: by uncertainty (smallest top-1 minus top-2 "
        "probability), disagreement (with --model2, or with the mirrored image) or rare-class "
        "(largest predicted area of rare classes). Near duplicates (perceptual hash) of an "
        "image already picked are skipped.",
        epilog=epilog(
            "edgeseg data select ng_archive/ --model model.onnx --n 100 --out to_label",
            "edgeseg data select shots/ --model a.onnx --model2 b.onnx --by disagreement "
            "--out to_label",
        ),
        formatter_class=HELP_FORMATTER,
    )
    p.add_argument("src", nargs="+", help="image folders (recursive), files, globs, NG archives")
    p.add_argument("--model", required=True, help="model.onnx that scores the images")
    p.add_argument("--out", required=True, help="folder for the picked images + selection.csv")
    p.add_argument("--n", type=int, default=100, help="images to pick (default 100)")
    p.add_argument("--by", choices=CRITERIA, default="uncertainty")
    p.add_argument("--model2", help="second model for --by disagreement (default: mirror image)")
    p.add_argument(
        "--rare",
        help="rare classes for --by rare-class, comma-separated (default: "
        "classes with less than half an even share of the predicted area)",
    )
    p.add_argument(
        "--max-distance",
        type=int,
        default=6,
        help="pHash bits within which two images are near duplicates (default 6; 0 = exact)",
    )
    p.add_argument("--threads", type=int, default=None, help="CPU inference threads")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    add_json(p, "the selection")
    add_no_progress(p)
    p.set_defaults(func=_cmd_select)


def _cmd_select(args) -> int:
    from edgeseg.data.select import select

    rep = select(
        args.src,
        args.model,
        args.out,
        n=args.n,
        by=args.by,
        model2=args.model2,
        rare=[c.strip() for c in args.rare.split(",") if c.strip()] if args.rare else None,
        max_distance=args.max_distance,
        threads=args.threads,
        overwrite=args.overwrite,
        progress=show_progress(args),
    )
    write_json(args.json, rep)
    if args.json != "-":
        print(
            f"picked {len(rep['selected'])} of {rep['images']} images by {rep['by']} into "
            f"{rep['out']} ({rep['near_duplicates_skipped']} near duplicates skipped"
            f"{', ' + str(len(rep['failed'])) + ' unreadable' if rep['failed'] else ''})"
        )
    return 1 if rep["failed"] else 0


def _add_import(sub) -> None:
    p = sub.add_parser(
        "import",
        help="corrected labels (Label Studio JSON, CVAT export, any dataset) -> folder "
        "dataset, merged into a base",
        description="Write corrected labels as a folder dataset: a Label Studio JSON export "
        "(its polygons rasterised: the labeller's annotations, else the predictions) or a "
        "dataset in any layout (a CVAT 'Segmentation mask 1.1' export, a folder, LabelMe). "
        "With --base the base dataset is copied first and the imported images join its train "
        "split. Classes are matched by name: the base's first, in their order, and labels it "
        "lacks appended as new classes.",
        epilog=epilog(
            "edgeseg data import export.json merged/ --base data/defects "
            "--images pre/labelstudio/images",
            "edgeseg data import cvat_export.zip merged/ --base data/defects",
        ),
        formatter_class=HELP_FORMATTER,
    )
    p.add_argument("tasks", help="Label Studio JSON export, or a dataset folder / .zip")
    p.add_argument("out", help="folder dataset to write")
    p.add_argument("--base", help="dataset to merge into (its splits are kept)")
    p.add_argument("--classes", metavar="YAML", help="class map (default: --base's)")
    p.add_argument(
        "--images", help="Label Studio: folder of the tasks' images (default: TASKS/../images)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT")
    add_json(p, "a summary")
    p.set_defaults(func=_cmd_import)


def _cmd_import(args) -> int:
    from pathlib import Path

    from edgeseg.data.preannotate import import_dataset, import_labelstudio

    if Path(args.tasks).suffix.lower() == ".json":
        rep = import_labelstudio(
            args.tasks,
            args.out,
            classes=args.classes,
            base=args.base,
            images=args.images,
            overwrite=args.overwrite,
        )
    else:
        rep = import_dataset(
            args.tasks, args.out, base=args.base, classes=args.classes, overwrite=args.overwrite
        )
    write_json(args.json, rep)
    if args.json != "-":
        new = f"; new classes: {', '.join(rep['new_classes'])}" if rep["new_classes"] else ""
        print(
            f"imported {rep['images']} images ({rep['annotated']} annotated, "
            f"{rep['predicted_only']} as predicted) into {rep['out']}{new}"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeseg data",
        description="Datasets: label QA, synthetic inspection data, format conversion, "
        "frames worth labelling, corrected labels merged back.",
        epilog=epilog(
            "edgeseg data synth data/defects --n 200",
            "edgeseg data check data/defects --json qa.json",
        ),
        formatter_class=HELP_FORMATTER,
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    _add_check(sub)
    _add_synth(sub)
    _add_convert(sub)
    _add_info(sub)
    _add_select(sub)
    _add_import(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    ok, status = guarded(f"edgeseg data {args.action}", lambda: int(args.func(args) or 0))
    return status if ok else EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
