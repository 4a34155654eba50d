"""`accvideo demo` and `accvideo ablate` on a tiny teacher: report contents, metrics = `accvideo evaluate`, reuse."""

from __future__ import annotations

import json

import pytest
import yaml
from cli_helpers import run_cli

from accvideo.demo.ablate import key_indices, plan_rows, row_overrides, run_name
from accvideo.demo.config import AblationConfig, quick_ablation_config


@pytest.fixture(scope="module")
def demo_run(tiny_wan_dir, tmp_path_factory):
    from accvideo.demo import quick_config, run_demo

    out = tmp_path_factory.mktemp("demo") / "run"
    metrics = run_demo(quick_config(teacher=str(tiny_wan_dir), out=str(out)), progress=False, echo=lambda *_: None)
    return out, metrics


def test_demo_report_has_every_part(demo_run):
    out, metrics = demo_run
    report = out / "report"
    assert (report / "grid.mp4").stat().st_size > 0 and (report / "grid.gif").read_bytes()[:3] == b"GIF"
    for png in ("frames.png", "losses.png"):
        assert (report / png).read_bytes()[:4] == b"\x89PNG"
    assert json.loads((report / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    assert set(metrics["seconds"]) == {"prompts", "synthesize", "distill", "sample + evaluate", "report", "total"}
    rows = metrics["results"]
    assert list(rows) == ["teacher-4", "teacher-2", "student-2"]
    assert [(r["steps"], r["guidance"]) for r in rows.values()] == [(4, 5.0), (2, 5.0), (2, 1.0)]
    index = (report / "index.md").read_text()
    for r in rows.values():  # the table in index.md shows the measured numbers
        assert f"| {r['label']} | {r['steps']} |" in index and f"{r['frechet_distance']:.3f}" in index
    # the grid: three labelled columns of 2x-upscaled 64x64 clips, two prompt rows, every frame
    from accvideo.core.video import read_video

    grid = read_video(report / "grid.mp4")
    assert grid.shape[0] == 17 and grid.shape[2] >= 3 * 128 and grid.shape[1] >= 2 * 128


def test_demo_metrics_equal_accvideo_evaluate_on_the_same_clips(demo_run, tmp_path, capsys):
    out, metrics = demo_run
    for name, row in metrics["results"].items():
        code, _, err = run_cli(["evaluate", "--videos", row["videos"], "--out", str(tmp_path / name)], capsys)
        assert code in (0, None), err
        scored = json.loads((tmp_path / name / "metrics.json").read_text())
        assert scored["accuracy"] == row["accuracy"]
        # the same clips and classifier; the matrix square root of these rank-deficient covariances (3 clips, 512
        # features) turns last-bit differences of the features into ~1e-7 relative
        assert scored["frechet_distance"] == pytest.approx(row["frechet_distance"], rel=1e-5)
        assert scored["temporal_consistency"] == pytest.approx(row["temporal_consistency"], rel=1e-9)


def test_demo_rerun_reuses_every_stage(demo_run, tiny_wan_dir):
    from accvideo.demo import quick_config, run_demo

    out, first = demo_run
    kept = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(out.rglob("*")) if p.is_file()}
    lines = []
    again = run_demo(quick_config(teacher=str(tiny_wan_dir), out=str(out)), progress=False, echo=lines.append)
    # clips re-scored, not resampled; the same report, so not a file written (was: every report file rewritten)
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(out.rglob("*")) if p.is_file()} == kept
    assert lines[-1].startswith("nothing to do:") and again == json.loads((out / "report" / "metrics.json").read_text())
    # the stages it reused whole keep the seconds measured when their work was done, not the rerun's near-zero
    for stage in ("synthesize", "distill", "sample + evaluate"):
        assert again["seconds"][stage] == first["seconds"][stage]
    assert again["train_seconds"] == first["train_seconds"] == summary_seconds(out / "distill") > 0
    for name, row in first["results"].items():
        assert again["results"][name]["accuracy"] == row["accuracy"]
        assert again["results"][name]["seconds_sampling"] == row["seconds_sampling"]  # from the kept record
        assert again["results"][name]["frechet_distance"] == pytest.approx(row["frechet_distance"], rel=1e-5)


