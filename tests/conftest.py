"""Shared fixtures: a tiny random Wan pipeline on disk (built once per session, no download)."""

from __future__ import annotations

import os

# One thread per process: the suite's subprocess tests (torchrun, SIGKILL/resume) then never oversubscribe
# the cores, and float reductions run in the same order in and out of process. Set before torch loads.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(scope="session")
def tiny_wan_dir(tmp_path_factory):
    from accvideo.models.tiny import save_tiny_wan

    return save_tiny_wan(tmp_path_factory.mktemp("tiny") / "wan", seed=0, num_layers=3)


@pytest.fixture(scope="session")
def tiny_wan(tiny_wan_dir):
    from accvideo.models import load_adapter

    return load_adapter(tiny_wan_dir)


TINY_PROMPTS = [
    "a red circle moving left",
    "a blue square",
    "a green star moving up",
    "a cat on a red background",
    "a yellow triangle spinning",
    "a dog",
    "a white star",
    "a black cat moving right",
    "a grey square",
    "a purple circle",
]


@pytest.fixture(scope="session")
def synvid(tiny_wan_dir, tmp_path_factory):
    """10 trajectories of the tiny teacher, m = 5 key steps of a 10-step grid, 9 frames at 32x32."""
    from accvideo.synthesize import SynthConfig, synthesize

    root = tmp_path_factory.mktemp("synvid")
    (root / "p.txt").write_text("\n".join(TINY_PROMPTS) + "\n")
    synthesize(
        SynthConfig(
            teacher=str(tiny_wan_dir),
            prompts=str(root / "p.txt"),
            out=str(root / "syn"),
            steps=10,
            key_steps=5,
            frames=9,
            height=32,
            width=32,
            guidance=3.0,
            shard_size=5,
            batch=5,
            device="cpu",
        ),
        progress=False,
    )
    return root / "syn"


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def pytest_collection_finish(session):
    """Start the long end-to-end runs (one thread each) while the other tests use the other core."""
    ids = [item.nodeid for item in session.items]
    if any(i.startswith("tests/test_golden.py::test_golden[") for i in ids):
        from test_golden import start_golden_run

        session.config.golden_run = start_golden_run()
    if any("quick_run" in item.fixturenames for item in session.items if item.nodeid.startswith("tests/test_toy1d.py")):
        from test_toy1d import start_quick_run

        session.config.toy1d_run = start_quick_run()
