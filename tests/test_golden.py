"""Golden numbers: a tiny SynVid, full and LoRA distillation losses and the quick demo's metrics, bit for bit.

They pin results across refactors (tests/golden/runs.py says how they are made and when to regenerate them).
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden"


def start_golden_run():
    """Run tests/golden/runs.py in a one-thread subprocess (float reductions in one order); (process, output)."""
    out = Path(tempfile.mkdtemp(prefix="accvideo-golden-")) / "now.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    log = (out.parent / "runs.log").open("w")  # a file, not a pipe: progress bars would fill a pipe and block
    proc = subprocess.Popen([sys.executable, str(GOLDEN / "runs.py"), str(out)], env=env, stdout=log, stderr=log)
    return proc, out


@pytest.fixture(scope="module")
def fresh(request):
    """The golden runs made now: started in the background when the session collected this file (conftest.py)."""
    run = request.config.golden_run if hasattr(request.config, "golden_run") else start_golden_run()
    proc, out = run
    assert proc.wait(timeout=900) == 0, (out.parent / "runs.log").read_text()[-3000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def golden():
    return json.loads((GOLDEN / "golden.json").read_text())


@pytest.mark.parametrize("part", ["synvid", "distill_full", "distill_lora", "demo_quick"])
def test_golden(fresh, golden, part):
    assert fresh[part] == golden[part]


def test_golden_covers_every_key_step(golden):
    # 4 trajectories of 3 key steps: 4 latents (m+1) per item; 3 logged iterations with m losses each
    assert sum(1 for k in golden["synvid"] if "latent" in k) >= 4
    for run in ("distill_full", "distill_lora"):
        rows = golden[run]
        assert [r["iteration"] for r in rows] == [1, 2, 3]
        assert all(len(r["traj_k"]) == 3 and len(r["d_k"]) == 3 for r in rows)
    assert golden["distill_full"] != golden["distill_lora"]
