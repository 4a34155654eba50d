"""The one sampling path (docs/method.md 0): per-item noise, the Euler solve over an explicit sigma grid, CFG.

`sample_latents` is what every command runs (sample, synthesize, evaluate, the demo and the benchmark); a
`SamplingPlan` says how (sigmas, guidance, negative prompt) and is resolved once from the model's defaults.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch

from accvideo.core.adapter import (
    Conditioning,
    ModelAdapter,
    check_conditioning,
    check_velocity,
    expand,
    with_defaults,
)
from accvideo.core.interrupts import check as check_interrupt
from accvideo.core.progress import progress_bar
from accvideo.core.runtime import batch_noise
from accvideo.core.schedules import shifted_sigmas
from accvideo.errors import AccVideoError

TEACHER_STEPS = 50  # n: the teacher's Euler steps when none are given (docs/method.md 1), the same for every family

# A velocity field: (x (B, C, F, H, W), sigma (B,)) -> v = eps - x0, same shape as x.
VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# Called with (i, sigma_i, x_i) for every latent of the solve, i = 0 (the starting noise) .. n.
StepCallback = Callable[[int, float, torch.Tensor], None]


def cfg_combine(v_cond: torch.Tensor, v_uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance: v = v_uncond + w * (v_cond - v_uncond)."""
    return v_uncond + scale * (v_cond - v_uncond)


