"""What every reader and the dataset share: a sample, a decoded sample and a QA finding.

A reader (:mod:`edgeseg.data.formats`) lists :class:`Sample` records; the dataset decodes one
into a :class:`Loaded`; problems become :func:`finding` dicts (``edgeseg data check``) or a
:class:`~edgeseg.DatasetError` that carries its finding kind (:func:`kind_error`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from edgeseg._text import printable
from edgeseg.errors import DatasetError

__all__ = ["Loaded", "Sample", "finding", "kind_error"]


def finding(kind: str, file: str, detail: str, severity: str = "error") -> dict:
    """A QA finding as it appears in the report (``severity`` is 'error' or 'warning'); file
    names that are not UTF-8 are shown with ``\\xNN`` escapes."""
    return {
        "kind": kind,
        "file": printable(file),
        "detail": printable(detail),
        "severity": severity,
    }


def kind_error(kind: str, message: str) -> DatasetError:
    """A DatasetError that also tells QA which finding kind it is."""
    err = DatasetError(message)
    err.kind = kind
    return err


@dataclass
class Sample:
    """One image and its label source. Paths are absolute strings (picklable)."""

    key: str  # relative path without suffix, '/'-separated; the stem used in split files
    image: Optional[str]  # None: embedded in the LabelMe JSON
    label: str  # mask file, or the annotation file (LabelMe, COCO, Label Studio JSON)
    kind: str  # "mask", or the format whose loader draws it ("labelme", "coco", ...)
    split: Optional[str] = None
    #: the annotation item inside ``label`` ("image id 7", "task 12"), named in messages
    item: Optional[str] = None
    #: what the format's loader needs to draw the label (annotations of this image)
    payload: Any = None


@dataclass
class Loaded:
    """What :meth:`SegDataset.load` returns: everything QA needs about one sample."""

    image: np.ndarray
    mask: np.ndarray
    unknown: dict = field(default_factory=dict)  # "colour (r, g, b)" / "id 7" / "label 'x'" → px
    orientation: int = 1
    #: (kind, detail) warnings found while drawing (a polygon partly outside the image)
    notes: list = field(default_factory=list)
