"""Resumable training state on disk: written under a temporary name and renamed, so a kill never corrupts it."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from accvideo.core.files import temp_name
from accvideo.errors import AccVideoError


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
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable state file gets the same advice
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        raise AccVideoError(f"{path} is not a readable training state ({first}); delete it to redo the phase") from None
