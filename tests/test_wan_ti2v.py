"""Wan 2.2 TI2V (text-to-video mode) against stock diffusers: the teacher's latents, the distilled and exported
student's latents, and the per-token timestep the stock WanPipeline feeds its transformer (expand_timesteps)."""

from __future__ import annotations

import json

import pytest
import torch
from cli_helpers import QUICK_STUDENTS, quick_distill_config
from diffusers import WanPipeline
from stock_helpers import stock_latents

from accvideo.core.runtime import noise
from accvideo.core.sampling import euler_sample, sample_latents

FRAMES, H, W = 9, 64, 64  # latents (48, 3, 4, 4): a 3 x 2 x 2 token grid
PROMPT = "a red circle moving left"


@pytest.fixture(scope="module")
def ti2v_dir(tmp_path_factory):
    """The tiny random Wan 2.2 TI2V of bench/configs.py (48-channel Wan 2.2 VAE, 16x spatial), saved by diffusers."""
    from accvideo.bench.configs import build_random

    out = tmp_path_factory.mktemp("ti2v") / "teacher"
    build_random("wan22-ti2v-tiny", torch.device("cpu"), torch.float32).pipe.save_pretrained(
        str(out), safe_serialization=True
    )
    return out


@pytest.fixture(scope="module")
def ti2v(ti2v_dir):
    from accvideo.models import load_adapter

    return load_adapter(ti2v_dir)


def stock(folder):
    pipe = WanPipeline.from_pretrained(str(folder))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def timesteps_seen(transformer) -> tuple[list[torch.Tensor], object]:
    """The timestep tensor each forward hands the time embedding (B*tokens,) or (B,), recorded by a pre-hook."""
    seen: list[torch.Tensor] = []
    hook = transformer.condition_embedder.register_forward_pre_hook(lambda m, a: seen.append(a[0].clone()))
    return seen, hook


def test_ti2v_folder_opens_the_ti2v_adapter_with_the_wan22_vae_geometry(ti2v_dir, ti2v):
    from accvideo.models import adapter_class
    from accvideo.models.wan_ti2v import WanTI2VAdapter

    assert adapter_class(ti2v_dir) is WanTI2VAdapter and type(ti2v) is WanTI2VAdapter
    assert ti2v.family == "wan2.2-ti2v" and ti2v.pipe.config.expand_timesteps
    assert (ti2v.spatial_factor, ti2v.temporal_factor, ti2v.size_multiple) == (16, 4, 32)
    from accvideo.models.decoder import folder_geometry  # what --decoder is checked against before the model loads

    assert folder_geometry(ti2v_dir) == (ti2v.latent_channels, ti2v.temporal_factor, ti2v.spatial_factor) == (48, 4, 16)
    assert ti2v.latent_shape(FRAMES, H, W) == (48, 3, 4, 4)
    assert ti2v._latents_mean.flatten()[:2].tolist() == pytest.approx([-0.2289, -0.0052])  # the Wan 2.2 VAE's
    assert ti2v._latents_std.flatten()[-1].item() == pytest.approx(0.7744)


def test_per_token_timestep_keeps_each_item_its_own_sigma(ti2v):
    x = noise((2, *ti2v.latent_shape(FRAMES, H, W)), seed=1)
    cond = ti2v.encode_prompts(["a blue square", "a cat"])
    sigma = torch.tensor([0.9, 0.3])
    seen, hook = timesteps_seen(ti2v.transformer)
    try:
        with torch.no_grad():
            both = ti2v.velocity(x, sigma, cond)
            alone = [
                ti2v.velocity(x[i : i + 1], sigma[i : i + 1], {"prompt_embeds": cond["prompt_embeds"][i : i + 1]})
                for i in range(2)
            ]
    finally:
        hook.remove()
    assert seen[0].tolist() == [900.0] * 12 + [300.0] * 12  # (B, tokens) flattened by the transformer, item-major
    torch.testing.assert_close(both, torch.cat(alone), atol=1e-5, rtol=0)


