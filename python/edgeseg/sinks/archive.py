"""``archive:DIR``: keeps the evidence of every NG frame on disk, within a disk quota.

Each NG frame (verdict NG, and every frame whose model output was not finite — record
``valid: false`` — whatever its verdict) becomes one folder ``DIR/<UTC time>_f<frame index>/``
(for example ``20261125T154412.123Z_f000042``) holding ``original.jpg`` (the camera frame),
``overlay.jpg`` (the classes over it), ``mask.png`` (the class map as a palette PNG: pixel
value = class index) and ``record.json`` (the loop's per-frame record plus the verdict's
details). Entries are written to a hidden temporary folder and renamed, so a crash never
leaves half an entry.

Options, in the spec (``archive:DIR?quota_mb=500&format=png``) or as keywords of
``open_sink``: ``quota_mb`` (total size of the entries; the oldest are removed first),
``format`` (``jpg`` or ``png`` for the original and the overlay), ``quality`` (JPEG, 1..100),
``min_free_mb`` (refuse to write when the disk has less free space; default 50), ``alpha``
(overlay opacity). A folder that cannot be created or written, or a full disk, raises
:class:`~edgeseg.errors.SinkError`: the loop counts it and goes on.
"""

from __future__ import annotations

import dataclasses
import difflib
import errno
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Optional, Union
from urllib.parse import parse_qsl

import numpy as np

from edgeseg.errors import EdgesegError, SinkError
from edgeseg.sinks._private import DIR_MODE, FILE_MODE, private_dirs
from edgeseg.sinks.base import LoopItem, Sink, register_sink
from edgeseg.sinks.encode import encode_record

__all__ = ["ArchiveSink"]

_ENTRY = re.compile(r"^\d{8}T\d{6}\.\d{3}Z_f\d+(_\d+)?$")
_OPTIONS = ("quota_mb", "format", "quality", "min_free_mb", "alpha")


