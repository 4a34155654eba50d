"""Useless data points (paper Figure 2e): re-noised points the teacher does not carry back home."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from accvideo.core.sampling import euler_sample
from accvideo.toy1d.data import random_signs, renoise


@torch.no_grad()
def teacher_endpoints(velocity: Callable, x: torch.Tensor, level: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Where the teacher's ODE takes x (N,) from grid level sigmas[level] (N,) down to sigma = 0.

    Points are grouped by level so each group follows the teacher's own grid from there.
    """
    ends = torch.empty_like(x)
    for j in torch.unique(level).tolist():
        idx = (level == j).nonzero().squeeze(1)
        ends[idx] = euler_sample(velocity, x[idx], sigmas[j:])
    return ends


def useless_mask(
    velocity: Callable, x_sigma: torch.Tensor, level: torch.Tensor, x_d: torch.Tensor, sigmas: torch.Tensor, tau: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(useless (N,) bool, teacher endpoints (N,)): useless when the solve ends beyond tau of x_d."""
    ends = teacher_endpoints(velocity, x_sigma, level, sigmas)
    return (ends - x_d).abs() > tau, ends


def useless_frequency(
    velocity: Callable,
    mismatches: Sequence[float],
    n: int,
    data_point: float,
    sigmas: torch.Tensor,
    tau: float,
    generator: torch.Generator,
) -> dict[float, float]:
    """Frequency of useless points per mismatch M, x_d = +-a + u M (Figure 2e).

    Every M reuses the same signs, u, noise levels and eps (common random numbers), so the curve's
    shape comes from M and not from sampling noise. Levels are the teacher grid's, sigma > 0.
    """
    signs = random_signs(n, generator)
    u = torch.rand(n, generator=generator) * 2.0 - 1.0
    level = torch.randint(0, len(sigmas) - 1, (n,), generator=generator)
    eps = torch.randn(n, generator=generator)
    sigma = sigmas.float()[level]
    m = torch.tensor([float(v) for v in mismatches])
    # One batched solve for all M at once: row r of the stack is mismatch m[r].
    x_d = (signs * data_point)[None, :] + u[None, :] * m[:, None]
    x_sigma = renoise(x_d, sigma[None, :], eps[None, :])
    mask, _ = useless_mask(velocity, x_sigma.reshape(-1), level.repeat(len(m)), x_d.reshape(-1), sigmas, tau)
    freq = mask.reshape(len(m), n).float().mean(dim=1)
    return {float(v): float(f) for v, f in zip(m.tolist(), freq, strict=True)}
