"""One batch of teacher trajectories (METHOD.md 1): per-item noise, the guided n-step Euler solve, kept latents."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from accvideo.core.adapter import Conditioning
from accvideo.core.runtime import noise
from accvideo.core.sampling import euler_sample


def expand(cond: Conditioning, batch: int) -> Conditioning:
    """A one-row conditioning repeated `batch` times (a view, no copy)."""
    return {k: v.expand(batch, *v.shape[1:]) for k, v in cond.items()}


def start_noise(seeds: Sequence[int], latent_shape: Sequence[int], device: torch.device) -> torch.Tensor:
    """eps (B, C, F', H', W') with row b drawn from seeds[b] alone, so batching never changes it."""
    return torch.stack([noise(latent_shape, s) for s in seeds]).to(device)


@torch.inference_mode()
def teacher_latents(
    adapter,
    cond: Conditioning,
    uncond: Conditioning | None,
    seeds: Sequence[int],
    latent_shape: Sequence[int],
    sigmas: torch.Tensor,
    keep: Sequence[int],
    guidance: float,
) -> torch.Tensor:
    """Latents at grid indices `keep` of the teacher's solve from eps(seed): (B, len(keep), C, F', H', W') float32 CPU.

    `uncond` is one row (the negative prompt), shared by the batch; guidance 1 skips the second pass.
    """
    x = start_noise(seeds, latent_shape, adapter.device)
    wanted = set(keep)
    kept: dict[int, torch.Tensor] = {}

    def callback(i: int, _sigma: float, x_i: torch.Tensor) -> None:
        if i in wanted:  # every Euler step makes a new tensor, so a reference is enough
            kept[i] = x_i

    use_cfg = uncond is not None and guidance != 1.0
    neg = expand(uncond, len(seeds)) if use_cfg else None
    euler_sample(
        lambda x, s: adapter.velocity(x, s, cond), x, sigmas, guidance=guidance, callback=callback,
        uncond=(lambda x, s: adapter.velocity(x, s, neg)) if use_cfg else None,
    )
    return torch.stack([kept[i] for i in keep], dim=1).float().cpu()
