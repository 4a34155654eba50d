"""`accvideo export`: stock diffusers reloads the student and generates what `accvideo sample` generates."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import cli_helpers
import pytest
import torch
import yaml
from cli_helpers import QUICK_STUDENTS, one_line_error, quick_distill_config, run_cli

from accvideo.core.outputs import LEDGER
from accvideo.core.runtime import noise
from accvideo.core.schedules import key_sigmas, shifted_sigmas, uniform_key_indices
from accvideo.errors import AccVideoError
from accvideo.export.scheduler import PIPELINE_TIMESTEPS, matching_scheduler, pipeline_sigmas
from accvideo.models.identity import teacher_identity
from accvideo.models.open import open_model
from accvideo.models.student import weights_identity

FRAMES, H, W = 9, 32, 32
PROMPT = "a red circle moving left"
QUICK = ["iterations=2", "batch=2", "lr=1e-3", "head_lr=1e-4", "head_channels=8", "device=cpu"]


@pytest.fixture(scope="module")
def runs(tiny_wan_dir, synvid, tmp_path_factory):
    """Two distill runs of the tiny Wan teacher (2 iterations): a full student and a LoRA student."""
    from accvideo.distill import distill

    root = tmp_path_factory.mktemp("export-runs")
    for name, extra in QUICK_STUDENTS.items():
        distill(quick_distill_config(tiny_wan_dir, synvid, root / name, **extra), progress=False)
    return {name: root / name for name in QUICK_STUDENTS}


def sample_video(run, tmp_path, capsys, monkeypatch):
    """What `accvideo sample --model RUN` generates for PROMPT, seed 7, (F, H, W, 3) float in [0, 1]."""
    args = ["--prompt", PROMPT, "--seed", "7", "--frames", str(FRAMES), "--size", f"{H}x{W}"]
    return cli_helpers.sample_video(run, tmp_path / "clip.mp4", capsys, monkeypatch, *args)


def stock_generate(pipe, call, **kw):
    """The stock pipeline from the same starting noise as `accvideo sample --seed 7`, decoded to (F, H, W, 3)."""
    x = noise((1, 16, (FRAMES - 1) // 4 + 1, H // 8, W // 8), seed=7)
    frames = pipe(prompt=PROMPT, height=H, width=W, num_frames=FRAMES, latents=x, output_type="np", **call, **kw).frames
    return torch.from_numpy(frames[0]).float()


@pytest.mark.parametrize("kind", ["full", "lora"])
def test_diffusers_export_reloads_in_stock_wan_pipeline_and_matches_sample(
    kind, runs, tiny_wan_dir, tmp_path, capsys, monkeypatch
):
    from diffusers import WanPipeline, WanTransformer3DModel

    run = runs[kind]
    ours = sample_video(run, tmp_path, capsys, monkeypatch)
    out = tmp_path / "export"
    code, text, err = run_cli(["export", str(run), "--format", "diffusers", "--out", str(out)], capsys)
    assert code in (0, None), err
    assert "5-step wan student" in text and "num_inference_steps=5" in text

    manifest = json.loads((out / "accvideo_export.json").read_text())
    info = json.loads((run / "student" / "student.json").read_text())
    assert manifest["key_sigmas"] == info["key_sigmas"] and manifest["call"]["guidance_scale"] == 1.0
    # no temporary folder left behind (the ledger of files accvideo wrote, core/outputs.py, is no temporary file)
    assert not any(p.name.startswith(".") and p.name != LEDGER for p in tmp_path.iterdir())
    from accvideo.core.tensorfile import FILE_MODE

    assert {f.stat().st_mode & 0o777 for f in out.rglob("*") if f.is_file()} == {FILE_MODE}  # weights were 600

    pipe = WanPipeline.from_pretrained(str(out))
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler.set_timesteps(manifest["call"]["num_inference_steps"])  # what WanPipeline itself calls
    assert pipe.scheduler.sigmas.tolist() == pytest.approx(info["key_sigmas"], abs=1e-6)
    theirs = stock_generate(pipe, manifest["call"])
    assert theirs.shape == ours.shape == (FRAMES, H, W, 3)
    torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=0)
    # `accvideo sample --model EXPORT` samples it as its student (was: as a teacher, 50 steps at guidance 5)
    again = sample_video(out, tmp_path / "from-export", capsys, monkeypatch)
    torch.testing.assert_close(again, ours, atol=1e-4, rtol=0)
    record = yaml.safe_load((tmp_path / "from-export" / "clip.yaml").read_text())
    assert (record["resolved_steps"], record["resolved_guidance"]) == (5, 1.0)
    # and reports its teacher's shift, as the run does (was: the shift of the scheduler fitted to the key sigmas)
    run_record = yaml.safe_load((tmp_path / "clip.yaml").read_text())
    assert record["resolved_shift"] == run_record["resolved_shift"] == manifest["shift"]
    assert manifest["scheduler"]["shift"] != manifest["shift"]  # not vacuous: the fitted one is another number

    # not vacuous: the exported transformer is the trained student, not the teacher
    teacher = WanTransformer3DModel.from_pretrained(str(tiny_wan_dir / "transformer")).state_dict()
    moved = max((t - teacher[n]).abs().max().item() for n, t in pipe.transformer.state_dict().items())
    assert moved > 1e-5


def test_lora_export_loads_on_the_teacher_pipeline_and_matches_sample(
    runs, tiny_wan_dir, tmp_path, capsys, monkeypatch
):
    from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline

    run = runs["lora"]
    ours = sample_video(run, tmp_path, capsys, monkeypatch)
    out = tmp_path / "lora"
    code, _, err = run_cli(["export", str(run / "student"), "--format", "lora", "--out", str(out)], capsys)
    assert code in (0, None), err
    manifest = json.loads((out / "accvideo_export.json").read_text())
    assert (out / "pytorch_lora_weights.safetensors").is_file()
    assert "load_lora_weights" in (out / "README.md").read_text()

    pipe = WanPipeline.from_pretrained(str(tiny_wan_dir))
    pipe.set_progress_bar_config(disable=True)
    pipe.load_lora_weights(str(out))
    pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(str(out), subfolder="scheduler")
    torch.testing.assert_close(stock_generate(pipe, manifest["call"]), ours, atol=1e-4, rtol=0)

    # accvideo itself samples the student, not its LoRA file: one line naming the student the export came from
    one_line_error(
        ["sample", "--model", str(out), "--out", str(tmp_path / "c.mp4"), "--device", "cpu"],
        capsys,
        f"{out} is a LoRA export: the student's LoRA weights alone, which diffusers loads onto its teacher (its "
        f"README.md); pass the student it was made from ({manifest['student']}) or a --format diffusers export",
    )
    # the student moved since: the line no longer sends the user to where it was
    copy, gone = shutil.copytree(out, tmp_path / "lora-copy"), tmp_path / "gone" / "student"
    (copy / "accvideo_export.json").write_text(json.dumps({**manifest, "student": str(gone)}))
    one_line_error(
        ["sample", "--model", str(copy), "--out", str(tmp_path / "c.mp4"), "--device", "cpu"],
        capsys,
        f"pass the student it was made from (recorded as {gone}, gone from there: pass it where it is now) or a",
    )

    # a full student has no LoRA to export
    one_line_error(
        ["export", str(runs["full"]), "--format", "lora", "--out", str(tmp_path / "x")], capsys, "--format diffusers"
    )


def test_a_full_student_loads_without_reading_its_teachers_transformer(runs, tiny_wan_dir, monkeypatch):
    """A full student replaces the teacher's transformer whole: loading it read the teacher's transformer weights
    first, then held the student's whole state in host memory beside them (a 14B student read twice, held twice).
    The transformer is built empty and filled from the student's files; its weights are theirs, exactly, and the
    teacher's other components load as before."""
    from diffusers.models import model_loading_utils, modeling_utils
    from safetensors.torch import load_file

    from accvideo.models.student import load_student

    read, real = [], model_loading_utils.load_state_dict

    def spy(path, *args, **kwargs):
        if isinstance(path, (str, Path)):  # diffusers passes a dict through it too
            read.append(Path(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(model_loading_utils, "load_state_dict", spy)
    monkeypatch.setattr(modeling_utils, "load_state_dict", spy)
    student = runs["full"] / "student"
    adapter, _ = load_student(student)
    assert not [p for p in read if p.parent.name == "transformer"], read
    assert any(p.parent.name == "vae" for p in read)  # the spy sees what diffusers reads
    stored = load_file(str(next((student / "transformer").glob("*.safetensors"))))
    got = adapter.transformer.state_dict()
    assert got.keys() == stored.keys() and all(torch.equal(got[k], stored[k]) for k in stored)
    # a student of another architecture than its teacher (here 4 blocks on a 3-block teacher: a copied student/,
    # or a legacy identity not checked on a large folder) was refused by the strict load; the fill kept 3 blocks
    from accvideo.models.tiny import tiny_wan_pipeline

    deeper = Path(shutil.copytree(student, student.parent / "student-deeper"))
    shutil.rmtree(deeper / "transformer")
    tiny_wan_pipeline(1, num_layers=4).transformer.save_pretrained(str(deeper / "transformer"))
    with pytest.raises(
        AccVideoError, match=r"the student does not fit its teacher \(0 weights missing, \d+ unexpected"
    ):
        load_student(deeper)
    shutil.rmtree(deeper / "transformer")  # fewer blocks: weights the teacher's transformer has are missing
    tiny_wan_pipeline(1, num_layers=2).transformer.save_pretrained(str(deeper / "transformer"))
    with pytest.raises(AccVideoError, match=r"does not fit its teacher \(\d+ weights missing, 0 unexpected, 0 of"):
        load_student(deeper)
    # the host-memory guard still counts the transformer the student's weights fill (the loader skips it)
    import accvideo.models as models

    need = models.host_bytes(tiny_wan_dir, torch.float32)
    monkeypatch.setattr(models, "available_memory", lambda: need - 1)
    with pytest.raises(AccVideoError, match=r"on the CPU and this machine has"):
        load_student(student)
    monkeypatch.setattr(models, "available_memory", lambda: need)
    load_student(student)


@pytest.mark.parametrize("pipeline", sorted(PIPELINE_TIMESTEPS))
@pytest.mark.parametrize(
    ("n", "m", "shift"),
    [(50, 5, 7.0), (50, 10, 5.0), (10, 5, 5.0), (48, 3, 3.0), (50, 2, 1.0), (50, 1, 5.0), (20, 4, 0.5)],
)
def test_scheduler_lands_on_uniform_key_sigmas(pipeline, n, m, shift):
    key = key_sigmas(shifted_sigmas(n, shift), uniform_key_indices(n, m)).tolist()
    scheduler, settings = matching_scheduler(key, pipeline)
    got = pipeline_sigmas(scheduler, m, PIPELINE_TIMESTEPS[pipeline])
    assert got == pytest.approx(key, abs=1e-6)
    assert scheduler.timesteps.tolist() == pytest.approx([1000 * s for s in key[:-1]], abs=1e-3)
    if PIPELINE_TIMESTEPS[pipeline] == "linspace":
        assert settings["shift"] == pytest.approx(shift if m > 1 else 1.0)


def test_scheduler_refuses_key_sigmas_no_stock_schedule_reaches():
    uneven = key_sigmas(shifted_sigmas(50, 7.0), [0, 5, 20, 30, 40, 50]).tolist()
    for pipeline in PIPELINE_TIMESTEPS:
        with pytest.raises(AccVideoError, match="accvideo sample"):
            matching_scheduler(uneven, pipeline)


def _student_copy(runs, tmp_path, name, **edits):
    """A copy of the LoRA student folder with student.json fields changed."""
    dst = tmp_path / name
    shutil.copytree(runs["lora"] / "student", dst)
    info = json.loads((dst / "student.json").read_text())
    info.update(edits)
    (dst / "student.json").write_text(json.dumps(info))
    return dst


def test_bad_input_is_one_line_with_exit_2(runs, tiny_wan_dir, tmp_path, capsys):
    foreign = tmp_path / "foreign-teacher"
    shutil.copytree(tiny_wan_dir, foreign)
    index = json.loads((foreign / "model_index.json").read_text())
    (foreign / "model_index.json").write_text(json.dumps({**index, "_class_name": "FooVideoPipeline"}))
    no_vae = tmp_path / "no-vae-teacher"
    shutil.copytree(tiny_wan_dir, no_vae)
    shutil.rmtree(no_vae / "vae")
    cases = [
        (_student_copy(runs, tmp_path, "s1", teacher_dir=str(foreign)), "FooVideoPipeline, which accvideo does not"),
        (_student_copy(runs, tmp_path, "s2", teacher_dir=str(no_vae)), "lacks the component folder(s) vae"),
        (_student_copy(runs, tmp_path, "s3", teacher_dir=str(tmp_path / "gone")), "teacher folder"),
        (_student_copy(runs, tmp_path, "s4", family="hunyuanvideo"), "holds a hunyuanvideo student but"),
        (_student_copy(runs, tmp_path, "s5", key_sigmas=[1.0, 0.9, 0.3, 0.0]), "with `accvideo sample`"),
        (_student_copy(runs, tmp_path, "s6", teacher="sha256:" + "0" * 64), "holds another teacher"),
        (tmp_path / "foreign-teacher", "holds no student"),
    ]
    for student, message in cases:
        line = one_line_error(["export", str(student), "--out", str(tmp_path / "out")], capsys, message)
        assert "Traceback" not in line
    assert not (tmp_path / "out").exists()
    with pytest.raises(AccVideoError, match="holds another teacher"):  # sampling refuses it too
        open_model(str(tmp_path / "s6"))

    # non-uniform key steps as a LoRA file: no scheduler/, and neither README nor the command says to call the
    # pipeline with a step count (was: "swap in the scheduler shipped here", "call it with num_inference_steps=3")
    code, text, err = run_cli(
        ["export", str(tmp_path / "s5"), "--format", "lora", "--out", str(tmp_path / "nu")], capsys
    )
    assert code in (0, None), err
    readme = (tmp_path / "nu" / "README.md").read_text()
    assert (
        not (tmp_path / "nu" / "scheduler").exists() and "shipped here" not in readme and "video = pipe(" not in readme
    )
    assert "no stock scheduler reaches its key sigmas" in text and "num_inference_steps" not in text

    # overwriting: a foreign non-empty folder is never replaced, --force or not (core/outputs.py); an earlier
    # export is replaced; inputs never are
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    args = ["export", str(runs["lora"]), "--format", "lora", "--out", str(out)]
    one_line_error(args, capsys, "not made by `accvideo export`")
    one_line_error([*args, "--force"], capsys, "--force included")
    assert (out / "notes.txt").read_text() == "keep me"
    (out / "notes.txt").unlink()
    code, _, err = run_cli(args, capsys)  # an empty folder
    assert code in (0, None), err
    code, _, err = run_cli(args, capsys)  # an earlier export: replaced without --force
    assert code in (0, None), err
    for target in (runs["lora"], runs["lora"] / "student", tiny_wan_dir, runs["lora"].parent):
        one_line_error([*args[:-1], str(target), "--force"], capsys, "would replace the")
    one_line_error([*args[:3], "onnx", "--out", str(tmp_path / "y")], capsys, "--format must be one of")


def test_export_replaces_the_teachers_scheduler_and_casts_on_request(runs, tiny_wan_dir, tmp_path, capsys):
    """Real Wan 2.1 folders ship UniPCMultistepScheduler: the export writes the Euler scheduler and its index entry."""
    from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler, WanPipeline

    teacher = tmp_path / "unipc-teacher"
    shutil.copytree(tiny_wan_dir, teacher)
    shutil.rmtree(teacher / "scheduler")
    UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0).save_pretrained(
        str(teacher / "scheduler")
    )
    index = json.loads((teacher / "model_index.json").read_text())
    index["scheduler"] = ["diffusers", "UniPCMultistepScheduler"]
    (teacher / "model_index.json").write_text(json.dumps(index))
    student = tmp_path / "student"
    shutil.copytree(runs["full"] / "student", student)
    info = json.loads((student / "student.json").read_text())
    # as if distilled from this folder (a real Wan 2.1 teacher ships UniPC): its identity is the recorded one
    (student / "student.json").write_text(
        json.dumps({**info, "teacher_dir": str(teacher), "teacher": teacher_identity(teacher)})
    )

    out = tmp_path / "bf16"
    code, _, err = run_cli(["export", str(student), "--out", str(out), "--dtype", "bfloat16"], capsys)
    assert code in (0, None), err
    assert json.loads((out / "model_index.json").read_text())["scheduler"] == [
        "diffusers",
        "FlowMatchEulerDiscreteScheduler",
    ]
    pipe = WanPipeline.from_pretrained(str(out))
    assert isinstance(pipe.scheduler, FlowMatchEulerDiscreteScheduler)
    from safetensors.torch import load_file

    saved = load_file(str(next((out / "transformer").glob("*.safetensors"))))
    assert {t.dtype for t in saved.values()} == {torch.bfloat16}  # diffusers loads float32 unless asked
    pipe.scheduler.set_timesteps(5)
    assert pipe.scheduler.sigmas.tolist() == pytest.approx(info["key_sigmas"], abs=1e-6)
    one_line_error(["export", str(student), "--out", str(tmp_path / "z"), "--dtype", "int8"], capsys, "unknown --dtype")


@pytest.mark.parametrize("kind", ["full", "lora"])
def test_single_file_export_is_the_student_under_the_wan_repositorys_names(runs, tiny_wan_dir, tmp_path, capsys, kind):
    """Diffusers' own reader of the Wan single-file layout maps the file back to the student's transformer (a LoRA
    student: fused, as the diffusers export fuses it), tensor for tensor, and `from_single_file` loads it offline."""
    from diffusers import WanTransformer3DModel
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers
    from safetensors import safe_open
    from safetensors.torch import load_file

    code, out, err = run_cli(
        ["export", str(runs[kind]), "--format", "single-file", "--out", str(tmp_path / "sf")], capsys
    )
    assert code == 0, err
    path = tmp_path / "sf" / "transformer.safetensors"
    state = load_file(path)
    assert {
        "blocks.0.self_attn.q.weight",
        "blocks.1.cross_attn.o.bias",
        "head.modulation",
        "blocks.0.norm3.weight",
    } <= set(state)
    assert not any(".attn1." in k or "scale_shift_table" in k or "condition_embedder" in k for k in state)
    run_cli(["export", str(runs[kind]), "--out", str(tmp_path / "pipe")], capsys)  # the diffusers export, for kind
    want = WanTransformer3DModel.from_pretrained(str(tmp_path / "pipe" / "transformer")).state_dict()
    back = convert_wan_transformer_to_diffusers(dict(state))
    assert back.keys() == want.keys()
    assert all(torch.equal(back[k], want[k]) for k in want)
    with safe_open(str(path), "pt") as f:
        assert (
            json.loads(f.metadata()["accvideo_key_sigmas"])
            == json.loads((runs[kind] / "student" / "student.json").read_text())["key_sigmas"]
        )
    loaded = WanTransformer3DModel.from_single_file(str(path), config=str(tiny_wan_dir), subfolder="transformer")
    assert all(torch.equal(v, want[k]) for k, v in loaded.state_dict().items())
    readme = (tmp_path / "sf" / "README.md").read_text()
    assert "from_single_file" in readme and "transformer=transformer" in readme
    if kind == "lora":
        assert_lora_file_fuses_to(tmp_path / "sf", tiny_wan_dir, want)


def assert_lora_file_fuses_to(folder, teacher, want: dict) -> None:
    """The adapter alone, in the community Wan LoRA layout: diffusers loads it on the teacher pipeline, and fused it
    gives the diffusers export's transformer."""
    from diffusers import WanPipeline
    from safetensors.torch import load_file

    lora = load_file(folder / "transformer_lora.safetensors")
    assert "diffusion_model.blocks.0.self_attn.q.lora_A.weight" in lora and not any("alpha" in k for k in lora)
    pipe = WanPipeline.from_pretrained(str(teacher))
    before = {k: v.clone() for k, v in pipe.transformer.state_dict().items()}
    pipe.load_lora_weights(str(folder), weight_name="transformer_lora.safetensors")
    pipe.fuse_lora()
    pipe.unload_lora_weights()
    fused = pipe.transformer.state_dict()
    assert fused.keys() == want.keys()
    for k in want:
        torch.testing.assert_close(fused[k], want[k], atol=1e-6, rtol=1e-6)
    assert any(not torch.equal(fused[k], before[k]) for k in want)  # the adapter changed the teacher


def test_single_file_lora_carries_the_adapters_scale(tiny_wan_dir, synvid, tmp_path, capsys):
    """alpha 6 on rank 2 (scale 3): the scale is multiplied into lora_B, since the layout's readers find no alpha."""
    from diffusers import WanTransformer3DModel

    run = tmp_path / "run"
    args = ["distill", "--teacher", str(tiny_wan_dir), "--data", str(synvid), "--out", str(run), *QUICK]
    code, _, err = run_cli([*args, "lora_rank=2", "lora_alpha=6", "probe_every=0"], capsys)
    assert code == 0, err
    for fmt in ("single-file", "diffusers"):
        code, _, err = run_cli(["export", str(run), "--format", fmt, "--out", str(tmp_path / fmt)], capsys)
        assert code == 0, err
    want = WanTransformer3DModel.from_pretrained(str(tmp_path / "diffusers" / "transformer")).state_dict()
    assert_lora_file_fuses_to(tmp_path / "single-file", tiny_wan_dir, want)


def test_single_file_export_casts_and_refuses_what_it_cannot_write(runs, tmp_path, capsys):
    from safetensors.torch import load_file

    from accvideo.export.single_file import original_state

    args = ["export", str(runs["full"]), "--format", "single-file", "--dtype", "bfloat16", "--out", str(tmp_path / "b")]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    cast = load_file(tmp_path / "b" / "transformer.safetensors")
    full = original_state(load_file(next((runs["full"] / "student" / "transformer").glob("*.safetensors"))))
    assert all(v.dtype == torch.bfloat16 and torch.equal(v, full[k].to(torch.bfloat16)) for k, v in cast.items())
    with pytest.raises(AccVideoError, match="no name for .*e.g. blocks.0.attn1.extra.weight.*--format diffusers"):
        original_state({**full_diffusers(runs), "blocks.0.attn1.extra.weight": torch.zeros(1)})
    one_line_error(
        [
            "export",
            str(runs["full"]),
            "--format",
            "single-file",
            "--decoder",
            str(tmp_path),
            "--out",
            str(tmp_path / "d"),
        ],
        capsys,
        "--decoder goes with --format diffusers or lora",
    )
    assert not (tmp_path / "d").exists()


def full_diffusers(runs) -> dict:
    from safetensors.torch import load_file

    return load_file(next((runs["full"] / "student" / "transformer").glob("*.safetensors")))


def test_single_file_export_refuses_names_diffusers_would_read_back_as_other_weights(runs, monkeypatch):
    """The guard against a diffusers whose reader of the layout disagrees: norm2 and norm3 read back unswapped."""
    import diffusers.loaders.single_file_utils as sfu

    from accvideo.export.single_file import original_state

    real = sfu.convert_wan_transformer_to_diffusers
    state = full_diffusers(runs)
    assert original_state(state)  # the installed reader agrees

    def unswapped(checkpoint, **kw):  # a reader that kept the repository's norm3 as norm3
        return {k.replace(".norm2.", ".norm3."): v for k, v in real(checkpoint, **kw).items()}

    monkeypatch.setattr(sfu, "convert_wan_transformer_to_diffusers", unswapped)
    with pytest.raises(AccVideoError, match="maps this export's names to other weights .*--format diffusers"):
        original_state(state)


def test_sample_prompts_keeps_a_moved_students_clips_and_refuses_a_retrained_one(runs, tiny_wan_dir, tmp_path, capsys):
    """A student's clips are kept by its weights, not its path or iteration: the run moved resumes, and so does it
    once its teacher moved (a distill rerun with the new --teacher rewrites student.json's teacher_dir, which made
    it another student); the same run with other weights (distilled again at that path) is refused before any clip
    changes."""
    from safetensors.torch import load_file, save_file

    (tmp_path / "p.txt").write_text("a red circle moving left\na blue square\n")
    args = ["--prompts", str(tmp_path / "p.txt"), "--out", str(tmp_path / "clips"), "--steps", "2", "--frames", "5"]
    args += ["--size", "32x32", "--device", "cpu"]
    shutil.copytree(runs["full"], tmp_path / "a")
    code, _, err = run_cli(["sample", "--model", str(tmp_path / "a"), *args], capsys)
    assert code in (0, None), err
    before = {p.name: p.read_bytes() for p in (tmp_path / "clips").iterdir()}
    shutil.move(tmp_path / "a", tmp_path / "b")
    code, out, err = run_cli(["sample", "--model", str(tmp_path / "b"), *args], capsys)
    assert code in (0, None) and "2 of 2 clips are already" in out, err
    info = json.loads((tmp_path / "b" / "student" / "student.json").read_text())
    moved = shutil.copytree(tiny_wan_dir, tmp_path / "teacher-moved")  # as distill/state.repoint_teacher writes it:
    (tmp_path / "b" / "student" / "student.json").write_text(json.dumps({**info, "teacher_dir": str(moved)}))
    code, out, err = run_cli(["sample", "--model", str(tmp_path / "b"), *args], capsys)
    assert code in (0, None) and "2 of 2 clips are already" in out, err
    weights = next((tmp_path / "b" / "student").rglob("*.safetensors"))
    tensors = load_file(weights)
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + 1e-3  # another training's weights: same run, same iteration, same teacher
    save_file(tensors, weights, metadata={"format": "pt"})
    info = json.loads((tmp_path / "b" / "student" / "student.json").read_text())
    info["weights_identity"] = weights_identity(tmp_path / "b" / "student", info)  # as its save records them
    (tmp_path / "b" / "student" / "student.json").write_text(json.dumps(info))
    code, _, err = run_cli(["sample", "--model", str(tmp_path / "b"), *args], capsys)
    assert code == 2 and err.count("\n") == 1 and "student_identity" in err, err
    assert {p.name: p.read_bytes() for p in (tmp_path / "clips").iterdir() if p.name != "sample.yaml"} == {
        k: v for k, v in before.items() if k != "sample.yaml"
    }


def _lora_header(path) -> dict:
    data = path.read_bytes()
    return json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])


