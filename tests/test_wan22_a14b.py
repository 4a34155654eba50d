"""Wan 2.2 A14B (two experts switched at boundary_ratio) end to end, against stock diffusers' WanPipeline.

Teacher: our Euler + CFG solve equals WanPipeline's latents (each step the right expert and guidance scale).
Student: both experts train, each on the key steps it owns; the export loads in stock WanPipeline (both
transformers, the boundary, the key-sigma scheduler) and generates what `accvideo sample` generates.
"""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from cli_helpers import QUICK_STUDENTS, quick_distill_config, run_cli, sample_video
from stock_helpers import stock_latents

from accvideo.core.runtime import noise
from accvideo.core.sampling import SamplingPlan, euler_sample, sample_latents, shifted_plan
from accvideo.models.wan import WanAdapter
from accvideo.models.wan_moe import WanMoEAdapter, experts_line, key_step_experts

FRAMES, H, W = 5, 32, 32
PROMPTS = ["a red circle moving left", "a blue square", "a green star moving up", "a cat"]
TEACHER_GUIDANCE, TEACHER_GUIDANCE_2 = 3.0, 2.0


@pytest.fixture(scope="module")
def a14b_dir(tmp_path_factory):
    from accvideo.models.tiny import save_tiny_wan_a14b

    return save_tiny_wan_a14b(tmp_path_factory.mktemp("a14b") / "wan22", seed=0, num_layers=2)


@pytest.fixture(scope="module")
def a14b(a14b_dir):
    from accvideo.models import load_adapter

    return load_adapter(a14b_dir)


@pytest.fixture(scope="module")
def stock(a14b_dir):
    from diffusers import WanPipeline

    pipe = WanPipeline.from_pretrained(str(a14b_dir))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _expert_calls(adapter):
    """Forward counts of each expert, and the hook handles."""
    calls = {"transformer": 0, "transformer_2": 0}
    handles = [
        expert.register_forward_pre_hook(lambda *_a, n=name: calls.__setitem__(n, calls[n] + 1))
        for name, expert in adapter.pair.experts().items()
    ]
    return calls, handles


def test_a14b_folder_opens_as_the_two_expert_adapter(a14b):
    assert isinstance(a14b, WanMoEAdapter) and a14b.family == "wan" and a14b.boundary_ratio == 0.875
    assert a14b.pair.transformer is a14b.pipe.transformer and a14b.pair.transformer_2 is a14b.pipe.transformer_2
    # the experts hold other weights: the routing below is not vacuous
    w1, w2 = a14b.pipe.transformer.state_dict(), a14b.pipe.transformer_2.state_dict()
    assert max((w1[k] - w2[k]).abs().max().item() for k in w1) > 1e-3


@pytest.mark.parametrize("guidance_2", [None, 1.5])
def test_teacher_solve_equals_stock_wan22_pipeline(a14b, stock, guidance_2):
    """WanPipeline(...)(output_type='latent') with both experts in the grid equals our Euler + CFG solve."""
    prompt, steps, guidance = PROMPTS[0], 6, 4.0
    x0 = noise((1, *a14b.latent_shape(FRAMES, H, W)), seed=3)
    ref = stock_latents(stock, a14b, prompt, x0, steps, guidance, (FRAMES, H, W), guidance_scale_2=guidance_2)
    sigmas = stock.scheduler.sigmas.tolist()  # the pipeline's own grid; the boundary 0.875 falls inside it
    plan = SamplingPlan(sigmas, guidance, "", None, guidance if guidance_2 is None else guidance_2, 0.875)
    want = [guidance] * 3 + [guidance if guidance_2 is None else guidance_2] * 3  # sigmas 1, .95, .88 | .77, ...
    assert plan.step_guidance == want
    cond, uncond = a14b.encode_prompts([prompt]), a14b.encode_prompts([""])
    calls, handles = _expert_calls(a14b)
    try:
        ours = euler_sample(
            lambda x, s: a14b.velocity(x, s, cond),
            x0.clone(),
            plan.sigmas,
            uncond=lambda x, s: a14b.velocity(x, s, uncond),
            guidance=plan.step_guidance,
        )
    finally:
        for h in handles:
            h.remove()
    assert calls == {"transformer": 6, "transformer_2": 6}  # 3 steps each, two passes a step (CFG)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    # not vacuous: the high-noise expert alone (a Wan 2.1 reading of the folder) lands elsewhere
    alone = WanAdapter(a14b.pipe, max_sequence_length=a14b.max_sequence_length)
    single = euler_sample(
        lambda x, s: alone.velocity(x, s, cond), x0.clone(), plan.sigmas,
        uncond=lambda x, s: alone.velocity(x, s, uncond), guidance=plan.step_guidance,
    )  # fmt: skip
    assert (single - ref).abs().max() > 1e-3