class ArchiveSink(Sink):
    """Writes original, overlay, mask and JSON of every NG frame under ``directory``; see the
    module docstring for the layout and the options."""

    def __init__(
        self,
        directory: Union[str, Path],
        quota_mb: Optional[float] = None,
        format: str = "jpg",
        quality: int = 90,
        min_free_mb: float = 50.0,
        alpha: float = 0.5,
    ) -> None:
        self.directory = Path(directory)
        self.spec = f"archive:{directory}"
        fmt = str(format).lower().lstrip(".")
        fmt = "jpg" if fmt == "jpeg" else fmt
        if fmt not in ("jpg", "png"):
            raise SinkError(f"{self.spec}: format must be 'jpg' or 'png', got {format!r}")
        self.format = fmt
        self.quota = None if quota_mb is None else _positive(quota_mb, "quota_mb", self.spec)
        self.quality = int(_positive(quality, "quality", self.spec))
        if not 1 <= self.quality <= 100:
            raise SinkError(f"{self.spec}: quality must be in 1..100, got {quality!r}")
        self.min_free = _positive(min_free_mb, "min_free_mb", self.spec, allow_zero=True)
        self.alpha = float(alpha)
        self._entries: list[tuple[str, int]] = []  # (name, bytes), oldest first
        self._bytes = 0
        self._counts = {"written": 0, "failed": 0, "removed": 0, "skipped_ok": 0}
        self._last_error: Optional[str] = None
        self._opened = False

    def open(self) -> None:
        """Creates the folder, takes stock of the entries already there and applies the quota."""
        try:
            private_dirs(self.directory)
            names = sorted(p.name for p in self.directory.iterdir() if _ENTRY.match(p.name))
        except OSError as e:
            raise SinkError(
                f"{self.spec}: cannot use the folder {self.directory}: {_why(e)}; choose a "
                "writable folder (archive:DIR)"
            ) from None
        self._entries = [(n, _tree_bytes(self.directory / n)) for n in names]
        self._bytes = sum(b for _, b in self._entries)
        self._opened = True
        self._apply_quota(keep=None)

    def write(self, item: LoopItem) -> None:
        """Archives ``item`` when its verdict is NG or its result is not valid; raises
        SinkError when it cannot."""
        invalid = (item.record or {}).get("valid") is False
        if not invalid and (item.verdict is None or item.verdict.ok):
            self._counts["skipped_ok"] += 1
            return
        try:
            if not self._opened:
                self.open()
            name = self._write_entry(item)
        except SinkError as e:
            self._counts["failed"] += 1
            self._last_error = str(e)
            raise
        self._counts["written"] += 1
        self._apply_quota(keep=name)

    def stats(self) -> dict:
        """Counters: written, failed, removed (by the quota), skipped_ok, entries, bytes, and
        the last error."""
        return {
            **self._counts,
            "entries": len(self._entries),
            "bytes": self._bytes,
            "quota_mb": self.quota,
            "last_error": self._last_error,
        }

    def entries(self) -> list[Path]:
        """The entry folders, oldest first."""
        return [self.directory / n for n, _ in self._entries]

    def _write_entry(self, item: LoopItem) -> str:
        free = _free_mb(self.directory)
        if free is not None and free < self.min_free:
            raise SinkError(
                f"{self.spec}: disk full: {free:.1f} MB free on {self.directory}, below "
                f"min_free_mb={self.min_free:g}; free space or lower the quota"
            )
        name = self._entry_name(item)
        tmp = self.directory / f".tmp-{name}"
        try:
            tmp.mkdir(mode=DIR_MODE)
            os.chmod(tmp, DIR_MODE)  # before any file is in it: no umask decides who reads
            files = self._write_files(item, tmp)
            os.replace(tmp, self.directory / name)
        except (OSError, EdgesegError) as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise SinkError(
                f"{self.spec}: cannot write entry {name} in {self.directory}: {_why(e)}"
                + ("; the disk is full" if _errno(e) in (errno.ENOSPC, errno.EDQUOT) else "")
            ) from None
        size = sum(files.values())
        self._entries.append((name, size))
        self._bytes += size
        return name

    def _entry_name(self, item: LoopItem) -> str:
        t = float(item.frame.t_capture)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"
        base = f"{stamp}_f{int(item.frame.index):06d}"
        name, k = base, 1
        while (self.directory / name).exists():
            name, k = f"{base}_{k}", k + 1
        return name

    def _write_files(self, item: LoopItem, folder: Path) -> dict[str, int]:
        from PIL import Image

        result = item.result
        ext = self.format
        out: dict[str, int] = {}
        image = np.asarray(item.frame.image)
        rgb = image[..., ::-1] if image.ndim == 3 else image  # frames are BGR
        self._save(Image.fromarray(np.ascontiguousarray(rgb)), folder / f"original.{ext}")
        if result.frame is None and image.shape[:2] == result.shape and image.ndim == 3:
            result = dataclasses.replace(result, frame=image, rgb=False, _overlay_cache=None)
        if result.frame is not None:
            over = result.overlay(alpha=self.alpha)
            over = over if result.rgb else over[..., ::-1]
            self._save(Image.fromarray(np.ascontiguousarray(over)), folder / f"overlay.{ext}")
        result.save_png(folder / "mask.png")
        record = dict(item.record)
        record["details"] = item.verdict.details if item.verdict is not None else []
        record["files"] = sorted(p.name for p in folder.iterdir()) + ["record.json"]
        text = encode_record(record, indent=1)
        (folder / "record.json").write_text(text + "\n", encoding="utf-8")
        for p in folder.iterdir():
            os.chmod(p, FILE_MODE)
            out[p.name] = p.stat().st_size
        return out

    def _save(self, img, path: Path) -> None:
        if self.format == "jpg":
            img.save(path, format="JPEG", quality=self.quality)
        else:
            img.save(path, format="PNG", compress_level=1)

    def _apply_quota(self, keep: Optional[str]) -> None:
        """Removes the oldest entries until the total fits the quota."""
        if self.quota is None:
            return
        limit = self.quota * 1024 * 1024
        while self._entries and self._bytes > limit:
            name, size = self._entries[0]
            try:
                shutil.rmtree(self.directory / name)
            except FileNotFoundError:
                pass
            except OSError as e:
                self._counts["failed"] += 1
                self._last_error = f"{self.spec}: cannot remove {name} for the quota: {_why(e)}"
                raise SinkError(self._last_error) from None
            self._entries.pop(0)
            self._bytes -= size
            self._counts["removed"] += 1
            if name == keep:
                self._counts["failed"] += 1
                self._last_error = (
                    f"{self.spec}: entry {name} ({size / 1e6:.2f} MB) is larger than the quota "
                    f"quota_mb={self.quota:g} and was removed; raise the quota"
                )
                raise SinkError(self._last_error)


def _positive(value: Any, what: str, spec: str, allow_zero: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise SinkError(f"{spec}: {what} must be a number > 0, got {value!r}")
    return v


def _tree_bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.stat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def _free_mb(path: Path) -> Optional[float]:
    try:
        return shutil.disk_usage(path).free / (1024 * 1024)
    except OSError:
        return None


def _errno(e: BaseException) -> Optional[int]:
    while e is not None:
        if isinstance(e, OSError) and e.errno is not None:
            return e.errno
        e = e.__cause__ or e.__context__
    return None


def _why(e: BaseException) -> str:
    if isinstance(e, OSError):
        return f"{e.strerror or e} ({errno.errorcode.get(e.errno, e.errno)})"
    code = _errno(e)
    return f"{e}" + (f" ({errno.errorcode.get(code, code)})" if code else "")


def _factory(arg: str, **options: Any) -> ArchiveSink:
    """``archive:DIR[?quota_mb=..&format=..]``; keyword options override the query."""
    text = arg[len("archive:") :] if arg.startswith("archive:") else arg
    path, _, query = text.partition("?")
    if not path:
        raise SinkError("archive: needs a folder: archive:DIR (e.g. archive:ng/?quota_mb=500)")
    opts: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    opts.update(options)
    for key in opts:
        if key not in _OPTIONS:
            close = difflib.get_close_matches(key, _OPTIONS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise SinkError(f"archive:{text}: unknown option {key!r}; {hint}options: {_OPTIONS}")
    return ArchiveSink(path, **opts)


register_sink("archive", _factory)
