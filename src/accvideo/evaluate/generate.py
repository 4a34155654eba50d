"""Sampling a model on a prompt list for evaluation: the one sampling path in batches, each clip from its own seed."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from accvideo.core.sampling import SamplingPlan, encode_negative, sample_latents


@torch.no_grad()
def generate_videos(
    adapter,
    pairs: Sequence[tuple[str, int]],
    plan: SamplingPlan,
    *,
    frames: int,
    height: int,
    width: int,
    batch_size: int = 4,
    progress: bool = True,
) -> np.ndarray:
    """Clips (N, F, H, W, 3) uint8 for (prompt, seed) pairs; batching does not change any clip's noise.

    Clips are quantised to 8 bits as any saved video is, so re-scoring a saved .npy folder is exact.
    """
    shape = adapter.latent_shape(frames, height, width)
    uncond = encode_negative(adapter, plan)  # one row, shared by every batch
    out: list[np.ndarray] = []
    bar = tqdm(total=len(pairs), desc="sampling", unit="clip", disable=not progress)
    for i in range(0, len(pairs), batch_size):
        chunk = pairs[i : i + batch_size]
        prompts, seeds = [p for p, _ in chunk], [s for _, s in chunk]
        latents = sample_latents(adapter, prompts, seeds, shape, plan, uncond=uncond).latents
        video = adapter.decode(latents).float().clamp(0, 1).numpy()
        out.append((video * 255.0 + 0.5).astype(np.uint8))
        bar.update(len(chunk))
    bar.close()
    return np.concatenate(out) if out else np.zeros((0, frames, height, width, 3), np.uint8)
