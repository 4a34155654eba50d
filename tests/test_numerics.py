"""Numerical failures end in one line naming the fix (exit code 2), never in a silent wrong result or a traceback:
NaN or infinite weights, data and gradients, and settings that make training diverge."""

from __future__ import annotations

import json
import math
import re
import shutil
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from cli_helpers import run_cli
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from accvideo.errors import AccVideoError
from accvideo.models.base import vae_video
from accvideo.synthesize.identity import tensor_sha256

SMALL = ["--steps", "2", "--frames", "5", "--size", "32x32", "--device", "cpu"]
DISTILL = ["batch=2", "head_channels=8", "device=cpu", "probe_every=0", "checkpoint_every=1"]
DECODER = ["--device", "cpu", "width=16", "depth=1", "holdout=2", "batch=2", "checkpoint_every=1"]


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def poisoned(src: Path, dst: Path, component: str, tensor: str, value: float) -> Path:
    """A copy of the model folder `src` with one tensor of one component filled with `value`."""
    shutil.copytree(src, dst)
    path = next((dst / component).glob("*.safetensors"))
    weights = load_file(path)
    weights[tensor] = torch.full_like(weights[tensor], value)
    save_file(weights, path, metadata={"format": "pt"})
    return dst


def rewritten_synvid(src: Path, dst: Path, change) -> Path:
    """A copy of a SynVid whose latents are `change(latents)`, digests recomputed: shards a writer made so."""
    shutil.copytree(src, dst)
    for path in sorted(dst.glob("shard-*.safetensors")):
        with safe_open(str(path), "pt") as f:
            meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
        key = next(iter(meta))
        header = json.loads(meta[key])
        for name in tensors:
            if name.endswith("/latents"):
                tensors[name] = change(tensors[name])
                header["sha256"][name] = tensor_sha256(tensors[name])
        save_file(tensors, path, metadata={key: json.dumps(header, sort_keys=True, ensure_ascii=False)})
    return dst


def finite_weights(folder: Path) -> bool:
    return all(
        torch.isfinite(t).all()
        for f in folder.rglob("*.safetensors")
        for t in load_file(f).values()
        if t.is_floating_point()
    )


# --- a damaged VAE: its NaN frames were written as black clips, SynVid videos and scores, exit code 0 -------------


@pytest.mark.parametrize("verb", ["sample", "synthesize"])
def test_a_vae_of_nan_weights_writes_no_clip(verb, tiny_wan_dir, tmp_path, capsys):
    model = poisoned(tiny_wan_dir, tmp_path / "model", "vae", "post_quant_conv.weight", math.nan)
    if verb == "sample":
        args = ["sample", "--model", str(model), "--prompt", "a dog", *SMALL, "--out", str(tmp_path / "c.mp4")]
    else:
        (tmp_path / "p.txt").write_text("a dog\n")
        args = ["synthesize", "--teacher", str(model), "--prompts", str(tmp_path / "p.txt"), *SMALL, "--key-steps"]
        args += ["2", "--videos", "--out", str(tmp_path / "syn")]
    code, _, err = run_cli(args, capsys)
    line = one_error_line(err)
    assert code == 2 and "the VAE decoded NaN or infinite values" in line and "vae/ folder" in line
    assert not list(tmp_path.rglob("*.mp4")) and not list(tmp_path.rglob("shard-*"))


def test_vae_frames_of_infinite_values_are_refused_before_the_clamp_makes_them_white():
    raw = torch.zeros(1, 3, 1, 2, 2)
    assert vae_video(raw).shape == (1, 1, 2, 2, 3) and float(vae_video(raw).max()) == 0.5
    raw[0, 0, 0, 0, 0] = math.inf  # clamped, it was one white pixel
    with pytest.raises(AccVideoError, match=r"NaN or infinite values .*\(float32\); check the weights"):
        vae_video(raw)
    with pytest.raises(AccVideoError, match=r"\(float16\); decode in float32 \(--dtype float32\)"):
        vae_video(raw.half())


# --- SynVid latents no trajectory holds ------------------------------------------------------------------------------


