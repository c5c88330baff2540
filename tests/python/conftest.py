"""Shared fixtures; tests are skipped by capability (never by failure) with a clear reason."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg import _core


def _cuda_state() -> tuple[bool, str]:
    if not _core.build_info()["cuda"]:
        return False, "edgeseg core built without CUDA (no nvcc at build time)"
    ok, reason = _core.cuda_available()
    return ok, reason


CUDA_OK, CUDA_REASON = _cuda_state()


def pytest_collection_modifyitems(config, items):
    if CUDA_OK:
        return
    skip_gpu = pytest.mark.skip(reason=f"needs a usable CUDA device: {CUDA_REASON}")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)
