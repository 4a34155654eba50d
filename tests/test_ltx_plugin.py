"""The example plugin examples/ltx_adapter (LTX-Video, an architecture accvideo does not build in) against stock
diffusers: its velocity is LTXPipeline's transformer call, accvideo's sampler is LTXPipeline's loop, its decode is
the pipeline's; then every command takes the folder through the entry point, as after `pip install` of the example.

The tiny pipeline keeps LTX-Video's real geometry (VAE 32x in space and 8x in time, patch size 1, T5 with an
attention mask), a timestep-conditioned decoder (LTX 0.9.1 and later), non-trivial latent statistics and scaling,
and LTX's dynamic-shift scheduler with its terminal sigma."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
from cli_helpers import run_cli

import accvideo.models as models
from accvideo.core.runtime import batch_noise
from accvideo.core.sampling import SamplingPlan, sample_latents
from accvideo.core.schedules import shifted_sigmas

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ltx_adapter"
FRAMES, H, W = 17, 64, 64  # latents (8, 3, 2, 2): 12 tokens
PROMPT = "a red circle moving left"
MAX_LEN = 16  # T5 tokens (accvideo.json); every prompt here is shorter, so the attention mask matters


def tiny_ltx_pipeline():
    """A random LTXPipeline with LTX-Video's geometry, small enough to run in well under a second."""
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXPipeline,
        LTXVideoTransformer3DModel,
    )
    from transformers import T5Config, T5EncoderModel

    from accvideo.models.tiny import TINY_WORDS, tiny_t5_settings, word_tokenizer

    tokenizer = word_tokenizer(TINY_WORDS, MAX_LEN)
    torch.manual_seed(0)  # diffusers/transformers initialise from the global RNG
    text_encoder = T5EncoderModel(T5Config(**tiny_t5_settings(tokenizer)))
    transformer = LTXVideoTransformer3DModel(
        in_channels=8,
        out_channels=8,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=2,
        attention_head_dim=8,
        cross_attention_dim=16,
        num_layers=3,
        caption_channels=32,
    )
    # every decoder_* argument given: the defaults are the full-size decoder (NOTES-diffusers)
    vae = AutoencoderKLLTXVideo(
        latent_channels=8,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, True, False),
        decoder_block_out_channels=(8, 8, 8, 8),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        decoder_spatio_temporal_scaling=(True, True, True, False),
        decoder_inject_noise=(False, False, False, False, False),
        upsample_residual=(False, False, False, False),
        upsample_factor=(1, 1, 1, 1),
        timestep_conditioning=True,
        patch_size=4,
        patch_size_t=1,
        scaling_factor=0.7,
    )
    with torch.no_grad():  # statistics the normalisation must undo (stock: zeros and ones)
        vae.latents_mean.normal_()
        vae.latents_std.uniform_(0.5, 2.0)
    scheduler = FlowMatchEulerDiscreteScheduler(  # LTX-Video's scheduler config
        use_dynamic_shifting=True,
        base_shift=0.95,
        max_shift=2.05,
        base_image_seq_len=1024,
        max_image_seq_len=4096,
        shift_terminal=0.1,
    )
    return LTXPipeline(
        scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer
    )


@pytest.fixture(scope="module")
def ltx_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny") / "ltx"
    tiny_ltx_pipeline().save_pretrained(str(folder))
    (folder / "accvideo.json").write_text(json.dumps({"max_sequence_length": MAX_LEN}))
    return folder


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """The example package importable with its entry point, as `pip install examples/ltx_adapter` leaves it; the
    registry is restored after."""
    info = tmp_path / "site" / "accvideo_ltx-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: accvideo-ltx\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[accvideo.adapters]\nltx = accvideo_ltx:LTXAdapter\n")
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.syspath_prepend(str(info.parent))
    monkeypatch.delitem(sys.modules, "accvideo_ltx", raising=False)
    monkeypatch.setattr(models, "ADAPTERS", dict(models.ADAPTERS))
    monkeypatch.setattr(models, "VARIANTS", list(models.VARIANTS))
    monkeypatch.setattr(models, "_plugins", {})


@pytest.fixture
def ltx(ltx_dir, plugin):
    """The plugin's adapter, found through the entry point."""
    return models.load_adapter(ltx_dir)