def guided(cond: VelocityFn, uncond: VelocityFn, scale: float) -> VelocityFn:
    """A velocity field with classifier-free guidance of strength `scale` (two passes per call, cond first)."""

    def velocity(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return cfg_combine(cond(x, sigma), uncond(x, sigma), scale)

    return velocity


def high_noise(sigma: torch.Tensor, boundary_ratio: float, num_train_timesteps: int = 1000) -> torch.Tensor:
    """Wan 2.2's expert switch (WanPipeline): True where timestep = N * sigma (float32) >= boundary_ratio * N.

    A sigma on the boundary belongs to the high-noise expert, as in the stock loop (`t >= boundary_timestep`).
    """
    timestep = torch.as_tensor(sigma, dtype=torch.float32) * num_train_timesteps
    return timestep >= boundary_ratio * num_train_timesteps


def euler_step(x: torch.Tensor, v: torch.Tensor, sigma: float | torch.Tensor, sigma_next: float | torch.Tensor):
    """One Euler step of the flow ODE: x_next = x + (sigma_next - sigma) * v."""
    return x + (sigma_next - sigma) * v


@torch.no_grad()
def euler_sample(
    velocity: VelocityFn,
    x: torch.Tensor,
    sigmas: torch.Tensor | Sequence[float],
    *,
    uncond: VelocityFn | None = None,
    guidance: float | Sequence[float] = 1.0,
    callback: StepCallback | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Solve from sigmas[0] to sigmas[-1] with len(sigmas)-1 Euler steps; x is the starting noise.

    With `uncond`, a step whose guidance != 1 is classifier-free guided (`guidance`: one scale, or one per step,
    e.g. Wan 2.2 A14B's two scales). `callback` sees every latent, including the starting one (i = 0) and the
    result (i = n).
    """
    sig = [float(s) for s in sigmas]
    steps = range(len(sig) - 1)
    scales = [float(guidance)] * len(steps) if isinstance(guidance, (int, float)) else [float(g) for g in guidance]
    if len(scales) != len(steps):
        raise ValueError(f"{len(scales)} guidance scales for {len(steps)} steps")
    if callback is not None:
        callback(0, sig[0], x)
    for i in progress_bar(steps, desc="denoising", unit="step", show=progress, transient=True):
        check_interrupt()
        sigma = torch.full((x.shape[0],), sig[i], device=x.device, dtype=torch.float32)
        v = velocity(x, sigma)
        if uncond is not None and scales[i] != 1.0:
            v = cfg_combine(v, uncond(x, sigma), scales[i])
        x = euler_step(x, v.to(x.dtype), sig[i], sig[i + 1])
        if callback is not None:
            callback(i + 1, sig[i + 1], x)
    return x


def check_guidance(scale: float | None, name: str = "guidance") -> None:
    """A CFG scale setting (`guidance`, `guidance_2`): None (the model's) or >= 0; ValueError naming the setting."""
    if scale is not None and scale < 0:
        raise ValueError(f"{name} must be >= 0 (1 turns CFG off); got {scale}")


@dataclass(frozen=True)
class SamplingPlan:
    """How to sample: the sigma grid (n+1,) noisiest first, the CFG scale (1: one pass a step), the negative prompt.

    `shift` is reported, not used: the shift the grid was made with (for a student's key sigmas, its teacher's).
    Two-expert models (Wan 2.2 A14B) guide the steps below `boundary_ratio` (`high_noise`) with `guidance_2`.
    """

    sigmas: tuple[float, ...]
    guidance: float = 1.0
    negative_prompt: str = ""
    shift: float | None = None
    guidance_2: float | None = None  # the low-noise steps' CFG scale (None: `guidance`)
    boundary_ratio: float | None = None  # where guidance_2 starts (None: one scale for every step)

    def __post_init__(self):
        object.__setattr__(self, "sigmas", tuple(float(s) for s in self.sigmas))
        if len(self.sigmas) < 2:
            raise ValueError(f"a sampling plan needs at least two sigmas (one step); got {list(self.sigmas)}")
        check_guidance(self.guidance)
        check_guidance(self.guidance_2, "guidance_2")

    @property
    def steps(self) -> int:
        return len(self.sigmas) - 1

    @property
    def step_guidance(self) -> list[float]:
        """The CFG scale of each step (n,): `guidance`, or `guidance_2` for the steps below the expert boundary."""
        if self.boundary_ratio is None or self.guidance_2 is None:
            return [self.guidance] * self.steps
        high = high_noise(torch.tensor(self.sigmas[:-1]), self.boundary_ratio)
        return [self.guidance if h else self.guidance_2 for h in high.tolist()]

    @property
    def cfg(self) -> bool:
        """Whether any step runs a second, unconditional pass."""
        return any(g != 1.0 for g in self.step_guidance)

    def describe(self) -> dict:
        """steps, guidance and the rounded sigmas, for reports."""
        out = {"steps": self.steps, "guidance": self.guidance, "sigmas": [round(s, 6) for s in self.sigmas]}
        if self.boundary_ratio is not None:
            out.update(guidance_2=self.guidance_2, boundary_ratio=self.boundary_ratio)
        return out


def shifted_plan(
    model: ModelAdapter,
    steps: int | None = None,
    guidance: float | None = None,
    shift: float | None = None,
    negative_prompt: str = "",
    guidance_2: float | None = None,
) -> SamplingPlan:
    """A plan on the shifted grid: `steps` (default TEACHER_STEPS) at `shift` (default the model's), with
    `guidance` (default the family's teacher guidance: Wan CFG 5, HunyuanVideo 1 as its guidance is embedded).

    A two-expert model (a `boundary_ratio`) guides its low-noise steps with `guidance_2`: default the model's
    `default_guidance_2`, else `guidance` (as WanPipeline's call defaults it)."""
    shift = shift or model.default_shift
    guidance = model.default_guidance if guidance is None else guidance
    boundary = getattr(model, "boundary_ratio", None)
    if boundary is None and guidance_2 is not None:
        raise AccVideoError("guidance_2 applies to two-expert teachers (Wan 2.2 A14B) only; drop it for this model")
    if boundary is not None and guidance_2 is None:
        guidance_2 = getattr(model, "default_guidance_2", None)
    return SamplingPlan(
        shifted_sigmas(steps or TEACHER_STEPS, shift),
        guidance,
        negative_prompt,
        shift,
        None if boundary is None else (guidance if guidance_2 is None else guidance_2),
        boundary,
    )


def encode_negative(adapter: ModelAdapter, plan: SamplingPlan) -> Conditioning | None:
    """The negative prompt's conditioning (one row) when the plan runs CFG, else None."""
    return adapter.encode_prompts([plan.negative_prompt]) if plan.cfg else None


class Samples(NamedTuple):
    """What `sample_latents` returns."""

    latents: torch.Tensor  # (B, C, F', H', W') at sigmas[-1], on the adapter's device
    kept: torch.Tensor | None  # (B, len(keep), C, F', H', W') float32 on the CPU, when `keep` was given


@torch.inference_mode()
def sample_latents(
    adapter: ModelAdapter,
    prompts: Sequence[str] | Conditioning,
    seeds: Sequence[int],
    latent_shape: Sequence[int],
    plan: SamplingPlan,
    *,
    uncond: Conditioning | None = None,
    keep: Sequence[int] | None = None,
    progress: bool = False,
) -> Samples:
    """Solve from eps(seeds[b]) through plan.sigmas, guided by plan.guidance against the negative prompt.

    `prompts` are strings or their conditioning (B rows); `uncond` is the negative prompt's one-row conditioning
    (encoded here when the plan runs CFG and none is given), shared by the batch; names it lacks (an image's
    conditioning) are taken from `prompts`' conditioning. `keep` lists grid indices
    (0: the noise .. n: the result) whose latents are returned too.
    """
    check = getattr(adapter, "check_latent_shape", None)
    if check is not None:  # the model's own size limits, before the first forward
        check(latent_shape)
    cond = adapter.encode_prompts(list(prompts)) if not isinstance(prompts, dict) else prompts
    check_conditioning(adapter, cond, len(seeds))
    if uncond is None:
        uncond = encode_negative(adapter, plan)
    x = batch_noise(seeds, latent_shape, adapter.device)
    given = getattr(adapter, "keep_given", None)
    if given is not None:  # latents the conditioning fixes (TI2V's first frame); their velocity is 0, so they stay
        x = given(x, cond)
    wanted = set(keep or ())
    kept: dict[int, torch.Tensor] = {}

    def callback(i: int, _sigma: float, x_i: torch.Tensor) -> None:
        if i in wanted:  # every Euler step makes a new tensor, so a reference is enough
            kept[i] = x_i

    neg = with_defaults(expand(uncond, len(seeds)), cond) if plan.cfg else None  # only the text is swapped
    latents = euler_sample(
        lambda z, s: check_velocity(adapter, adapter.velocity(z, s, cond), z),
        x,
        plan.sigmas,
        uncond=(lambda z, s: check_velocity(adapter, adapter.velocity(z, s, neg), z)) if neg is not None else None,
        guidance=plan.step_guidance,
        callback=callback if keep is not None else None,
        progress=progress,
    )
    if not torch.isfinite(latents).all():  # never write NaN clips or shards as if they were results
        raise AccVideoError(
            f"sampling produced NaN or infinite latents (guidance {plan.guidance:g}, {plan.steps} steps); "
            "lower --guidance or check the model's weights"
        )
    stacked = torch.stack([kept[i] for i in keep], dim=1).float().cpu() if keep is not None else None
    return Samples(latents, stacked)
