"""Shared fixtures: a tiny random Wan pipeline on disk (built once per session, no download)."""

from __future__ import annotations

import os
import signal

# The suite sends Ctrl-C to itself and to the commands it starts: a suite started with SIGINT ignored (a script's
# `cmd &`) would pass that on to every command, which keeps it ignored (core/interrupts.py), as Python does.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

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
    """Start the long end-to-end runs (one thread each, once per session) while the other tests run beside them."""
    import background

    if session.config.option.collectonly:  # nothing runs: a run started now would lose its folder at session end
        return
    fixtures = {name for item in session.items for name in getattr(item, "fixturenames", ())}
    if "fresh" in fixtures:
        from test_golden import ONE_THREAD, golden_command

        background.start("golden", golden_command(), ONE_THREAD)
    if "quick_run" in fixtures:
        from test_toy1d import ONE_THREAD, quick_command

        background.start("toy1d", quick_command(), ONE_THREAD)


def pytest_sessionfinish(session):
    """The background runs' folders go with the session (in the controller, or the one process without xdist)."""
    if not hasattr(session.config, "workerinput"):
        import shutil

        import background

        shutil.rmtree(background.folder("x").parent, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_i2v_dir(tmp_path_factory):
    """A tiny random Wan 2.1 image-to-video pipeline (WanImageToVideoPipeline) on disk."""
    from accvideo.models.tiny import save_tiny_wan_i2v

    return save_tiny_wan_i2v(tmp_path_factory.mktemp("tiny") / "wan_i2v", seed=0)


@pytest.fixture(scope="session")
def tiny_i2v(tiny_i2v_dir):
    from accvideo.models import load_adapter

    return load_adapter(tiny_i2v_dir)