def test_a_lora_export_records_the_lora_its_file_holds(runs, tmp_path, capsys):
    """accvideo_export.json records student.json's rank and alpha: a rank-2 run's file under a student.json that
    says rank 4 (alpha 4) was exported (exit 0) as "rank": 4; now it and another alpha are refused, by export and
    sample, and a true record is written."""
    lora = json.loads((runs["lora"] / "student" / "student.json").read_text())["lora"]
    code, _, err = run_cli(["export", str(runs["lora"]), "--format", "lora", "--out", str(tmp_path / "ok")], capsys)
    assert code in (0, None), err
    manifest = json.loads((tmp_path / "ok" / "accvideo_export.json").read_text())
    header = _lora_header(tmp_path / "ok" / "pytorch_lora_weights.safetensors")
    ranks = {v["shape"][0] for k, v in header.items() if k.endswith("lora_A.weight")}
    assert manifest["lora"] == {"rank": 2, "alpha": 2.0, "targets": ["to_k", "to_out.0", "to_q", "to_v"]}
    assert ranks == {2} and json.loads(header["__metadata__"]["lora_adapter_metadata"])["transformer.lora_alpha"] == 2
    cases = [
        ({"rank": 4, "alpha": 4.0}, "holds rank-2 LoRA weights (blocks.0.attn1.to_k) but its student.json says rank 4"),
        ({"alpha": 6.0}, "records lora_alpha 2.0 in its lora_adapter_metadata, but its student.json says 6.0"),
        ({"targets": ["to_q"]}, "holds LoRA weights for blocks.0.attn1.to_k, which its student.json's targets"),
    ]
    for i, (edit, message) in enumerate(cases):
        student = _student_copy(runs, tmp_path, f"r{i}", lora={**lora, **edit})
        one_line_error(["export", str(student), "--format", "lora", "--out", str(tmp_path / "out")], capsys, message)
        with pytest.raises(AccVideoError, match=re.escape(message)):
            open_model(str(student))
    assert not (tmp_path / "out").exists()


