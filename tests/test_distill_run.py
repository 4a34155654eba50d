"""`accvideo distill` end to end: outputs, SIGKILL + resume, NaN stop, refused input, sampling the student."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from cli_helpers import run_cli

from accvideo.core.tensorfile import FILE_MODE
from accvideo.distill import losses
from accvideo.distill.lora import targeted_rank, targets_for
from accvideo.distill.plots import read_losses
from accvideo.distill.trainer import ONE_STEP_NOTE
from accvideo.errors import AccVideoError
from accvideo.synthesize import SynVidDataset

QUICK = ["batch=2", "lr=1e-4", "head_lr=1e-4", "head_channels=8", "device=cpu", "checkpoint_every=1"]


def distill_args(teacher, data, out, *extra):
    return ["distill", "--teacher", str(teacher), "--data", str(data), "--out", str(out), *QUICK, *extra]


def losses_of(run):
    return [(r["iteration"], r["samples"], r["traj_k"], r["g_k"], r["d_k"]) for r in read_losses(run / "losses.jsonl")]


def test_distill_writes_run_folder_and_sample_uses_the_key_sigmas(tiny_wan_dir, synvid, tmp_path, capsys):
    run = tmp_path / "run"
    code, out, err = run_cli(distill_args(tiny_wan_dir, synvid, run, "iterations=2", "lora_rank=2"), capsys)
    assert code in (0, None), err
    assert "5-step student" in out and ONE_STEP_NOTE not in out
    assert not (run / ".accvideo-lock").exists()  # held while it ran, released at the end
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["lora_rank"] == 2 and cfg["iterations"] == 2 and cfg["key_steps"] == 5
    assert cfg["feature_blocks"] == [1, 2, 2, 2, 2]  # 3 blocks: two thirds for t'_0, the last otherwise
    records = read_losses(run / "losses.jsonl")
    assert [r["iteration"] for r in records] == [1, 2] and records[-1]["samples"] == 2 * 5 * 2
    assert (run / "losses.png").read_bytes()[:4] == b"\x89PNG"
    info = json.loads((run / "student" / "student.json").read_text())
    assert info["key_sigmas"][0] == 1.0 and info["key_sigmas"][-1] == 0.0 and len(info["key_sigmas"]) == 6
    lora = (run / "student" / "pytorch_lora_weights.safetensors").read_bytes()  # was: diffusers' mode 600, hash order
    assert (run / "student" / "pytorch_lora_weights.safetensors").stat().st_mode & 0o777 == FILE_MODE
    meta = json.loads(lora[8 : 8 + int.from_bytes(lora[:8], "little")])["__metadata__"]
    assert list(meta) == sorted(meta) == ["format", "lora_adapter_metadata"]

    clip = tmp_path / "clip.mp4"
    code, out, err = run_cli(
        ["sample", "--model", str(run), "--frames", "9", "--size", "32x32", "--out", str(clip)], capsys
    )
    assert code in (0, None), err
    settings = yaml.safe_load(clip.with_suffix(".yaml").read_text())
    assert settings["resolved_steps"] == 5 and settings["resolved_guidance"] == 1.0
    assert settings["sigmas"] == pytest.approx(info["key_sigmas"], abs=1e-6)
    assert settings["model_dir"] == str(tiny_wan_dir.resolve())
    assert settings["student_iteration"] == info["iteration"] > 0  # which save of the run made the clip

    # evaluate samples a student the same way: its key sigmas, no CFG
    code, out, err = run_cli(
        ["evaluate", "--model", str(run), "--prompts", "2", "--video-format", "none", "--out", str(tmp_path / "eval")],
        capsys,
    )
    assert code in (0, None), err
    source = json.loads((tmp_path / "eval" / "metrics.json").read_text())["source"]
    assert source["steps"] == 5 and source["guidance"] == 1.0
    assert source["sigmas"] == pytest.approx(info["key_sigmas"], abs=1e-6)
    assert source["student_dir"] == str(run / "student") and source["student_iteration"] == info["iteration"]


def stopped_beside_a_whole_run(teacher, data, tmp_path, settings, sig, after):
    """Start two equal runs, `whole` and `stopped`; send `sig` to `stopped` once `after` iterations are logged, and
    return (its process once ended, its stderr, a function that reruns it and checks that both end equal). One
    thread each: each has a core, and float reductions happen in the same order in every run."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    cmd = {
        out: [sys.executable, "-m", "accvideo", *distill_args(teacher, data, out, *settings)]
        for out in (whole, stopped)
    }
    whole_proc = subprocess.Popen(cmd[whole], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    proc = subprocess.Popen(cmd[stopped], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while len(read_losses(stopped / "losses.jsonl")) < after and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(sig)
    err = proc.communicate(timeout=120)[1]

    def rerun_equals_whole() -> dict:
        resumed = subprocess.run(cmd[stopped], check=False, capture_output=True, text=True, env=env, timeout=300)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        whole_err = whole_proc.communicate(timeout=300)[1]
        assert whole_proc.returncode == 0, whole_err[-2000:]
        assert losses_of(stopped) == losses_of(whole)  # every loss of every key step, bit for bit
        a = torch.load(whole / "checkpoint.pt", weights_only=True)
        b = torch.load(stopped / "checkpoint.pt", weights_only=True)
        assert a["samples"] == b["samples"]
        for name, t in a["student"].items():
            assert torch.equal(t, b["student"][name]), name
        return b

    return proc, err, rerun_equals_whole


def test_sigkill_then_resume_reproduces_an_uninterrupted_run(tiny_wan_dir, synvid, tmp_path, capsys):
    # LoRA: its initialisation must come from the run's seed too (the two runs live in different processes)
    iterations = ("iterations=8", "lora_rank=2")
    proc, _, rerun_equals_whole = stopped_beside_a_whole_run(
        tiny_wan_dir, synvid, tmp_path, iterations, signal.SIGKILL, after=3
    )
    killed = tmp_path / "stopped"
    assert proc.returncode == -signal.SIGKILL  # killed, not finished
    saved = torch.load(killed / "checkpoint.pt", weights_only=True)
    assert 1 <= saved["iteration"] < 8
    assert (killed / ".accvideo-lock").read_text().endswith(f"-{proc.pid}")  # the dead writer's lock: taken over
    assert rerun_equals_whole()["samples"] == 8 * 5 * 2

    # a resumed run must keep its settings
    code, _, err = run_cli(distill_args(tiny_wan_dir, synvid, killed, *iterations, "lambda_adv=0.5"), capsys)
    assert code == 2 and err.count("\n") == 1 and "lambda_adv=0.1" in err and "another --out" in err


def test_a_signal_saves_the_iteration_under_way_and_the_rerun_goes_on_from_it(tiny_wan_dir, synvid, tmp_path):
    """SIGTERM (torchrun stopping its workers, a cluster preempting a job; Ctrl-C takes the same path): the run
    saves after the iteration under way and stops with one line; with checkpoint_every=100 it used to lose them all
    (SIGTERM ended it at once, with no line)."""
    settings = ("iterations=8", "checkpoint_every=100")
    proc, err, rerun_equals_whole = stopped_beside_a_whole_run(
        tiny_wan_dir, synvid, tmp_path, settings, signal.SIGTERM, after=2
    )
    stopped = tmp_path / "stopped"
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]  # 143, as a shell reports a process SIGTERM ended
    saved = torch.load(stopped / "checkpoint.pt", weights_only=True)["iteration"]
    assert 2 <= saved < 8 and len(read_losses(stopped / "losses.jsonl")) == saved
    assert err.splitlines()[-1] == (
        f"interrupted (SIGTERM) at iteration {saved} of 8, which is saved in {stopped}; "
        "rerun the same command to resume"
    )
    assert "Traceback" not in err and not (stopped / ".accvideo-lock").exists()
    rerun_equals_whole()  # the saved iteration is where the rerun went on, bit for bit


def test_nan_loss_stops_with_one_line_and_keeps_the_last_checkpoint(
    tiny_wan_dir, synvid, tmp_path, capsys, monkeypatch
):
    calls = {"n": 0}
    real = losses.discriminator_loss

    def poisoned(*args, **kw):  # 5 key steps per iteration: the 13th call is in iteration 3
        calls["n"] += 1
        value = real(*args, **kw)
        return value * float("nan") if calls["n"] == 13 else value

    monkeypatch.setattr(losses, "discriminator_loss", poisoned)
    run = tmp_path / "run"
    code, _, err = run_cli(distill_args(tiny_wan_dir, synvid, run, "iterations=5"), capsys)
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 2 and len(errors) == 1 and err.rstrip().endswith(errors[0]) and "Traceback" not in err, err
    assert (
        errors[0].startswith("error: loss L_D nan at iteration 3") and "checkpoint (iteration 2) is kept" in errors[0]
    )
    assert errors[0].endswith("rerun the same command to resume from it")
    saved = torch.load(run / "checkpoint.pt", weights_only=True)
    assert saved["iteration"] == 2
    assert all(torch.isfinite(t).all() for t in saved["student"].values())
    assert [r["iteration"] for r in read_losses(run / "losses.jsonl")] == [1, 2]
    # with no checkpoint yet there is nothing to resume from (was: "... to resume from it" all the same)
    calls["n"] = 0
    code, _, err = run_cli(
        distill_args(tiny_wan_dir, synvid, tmp_path / "early", "iterations=5", "checkpoint_every=4"), capsys
    )
    assert code == 2 and "no checkpoint yet" in err and err.rstrip().endswith("rerun the same command to start again")


def test_a_one_step_student_with_the_adversarial_stage_is_told_what_was_measured(
    tiny_wan_dir, synvid, tmp_path, capsys
):
    settings = SynVidDataset(synvid).settings
    ends = f"key_sigmas=[{settings.sigmas[settings.key_indices[0]]}, {settings.sigmas[settings.key_indices[-1]]}]"
    for adv, told in (("adv=true", True), ("adv=false", False)):
        code, out, err = run_cli(distill_args(tiny_wan_dir, synvid, tmp_path / adv, "iterations=1", ends, adv), capsys)
        assert code in (0, None), err
        assert "1-step full student" in out and (ONE_STEP_NOTE in out) == told


def test_a_dataset_with_a_shard_gone_trains_on_the_rest_and_says_so(tiny_wan_dir, synvid, tmp_path, capsys):
    data = tmp_path / "syn"
    shutil.copytree(synvid, data)
    shards = sorted(data.glob("shard-*.safetensors"))
    assert SynVidDataset(data).missing == 0 and len(shards) == 2
    shards[0].unlink()  # items 0..4 gone, 5..9 kept
    with pytest.warns(UserWarning, match=r"lacks 5 of items 0\.\.9 .* training on the 5 it holds") as seen:
        code, _, err = run_cli(distill_args(tiny_wan_dir, data, tmp_path / "run", "iterations=1"), capsys)
    assert code in (0, None), err
    assert len([w for w in seen if "lacks" in str(w.message)]) == 1


def test_a_dataset_whose_synthesize_stopped_early_says_what_it_lacks(synvid, tmp_path):
    """Items past the last one held (a synthesize interrupted after its first shards) went unsaid: synvid.yaml,
    written as synthesize starts, holds the prompt list's length."""
    data = tmp_path / "syn"
    shutil.copytree(synvid, data)
    sorted(data.glob("shard-*.safetensors"))[-1].unlink()  # items 5..9 never written
    assert SynVidDataset(data).missing_line().startswith(f"{data} lacks 5 of items 0..9 (a shard deleted, or a ")
    (data / "synvid.yaml").unlink()  # the shards alone cannot tell
    assert SynVidDataset(data).missing == 0


def test_a_finished_runs_rerun_replaces_a_stale_or_damaged_student(tiny_wan_dir, synvid, tmp_path, capsys):
    """A kill between the last checkpoint and the export leaves the previous save's student: the rerun, with nothing
    to train, exports the checkpoint's (it used to see student/ and stop); likewise a file deleted since."""
    from safetensors.torch import load_file

    run = tmp_path / "run"

    def distill(iterations):
        code, _, err = run_cli(distill_args(tiny_wan_dir, synvid, run, f"iterations={iterations}"), capsys)
        assert code in (0, None), err

    def student():
        info = json.loads((run / "student" / "student.json").read_text())
        return info["iteration"], load_file(str(next((run / "student" / "transformer").glob("*.safetensors"))))

    distill(1)
    stale = shutil.copytree(run / "student", tmp_path / "stale")
    distill(2)
    want = student()
    assert want[0] == 2
    shutil.rmtree(run / "student")  # the kill window: checkpoint 2 written, its export and plot not yet
    shutil.copytree(stale, run / "student")
    (run / "losses.png").unlink()
    for damage in (None, "student.json"):
        if damage:
            (run / "student" / damage).unlink()
        distill(2)
        got = student()
        assert got[0] == 2 and got[1].keys() == want[1].keys()
        assert all(torch.equal(got[1][k], want[1][k]) for k in want[1]) and (run / "losses.png").is_file()


def test_a_resume_needs_the_dataset_it_trained_on_and_cannot_go_back(tiny_wan_dir, synvid, tmp_path, capsys):
    """Was: `data` may change on resume (a path), and nothing checked what the new path held, so iterations 1-2 trained
    on one dataset and 3 on another; `iterations` below the checkpoint's was written to config.yaml as if trained."""
    run, moved, part = tmp_path / "run", shutil.copytree(synvid, tmp_path / "moved"), tmp_path / "part"
    shutil.copytree(synvid, part)
    sorted(part.glob("shard-*.safetensors"))[0].unlink()

    def distill(data, iterations):
        return run_cli(distill_args(tiny_wan_dir, data, run, f"iterations={iterations}"), capsys)

    code, _, err = distill(synvid, 2)
    assert code in (0, None), err
    summary = json.loads((run / "summary.json").read_text())
    files = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    mtimes = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    for data, iterations, message in (
        (part, 3, r"was trained on another dataset \(10 items\) than .* holds \(5 items"),
        (synvid, 1, "is at iteration 2, past iterations=1; a run cannot go back"),
    ):
        with pytest.warns(UserWarning) if data == part else contextlib.nullcontext():
            code, _, err = distill(data, iterations)
        assert code == 2 and len(err.strip().splitlines()) == 1 and re.search(message, err), err
        assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == files  # nothing rewritten
    # the same dataset moved elsewhere is the same dataset; a finished run's rerun rewrites nothing (was: summary.json
    # with the idle pass's seconds, config.yaml and losses.jsonl written again)
    code, _, err = distill(moved, 2)
    assert code in (0, None), err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == files
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == mtimes
    again = json.loads((run / "summary.json").read_text())
    assert summary["samples_per_s"] is not None and summary["save_seconds"] > 0  # the last save's seconds
    for key in ("samples_per_s", "peak_memory_mb", "save_seconds"):
        assert again[key] == summary[key]
    assert SynVidDataset(moved).identity == SynVidDataset(synvid).identity != SynVidDataset(part).identity


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is not None, reason="tensorboard is installed")
def test_tensorboard_without_its_package_is_refused_before_anything_is_written(tiny_wan_dir, synvid, tmp_path, capsys):
    code, _, err = run_cli(distill_args(tiny_wan_dir, synvid, tmp_path / "run", "tensorboard=true"), capsys)
    assert code == 2 and "pip install tensorboard" in err
    assert not (tmp_path / "run").exists()  # was: config.yaml (tensorboard: true) and an empty losses.jsonl


