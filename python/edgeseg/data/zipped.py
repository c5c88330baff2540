"""Unpacking a zipped dataset within a budget (a zip bomb is refused, not unpacked).

Every member is checked before a byte is written: its path must stay inside the target
folder (no absolute paths, no ``..``), its declared size must fit the budget and its
compression ratio must be plausible for images and labels. The bytes are then streamed and
counted, so a member whose header lies about its size is stopped at the budget too (and
``zipfile`` checks its CRC at the end).

Knobs (environment variables):

- ``EDGESEG_MAX_ZIP_BYTES``: total unpacked size of one archive (default 8 GiB), and never
  more than the free space of the temporary folder;
- ``EDGESEG_MAX_ZIP_RATIO``: largest unpacked/packed ratio of a member above 1 MiB (default
  100; photos and PNG masks are already compressed, about 1:1, LabelMe JSON about 5:1).
"""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path, PurePosixPath

from edgeseg._text import printable
from edgeseg.errors import DatasetError

__all__ = ["MAX_ZIP_BYTES", "MAX_ZIP_RATIO", "extract_zip"]

#: Default total unpacked size of one archive (``EDGESEG_MAX_ZIP_BYTES``).
MAX_ZIP_BYTES = 8 * 1024**3
#: Default largest compression ratio of a member above :data:`_RATIO_FLOOR` bytes
#: (``EDGESEG_MAX_ZIP_RATIO``).
MAX_ZIP_RATIO = 100
_RATIO_FLOOR = 1024 * 1024
_CHUNK = 1024 * 1024


def _env_number(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        n = float(value)
    except ValueError:
        n = 0.0
    if not n > 0:
        raise DatasetError(f"{name}={value!r}: expected a number > 0 (default {default:g})")
    return n


def _safe_name(archive: str, name: str) -> PurePosixPath:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise DatasetError(
            f"{archive}: member {printable(name)!r} points outside the archive; rebuild the zip "
            "with relative paths"
        )
    return path


def extract_zip(archive: Path, dest: Path) -> None:
    """Unpacks ``archive`` into the existing folder ``dest`` within the budget.

    Raises:
        DatasetError: a member outside the folder, over the size or ratio budget, a member
            whose bytes do not match its header, or a damaged archive; the message names the
            archive, the member and the knob.
    """
    shown = printable(str(archive))
    max_bytes = int(_env_number("EDGESEG_MAX_ZIP_BYTES", MAX_ZIP_BYTES))
    max_ratio = _env_number("EDGESEG_MAX_ZIP_RATIO", MAX_ZIP_RATIO)
    try:
        with zipfile.ZipFile(archive) as z:
            members = z.infolist()
            total = 0
            for m in members:
                _safe_name(shown, m.filename)
                total += m.file_size
                ratio = m.file_size / max(1, m.compress_size)
                if m.file_size > _RATIO_FLOOR and ratio > max_ratio:
                    raise DatasetError(
                        f"{shown}: member {printable(m.filename)!r} unpacks {m.compress_size} "
                        f"bytes to {m.file_size} ({ratio:.0f}:1, above {max_ratio:g}:1); that "
                        "is not an image or a label (a zip bomb?). Remove it, or raise "
                        "EDGESEG_MAX_ZIP_RATIO"
                    )
            if total > max_bytes:
                raise DatasetError(
                    f"{shown}: unpacks to {total / 1e9:.2f} GB, above the budget of "
                    f"{max_bytes / 1e9:.2f} GB; unzip it yourself and give the folder, or raise "
                    "EDGESEG_MAX_ZIP_BYTES"
                )
            free = shutil.disk_usage(dest).free
            if total > free:
                raise DatasetError(
                    f"{shown}: unpacks to {total / 1e9:.2f} GB but {dest} has "
                    f"{free / 1e9:.2f} GB free; unzip it elsewhere and give the folder, or set "
                    "TMPDIR to a larger disk"
                )
            written = 0
            for m in members:
                written = _extract_member(z, m, dest, shown, written, max_bytes)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, OSError) as e:
        raise DatasetError(f"{shown}: cannot extract ({e}); zip the dataset again") from None
    except (EOFError, ValueError, RuntimeError) as e:  # truncated or encrypted members
        raise DatasetError(f"{shown}: cannot extract ({e}); zip the dataset again") from None


def _extract_member(
    z: zipfile.ZipFile, m: zipfile.ZipInfo, dest: Path, shown: str, written: int, budget: int
) -> int:
    rel = _safe_name(shown, m.filename)
    target = dest.joinpath(*rel.parts) if rel.parts else dest
    if m.is_dir():
        target.mkdir(parents=True, exist_ok=True)
        return written
    target.parent.mkdir(parents=True, exist_ok=True)
    left = m.file_size
    with z.open(m) as src, open(target, "wb") as out:
        while True:
            chunk = src.read(_CHUNK)
            if not chunk:
                break
            left -= len(chunk)
            written += len(chunk)
            if left < 0 or written > budget:
                raise DatasetError(
                    f"{shown}: member {printable(m.filename)!r} holds more bytes than its header "
                    "declares (a forged archive?); zip the dataset again"
                )
            out.write(chunk)
    return written
