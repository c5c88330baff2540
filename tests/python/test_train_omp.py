"""The OpenMP settings edgeseg.train adds before torch loads (edgeseg.train.omp_env)."""

import os
import subprocess
import sys

from edgeseg.train import omp_env


def test_quiet_cpu_spins_briefly_busy_cpu_never():
    assert omp_env({}, load=0.4, cores=2) == {
        "OMP_WAIT_POLICY": "PASSIVE",
        "GOMP_SPINCOUNT": "10000",
    }
    assert omp_env({}, load=1.0, cores=2) == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert omp_env({}, load=7.9, cores=16) == {
        "OMP_WAIT_POLICY": "PASSIVE",
        "GOMP_SPINCOUNT": "10000",
    }
    assert omp_env({}, load=8.0, cores=16) == {"OMP_WAIT_POLICY": "PASSIVE"}


def test_an_explicit_setting_wins():
    assert omp_env({"OMP_WAIT_POLICY": "ACTIVE"}, load=0.0, cores=2) == {}
    assert omp_env({"GOMP_SPINCOUNT": "0"}, load=9.0, cores=2) == {}


def _env_after_import(extra: dict) -> list:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(extra)
    code = (
        "import os, edgeseg.train, torch; "
        "print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_import_sets_them_before_torch_and_keeps_the_users():
    policy, spin = _env_after_import({})
    assert policy == "PASSIVE" and spin in ("10000", "None")
    assert _env_after_import({"OMP_WAIT_POLICY": "ACTIVE"}) == ["ACTIVE", "None"]
