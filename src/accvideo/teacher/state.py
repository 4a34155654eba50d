"""Resumable training state on disk: written under a temporary name and renamed, so a kill never corrupts it."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from accvideo.core.files import load_state_file, temp_name


def save_state(path: Path, state: dict) -> None:
    """Atomically write a dict of tensors, state dicts, ints and RNG states."""
    tmp = temp_name(path)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_state(path: Path) -> dict | None:
    """The saved state, or None when there is none (weights only: no code runs on load)."""
    return load_state_file(path, "training state", "delete it to redo the phase")
