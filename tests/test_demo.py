"""`accvideo demo` and `accvideo ablate` on a tiny teacher: report contents, metrics = `accvideo evaluate`, reuse."""

from __future__ import annotations

import json

import pytest
import yaml

from accvideo.cli import main


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


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
    kept = {p: p.stat().st_mtime_ns for p in (out / "videos").glob("*/sampler.json")}
    again = run_demo(quick_config(teacher=str(tiny_wan_dir), out=str(out)), progress=False, echo=lambda *_: None)
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # clips re-scored, not resampled
    for name, row in first["results"].items():
        assert again["results"][name]["accuracy"] == row["accuracy"]
        assert again["results"][name]["seconds_sampling"] == row["seconds_sampling"]  # from the kept record
        assert again["results"][name]["frechet_distance"] == pytest.approx(row["frechet_distance"], rel=1e-5)


def test_ablate_trains_the_three_variants_and_scores_four_rows(tiny_wan_dir, tmp_path, capsys):
    out = tmp_path / "abl"
    code, stdout, err = run_cli(
        [
            "ablate",
            "--preset",
            "quick",
            "--teacher",
            str(tiny_wan_dir),
            "--out",
            str(out),
            "eval_prompts=2",
            "grid_prompts=1",
        ],
        capsys,
    )
    assert code in (0, None), err
    data = json.loads((out / "ablation.json").read_text())
    assert list(data["results"]) == ["a-teacher", "b-traj", "c-shared-head", "d-per-step-heads"]
    assert data["results"]["a-teacher"]["guidance"] == 5.0 and data["results"]["b-traj"]["guidance"] == 1.0
    cfg = {
        n: yaml.safe_load((out / n / "config.yaml").read_text())
        for n in ("b-traj", "c-shared-head", "d-per-step-heads")
    }
    assert cfg["b-traj"]["adv"] is False and cfg["c-shared-head"]["heads"] == "shared"
    assert cfg["d-per-step-heads"]["adv"] is True and cfg["d-per-step-heads"]["heads"] == "per-step"
    assert (out / "ablation.png").read_bytes()[:4] == b"\x89PNG" and "(d) + per-step heads" in stdout


def test_bad_demo_settings_are_one_line_errors(tmp_path, capsys):
    code, _, err = run_cli(["demo", "--out", str(tmp_path / "d"), "key_steps=3"], capsys)
    assert code == 2 and "must divide teacher_steps" in err and err.count("\n") == 1
    code, _, err = run_cli(["demo", "--out", str(tmp_path / "d"), "--preset", "huge"], capsys)
    assert code == 2 and "--preset must be one of default, quick" in err
