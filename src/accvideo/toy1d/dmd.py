"""A distribution-matching (DMD-style) one-step student for comparison (paper Figure 2c, d)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from accvideo.core.progress import progress_bar
from accvideo.toy1d.data import renoise
from accvideo.toy1d.model import ToyResNet1D
from accvideo.toy1d.train import check_loss, check_samples, student_from, velocity_loss
from accvideo.toy1d.useless import useless_mask

# Noise levels of the generator's guidance draws, kept off the ends where x0_hat says nothing.
DMD_SIGMA_RANGE = (0.02, 0.98)


@dataclass
class DmdResult:
    """The trained one-step generator, its sample snapshots and its final guidance draws."""

    generator: ToyResNet1D
    snapshots: dict[int, torch.Tensor]  # training step -> one-step samples of the fixed eval noise
    draws: dict[str, torch.Tensor]  # x, sigma, x_sigma, x0_real, x0_fake, teacher_end, useless


def one_step(net: ToyResNet1D, z: torch.Tensor) -> torch.Tensor:
    """The generator: one Euler step of `net` from sigma = 1 to 0, x = z - v(z, 1), shape (N,)."""
    return z - net(z, torch.ones_like(z))


def dmd_guidance(
    teacher: ToyResNet1D, fake: ToyResNet1D, x_sigma: torch.Tensor, sigma: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0_real, x0_fake) at x_sigma: the generator sample moves along x0_real - x0_fake (DMD)."""
    with torch.no_grad():
        return x_sigma - sigma * teacher(x_sigma, sigma), x_sigma - sigma * fake(x_sigma, sigma)


def train_dmd(
    teacher: ToyResNet1D,
    z_eval: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    iters: int,
    fake_steps: int,
    batch: int,
    lr: float,
    fake_lr: float,
    tau: float,
    generator: torch.Generator,
    progress: bool = True,
) -> DmdResult:
    """Train a one-step generator with the DMD gradient; a fake flow model tracks its samples online.

    Both start from the teacher's weights. Per step: (1) draw samples, (2) fit the fake model to
    them by flow matching, (3) move each sample towards the teacher's x0 and away from the fake's
    at a random re-noising, normalised by the mean |x - x0_real| as DMD does.
    """
    gen, fake = student_from(teacher), student_from(teacher)
    opt_g = torch.optim.Adam(gen.parameters(), lr=lr)
    opt_f = torch.optim.Adam(fake.parameters(), lr=fake_lr)
    lo, hi = DMD_SIGMA_RANGE
    marks = {0, iters // 4, iters // 2, iters}
    snapshots: dict[int, torch.Tensor] = {}

    def snapshot(step: int) -> None:
        gen.eval()
        with torch.no_grad():
            snapshots[step] = one_step(gen, z_eval)
        gen.train()

    for step in progress_bar(range(iters), desc="dmd student", unit="it", show=progress, transient=True):
        if step in marks:
            snapshot(step)
        # 1. samples of the current generator
        x = one_step(gen, torch.randn(batch, generator=generator))
        check_samples(x.detach(), "dmd student", "dmd_lr", lr)  # not the fake model's lr: it fits these
        # 2. the fake model follows the generator's distribution
        fake.train()
        for _ in range(fake_steps):
            sigma = torch.rand(batch, generator=generator)
            eps = torch.randn(batch, generator=generator)
            x_d = x.detach()
            loss_f = velocity_loss(fake, renoise(x_d, sigma, eps), sigma, eps - x_d)
            check_loss(loss_f, "dmd fake model", step, "dmd_fake_lr", fake_lr)
            opt_f.zero_grad(set_to_none=True)
            loss_f.backward()
            opt_f.step()
        fake.eval()
        # 3. distribution-matching step on the generator
        sigma = lo + (hi - lo) * torch.rand(batch, generator=generator)
        x_sigma = renoise(x.detach(), sigma, torch.randn(batch, generator=generator))
        x0_real, x0_fake = dmd_guidance(teacher, fake, x_sigma, sigma)
        grad = (x0_fake - x0_real) / (x.detach() - x0_real).abs().mean().clamp(min=1e-6)
        loss_g = 0.5 * ((x - (x - grad).detach()) ** 2).mean()
        check_loss(loss_g, "dmd student", step, "dmd_lr", lr)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
    snapshot(iters)
    gen.eval()
    draws = guidance_draws(teacher, fake, snapshots[iters], sigmas, tau, generator)
    return DmdResult(gen, snapshots, draws)


def guidance_draws(
    teacher: ToyResNet1D,
    fake: ToyResNet1D,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    tau: float,
    generator: torch.Generator,
) -> dict[str, torch.Tensor]:
    """Re-noise final samples x (N,) at teacher grid levels and judge the teacher's guidance there.

    `useless`: the teacher's ODE from x_sigma ends beyond tau of x (the test of Figure 2e);
    `wrong`: the teacher's answer x0_real lies on the other side of 0 from x, so the guidance
    pulls the sample towards the other mode.
    """
    level = torch.randint(0, len(sigmas) - 1, x.shape, generator=generator)
    sigma = sigmas.float()[level]
    x_sigma = renoise(x, sigma, torch.randn(x.shape, generator=generator))
    x0_real, x0_fake = dmd_guidance(teacher, fake, x_sigma, sigma)
    useless, ends = useless_mask(teacher, x_sigma, level, x, sigmas, tau)
    wrong = torch.sign(x0_real) != torch.sign(x)
    return {
        "x": x,
        "sigma": sigma,
        "x_sigma": x_sigma,
        "x0_real": x0_real,
        "x0_fake": x0_fake,
        "teacher_end": ends,
        "useless": useless,
        "wrong": wrong,
    }
