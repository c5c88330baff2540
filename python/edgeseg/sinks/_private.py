"""Folders and files only their owner can read: outboxes and archives hold inspection results.

Modes are set explicitly (``chmod`` after creating), so they do not depend on the umask.
Folders that exist already keep their mode: they are the user's choice.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

__all__ = ["DIR_MODE", "FILE_MODE", "private_dirs", "private_file"]

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dirs(path: Union[str, Path]) -> Path:
    """Creates ``path`` and its missing parents with mode 0700 (existing ones are left)."""
    path = Path(path)
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for p in reversed(missing):
        try:
            p.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue
        os.chmod(p, DIR_MODE)
    if not path.is_dir():
        raise NotADirectoryError(f"{path} is not a folder")
    return path


def private_file(path: Union[str, Path]) -> Path:
    """Creates ``path`` empty with mode 0600 unless it exists (an existing file is left)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return Path(path)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return Path(path)