def test_kept_clips_do_not_depend_on_how_the_folders_are_named(demo_run, tiny_wan_dir, monkeypatch):
    """The demo named by a relative --out (and the teacher by a relative path) re-scores the clips it kept: the
    record held the student's path, so naming the same folder another way sampled every student again."""
    import os
    from pathlib import Path

    from accvideo.demo import quick_config
    from accvideo.demo.chain import kept_samplers
    from accvideo.demo.run import demo_samplers

    out, _ = demo_run
    monkeypatch.chdir(out.parent)
    cfg = quick_config(teacher=os.path.relpath(tiny_wan_dir, out.parent), out=out.name)
    samplers = demo_samplers(cfg, Path(cfg.out) / "distill")
    assert {s.model for s in samplers} == {cfg.teacher, f"{out.name}/distill"}  # both named relatively
    assert kept_samplers(cfg, samplers) == {s.name for s in samplers}


def test_sampling_seconds_leave_out_the_model_load(tiny_wan_dir, tmp_path, monkeypatch):
    """The first sampler of a model used to be timed from before its load: on a clock that only the (patched) load
    and sampling move, the load is recorded apart and the sampling seconds are the sampling's alone."""
    from types import SimpleNamespace

    import accvideo.demo.chain as chain
    from accvideo.demo import quick_config

    now = [0.0]
    monkeypatch.setattr(chain, "time", SimpleNamespace(perf_counter=lambda: now[0]))

    def timed(real, seconds):
        def run(*args, **kwargs):
            now[0] += seconds
            return real(*args, **kwargs)

        return run

    monkeypatch.setattr(chain, "open_model", timed(chain.open_model, 100.0))  # a slow load
    monkeypatch.setattr(chain, "generate_videos", timed(chain.generate_videos, 1.0))
    cfg = quick_config(teacher=str(tiny_wan_dir), out=str(tmp_path / "run"), eval_prompts=2)
    samplers = [chain.Sampler("t2", str(tiny_wan_dir), 2, 5.0), chain.Sampler("t1", str(tiny_wan_dir), 1, 5.0)]
    results = chain.sample_and_score(cfg, samplers, progress=False)
    # the first sampler opened the model, the second reused it; each sampled for its own second
    assert [(r["seconds_loading"], r["seconds_sampling"]) for r in results.values()] == [(100.0, 1.0), (0.0, 1.0)]
    for name in ("t2", "t1"):  # the kept record says the same, so a rescoring rerun reports it too
        info = json.loads((tmp_path / "run" / "videos" / name / "sampler.json").read_text())
        assert info["seconds_sampling"] == 1.0


def snapshot(folder):
    """Every file under `folder` with its bytes."""
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_demo_rerun_with_other_training_settings_is_refused_before_anything_is_written(
    demo_run, tiny_wan_dir, tmp_path, capsys
):
    import shutil

    out, _ = demo_run
    args = ["demo", "--preset", "quick", "--teacher", str(tiny_wan_dir), "--out"]
    before = snapshot(out)
    for flag, old, new in (
        ("--seed", 0, 1),  # other prompts and seeds: synthesize refused it, after prompts.jsonl was rewritten
        ("--train-prompts", 4, 6),  # the SynVid grew, the finished student was kept
        ("--lr", 0.0001, 0.001),  # distill resumes a finished run under a new lr: nothing trained, lr reported
        ("--iterations", 2, 3),
        ("--key-steps", 2, 4),
    ):
        code, _, err = run_cli(args + [str(out), flag, str(new)], capsys)
        key = flag[2:].replace("-", "_")
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
        assert f"made with {key}={old!r}, not {new!r}" in err and f"another --out, or {key}={old!r}" in err
        assert snapshot(out) == before  # not a byte changed
    # a folder from before OUT/training.json: its report's config is the record
    older = tmp_path / "older"
    shutil.copytree(out, older)
    (older / "training.json").unlink()
    kept = snapshot(older)
    code, _, err = run_cli(args + [str(older), "--lr", "0.001"], capsys)
    assert code == 2 and "made with lr=0.0001, not 0.001" in err and snapshot(older) == kept
    # another teacher (same files but one byte): was refused by synthesize with a hint at --overwrite, which demo
    # and ablate do not have; a moved copy of the same teacher is the same teacher
    other, moved = tmp_path / "other-teacher", shutil.copytree(tiny_wan_dir, tmp_path / "moved-teacher")
    shutil.copytree(tiny_wan_dir, other)
    with open(other / "model_index.json", "a") as f:
        f.write("\n")
    code, _, err = run_cli(["demo", "--preset", "quick", "--teacher", str(other), "--out", str(older)], capsys)
    assert code == 2 and "students of another teacher than" in err and "--overwrite" not in err, err
    assert snapshot(older) == kept
    from accvideo.demo.chain import check_training_settings
    from accvideo.demo.config import DEMO_TRAINING, quick_config

    check_training_settings(quick_config(teacher=str(moved), out=str(older)), DEMO_TRAINING, older / "report")