def test_a_lora_file_of_other_layers_is_refused_by_export_and_sample(runs, tmp_path, capsys):
    """'attn1' renamed 'attnX' in the LoRA file: diffusers loaded nothing (peft's warning says it "can be ignored"),
    and the student sampled and exported as its teacher with exit 0."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    student = _student_copy(runs, tmp_path, "renamed")
    path = student / "pytorch_lora_weights.safetensors"
    with safe_open(path, "pt") as f:
        meta, tensors = f.metadata(), {k.replace("attn1", "attnX"): f.get_tensor(k) for k in f.keys()}
    save_file(tensors, path, metadata=meta)
    message = "holds LoRA weights for 12 layer(s) its teacher's transformer lacks (e.g. blocks.0.attnX.to_k)"
    for fmt in ("lora", "diffusers"):
        one_line_error(["export", str(student), "--format", fmt, "--out", str(tmp_path / "out")], capsys, message)
    with pytest.raises(AccVideoError, match=re.escape(message)):
        open_model(str(student))
    assert not (tmp_path / "out").exists()


def test_every_targeted_layer_must_take_the_lora_weights(tiny_wan_dir):
    """After loading, a layer the targets name without the adapter is refused (peft only warns of it)."""
    from diffusers import WanTransformer3DModel
    from peft import LoraConfig

    from accvideo.models.student import check_lora_loaded

    targets = ["to_k", "to_out.0", "to_q", "to_v"]
    model = WanTransformer3DModel.from_pretrained(str(tiny_wan_dir / "transformer"))
    with pytest.raises(AccVideoError, match=r"f gave no LoRA weights to 24 of the 24 layers .*blocks\.0\.attn1\.to_q"):
        check_lora_loaded("f", model, targets)
    model.add_adapter(LoraConfig(r=2, target_modules=targets), adapter_name="student")
    check_lora_loaded("f", model, targets)
    model.get_submodule("blocks.1.attn2.to_v").lora_A.pop("student")
    with pytest.raises(
        AccVideoError,
        match=r"gave no LoRA weights to 1 of the 24 layers its targets name \(e\.g\. blocks\.1\.attn2\.to_v",
    ):
        check_lora_loaded("f", model, targets)


@pytest.mark.parametrize(
    ("metadata", "alpha", "message"),
    [
        (None, 2.0, None),
        (
            None,
            6.0,
            "records no LoRA alpha, so diffusers loads it at alpha = rank (2), but its student.json says alpha 6.0",
        ),
        ({"transformer.r": 2, "transformer.lora_alpha": 2.0}, 2.0, "records target_modules None"),
        ({"transformer.r": 2, "transformer.lora_alpha": 2.0, "transformer.target_modules": ["to_q"]}, 2.0, None),
        ({"transformer.r": 3, "transformer.lora_alpha": 2.0, "transformer.target_modules": ["to_q"]}, 2.0, "r 3"),
    ],
)
def test_a_lora_files_header_is_checked_against_student_json(metadata, alpha, message, tmp_path):
    """Rank from the lora_A / lora_B shapes, alpha and targets from the metadata diffusers builds the adapter with
    (none: alpha = rank), all before any weight is read."""
    from safetensors.torch import save_file

    from accvideo.models.student import lora_layers

    path = tmp_path / "l.safetensors"
    tensors = {
        "transformer.b.to_q.lora_A.weight": torch.zeros(2, 8),
        "transformer.b.to_q.lora_B.weight": torch.zeros(6, 2),
    }
    save_file(tensors, path, metadata=None if metadata is None else {"lora_adapter_metadata": json.dumps(metadata)})
    lora = {"rank": 2, "alpha": alpha, "targets": ["to_q"]}
    if message is None:
        assert lora_layers(path, lora) == {"b.to_q": {"A": [2, 8], "B": [6, 2]}}
    else:
        with pytest.raises(AccVideoError, match=re.escape(message)):
            lora_layers(path, lora)


def test_an_export_refuses_a_full_student_whose_config_does_not_match_its_weights(runs, tmp_path, capsys):
    """num_layers 3 -> 2 in the student's config.json: exported with exit 0, and the export then refused by
    `sample`; `sample` of the run itself ignored it (the teacher's transformer takes the weights)."""
    student = tmp_path / "student"
    shutil.copytree(runs["full"] / "student", student)
    config = json.loads((student / "transformer" / "config.json").read_text())
    (student / "transformer" / "config.json").write_text(json.dumps({**config, "num_layers": 2}))
    message = "config.json does not match its weights: it gives num_layers 2, its weights hold 3 blocks"
    one_line_error(["export", str(student), "--out", str(tmp_path / "out")], capsys, message)
    with pytest.raises(AccVideoError, match=re.escape(message)):
        open_model(str(student))
    (student / "transformer" / "config.json").write_text(json.dumps({**config, "num_layers": 3}))
    code, _, err = run_cli(["export", str(student), "--out", str(tmp_path / "out")], capsys)
    assert code in (0, None), err


def test_an_export_sampled_at_a_step_count_follows_its_runs_grid(runs, tmp_path, capsys):
    """`sample --model EXPORT --steps 5` shifted the grid by the export scheduler's shift, which is fitted (with its
    shift_terminal) to the key sigmas alone: other sigmas than its run's at the same step count, exit 0."""
    code, _, err = run_cli(["export", str(runs["full"]), "--out", str(tmp_path / "x")], capsys)
    assert code in (0, None), err
    run, export = open_model(str(runs["full"])), open_model(str(tmp_path / "x"))
    assert export.plan().sigmas == pytest.approx(run.plan().sigmas, abs=1e-9)  # its own key sigmas, as before
    for steps in (5, 3, 10):
        assert export.plan(steps=steps).sigmas == pytest.approx(run.plan(steps=steps).sigmas, abs=1e-9)
    assert export.plan(steps=5).sigmas == pytest.approx(run.plan().sigmas, abs=1e-6)  # m steps: the key sigmas


def test_a_lora_export_with_a_decoder_samples_on_the_key_sigmas_as_written(runs, tiny_wan_dir, tmp_path):
    """The README's tiny-decoder snippet of a LoRA export loaded the LoRA onto the teacher but kept the teacher's
    scheduler, so it sampled the teacher's sigmas (latents up to 0.49 off the student's); it swaps in the export's."""
    from accvideo.export import export_run
    from accvideo.models.decoder import DecoderSpec, TinyDecoder, save_decoder, vae_identity

    torch.manual_seed(0)
    decoder = TinyDecoder(DecoderSpec(16, 4, 8, width=16, depth=2, stage_depth=1)).eval()
    save_decoder(tmp_path / "dec", decoder, vae_identity(tiny_wan_dir), "wan")
    out = tmp_path / "lora"
    manifest = export_run(runs["lora"] / "student", "lora", out, decoder=tmp_path / "dec")
    code = re.findall(r"```python\n(.*?)```", (out / "README.md").read_text(), re.S)[-1]
    scope = {"PATH": str(out), "TEACHER": str(tiny_wan_dir), "prompt": "a red circle"}
    # the README names the size the student was distilled at (its SynVid's 9x32x32); run it at a smaller one
    code, sized = re.subn(r"num_frames=9, height=32, width=32", "num_frames=5, height=32, width=32", code)
    assert sized == 1, code
    exec(code, scope)  # noqa: S102
    assert scope["video"].shape == (5, 32, 32, 3)
    torch.testing.assert_close(  # the schedule the call ran
        scope["pipe"].scheduler.sigmas.double(),
        torch.tensor(manifest["key_sigmas"], dtype=torch.float64),
        atol=1e-5,
        rtol=0,
    )


def test_a_student_samples_and_exports_at_the_size_it_was_distilled_at(runs, tmp_path, capsys, monkeypatch):
    """The runs were distilled on 9x32x32 clips, their tiny teacher's default is 17x64x64: `sample` without
    --frames/--size made 17x64x64 clips (a size the student never saw) and the export's stock call named it; both now
    take the distilled size from student.json, while a student recording none, or an export made before, keeps its
    teacher's, and a damaged record is one line."""
    clip = cli_helpers.sample_video(runs["full"], tmp_path / "clip.mp4", capsys, monkeypatch, "--prompt", PROMPT)
    assert tuple(clip.shape) == (FRAMES, H, W, 3)
    record = yaml.safe_load((tmp_path / "clip.yaml").read_text())  # its "settings" is the line it printed
    assert record["resolved_size"] == [FRAMES, H, W]
    student_json = runs["full"] / "student" / "student.json"
    said = f"frames and size from the size it was distilled at ({student_json}); negative prompt and fps from the "
    assert f"{FRAMES} frames at {H}x{W}" in record["settings"] and said in record["settings"], record
    clip = cli_helpers.sample_video(
        runs["full"], tmp_path / "g.mp4", capsys, monkeypatch, "--prompt", PROMPT, "--frames", "5"
    )
    settings = yaml.safe_load((tmp_path / "g.yaml").read_text())["settings"]  # frames given: the size alone from it
    assert tuple(clip.shape) == (5, H, W, 3) and "(size from the size it was distilled at" in settings, settings

    out = tmp_path / "export"
    code, text, err = run_cli(["export", str(runs["full"]), "--format", "diffusers", "--out", str(out)], capsys)
    assert code in (0, None), err
    manifest = json.loads((out / "accvideo_export.json").read_text())
    assert manifest["size"] == {"num_frames": FRAMES, "height": H, "width": W} and manifest["size_distilled"] is True
    assert f"num_frames={FRAMES}, height={H}, width={W}" in (out / "README.md").read_text()
    exported = cli_helpers.sample_video(out, tmp_path / "e.mp4", capsys, monkeypatch, "--prompt", PROMPT)  # as --model
    assert tuple(exported.shape) == (FRAMES, H, W, 3)
    # an export made before: its `size` was its teacher folder's default, not one the student was distilled at
    del manifest["size_distilled"]
    (out / "accvideo_export.json").write_text(
        json.dumps({**manifest, "size": {"num_frames": 17, "height": 64, "width": 64}})
    )
    (out / "accvideo.json").write_text(json.dumps({"frames": 5, "height": 32, "width": 32}))  # its folder's own, then
    exported = cli_helpers.sample_video(out, tmp_path / "x.mp4", capsys, monkeypatch, "--prompt", PROMPT)
    assert tuple(exported.shape) == (5, 32, 32, 3)

    older = tmp_path / "older"
    shutil.copytree(runs["lora"] / "student", older)
    info = json.loads((older / "student.json").read_text())
    assert info.pop("size") == {"frames": FRAMES, "height": H, "width": W}
    (older / "student.json").write_text(json.dumps(info))
    clip = cli_helpers.sample_video(older, tmp_path / "o.mp4", capsys, monkeypatch, "--prompt", PROMPT, "--steps", "1")
    assert tuple(clip.shape) == (17, 64, 64, 3)  # the tiny teacher's default, as before the size was recorded

    damaged = _student_copy(runs, tmp_path, "damaged", size={"frames": 9, "height": "32", "width": 32})
    args = ["sample", "--model", str(damaged), "--prompt", PROMPT, "--out", str(tmp_path / "d.mp4")]
    one_line_error(args, capsys, f"{damaged / 'student.json'}: size must be {{frames, height, width}}")
    odd = _student_copy(runs, tmp_path, "odd", size={"frames": 10, "height": 32, "width": 32})  # not 4k+1 frames
    args = ["export", str(odd), "--format", "lora", "--out", str(tmp_path / "odd-export")]  # was exit 0, frames=10
    one_line_error(args, capsys, f"{odd / 'student.json'}: size frames must be of the form 4k+1")
    assert not (tmp_path / "odd-export").exists()


def test_a_finished_runs_rerun_saves_again_a_student_whose_weights_were_changed(
    runs, tiny_wan_dir, synvid, tmp_path, capsys
):
    """`sample` refuses weights that are not the ones student.json recorded and says to rerun the distill command;
    that rerun took the student as current (its headers were whole) and rewrote nothing, so the refusal stayed. It
    now saves the student again from the run's checkpoint, byte for byte the one saved first."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from accvideo.distill import distill

    run = shutil.copytree(runs["lora"], tmp_path / "run")
    path = run / "student" / "pytorch_lora_weights.safetensors"
    with safe_open(path, "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) + 1.0 for k in f.keys()}  # noqa: SIM118 - not iterable
    save_file(tensors, path, metadata=meta)
    args = ["sample", "--model", str(run), "--prompt", PROMPT, "--out", str(tmp_path / "c.mp4")]
    one_line_error(args, capsys, f"{path} is not the transformer weights its student.json was saved with")
    summary = distill(quick_distill_config(tiny_wan_dir, synvid, run, **QUICK_STUDENTS["lora"]), progress=False)
    assert not summary.get("kept") and summary["iterations"] == 2
    assert path.read_bytes() == (runs["lora"] / "student" / path.name).read_bytes()
    open_model(str(run))  # loads again


# --- each student weights file read once: the finite check rides on the copy or conversion ------------------------
# (kind, --format, --dtype): every path an export reads a student's weights by
READ_PATHS = [
    ("full", "diffusers", None),  # a byte-for-byte copy
    ("full", "diffusers", "bfloat16"),  # loaded and cast
    ("full", "single-file", None),  # loaded and renamed
    ("lora", "diffusers", None),  # fused into the teacher's
    ("lora", "lora", None),  # a byte-for-byte copy
    ("lora", "single-file", None),  # fused, and written alone in the Wan layout
]


def _export_args(student: Path, fmt: str, dtype: str | None, out: Path) -> list[str]:
    return ["export", str(student), "--format", fmt, "--out", str(out), *(["--dtype", dtype] if dtype else [])]


def _count_tensor_reads(monkeypatch) -> dict[tuple[Path, str], int]:
    """Count, by (file, tensor name), each tensor read from a safetensors file by any reader an export may reach:
    safetensors' safe_open (get_tensor, a slice read) and load_file (every tensor: diffusers' loaders read files
    by it) and a file copy (shutil.copyfile, under copy2 and copytree: every tensor)."""
    import safetensors
    import safetensors.torch
    from safetensors import safe_open as real_open

    reads: dict[tuple[Path, str], int] = {}

    def count(path, names) -> None:
        for name in names:
            key = (Path(path).resolve(), name)
            reads[key] = reads.get(key, 0) + 1

    def names_of(path) -> list[str]:
        with real_open(str(path), "pt") as f:
            return list(f.keys())  # noqa: SIM118 - not iterable

    class Slice:
        def __init__(self, path, name, real):
            self.path, self.name, self.real = path, name, real

        def __getattr__(self, attr):
            return getattr(self.real, attr)

        def __getitem__(self, index):
            count(self.path, [self.name])
            return self.real[index]

    class Handle:
        def __init__(self, path, *args, **kwargs):
            self.path, self.real = path, real_open(path, *args, **kwargs)

        def __enter__(self):
            self.real.__enter__()
            return self

        def __exit__(self, *exc):
            return self.real.__exit__(*exc)

        def __getattr__(self, attr):
            return getattr(self.real, attr)

        def get_tensor(self, name):
            count(self.path, [name])
            return self.real.get_tensor(name)

        def get_slice(self, name):
            return Slice(self.path, name, self.real.get_slice(name))

    real_load, real_copy = safetensors.torch.load_file, shutil.copyfile

    def load_file(path, *args, **kwargs):
        count(path, names_of(path))
        return real_load(path, *args, **kwargs)

    def copyfile(src, dst, *args, **kwargs):
        if os.fspath(src).endswith(".safetensors"):  # copytree hands copy2 a DirEntry
            count(os.fspath(src), names_of(os.fspath(src)))
        return real_copy(src, dst, *args, **kwargs)

    monkeypatch.setattr(safetensors, "safe_open", Handle)
    monkeypatch.setattr(safetensors.torch, "safe_open", Handle)
    monkeypatch.setattr(safetensors.torch, "load_file", load_file)
    monkeypatch.setattr(shutil, "copyfile", copyfile)
    return reads


@pytest.mark.parametrize(("kind", "fmt", "dtype"), READ_PATHS)
def test_an_export_reads_each_student_weights_file_once(runs, tmp_path, capsys, monkeypatch, kind, fmt, dtype):
    """The finite check read every tensor of the student, then the format's writer read them all again to copy or
    convert them: a 14B student's 28-56 GB read twice. Each tensor is now checked as the writer reads it, so every
    tensor of every weights file is read exactly once (the teacher's files, read to fuse a LoRA, are not counted),
    and a copied file is still the student's, byte for byte."""
    from safetensors import safe_open

    from accvideo.models.student import read_student_info, student_weights

    student = runs[kind] / "student"
    files = student_weights(student, read_student_info(student))
    every = set()
    for f in files:
        with safe_open(str(f), "pt") as h:
            every |= {(f.resolve(), name) for name in h.keys()}  # noqa: SIM118 - not iterable
    reads = _count_tensor_reads(monkeypatch)
    code, _, err = run_cli(_export_args(runs[kind], fmt, dtype, tmp_path / "out"), capsys)
    assert code in (0, None), err
    student_reads = {k: n for k, n in reads.items() if k[0] in {f.resolve() for f in files}}
    assert student_reads == dict.fromkeys(every, 1)
    if dtype is None and fmt in ("diffusers", "lora") and (kind == "full") == (fmt == "diffusers"):
        for f in files:
            copied = tmp_path / "out" / f.relative_to(student)
            assert copied.read_bytes() == f.read_bytes()


def _poison(student: Path, kind: str) -> tuple[Path, str]:
    """Put a NaN in one tensor of the student's weights file (its header's metadata kept), and record the weights'
    identity in student.json, as a run that diverged saves them; (the file, the tensor)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = student / "pytorch_lora_weights.safetensors" if kind == "lora" else student / "transformer"
    path = path if kind == "lora" else next(path.glob("*.safetensors"))
    with safe_open(str(path), "pt") as f:
        tensors, metadata = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()  # noqa: SIM118 - not iterable
    name = sorted(n for n, t in tensors.items() if t.is_floating_point())[-1]  # read last by a name-ordered check
    tensors[name].view(-1)[0] = float("nan")
    save_file(tensors, str(path), metadata=metadata)
    info = json.loads((student / "student.json").read_text())
    (student / "student.json").write_text(json.dumps({**info, "weights_identity": weights_identity(student, info)}))
    return path, name


@pytest.mark.parametrize(("kind", "fmt", "dtype"), READ_PATHS)
def test_a_student_holding_nan_is_refused_and_an_earlier_export_kept(
    runs, tmp_path, capsys, monkeypatch, kind, fmt, dtype
):
    """The check moved from before the export into its writing, tensor by tensor: a NaN student is still one line
    (the same one), no folder is made at a new --out, an earlier export at --out is kept whole, no temporary folder
    is left, and the diffusers export refuses it before copying the teacher's components (gigabytes). Its weights
    edited since the save (the identity student.json records no longer theirs), the NaN line still wins."""
    import accvideo.export.formats as formats

    student = Path(shutil.copytree(runs[kind] / "student", tmp_path / "student"))
    earlier = tmp_path / "earlier"
    code, _, err = run_cli(_export_args(student, fmt, dtype, earlier), capsys)
    assert code in (0, None), err
    kept = {p: p.read_bytes() for p in earlier.rglob("*") if p.is_file()}
    saved = (student / "student.json").read_text()
    path, name = _poison(student, kind)
    copied, real = [], formats.copy_tree
    monkeypatch.setattr(formats, "copy_tree", lambda src, dst, **kw: (copied.append(src), real(src, dst, **kw)))
    line = (
        f"error: {path}: {name} holds NaN or infinite values (a damaged student, or one saved by a run that diverged); "
        "remove the student/ folder and rerun the distill command that wrote it (it saves the student again from its "
        "last checkpoint), or restore the run folder"
    )
    for out in (tmp_path / "new", earlier):
        assert one_line_error(_export_args(student, fmt, dtype, out), capsys, "NaN") == line
    assert not (tmp_path / "new").exists()
    assert {p: p.read_bytes() for p in earlier.rglob("*") if p.is_file()} == kept
    assert not [p for p in tmp_path.iterdir() if ".part-" in p.name]
    assert all(student in p.parents for p in copied), copied  # the student's own folder alone, if any
    (student / "student.json").write_text(saved)  # the identity of the weights before the NaN
    assert one_line_error(_export_args(student, fmt, dtype, earlier), capsys, "NaN") == line
    assert {p: p.read_bytes() for p in earlier.rglob("*") if p.is_file()} == kept


@pytest.mark.parametrize("sendfile", [True, False])
def test_copy_safetensors_is_the_file_and_checks_each_tensor_before_its_bytes(tmp_path, monkeypatch, sendfile):
    """The export's one-read copy: the file byte for byte (header, metadata, every dtype, a 0-d tensor), each tensor
    seen by the check once, in data order; where os.sendfile cannot write a file (macOS) the bytes are read and
    written instead. A refused tensor stops the copy before its bytes."""
    import errno

    from safetensors.torch import save_file

    from accvideo.core.tensorfile import copy_safetensors

    if not sendfile:
        monkeypatch.setattr(os, "sendfile", lambda *a: (_ for _ in ()).throw(OSError(errno.ENOTSOCK, "not a socket")))
    tensors = {
        "b": torch.randn(3, 5).bfloat16(),
        "a": torch.arange(7, dtype=torch.int64),
        "c": torch.tensor(2.5),
        "d": torch.randn(64, 64),
    }
    path = tmp_path / "w.safetensors"
    save_file(tensors, str(path), metadata={"format": "pt", "note": "kept"})
    seen = []
    copy_safetensors(path, tmp_path / "copy.safetensors", check=lambda f, name, t: seen.append((f, name, t.clone())))
    assert (tmp_path / "copy.safetensors").read_bytes() == path.read_bytes()
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    in_order = sorted(tensors, key=lambda k: header[k]["data_offsets"][0])
    assert [name for _, name, _ in seen] == in_order and all(f == path for f, _, _ in seen)
    assert all(torch.equal(t, tensors[name]) for _, name, t in seen)

    def refuse(f, name, t):
        if name == "d":
            raise AccVideoError(f"{f}: {name} refused")

    with pytest.raises(AccVideoError, match="d refused"):
        copy_safetensors(path, tmp_path / "part.safetensors", check=refuse)
    # every byte before d's data, none of it: the check comes before the tensor's bytes are copied
    assert (tmp_path / "part.safetensors").stat().st_size == 8 + n + header["d"]["data_offsets"][0]

    # an empty tensor listed after the one sharing its start (another tool's header order): each byte copied once
    head = json.dumps(
        {
            "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
            "z": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]},
        }
    ).encode()
    odd = tmp_path / "odd.safetensors"
    odd.write_bytes(len(head).to_bytes(8, "little") + head + torch.tensor([1.0, 2.0]).numpy().tobytes())
    copy_safetensors(odd, tmp_path / "odd-copy.safetensors", check=lambda *a: None)
    assert (tmp_path / "odd-copy.safetensors").read_bytes() == odd.read_bytes()


@pytest.mark.parametrize("kind", ["full", "lora"])
def test_an_export_that_would_not_fit_the_host_memory_is_refused_before_reading(
    runs, tmp_path, capsys, monkeypatch, kind
):
    """--dtype and single-file exports hold the transformer in float32 on the CPU (a LoRA student: its teacher's,
    the adapter fused in): a 14B student is 56 GB. Past the memory free the kernel killed the export without a word
    and left its temporary folder; it is refused in one line before any weight is read."""
    import accvideo.core.runtime as runtime

    monkeypatch.setattr(runtime, "available_memory", lambda: 1 << 10)  # 1 KiB free (the tiny transformer: 140 KB)
    out = tmp_path / "export"
    args = ["export", str(runs[kind]), "--format", "diffusers", "--dtype", "bfloat16", "--out", str(out)]
    line = one_line_error(args, capsys, "in float32 on the CPU (")
    assert "GiB of memory free" in line and not out.exists() and not list(tmp_path.glob(".export*"))
