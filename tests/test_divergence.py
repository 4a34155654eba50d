"""Training that diverges writes no NaN result (audit D6, D7): `toy1d` and `world-train-classifier` refuse the settings
that only diverge, stop on a NaN or infinite loss in one line naming the setting to lower, and keep what an earlier run
wrote; `load_classifier` refuses NaN weights as student weights are refused."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from cli_helpers import one_line_error, run_cli
from safetensors.torch import load_file, save_file

from accvideo.core.outputs import mark_folder
from accvideo.errors import AccVideoError

# a toy1d run of a few seconds: every phase runs, every number is computed
TINY_TOY = [
    "teacher_iters=4",
    "teacher_batch=32",
    "student_iters=2",
    "student_batch=32",
    "num_trajectories=16",
    "useless_points=16",
    "useless_mismatches=[0.0,1.0]",
    "kd_mismatches=[0.0]",
    "dmd_iters=2",
    "dmd_batch=16",
    "eval_samples=64",
]
# a classifier run of about a second
TINY_CLF = ["eval_items=0", "--batch-size", "2", "--size", "32x32", "--frames", "5"]


def _error_line(args: list[str], capsys, message: str) -> str:
    """`accvideo ARGS` stopped mid-run: exit 2, no traceback, one `error:` line holding `message` (after the progress
    bars of what ran before); the line."""
    code, _, err = run_cli(args, capsys)
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err and message in lines[0], err
    return lines[0]


# --- D6: toy1d ---------------------------------------------------------------------------------------------------
def test_toy1d_refuses_a_data_point_past_its_bound_and_learning_rates_past_1(tmp_path, capsys):
    from accvideo.toy1d.config import Toy1dConfig

    assert Toy1dConfig(data_point=20.0).data_point == 20.0  # the bound itself is a run (the full preset: meaningful)
    with pytest.raises(AccVideoError, match="data_point must be at most 20 "):
        Toy1dConfig(data_point=20.5)
    for value in ("1e20", "1e300"):  # trained to NaN, wrote a NaN toy1d.json, then matplotlib's traceback
        out = tmp_path / f"ty{value}"
        line = one_line_error(
            ["toy1d", "--preset", "quick", f"data_point={value}", "--out", str(out)], capsys, "data_point must be"
        )
        assert "at most 20 (" in line and f"got {float(value)!r}" in line and "paper's 3" in line
        assert not out.exists()  # refused before the folder is made
    for name in ("teacher_lr", "student_lr", "dmd_lr", "dmd_fake_lr"):
        line = one_line_error(["toy1d", "--preset", "quick", f"{name}=1e30", "--out", str(tmp_path / "t")], capsys, "")
        assert f"toy1d {name} must be at most 1 " in line and "got 1e+30" in line
    assert Toy1dConfig(teacher_lr=1.0).teacher_lr == 1.0


def test_toy1d_nan_loss_stops_before_writing_and_keeps_the_earlier_results(tmp_path, capsys, monkeypatch):
    import accvideo.toy1d.dmd as toy_dmd
    import accvideo.toy1d.train as toy_train

    out = tmp_path / "ty"
    out.mkdir()
    mark_folder(out, "toy1d")  # as an earlier `accvideo toy1d` left it
    before = b'{"earlier": "results"}\n'
    (out / "toy1d.json").write_bytes(before)
    real = toy_train.velocity_loss
    calls = {"n": 0, "at": 2}

    def diverging(*args, **kw):  # the loss gone NaN at the `at`-th call, as a too-large lr makes it
        calls["n"] += 1
        return real(*args, **kw) * (math.nan if calls["n"] == calls["at"] else 1)

    args = ["toy1d", "--preset", "quick", *TINY_TOY, "--out", str(out)]
    monkeypatch.setattr(toy_train, "velocity_loss", diverging)
    line = _error_line(args, capsys, "toy1d teacher diverged at step 2 (loss nan)")
    assert "stopped without writing toy1d.json or any plot; lower teacher_lr (now 0.003)" in line
    # the students' phase: the 4 teacher steps, then the first student's second
    calls.update(n=0, at=6)
    line = _error_line(args, capsys, "toy1d AccVideo diverged at step 2 (loss nan)")
    assert "lower student_lr (now 0.001)" in line
    monkeypatch.setattr(toy_train, "velocity_loss", real)
    monkeypatch.setattr(toy_dmd, "velocity_loss", diverging)  # the DMD's fake model
    calls.update(n=0, at=1)
    line = _error_line(args, capsys, "toy1d dmd fake model diverged at step 1 (loss nan)")
    assert "lower dmd_fake_lr (now 0.001)" in line
    assert (out / "toy1d.json").read_bytes() == before and not list(out.glob("*.png"))


def test_toy1d_a_real_divergence_stops_on_its_nan_loss(tmp_path):
    """Past the config's bound (set around it, as a caller of run_toy1d could): a = 1e20 makes the loss ~a^2 overflow
    float32, and training stops on it instead of writing NaN numbers."""
    from accvideo.toy1d import quick_preset, run_toy1d

    cfg = dataclasses.replace(quick_preset(), teacher_iters=3, teacher_batch=16)
    object.__setattr__(cfg, "data_point", 1e20)
    with pytest.raises(AccVideoError, match=r"toy1d teacher diverged at step 1 \(loss inf\).*lower teacher_lr"):
        run_toy1d(cfg, progress=False)


def test_toy1d_write_results_refuses_a_nan_number(tmp_path):
    from accvideo.toy1d import Toy1dResult, write_results

    with pytest.raises(AccVideoError, match="a result is NaN or infinite: stopped without writing toy1d.json"):
        write_results(Toy1dResult({"teacher": {"final_loss": math.nan}}), tmp_path)
    assert not list(tmp_path.iterdir())


# --- D7: world-train-classifier and load_classifier --------------------------------------------------------------
def test_classifier_lr_is_at_most_1(tmp_path, capsys):
    from accvideo.evaluate.train import ClassifierTrainConfig

    out = tmp_path / "clf"
    args = ["world-train-classifier", "steps=2", "eval_items=0", "--batch-size", "2", "lr=1e30", "--out", str(out)]
    line = one_line_error(args, capsys, "lr must be at most 1 ")  # saved 138,194 NaN weights with exit 0
    assert "got 1e+30" in line and not out.exists()
    assert ClassifierTrainConfig(lr=1.0).lr == 1.0


def test_classifier_nan_loss_saves_nothing_and_keeps_the_classifier_there(tmp_path, capsys, monkeypatch):
    import accvideo.evaluate.train as clf_train

    out = tmp_path / "clf"
    args = ["world-train-classifier", "steps=3", *TINY_CLF, "--out", str(out)]
    code, _, err = run_cli(args, capsys)  # a finished classifier, which the diverged rerun must leave alone
    assert code == 0, err
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real, calls = clf_train.augment, {"n": 0}

    def diverging(*a, **kw):  # the second batch NaN: the loss is NaN, as a too-large lr makes it
        calls["n"] += 1
        return real(*a, **kw) * (math.nan if calls["n"] == 2 else 1)

    monkeypatch.setattr(clf_train, "augment", diverging)
    line = _error_line([*args, "lr=0.5"], capsys, "classifier training diverged at step 2 (loss nan")
    assert f"stopped without saving a classifier to {out}; lower lr (now 0.5) and rerun" in line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_classifier_diverging_lr_saves_no_classifier(tmp_path):
    """The audit's lr=1e30 past the config (as a caller of train_classifier could): the loss goes NaN at step 2."""
    from accvideo.evaluate.train import ClassifierTrainConfig, train_classifier

    out = tmp_path / "clf"
    cfg = ClassifierTrainConfig(out=str(out), steps=3, eval_items=0, batch_size=2, frames=5, height=32, width=32)
    object.__setattr__(cfg, "lr", 1e30)
    with pytest.raises(AccVideoError, match=r"diverged at step 2 \(loss nan.*lower lr \(now 1e\+30\)"):
        train_classifier(cfg, progress=False)
    assert not out.exists()


