"""Sampling a model on a prompt list for evaluation: Euler sampler, each clip from its own seed's noise."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from accvideo.core.runtime import noise
from accvideo.core.sampling import euler_sample
from accvideo.core.schedules import shifted_sigmas


@torch.no_grad()
def generate_videos(
    adapter,
    pairs: Sequence[tuple[str, int]],
    *,
    frames: int,
    height: int,
    width: int,
    steps: int = 50,
    guidance: float = 5.0,
    shift: float | None = None,
    sigmas: torch.Tensor | None = None,
    negative_prompt: str = "",
    batch_size: int = 4,
    progress: bool = True,
) -> np.ndarray:
    """Clips (N, F, H, W, 3) uint8 for (prompt, seed) pairs; batching does not change any clip's noise.

    `sigmas` (a student's key sigmas, say) replaces the shifted `steps` grid. Clips are quantised to 8 bits as
    any saved video is, so re-scoring a saved .npy folder is exact.
    """
    if sigmas is None:
        sigmas = shifted_sigmas(steps, shift or adapter.default_shift)
    shape = adapter.latent_shape(frames, height, width)
    uncond_one = adapter.encode_prompts([negative_prompt]) if guidance != 1.0 else None
    out: list[np.ndarray] = []
    bar = tqdm(total=len(pairs), desc="sampling", unit="clip", disable=not progress)
    for i in range(0, len(pairs), batch_size):
        chunk = pairs[i : i + batch_size]
        cond = adapter.encode_prompts([p for p, _ in chunk])
        x = torch.cat([noise((1, *shape), s, adapter.device) for _, s in chunk])
        uncond = None
        if uncond_one is not None:
            uncond = {k: v.expand(len(chunk), *v.shape[1:]) for k, v in uncond_one.items()}
        latents = euler_sample(
            lambda z, s: adapter.velocity(z, s, cond), x, sigmas, guidance=guidance,
            uncond=(lambda z, s: adapter.velocity(z, s, uncond)) if uncond is not None else None,
        )
        video = adapter.decode(latents).float().clamp(0, 1).numpy()
        out.append((video * 255.0 + 0.5).astype(np.uint8))
        bar.update(len(chunk))
    bar.close()
    return np.concatenate(out) if out else np.zeros((0, frames, height, width, 3), np.uint8)
