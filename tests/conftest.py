"""Shared fixtures: a tiny random Wan pipeline on disk (built once per session, no download)."""

from __future__ import annotations

import pytest
import torch


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
