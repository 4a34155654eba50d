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


def recorded() -> dict[str, dict]:
    """Every recorded set of golden numbers, by file: one per kind of CPU they were made on. The float kernels torch
    picks differ by CPU (vector width, vendor), and with them the last bits of every tensor; golden.json was made on
    the first machines, golden-amd-epyc-avx512.json on an AMD EPYC with AVX-512 (same code, commit 4fca25e)."""
    return {p.name: json.loads(p.read_text()) for p in sorted(GOLDEN.glob("golden*.json"))}


def machine() -> str:
    import platform

    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    return f"{platform.machine()} {platform.processor() or 'cpu'}, torch CPU capability {capability}"


ROUNDING = 1e-3  # relative: two kinds of CPU differ by at most 5e-5 in any loss or metric recorded here


def close(a, b) -> bool:
    """Equal, floats to ROUNDING (relative): the numbers of one computation rounded by another CPU's kernels."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=ROUNDING, abs=1e-9)
    return a == b


@pytest.fixture(scope="module")
def golden(fresh):
    """The recorded numbers of this machine's kind: the set whose SynVid digests the fresh runs reproduce (a change of
    results matches none, or matches the SynVid and differs later); None on a kind of CPU none was recorded on."""
    return next((n for n in recorded().values() if n["synvid"] == fresh["synvid"]), None)


@pytest.mark.parametrize("part", ["synvid", "distill_full", "distill_lora", "demo_quick"])
def test_golden(fresh, golden, part):
    """Bit for bit on a recorded kind of CPU. On another, the digests cannot be compared, and the losses and metrics
    are compared to rounding with every recorded set (a change of results moves them by far more)."""
    if golden is not None:
        assert fresh[part] == golden[part]
        return
    if part == "synvid":
        pytest.skip(
            f"no golden numbers recorded for this kind of CPU ({machine()}); if the last green commit gives the "
            "same numbers here, record them: python tests/golden/runs.py tests/golden/golden-KIND.json"
        )
    for name, numbers in recorded().items():
        assert close(fresh[part], numbers[part]), f"{part} differs from {name} by more than rounding"


@pytest.mark.parametrize("name", sorted(recorded()))
def test_golden_covers_every_key_step(name):
    golden = recorded()[name]
    # 4 trajectories of 3 key steps: 4 latents (m+1) per item; 3 logged iterations with m losses each
    assert sum(1 for k in golden["synvid"] if "latent" in k) >= 4
    for run in ("distill_full", "distill_lora"):
        rows = golden[run]
        assert [r["iteration"] for r in rows] == [1, 2, 3]
        assert all(len(r["traj_k"]) == 3 and len(r["d_k"]) == 3 for r in rows)
    assert golden["distill_full"] != golden["distill_lora"]


def test_the_kinds_of_machine_differ_only_in_rounding():
    """The recorded sets are one computation rounded two ways: the same SynVid tensors, iterations and clips, and
    losses and metrics equal to rounding (a set recorded from changed code would differ by far more)."""
    sets = list(recorded().values())
    for other in sets[1:]:
        assert other["synvid"].keys() == sets[0]["synvid"].keys()
        for part in ("distill_full", "distill_lora", "demo_quick"):
            assert close(other[part], sets[0][part]), part
    assert not close(sets[0]["distill_full"], sets[0]["distill_lora"])  # the tolerance tells results apart