def test_train_prompts_already_there_are_kept_or_refused_never_rewritten(tiny_wan_dir, tmp_path):
    """A prompts file made by other settings (a folder from before OUT/training.json) is refused, not replaced."""
    from accvideo.demo import quick_config
    from accvideo.demo.chain import write_train_prompts
    from accvideo.errors import AccVideoError

    cfg = quick_config(teacher=str(tiny_wan_dir), out=str(tmp_path))
    path = write_train_prompts(cfg)
    made, stamp = path.read_bytes(), path.stat().st_mtime_ns
    assert len(made.splitlines()) == 4
    with pytest.raises(AccVideoError, match="holds other train prompts than the 4 these settings make"):
        write_train_prompts(quick_config(teacher=str(tiny_wan_dir), out=str(tmp_path), seed=1))
    with pytest.raises(AccVideoError, match="other train prompts than the 6"):
        write_train_prompts(quick_config(teacher=str(tiny_wan_dir), out=str(tmp_path), train_prompts=6))
    assert write_train_prompts(cfg) == path and path.read_bytes() == made and path.stat().st_mtime_ns == stamp


def test_ablate_compares_real_data_only_when_both_runs_set_it(tmp_path):
    """Adding row (e) to a folder without real videos only adds cells; changing the real videos of its runs does
    not. Settings that name new runs (iterations) or only change the evaluation are not compared."""
    from accvideo.demo.chain import check_training_settings, record_training_settings
    from accvideo.demo.config import ABLATE_TRAINING, ABLATE_WHEN
    from accvideo.errors import AccVideoError

    def check(**kw):
        cfg = quick_ablation_config(out=str(tmp_path), **kw)
        settings = check_training_settings(cfg, ABLATE_TRAINING, tmp_path / "ablation.json", ABLATE_WHEN)
        record_training_settings(cfg, "ablate", settings)
        return json.loads((tmp_path / "training.json").read_text())["settings"]

    assert check(lr=0.5)["lr"] == 0.5  # recorded, but nothing made with it yet: another lr is no conflict
    assert check()["real_data"] is None
    (tmp_path / "prompts.jsonl").write_text("")  # the first stage's output: from here on the record holds
    with pytest.raises(AccVideoError, match="made with lr=0.0001, not 0.5"):
        check(lr=0.5)
    assert check(real_data="world", real_clips=8, iterations=5, eval_prompts=4)["real_data"] == "world"
    assert check()["real_clips"] == 8  # a rerun without row (e) leaves the folder's real videos on record
    for bad, message in (
        ({"real_data": "world", "real_clips": 16}, "real_clips=8, not 16"),
        ({"real_data": str(tmp_path / "clips")}, "real_data='world', not"),
        ({"head_lr": 0.01}, "head_lr=0.001, not 0.01"),
    ):
        with pytest.raises(AccVideoError, match=message):
            check(**bad)
    assert check(real_data="world", real_clips=8)["real_clips"] == 8