def stock_pipe(path):
    from diffusers import LTXPipeline

    pipe = LTXPipeline.from_pretrained(str(path))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_velocity_and_features_are_ltx_pipelines_transformer_call(ltx, ltx_dir):
    from accvideo_ltx import LTXAdapter

    pipe = stock_pipe(ltx_dir)
    assert type(ltx) is LTXAdapter and ltx.family == "ltx" and ltx.default_guidance == 3.0
    assert (ltx.frame_step, ltx.size_multiple, ltx.num_blocks) == (8, 32, 3)
    shape = ltx.latent_shape(FRAMES, H, W)
    assert shape == (8, 3, 2, 2) and ltx.token_grid(shape) == (3, 2, 2)
    x = batch_noise([1, 2], shape, ltx.device)
    sigma = torch.tensor([0.9, 0.35])
    cond = ltx.encode_prompts([PROMPT, "a dog"])
    assert cond["prompt_attention_mask"].shape == (2, MAX_LEN) and cond["prompt_attention_mask"][:, -1].sum() == 0

    # LTXPipeline's call: packed latents, timestep 1000 sigma, the boolean mask, the latent grid, its rope scale
    embeds, mask, _, _ = pipe.encode_prompt(
        [PROMPT, "a dog"], do_classifier_free_guidance=False, max_sequence_length=MAX_LEN
    )
    rope = (
        pipe.vae_temporal_compression_ratio / 25,
        pipe.vae_spatial_compression_ratio,
        pipe.vae_spatial_compression_ratio,
    )
    call = dict(
        encoder_hidden_states=embeds,
        timestep=1000 * sigma,
        encoder_attention_mask=mask,
        num_frames=3,
        height=2,
        width=2,
        rope_interpolation_scale=rope,
        return_dict=False,
    )
    with torch.no_grad():
        stock = pipe.transformer(hidden_states=pipe._pack_latents(x), **call)[0]
    ref = pipe._unpack_latents(stock, 3, 2, 2)
    diff = (ltx.velocity(x, sigma, cond) - ref).abs().max().item()
    assert diff < 1e-5, diff

    # features: block 1's output on the stock packing, whose token order is token_grid's (frame-major)
    grid = ltx.token_grid(shape)
    assert pipe._pack_latents(x).reshape(2, *grid, -1).equal(x.permute(0, 2, 3, 4, 1))
    seen = []
    hook = pipe.transformer.transformer_blocks[1].register_forward_hook(lambda _m, _i, out: seen.append(out))
    with torch.no_grad():
        pipe.transformer(hidden_states=pipe._pack_latents(x), **call)
    hook.remove()
    feats = ltx.features(x, sigma, cond, 1)
    assert feats.shape == (2, math.prod(grid), 16) and (feats - seen[0]).abs().max() < 1e-5

    # default_shift: LTXPipeline's dynamic shift at the scheduler's max_image_seq_len, as one static shift
    config = {**pipe.scheduler.config, "shift_terminal": None}
    scheduler = type(pipe.scheduler).from_config(config)
    scheduler.set_timesteps(sigmas=torch.linspace(1, 1 / 5, 5).tolist(), mu=config["max_shift"])
    assert ltx.default_shift == pytest.approx(math.exp(2.05))
    assert scheduler.sigmas.tolist() == pytest.approx(shifted_sigmas(5, ltx.default_shift).tolist(), abs=1e-6)


def test_load_parts_keep_the_geometry(ltx_dir, plugin):
    """What distill loads: no text encoder, no VAE, the transformer on the meta device; the geometry stays."""
    from accvideo.models.base import LoadParts

    cls = models.adapter_class(ltx_dir)
    bare = cls.load(ltx_dir, parts=LoadParts(text=False, vae=False, empty_transformer=True))
    assert bare.pipe.text_encoder is None and bare.pipe.tokenizer is None and bare.vae is None
    assert bare.transformer.device.type == "meta" and bare.device.type == "cpu"
    assert bare.latent_shape(FRAMES, H, W) == (8, 3, 2, 2) and (bare.frame_step, bare.size_multiple) == (8, 32)
    assert bare.scaling_factor == 0.7 and bare.timestep_conditioning and bare.max_sequence_length == MAX_LEN


