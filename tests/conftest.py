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


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