def test_ablation_plot_draws_a_mean_outside_its_bootstrap_interval(tmp_path):
    """On two clips a bootstrap interval of the Frechet distance can miss its point estimate (resampled sets repeat
    clips; at a degenerate interval's edge the two differ by rounding): each bar stops at the mean, never negative."""
    from accvideo.demo.ablate import ablation_plot, error_bars

    stats = [
        {"mean": 1804.1226251862784, "lo": 1477.396873794108, "hi": 1804.1226251831802},  # seen with eval_prompts=2
        {"mean": 10.0, "lo": 11.0, "hi": 12.0},  # the mean below its interval
        {"mean": 0.5, "lo": 0.25, "hi": 0.75},
    ]
    assert error_bars(stats) == [[pytest.approx(326.7257513922), 0.0, 0.25], [0.0, 2.0, 0.25]]

    def metrics(stat):
        return {"accuracy": stat, "frechet_distance": stat}

    cells = {"teacher-n": {"label": "teacher 4 steps", "metrics": metrics(stats[2])}}
    for m, stat in zip((1, 2, 3), stats, strict=True):
        cells[f"m{m}-b"] = {"label": "(b) + L_traj", "row": "b", "m": m, "metrics": metrics(stat)}
    path = ablation_plot({"cells": cells}, tmp_path / "ablation.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_ablate_grid_trains_every_row_per_seed_and_reports_intervals(tiny_wan_dir, tmp_path, capsys):
    out = tmp_path / "abl"
    args = ["ablate", "--preset", "quick", "--teacher", str(tiny_wan_dir), "--out", str(out), "rows=[a, b]"]
    code, stdout, err = run_cli(args + ["key_steps=[1, 2]", "seeds=[0, 1]"], capsys)
    assert code in (0, None), err
    data = json.loads((out / "ablation.json").read_text())
    assert list(data["cells"]) == ["teacher-n", "m1-a", "m1-b", "m2-a", "m2-b"]  # the teacher's n steps: reference
    runs = ["m2-b-it2-s0", "m2-b-it2-s1"]  # the quick preset's 2 iterations are in the names
    assert data["cells"]["m2-b"]["runs"] == runs and data["cells"]["m1-a"]["guidance"] == 5.0
    for m in (1, 2):  # each m's students train on its own key sigmas of the one SynVid, once per seed
        cfgs = [yaml.safe_load((out / "runs" / f"m{m}-b-it2-s{s}" / "config.yaml").read_text()) for s in (0, 1)]
        assert [c["seed"] for c in cfgs] == [0, 1] and cfgs[0]["adv"] is False
        assert len(cfgs[0]["key_sigmas"]) == m + 1
        assert cfgs[0]["key_sigmas"] == pytest.approx(data["samplers"][f"m{m}-b-it2-s0"]["sigmas"], abs=1e-6)
    # every cell: the mean over its seeds, their spread, and an interval around the mean
    for cell in data["cells"].values():
        for stat in cell["metrics"].values():
            assert stat["mean"] == pytest.approx(sum(stat["seeds"]) / len(stat["seeds"]))
            assert stat["lo"] <= stat["hi"] and (len(stat["seeds"]) > 1 or stat["sd"] == 0)
    seeds = data["cells"]["m2-b"]["metrics"]["frechet_distance"]["seeds"]
    assert len(seeds) == 2 and seeds[0] != seeds[1]  # two trainings, two students
    # paired differences: (b) against the n-step teacher at each m, the point being the difference of the means
    assert [(c["m"], c["first"], c["second"]) for c in data["comparisons"]] == [
        (1, "b", "teacher-n"),
        (2, "b", "teacher-n"),
    ]
    diff = data["comparisons"][1]["metrics"]["frechet_distance"]
    teacher = data["cells"]["teacher-n"]["metrics"]["frechet_distance"]["mean"]
    assert diff["diff"] == pytest.approx(sum(seeds) / 2 - teacher) and diff["lo"] <= diff["hi"]
    assert (out / "ablation.png").read_bytes()[:4] == b"\x89PNG" and "(b) + L_traj" in stdout
    # per run, the training behind its weights; a rerun that only rescores keeps those, not its own near-zero
    trained = {f"m{m}-b-it2-s{s}": summary_seconds(out / "runs" / f"m{m}-b-it2-s{s}") for m in (1, 2) for s in (0, 1)}
    assert data["train_seconds"] == trained and all(v > 0 for v in trained.values())
    files = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(out.rglob("*")) if p.is_file()}
    code, stdout, err = run_cli(args + ["key_steps=[1, 2]", "seeds=[0, 1]"], capsys)
    assert code in (0, None), err
    # nothing to do: not a file written (was: ablation.json, .md and .png rewritten with the rerun's timings)
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(out.rglob("*")) if p.is_file()} == files
    assert "nothing to do:" in stdout and "(b) + L_traj" in stdout
    again = json.loads((out / "ablation.json").read_text())
    assert again["train_seconds"] == trained
    assert again["cells"] == data["cells"]  # rescored from the kept clips, which the first run scored too
    # every stage but the intervals was reused whole: each keeps the seconds measured when its work was done
    assert {k: v for k, v in again["seconds"].items() if k not in ("intervals", "total")} == {
        k: v for k, v in data["seconds"].items() if k not in ("intervals", "total")
    }
    # settings behind the SynVid and the students that no run name carries: refused, not a byte written
    before = snapshot(out)
    for setting, old, new in (("train_prompts", 4, 6), ("lr", 0.0001, 0.001), ("seed", 0, 1)):
        code, _, err = run_cli(args + ["key_steps=[1, 2]", "seeds=[0, 1]", f"{setting}={new}"], capsys)
        assert code == 2 and err.count("\n") == 1, err
        assert f"made with {setting}={old!r}, not {new!r}" in err and f"or {setting}={old!r}" in err
        assert snapshot(out) == before
    # by default each difference also has its interval over training seeds and clips, wider than the clips' alone
    for c in data["comparisons"]:
        for stat in c["metrics"].values():
            assert stat["seeds_lo"] <= stat["diff"] <= stat["seeds_hi"] or stat["seeds_lo"] == stat["seeds_hi"]
    assert "over training seeds and clips" in (out / "ablation.md").read_text()
    # seed_intervals, an evaluation setting: a rerun with it off keeps the clips' intervals and drops the others
    code, stdout, err = run_cli(args + ["key_steps=[1, 2]", "seeds=[0, 1]", "seed_intervals=false"], capsys)
    assert code in (0, None), err
    clips_only = json.loads((out / "ablation.json").read_text())
    assert clips_only["cells"] == data["cells"] and "intervals over training seeds and clips" not in stdout
    for c, before_c in zip(clips_only["comparisons"], data["comparisons"], strict=True):
        for name, stat in c["metrics"].items():
            assert stat == {k: before_c["metrics"][name][k] for k in ("diff", "lo", "hi")}  # the clips' unchanged
    assert "over training seeds and clips" not in (out / "ablation.md").read_text()