def test_velocity_and_features_follow_each_items_expert(a14b):
    """A batch with items on both sides of the boundary: each item as if alone, features from its own expert."""
    x = noise((2, *a14b.latent_shape(FRAMES, H, W)), seed=5)
    cond = a14b.encode_prompts(PROMPTS[:2])
    sigma = torch.tensor([0.95, 0.5])
    both = a14b.velocity(x, sigma, cond)
    for i in range(2):
        alone = a14b.velocity(x[i : i + 1], sigma[i : i + 1], {k: v[i : i + 1] for k, v in cond.items()})
        torch.testing.assert_close(both[i : i + 1], alone, atol=1e-6, rtol=0)
    feats = a14b.features(x, sigma, cond, 0)
    alone = WanAdapter(a14b.pipe)  # a single-transformer adapter, pointed at one expert at a time
    rows = [{k: v[i : i + 1] for k, v in cond.items()} for i in range(2)]
    for i, expert in enumerate((a14b.pair.transformer, a14b.pair.transformer_2)):
        alone.transformer = expert
        want = alone.features(x[i : i + 1], sigma[i : i + 1], rows[i], 0)
        torch.testing.assert_close(feats[i : i + 1], want, atol=1e-6, rtol=0)
    alone.transformer = a14b.pair.transformer  # not vacuous: the other expert's features differ
    assert (alone.features(x[1:], sigma[1:], rows[1], 0) - feats[1:]).abs().max() > 1e-4


def test_key_step_assignment_follows_the_stock_rule(a14b):
    # t'_0 = 0 is never a student input; a key step exactly on the boundary belongs to the high-noise expert
    got = key_step_experts(a14b, [1.0, 0.875, 0.8, 0.0])
    assert got["key_experts"] == ["transformer", "transformer", "transformer_2"] and got["untrained"] == []
    above = key_step_experts(a14b, [1.0, 0.9, 0.0])
    assert above["untrained"] == ["transformer_2"]
    assert "transformer_2 is not trained and stays the teacher's" in experts_line(above)
    assert key_step_experts(WanAdapter(a14b.pipe), [1.0, 0.5, 0.0]) is None  # one transformer: nothing to assign


@pytest.fixture(scope="module")
def synvid(a14b_dir, tmp_path_factory):
    from accvideo.synthesize import SynthConfig, synthesize

    root = tmp_path_factory.mktemp("a14b-synvid")
    (root / "p.txt").write_text("\n".join(PROMPTS) + "\n")
    synthesize(
        SynthConfig(
            teacher=str(a14b_dir),
            prompts=str(root / "p.txt"),
            out=str(root / "syn"),
            steps=10,
            key_steps=5,
            frames=FRAMES,
            height=H,
            width=W,
            guidance=TEACHER_GUIDANCE,
            guidance_2=TEACHER_GUIDANCE_2,
            device="cpu",
            dtype="float32",
        ),
        progress=False,
    )
    return root / "syn"


def test_synvid_records_and_uses_the_second_guidance(synvid, a14b):
    from accvideo.synthesize.dataset import SynVidDataset

    data = SynVidDataset(synvid)
    s = data.settings
    assert (s.guidance, s.guidance_2, s.boundary_ratio) == (TEACHER_GUIDANCE, TEACHER_GUIDANCE_2, 0.875)
    item = data[0]
    latents, seed = item["latents"], item["seed"]
    shape = a14b.latent_shape(FRAMES, H, W)
    plan = shifted_plan(a14b, 10, TEACHER_GUIDANCE, guidance_2=TEACHER_GUIDANCE_2)
    ours = sample_latents(a14b, [PROMPTS[0]], [seed], shape, plan).latents
    torch.testing.assert_close(latents[-1], ours[0], atol=1e-5, rtol=0)
    same = sample_latents(a14b, [PROMPTS[0]], [seed], shape, shifted_plan(a14b, 10, TEACHER_GUIDANCE)).latents
    assert (same[0] - latents[-1]).abs().max() > 1e-4  # guidance_2 changed the low-noise steps


