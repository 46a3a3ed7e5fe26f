"""`lookalike ingest --ray` prints what lookalike has to say, not Ray's internal notices."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lookalike.sample import COLORS, draw_item

pytest.importorskip("ray")
ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_ray_ingest_output_is_lookalikes_own(tmp_path):
    (tmp_path / "img").mkdir()
    lines = []
    for i, color in enumerate(list(COLORS.values())[:4]):
        draw_item("dots", color, seed=i, size=128).save(tmp_path / "img" / f"i{i}.jpg")
        lines.append({"_id": f"i{i}", "_file": f"img/i{i}.jpg"})
    lines.append({"_id": "gone", "_file": "img/gone.jpg"})
    (tmp_path / "cat.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env = {k: v for k, v in env.items() if not k.startswith("RAY_")}
    proc = subprocess.run([sys.executable, "-m", "lookalike.cli", "ingest", "cat.jsonl", "-c", "r", "--ray",
                           "--data", "d"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr  # the missing file
    assert proc.stdout.strip().endswith("4 inserted, 0 updated, 0 unchanged, 1 error"), proc.stdout
    errors = proc.stderr.splitlines()
    assert len(errors) == 1 and errors[0].startswith("error: line 5: gone: file not found: "), proc.stderr