@pytest.mark.parametrize("guidance", [1.0, 4.0])
def test_teacher_sampler_equals_stock_wan_pipeline(ti2v_dir, ti2v, guidance):
    pipe = stock(ti2v_dir)
    steps = 5
    x0 = noise((1, *ti2v.latent_shape(FRAMES, H, W)), seed=3)
    theirs_t, hook = timesteps_seen(pipe.transformer)
    try:
        ref = stock_latents(pipe, ti2v, PROMPT, x0, steps, guidance, (FRAMES, H, W))
    finally:
        hook.remove()
    sigmas = pipe.scheduler.sigmas  # the pipeline's own grid

    cond, uncond = ti2v.encode_prompts([PROMPT]), ti2v.encode_prompts([""])
    ours_t, hook = timesteps_seen(ti2v.transformer)
    try:
        ours = euler_sample(
            lambda x, s: ti2v.velocity(x, s, cond),
            x0.clone(),
            sigmas,
            uncond=lambda x, s: ti2v.velocity(x, s, uncond),
            guidance=guidance,
        )
    finally:
        hook.remove()
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)
    assert (ours - x0).abs().mean() > 0.1  # the solve moved: the comparison is not vacuous
    # the transformer saw what the stock pipeline gives it: one timestep per token (12), per forward
    assert len(ours_t) == len(theirs_t) == steps * (2 if guidance > 1 else 1)
    for a, b in zip(ours_t, theirs_t, strict=True):
        assert a.shape == b.shape == (12,)
        torch.testing.assert_close(a, b, atol=1e-3, rtol=0)

    video = stock_latents(pipe, ti2v, PROMPT, x0, steps, guidance, (FRAMES, H, W), output="np")  # 48-channel VAE
    ours_video = ti2v.decode(ours)
    assert ours_video.shape == (1, FRAMES, H, W, 3)
    torch.testing.assert_close(ours_video, torch.from_numpy(video).float(), atol=1e-4, rtol=0)
    # encode is decode's inverse in the normalised latent space the sampler works in
    assert ti2v.encode(ours_video).shape == (1, *ti2v.latent_shape(FRAMES, H, W))


@pytest.fixture(scope="module")
def runs(ti2v_dir, tmp_path_factory):
    """SynVid of the tiny TI2V at 32x32 (a 1x1 token grid per latent frame: where `distill` died with SIGSEGV in the
    heads' GroupNorm backward, distill/heads.py), then a full and a LoRA student (2 iterations each)."""
    from accvideo.distill import distill
    from accvideo.synthesize import SynthConfig, synthesize

    root = tmp_path_factory.mktemp("ti2v-runs")
    (root / "p.txt").write_text("a red circle moving left\na blue square\na cat\na green star moving up\n")
    synthesize(
        SynthConfig(
            teacher=str(ti2v_dir),
            prompts=str(root / "p.txt"),
            out=str(root / "syn"),
            steps=6,
            key_steps=3,
            frames=5,
            height=32,
            width=32,
            guidance=3.0,
            shard_size=4,
            batch=4,
            device="cpu",
        ),
        progress=False,
    )
    out = {}
    for name, extra in QUICK_STUDENTS.items():
        distill(quick_distill_config(ti2v_dir, root / "syn", root / name, **extra), progress=False)
        out[name] = root / name
    return out


@pytest.mark.parametrize("kind", ["full", "lora"])
def test_exported_student_loads_in_stock_wan_pipeline_and_equals_our_student_sampler(kind, runs, ti2v_dir, tmp_path):
    from diffusers import WanTransformer3DModel

    from accvideo.export.run import export_run
    from accvideo.models.open import open_model

    run = runs[kind]
    info = json.loads((run / "student" / "student.json").read_text())
    assert info["family"] == "wan2.2-ti2v" and len(info["key_sigmas"]) == 4

    opened = open_model(str(run))
    plan = opened.plan()
    assert list(plan.sigmas) == pytest.approx(info["key_sigmas"], abs=1e-6) and plan.guidance == 1.0
    shape = opened.adapter.latent_shape(FRAMES, H, W)
    ours = sample_latents(opened.adapter, [PROMPT], [7], shape, plan).latents

    out = tmp_path / "export"
    export_run(run, "diffusers", out)
    manifest = json.loads((out / "accvideo_export.json").read_text())
    pipe = stock(out)
    assert pipe.config.expand_timesteps  # the export keeps the teacher's model_index.json
    pipe.scheduler.set_timesteps(manifest["call"]["num_inference_steps"])  # what WanPipeline itself calls
    assert pipe.scheduler.sigmas.tolist() == pytest.approx(info["key_sigmas"], abs=1e-6)
    theirs = pipe(
        prompt=PROMPT,
        height=H,
        width=W,
        num_frames=FRAMES,
        latents=noise(shape, seed=7)[None],
        output_type="latent",
        **manifest["call"],
    ).frames
    assert manifest["call"]["num_inference_steps"] == 3 and manifest["call"]["guidance_scale"] == 1.0
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)

    # not vacuous: the exported transformer is the trained student, not the teacher
    teacher = WanTransformer3DModel.from_pretrained(str(ti2v_dir / "transformer")).state_dict()
    moved = max((t - teacher[n]).abs().max().item() for n, t in pipe.transformer.state_dict().items())
    assert moved > 1e-5

    if kind == "lora":  # the LoRA file on the stock teacher pipeline, with the scheduler shipped beside it
        from diffusers import FlowMatchEulerDiscreteScheduler

        export_run(run, "lora", tmp_path / "lora")
        pipe = stock(ti2v_dir)
        pipe.load_lora_weights(str(tmp_path / "lora"))
        pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(str(tmp_path / "lora"), subfolder="scheduler")
        latents = noise(shape, seed=7)[None]
        again = pipe(
            prompt=PROMPT,
            height=H,
            width=W,
            num_frames=FRAMES,
            latents=latents,
            output_type="latent",
            **manifest["call"],
        ).frames
        torch.testing.assert_close(ours, again, atol=1e-4, rtol=0)


