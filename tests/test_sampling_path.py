"""The one sampling path (core/sampling.py): per-item noise, CFG in the sampler, kept latents, resolved plans."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from accvideo.core.runtime import batch_noise, noise
from accvideo.core.sampling import (
    TEACHER_STEPS,
    SamplingPlan,
    cfg_combine,
    euler_step,
    sample_latents,
    shifted_plan,
)
from accvideo.core.schedules import shifted_sigmas
from accvideo.models.open import OpenModel
from accvideo.models.runtime import RuntimeAdapter, RuntimeOptions, apply_runtime

SHAPE = (16, 2, 4, 4)  # tiny Wan latents of 5 frames at 32x32


def test_batch_noise_rows_come_from_their_own_seed_alone():
    eps = batch_noise([3, 9, 3], SHAPE)
    assert eps.shape == (3, *SHAPE) and eps.dtype == torch.float32
    assert torch.equal(eps[0], noise(SHAPE, 3)) and torch.equal(eps[1], noise(SHAPE, 9)) and torch.equal(eps[0], eps[2])
    assert torch.equal(batch_noise([9], SHAPE)[0], eps[1])  # batching never changes a row


def test_guided_solve_is_the_cfg_formula_step_by_step(tiny_wan):
    """Each kept transition is one Euler step with v_uncond + w (v_cond - v_uncond), cond and uncond one pass each."""
    plan = SamplingPlan(shifted_sigmas(3, 5.0), guidance=3.0, negative_prompt="blurry")
    cond, uncond = tiny_wan.encode_prompts(["a red circle", "a blue square"]), tiny_wan.encode_prompts(["blurry"])
    out = sample_latents(tiny_wan, ["a red circle", "a blue square"], [1, 2], SHAPE, plan, keep=range(4))
    assert out.kept.shape == (2, 4, *SHAPE) and torch.equal(out.kept[:, -1], out.latents)
    assert torch.equal(out.kept[:, 0], batch_noise([1, 2], SHAPE))
    neg = {k: v.expand(2, *v.shape[1:]) for k, v in uncond.items()}
    with torch.no_grad():
        for i in range(3):
            x, s = out.kept[:, i], plan.sigmas[i]
            sigma = torch.full((2,), s)
            v = cfg_combine(tiny_wan.velocity(x, sigma, cond), tiny_wan.velocity(x, sigma, neg), 3.0)
            torch.testing.assert_close(out.kept[:, i + 1], euler_step(x, v, s, plan.sigmas[i + 1]))
    # encodings given instead of prompts, or the negative prompt pre-encoded: the same latents
    again = sample_latents(tiny_wan, cond, [1, 2], SHAPE, plan, uncond=uncond)
    assert torch.equal(again.latents, out.latents) and again.kept is None


def test_guidance_one_runs_one_pass_a_step(tiny_wan):
    calls = []
    real = tiny_wan.velocity

    class Counting:
        def __getattr__(self, name):
            return getattr(tiny_wan, name)

        def velocity(self, *args):
            calls.append(1)
            return real(*args)

    sample_latents(Counting(), ["a dog"], [0], SHAPE, SamplingPlan(shifted_sigmas(2, 5.0), 1.0))
    assert len(calls) == 2
    sample_latents(Counting(), ["a dog"], [0], SHAPE, SamplingPlan(shifted_sigmas(2, 5.0), 2.0))
    assert len(calls) == 2 + 4


def test_plans_resolve_the_model_defaults_once(tiny_wan):
    teacher = OpenModel(tiny_wan, Path("teacher")).plan()
    assert teacher.steps == TEACHER_STEPS and teacher.guidance == tiny_wan.default_guidance == 5.0
    assert teacher.sigmas == tuple(shifted_sigmas(TEACHER_STEPS, tiny_wan.default_shift).tolist())
    assert teacher == shifted_plan(tiny_wan)
    assert OpenModel(tiny_wan, Path("t")).plan(4, 2.0, 3.0).sigmas == tuple(shifted_sigmas(4, 3.0).tolist())

    key = [1.0, 0.9, 0.5, 0.0]
    student = OpenModel(tiny_wan, Path("t"), Path("s"), {"key_sigmas": key})
    assert student.plan().sigmas == tuple(key) and student.plan().guidance == 1.0
    # steps or shift given: the shifted grid, still without CFG unless asked
    assert student.plan(shift=2.0) == shifted_plan(tiny_wan, 3, 1.0, 2.0)
    assert student.plan(6).guidance == 1.0 and student.plan(6, 4.0).guidance == 4.0
    with pytest.raises(ValueError, match="guidance must be >= 0"):
        SamplingPlan(key, -1.0)


def test_runtime_wrapper_leaves_the_adapter_itself_unpatched(tiny_wan):
    wrapped = apply_runtime(tiny_wan, RuntimeOptions(vae_tiling="auto"))
    assert isinstance(wrapped, RuntimeAdapter) and apply_runtime(tiny_wan, None) is tiny_wan
    assert "encode_prompts" not in vars(tiny_wan) and "decode" not in vars(tiny_wan)
    assert wrapped.transformer is tiny_wan.transformer and wrapped.latent_shape(5, 32, 32) == SHAPE
    z = batch_noise([0], SHAPE)
    assert torch.equal(wrapped.decode(z), tiny_wan.decode(z))


def test_batch_size_moves_a_clip_by_float_rounding_alone(tiny_wan):
    """evaluate's batches: each clip's noise and text are its own, so batch 1 against 3 differ only where batched
    matrix products round differently: at most 1 uint8 level (docs/toybench.md), never a different clip."""
    import numpy as np

    from accvideo.evaluate.generate import generate_videos
    from accvideo.world import prompts

    plan = SamplingPlan(shifted_sigmas(4, 5.0), guidance=5.0, negative_prompt="")
    pairs = prompts(3, "heldout", 0)
    one, three = (
        generate_videos(tiny_wan, pairs, plan, frames=5, height=32, width=32, batch_size=b, progress=False)
        for b in (1, 3)
    )
    assert np.abs(one.astype(int) - three.astype(int)).max() <= 1
    swapped = generate_videos(tiny_wan, pairs[::-1], plan, frames=5, height=32, width=32, batch_size=3, progress=False)
    assert np.abs(swapped[::-1].astype(int) - three.astype(int)).max() <= 1  # a clip does not depend on its row
    assert np.abs(one[0].astype(int) - one[1].astype(int)).max() > 10  # while other prompts/seeds differ a lot
