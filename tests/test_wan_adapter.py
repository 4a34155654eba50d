"""The Wan adapter against stock diffusers: same latents as WanPipeline, exact block features."""

import pytest
import torch
from diffusers import WanPipeline
from stock_helpers import stock_latents

from accvideo.core.adapter import ModelAdapter
from accvideo.core.runtime import noise
from accvideo.core.sampling import euler_sample
from accvideo.errors import AccVideoError

FRAMES, H, W = 9, 32, 32


def test_is_a_model_adapter(tiny_wan):
    assert isinstance(tiny_wan, ModelAdapter)
    assert tiny_wan.family == "wan" and tiny_wan.num_blocks == 3
    assert tiny_wan.latent_shape(FRAMES, H, W) == (16, 3, 4, 4)
    assert tiny_wan.token_grid((16, 3, 4, 4)) == (3, 2, 2)


@pytest.mark.parametrize("guidance", [1.0, 4.0])
def test_core_sampler_equals_wan_pipeline(tiny_wan_dir, tiny_wan, guidance):
    pipe = WanPipeline.from_pretrained(str(tiny_wan_dir))
    pipe.set_progress_bar_config(disable=True)
    prompt, steps = "a red circle moving left", 6
    x0 = noise((1, *tiny_wan.latent_shape(FRAMES, H, W)), seed=3)
    ref = stock_latents(pipe, tiny_wan, prompt, x0, steps, guidance, (FRAMES, H, W))
    sigmas = pipe.scheduler.sigmas  # what the pipeline's own scheduler used (shift applied in set_timesteps)
    assert len(sigmas) == steps + 1

    cond, uncond = tiny_wan.encode_prompts([prompt]), tiny_wan.encode_prompts([""])
    ours = euler_sample(
        lambda x, s: tiny_wan.velocity(x, s, cond),
        x0.clone(),
        sigmas,
        uncond=lambda x, s: tiny_wan.velocity(x, s, uncond),
        guidance=guidance,
    )
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)
    assert (ours - x0).abs().mean() > 0.1  # the solve moved: the comparison is not vacuous

    # decode matches the pipeline's own VAE path (np output is (B, F, H, W, 3) in [0, 1])
    video = stock_latents(pipe, tiny_wan, prompt, x0, steps, guidance, (FRAMES, H, W), output="np")
    ours_video = tiny_wan.decode(ours)
    assert ours_video.shape == (1, FRAMES, H, W, 3)
    torch.testing.assert_close(ours_video, torch.from_numpy(video).float(), atol=1e-4, rtol=0)


def _block_counter(adapter):
    calls = [0] * adapter.num_blocks
    handles = [
        b.register_forward_pre_hook(lambda m, a, i=i: calls.__setitem__(i, calls[i] + 1))
        for i, b in enumerate(adapter.transformer.blocks)
    ]
    return calls, handles


@pytest.mark.parametrize("block", [0, 1])
def test_features_equal_hook_and_stop_early(tiny_wan, block):
    x = noise((2, *tiny_wan.latent_shape(FRAMES, H, W)), seed=1)
    sigma = torch.tensor([0.9, 0.3])
    cond = tiny_wan.encode_prompts(["a blue square", "a cat"])

    recorded = []
    h = tiny_wan.transformer.blocks[block].register_forward_hook(lambda m, a, out: recorded.append(out))
    calls, handles = _block_counter(tiny_wan)
    try:
        with torch.no_grad():
            tiny_wan.velocity(x, sigma, cond)  # a full forward, hook records the block output
        assert calls == [1, 1, 1]
        calls[:] = [0, 0, 0]
        feats = tiny_wan.features(x, sigma, cond, block)
        assert calls == [1] * (block + 1) + [0] * (2 - block)  # later blocks never ran
    finally:
        h.remove()
        for hd in handles:
            hd.remove()
    assert feats.shape == (2, 3 * 2 * 2, tiny_wan.transformer.config.num_attention_heads * 12)
    torch.testing.assert_close(feats, recorded[0], atol=0, rtol=0)
    assert not tiny_wan.transformer.blocks[block]._forward_hooks  # hooks cleaned up


def test_features_are_differentiable_wrt_input(tiny_wan):
    x = noise((1, *tiny_wan.latent_shape(FRAMES, H, W)), seed=2).requires_grad_(True)
    feats = tiny_wan.features(x, torch.tensor([0.5]), tiny_wan.encode_prompts(["a dog"]), 1)
    feats.square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny_wan.transformer.parameters())  # the teacher stays frozen


def test_feature_block_out_of_range(tiny_wan):
    x = noise((1, *tiny_wan.latent_shape(FRAMES, H, W)), seed=2)
    with pytest.raises(AccVideoError, match="out of range"):
        tiny_wan.features(x, torch.tensor([0.5]), tiny_wan.encode_prompts(["a"]), 3)
