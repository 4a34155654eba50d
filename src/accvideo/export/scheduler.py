"""A stock FlowMatchEulerDiscreteScheduler config whose own timesteps land exactly on a student's key sigmas.

Stock pipelines never take our sigma list: `WanPipeline` calls `scheduler.set_timesteps(m)`, and
`HunyuanVideoPipeline` calls `set_timesteps(sigmas=linspace(1, 0, m+1)[:-1])`. Both then apply the config's
`shift` (and `shift_terminal`, if set). Our key sigmas for uniform key indices on an n-step grid are
`sigma_k = S_s(1 - k/m)`, k = 0..m (S_s(u) = s*u / (1 + (s-1)*u), docs/method.md 0), so:

- linspace pipelines (HunyuanVideo): `shift = s` reproduces them as they are;
- step-count pipelines (Wan): `set_timesteps(m)` gives a_k = linspace(1, e, m) with e = S_{s'}(1/N),
  b_k = S_{s'}(a_k), then `shift_terminal=T` stretches c_k = 1 - (1 - b_k)(1 - T)/(1 - b_{m-1}).
  With d = 1/m and d' = (1 - e)/(m - 1), c_k = sigma_k for every k iff T = sigma_{m-1} and
  s' = d' s / (d' s - d (s - 1)), a fixed point in s' (e depends on it) that converges in a few rounds.

Every config is checked against the real scheduler before it is written (docs/export.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from accvideo.errors import AccVideoError

NUM_TRAIN_TIMESTEPS = 1000  # kept: the pipeline passes timestep = sigma * N to the transformer
TOLERANCE = 1e-6  # the scheduler works in float32
# how each stock pipeline asks its scheduler for m steps
PIPELINE_TIMESTEPS = {"WanPipeline": "steps", "WanImageToVideoPipeline": "steps", "HunyuanVideoPipeline": "linspace"}


def shift_map(u: float, s: float) -> float:
    """S_s(u) = s*u / (1 + (s-1)*u): the flow-matching sigma shift."""
    return s * u / (1.0 + (s - 1.0) * u)


def infer_shift(key_sigmas: Sequence[float]) -> float:
    """The shift s with key_sigmas[k] = S_s(1 - k/m) (uniform key steps); AccVideoError when there is none."""
    key = [float(x) for x in key_sigmas]
    m = len(key) - 1
    if m < 1 or abs(key[0] - 1) > TOLERANCE or abs(key[-1]) > TOLERANCE:
        raise AccVideoError(f"key sigmas {key} must run from 1 to 0; export the student again")
    if m == 1:
        return 1.0
    last = key[m - 1]  # S_s(1/m) = sigma_{m-1}  =>  s = (m-1) sigma / (1 - sigma)
    s = (m - 1) * last / (1.0 - last)
    want = [shift_map(1 - k / m, s) for k in range(m + 1)]
    if s <= 0 or max(abs(a - b) for a, b in zip(key, want, strict=False)) > TOLERANCE:
        raise AccVideoError(_no_match(key))
    return s


def _no_match(key: Sequence[float]) -> str:
    shown = ", ".join(f"{x:.4f}" for x in key)
    return (
        f"the student's key sigmas [{shown}] are not uniform key steps of a shifted grid, which a stock "
        "scheduler cannot reproduce from a step count; sample it with `accvideo sample`, or pass these sigmas "
        "explicitly to a pipeline that takes `sigmas=`"
    )


def scheduler_settings(key_sigmas: Sequence[float], mode: str) -> dict:
    """FlowMatchEulerDiscreteScheduler settings {shift, shift_terminal} for `mode` ('steps' or 'linspace')."""
    key = [float(x) for x in key_sigmas]
    m = len(key) - 1
    s = infer_shift(key)
    if m == 1 or mode == "linspace":
        return {"shift": s, "shift_terminal": None}
    if mode != "steps":
        raise ValueError(f"unknown timestep mode {mode!r}")
    d = 1.0 / m
    sp = s
    for _ in range(100):
        e = shift_map(1.0 / NUM_TRAIN_TIMESTEPS, sp)  # the scheduler's sigma_min
        dp = (1.0 - e) / (m - 1)
        new = dp * s / (dp * s - d * (s - 1.0))
        if abs(new - sp) < 1e-14 * max(1.0, sp):
            sp = new
            break
        sp = new
    return {"shift": sp, "shift_terminal": key[m - 1]}


def make_scheduler(settings: dict):
    """The stock scheduler with these settings (float32 timesteps, no dynamic shifting)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=NUM_TRAIN_TIMESTEPS, **settings)


def pipeline_sigmas(scheduler, steps: int, mode: str) -> list[float]:
    """The m+1 sigmas `scheduler` yields when a stock pipeline of this timestep mode asks for `steps` steps."""
    if mode == "steps":
        scheduler.set_timesteps(steps)
    else:
        scheduler.set_timesteps(sigmas=np.linspace(1.0, 0.0, steps + 1)[:-1])
    return [float(x) for x in scheduler.sigmas]


def check_pipeline(pipeline_class: str) -> None:
    """Refuse a pipeline export writes nothing for (a plugin family's): one line naming the ones it does."""
    if pipeline_class not in PIPELINE_TIMESTEPS:
        known = ", ".join(sorted(PIPELINE_TIMESTEPS))
        raise AccVideoError(
            f"cannot export for a {pipeline_class} (export writes folders that a stock diffusers pipeline loads: "
            f"{known}); sample the student with `accvideo sample --model RUN`"
        )


def matching_scheduler(key_sigmas: Sequence[float], pipeline_class: str):
    """(scheduler, settings) whose `pipeline_class` timesteps for m steps equal the key sigmas within 1e-6."""
    check_pipeline(pipeline_class)
    mode = PIPELINE_TIMESTEPS[pipeline_class]
    key = [float(x) for x in key_sigmas]
    settings = scheduler_settings(key, mode)
    scheduler = make_scheduler(settings)
    got = pipeline_sigmas(scheduler, len(key) - 1, mode)
    if len(got) != len(key) or max(abs(a - b) for a, b in zip(got, key, strict=True)) > TOLERANCE:
        raise AccVideoError(_no_match(key))
    return scheduler, settings
