"""The shipped built-in teacher: stock diffusers loads it, accvideo samples it the same way, sizes are in budget."""

from __future__ import annotations

import torch
from stock_helpers import stock_latents

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


def test_shipped_image_to_video_teacher_is_small_and_equals_the_stock_ti2v_image_pipeline():
    """`--model builtin-i2v`: the built-in fine-tuned TI2V style (docs/builtin.md); stock diffusers runs it as
    WanImageToVideoPipeline with expand_timesteps, and its latents equal our sampler's from the same first frame."""
    import numpy as np
    import yaml
    from diffusers import WanImageToVideoPipeline

    from accvideo.core.images import encode_conditioning
    from accvideo.core.sampling import SamplingPlan, sample_latents
    from accvideo.evaluate.generate import first_frames
    from accvideo.models.open import open_model
    from accvideo.models.wan_ti2v import WanTI2VImageAdapter

    root = builtin_model_dir("builtin-i2v")
    assert sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) < 8 * 10**6
    trained = yaml.safe_load((root / "accvideo_teacher.yaml").read_text())
    assert trained["image"] is True and trained["init"] == "builtin" and trained["steps"] == 3500
    opened = open_model("builtin-i2v")
    assert type(opened.adapter) is WanTI2VImageAdapter and opened.default_guidance == 5.0

    pipe = WanImageToVideoPipeline.from_pretrained(str(root), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.config.expand_timesteps and pipe.image_encoder is None
    pair = ("a blue star moving right on a white background", 11)
    (image,) = first_frames([pair], 17, 64, 64)
    shape = opened.adapter.latent_shape(17, 64, 64)
    x0 = noise((1, *shape), pair[1])
    ref = stock_latents(pipe, opened.adapter, pair[0], x0, 3, 5.0, (17, 64, 64), image=image)
    cond = encode_conditioning(opened.adapter, [pair[0]], [image], 17, 64, 64)
    ours = sample_latents(opened.adapter, cond, [pair[1]], shape, SamplingPlan(pipe.scheduler.sigmas, 5.0)).latents
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)
    assert np.isfinite(ours.numpy()).all() and (ours[:, :, 1:] - ours[:, :, :1]).abs().mean() > 0.05
