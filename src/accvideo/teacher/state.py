"""Resumable training state on disk: written under a temporary name and renamed, so a kill never corrupts it."""

from __future__ import annotations

from pathlib import Path

from accvideo.core.files import load_state_file, save_state_file


def save_state(path: Path, state: dict) -> None:
    """Atomically write a dict of tensors, state dicts, ints and RNG states (a failed write is an OSError)."""
    save_state_file(path, state)


def load_state(path: Path) -> dict | None:
    """The saved state, or None when there is none (weights only: no code runs on load)."""
    return load_state_file(path, "training state", "delete it to redo the phase")
