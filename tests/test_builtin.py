"""The shipped built-in teacher: stock diffusers loads it, accvideo samples it the same way, sizes are in budget."""

from __future__ import annotations

import torch

from accvideo.core.runtime import builtin_model_dir, noise


def test_shipped_teacher_is_small_and_complete():
    root = builtin_model_dir()
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert size <= 15 * 2**20
    for part in ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (root / part).is_dir()


def test_stock_wan_pipeline_loads_the_builtin_and_matches_our_sampler():
    from diffusers import WanPipeline

    from accvideo.models.open import open_model

    pipe = WanPipeline.from_pretrained(str(builtin_model_dir()), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    opened = open_model("builtin")
    adapter = opened.adapter
    assert opened.default_guidance == 5.0 and adapter.default_shift == pipe.scheduler.config.shift
    prompt, steps = "a red square moving left on a grey background", 4
    x = noise((1, *adapter.latent_shape(17, 64, 64)), 3)
    # the stock scheduler's own grid for `steps` steps (not our shifted grid: diffusers shifts twice; see
    # docs/export.md); our sampler on that grid must give the stock pipeline's latents
    pipe.scheduler.set_timesteps(steps)
    grid = pipe.scheduler.sigmas.clone().double()
    out = pipe(
        prompt,
        height=64,
        width=64,
        num_frames=17,
        num_inference_steps=steps,
        guidance_scale=5.0,
        latents=x.clone(),
        output_type="latent",
        max_sequence_length=adapter.max_sequence_length,
    ).frames
    from accvideo.core.sampling import euler_sample

    cond, uncond = adapter.encode_prompts([prompt]), adapter.encode_prompts([""])
    with torch.no_grad():
        ours = euler_sample(
            lambda z, s: adapter.velocity(z, s, cond),
            x.clone(),
            grid,
            guidance=5.0,
            uncond=lambda z, s: adapter.velocity(z, s, uncond),
        )
    assert torch.allclose(out, ours, atol=1e-4)
