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


@pytest.fixture(scope="module")
def golden(fresh):
    """The recorded numbers of this machine's kind: the set whose SynVid digests the fresh runs reproduce. A change of
    results matches none (or matches the SynVid and then differs in a later part)."""
    sets = recorded()
    for numbers in sets.values():
        if numbers["synvid"] == fresh["synvid"]:
            return numbers
    pytest.fail(
        f"the tiny SynVid matches none of {', '.join(sets)}: the code changed results, or this CPU ({machine()}) "
        "rounds differently from every recorded kind; if the last green commit gives the same numbers here, record "
        "them: python tests/golden/runs.py tests/golden/golden-KIND.json"
    )


@pytest.mark.parametrize("part", ["synvid", "distill_full", "distill_lora", "demo_quick"])
def test_golden(fresh, golden, part):
    assert fresh[part] == golden[part]


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
    """The recorded sets are one computation rounded two ways: the same keys, items and iterations, and losses that
    agree to float32 rounding (a set recorded from changed code would differ by more)."""
    sets = list(recorded().values())
    first = sets[0]
    for other in sets[1:]:
        assert other["synvid"].keys() == first["synvid"].keys()
        for run in ("distill_full", "distill_lora"):
            for a, b in zip(first[run], other[run], strict=True):
                assert a["iteration"] == b["iteration"] and a["samples"] == b["samples"]
                for key in ("traj_k", "d_k", "g_k"):
                    assert a[key] == pytest.approx(b[key], rel=1e-3, abs=1e-5), (run, key)