def summary_seconds(run):
    return json.loads((run / "summary.json").read_text())["train_seconds"]


def test_ablation_rows_carry_their_settings_and_run_where_asked():
    cfg = quick_ablation_config(
        key_steps=[1, 2, 5], teacher_steps=10, real_data="world", real_data_steps=[5], real_weight=0.25
    )
    assert plan_rows(cfg) == [
        ("a", 1), ("b", 1), ("d", 1), ("a", 2), ("b", 2), ("c", 2), ("d", 2), ("a", 5), ("b", 5), ("d", 5), ("e", 5)
    ]  # fmt: skip
    assert ("e", 4) not in plan_rows(quick_ablation_config(key_steps=[4]))  # no real data, no row (e)
    rows = row_overrides(cfg)
    assert rows["b"] == {"adv": False} and rows["c"]["heads"] == "shared"
    assert rows["d"] == {"lambda_adv": 0.1, "adv_warmup": 0} and rows["c"]["lambda_adv"] == 0.1
    assert run_name(AblationConfig(), "d", 2, 1) == "m2-d-s1"  # the defaults keep the names of earlier runs
    assert run_name(cfg, "d", 2, 1) == "m2-d-it2-s1"  # the quick preset's 2 iterations are not the default 200
    assert run_name(cfg, "e", 5, 0) == "m5-e-it2-rw0.25-s0" and run_name(cfg, "a", 5, 0) == "m5-a-s0"
    tuned = quick_ablation_config(lambda_adv=0.01, adv_warmup=50, iterations=200)
    assert row_overrides(tuned)["d"] == {"lambda_adv": 0.01, "adv_warmup": 50}
    assert [run_name(tuned, r, 1, 0) for r in "bd"] == ["m1-b-s0", "m1-d-lam0.01-warm50-s0"]
    assert rows["e"]["real_data"] == "world" and rows["e"]["real_weight"] == 0.25
    assert key_indices(50, 3) == [0, 17, 33, 50] and key_indices(50, 5) == [0, 10, 20, 30, 40, 50]
    for bad in ({"rows": ["z"]}, {"seeds": [0, 0]}, {"split": "train"}, {"key_steps": [0]}):
        with pytest.raises(ValueError):
            quick_ablation_config(**bad)


