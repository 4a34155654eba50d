"""Exponential moving averages of weights: the teacher's, the student's (`ema=`) and the tiny decoder's (`ema=`)."""

from __future__ import annotations

from collections.abc import Mapping

import torch


def warmup_decay(decay: float, step: int) -> float:
    """The decay at 0-based `step`: min(decay, (1 + step) / (10 + step)), so the average soon forgets the init."""
    return min(decay, (1 + step) / (10 + step))


@torch.no_grad()
def update_average(average: Mapping[str, torch.Tensor], current: Mapping[str, torch.Tensor], decay: float) -> None:
    """average <- decay * average + (1 - decay) * current, in place, per name; non-float tensors are copied."""
    for name, value in current.items():
        if value.is_floating_point():
            average[name].lerp_(value.detach(), 1 - decay)
        else:
            average[name].copy_(value)
