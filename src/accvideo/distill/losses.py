"""The distillation losses: trajectory guidance (paper Eq. 6) and the GAN objective (Eq. 7-8), pure functions."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def secant_velocity(x_next: torch.Tensor, x: torch.Tensor, sigma_next, sigma) -> torch.Tensor:
    """(l[t'_k] - l[t'_{k+1}]) / (t'_k - t'_{k+1}): the velocity whose one Euler step lands on x_next."""
    return (x_next - x) / (sigma_next - sigma)


def trajectory_loss(v_student: torch.Tensor, x: torch.Tensor, x_next: torch.Tensor, sigma, sigma_next) -> torch.Tensor:
    """Paper Eq. 6: mean over elements of || s(l[t'_{k+1}]) - secant ||^2; all tensors (B, C, F', H', W').

    `x` = l[t'_{k+1}] at `sigma` = t'_{k+1}, `x_next` = l[t'_k] at `sigma_next` = t'_k. Computed in float32.
    """
    target = secant_velocity(x_next.float(), x.float(), sigma_next, sigma)
    return (v_student.float() - target).square().mean()


def discriminator_loss(real: torch.Tensor, fake: torch.Tensor, kind: str = "non-saturating") -> torch.Tensor:
    """L_D from logits (B,): softplus(-D(real)) + softplus(D(fake)) (Eq. 8), or the hinge loss; batch mean."""
    if kind == "non-saturating":
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    if kind == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    raise ValueError(f"unknown GAN loss {kind!r}")


def generator_loss(fake: torch.Tensor, kind: str = "non-saturating") -> torch.Tensor:
    """L_G from fake logits (B,): softplus(-D(fake)) (non-saturating Eq. 7), or -D(fake) (hinge); batch mean."""
    if kind == "non-saturating":
        return F.softplus(-fake).mean()
    if kind == "hinge":
        return -fake.mean()
    raise ValueError(f"unknown GAN loss {kind!r}")


def r1_penalty(logits: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """R1: mean over items of ||d sum(D) / d input||^2; `inputs` (B, ...) must require grad (create_graph)."""
    (grad,) = torch.autograd.grad(logits.sum(), inputs, create_graph=True)
    return grad.float().square().flatten(1).sum(1).mean()