def test_bad_demo_settings_are_one_line_errors(tmp_path, capsys):
    code, _, err = run_cli(["demo", "--out", str(tmp_path / "d"), "key_steps=3"], capsys)
    assert code == 2 and "must divide teacher_steps" in err and err.count("\n") == 1
    code, _, err = run_cli(["demo", "--out", str(tmp_path / "d"), "--preset", "huge"], capsys)
    assert code == 2 and "--preset must be one of default, quick" in err
    # refused before the chain (was: at the report's grid, after synthesize, distill and sampling had all run)
    code, _, err = run_cli(["demo", "--out", str(tmp_path / "d"), "--preset", "quick", "--fps", "2000"], capsys)
    assert code == 2 and "fps must lie in [1, 1,000]" in err and err.count("\n") == 1
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("verb", ["demo", "ablate"])
def test_a_teacher_that_is_none_is_refused_before_the_folder_is_made(verb, tmp_path, capsys):
    """The folder was claimed (and training.json written) before the teacher was read."""
    missing = tmp_path / "nowhere"
    code, _, err = run_cli([verb, "--out", str(tmp_path / "d"), f"teacher={missing}"], capsys)
    assert code == 2 and err == (
        f"error: model directory {missing} does not exist; pass a local diffusers pipeline folder "
        "(--model, --teacher)\n"
    )
    assert not (tmp_path / "d").exists()


