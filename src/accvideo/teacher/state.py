"""Resumable training state on disk: written under a temporary name and renamed, so a kill never corrupts it."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from accvideo.core.files import load_state_file, save_state_file
from accvideo.errors import AccVideoError


def save_state(path: Path, state: dict) -> None:
    """Atomically write a dict of tensors, state dicts, ints and RNG states (a failed write is an OSError)."""
    save_state_file(path, state)


def load_state(path: Path) -> dict | None:
    """The saved state, or None when there is none (weights only: no code runs on load)."""
    return load_state_file(path, "training state", "delete it to redo the phase")


def check_step_finite(
    loss: torch.Tensor, grad_norm: torch.Tensor, phase: str, step: int, work: Path, lr: str, elsewhere: str
) -> None:
    """Stop before the optimiser step on a NaN or infinite loss or gradient norm: that step made every weight NaN,
    and the checkpoints and the teacher written after it were NaN with exit code 0. `lr`: 'name (now value)';
    `elsewhere`: the fix that trains in another work folder (train.work_fix)."""
    loss_v, norm_v = float(loss.detach()), float(grad_norm)
    if not (math.isfinite(loss_v) and math.isfinite(norm_v)):
        raise AccVideoError(
            f"teacher {phase} diverged at step {step + 1} (loss {loss_v:g}, gradient norm {norm_v:g}): stopped "
            f"without saving (the work folder {work} keeps its last checkpoint); rerun with a lower {lr} and "
            f"{elsewhere} (a work folder resumes only its own settings)"
        )