def test_a_synvid_of_nan_latents_is_refused_naming_the_shard(tiny_wan_dir, synvid, tmp_path, capsys):
    data = rewritten_synvid(synvid, tmp_path / "nan", lambda x: torch.full_like(x, math.nan))
    args = ["distill", "--teacher", str(tiny_wan_dir), "--data", str(data), "--out", str(tmp_path / "run")]
    code, _, err = run_cli([*args, "iterations=1", *DISTILL], capsys)
    line = one_error_line(err)
    assert code == 2 and "shard-000000.safetensors: tensor 0/latents holds NaN or infinite values" in line
    assert "lower lr" not in line  # it was: loss L_traj nan ...; lower lr, which changed nothing


def test_latents_too_large_for_the_transformer_are_not_blamed_on_the_learning_rate(
    tiny_wan_dir, synvid, tmp_path, capsys
):
    data = rewritten_synvid(synvid, tmp_path / "huge", lambda x: x * 1e30)  # finite: every digest and check passes
    args = ["distill", "--teacher", str(tiny_wan_dir), "--data", str(data), "--out", str(tmp_path / "run")]
    code, _, err = run_cli([*args, "iterations=1", *DISTILL], capsys)
    line = one_error_line(err)
    assert code == 2 and "at iteration 1: stopped without saving, before any update" in line
    assert "no learning rate caused it" in line and str(data) in line


# --- training that diverges: stopped before a NaN step, never saved as a checkpoint, student or teacher -------------


def test_distill_stops_on_a_nan_gradient_of_a_finite_loss_before_saving_a_nan_student(
    tiny_wan_dir, synvid, tmp_path, capsys
):
    run = tmp_path / "run"
    args = ["distill", "--teacher", str(tiny_wan_dir), "--data", str(synvid), "--out", str(run), *DISTILL]
    # one key step: the iteration's last student step is L_traj + lambda_adv * L_G's, whose gradient overflows while
    # both losses stay finite; the run used to save that NaN student with exit code 0
    code, _, err = run_cli([*args, "iterations=1", "key_sigmas=[1.0,0.0]", "adv_warmup=0", "lambda_adv=1e300"], capsys)
    line = one_error_line(err)
    assert code == 2 and "a gradient of the student nan at iteration 1" in line
    assert "lower lambda_adv (now 1e+300)" in line
    assert not (run / "student").exists() and not (run / "checkpoint.pt").exists()


def test_teacher_train_diverged_writes_no_teacher(tmp_path, capsys, monkeypatch):
    import accvideo.teacher.train as teacher_train

    calls, real = {"n": 0}, teacher_train.flow_loss

    def diverging(*args, **kw):  # the transformer's second step: a loss gone NaN, as a too-large lr makes it
        calls["n"] += 1
        return real(*args, **kw) * (math.nan if calls["n"] >= 2 else 1)

    monkeypatch.setattr(teacher_train, "flow_loss", diverging)
    out = tmp_path / "teacher"
    code, _, err = run_cli(["teacher", "train", "--preset", "quick", "--out", str(out), "--device", "cpu"], capsys)
    line = one_error_line(err)  # it wrote a teacher of NaN weights with exit code 0 (final_loss nan)
    assert code == 2 and "teacher transformer diverged at step 2 (loss nan" in line and "lower lr (now 0.001)" in line
    assert "and another --out (a work folder" in line
    assert not (out / "model_index.json").exists() and not list(out.rglob("*.safetensors"))

    # with work= given, another --out alone reuses that work folder: the line names work= (it said "another --out")
    calls["n"] = 0
    args = ["teacher", "train", "--preset", "quick", "--out", str(tmp_path / "t2"), "work=" + str(tmp_path / "w")]
    code, _, err = run_cli([*args, "--device", "cpu"], capsys)
    line = one_error_line(err)
    assert code == 2 and "diverged at step 2" in line and "lower lr (now 0.001) and another work= (or --out" in line


