"""Euler sampling over an explicit sigma tensor, with optional classifier-free guidance (METHOD.md 0)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from tqdm.auto import tqdm

# A velocity field: (x (B, C, F, H, W), sigma (B,)) -> v = eps - x0, same shape as x.
VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# Called with (i, sigma_i, x_i) for every latent of the solve, i = 0 (the starting noise) .. n.
StepCallback = Callable[[int, float, torch.Tensor], None]


def cfg_combine(v_cond: torch.Tensor, v_uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance: v = v_uncond + w * (v_cond - v_uncond)."""
    return v_uncond + scale * (v_cond - v_uncond)


def guided(cond: VelocityFn, uncond: VelocityFn, scale: float) -> VelocityFn:
    """A velocity field with classifier-free guidance of strength `scale` (two passes per call)."""

    def velocity(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return cfg_combine(cond(x, sigma), uncond(x, sigma), scale)

    return velocity


def euler_step(x: torch.Tensor, v: torch.Tensor, sigma: float | torch.Tensor, sigma_next: float | torch.Tensor):
    """One Euler step of the flow ODE: x_next = x + (sigma_next - sigma) * v."""
    return x + (sigma_next - sigma) * v


@torch.no_grad()
def euler_sample(
    velocity: VelocityFn,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    uncond: VelocityFn | None = None,
    guidance: float = 1.0,
    callback: StepCallback | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Solve from sigmas[0] to sigmas[-1] with len(sigmas)-1 Euler steps; x is the starting noise.

    With `uncond` and guidance != 1 the field is classifier-free guided. `callback` sees every
    latent, including the starting one (i = 0) and the result (i = n).
    """
    if uncond is not None and guidance != 1.0:
        velocity = guided(velocity, uncond, guidance)
    sig = [float(s) for s in sigmas]
    if callback is not None:
        callback(0, sig[0], x)
    steps = range(len(sig) - 1)
    for i in tqdm(steps, desc="denoising", unit="step", disable=not progress, leave=False):
        sigma = torch.full((x.shape[0],), sig[i], device=x.device, dtype=torch.float32)
        v = velocity(x, sigma)
        x = euler_step(x, v.to(x.dtype), sig[i], sig[i + 1])
        if callback is not None:
            callback(i + 1, sig[i + 1], x)
    return x
