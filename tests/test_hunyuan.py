"""The HunyuanVideo adapter against stock diffusers, family detection, and the whole chain down to a stock reload."""

from __future__ import annotations

import json
import shutil

import cli_helpers
import pytest
import torch
from cli_helpers import QUICK_STUDENTS, quick_distill_config, run_cli

from accvideo.core.adapter import ModelAdapter
from accvideo.core.runtime import noise
from accvideo.core.sampling import euler_sample
from accvideo.core.schedules import shifted_sigmas
from accvideo.errors import AccVideoError

FRAMES, H, W = 9, 32, 32
PROMPT = "a red circle moving left"


@pytest.fixture(scope="module")
def hy_dir(tmp_path_factory):
    from accvideo.models.tiny import save_tiny_hunyuan

    return save_tiny_hunyuan(tmp_path_factory.mktemp("tiny") / "hunyuan", seed=0)


@pytest.fixture(scope="module")
def hy(hy_dir):
    from accvideo.models import load_adapter

    return load_adapter(hy_dir)


def stock_pipe(path):
    from diffusers import HunyuanVideoPipeline

    pipe = HunyuanVideoPipeline.from_pretrained(str(path))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_is_a_model_adapter(hy):
    assert isinstance(hy, ModelAdapter)
    assert hy.family == "hunyuanvideo" and hy.num_blocks == 3 and hy.num_dual_blocks == 1
    assert hy.default_shift == 7.0 and hy.embedded_guidance == 6.0 and hy.max_sequence_length == 16
    assert hy.latent_shape(FRAMES, H, W) == (4, 3, 4, 4)
    assert hy.token_grid((4, 3, 4, 4)) == (3, 2, 2)
    cond = hy.encode_prompts([PROMPT, ""])
    assert cond["prompt_embeds"].shape == (2, 16, 16) and cond["pooled_prompt_embeds"].shape == (2, 8)
    assert cond["prompt_attention_mask"].sum(1).tolist()[1] < cond["prompt_attention_mask"].sum(1).tolist()[0]


@pytest.mark.parametrize("true_cfg", [1.0, 3.0])
def test_core_sampler_equals_hunyuan_pipeline(hy_dir, hy, true_cfg):
    pipe = stock_pipe(hy_dir)
    steps = 5
    sigmas = shifted_sigmas(steps, hy.default_shift)
    x0 = noise((1, *hy.latent_shape(FRAMES, H, W)), seed=3)
    call = dict(
        prompt=PROMPT,
        negative_prompt="" if true_cfg != 1 else None,
        height=H,
        width=W,
        num_frames=FRAMES,
        sigmas=sigmas[:-1].tolist(),
        num_inference_steps=steps,
        true_cfg_scale=true_cfg,
        guidance_scale=hy.embedded_guidance,
        prompt_template=hy.prompt_template,
        max_sequence_length=hy.max_sequence_length,
    )
    pipe.scheduler.set_shift(1.0)  # explicit sigmas, not shifted a second time
    ref = pipe(**call, latents=x0.clone(), output_type="latent").frames
    assert pipe.scheduler.sigmas.tolist() == pytest.approx(sigmas.tolist(), abs=1e-6)

    cond, uncond = hy.encode_prompts([PROMPT]), hy.encode_prompts([""])
    ours = euler_sample(
        lambda x, s: hy.velocity(x, s, cond),
        x0.clone(),
        sigmas,
        uncond=lambda x, s: hy.velocity(x, s, uncond),
        guidance=true_cfg,
    )
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)
    assert (ours - x0).abs().mean() > 0.1  # the solve moved

    video = pipe(**call, latents=x0.clone(), output_type="np").frames
    ours_video = hy.decode(ours)
    assert ours_video.shape == (1, FRAMES, H, W, 3)
    torch.testing.assert_close(ours_video, torch.from_numpy(video).float(), atol=1e-4, rtol=0)


def test_embedded_guidance_changes_the_velocity(hy):
    x = noise((1, *hy.latent_shape(FRAMES, H, W)), seed=1)
    cond = hy.encode_prompts([PROMPT])
    v = hy.velocity(x, torch.tensor([0.7]), cond)
    hy.embedded_guidance = 1.0
    try:
        assert (hy.velocity(x, torch.tensor([0.7]), cond) - v).abs().max() > 1e-4
    finally:
        hy.embedded_guidance = 6.0