def test_load_classifier_refuses_nan_weights(tmp_path, capsys):
    from accvideo.evaluate.classifier import WEIGHTS_NAME, load_classifier

    clf = tmp_path / "clf"
    code, _, err = run_cli(["world-train-classifier", "steps=1", *TINY_CLF, "--out", str(clf)], capsys)
    assert code == 0, err
    assert load_classifier(clf).cfg.frames == 5  # as trained, it loads
    state = load_file(str(clf / WEIGHTS_NAME))
    name = sorted(state)[-1]
    state[name] = state[name].clone().view(-1).index_fill(0, torch.tensor([0]), math.inf).view(state[name].shape)
    save_file(state, str(clf / WEIGHTS_NAME), {"format": "pt"})
    with pytest.raises(AccVideoError, match=f"{name} holds NaN or infinite values"):
        load_classifier(clf)
    # evaluate: numpy's LinAlgError traceback in the Frechet distance, exit 1
    videos = tmp_path / "clips"
    videos.mkdir()
    ev = tmp_path / "ev"
    line = _error_line(
        ["evaluate", "--videos", str(videos), "--classifier", str(clf), "--out", str(ev)], capsys, "NaN or infinite"
    )
    assert str(clf / WEIGHTS_NAME) in line and "retrain it with `accvideo world-train-classifier" in line
    assert not ev.exists()
    assert json.loads((clf / "classifier.json").read_text())["config"]["frames"] == 5  # untouched
