"""Perceptual hashes (DCT pHash) and near-duplicate search.

``phash(image)`` is the 64-bit DCT hash built the way ImageHash's ``phash`` builds it: the
image as grey, shrunk to 32×32 (here by box averaging, there by Lanczos), its 2-D DCT-II,
the 8×8 lowest frequencies compared with their median. Two images whose hashes differ in few bits
(:func:`hamming`) look alike: a re-encoded JPEG, a frame a camera took twice, a slightly
shifted or brightened copy stay within a few bits; unrelated images differ in about 32.

It works on the decoded array QA and selection already hold (no PIL round trip) and needs
numpy alone: about half the time of ImageHash's ``phash`` on the same 512² arrays, with the
same robustness (a JPEG re-encode at quality 70 moves both by at most 2 bits) and without
ImageHash's SciPy and PyWavelets dependencies; ``tools/bench_data.py`` compares the two
where ImageHash is installed.

``near_duplicates(hashes, max_distance)`` returns every pair within ``max_distance`` bits.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["DEFAULT_MAX_DISTANCE", "hamming", "near_duplicates", "phash", "phash_hex"]

#: Bits two hashes may differ in and still count as the same picture (of 64).
DEFAULT_MAX_DISTANCE = 6

_N = 32  # side of the shrunk image
_K = 8  # side of the low-frequency block: 64 bits


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    return np.cos(np.pi * (2 * i + 1) * k / (2 * n)).astype(np.float64)


_D = _dct_matrix(_N)[:_K]  # only the rows of the kept frequencies
_BITS = (1 << np.arange(63, -1, -1, dtype=np.uint64)).astype(np.uint64)
_POP8 = np.array([bin(i).count("1") for i in range(256)], np.uint8)


def _gray(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim == 3:
        a = a[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return a.astype(np.float32, copy=False)


def _shrink(gray: np.ndarray) -> np.ndarray:
    """Box-average to 32×32 (each output pixel is the mean of its source area)."""
    h, w = gray.shape
    if h % _N == 0 and w % _N == 0:
        return gray.reshape(_N, h // _N, _N, w // _N).mean(axis=(1, 3), dtype=np.float64)
    # rows/columns weighted by their overlap with each output cell
    return _area_weights(h) @ gray.astype(np.float64) @ _area_weights(w).T


def _area_weights(n: int) -> np.ndarray:
    edges = np.linspace(0.0, n, _N + 1)
    lo, hi = edges[:-1, None], edges[1:, None]
    px = np.arange(n)[None, :]
    overlap = np.clip(np.minimum(hi, px + 1) - np.maximum(lo, px), 0.0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


def phash(image: np.ndarray) -> int:
    """The 64-bit pHash of an H×W grey or H×W×C (RGB/BGR, uint8) image, as an int."""
    a = np.asarray(image)
    if a.ndim not in (2, 3) or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"phash: expected an H×W or H×W×C image, got shape {a.shape}")
    small = _shrink(_gray(a))
    low = _D @ small @ _D.T  # the 8×8 lowest frequencies of the 2-D DCT-II
    bits = (low > np.median(low)).ravel()
    return int(np.bitwise_or.reduce(_BITS[bits])) if bits.any() else 0


def phash_hex(image: np.ndarray) -> str:
    """:func:`phash` as 16 hex digits (ImageHash's ``str(imagehash.phash(...))``)."""
    return f"{phash(image):016x}"


def hamming(a: int, b: int) -> int:
    """Bits in which two hashes differ."""
    return bin(int(a) ^ int(b)).count("1")


def _popcount(x: np.ndarray) -> np.ndarray:
    return _POP8[x.view(np.uint8).reshape(*x.shape, 8)].sum(axis=-1, dtype=np.int32)


def near_duplicates(
    hashes: Sequence[int], max_distance: int = DEFAULT_MAX_DISTANCE
) -> list[tuple[int, int, int]]:
    """``(i, j, distance)`` for every pair ``i < j`` whose hashes differ in at most
    ``max_distance`` bits, sorted by ``(i, j)``."""
    h = np.array([int(v) & 0xFFFFFFFFFFFFFFFF for v in hashes], dtype=np.uint64)
    out: list[tuple[int, int, int]] = []
    n = h.size
    block = 512
    for a in range(0, n, block):
        rows = h[a : a + block]
        d = _popcount(rows[:, None] ^ h[None, a:])  # only columns from a on: j >= i
        ii, jj = np.nonzero(d <= max_distance)
        for i, j in zip(ii.tolist(), jj.tolist()):
            gi, gj = a + i, a + j
            if gj > gi:
                out.append((gi, gj, int(d[i, j])))
    out.sort()
    return out
