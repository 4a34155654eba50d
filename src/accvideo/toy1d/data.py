"""Data of the 1D experiment (paper Figure 2): the teacher's two points and mismatched datasets."""

from __future__ import annotations

import zlib

import torch


def phase_generator(seed: int, phase: str) -> torch.Generator:
    """A CPU generator for one phase of the experiment, so phases never share a random stream."""
    return torch.Generator("cpu").manual_seed(int(seed) * 1_000_003 + zlib.crc32(phase.encode()))


def random_signs(n: int, generator: torch.Generator) -> torch.Tensor:
    """n signs in {-1, +1}, each with probability 1/2, shape (n,)."""
    return torch.randint(0, 2, (n,), generator=generator).float() * 2.0 - 1.0


def sample_mismatched(n: int, mismatch: float, data_point: float, generator: torch.Generator) -> torch.Tensor:
    """x_d = +-a + u * M with u ~ U(-1, 1) (docs/method.md 4); M = 0 gives the teacher's data, shape (n,)."""
    signs = random_signs(n, generator)
    u = torch.rand(n, generator=generator) * 2.0 - 1.0
    return signs * data_point + u * mismatch


def renoise(x0: torch.Tensor, sigma: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Forward process x_sigma = (1 - sigma) x0 + sigma eps (docs/method.md 0)."""
    return (1.0 - sigma) * x0 + sigma * eps


def fraction_near(x: torch.Tensor, data_point: float, near: float) -> float:
    """The fraction of samples within `near` of -a or +a (Figure 2f's 'lands on the data')."""
    return float(((x.abs() - data_point).abs() < near).float().mean())