@pytest.fixture(scope="module")
def runs(a14b_dir, synvid, tmp_path_factory):
    """A full and a LoRA student of the tiny A14B teacher (2 iterations each)."""
    from accvideo.distill import distill

    root = tmp_path_factory.mktemp("a14b-runs")
    out = {}
    for name, extra in QUICK_STUDENTS.items():
        out[name] = (root / name, distill(quick_distill_config(a14b_dir, synvid, root / name, **extra), progress=False))
    return out


EXPECTED = ["transformer", "transformer", "transformer", "transformer_2", "transformer_2"]  # key sigmas 1 .. 0.56


@pytest.mark.parametrize("kind", ["full", "lora"])
def test_distill_records_the_expert_of_each_key_step(runs, kind):
    run, summary = runs[kind]
    info = json.loads((run / "student" / "student.json").read_text())
    config = yaml.safe_load((run / "config.yaml").read_text())
    for record in (info["experts"], summary["experts"], config["experts"]):
        assert record["boundary_ratio"] == 0.875 and record["key_experts"] == EXPECTED and record["untrained"] == []
        assert record["key_sigmas"] == pytest.approx(info["key_sigmas"][:-1])
    files = {"full": ["transformer", "transformer_2"], "lora": ["pytorch_lora_weights.safetensors",
                                                               "pytorch_lora_weights_2.safetensors"]}[kind]  # fmt: skip
    assert all((run / "student" / f).exists() for f in files)


def _moved(pipe, teacher_dir) -> dict[str, float]:
    from diffusers import WanTransformer3DModel

    out = {}
    for name in ("transformer", "transformer_2"):
        lora_b = [p for n, p in getattr(pipe, name).named_parameters() if "lora_B" in n]
        if lora_b:  # a LoRA loaded on the teacher: B starts at zero, so a non-zero B was trained
            out[name] = max(p.abs().max().item() for p in lora_b)
            continue
        teacher = WanTransformer3DModel.from_pretrained(str(teacher_dir / name)).state_dict()
        got = getattr(pipe, name).state_dict()
        out[name] = max((got[k] - teacher[k]).abs().max().item() for k in teacher)
    return out


@pytest.mark.parametrize("kind, fmt", [("full", "diffusers"), ("lora", "diffusers"), ("lora", "lora")])
def test_export_loads_in_stock_wan_pipeline_and_matches_our_student(runs, a14b_dir, kind, fmt, tmp_path, capsys):
    from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline

    from accvideo.models.open import open_model

    run, _ = runs[kind]
    out = tmp_path / "export"
    code, text, err = run_cli(["export", str(run), "--format", fmt, "--out", str(out)], capsys)
    assert code in (0, None), err
    assert f"-step wan two-expert (Wan 2.2 A14B) student ({fmt})" in text  # was "wan student", as a Wan 2.1 one
    manifest = json.loads((out / "accvideo_export.json").read_text())
    if fmt == "diffusers":
        pipe = WanPipeline.from_pretrained(str(out))
    else:
        readme = (out / "README.md").read_text()
        assert "load_into_transformer_2=True" in readme
        pipe = WanPipeline.from_pretrained(str(a14b_dir))
        pipe.load_lora_weights(str(out), weight_name="pytorch_lora_weights.safetensors")
        pipe.load_lora_weights(str(out), weight_name="pytorch_lora_weights_2.safetensors", load_into_transformer_2=True)
        pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(str(out), subfolder="scheduler")
    pipe.set_progress_bar_config(disable=True)
    assert pipe.config.boundary_ratio == 0.875 and pipe.transformer_2 is not None
    moved = _moved(pipe, a14b_dir)
    assert min(moved.values()) > 1e-5, moved  # both exported experts are the trained ones, not the teacher's

    opened = open_model(str(run))
    plan = opened.plan()
    shape = opened.adapter.latent_shape(FRAMES, H, W)
    ours = sample_latents(opened.adapter, [PROMPTS[0]], [7], shape, plan).latents
    x = noise((1, *shape), seed=7)
    theirs = pipe(
        prompt=PROMPTS[0], height=H, width=W, num_frames=FRAMES, latents=x, output_type="latent", **manifest["call"]
    ).frames
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)
    assert pipe.scheduler.sigmas.tolist() == pytest.approx(plan.sigmas, abs=1e-6)
    # not vacuous: the teacher's experts from the same noise land elsewhere
    teacher = WanPipeline.from_pretrained(str(a14b_dir))
    teacher.scheduler = pipe.scheduler
    teacher.set_progress_bar_config(disable=True)
    base = teacher(
        prompt=PROMPTS[0], height=H, width=W, num_frames=FRAMES, latents=x, output_type="latent", **manifest["call"]
    ).frames
    assert (base - theirs).abs().max() > 1e-4


