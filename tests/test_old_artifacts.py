"""Folders an older accvideo wrote, read by this one: each works as it did, or is one line naming the fix.

Each "old" artifact is made here from today's by removing or altering what the older layout lacked (as observed
on folders written by earlier commits), never by checking out old code.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from cli_helpers import hand_made_run, one_line_error, run_cli

from accvideo.core.schedules import key_sigmas, shifted_sigmas, uniform_key_indices
from accvideo.errors import AccVideoError
from accvideo.models.open import open_model

# m = 3 uniform key steps of the tiny teacher's (shift 5) 6-step grid: what a distill run on its SynVid records
KEY = key_sigmas(shifted_sigmas(6, 5.0), uniform_key_indices(6, 3)).tolist()
SMALL = ["--frames", "5", "--size", "32x32", "--device", "cpu", "--prompt", "a red circle"]


@pytest.fixture(scope="module")
def old_export(tiny_wan_dir, tmp_path_factory) -> Path:
    """A diffusers export as accvideo wrote it before accvideo_export.json recorded the teacher's shift (commit
    3925749): the same folder without `shift`; its scheduler's shift is the one fitted to the key sigmas."""
    root = tmp_path_factory.mktemp("old-export")
    run = hand_made_run(tiny_wan_dir, root / "run", KEY)
    from accvideo.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["export", str(run), "--out", str(root / "export")])
    assert exc.value.code in (0, None)
    record = root / "export" / "accvideo_export.json"
    info = json.loads(record.read_text())
    assert info.pop("shift") != info["scheduler"]["shift"]  # the two differ, or the test shows nothing
    record.write_text(json.dumps(info, indent=1))
    return root / "export"


def test_an_old_export_still_samples_on_its_key_sigmas(old_export):
    opened = open_model(str(old_export))
    assert opened.plan().sigmas == pytest.approx(KEY)
    assert opened.plan(steps=4, shift=3.0).sigmas[0] == 1.0  # a shift given: the teacher's grid, as asked


def test_an_old_export_at_other_steps_is_refused_not_sampled_on_the_fitted_shift(old_export, tmp_path, capsys):
    """`sample --model OLD_EXPORT --steps 4` placed its steps with the export scheduler's fitted shift (2.15 here
    for the teacher's 5): another grid than its run's at the same steps, a different clip, exit 0."""
    with pytest.raises(AccVideoError, match="did not record its teacher's shift"):
        open_model(str(old_export)).plan(steps=4)
    line = one_line_error(
        ["sample", "--model", str(old_export), "--steps", "4", *SMALL, "--out", str(tmp_path / "c.mp4")],
        capsys,
        "export the run again with this version, or give --shift",
    )
    assert str(old_export) in line
    assert not (tmp_path / "c.mp4").exists()


QUICK = ["batch=2", "lr=1e-4", "head_lr=1e-4", "head_channels=8", "device=cpu", "checkpoint_every=1", "probe_every=0"]


def distill_args(teacher, data, out, *extra):
    return ["distill", "--teacher", str(teacher), "--data", str(data), "--out", str(out), *QUICK, *extra]


@pytest.fixture(scope="module")
def legacy_run(tiny_wan_dir, synvid, tmp_path_factory) -> Path:
    """A distill run stopped at iteration 1 whose checkpoint.pt lacks `dataset` and `dataset_items`, as every run made
    before the dataset identity was kept (e005bda), its shards and the save an hour apart as they were."""
    from accvideo.cli import main
    from accvideo.core.files import load_state_file
    from accvideo.distill.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("legacy-run")
    with pytest.raises(SystemExit) as exc:
        main(distill_args(tiny_wan_dir, synvid, root / "run", "iterations=1"))
    assert exc.value.code in (0, None)
    state = load_state_file(root / "run" / "checkpoint.pt", "checkpoint", "")
    del state["dataset"], state["dataset_items"]
    save_checkpoint(root / "run" / "checkpoint.pt", state)
    data = shutil.copytree(synvid, root / "data")
    for shard in data.glob("shard-*.safetensors"):
        os.utime(shard, (time.time() - 3600,) * 2)
    return root


def test_an_old_checkpoint_resumes_on_its_unchanged_dataset(tiny_wan_dir, legacy_run, tmp_path, capsys):
    run = shutil.copytree(legacy_run / "run", tmp_path / "run")
    code, _, err = run_cli(distill_args(tiny_wan_dir, legacy_run / "data", run, "iterations=2"), capsys)
    assert code in (0, None), err
    assert json.loads((run / "summary.json").read_text())["iterations"] == 2


def test_an_old_checkpoint_is_refused_on_a_dataset_grown_since(tiny_wan_dir, legacy_run, tmp_path, capsys):
    """Was: a checkpoint without the dataset identity resumed on any --data, here the dataset after `synthesize` added
    items to it (as docs/synvid.md says a grown prompt file does): iteration 1 on 10 items, the rest on 12, exit 0."""
    from conftest import TINY_PROMPTS

    from accvideo.synthesize import SynthConfig, synthesize

    grown = shutil.copytree(legacy_run / "data", tmp_path / "grown")
    (tmp_path / "p.txt").write_text("\n".join([*TINY_PROMPTS, "a red star", "a blue cat"]) + "\n")
    synth = dict(steps=10, key_steps=5, frames=9, height=32, width=32, guidance=3.0, shard_size=5, batch=5)
    synthesize(
        SynthConfig(teacher=str(tiny_wan_dir), prompts=str(tmp_path / "p.txt"), out=str(grown), device="cpu", **synth),
        progress=False,
    )
    run = shutil.copytree(legacy_run / "run", tmp_path / "run")
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    line = one_line_error(distill_args(tiny_wan_dir, grown, run, "iterations=2"), capsys, "did not record its dataset")
    assert "use another --out" in line
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before  # nothing rewritten


def test_a_run_from_before_several_settings_names_them_all_in_one_line(tiny_wan_dir, legacy_run, tmp_path, capsys):
    """Was: one refusal per setting whose default changed since the run began (seven reruns for a decoder of
    2 December), each naming one more setting to give."""
    from accvideo.core.files import load_state_file
    from accvideo.distill.checkpoint import save_checkpoint

    run = shutil.copytree(legacy_run / "run", tmp_path / "run")
    state = load_state_file(run / "checkpoint.pt", "checkpoint", "")
    del state["config"]["adv_warmup"], state["config"]["r1"]  # settings the older version did not have
    save_checkpoint(run / "checkpoint.pt", state)
    args = distill_args(tiny_wan_dir, legacy_run / "data", run, "iterations=2", "adv_warmup=1", "r1=0.5")
    line = one_line_error(args, capsys, "holds a run whose settings differ from the ones given in 2: ")
    assert line.endswith("resume it with adv_warmup=0 r1=0.0"), line
    code, _, err = run_cli([*args[:-2], "adv_warmup=0", "r1=0.0"], capsys)  # as the line says: it resumes
    assert code in (0, None), err
