"""Wan 2.2 TI2V with image input (WanImageToVideoPipeline, expand_timesteps) against stock diffusers: the teacher's
latents, the first frame kept clean, SynVid's stored condition, and the exported student's few-step latents."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from diffusers import WanImageToVideoPipeline
from stock_helpers import stock_latents
from test_wan_i2v import picture

from accvideo.core.images import encode_conditioning, load_images
from accvideo.core.runtime import batch_noise
from accvideo.core.sampling import SamplingPlan, sample_latents

FRAMES, H, W = 9, 64, 64  # latents (48, 3, 4, 4): a 3 x 2 x 2 token grid, frame 0 given
PROMPT = "a red circle moving left"
PROMPTS = [PROMPT, "a blue square", "a cat", "a green star moving up"]


def save_ti2v_image(out):
    """The tiny random Wan 2.2 TI2V of bench/configs.py saved for image input, as diffusers saves Wan2.2-TI2V-5B's
    image mode: a WanImageToVideoPipeline with expand_timesteps and no image encoder."""
    from accvideo.bench.configs import build_random

    pipe = build_random("wan22-ti2v-tiny", torch.device("cpu"), torch.float32).pipe
    parts = {k: getattr(pipe, k) for k in ("tokenizer", "text_encoder", "transformer", "vae", "scheduler")}
    WanImageToVideoPipeline(**parts, image_encoder=None, image_processor=None, expand_timesteps=True).save_pretrained(
        str(out), safe_serialization=True
    )
    return out


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_ti2v_image(tmp_path_factory.mktemp("ti2v-image") / "teacher")


@pytest.fixture(scope="module")
def adapter(folder):
    from accvideo.models import load_adapter

    return load_adapter(folder)


def stock(path):
    pipe = WanImageToVideoPipeline.from_pretrained(str(path))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_folder_opens_the_image_adapter_and_encodes_the_first_frame_only(folder, adapter):
    from accvideo.models import adapter_class
    from accvideo.models.wan_ti2v import WanTI2VImageAdapter

    assert adapter_class(folder) is WanTI2VImageAdapter and type(adapter) is WanTI2VImageAdapter
    assert adapter.image_conditioned and adapter.family == "wan2.2-ti2v" and adapter.pipe.image_encoder is None
    assert adapter.latent_shape(FRAMES, H, W) == (48, 3, 4, 4)
    cond = encode_conditioning(adapter, [PROMPT, "a cat"], [picture(1, (W, H)), picture(2, (W, H))], FRAMES, H, W)
    assert set(cond) == {"prompt_embeds", "condition"} and cond["condition"].shape == (2, 48, 1, 4, 4)
    # the first frame alone through the VAE (argmax), normalised: the adapter's own encode of a one-frame clip
    pixels = torch.from_numpy(np.array(picture(2, (W, H)))).float()[None, None] / 255
    torch.testing.assert_close(cond["condition"][1:], adapter.encode(pixels), atol=1e-5, rtol=0)


@pytest.mark.parametrize("guidance", [1.0, 4.0])
def test_sampler_equals_stock_pipeline_and_keeps_the_first_frame(folder, adapter, guidance):
    pipe = stock(folder)
    image, steps, seed = picture(0, (W, H)), 5, 3
    x0 = batch_noise([seed], adapter.latent_shape(FRAMES, H, W))
    seen: list[torch.Tensor] = []
    hook = pipe.transformer.condition_embedder.register_forward_pre_hook(lambda m, a: seen.append(a[0].clone()))
    try:
        ref = stock_latents(pipe, adapter, PROMPT, x0, steps, guidance, (FRAMES, H, W), image=image)
    finally:
        hook.remove()
    plan = SamplingPlan(pipe.scheduler.sigmas, guidance)  # the stock scheduler's grid
    cond = encode_conditioning(adapter, [PROMPT], [image], FRAMES, H, W)
    ours_t: list[torch.Tensor] = []
    hook = adapter.transformer.condition_embedder.register_forward_pre_hook(lambda m, a: ours_t.append(a[0].clone()))
    try:
        ours = sample_latents(adapter, cond, [seed], x0.shape[1:], plan).latents  # uncond: "" with the image kept
    finally:
        hook.remove()
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)
    assert (ours[:, :, 1:] - x0[:, :, 1:]).abs().mean() > 0.1  # the solve moved the frames it generates
    torch.testing.assert_close(ours[:, :, :1], cond["condition"], atol=0, rtol=0)  # and kept the given one exactly
    # the transformer saw what the stock loop gives it: timestep 0 on frame 0's 4 tokens, t on the 8 others
    assert len(ours_t) == len(seen) == steps * (2 if guidance > 1 else 1)
    for a, b in zip(ours_t, seen, strict=True):
        torch.testing.assert_close(a, b, atol=1e-3, rtol=0)
        assert a[:4].abs().max() == 0 and a[4:].min() > 0

    other = encode_conditioning(adapter, [PROMPT], [picture(5, (W, H))], FRAMES, H, W)
    moved = sample_latents(adapter, other, [seed], x0.shape[1:], plan).latents
    assert (moved[:, :, 1:] - ours[:, :, 1:]).abs().max() > 1e-3  # the image conditions the generated frames


def test_velocity_needs_the_image_and_is_zero_on_the_given_frame(adapter):
    from accvideo.errors import AccVideoError

    x = batch_noise([0, 1], adapter.latent_shape(FRAMES, H, W))
    cond = encode_conditioning(adapter, [PROMPT, "a cat"], [picture(1, (W, H)), picture(2, (W, H))], FRAMES, H, W)
    v = adapter.velocity(x, torch.tensor([0.7, 0.2]), cond)
    assert v[:, :, 0].abs().max() == 0 and v[:, :, 1:].abs().mean() > 0.1
    # frame 0 of the input never matters: the transformer always sees the condition there
    y = x.clone()
    y[:, :, 0] = 5.0
    torch.testing.assert_close(adapter.velocity(y, torch.tensor([0.7, 0.2]), cond), v, atol=0, rtol=0)
    with pytest.raises(AccVideoError, match="got no image conditioning"):
        adapter.velocity(x, torch.tensor([0.5, 0.5]), {"prompt_embeds": cond["prompt_embeds"]})


@pytest.fixture(scope="module")
def chain(folder, tmp_path_factory):
    """JSONL prompts with images -> SynVid of the tiny TI2V image teacher at 9 x 32 x 32 -> full and LoRA students."""
    from accvideo.distill import DistillConfig, distill
    from accvideo.synthesize import SynthConfig, synthesize

    root = tmp_path_factory.mktemp("ti2v-image-chain")
    (root / "images").mkdir()
    rows = []
    for i, prompt in enumerate(PROMPTS):
        picture(20 + i, (32, 32)).save(root / "images" / f"{i}.png")
        rows.append({"prompt": prompt, "image": f"images/{i}.png"})
    (root / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    synth = dict(steps=6, key_steps=3, frames=FRAMES, height=32, width=32, guidance=3.0, shard_size=4, batch=4)
    synthesize(
        SynthConfig(teacher=str(folder), prompts=str(root / "p.jsonl"), out=str(root / "syn"), **synth),
        progress=False,
    )
    quick = dict(iterations=2, batch=2, lr=1e-3, head_lr=1e-4, head_channels=8, device="cpu")
    for name, extra in (("full", {}), ("lora", {"lora_rank": 2})):
        cfg = DistillConfig(teacher=str(folder), data=str(root / "syn"), out=str(root / name), **quick, **extra)
        distill(cfg, progress=False)
    return root


def test_synvid_stores_the_condition_and_every_key_latent_keeps_the_first_frame(chain, adapter):
    from accvideo.synthesize import SynVidDataset

    data = SynVidDataset(chain / "syn")
    item = data[2]
    assert set(item["cond"]) == {"prompt_embeds", "condition"}
    images, _ = load_images([item["image"]], 32, 32)
    want = encode_conditioning(adapter, [PROMPTS[2]], images, FRAMES, 32, 32)
    for name, value in want.items():  # what the teacher saw is what distillation reads back
        torch.testing.assert_close(item["cond"][name], value[0], atol=0, rtol=0)
    keys = item["latents"]  # (m + 1, C, F', H', W'): noise ... result, each with the clean first frame
    assert keys.shape[:3] == (4, 48, 3)
    for key in keys:
        torch.testing.assert_close(key[:, :1], want["condition"][0], atol=0, rtol=0)
    assert (keys[0, :, 1:] - keys[-1, :, 1:]).abs().mean() > 0.1


@pytest.mark.parametrize("kind", ["full", "lora"])
def test_export_loads_in_stock_pipeline_and_equals_sample_with_image(kind, chain, folder, tmp_path, capsys):
    from diffusers import FlowMatchEulerDiscreteScheduler, WanTransformer3DModel

    from accvideo.cli import main
    from accvideo.export.run import export_run
    from accvideo.models.open import open_model

    run = chain / kind
    image_path, seed = chain / "images" / "1.png", 7
    clip = tmp_path / "clip.mp4"  # `accvideo sample --image` with the student: its latents are ours below
    with pytest.raises(SystemExit) as exc:
        main(
            ["sample", "--model", str(run), "--image", str(image_path), "--prompt", PROMPTS[1], "--seed", str(seed)]
            + ["--frames", str(FRAMES), "--size", "32x32", "--out", str(clip)]
        )
    assert exc.value.code in (0, None), capsys.readouterr().err
    assert clip.is_file()
    settings = yaml.safe_load(clip.with_suffix(".yaml").read_text())  # the key sigmas, no CFG: what runs below

    image = load_images([image_path], 32, 32)[0][0]
    opened = open_model(str(run))
    shape = opened.adapter.latent_shape(FRAMES, 32, 32)
    cond = encode_conditioning(opened.adapter, [PROMPTS[1]], [image], FRAMES, 32, 32)
    ours = sample_latents(opened.adapter, cond, [seed], shape, opened.plan()).latents

    manifest = export_run(run, "diffusers", tmp_path / "export")
    pipe = stock(tmp_path / "export")
    assert pipe.config.expand_timesteps and pipe.image_encoder is None
    pipe.scheduler.set_timesteps(manifest["call"]["num_inference_steps"])  # what the pipeline itself calls
    assert pipe.scheduler.sigmas.tolist() == pytest.approx(manifest["key_sigmas"], abs=1e-6)
    kw = dict(height=32, width=32, num_frames=FRAMES, latents=batch_noise([seed], shape), output_type="latent")
    theirs = pipe(image=image, prompt=PROMPTS[1], **kw, **manifest["call"]).frames
    assert manifest["call"]["num_inference_steps"] == 3 and manifest["call"]["guidance_scale"] == 1.0
    assert settings["sigmas"] == pytest.approx(manifest["key_sigmas"], abs=1e-6) and settings["resolved_guidance"] == 1
    torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=0)

    teacher = WanTransformer3DModel.from_pretrained(str(folder / "transformer")).state_dict()
    moved = max((t - teacher[n]).abs().max().item() for n, t in pipe.transformer.state_dict().items())
    assert moved > 1e-5  # the exported transformer is the trained student

    if kind == "lora":  # the LoRA file on the stock teacher, with the scheduler shipped beside it
        export_run(run, "lora", tmp_path / "lora")
        pipe = stock(folder)
        pipe.load_lora_weights(str(tmp_path / "lora"))
        pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(str(tmp_path / "lora"), subfolder="scheduler")
        again = pipe(image=image, prompt=PROMPTS[1], **kw, **manifest["call"]).frames
        torch.testing.assert_close(again, ours, atol=1e-4, rtol=0)


def test_real_clips_take_their_first_frame_as_the_image_and_keep_it_given(adapter, tmp_path):
    """real_data for an image-to-video teacher: each real clip is conditioned on its own first frame (8 bits, as an
    image file), encoded once and cached; noised to t'_k, its latent frame 0 stays the given image's."""
    from PIL import Image

    from accvideo.distill.reals import load_real_clips, world_sources
    from accvideo.world import parse_caption, render
    from accvideo.world.render import WorldConfig

    clips = load_real_clips("world", tmp_path, adapter, (FRAMES, 32, 32), 3, 0, progress=False)
    picks, seeds = torch.tensor([2, 0]), [5, 6]
    x, cond = clips.noised(picks, seeds, 0.7, torch.device("cpu"))
    for row, i in enumerate(picks.tolist()):
        source = world_sources(3, 0)[i]
        frame = render(parse_caption(source.prompt), source.seed, WorldConfig(frames=FRAMES, height=32, width=32))[0]
        image = Image.fromarray((frame * 255.0 + 0.5).astype(np.uint8))
        want = encode_conditioning(adapter, [source.prompt], [image], FRAMES, 32, 32)
        assert set(cond) == set(want)
        for name, value in want.items():
            torch.testing.assert_close(cond[name][row], value[0], atol=0, rtol=0)
        torch.testing.assert_close(x[row, :, :1], want["condition"][0].to(x), atol=0, rtol=0)  # given, not noised
    assert (x[:, :, 1:] - clips.latents[picks][:, :, 1:]).abs().mean() > 0.1  # the later frames are noised
    again = load_real_clips("world", tmp_path, adapter, (FRAMES, 32, 32), 3, 0, progress=False)  # from the cache
    x2, cond2 = again.noised(picks, seeds, 0.7, torch.device("cpu"))
    assert torch.equal(x, x2) and all(torch.equal(cond[n], cond2[n]) for n in cond)
