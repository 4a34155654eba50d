"""Sigma grids and key-step selection (docs/method.md sections 0 and 1): pure functions over tensors."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from accvideo.errors import AccVideoError

# far more Euler steps than any flow-matching sampler needs (the teachers use 50); a grid past it would only fill
# memory with sigmas (10^12 steps: 7 TB) or overflow torch's sizes (2^62 steps: a traceback)
MAX_STEPS = 10_000


def check_steps(steps: int | None, name: str = "steps") -> None:
    """A step count setting (None: the model's own): 1 to MAX_STEPS; ValueError naming the fix (configs raise it)."""
    if steps is not None and not 1 <= steps <= MAX_STEPS:
        raise ValueError(
            f"{name} must be a positive integer of at most {MAX_STEPS:,} (the teachers use 50); got {steps}"
        )


def shift_sigmas(s: torch.Tensor, shift: float) -> torch.Tensor:
    """Map uniform noise levels s in [0, 1] to shifted ones: sigma = shift*s / (1 + (shift-1)*s)."""
    if shift <= 0:
        raise AccVideoError(f"shift must be positive, got {shift}; pass e.g. --shift 5")
    return shift * s / (1.0 + (shift - 1.0) * s)


def shifted_sigmas(n: int, shift: float, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The n-step teacher grid, shape (n+1,): s_j = 1 - j/n shifted, so sigma_0 = 1 > ... > sigma_n = 0."""
    if not 1 <= n <= MAX_STEPS:
        raise AccVideoError(
            f"the number of steps must be at least 1 and at most {MAX_STEPS:,}, got {n}; pass e.g. --steps 50"
        )
    s = 1.0 - torch.arange(n + 1, dtype=torch.float64) / n
    sigmas = shift_sigmas(s, shift)
    # exactly 1: its denominator 1 + (shift - 1) rounds below shift 1 (sigma_0 = 1 + 2e-16 at shift 0.1, a grid no
    # student could be sampled or exported on) and is 0 below shift 1e-16 (an infinite sigma, NaN latents)
    sigmas[0] = 1.0
    return sigmas.to(dtype)


def uniform_key_indices(n: int, m: int) -> list[int]:
    """Every (n/m)-th index of an n-step grid: m+1 indices from 0 to n (the paper's {0,10,...,50})."""
    if m < 1 or n < 1:
        raise AccVideoError(f"key steps and teacher steps must be >= 1, got m={m}, n={n}")
    if n % m:
        raise AccVideoError(
            f"{m} key steps do not divide a {n}-step grid evenly; choose key steps dividing {n} "
            "or give explicit --key-indices"
        )
    return list(range(0, n + 1, n // m))


def check_key_indices(indices: Sequence[int], n: int) -> list[int]:
    """Validate an explicit key-index list: strictly increasing, from 0 to n."""
    idx = [int(i) for i in indices]
    if len(idx) < 2 or idx[0] != 0 or idx[-1] != n or any(b <= a for a, b in zip(idx, idx[1:], strict=False)):
        raise AccVideoError(f"key indices {idx} must rise strictly from 0 to {n} (e.g. 0,10,20,30,40,50 for 50 steps)")
    return idx


def key_sigmas(sigmas: torch.Tensor, indices: Sequence[int]) -> torch.Tensor:
    """The key noise levels t'_m = 1 > ... > t'_0 = 0 picked from a grid, shape (m+1,), noisiest first."""
    return sigmas[check_key_indices(indices, len(sigmas) - 1)]
