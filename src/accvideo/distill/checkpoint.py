"""The whole training state (to resume), written atomically: a kill mid-write leaves the previous checkpoint whole."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from accvideo.distill.config import RESUMABLE_CHANGES
from accvideo.errors import AccVideoError

FORMAT = "accvideo.distill-state/1"
NAME = "checkpoint.pt"


def save_checkpoint(path: Path, state: dict) -> Path:
    """Write `state` (tensors, state dicts, ints, RNG states) to a temporary file, flush it, rename it over `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        torch.save({"format": FORMAT, **state}, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: Path) -> dict | None:
    """The saved state, or None when there is none (weights only: loading runs no code)."""
    path = Path(path)
    for stale in path.parent.glob(f".{path.name}.*.part"):  # left by a writer that was killed
        stale.unlink(missing_ok=True)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same advice
        raise AccVideoError(f"{path} is not a readable checkpoint ({exc}); delete it to start over") from None
    if state.get("format") != FORMAT:
        raise AccVideoError(f"{path} is not an accvideo distill checkpoint; choose another --out")
    return state


def check_resumable(saved: dict, config: dict, teacher: str, path: Path) -> None:
    """Refuse to resume a checkpoint of another teacher or other settings (those in RESUMABLE_CHANGES may change)."""
    if saved["teacher"] != teacher:
        raise AccVideoError(f"{path} was trained from another teacher; use another --out or the same --teacher")
    for key, value in config.items():
        if key not in RESUMABLE_CHANGES and saved["config"].get(key) != value:
            raise AccVideoError(
                f"{path} holds a run with {key}={saved['config'].get(key)!r}, not {value!r}; "
                f"use another --out, or the run's settings (only {', '.join(sorted(RESUMABLE_CHANGES))} may change)"
            )