@pytest.mark.parametrize("block", [0, 1, 2, -1])
def test_features_equal_hook_over_dual_and_single_blocks_and_stop_early(hy, block):
    x = noise((2, *hy.latent_shape(FRAMES, H, W)), seed=1)
    sigma = torch.tensor([0.9, 0.3])
    cond = hy.encode_prompts(["a blue square", "a cat"])
    blocks = [*hy.transformer.transformer_blocks, *hy.transformer.single_transformer_blocks]
    recorded, calls = [], [0] * 3
    handles = [blocks[block].register_forward_hook(lambda m, a, out: recorded.append(out[0]))]
    handles += [
        b.register_forward_pre_hook(lambda m, a, i=i: calls.__setitem__(i, calls[i] + 1)) for i, b in enumerate(blocks)
    ]
    try:
        with torch.no_grad():
            hy.velocity(x, sigma, cond)
        calls[:] = [0, 0, 0]
        x = x.requires_grad_(True)
        feats = hy.features(x, sigma, cond, block)
        last = block % 3
        assert calls == [1] * (last + 1) + [0] * (2 - last)  # later blocks never ran
    finally:
        for h in handles:
            h.remove()
    assert feats.shape == (2, 12, 20)  # video tokens only: 3x2x2 grid, width 2 heads x 10
    torch.testing.assert_close(feats.detach(), recorded[0], atol=1e-6, rtol=0)
    feats.sum().backward()  # differentiable in x through the frozen teacher
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_family_detection_errors_are_one_line(hy_dir, tiny_wan_dir, tmp_path):
    from accvideo.models import adapter_class, load_adapter
    from accvideo.models.hunyuan import HunyuanVideoAdapter

    with pytest.raises(AccVideoError, match="holds a WanPipeline, not a HunyuanVideoPipeline") as e1:
        HunyuanVideoAdapter.load(tiny_wan_dir)
    with pytest.raises(
        AccVideoError,
        match=r"\(wan\) but a hunyuanvideo pipeline is expected; pass a "
        "HunyuanVideoPipeline",
    ) as e2:
        load_adapter(tiny_wan_dir, family="hunyuanvideo")
    assert adapter_class(hy_dir, "hunyuanvideo") is HunyuanVideoAdapter
    odd = tmp_path / "odd"
    shutil.copytree(hy_dir, odd, ignore=shutil.ignore_patterns("tokenizer_2", "transformer"))
    with pytest.raises(AccVideoError, match=r"lacks the component folder\(s\) transformer, tokenizer_2; re-save") as e3:
        adapter_class(odd)
    (odd / "model_index.json").write_text(json.dumps({"_class_name": "LTXPipeline"}))
    with pytest.raises(
        AccVideoError,
        match="LTXPipeline, which accvideo does not support; supported: HunyuanVideoPipeline, WanImageToVideoPipeline, "
        "WanPipeline",
    ) as e4:
        adapter_class(odd)
    (odd / "accvideo.json").write_text('{"prompt_templte": {}}')
    from accvideo.models.hunyuan import text_settings

    with pytest.raises(AccVideoError, match="unknown keys") as e5:
        text_settings(odd)
    assert all("\n" not in str(e.value) for e in (e1, e2, e3, e4, e5))


@pytest.mark.parametrize("crop_start", [1000, 4])
def test_a_crop_start_that_crops_the_prompt_is_refused_before_the_weights(
    hy_dir, tmp_path, capsys, monkeypatch, crop_start
):
    """crop_start 1000 cropped every prompt token away: the embeddings were padding alone, and sampling ended in
    "NaN or infinite latents ... lower --guidance", blaming the wrong setting; now one line naming accvideo.json, and
    the pipeline is never loaded."""
    import accvideo.models.hunyuan as hunyuan

    model = shutil.copytree(hy_dir, tmp_path / "hy")
    template = {"template": "a {} b", "crop_start": crop_start}  # the tiny tokenizer: "▁", "a", "b", "</s>"
    (model / "accvideo.json").write_text(json.dumps({"prompt_template": template, "max_sequence_length": 16}))
    monkeypatch.setattr(hunyuan, "load_pipeline", lambda *a, **k: pytest.fail("the pipeline was loaded"))
    args = ["sample", "--model", str(model), "--prompt", PROMPT, "--steps", "2", "--frames", "5", "--size", "32x32"]
    code, _, err = run_cli([*args, "--device", "cpu", "--out", str(tmp_path / "c.mp4")], capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"error: {model / 'accvideo.json'}: prompt_template crop_start {crop_start} crops the whole")
    assert "(4 tokens without the prompt)" in err