def test_decoder_distill_diverged_keeps_its_checkpoint_and_resumes_with_a_lower_lr(
    tiny_wan_dir, synvid, tmp_path, capsys
):
    out = tmp_path / "dec"
    args = ["decoder", "distill", "--teacher", str(tiny_wan_dir), "--data", str(synvid), "--out", str(out), *DECODER]
    assert run_cli([*args, "iterations=1"], capsys)[0] in (0, None)
    kept = (out / "checkpoint.pt").read_bytes()
    code, _, err = run_cli([*args, "iterations=2", "lr=1"], capsys)  # was a traceback (a detail gain of nan)
    line = one_error_line(err)
    assert code == 2 and "at iteration 2: stopped without saving; lower lr (now 1)" in line
    assert (out / "checkpoint.pt").read_bytes() == kept
    assert run_cli([*args, "iterations=2", "lr=1e-3"], capsys)[0] in (0, None)  # lr may change on resume now
    assert json.loads((out / "decoder" / "decoder.json").read_text())["iteration"] == 2


@pytest.mark.parametrize(
    "args",
    [
        ["distill", "--teacher", "t", "--data", "d", "lr=1e38"],  # torch's AdamW: an overflow traceback
        ["distill", "--teacher", "t", "--data", "d", "head_lr=2"],
        ["decoder", "distill", "--teacher", "t", "--data", "d", "lr=1e38"],
        ["teacher", "train", "vae_video_lr=5"],
        ["demo", "lr=2"],
    ],
)
def test_a_learning_rate_above_one_is_refused_before_anything_is_made(args, tmp_path, capsys):
    code, _, err = run_cli([*args, "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and "must be at most 1 (AdamW moves every weight by about lr a step)" in one_error_line(err)
    assert not (tmp_path / "out").exists()


# --- sigma grids at extreme shifts --------------------------------------------------------------------------------


@pytest.mark.parametrize("shift", [0.1, 0.3, 1e-3, 1e-30, 1e-300])
def test_a_shift_below_one_gives_a_grid_from_exactly_one(shift, tmp_path):
    from accvideo.core.schedules import shifted_sigmas
    from accvideo.models.student import check_key_sigmas

    grid = shifted_sigmas(4, shift)  # 1 + (shift - 1) rounded: sigma_0 was 1 + 2e-16 at 0.1, inf below 1e-16
    assert grid[0].item() == 1.0 and grid[-1].item() == 0.0 and bool(torch.isfinite(grid).all())
    assert bool((grid[1:] < grid[:-1]).all())
    check_key_sigmas(grid[[0, 2, 4]].tolist(), tmp_path / "student.json")  # its students sample and export


@pytest.mark.parametrize("shift", [1.0, 3.0, 5.0, 7.5, 17.0])
def test_a_shift_of_one_or_more_keeps_its_grid_bit_for_bit(shift):
    from accvideo.core.schedules import shift_sigmas, shifted_sigmas

    s = 1.0 - torch.arange(51, dtype=torch.float64) / 50
    assert torch.equal(shifted_sigmas(50, shift), shift_sigmas(s, shift))  # the SynVids made before still read


def test_teacher_train_says_when_training_made_the_teacher_worse(tmp_path, capsys):
    """lr=1 keeps the weights finite but ended at a loss near 3.6e5 from about 2 (exit 0, nothing said); the default
    lr says nothing."""
    args = ["teacher", "train", "--preset", "quick", "--device", "cpu"]
    with pytest.warns(UserWarning) as warned:
        code, _, err = run_cli([*args, "--out", str(tmp_path / "bad"), "lr=1"], capsys)
    assert code in (0, None) and len(warned) == 1, err
    text = str(warned[0].message)
    ended = re.search(r"teacher's loss ended at (\S+), above twice its first step's (\S+):", text)
    assert ended and float(ended[1]) > 1e4 * float(ended[2]), text  # 3.6e5 or 3.7e5 from about 2, by thread count
    assert "lower lr (now 1) and another --out" in text
    record = yaml.safe_load((tmp_path / "bad" / "accvideo_teacher.yaml").read_text())
    assert record["final_loss"] > 1e5
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        code, _, err = run_cli([*args, "--out", str(tmp_path / "good")], capsys)
    assert code in (0, None) and not [w for w in seen if "loss ended" in str(w.message)], err
