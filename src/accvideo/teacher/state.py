"""Resumable training state on disk: written under a temporary name and renamed, so a kill never corrupts it."""

from __future__ import annotations

import os
from pathlib import Path

import torch


def save_state(path: Path, state: dict) -> None:
    """Atomically write a dict of tensors, state dicts, ints and RNG states."""
    tmp = path.with_name(f".{path.name}.part")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_state(path: Path) -> dict | None:
    """The saved state, or None when there is none (weights only: no code runs on load)."""
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)