def test_a_crop_start_within_the_template_is_taken(hy_dir, tmp_path):
    from accvideo.models.hunyuan import check_crop_start

    tokenizer = hunyuan_tokenizer(hy_dir)
    check_crop_start({"template": "a {} b", "crop_start": 3}, tokenizer, "accvideo.json")  # the "</s>" stays
    check_crop_start({"template": "{}", "crop_start": 0}, tokenizer, "accvideo.json")  # the tiny pipelines'
    with pytest.raises(AccVideoError, match=r"^accvideo.json: prompt_template crop_start 1 crops the whole template"):
        check_crop_start({"template": "{}", "crop_start": 1}, tokenizer, "accvideo.json")


def hunyuan_tokenizer(path):
    from accvideo.models.hunyuan import folder_tokenizer

    tokenizer = folder_tokenizer(path)
    assert tokenizer is not None and len(tokenizer("a  b")["input_ids"]) == 4
    return tokenizer


# --- the whole chain: synthesize -> distill (full, LoRA) -> sample -> export -> stock reload ---------------------


@pytest.fixture(scope="module")
def hy_runs(hy_dir, tmp_path_factory):
    """SynVid of the tiny HunyuanVideo (embedded guidance, no CFG; 5 key steps of 10) and two 2-iteration students."""
    from accvideo.distill import distill
    from accvideo.synthesize import SynthConfig, synthesize

    root = tmp_path_factory.mktemp("hy-chain")
    (root / "p.txt").write_text("a red circle moving left\na blue square\na green star moving up\na cat\n")
    synthesize(
        SynthConfig(
            teacher=str(hy_dir),
            prompts=str(root / "p.txt"),
            out=str(root / "syn"),
            steps=10,
            key_steps=5,
            frames=FRAMES,
            height=H,
            width=W,
            shard_size=4,
            batch=4,
            device="cpu",
        ),
        progress=False,
    )
    runs = {}
    for name, extra in QUICK_STUDENTS.items():
        distill(quick_distill_config(hy_dir, root / "syn", root / name, **extra), progress=False)
        runs[name] = root / name
    return runs


def sample_video(run, tmp_path, capsys, monkeypatch):
    """What `accvideo sample --model RUN` generates for PROMPT, seed 7, (F, H, W, 3) float in [0, 1]."""
    args = ["--prompt", PROMPT, "--seed", "7", "--frames", str(FRAMES), "--size", f"{H}x{W}"]
    return cli_helpers.sample_video(run, tmp_path / "clip.mp4", capsys, monkeypatch, *args)


