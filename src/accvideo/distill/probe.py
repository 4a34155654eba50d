"""Watching the adversarial game: how well the heads tell real key latents from fakes, in numbers.

Accuracy is the balanced rate (real logit > 0 and fake logit < 0, averaged over the two halves): 0.5 is chance,
1 a discriminator that wins. The logit gap is mean D(real) - mean D(fake). The trainer reports both on every
training batch and, every `probe_every` iterations, on a fixed probe set: the same trajectories and the same
starting noises each time, the fakes being the current student's own few-step generations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from accvideo.core.adapter import Conditioning, ModelAdapter
from accvideo.core.sampling import SamplingPlan, euler_sample, sample_latents


def game_stats(d_real: torch.Tensor, d_fake: torch.Tensor) -> tuple[float, float]:
    """(balanced accuracy, logit gap) of logits (B,) on real and on fake samples."""
    acc = 0.5 * ((d_real > 0).float().mean() + (d_fake < 0).float().mean())
    return float(acc), float(d_real.float().mean() - d_fake.float().mean())


def probe_seed(seed: int, index: int) -> int:
    """The starting noise of probe item `index` (a stream of its own: never a training fake's or a SynVid seed; its
    tag is the last word, as in `fake_seed`)."""
    return int(np.random.SeedSequence([int(seed), int(index), 2]).generate_state(1)[0] & 0x7FFFFFFF)


@torch.no_grad()
def key_latents(
    velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], noise: torch.Tensor, sigmas: Sequence[float]
) -> torch.Tensor:
    """Every latent of an Euler solve over `sigmas` (noisiest first) from `noise`: (B, len(sigmas), ...)."""
    kept: list[torch.Tensor] = []
    euler_sample(velocity, noise, sigmas, callback=lambda _i, _s, x: kept.append(x))
    return torch.stack(kept, dim=1)


def naive_teacher_latents(
    adapter: ModelAdapter,
    cond: Conditioning,
    seeds: Sequence[int],
    latent_shape: Sequence[int],
    sigmas: Sequence[float],
    guidance: float,
) -> torch.Tensor:
    """The teacher's own m-step solve over the key sigmas (the naive few-step sampler): (B, m+1, ...)."""
    plan = SamplingPlan(sigmas, guidance)
    return sample_latents(adapter, cond, seeds, latent_shape, plan, keep=range(len(sigmas))).kept


def train_head_alone(
    real: torch.Tensor,
    fake: torch.Tensor,
    grid: Sequence[int],
    n_train: int,
    *,
    steps: int = 200,
    lr: float = 1e-3,
    batch: int = 8,
    channels: int = 64,
    input_norm: bool = True,
    seed: int = 0,
) -> float:
    """A fresh head trained on teacher features (N, tokens, D) of real vs fake items [:n_train] with L_D; its
    balanced accuracy on items [n_train:]. Shows whether the features and a head can tell the two apart at all."""
    from torch import nn

    from accvideo.distill.heads import FeatureHead
    from accvideo.distill.losses import discriminator_loss

    torch.manual_seed(seed)
    head = FeatureHead(real.shape[-1], channels)
    if not input_norm:
        head.net[0] = nn.Identity()
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        i = torch.randint(n_train, (batch,), generator=gen)
        j = torch.randint(n_train, (batch,), generator=gen)
        loss = discriminator_loss(head(real[i], grid), head(fake[j], grid))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return game_stats(head(real[n_train:], grid), head(fake[n_train:], grid))[0]


@torch.no_grad()
def probe_heads(d) -> tuple[list[float], list[float]]:
    """The heads' accuracy and logit gap per key step on the fixed probe set of a run (a Distiller `d`; the same on
    every rank).

    Real: l[t'_k] of the dataset's first `probe_items` trajectories. Fake: the current student's own few-step
    solve from the probe's starting noises (probe_seed: never a training seed) with the same prompts.
    """
    n = min(d.cfg.probe_items, len(d.dataset))
    latents, cond = d.data.load(range(n))
    noise = d.pair.teacher.keep_given(d.data.noise([probe_seed(d.cfg.seed, i) for i in range(n)]), cond)
    with d.parallel.autocast():
        fakes = key_latents(lambda x, s: d.pair.student.velocity(x, s, cond), noise, d.key_sigmas)
    both = {name: torch.cat([c, c]) for name, c in cond.items()}
    acc, gap = [0.0] * d.m, [0.0] * d.m
    for k in range(d.m):
        with d.pair.teacher_mode():
            logits = d.discriminator(k, torch.cat([d.at(latents, k), d.at(fakes, k).float()]), both)
        acc[k], gap[k] = game_stats(logits[:n], logits[n:])
    return acc, gap