def test_single_file_export_is_the_student_in_the_wan_layout(runs, ti2v_dir, tmp_path):
    """TI2V-5B's single file (the layout ComfyUI's Wan 2.2 5B files have): diffusers' reader of the Wan layout gives
    back the diffusers export's transformer, tensor for tensor, and `from_single_file` loads it with the teacher's
    config (`expand_timesteps` lives in the pipeline's config, not in the weights)."""
    from diffusers import WanTransformer3DModel
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers
    from safetensors.torch import load_file

    from accvideo.export.run import export_run

    export_run(runs["full"], "single-file", tmp_path / "sf")
    export_run(runs["full"], "diffusers", tmp_path / "pipe")
    want = WanTransformer3DModel.from_pretrained(str(tmp_path / "pipe" / "transformer")).state_dict()
    path = tmp_path / "sf" / "transformer.safetensors"
    back = convert_wan_transformer_to_diffusers(load_file(path))
    assert back.keys() == want.keys() and all(torch.equal(back[k], want[k]) for k in want)
    loaded = WanTransformer3DModel.from_single_file(str(path), config=str(ti2v_dir), subfolder="transformer")
    assert all(torch.equal(v, want[k]) for k, v in loaded.state_dict().items())


def test_the_size_multiple_is_read_before_loading_as_the_adapter_has_it(ti2v_dir, ti2v, tiny_wan_dir, tiny_wan):
    from accvideo.core.runtime import resolve_model
    from accvideo.models import adapter_class, load_adapter, size_multiple_of

    builtin = resolve_model("builtin")
    for folder, adapter in [(ti2v_dir, ti2v), (tiny_wan_dir, tiny_wan), (builtin, load_adapter(builtin))]:
        assert size_multiple_of(adapter_class(folder), folder) == adapter.size_multiple
    assert size_multiple_of(adapter_class(ti2v_dir), ti2v_dir) == 32  # the Wan 2.2 VAE's 16x times the patch's 2


@pytest.mark.parametrize("command", ["sample", "synthesize"])
def test_a_ti2v_size_not_a_multiple_of_32_is_refused_before_loading(ti2v_dir, tmp_path, capsys, monkeypatch, command):
    """48x48 passes Wan 2.1's 16; TI2V's 32 refused it only after the weights were loaded."""
    from cli_helpers import run_cli

    import accvideo.sample.run as sample_run
    import accvideo.synthesize.run as synth_run

    def no_load(*a, **k):
        raise AssertionError("weights were loaded before the size was checked")

    monkeypatch.setattr(sample_run, "open_model", no_load)
    monkeypatch.setattr(synth_run, "load_adapter", no_load)
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle\n")
    args = {
        "sample": ["sample", "--model", str(ti2v_dir), "--out", str(tmp_path / "c.mp4")],
        "synthesize": ["synthesize", "--teacher", str(ti2v_dir), "--prompts", str(prompts), "--key-steps", "2",
                       "--out", str(tmp_path / "s")],
    }[command]  # fmt: skip
    code, _, err = run_cli([*args, "--steps", "2", "--frames", "5", "--size", "48x48", "--device", "cpu"], capsys)
    assert code == 2 and err.count("\n") == 1 and "multiple of 32" in err, err
    assert not (tmp_path / "s").exists()