def test_sample_command_runs_the_student_pair(runs, tmp_path, capsys, monkeypatch):
    """`accvideo sample --model RUN` decodes what the exported stock pipeline decodes."""
    from diffusers import WanPipeline

    run, _ = runs["full"]
    args = ["--prompt", PROMPTS[0], "--seed", "7", "--frames", str(FRAMES), "--size", f"{H}x{W}"]
    ours = sample_video(run, tmp_path / "clip.mp4", capsys, monkeypatch, *args)
    out = tmp_path / "export"
    assert run_cli(["export", str(run), "--format", "diffusers", "--out", str(out)], capsys)[0] in (0, None)
    manifest = json.loads((out / "accvideo_export.json").read_text())
    pipe = WanPipeline.from_pretrained(str(out))
    pipe.set_progress_bar_config(disable=True)
    x = noise((1, 16, (FRAMES - 1) // 4 + 1, H // 8, W // 8), seed=7)
    frames = pipe(
        prompt=PROMPTS[0], height=H, width=W, num_frames=FRAMES, latents=x, output_type="np", **manifest["call"]
    )
    torch.testing.assert_close(torch.from_numpy(frames.frames[0]).float(), ours, atol=1e-4, rtol=0)


def test_a_full_student_pair_loads_without_reading_the_teachers_experts(runs, monkeypatch):
    """Both experts of a full A14B student fill transformers built empty from the student's own files: the teacher's
    experts (two 14B transformers at real size) are not read, and each expert's weights are its file's, exactly."""
    from pathlib import Path

    from diffusers.models import model_loading_utils, modeling_utils
    from safetensors.torch import load_file

    from accvideo.models.student import load_student

    read, real = [], model_loading_utils.load_state_dict

    def spy(path, *args, **kwargs):
        if isinstance(path, (str, Path)):
            read.append(Path(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(model_loading_utils, "load_state_dict", spy)
    monkeypatch.setattr(modeling_utils, "load_state_dict", spy)
    student = runs["full"][0] / "student"
    adapter, info = load_student(student)
    assert info["experts"] and not [p for p in read if p.parent.name in ("transformer", "transformer_2")], read
    for name in ("transformer", "transformer_2"):
        stored = load_file(str(next((student / name).glob("*.safetensors"))))
        got = getattr(adapter.pipe, name).state_dict()
        assert got.keys() == stored.keys() and all(torch.equal(got[k], stored[k]) for k in stored), name
    assert adapter.transformer.transformer is adapter.pipe.transformer  # the pair runs the filled experts


def test_single_file_export_writes_each_expert_under_the_wan_repositorys_names(runs, a14b_dir, tmp_path, capsys):
    """One file per expert, each mapped back by diffusers' own reader to that expert of the diffusers export."""
    from diffusers import WanTransformer3DModel
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers
    from safetensors.torch import load_file

    for fmt, out in (("single-file", tmp_path / "sf"), ("diffusers", tmp_path / "pipe")):
        code, _, err = run_cli(["export", str(runs["lora"][0]), "--format", fmt, "--out", str(out)], capsys)
        assert code == 0, err
    for name in ("transformer", "transformer_2"):
        back = convert_wan_transformer_to_diffusers(load_file(tmp_path / "sf" / f"{name}.safetensors"))
        want = WanTransformer3DModel.from_pretrained(str(tmp_path / "pipe" / name)).state_dict()
        assert back.keys() == want.keys() and all(torch.equal(back[k], want[k]) for k in want)
    one, two = (load_file(tmp_path / "sf" / f"{n}.safetensors") for n in ("transformer", "transformer_2"))
    assert not torch.equal(one["head.head.weight"], two["head.head.weight"])  # two experts, not one twice
    assert "transformer_2=transformer_2" in (tmp_path / "sf" / "README.md").read_text()
    from diffusers import WanPipeline  # each expert's adapter alone, loaded into its own expert

    pipe = WanPipeline.from_pretrained(str(a14b_dir))
    pipe.load_lora_weights(str(tmp_path / "sf"), weight_name="transformer_lora.safetensors")
    pipe.load_lora_weights(
        str(tmp_path / "sf"), weight_name="transformer_2_lora.safetensors", load_into_transformer_2=True
    )
    pipe.fuse_lora(components=["transformer", "transformer_2"])
    for name in ("transformer", "transformer_2"):
        want = WanTransformer3DModel.from_pretrained(str(tmp_path / "pipe" / name)).state_dict()
        got = {k: v for k, v in getattr(pipe, name).state_dict().items() if "lora" not in k}
        got = {k.replace(".base_layer", ""): v for k, v in got.items()}
        assert got.keys() == want.keys()
        for k in want:
            torch.testing.assert_close(got[k], want[k], atol=1e-6, rtol=1e-6)


def test_a14b_vae_factors_are_checked_before_any_weight_loads(a14b_dir, tmp_path, monkeypatch):
    """WanMoEAdapter.load has its own load: it checked the VAE's factors only after both experts had loaded."""
    import json
    import shutil

    import accvideo.models.wan_moe as wan_moe
    from accvideo.errors import AccVideoError

    folder = shutil.copytree(a14b_dir, tmp_path / "wan22")
    path = folder / "vae" / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "scale_factor_temporal": 3}))

    def loaded(*args, **kw):
        raise AssertionError("the weights were loaded before the VAE config was checked")

    monkeypatch.setattr(wan_moe, "load_pipeline", loaded)
    with pytest.raises(AccVideoError, match="vae/config.json gives scale_factor_temporal 3"):
        wan_moe.WanMoEAdapter.load(folder)


def test_experts_of_another_architecture_are_refused_before_any_weight_loads(a14b_dir, tmp_path, monkeypatch, capsys):
    """A second expert of 3 blocks beside a first of 2 was accepted: `feature_blocks` was checked against the first
    alone, and the pair ran as one model. Both configs are compared before any weight is read."""
    import shutil

    from cli_helpers import run_cli

    from accvideo.models.tiny import tiny_wan_pipeline

    folder = shutil.copytree(a14b_dir, tmp_path / "deep2")
    shutil.rmtree(folder / "transformer_2")
    tiny_wan_pipeline(1, num_layers=3).transformer.save_pretrained(str(folder / "transformer_2"))
    (tmp_path / "p.txt").write_text("a red circle\n")
    args = ["synthesize", "--teacher", str(folder), "--prompts", str(tmp_path / "p.txt"), "--out", str(tmp_path / "s")]
    code, _, err = run_cli([*args, "--steps", "2", "--key-steps", "2", "--frames", "5", "--size", "32x32"], capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert f"{folder}: its experts differ in architecture (transformer has num_layers 2, transformer_2 3)" in err
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("kind", ["full", "lora"])
def test_an_experts_weights_swapped_by_hand_are_refused(runs, tmp_path, capsys, monkeypatch, kind):
    """The two experts' LoRA files (or weights folders) swapped: both fit either expert, so the student sampled
    and exported with each expert running the other's weights, exit 0. student.json records each one's identity
    at the save; a load (before the teacher loads: minutes at 14B) or an export now refuses them in one line naming
    the file."""
    import shutil

    import accvideo.models.student as student_module
    from accvideo.models.open import open_model
    from accvideo.models.student import LORA_FILES

    student = shutil.copytree(runs[kind][0] / "student", tmp_path / "student")
    one, two = (student / (LORA_FILES[n] if kind == "lora" else n) for n in ("transformer", "transformer_2"))
    one.rename(tmp_path / "swap")
    two.rename(one)
    (tmp_path / "swap").rename(two)
    said = f"{one} is not the transformer weights its student.json was saved with"
    code, _, err = run_cli(["export", str(student), "--format", "diffusers", "--out", str(tmp_path / "e")], capsys)
    assert code == 2 and said in err and err.count("\n") == 1, err
    assert not (tmp_path / "e").exists()
    with monkeypatch.context() as m:
        m.setattr(student_module, "load_adapter", lambda *a, **k: pytest.fail("the teacher loaded before the refusal"))
        code, _, err = run_cli(
            ["sample", "--model", str(student), "--prompt", "a cat", "--out", str(tmp_path / "c.mp4")], capsys
        )
    assert code == 2 and said in err, err
    two.rename(tmp_path / "swap")  # put back as saved: the student loads again
    one.rename(two)
    (tmp_path / "swap").rename(one)
    adapter, info = open_model(str(student)).adapter, json.loads((student / "student.json").read_text())
    assert info["weights_identity"].keys() == {"transformer", "transformer_2"} and adapter is not None