def test_refused_input_is_one_line_with_exit_2(tiny_wan_dir, synvid, tmp_path, capsys):
    other = tmp_path / "other-teacher"  # the same files but one setting: another teacher identity
    shutil.copytree(tiny_wan_dir, other)
    sched = other / "scheduler" / "scheduler_config.json"
    sched.write_text(sched.read_text().replace('"shift": 5.0', '"shift": 3.0'))
    changed = shutil.copytree(synvid, tmp_path / "syn-of-other")  # made from `other`, which changed in place since
    (changed / "synvid.yaml").write_text((changed / "synvid.yaml").read_text().replace(str(tiny_wan_dir), str(other)))
    cases = [
        (distill_args(other, synvid, tmp_path / "a"), "was made by teacher"),
        (distill_args(other, changed, tmp_path / "a2"), f"and {other}, the folder it was made from, now holds another"),
        (distill_args(tiny_wan_dir, synvid, tmp_path / "b", "key_sigmas=[1.0,0.5,0.0]"), "key steps are sigma"),
        (distill_args(tiny_wan_dir, tmp_path / "missing", tmp_path / "c"), "does not exist"),
        (distill_args(tiny_wan_dir, synvid, tmp_path / "d", "lerning_rate=1"), "lerning_rate"),
        (distill_args(tiny_wan_dir, synvid, tmp_path / "e", "micro_batch=3"), "micro_batch must divide"),
        (distill_args(tiny_wan_dir, synvid, tmp_path / "f", "feature_blocks=[0,1]"), "feature_blocks needs 5"),
    ]
    for args, message in cases:
        code, _, err = run_cli(args, capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert not (tmp_path / "a" / "checkpoint.pt").exists()


def test_a_second_signal_mid_save_leaves_no_hidden_student_or_plot(tmp_path, monkeypatch):
    """The second Ctrl-C stops at once, also while the student or the loss plot is being written: what was being
    written goes (it used to stay as .student.part, a whole student's size, and .losses.part.png)."""
    from types import SimpleNamespace

    import matplotlib.figure

    import accvideo.distill.student as student
    from accvideo.distill.plots import plot_losses

    def half_then_ctrl_c(module, state, folder):
        folder.mkdir()
        (folder / "diffusion_pytorch_model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(student, "_save_transformer", half_then_ctrl_c)
    pair = SimpleNamespace(module=torch.nn.Linear(1, 1), teacher=SimpleNamespace(family="wan"))
    with pytest.raises(KeyboardInterrupt):
        student.export_student(
            tmp_path / "student",
            pair,
            key_sigmas=[1.0],
            teacher="t",
            teacher_dir=tmp_path,
            lora=None,
            extra={},
            state={},
        )

    def half_png(fig, path, **kw):
        path.write_bytes(b"\x89PNG half")
        raise KeyboardInterrupt

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", half_png)
    with pytest.raises(KeyboardInterrupt):
        plot_losses(read_losses(tmp_path / "none.jsonl"), tmp_path / "losses.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_save_keeps_the_teacher_copy_in_the_student_folder(tmp_path, monkeypatch):
    """`student/teacher/` is where `sample` and the teacher-is-gone line look for a moved teacher; every save
    replaced student/ whole and deleted it (the only copy when the teacher had been moved there), also the save that
    follows one stopped between its renames."""
    from types import SimpleNamespace

    import accvideo.distill.student as student

    def weights(module, state, folder):
        folder.mkdir()
        (folder / "diffusion_pytorch_model.safetensors").write_bytes(bytes([len(state)]))

    monkeypatch.setattr(student, "_save_transformer", weights)
    pair = SimpleNamespace(module=torch.nn.Linear(1, 1), teacher=SimpleNamespace(family="wan"))

    def save(n):
        state = {str(i): torch.zeros(1) for i in range(n)}
        kw = dict(key_sigmas=[1.0, 0.0], teacher="t", teacher_dir=tmp_path, lora=None, state=state)
        student.export_student(tmp_path / "student", pair, extra={"iteration": n}, **kw)

    save(1)
    teacher = tmp_path / "student" / "teacher"
    (teacher / "vae").mkdir(parents=True)
    (teacher / "model_index.json").write_text('{"_class_name": "WanPipeline"}')
    (teacher / "vae" / "w.bin").write_bytes(b"the only copy")
    save(2)
    assert (teacher / "vae" / "w.bin").read_bytes() == b"the only copy"
    assert (tmp_path / "student" / "transformer" / "diffusion_pytorch_model.safetensors").read_bytes() == bytes([2])
    os.replace(tmp_path / "student", tmp_path / ".student.old")  # a save stopped between its two renames
    save(3)
    assert (teacher / "vae" / "w.bin").read_bytes() == b"the only copy"
    assert json.loads((tmp_path / "student" / "student.json").read_text())["iteration"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student"]


def test_a_dataset_inside_the_runs_student_folder_is_refused(tiny_wan_dir, synvid, tmp_path, capsys):
    """Every save moves student/ aside: a SynVid there was deleted under the run reading it (exit 0)."""
    from accvideo.core.outputs import mark_folder

    data = tmp_path / "run" / "student" / "syn"
    shutil.copytree(synvid, data)
    mark_folder(tmp_path / "run", "distill")  # an earlier run's folder
    code, _, err = run_cli(distill_args(tiny_wan_dir, data, tmp_path / "run", "iterations=1"), capsys)
    assert code == 2 and err.count("\n") == 1 and f"--data {data.resolve()} lies inside" in err, err
    assert "which every save of this run replaces; move it outside" in err


@pytest.mark.parametrize("extra", [(), ("lora_rank=2", "ema=0.9")], ids=["full", "lora-ema"])
def test_the_disk_check_asks_for_no_more_than_a_save_writes(tiny_wan_dir, synvid, tmp_path, capsys, monkeypatch, extra):
    """The start refuses a run whose save cannot fit (hostile case a_run_whose_saves_cannot_fit_on_the_disk); its
    estimate must never exceed what a save really writes (a refusal would be wrong), and should be near it."""
    import accvideo.distill.state as distill_state

    asked = []
    monkeypatch.setattr(distill_state, "check_free_space", lambda _path, needed, *_a: asked.append(needed))
    run = tmp_path / "run"
    code, _, err = run_cli(distill_args(tiny_wan_dir, synvid, run, "iterations=1", *extra), capsys)
    assert code == 0, err
    from safetensors.torch import load_file

    from accvideo.core.files import state_bytes

    written = (run / "checkpoint.pt").stat().st_size + sum(p.stat().st_size for p in (run / "student").rglob("*"))
    saved = torch.load(run / "checkpoint.pt", weights_only=True)
    weights = state_bytes([saved[k] for k in ("student", "ema", "opt_student", "heads", "opt_heads") if k in saved])
    weights += sum(state_bytes(load_file(p)) for p in (run / "student").rglob("*.safetensors"))
    # the tensors it counts, to the byte (AdamW's step counters aside); RNG states, queues and headers are extra
    assert len(asked) == 1 and weights - 1024 <= asked[0] <= weights <= written, (asked, weights, written)


def test_a_signal_in_the_last_iteration_finishes_the_run_and_says_so(
    tiny_wan_dir, synvid, tmp_path, capsys, monkeypatch
):
    """It used to write the summary and end with a bare "interrupted (SIGTERM)" that did not say the run was
    complete, so a user could not tell it from one stopped midway."""
    from accvideo.core import interrupts
    from accvideo.distill.trainer import Distiller

    real = Distiller.train_iteration

    def signalled_in_the_last(self):
        if self.iteration == 2:  # iteration 3 of 3 is under way
            interrupts._record(signal.SIGTERM, None)  # what the handler does inside the loop: record, not raise
        return real(self)

    monkeypatch.setattr(Distiller, "train_iteration", signalled_in_the_last)
    run = tmp_path / "run"
    code, _, err = run_cli(distill_args(tiny_wan_dir, synvid, run, "iterations=3", "checkpoint_every=100"), capsys)
    assert code == 128 + signal.SIGTERM and "Traceback" not in err, err
    assert err.splitlines()[-1] == (
        f"interrupted (SIGTERM) during the last iteration, which finished: all 3 are saved in {run}; "
        "rerun the same command to go on from there"
    )
    assert torch.load(run / "checkpoint.pt", weights_only=True)["iteration"] == 3
    summary = json.loads((run / "summary.json").read_text())
    assert summary["iterations"] == 3 and summary["samples_per_s"] > 0  # the training's own rate, not a rerun's
    assert (run / "student" / "student.json").is_file() and not (run / ".accvideo-lock").exists()


@pytest.mark.parametrize("family", ["wan", "wan-i2v", "wan-a14b", "hunyuan"])
def test_what_the_checks_before_loading_read_from_the_configs_is_the_loaded_teachers(
    family, tiny_wan_dir, tiny_i2v_dir, tmp_path
):
    """Block count (feature_blocks), largest LoRA rank (lora_rank) and VAE geometry (--decoder), each read before the
    teacher loads, equal the loaded teacher's (Wan 2.2 TI2V's VAE geometry: test_wan_ti2v.py)."""
    from accvideo.models import adapter_class, load_adapter
    from accvideo.models.decoder import folder_geometry
    from accvideo.models.tiny import save_tiny_hunyuan, save_tiny_wan_a14b

    folder = {
        "wan": lambda: tiny_wan_dir,
        "wan-i2v": lambda: tiny_i2v_dir,
        "wan-a14b": lambda: save_tiny_wan_a14b(tmp_path / "a14b"),
        "hunyuan": lambda: save_tiny_hunyuan(tmp_path / "hy"),  # 1 dual-stream + 2 single-stream blocks
    }[family]()
    family_cls, loaded = adapter_class(folder), load_adapter(folder)
    count = family_cls.folder_num_blocks(folder)
    assert count == loaded.num_blocks and count == {"wan": 3, "hunyuan": 3}.get(family, count)
    # likewise the largest LoRA rank, from the transformer built on the meta device (the early lora_rank check)
    targets = targets_for(family_cls, None)
    empty = family_cls.folder_transformer(folder)
    assert all(p.is_meta for p in empty.parameters())
    assert targeted_rank(empty, targets) == targeted_rank(loaded.transformer, targets) == loaded.width
    assert folder_geometry(folder) == (loaded.latent_channels, loaded.temporal_factor, loaded.spatial_factor)


def test_a_transformer_class_diffusers_lacks_leaves_the_lora_rank_check_to_the_load(tiny_wan_dir, tmp_path):
    from accvideo.models import adapter_class

    folder = tmp_path / "own"
    shutil.copytree(tiny_wan_dir, folder)
    config = json.loads((folder / "transformer" / "config.json").read_text())
    (folder / "transformer" / "config.json").write_text(json.dumps({**config, "_class_name": "MyTransformer"}))
    assert adapter_class(tiny_wan_dir).folder_transformer(tiny_wan_dir) is not None
    assert adapter_class(folder).folder_transformer(folder) is None


FIX = "name layers by the end of their names (the default: to_q, to_k, to_v, to_out.0)"


@pytest.mark.parametrize(
    "targets, line",
    [
        ("[nope]", f"lora_targets ['nope'] match no module of the teacher's transformer; {FIX}"),
        (
            "[blocks]",
            f"lora_targets match blocks, a ModuleList, which a LoRA cannot wrap (Linear, Conv or Embedding "
            f"layers only); {FIX}",
        ),
        (
            "[to_out]",
            f"lora_targets match blocks.0.attn1.to_out, a ModuleList, which a LoRA cannot wrap (Linear, "
            f"Conv or Embedding layers only); {FIX}",
        ),
    ],
)
def test_lora_targets_that_name_no_wrappable_layer_are_refused_before_the_teacher_loads(
    targets, line, tiny_wan_dir, synvid, tmp_path, capsys, monkeypatch
):
    """peft refused them only after the teacher had loaded, in its words ("Target module ModuleList() is not
    supported", cut to its first line)."""
    import accvideo.distill.trainer as trainer

    def never(*a, **kw):
        raise AssertionError("loaded before the refusal")

    monkeypatch.setattr(trainer, "load_adapter", never)
    run = tmp_path / "run"
    code, _, err = run_cli(distill_args(tiny_wan_dir, synvid, run, "lora_rank=2", f"lora_targets={targets}"), capsys)
    assert code == 2 and err == f"error: {line}\n"
    assert not run.exists()


def test_a_convolution_is_a_lora_target(tiny_wan_dir, synvid, tmp_path, capsys):
    """The check lets through what peft wraps: the patch embedding (a Conv3d) trains as a LoRA."""
    run = tmp_path / "run"
    args = distill_args(tiny_wan_dir, synvid, run, "iterations=1", "lora_rank=2", "lora_targets=[patch_embedding]")
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    from safetensors.torch import load_file

    names = set(load_file(run / "student" / "pytorch_lora_weights.safetensors"))
    assert names and all(n.startswith("transformer.patch_embedding.lora_") for n in names), names


def test_a_lora_rank_past_every_layer_is_refused_before_the_teacher_loads(
    tiny_wan_dir, synvid, tmp_path, capsys, monkeypatch
):
    """The rank's bound needs the targeted layers' shapes: read from a transformer built on the meta device."""
    import accvideo.distill.trainer as trainer

    def never(*a, **kw):
        raise AssertionError("loaded before the refusal")

    monkeypatch.setattr(trainer, "load_adapter", never)
    config = json.loads((tiny_wan_dir / "transformer" / "config.json").read_text())
    width = config["num_attention_heads"] * config["attention_head_dim"]  # every attention projection: width x width
    run = tmp_path / "run"
    code, _, err = run_cli(distill_args(tiny_wan_dir, synvid, run, f"lora_rank={width + 1}"), capsys)
    assert code == 2 and err == (
        f"error: lora_rank {width + 1} exceeds the rank of every targeted layer (at most {width}); use a lora_rank "
        f"of at most {width}, or lora_rank=0 for a full student\n"
    )
    assert not run.exists()


def test_feature_blocks_outside_the_teacher_are_refused_before_it_loads(
    tiny_wan_dir, synvid, tmp_path, capsys, monkeypatch
):
    """The check came after loading the teacher (minutes at real size); it reads the count from config.json now."""
    import accvideo.distill.trainer as trainer

    def never(*a, **kw):
        raise AssertionError("loaded before the refusal")

    monkeypatch.setattr(trainer, "load_adapter", never)
    run = tmp_path / "run"
    code, _, err = run_cli(distill_args(tiny_wan_dir, synvid, run, "feature_blocks=[0,1,2,3,3]"), capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert err == (
        "error: feature_blocks needs 5 block indices (one per key step k = 0..4) within the teacher's 3 blocks; "
        "got [0, 1, 2, 3, 3]\n"
    )
    assert not run.exists()


def test_a_full_student_past_the_free_host_memory_is_refused_before_the_teacher_loads(
    tiny_wan, tiny_wan_dir, synvid, tmp_path, capsys, monkeypatch
):
    """The teacher fitted, the full student's float32 weights, gradients and AdamW moments (16 bytes a parameter)
    did not: the kernel killed the run without a word. A LoRA student is not refused."""
    import accvideo.distill.trainer as trainer

    numel = sum(p.numel() for p in tiny_wan.transformer.parameters())
    need = numel * 4 + numel * 16  # the float32 teacher's transformer, then the student's (ema=0 by default here)

    def loaded(*a, **kw):
        raise AccVideoError("loading")

    monkeypatch.setattr(trainer, "load_adapter", loaded)
    monkeypatch.setattr(trainer, "available_memory", lambda: need - 1)
    code, _, err = run_cli(distill_args(tiny_wan_dir, synvid, tmp_path / "run"), capsys)
    assert code == 2 and err.startswith(f"error: a full student of {tiny_wan_dir} on the CPU takes at least ")
    assert "distill a LoRA student (lora_rank=64" in err and not (tmp_path / "run").exists()
    code, _, err = run_cli(distill_args(tiny_wan_dir, synvid, tmp_path / "lora", "lora_rank=2"), capsys)
    assert code == 2 and err == "error: loading\n"
    monkeypatch.setattr(trainer, "available_memory", lambda: need)
    code, _, err = run_cli(distill_args(tiny_wan_dir, synvid, tmp_path / "fits"), capsys)
    assert code == 2 and err == "error: loading\n"


@pytest.mark.parametrize(
    "line", [b"[1, 2]", b"7", b'{"iteration": "one", "samples": 2}', b'{"iteration": 1}', b"\xff\xfe"]
)
def test_a_resume_over_a_losses_line_that_is_no_record_drops_it(line, tiny_wan_dir, synvid, tmp_path, capsys):
    """A line of losses.jsonl edited by hand (JSON that is no record, bytes that are no text) was a TypeError or
    UnicodeDecodeError traceback at the resume, after config.yaml had been rewritten."""
    run = tmp_path / "run"
    code, _, err = run_cli(distill_args(tiny_wan_dir, synvid, run, "iterations=1"), capsys)
    assert code in (0, None), err
    with (run / "losses.jsonl").open("ab") as f:
        f.write(line + b"\n")
    code, _, err = run_cli(distill_args(tiny_wan_dir, synvid, run, "iterations=2"), capsys)
    assert code in (0, None) and "Traceback" not in err, err
    assert [r["iteration"] for r in read_losses(run / "losses.jsonl")] == [1, 2]
    assert len((run / "losses.jsonl").read_bytes().splitlines()) == 2  # the resume's rewrite left the line out
    assert (run / "losses.png").stat().st_size > 0


def test_a_finished_run_rerun_at_another_path_says_it_kept_the_student_there(tiny_wan_dir, synvid, tmp_path, capsys):
    """A moved or copied finished run, rerun, said "wrote the 2-step student to OLD/student": it wrote nothing, and
    the path was the summary's, where the run had been."""
    first = tmp_path / "run"
    code, out, err = run_cli(distill_args(tiny_wan_dir, synvid, first, "iterations=1"), capsys)
    assert code in (0, None) and out.splitlines()[-1].startswith(f"wrote the 5-step student to {first}/student"), err
    moved = tmp_path / "moved"
    first.rename(moved)
    before = {p: p.read_bytes() for p in moved.rglob("*") if p.is_file()}
    code, out, err = run_cli(distill_args(tiny_wan_dir, synvid, moved, "iterations=1"), capsys)
    assert code in (0, None), err
    assert out.splitlines()[-1] == (
        f"kept the 5-step student in {moved}/student (1 iteration, 10 samples; losses in {moved}/losses.jsonl, "
        "losses.png); it had finished: raise iterations= to train on"
    )
    assert {p: p.read_bytes() for p in moved.rglob("*") if p.is_file()} == before


def test_a_finished_runs_rerun_with_the_teachers_new_folder_records_it(tiny_wan_dir, synvid, tmp_path, capsys):
    """A teacher moved after distilling: the rerun with its new folder kept student.json naming the old one, so
    `sample` and `export` said the teacher folder was gone. The rerun now saves the student again, naming the new
    folder, with the same weights."""
    from safetensors.torch import load_file

    run, moved = tmp_path / "run", tmp_path / "moved-teacher"
    code, _, err = run_cli(distill_args(tiny_wan_dir, synvid, run, "iterations=1"), capsys)
    assert code in (0, None), err

    def weights():
        return load_file(str(next((run / "student" / "transformer").glob("*.safetensors"))))

    before = weights()
    untouched = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != "student.json"}
    shutil.copytree(tiny_wan_dir, moved)
    code, out, err = run_cli(distill_args(moved, synvid, run, "iterations=1"), capsys)
    assert code in (0, None) and out.splitlines()[-1].startswith(f"kept the 5-step student in {run}/student"), err
    info = json.loads((run / "student" / "student.json").read_text())
    assert info["teacher_dir"] == str(moved.resolve()) and info["iteration"] == 1
    # only student.json changed: the training state is not saved again for one path (hundreds of GB at 14B)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != "student.json"} == untouched
    after = weights()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)


def test_what_a_damaged_lora_student_is_told_to_do_repairs_it(tiny_wan_dir, synvid, tmp_path, capsys):
    """The fixes the one-line errors name are true: a student.json that lost its teacher identity and a LoRA file
    of another rank are saved again by the distill command's rerun, and so is a file of other layers (which only the
    loaded teacher shows; its error says to remove it first, which older students need). Each is refused before and
    samples after, as it was saved."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from accvideo.models.identity import teacher_identity
    from accvideo.models.student import load_student

    run, student = tmp_path / "run", tmp_path / "run" / "student"
    lora = student / "pytorch_lora_weights.safetensors"

    def distill():
        code, _, err = run_cli(distill_args(tiny_wan_dir, synvid, run, "iterations=1", "lora_rank=2"), capsys)
        assert code in (0, None), err
        return {p.name: p.read_bytes() for p in student.iterdir()}

    def rewrite(edit):
        with safe_open(lora, "pt") as f:
            meta, tensors = f.metadata(), dict(edit({k: f.get_tensor(k) for k in f.keys()}))
        save_file(tensors, lora, metadata=meta)

    saved = distill()
    info = json.loads((student / "student.json").read_text())
    assert info["teacher"] == teacher_identity(tiny_wan_dir)
    damages = [
        (lambda: (student / "student.json").write_text(json.dumps({**info, "teacher": None})), "records no teacher"),
        (
            lambda: rewrite(lambda t: ((k, (v[:1] if "lora_A" in k else v[:, :1]).contiguous()) for k, v in t.items())),
            "rank-1",
        ),
        (lambda: rewrite(lambda t: ((k.replace("attn1", "attnX"), v) for k, v in t.items())), "lacks"),
    ]
    for damage, message in damages:
        damage()
        with pytest.raises(AccVideoError, match=message):
            load_student(student)
        # a file of other layers passes the header checks; it is not the file student.json's weights_identity
        # recorded, so the rerun saves it again too (students saved before that record: once removed, as it says)
        assert distill() == saved
        load_student(student)


def test_two_fresh_runs_save_the_same_global_generator(tiny_wan_dir, synvid, tmp_path, capsys):
    """The checkpoint keeps the global torch generator (for code that draws from it); it was whatever the process
    had drawn before, so two fresh runs of one setting saved different checkpoints. It starts from the run's seed."""
    saved = []
    for name in ("a", "b"):
        torch.rand(3)  # the process drew before the run (another run, a user's script)
        code, _, err = run_cli(distill_args(tiny_wan_dir, synvid, tmp_path / name, "iterations=1"), capsys)
        assert code in (0, None), err
        saved.append(torch.load(tmp_path / name / "checkpoint.pt", weights_only=True)["torch_rng"])
    assert torch.equal(saved[0], saved[1])
    assert torch.equal(saved[0], torch.random.manual_seed(0).get_state())  # the default seed=0's state


class _Stopped(Exception):
    """A kill stood in for: raised between two writes of a save."""


@pytest.mark.parametrize("after", [True, False], ids=["after-the-student", "before-the-student"])
def test_a_kill_inside_the_last_save_leaves_a_rerun_equal_to_an_unbroken_run(
    after, tiny_wan_dir, synvid, tmp_path, capsys, monkeypatch
):
    """A run stopped between the last save's writes, its student written and its loss plot not (the plot was drawn
    after the student): the rerun took the student as current and kept the plot of the save before. The plot is
    drawn first now, and student.json, written last, says the save is whole."""
    import accvideo.distill.state as state

    ref, run = tmp_path / "ref", tmp_path / "run"
    code, _, err = run_cli([*distill_args(tiny_wan_dir, synvid, ref), "iterations=2"], capsys)
    assert code in (0, None), err
    real = state.export_student

    def stop_at_the_last(folder, *args, **kw):
        if kw["extra"]["iteration"] == 2:
            if after:
                real(folder, *args, **kw)
            raise _Stopped
        return real(folder, *args, **kw)

    monkeypatch.setattr(state, "export_student", stop_at_the_last)
    with pytest.raises(_Stopped):
        run_cli([*distill_args(tiny_wan_dir, synvid, run), "iterations=2"], capsys)
    monkeypatch.setattr(state, "export_student", real)
    code, _, err = run_cli([*distill_args(tiny_wan_dir, synvid, run), "iterations=2"], capsys)
    assert code in (0, None), err
    assert (run / "losses.png").read_bytes() == (ref / "losses.png").read_bytes()
    weights = "student/transformer/diffusion_pytorch_model.safetensors"
    assert (run / weights).read_bytes() == (ref / weights).read_bytes()
    ours, theirs = (
        {k: v for k, v in json.loads((r / "student" / "student.json").read_text()).items() if k != "teacher_dir"}
        for r in (run, ref)
    )
    assert ours == theirs and ours["iteration"] == 2


def test_a_finished_run_saved_again_keeps_its_global_generator(tiny_wan_dir, synvid, tmp_path, capsys):
    """A finished run whose artifact is not current (its loss plot gone; or a kill inside the last save) is saved
    again on rerun. Checking its student built the transformer its config.json describes, on the meta device, but
    Wan's scale_shift_table is made by torch.randn first: the checkpoint saved again held the global generator 3,328
    draws on (found by benchmarks/kill_sweep.py). Checking a folder now leaves the generator as it was."""
    from accvideo.distill.checkpoint import NAME, load_checkpoint

    run = tmp_path / "run"
    code, _, err = run_cli([*distill_args(tiny_wan_dir, synvid, run), "iterations=2"], capsys)
    assert code in (0, None), err
    before = load_checkpoint(run / NAME)["torch_rng"]
    (run / "losses.png").unlink()
    (run / "summary.json").unlink()
    code, _, err = run_cli([*distill_args(tiny_wan_dir, synvid, run), "iterations=2"], capsys)
    assert code in (0, None) and (run / "losses.png").is_file(), err
    assert torch.equal(load_checkpoint(run / NAME)["torch_rng"], before)