def test_core_sampler_and_decode_equal_ltx_pipeline(ltx_dir, plugin):
    pipe = stock_pipe(ltx_dir)
    # a timestep-conditioned decode at decode_timestep 0.05, without noise so that the pipeline's is repeatable
    ltx = models.load_adapter(ltx_dir, decode_timestep=0.05, decode_noise_scale=0.0)
    shape = ltx.latent_shape(FRAMES, H, W)
    x0 = batch_noise([3], shape, ltx.device)
    call = dict(
        prompt=PROMPT,
        negative_prompt="",
        height=H,
        width=W,
        num_frames=FRAMES,
        num_inference_steps=4,
        guidance_scale=ltx.default_guidance,
        max_sequence_length=ltx.max_sequence_length,
        decode_timestep=0.05,
        decode_noise_scale=0.0,
    )
    ref = pipe(**call, latents=pipe._pack_latents(x0), output_type="latent").frames
    # the pipeline's grid: LTX's dynamic shift at 12 tokens, stretched to its terminal sigma 0.1, then 0
    sigmas = pipe.scheduler.sigmas.tolist()
    assert len(sigmas) == 5 and sigmas[0] == 1.0 and sigmas[-2] == pytest.approx(0.1) and sigmas[-1] == 0.0

    ours = sample_latents(ltx, [PROMPT], [3], shape, SamplingPlan(sigmas, guidance=ltx.default_guidance)).latents
    diff = (ours - pipe._unpack_latents(ref, 3, 2, 2)).abs().max().item()
    assert diff < 1e-4, diff

    video = pipe(**call, latents=pipe._pack_latents(x0), output_type="pt").frames  # (B, F, 3, H, W)
    decoded = ltx.decode(ours)
    assert decoded.shape == (1, FRAMES, H, W, 3)
    diff = (decoded - video.permute(0, 1, 3, 4, 2)).abs().max().item()
    assert diff < 1e-4, diff
    ltx.decode_timestep = 0.0  # the decoder's timestep is used: another one decodes another video
    assert (ltx.decode(ours) - decoded).abs().max() > 1e-3

    # encode: the posterior's mode, normalised as LTX's image-to-video pipeline does; decode's inverse in shape
    with torch.no_grad():
        mode = pipe.vae.encode(decoded.permute(0, 4, 1, 2, 3) * 2 - 1).latent_dist.mode()
    normalised = pipe._normalize_latents(mode, pipe.vae.latents_mean, pipe.vae.latents_std, 0.7)
    assert (ltx.encode(decoded) - normalised).abs().max() < 1e-5 and normalised.shape[1:] == shape


def test_every_command_takes_an_ltx_folder_through_the_plugin(ltx_dir, plugin, tmp_path, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle moving left\na blue square moving up\n")
    small = ["--steps", "4", "--key-steps", "2", "--frames", "9", "--size", "64x32", "--device", "cpu"]
    syn = tmp_path / "syn"
    code, _, err = run_cli(
        ["synthesize", "--teacher", str(ltx_dir), "--prompts", str(prompts), *small, "--out", str(syn)], capsys
    )
    assert code == 0, err

    for name, extra in (("full", []), ("lora", ["lora_rank=2"])):
        run = tmp_path / name
        distill = ["distill", "--teacher", str(ltx_dir), "--data", str(syn), "--out", str(run)]
        code, _, err = run_cli([*distill, "iterations=1", "batch=2", "head_channels=8", "device=cpu", *extra], capsys)
        assert code == 0, err
        student = json.loads((run / "student" / "student.json").read_text())
        assert student["family"] == "ltx" and (student["lora"] is None) == (name == "full")
        clip = tmp_path / f"{name}.mp4"
        code, _, err = run_cli(["sample", "--model", str(run), "--prompt", "a red circle", "--out", str(clip)], capsys)
        assert code == 0 and clip.stat().st_size > 0, err

    # export writes folders that a stock built-in pipeline loads; for LTXPipeline it refuses before writing (every
    # format: `--format lora` wrote one, its README giving a false reason and shift 1.0)
    for fmt in ("diffusers", "single-file", "lora"):
        args = ["export", str(tmp_path / "lora"), "--format", fmt, "--out", str(tmp_path / "exported")]
        code, _, err = run_cli(args, capsys)
        assert code == 2 and err.count("\n") == 1 and "LTXPipeline" in err and not (tmp_path / "exported").exists()


@pytest.mark.parametrize("command", ["sample", "synthesize"])
@pytest.mark.parametrize(
    ("size", "line"),
    [
        (["--frames", "10"], "frames must be of the form 8k+1 (e.g. 9 or 17)"),  # Wan's form said "9 or 13"
        (["--size", "48x48"], "height must be a positive multiple of 32 (e.g. 64)"),  # Wan's 16 let 48 through
    ],
)
def test_a_size_the_family_cannot_make_names_the_familys_form(ltx_dir, plugin, tmp_path, capsys, command, size, line):
    """The settings check only bounds; the form (LTX: 8k+1 frames, sides of 32) is the family's, read before any
    weight is loaded: the Wan form checked first gave advice an LTX folder refused again."""
    prompts = tmp_path / "p.txt"
    prompts.write_text(PROMPT + "\n")
    args = {"sample": ["sample", "--model", str(ltx_dir), "--prompt", PROMPT, "--out", str(tmp_path / "c.mp4")]}.get(
        command,
        [
            "synthesize",
            "--teacher",
            str(ltx_dir),
            "--prompts",
            str(prompts),
            "--key-steps",
            "2",
            "--out",
            str(tmp_path / "s"),
        ],
    )
    code, _, err = run_cli([*args, "--steps", "2", "--device", "cpu", *size], capsys)
    assert code == 2 and err.count("\n") == 1 and line in err, err
