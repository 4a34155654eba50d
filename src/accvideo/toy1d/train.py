"""Regression training of the toy teacher and its students (paper Figure 2a, b, f)."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch

from accvideo.core.progress import progress_bar
from accvideo.core.sampling import euler_sample
from accvideo.errors import AccVideoError
from accvideo.toy1d.data import random_signs, renoise, sample_mismatched
from accvideo.toy1d.model import ToyResNet1D

# One training batch: inputs x (B,), noise levels sigma (B,) and velocity targets v (B,).
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
BatchFn = Callable[[torch.Generator], Batch]


def velocity_loss(net: ToyResNet1D, x: torch.Tensor, sigma: torch.Tensor, v_target: torch.Tensor) -> torch.Tensor:
    """Mean (sigma * (v - v_target))^2: the error of the implied x0 = x - sigma v, finite at sigma -> 0."""
    return ((sigma * (net(x, sigma) - v_target)) ** 2).mean()


def diverged(what: str, lr_name: str, lr: float) -> AccVideoError:
    """The one line of a toy1d phase whose training diverged: nothing written, and the setting to lower."""
    return AccVideoError(
        f"toy1d {what}: stopped without writing toy1d.json or any plot; lower {lr_name} (now {lr:g}) and rerun"
    )


def check_loss(loss: torch.Tensor, what: str, step: int, lr_name: str, lr: float) -> float:
    """The loss as a float, or the diverged line before the optimiser step of a NaN or infinite one, as `distill` and
    `teacher train` stop (a NaN loss trained on to a NaN toy1d.json and a matplotlib traceback)."""
    value = loss.item()
    if not math.isfinite(value):
        raise diverged(f"{what} diverged at step {step + 1} (loss {value:g})", lr_name, lr)
    return value


def check_samples(samples: torch.Tensor, what: str, lr_name: str, lr: float) -> torch.Tensor:
    """`samples`, unless any is NaN or infinite (a last step with an overflowing gradient, its loss still finite)."""
    if not torch.isfinite(samples).all():
        raise diverged(f"{what}'s samples are NaN or infinite (its training diverged)", lr_name, lr)
    return samples


def fit(
    net: ToyResNet1D,
    batch_fn: BatchFn,
    iters: int,
    lr: float,
    generator: torch.Generator,
    desc: str = "train",
    progress: bool = True,
    lr_name: str = "lr",
) -> list[float]:
    """Adam with a cosine-decayed learning rate for `iters` steps; returns the loss of every step. A NaN or infinite
    loss stops it in one line naming `lr_name`, the setting that holds `lr`."""
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    # The decay stands in for the paper's 10,000 steps at lr 1e-4 on a CPU budget (docs/toy1d.md).
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1.0 + math.cos(math.pi * i / iters)))
    losses = []
    for step in progress_bar(range(iters), desc=desc, unit="it", show=progress, transient=True):
        x, sigma, v_target = batch_fn(generator)
        loss = velocity_loss(net, x, sigma, v_target)
        losses.append(check_loss(loss, desc, step, lr_name, lr))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    net.eval()
    return losses


def teacher_batches(batch: int, data_point: float) -> BatchFn:
    """Flow matching on {-a, +a}: sigma ~ U(0, 1), target eps - x0 (Figure 2a)."""

    def make(gen: torch.Generator) -> Batch:
        x0 = random_signs(batch, gen) * data_point
        sigma = torch.rand(batch, generator=gen)
        eps = torch.randn(batch, generator=gen)
        return renoise(x0, sigma, eps), sigma, eps - x0

    return make


@torch.no_grad()
def rollout(velocity: Callable, z: torch.Tensor, sigmas: torch.Tensor, keep: list[int]) -> torch.Tensor:
    """Solve the ODE from noise z (N,) and return the latents at grid indices `keep`, shape (len(keep), N)."""
    stored: dict[int, torch.Tensor] = {}

    def store(i: int, sigma: float, x: torch.Tensor) -> None:
        if i in keep:
            stored[i] = x.clone()

    euler_sample(velocity, z, sigmas, callback=store)
    return torch.stack([stored[i] for i in keep])


def accvideo_batches(key_latents: torch.Tensor, key_sigmas: torch.Tensor, batch: int) -> BatchFn:
    """Pairs from teacher trajectories (docs/method.md 2): at l[k+1] regress the secant to l[k].

    key_latents (m+1, N) hold each trajectory at the key levels key_sigmas (m+1,), noisiest first,
    so the student's Euler step over a key interval lands where the teacher's 50 steps did.
    """
    m, n = key_latents.shape[0] - 1, key_latents.shape[1]
    sig = key_sigmas.float()

    def make(gen: torch.Generator) -> Batch:
        traj = torch.randint(0, n, (batch,), generator=gen)
        k = torch.randint(0, m, (batch,), generator=gen)
        x, x_next = key_latents[k, traj], key_latents[k + 1, traj]
        return x, sig[k], (x_next - x) / (sig[k + 1] - sig[k])

    return make


def kd_batches(
    teacher: ToyResNet1D | None,
    key_sigmas: torch.Tensor,
    batch: int,
    mismatch: float,
    data_point: float,
    target: str = "data",
) -> BatchFn:
    """Knowledge distillation on re-noised data x_d ~ p_d(M) at the student's key levels (Figure 2b).

    target "data": the pair's own velocity eps - x_d, which carries x_sigma to x_d (the pair the
    useless-point test judges); "teacher": the teacher's velocity at x_sigma instead.
    """
    levels = key_sigmas[:-1].float()

    def make(gen: torch.Generator) -> Batch:
        x_d = sample_mismatched(batch, mismatch, data_point, gen)
        sigma = levels[torch.randint(0, len(levels), (batch,), generator=gen)]
        eps = torch.randn(batch, generator=gen)
        x = renoise(x_d, sigma, eps)
        if target == "teacher":
            with torch.no_grad():
                return x, sigma, teacher(x, sigma)
        return x, sigma, eps - x_d

    return make


def student_from(teacher: ToyResNet1D) -> ToyResNet1D:
    """A student initialised from the teacher's weights, as the video method does."""
    return copy.deepcopy(teacher).train()
