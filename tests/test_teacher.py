"""The built-in teacher's training: reproducible from a seed, resumable after a kill, loadable by stock diffusers."""

import json
import shutil

import pytest
import torch
import yaml
from safetensors.torch import load_file

from accvideo.teacher.config import TeacherConfig, quick_config
from accvideo.teacher.train import train_teacher

CFG = quick_config(vae_base_dim=4, vae_steps=4, steps=7, checkpoint_every=3)


def _weights(out):
    return {
        **load_file(str(out / "transformer" / "diffusion_pytorch_model.safetensors")),
        **{f"vae.{k}": v for k, v in load_file(str(out / "vae" / "diffusion_pytorch_model.safetensors")).items()},
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher") / "ref"
    stats = train_teacher(CFG, out)
    return out, stats


def test_a_teacher_trained_at_its_own_size_samples_at_it(reference):
    """Its clip size is its default (accvideo.json): it was sampled at the built-in model's 17x64x64, credited to it."""
    from accvideo.models.defaults import video_defaults

    out, _ = reference
    values, source = video_defaults(out, "wan")
    assert (values["frames"], values["height"], values["width"]) == (CFG.frames, CFG.height, CFG.width) != (17, 64, 64)
    assert source.startswith(str(out / "accvideo.json"))


def test_same_seed_same_weights_and_training_moves_them(reference, tmp_path):
    out, stats = reference
    again = tmp_path / "again"
    train_teacher(CFG, again)
    a, b = _weights(out), _weights(again)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = tmp_path / "other"
    train_teacher(quick_config(vae_base_dim=4, vae_steps=4, steps=7, checkpoint_every=3, seed=1), other)
    c = _weights(other)
    assert any(not torch.equal(a[k], c[k]) for k in a)
    assert stats["parameters"]["transformer"] > 0
    from accvideo.core.tensorfile import FILE_MODE

    # readable by whoever shares the folder (save_pretrained writes the weights with mode 600)
    assert {f.stat().st_mode & 0o777 for f in out.rglob("*") if f.is_file()} == {FILE_MODE}


def test_killed_run_resumes_to_the_same_weights(reference, tmp_path, monkeypatch):
    out = tmp_path / "resumed"
    real_step = torch.optim.AdamW.step
    calls = {"n": 0}

    def dying_step(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == CFG.vae_steps + 5:  # inside the transformer phase, between checkpoints
            raise KeyboardInterrupt
        return real_step(self, *a, **kw)

    monkeypatch.setattr(torch.optim.AdamW, "step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        train_teacher(CFG, out)
    assert not out.exists()  # nothing half-written at the destination
    monkeypatch.setattr(torch.optim.AdamW, "step", real_step)
    train_teacher(CFG, out)
    ref, res = _weights(reference[0]), _weights(out)
    assert all(torch.equal(ref[k], res[k]) for k in ref)
    # the record beside the weights too: the loss's running mean travels with the state (was None after a resume)
    records = [yaml.safe_load((folder / "accvideo_teacher.yaml").read_text()) for folder in (reference[0], out)]
    assert records[1]["final_loss"] is not None and records[1]["final_loss"] == records[0]["final_loss"]


def test_a_signal_saves_the_step_under_way_in_either_phase_and_the_rerun_goes_on(reference, tmp_path, monkeypatch):
    """SIGTERM (or Ctrl-C) in the VAE phase, in its last step, then in the transformer phase: each run saves the
    step it was on and stops with one line naming it (was: killed at once, back to the last checkpoint; and a signal
    in a phase's last step started the next phase); the last run, signalled in its last step, finishes with the
    weights of an uninterrupted one."""
    import signal

    from accvideo.core.interrupts import Interrupted, catch_interrupts

    out, work = tmp_path / "stopped", tmp_path / "stopped.work"
    real_step = torch.optim.AdamW.step

    def signalled_at(call):
        calls = {"n": 0}

        def step(self, *a, **kw):
            calls["n"] += 1
            if calls["n"] == call:
                signal.raise_signal(signal.SIGTERM)  # lands mid-step: the step finishes, is saved, then the stop
            return real_step(self, *a, **kw)

        return step

    lines = []
    for call in (1, 3, 2):  # VAE step 1 of 4; VAE step 4 of 4, the last; transformer step 2 of 7
        monkeypatch.setattr(torch.optim.AdamW, "step", signalled_at(call))
        with pytest.raises(Interrupted) as exc, catch_interrupts():
            train_teacher(CFG, out)
        lines.append(str(exc.value))
    assert not out.exists()
    assert lines == [
        f"interrupted (SIGTERM) at {unit} of {total}, which is saved in {folder}; rerun the same command to resume"
        for unit, total, folder in (("VAE step 1", 4, work), ("VAE step 4", 4, work), ("transformer step 2", 7, work))
    ]
    monkeypatch.setattr(torch.optim.AdamW, "step", signalled_at(5))  # the last transformer step, 7 of 7
    with pytest.raises(Interrupted) as exc, catch_interrupts():
        train_teacher(CFG, out)  # finishes, writes the teacher, then says so (was: a bare "interrupted (SIGTERM)")
    assert str(exc.value) == (
        f"interrupted (SIGTERM) during the last transformer step, which finished: all 7 are saved in {out}; "
        "rerun the same command to go on from there"
    )
    ref, res = _weights(reference[0]), _weights(out)
    assert all(torch.equal(ref[k], res[k]) for k in ref)


def test_a_stopped_phase_closes_its_progress_bar_before_the_line(tmp_path, monkeypatch, capsys):
    """The CLI prints `interrupted ... at VAE step N` after the training loop raised: the bar must be closed by then,
    or the line was glued to the end of the bar and the bar drawn again below it (at exit)."""
    import signal

    from accvideo.core.interrupts import Interrupted, catch_interrupts

    real_step = torch.optim.AdamW.step
    calls = {"n": 0}

    def step(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] in (1, 4 + 1):  # VAE step 1; then, resumed, VAE steps 2 to 4 and transformer step 1
            signal.raise_signal(signal.SIGTERM)
        return real_step(self, *a, **kw)

    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    for phase in ("teacher 1/3: VAE", "teacher 3/3: transformer"):
        capsys.readouterr()
        with pytest.raises(Interrupted) as stopped, catch_interrupts():
            train_teacher(CFG, tmp_path / "out")
        last = capsys.readouterr().err.split("\r")[-1]  # read as the CLI prints: the exception (and its frames) alive
        del stopped
        assert last.startswith(phase) and last.endswith("\n")  # closed: the line that follows starts a line


def _tree(folder):
    return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_finished_runs_rerun_changes_nothing_and_other_settings_are_refused(reference, tmp_path):
    from accvideo.errors import AccVideoError
    from accvideo.models.identity import teacher_identity

    out, stats = reference
    before, identity = _tree(out), teacher_identity(out)
    # was: retrained nothing but rewrote the folder, new *_seconds_this_run in its record: another identity, which
    # orphaned every dataset and student made from the teacher
    again = train_teacher(CFG, out)
    assert _tree(out) == before and teacher_identity(out) == identity
    assert again["final_loss"] == stats["final_loss"] and again["parameters"] == stats["parameters"]
    with pytest.raises(AccVideoError, match=r"seed=0, not 1; use another --out"):
        train_teacher(quick_config(vae_base_dim=4, vae_steps=4, steps=7, checkpoint_every=3, seed=1), out)
    assert _tree(out) == before
    # fewer steps than it was trained for rewrote every file from the work folder's state
    with pytest.raises(AccVideoError, match=r"trained for 7 steps; steps=5 would go back .* give steps=7 or more"):
        train_teacher(quick_config(vae_base_dim=4, vae_steps=4, steps=5, checkpoint_every=3), out)
    assert _tree(out) == before
    # a work folder left by a killed run resumes only with its own settings (was: resumed and mixed them)
    work = tmp_path / "killed.work"
    work.mkdir()
    for name in ("config.yaml", "transformer_state.pt"):
        (work / name).write_bytes((out.with_name(f"{out.name}.work") / name).read_bytes())
    with pytest.raises(AccVideoError, match=r"lr=0.001, not 0.002"):
        train_teacher(
            quick_config(vae_base_dim=4, vae_steps=4, steps=7, checkpoint_every=3, lr=2e-3), tmp_path / "killed", work
        )


def test_more_steps_continue_a_finished_teacher(reference, tmp_path):
    out, _ = reference
    copy, work = tmp_path / "t", tmp_path / "t.work"
    shutil.copytree(out, copy)
    shutil.copytree(out.with_name(f"{out.name}.work"), work)
    longer = quick_config(vae_base_dim=4, vae_steps=4, steps=9, checkpoint_every=3)
    with pytest.warns(UserWarning, match=r"holds a teacher trained for 7 steps: steps=9 continues it and replaces"):
        train_teacher(longer, copy, work)  # said nothing: its datasets and students were refused after
    assert yaml.safe_load((copy / "accvideo_teacher.yaml").read_text())["steps"] == 9
    moved = _weights(copy)
    assert any(not torch.equal(moved[k], v) for k, v in _weights(out).items() if not k.startswith("vae."))
    assert all(torch.equal(moved[k], v) for k, v in _weights(out).items() if k.startswith("vae."))  # VAE kept


def test_a_resumed_run_drops_the_log_lines_past_its_checkpoint(tmp_path):
    from accvideo.teacher.train import _keep_log_until

    log = tmp_path / "transformer_log.jsonl"
    log.write_text("".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in (50, 100, 150)) + '{"step": 2')
    _keep_log_until(log, 100)  # killed after logging 150 (and half a line), resumed from the checkpoint at 100
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [50, 100]


def test_stock_wan_pipeline_loads_and_generates(reference):
    from diffusers import WanPipeline

    out, _ = reference
    pipe = WanPipeline.from_pretrained(str(out))
    pipe.set_progress_bar_config(disable=True)
    video = pipe(
        "a red circle moving left on a grey background",
        height=CFG.height,
        width=CFG.width,
        num_frames=CFG.frames,
        num_inference_steps=2,
        output_type="np",
    ).frames
    assert video.shape == (1, CFG.frames, CFG.height, CFG.width, 3)
    assert 0 <= video.min() and video.max() <= 1
    # the latent normalisation learned from the data is stored in the VAE config
    assert pipe.vae.config.latents_std != [1.0] * CFG.vae_z_dim


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="4k\\+1"):
        TeacherConfig(frames=16)
    with pytest.raises(ValueError, match="multiples of 16"):
        TeacherConfig(height=40)


@pytest.mark.gpu
def test_gpu_transformer_phase_sees_the_cpu_runs_batches(reference, tmp_path):
    """Same random draws on both devices: the GPU run's weights equal the CPU run's up to float rounding."""
    out, _ = reference
    gpu = tmp_path / "gpu"
    stats = train_teacher(CFG, gpu, device="cuda")
    a, b = _weights(out), _weights(gpu)
    assert stats["trained_on"] != "cpu"
    assert all(torch.equal(a[k], b[k]) for k in a if k.startswith("vae."))  # the VAE trains on the CPU
    diffs = torch.cat([(a[k] - b[k]).abs().flatten() for k in a if not k.startswith("vae.")])
    assert diffs.mean() < 1e-3 and diffs.max() < 5e-2, (diffs.mean(), diffs.max())


# --- the image-to-video teacher: a teacher fine-tuned with its first latent frame given (TI2V style) ---------------
def _image_cfg(init, **kw):
    from dataclasses import replace

    return replace(CFG, image=True, init=str(init), steps=5, **kw)


def test_image_teacher_fine_tunes_the_init_and_loads_as_ti2v_image_pipeline(reference, tmp_path):
    from diffusers import WanImageToVideoPipeline

    from accvideo.models import load_adapter
    from accvideo.models.wan_ti2v import WanTI2VImageAdapter

    out = tmp_path / "i2v"
    stats = train_teacher(_image_cfg(reference[0]), out)
    pipe = WanImageToVideoPipeline.from_pretrained(str(out))
    assert pipe.config.expand_timesteps and pipe.image_encoder is None and stats["final_loss"] > 0
    assert type(load_adapter(out)) is WanTI2VImageAdapter
    init, tuned = _weights(reference[0]), _weights(out)
    assert all(torch.equal(init[k], tuned[k]) for k in init if k.startswith("vae."))  # the init's VAE, untouched
    assert max((init[k] - tuned[k]).abs().max().item() for k in init if not k.startswith("vae.")) > 1e-4
    enc = "text_encoder/model.safetensors"
    assert torch.equal(load_file(str(reference[0] / enc))["shared.weight"], load_file(str(out / enc))["shared.weight"])
    # the init folder's path (this machine's) is not recorded in the saved configs: shipped teachers carry none
    assert not any("_name_or_path" in json.loads(f.read_text()) for f in out.glob("*/config.json"))


def test_shipped_teachers_carry_no_source_paths():
    from accvideo.core.runtime import builtin_model_dir

    for name in ("builtin", "builtin-i2v"):
        for f in builtin_model_dir(name).glob("*/config.json"):
            assert "_name_or_path" not in json.loads(f.read_text()), f


def test_image_teacher_resumes_to_the_same_weights(reference, tmp_path, monkeypatch):
    cfg = _image_cfg(reference[0], checkpoint_every=2)
    train_teacher(cfg, tmp_path / "whole")
    real_step = torch.optim.AdamW.step
    calls = {"n": 0}

    def dying_step(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:  # no VAE phase: the third transformer step, after the checkpoint at 2
            raise KeyboardInterrupt
        return real_step(self, *a, **kw)

    monkeypatch.setattr(torch.optim.AdamW, "step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        train_teacher(cfg, tmp_path / "resumed")
    monkeypatch.setattr(torch.optim.AdamW, "step", real_step)
    train_teacher(cfg, tmp_path / "resumed")
    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_first_latent_frame_of_a_clip_is_its_first_frame_encoded_alone():
    """The training condition (a clip's latent frame 0) is what the stock pipeline encodes at sampling time (the
    first frame alone): the Wan VAE is causal, so the two agree."""
    from diffusers import AutoencoderKLWan

    from accvideo.core.runtime import builtin_model_dir
    from accvideo.teacher.vae import clips, train_items

    vae = AutoencoderKLWan.from_pretrained(str(builtin_model_dir() / "vae")).eval()
    video = clips(TeacherConfig(), train_items(TeacherConfig(), 0, 2, stream=3))  # (2, 3, 17, 64, 64) in [-1, 1]
    with torch.no_grad():
        whole = vae.encode(video).latent_dist.mode()[:, :, :1]
        alone = vae.encode(video[:, :, :1]).latent_dist.mode()
    torch.testing.assert_close(whole, alone, atol=1e-4, rtol=0)
    assert whole.abs().mean() > 0.1


def test_init_of_another_architecture_is_refused_in_one_line(reference, tmp_path):
    from accvideo.errors import AccVideoError

    with pytest.raises(AccVideoError, match=r"init=.* has layers=2; set these"):
        train_teacher(_image_cfg(reference[0], layers=3), tmp_path / "x")


def test_cli_refuses_an_init_that_is_not_a_text_to_video_teacher_before_making_folders(tmp_path, capsys):
    from accvideo.cli import main

    for init, words in (("builtin-i2v", "is a WanImageToVideoPipeline"), (str(tmp_path / "none"), "not a teacher")):
        with pytest.raises(SystemExit) as exc:
            main(["teacher", "train", "--out", str(tmp_path / "t"), "image=true", f"init={init}"])
        err = capsys.readouterr().err.strip()
        assert exc.value.code == 2 and len(err.splitlines()) == 1 and words in err, err
    assert not (tmp_path / "t").exists() and not (tmp_path / "t.work").exists()


@pytest.mark.parametrize("work", ["synvid", "a-file", "teacher", "unmakeable"])
def test_a_bad_work_folder_is_refused_before_either_folder_is_made(work, reference, synvid, tmp_path, capsys):
    """A bad work= left a new --out behind and named --out as the fix; a finished teacher as work= was trained
    into (its folder got the work files)."""
    from cli_helpers import run_cli

    teacher, _ = reference
    (tmp_path / "a-file").write_text("")
    given = {
        "synvid": synvid,
        "a-file": tmp_path / "a-file",
        "teacher": teacher,
        "unmakeable": tmp_path / "a-file" / "work",
    }[work]
    before = {p: p.read_bytes() for p in sorted(teacher.rglob("*")) if p.is_file()}
    code, _, err = run_cli(["teacher", "train", "--out", str(tmp_path / "t"), f"work={given}", "steps=2"], capsys)
    assert code == 2 and err.count("\n") == 1 and err.endswith("; choose another work=\n"), err
    assert not (tmp_path / "t").exists() and "--out" not in err
    assert {p: p.read_bytes() for p in sorted(teacher.rglob("*")) if p.is_file()} == before


def _copy_run(reference, tmp_path, out=True):
    """A copy of the reference teacher (when `out`) and its work folder, as tmp_path/t1 and tmp_path/t1.work."""
    ref = reference[0]
    copy, work = tmp_path / "t1", tmp_path / "t1.work"
    if out:
        shutil.copytree(ref, copy)
    shutil.copytree(ref.with_name(f"{ref.name}.work"), work)
    return copy, work


def test_an_out_that_is_another_runs_work_folder_is_refused_before_anything_is_removed(reference, tmp_path, capsys):
    """Out and its work folder carry the same marker, so the output guard let `--out t1.work` through, and the run
    replaced the work folder (its training state) with a pipeline."""
    from cli_helpers import run_cli

    from accvideo.core.outputs import mark_folder
    from accvideo.teacher.train import COMMAND

    out, work = _copy_run(reference, tmp_path)
    for folder in (out, work):  # as `accvideo teacher train --out t1` leaves them
        mark_folder(folder, COMMAND)
    before = _tree(work)
    args = ["--preset", "quick", "vae_base_dim=4", "vae_steps=4", "steps=7", "checkpoint_every=3"]
    code, _, err = run_cli(["teacher", "train", "--out", str(work), f"work={tmp_path / 't9.work'}", *args], capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert err.endswith(f"--out {work} is teacher t1's work folder; choose another --out\n"), err
    assert _tree(work) == before


def test_fewer_steps_than_the_work_folders_state_are_refused(reference, tmp_path):
    """With the teacher gone (or a run stopped before its end), fewer steps than the saved state's finished at the
    state's step and recorded the asked steps."""
    from accvideo.errors import AccVideoError

    out, work = _copy_run(reference, tmp_path, out=False)
    before = _tree(work)
    fewer = quick_config(vae_base_dim=4, vae_steps=4, steps=5, checkpoint_every=3)
    with pytest.raises(AccVideoError, match=r"holds transformer step 7; steps=5 would go back .* give steps=7 or more"):
        train_teacher(fewer, out, work)
    assert _tree(work) == before and not out.exists()
    fewer_vae = quick_config(vae_base_dim=4, vae_steps=4, steps=7, checkpoint_every=3)
    (work / "vae.safetensors").unlink()
    state = torch.load(work / "vae_state.pt", weights_only=True)
    torch.save({**state, "step": 9}, work / "vae_state.pt")
    with pytest.raises(AccVideoError, match=r"holds VAE step 9; vae_steps=4 would go back"):
        train_teacher(fewer_vae, out, work)


@pytest.mark.parametrize("damage", ["missing", "a-folder"])
def test_a_work_folder_without_its_settings_record_is_refused(damage, reference, tmp_path):
    """config.yaml gone: the settings were not checked, and other settings trained on the old clips and states."""
    from accvideo.errors import AccVideoError

    out, work = _copy_run(reference, tmp_path, out=False)
    (work / "config.yaml").unlink()
    if damage == "a-folder":
        (work / "config.yaml").mkdir()
    other = quick_config(vae_base_dim=4, vae_steps=4, steps=8, checkpoint_every=3, dataset_size=16)
    with pytest.raises(AccVideoError, match=r"no readable settings record .*restore its config.yaml, or delete .*"):
        train_teacher(other, out, work)
    assert not out.exists()


def _garble(work, how):
    from safetensors.torch import save_file

    lat = work / "latents.safetensors"
    data, ckpt = load_file(str(lat)), work / "transformer_state.pt"
    state = torch.load(ckpt, weights_only=True)
    if how == "no-metadata":
        save_file(data, str(lat))
    elif how == "one-caption":
        save_file(data, str(lat), metadata={"captions": json.dumps(["a"])})
    elif how == "no-caption-ids":
        save_file({"latents": data["latents"]}, str(lat), metadata={"captions": json.dumps(["a"])})
    elif how == "4-channels":
        save_file({**data, "latents": data["latents"][:, :4].contiguous()}, str(lat), metadata={"captions": "[]"})
    elif how == "state-a":
        torch.save({"a": 1}, ckpt)
    elif how == "state-no-gen":
        torch.save({k: v for k, v in state.items() if k != "gen"}, ckpt)
    elif how == "state-step-x":
        torch.save({**state, "step": "x"}, ckpt)
    elif how == "state-other-model":
        torch.save({**state, "model": {"a": torch.zeros(1)}}, ckpt)


@pytest.mark.parametrize(
    "how",
    ["no-metadata", "one-caption", "no-caption-ids", "4-channels", "state-a", "state-no-gen", "state-step-x"]
    + ["state-other-model"],
)
def test_garbled_work_files_are_one_line(how, reference, tmp_path):
    from accvideo.errors import AccVideoError

    out, work = _copy_run(reference, tmp_path, out=False)
    _garble(work, how)
    fix = "redo the phase" if how.startswith("state") else "encode the clips again"
    with pytest.raises(AccVideoError, match=rf"^{work}/\S+ .*delete it to {fix}$"):
        train_teacher(CFG, out, work)


@pytest.mark.parametrize("damage", ["no-model-index", "truncated-weights"])
def test_a_damaged_teacher_is_rebuilt_not_called_done(damage, reference, tmp_path):
    """The rerun looked only at the record and said nothing to do."""
    from accvideo.teacher.train import finished_teacher

    out, work = _copy_run(reference, tmp_path)
    if damage == "no-model-index":
        (out / "model_index.json").unlink()
    else:
        weights = out / "transformer" / "diffusion_pytorch_model.safetensors"
        weights.write_bytes(weights.read_bytes()[:-100])
    assert finished_teacher(CFG, out) is None
    train_teacher(CFG, out, work)
    ref, res = _weights(reference[0]), _weights(out)
    assert ref.keys() == res.keys() and all(torch.equal(ref[k], res[k]) for k in ref)
    assert finished_teacher(CFG, out) is not None


def test_a_work_folder_of_other_settings_names_work_as_the_fix_when_work_was_given(reference, tmp_path, capsys):
    """Was: `work=W` holding another run's state said "use another --out", which changes nothing (W is still used)."""
    from cli_helpers import run_cli

    _, work = _copy_run(reference, tmp_path, out=False)
    before = _tree(work)
    args = ["--preset", "quick", "vae_base_dim=4", "vae_steps=4", "steps=7", "checkpoint_every=3", "seed=1"]
    code, _, err = run_cli(["teacher", "train", "--out", str(tmp_path / "new"), f"work={work}", *args], capsys)
    assert code == 2 and err.count("\n") == 1 and "seed=0, not 1; use another work= (or --out" in err, err
    assert _tree(work) == before and not (tmp_path / "new").exists()  # was: a new --out left behind
    code, _, err = run_cli(["teacher", "train", "--out", str(tmp_path / "t1"), *args], capsys)  # work: t1.work
    assert code == 2 and "seed=0, not 1; use another --out, or the run's settings" in err, err
