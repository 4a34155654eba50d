"""Per-tensor digests for shard integrity (the teacher's identity moved to accvideo.models.identity)."""

from __future__ import annotations

import hashlib

import torch


def tensor_sha256(t: torch.Tensor) -> str:
    """Hex sha256 of a tensor's bytes (dtype-agnostic: read as raw uint8)."""
    flat = t.detach().contiguous().cpu().reshape(-1)
    return hashlib.sha256(flat.view(torch.uint8).numpy()).hexdigest()  # buffer protocol: no copy