def stock_generate(pipe, call):
    x = noise((1, 4, (FRAMES - 1) // 4 + 1, H // 8, W // 8), seed=7)
    frames = pipe(prompt=PROMPT, height=H, width=W, num_frames=FRAMES, latents=x, output_type="np", **call).frames
    return torch.from_numpy(frames[0]).float()


@pytest.mark.parametrize("kind", ["full", "lora"])
def test_chain_export_reloads_in_stock_hunyuan_pipeline_and_matches_sample(
    kind, hy_runs, hy_dir, tmp_path, capsys, monkeypatch
):
    run = hy_runs[kind]
    info = json.loads((run / "student" / "student.json").read_text())
    assert info["family"] == "hunyuanvideo" and len(info["key_sigmas"]) == 6
    ours = sample_video(run, tmp_path, capsys, monkeypatch)
    out = tmp_path / "export"
    code, text, err = run_cli(["export", str(run), "--out", str(out)], capsys)
    assert code in (0, None), err
    manifest = json.loads((out / "accvideo_export.json").read_text())
    call = manifest["call"]
    assert call["num_inference_steps"] == 5 and call["true_cfg_scale"] == 1.0 and call["guidance_scale"] == 6.0
    assert manifest["scheduler"] == {"shift": pytest.approx(7.0), "shift_terminal": None}

    pipe = stock_pipe(out)
    assert (out / "accvideo.json").is_file()
    torch.testing.assert_close(stock_generate(pipe, call), ours, atol=1e-4, rtol=0)
    assert pipe.scheduler.sigmas.tolist() == pytest.approx(info["key_sigmas"], abs=1e-6)

    if kind == "lora":  # the LoRA file on the teacher pipeline, with the shipped scheduler
        from diffusers import FlowMatchEulerDiscreteScheduler

        lora = tmp_path / "lora"
        code, _, err = run_cli(["export", str(run), "--format", "lora", "--out", str(lora)], capsys)
        assert code in (0, None), err
        teacher = stock_pipe(hy_dir)
        teacher.load_lora_weights(str(lora))
        teacher.scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(str(lora), subfolder="scheduler")
        torch.testing.assert_close(stock_generate(teacher, call), ours, atol=1e-4, rtol=0)


def test_a_wan_student_with_a_hunyuan_teacher_is_refused(hy_runs, hy_dir, tiny_wan_dir, tmp_path, capsys):
    student = tmp_path / "student"
    shutil.copytree(hy_runs["lora"] / "student", student)
    info = json.loads((student / "student.json").read_text())
    (student / "student.json").write_text(json.dumps({**info, "teacher_dir": str(tiny_wan_dir)}))
    code, _, err = run_cli(["export", str(student), "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "holds a hunyuanvideo student but its teacher folder" in err and "is a wan pipeline" in err


def test_tiny_model_cli_writes_a_hunyuan_pipeline(tmp_path, capsys):
    from accvideo.models import adapter_class
    from accvideo.models.hunyuan import HunyuanVideoAdapter, text_settings

    code, out, err = run_cli(["tiny-model", str(tmp_path / "hy"), "--family", "hunyuan", "--layers", "1"], capsys)
    assert code in (0, None), err
    assert "HunyuanVideo" in out and adapter_class(tmp_path / "hy") is HunyuanVideoAdapter
    from accvideo.core.tensorfile import FILE_MODE

    assert {f.stat().st_mode & 0o777 for f in (tmp_path / "hy").rglob("*") if f.is_file()} == {FILE_MODE}
    assert text_settings(tmp_path / "hy")["prompt_template"] == {"template": "{}", "crop_start": 0}
    code, _, err = run_cli(["tiny-model", str(tmp_path / "x"), "--family", "ltx"], capsys)
    assert code == 2 and "--family must be wan or hunyuan" in err
    # a rerun rewrites nothing; another model over it is refused (was: replaced, which changed the teacher identity
    # its datasets recorded)
    files = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (tmp_path / "hy").rglob("*") if p.is_file()}
    code, out, err = run_cli(["tiny-model", str(tmp_path / "hy"), "--family", "hunyuan", "--layers", "1"], capsys)
    assert code in (0, None) and "nothing to do" in out, err
    for other in (["--family", "wan"], ["--layers", "1", "--seed", "1"]):
        code, _, err = run_cli(["tiny-model", str(tmp_path / "hy"), "--family", "hunyuan", *other], capsys)
        assert code == 2 and "holds a tiny model of family=hunyuan, seed=0, layers=1; use another --out" in err, err
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (tmp_path / "hy").rglob("*") if p.is_file()} == files


def test_a_hunyuan_teacher_defaults_to_embedded_guidance_only(hy_runs, hy_dir, tmp_path, capsys):
    """No true CFG unless asked: SynVid (guidance left unset above) and `sample` use guidance 1 for this family."""
    import yaml

    from accvideo.synthesize import SynVidDataset

    assert SynVidDataset(hy_runs["full"].parent / "syn").settings.guidance == 1.0
    clip = tmp_path / "teacher.mp4"
    code, _, err = run_cli(
        [
            "sample",
            "--model",
            str(hy_dir),
            "--prompt",
            PROMPT,
            "--steps",
            "2",
            "--frames",
            str(FRAMES),
            "--size",
            f"{H}x{W}",
            "--out",
            str(clip),
        ],
        capsys,
    )
    assert code in (0, None), err
    assert yaml.safe_load(clip.with_suffix(".yaml").read_text())["resolved_guidance"] == 1.0


@pytest.mark.parametrize("kind", ["full", "lora"])
def test_a_single_file_export_is_the_student_in_tencents_layout(hy_runs, tmp_path, capsys, kind):
    """Every tensor of the file is the student's (a LoRA student: fused, as the diffusers export fuses it) under the
    layout's rules: q, k and v stacked (a single block's MLP input after them), the final modulation's halves
    swapped; nothing else is in it."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    # the tiny model is not 3072 wide: the README's from_single_file call cannot read it (was: said nothing)
    with pytest.warns(UserWarning, match=r"is 20 wide, and diffusers' from_single_file reads only the published width"):
        code, _, err = run_cli(
            ["export", str(hy_runs[kind]), "--format", "single-file", "--out", str(tmp_path / "sf")], capsys
        )
    assert code == 0, err
    path = tmp_path / "sf" / "transformer.safetensors"
    state = load_file(path)
    run_cli(["export", str(hy_runs[kind]), "--out", str(tmp_path / "pipe")], capsys)  # the diffusers export
    want = load_file(next((tmp_path / "pipe" / "transformer").glob("*.safetensors")))
    assert sum(v.numel() for v in state.values()) == sum(v.numel() for v in want.values())
    assert not any("transformer_blocks" in k or "attn.to_" in k or "norm_out" in k for k in state)
    d, s, r = (
        "transformer_blocks.0.attn.",
        "single_transformer_blocks.1.",
        "context_embedder.token_refiner.refiner_blocks.0.attn.",
    )
    for leaf in ("weight", "bias"):
        qkv = [want[f"{d}to_{p}.{leaf}"] for p in "qkv"]
        assert torch.equal(state[f"double_blocks.0.img_attn_qkv.{leaf}"], torch.cat(qkv))
        added = [want[f"{d}add_{p}_proj.{leaf}"] for p in "qkv"]
        assert torch.equal(state[f"double_blocks.0.txt_attn_qkv.{leaf}"], torch.cat(added))
        single = [want[f"{s}attn.to_{p}.{leaf}"] for p in "qkv"] + [want[f"{s}proj_mlp.{leaf}"]]
        assert torch.equal(state[f"single_blocks.1.linear1.{leaf}"], torch.cat(single))
        assert torch.equal(state[f"single_blocks.1.linear2.{leaf}"], want[f"{s}proj_out.{leaf}"])
        refiner = [want[f"{r}to_{p}.{leaf}"] for p in "qkv"]
        assert torch.equal(state[f"txt_in.individual_token_refiner.blocks.0.self_attn_qkv.{leaf}"], torch.cat(refiner))
        scale, shift = want[f"norm_out.linear.{leaf}"].chunk(2)
        assert torch.equal(state[f"final_layer.adaLN_modulation.1.{leaf}"], torch.cat([shift, scale]))
        assert torch.equal(state[f"img_in.proj.{leaf}"], want[f"x_embedder.proj.{leaf}"])
    with safe_open(str(path), "pt") as f:
        recorded = json.loads((hy_runs[kind] / "student" / "student.json").read_text())["key_sigmas"]
        assert json.loads(f.metadata()["accvideo_key_sigmas"]) == recorded
    readme = (tmp_path / "sf" / "README.md").read_text()
    assert "Tencent's own HunyuanVideo checkpoints" in readme
    assert "HunyuanVideoTransformer3DModel.from_single_file" in readme
    assert ("--format lora" in readme) == (kind == "lora")
    assert sorted(p.name for p in (tmp_path / "sf").glob("*.safetensors")) == ["transformer.safetensors"]


def width_3072_state(seed: int = 0) -> dict:
    """The tiny HunyuanVideo's weights, random, with a width of 3072 rows where diffusers' reader of the single-file
    layout needs it (a single block's q, k and v; the patch embedding, whose rows say the width): cheap, since the
    reader splits rows only."""
    from accvideo.models.tiny import tiny_hunyuan_pipeline

    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, v in tiny_hunyuan_pipeline(0).transformer.state_dict().items():
        wide = k.startswith("x_embedder.") or (k.startswith("single_") and ".attn.to_" in k)
        state[k] = torch.randn((3072, *v.shape[1:]) if wide else v.shape, generator=g)
    return state


def test_the_layout_is_what_diffusers_reader_reads_back_at_hunyuanvideos_width(monkeypatch):
    """At HunyuanVideo's width, diffusers' own reader of the layout (what `from_single_file` runs) gives back every
    tensor; a reader that disagrees (one that kept the final modulation's halves) is refused in one line."""
    import diffusers.loaders.single_file_utils as sfu

    from accvideo.export.single_file_hunyuan import original_state

    state = width_3072_state()
    renamed = original_state(state)  # the export's own check ran: the width is the reader's
    back = sfu.convert_hunyuan_video_transformer_to_diffusers(dict(renamed))
    assert back.keys() == state.keys() and all(torch.equal(back[k], state[k]) for k in state)
    real = sfu.convert_hunyuan_video_transformer_to_diffusers

    def unswapped(checkpoint, **kw):
        out = real(checkpoint, **kw)
        for leaf in ("weight", "bias"):
            scale, shift = out[f"norm_out.linear.{leaf}"].chunk(2)
            out[f"norm_out.linear.{leaf}"] = torch.cat([shift, scale])
        return out

    monkeypatch.setattr(sfu, "convert_hunyuan_video_transformer_to_diffusers", unswapped)
    with pytest.raises(AccVideoError, match="reads this export back as other weights .*norm_out.*--format diffusers"):
        original_state(state)
    with pytest.raises(
        AccVideoError, match="no place for .*e.g. transformer_blocks.0.extra.weight.*--format diffusers"
    ):
        original_state({**state, "transformer_blocks.0.extra.weight": torch.zeros(1)})
    del state["single_transformer_blocks.0.proj_mlp.weight"]
    with pytest.raises(AccVideoError, match="lacks part of single_blocks.0.linear1.weight"):
        original_state(state)
