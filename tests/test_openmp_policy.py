"""OpenMP threads sleep when idle unless the user chose otherwise (lookalike/__init__.py):
spinning threads took the cores a bulk load's and an ingest's Python stages need."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

#: any lookalike module runs the package's __init__ first, so the policy is in place before
#: the module (or anything after it) loads FAISS's or torch's libgomp
PROBE = "import os, lookalike.index.ann, faiss; print(os.environ.get('OMP_WAIT_POLICY'))"


def _policy(env_value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if env_value is not None:
        env["OMP_WAIT_POLICY"] = env_value
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_faiss_loads_with_passive_openmp_threads_by_default() -> None:
    assert _policy(None) == "PASSIVE"


@pytest.mark.parametrize("chosen", ["ACTIVE", "passive"])
def test_a_policy_the_user_set_is_kept(chosen: str) -> None:
    assert _policy(chosen) == chosen