def test_demo_with_an_image_to_video_teacher_gives_each_prompt_its_world_first_frame(tmp_path):
    """The chain on an image-to-video teacher (the built-in's weights in the TI2V image layout, the start of
    `teacher train image=true init=builtin`): each train prompt carries the world's first frame of its seed, SynVid
    stores its latent as the condition, and every row is sampled in ToyBench's image-to-video mode."""
    from pathlib import Path

    import numpy as np
    from diffusers import WanPipeline

    from accvideo.core.runtime import builtin_model_dir
    from accvideo.demo import quick_config, run_demo
    from accvideo.demo.chain import eval_pairs
    from accvideo.synthesize import SynVidDataset
    from accvideo.teacher.train import image_pipeline
    from accvideo.world import parse_caption, render

    teacher = tmp_path / "teacher"
    image_pipeline(WanPipeline.from_pretrained(str(builtin_model_dir()))).save_pretrained(str(teacher))
    out = tmp_path / "run"
    metrics = run_demo(quick_config(teacher=str(teacher), out=str(out)), progress=False, echo=lambda *_: None)
    rows = [json.loads(line) for line in (out / "prompts.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(r["image"] == f"images/{i:06d}.png" for i, r in enumerate(rows))
    from PIL import Image

    first = np.asarray(Image.open(out / rows[1]["image"])) / 255.0
    assert np.abs(first - render(parse_caption(rows[1]["prompt"]), rows[1]["seed"])[0]).max() <= 0.5 / 255 + 1e-6
    item = SynVidDataset(out / "synvid")[1]
    assert set(item["cond"]) == {"prompt_embeds", "condition"} and item["cond"]["condition"].shape == (8, 1, 8, 8)
    assert item["latents"][-1][:, :1].equal(item["cond"]["condition"])  # the result keeps the given frame
    assert set(metrics["results"]) == {"teacher-4", "teacher-2", "student-2"}
    cfg = quick_config(teacher=str(teacher), out=str(out))
    real = np.stack([render(parse_caption(p), seed)[0] for p, seed in eval_pairs(cfg)])
    for result in metrics["results"].values():  # every row's clips start from the VAE's copy of the world's frame
        clips = np.stack([np.load(f) for f in sorted(Path(result["videos"]).glob("*.npy"))])
        assert clips.shape[0] == 3 and np.abs(clips[:, 0] / 255.0 - real).mean() < 0.06


def test_ablation_table_script_takes_help_and_refuses_a_bad_file_in_one_line(tmp_path, capsys):
    """benchmarks/ablation_table.py read `--help` as a JSON path (a traceback); it prints the tables of the files."""
    import importlib.util
    from pathlib import Path

    from accvideo.demo.ablate import ablation_tables

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("ablation_table", root / "benchmarks" / "ablation_table.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    with pytest.raises(SystemExit) as exc:
        script.main(["--help"])
    assert exc.value.code == 0 and "--plot" in capsys.readouterr().out
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(SystemExit) as exc:
        script.main([str(tmp_path / "bad.json")])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1 and "bad.json is not an `accvideo ablate` JSON" in err
    path = root / "benchmarks" / "results" / "ablation_m5_rw1.json"
    script.main([str(path)])
    assert capsys.readouterr().out.startswith(ablation_tables(json.loads(path.read_text())) + "\n\nPaired differences")


@pytest.mark.parametrize(
    "verb, setting, words",
    [
        ("demo", "lora_rank=-2", "lora_rank must be >= 0 (0: full student); got -2"),
        ("ablate", "lora_rank=-2", "lora_rank must be >= 0 (0: full student); got -2"),
        ("demo", "head_lr=-1", "lr and head_lr must be positive; got 0.0001, -1.0"),
        ("ablate", "lr=0", "lr and head_lr must be positive; got 0.0, 0.001"),
        ("ablate", "guidance=-1", "guidance must be >= 0 (1 turns CFG off); got -1.0"),
        ("ablate", "rows=[e]", "row e trains with real videos: give real_data=world (or a folder of clips), or more"),
    ],
)
def test_settings_the_chains_configs_refuse_are_refused_before_the_chain(verb, setting, words, tmp_path, capsys):
    """They were refused by the distill (or SynVid) config once it was built: after the SynVid, as a traceback,
    with the folder left behind; rows=[e] without real_data trained nothing and reported the teacher alone."""
    code, _, err = run_cli([verb, "--out", str(tmp_path / "d"), setting], capsys)
    assert code == 2 and err.count("\n") == 1 and words in err, err
    assert not (tmp_path / "d").exists()


def test_a_row_at_no_m_of_this_grid_is_said_and_a_grid_of_no_asked_row_is_refused():
    """rows=[c] shared_head_steps=[7] reported the teacher alone (exit 0); the m = 1, 2, 3 grid of docs/demo.md asks
    for (e) at m = 5 only, and keeps running without it, saying so."""
    from accvideo.demo.config import dropped_rows_line

    grid = quick_ablation_config(key_steps=[2, 1, 3], real_data="world", real_data_steps=[5])
    assert [row for row, _ in plan_rows(grid)].count("e") == 0 and "c" in {row for row, _ in plan_rows(grid)}
    assert dropped_rows_line(grid) == (
        "note: row e (real_data_steps=[5]) runs at no m of key_steps=[2, 1, 3]: the table has no such row"
    )
    assert dropped_rows_line(quick_ablation_config(real_data="world")) is None
    with pytest.raises(ValueError, match=r"no row of rows=\['c', 'e'\] runs at any m of key_steps=\[1, 2\]"):
        quick_ablation_config(rows=["c", "e"], shared_head_steps=[7], real_data="world", real_data_steps=[5])


def test_a_record_that_is_a_fifo_reads_as_absent_and_does_not_hang(tmp_path):
    """A demo or ablate rerun read training.json (or a report's metrics.json) as text: a FIFO there waited for a
    writer forever."""
    import os

    from accvideo.demo.chain import read_json_dict

    os.mkfifo(tmp_path / "training.json")
    (tmp_path / "other.json").write_text('{"guidance": 5.0}')
    assert read_json_dict(tmp_path / "training.json") == {}
    assert read_json_dict(tmp_path / "other.json") == {"guidance": 5.0}


def test_a_rerun_its_synvid_refuses_leaves_no_record_of_its_settings(demo_run, tiny_wan_dir, tmp_path, capsys):
    """With training.json and the report gone, a rerun at another guidance was refused by synthesize ("pass
    --overwrite", which demo does not have) after writing its own settings to training.json: then neither guidance
    could rerun the folder."""
    import shutil

    out, _ = demo_run
    folder = shutil.copytree(out, tmp_path / "demo")
    (folder / "training.json").unlink()
    shutil.rmtree(folder / "report")
    args = ["demo", "--preset", "quick", "--teacher", str(tiny_wan_dir), "--out", str(folder), "--guidance", "3"]
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "holds another SynVid dataset" in err and "--overwrite" not in err, err
    assert "rerun with the settings it was made with, or delete" in err
    assert not (folder / "training.json").exists()


def test_a_damaged_clip_in_the_demos_cache_says_to_delete_the_cache(tiny_wan_dir, tmp_path):
    """A truncated kept clip was refused with advice for a user's folder ("re-encode it as .mp4 or .npy")."""
    from accvideo.demo import quick_config, run_demo
    from accvideo.errors import AccVideoError

    cfg = quick_config(teacher=str(tiny_wan_dir), out=str(tmp_path / "demo"))
    run_demo(cfg, progress=False, echo=lambda *_: None)  # its own folder: a copy's samplers name other paths
    clip = sorted((tmp_path / "demo" / "videos").glob("*/000001.npy"))[0]
    clip.write_bytes(clip.read_bytes()[:90])
    with pytest.raises(AccVideoError) as refused:
        run_demo(cfg, progress=False, echo=lambda *_: None)
    assert str(refused.value).endswith(f"here, delete {clip.parent} and rerun to sample its clips again")
