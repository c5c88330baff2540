"""Package, build info, thread pool, error tree and CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import edgeseg
from edgeseg import _core, kernels
from edgeseg.cli import main as cli_main


def test_build_info_shape_and_types():
    info = edgeseg.build_info()
    assert set(info) >= {"cuda", "tensorrt", "cuda_archs", "simd", "threads"}
    assert isinstance(info["cuda"], bool)
    assert info["tensorrt"] is None or (
        isinstance(info["tensorrt"], str) and info["tensorrt"].count(".") == 1
    )
    assert all(isinstance(a, int) and a >= 50 for a in info["cuda_archs"])
    # Archs are reported exactly when CUDA was compiled in; the default build covers Orin+Hopper.
    assert bool(info["cuda_archs"]) == info["cuda"]
    assert info["simd"] in {"avx512", "avx2", "sse2", "neon", "scalar"}
    assert info["threads"] == kernels.num_threads() >= 1
    assert edgeseg.__version__ == info["version"]


def test_simd_level_can_be_forced_to_scalar():
    code = "import edgeseg; print(edgeseg.build_info()['simd'])"
    env = {**os.environ, "EDGESEG_SIMD": "scalar"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "scalar"


def test_cuda_available_reports_a_reason():
    ok, reason = kernels.cuda_available()
    assert isinstance(ok, bool)
    assert isinstance(reason, str) and reason
    if not _core.build_info()["cuda"]:
        assert not ok and "without CUDA" in reason


def test_set_num_threads_roundtrip_and_errors():
    before = kernels.num_threads()
    try:
        kernels.set_num_threads(1)
        assert kernels.num_threads() == 1 == edgeseg.build_info()["threads"]
        kernels.set_num_threads(3)
        assert kernels.num_threads() == 3
    finally:
        kernels.set_num_threads(before)
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="set_num_threads"):
            kernels.set_num_threads(bad)
    with pytest.raises(ValueError, match="n must be >= 1"):
        _core.set_num_threads(0)


def test_error_tree():
    assert issubclass(edgeseg.InvalidArgumentError, edgeseg.EdgesegError)
    assert issubclass(edgeseg.InvalidArgumentError, ValueError)
    assert issubclass(edgeseg.CudaError, edgeseg.EdgesegError)
    assert issubclass(edgeseg.CudaError, RuntimeError)
    assert issubclass(edgeseg.DeviceUnavailableError, edgeseg.EdgesegError)
    # A C++ std::invalid_argument arrives as the typed error with the C++ message.
    with pytest.raises(edgeseg.InvalidArgumentError, match="images: expected at least one"):
        _core.preprocess([], 4, 4, 3, [0, 0, 0], [1, 1, 1], False, False, False, 0)


def test_cuda_device_request_without_cuda_is_a_clear_error():
    ok, reason = kernels.cuda_available()
    if ok:
        pytest.skip("a CUDA device is usable here")
    img = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(edgeseg.DeviceUnavailableError, match="CUDA is unusable"):
        kernels.preprocess(img, (4, 4), device="cuda")
    with pytest.raises(ValueError, match="device: expected one of"):
        kernels.preprocess(img, (4, 4), device="tpu")


def test_letterbox_geometry():
    lb = kernels.Letterbox(1920, 1080, 512, 512)
    assert (lb.resized_width, lb.resized_height) == (512, 288)
    assert (lb.pad_x, lb.pad_y) == (0, 112)
    assert lb.scale == pytest.approx(512 / 1920)
    tall = kernels.Letterbox(100, 400, 256, 256)
    assert (tall.resized_width, tall.resized_height, tall.pad_x, tall.pad_y) == (64, 256, 96, 0)
    import pickle

    again = pickle.loads(pickle.dumps(lb))
    assert (again.pad_y, again.resized_height) == (112, 288)
    with pytest.raises(ValueError, match="source size must be positive"):
        kernels.Letterbox(0, 10, 5, 5)


def test_cli_version_prints_build_info(capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main(["--version"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"edgeseg {edgeseg.__version__}")
    line = next(x for x in out.splitlines() if "build_info:" in x)
    assert json.loads(line.split("build_info:", 1)[1]) == edgeseg.build_info()


def test_cli_info_json(capsys):
    assert cli_main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["simd"] == edgeseg.build_info()["simd"]
    assert (info["cuda_device"] is None) != (info["cuda_unavailable_reason"] is None)


def test_cli_without_command_shows_help(capsys):
    assert cli_main([]) == 2
    assert "bench" in capsys.readouterr().out


def test_console_script_runs():
    out = subprocess.run(
        [sys.executable, "-m", "edgeseg", "--version"], capture_output=True, text=True, check=True
    )
    assert "cpu simd:" in out.stdout


def test_recycled_output_buffers_never_alias_live_results():
    """Outputs come from a buffer pool; a result the caller still holds is never reused."""
    rng = np.random.default_rng(0)
    a_logits = rng.standard_normal((3, 8, 8)).astype(np.float32)
    b_logits = -a_logits
    a = kernels.postprocess(a_logits, (32, 48))
    a_map = a.class_map.copy()
    for _ in range(5):  # churn the pool with same-sized outputs
        b = kernels.postprocess(b_logits, (32, 48))
    assert not np.shares_memory(a.class_map, b.class_map)
    assert not np.shares_memory(a.confidence, b.confidence)
    np.testing.assert_array_equal(a.class_map, a_map)
    assert (a.class_map != b.class_map).any()
    del a, b
    c = kernels.postprocess(a_logits, (32, 48))  # may reuse a freed buffer: must be rewritten
    np.testing.assert_array_equal(c.class_map, a_map)
    assert c.class_map.flags.writeable and c.class_map.flags.c_contiguous


def test_cli_forwards_options_to_subcommands(capsys):
    assert cli_main(["bench", "--only", "pre", "--repeat", "1", "--warmup", "0", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert {r["workload"] for r in rows} == {"preprocess 1920x1080 -> 512x512 NCHW"}
    with pytest.raises(SystemExit) as exc:
        cli_main(["bench", "--help"])
    assert exc.value.code == 0
    assert "--only" in capsys.readouterr().out
