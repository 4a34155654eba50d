"""Golden numbers: a tiny SynVid, full and LoRA distillation losses and the quick demo's metrics, bit for bit.

They pin results across refactors (tests/golden/runs.py says how they are made and when to regenerate them).
"""

import json
import sys
from pathlib import Path

import background
import pytest

GOLDEN = Path(__file__).parent / "golden"


ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # float reductions in one order


def golden_command() -> list[str]:
    """tests/golden/runs.py writing now.json into the background run's folder (conftest.py starts it early)."""
    return [sys.executable, str(GOLDEN / "runs.py"), str(background.folder("golden") / "now.json")]


@pytest.fixture(scope="module")
def fresh():
    """The golden runs made now: started in the background when the session collected this file (conftest.py)."""
    out = background.wait("golden", golden_command(), ONE_THREAD)
    return json.loads((out / "now.json").read_text())


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
