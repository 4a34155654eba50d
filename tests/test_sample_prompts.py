"""`accvideo sample --prompts FILE --out DIR`: one clip a row, equal to the single-clip command's, independent of
--batch, resumable after a stop, and readable by `accvideo evaluate --videos DIR`."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from cli_helpers import run_cli, sample_video
from test_wan_i2v import picture

import accvideo.sample.batch as batch
from accvideo.evaluate.folder import load_video_folder
from accvideo.world import item_seed

SMALL = ["--steps", "2", "--frames", "5", "--size", "32x32", "--device", "cpu"]
PROMPTS = ["a red circle moving left", "a blue square moving right", "a green triangle moving up", "a cat"]


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def prompt_file(tmp_path, prompts=PROMPTS, name="prompts.txt"):
    path = tmp_path / name
    path.write_text("\n".join(prompts) + "\n")
    return path


def capture(monkeypatch) -> dict:
    """The frames (F, H, W, 3) `sample --prompts` writes, by file name, captured before encoding."""
    seen, real = {}, batch.write_video

    def hook(path, video, fps, *rest):
        seen[path.name] = video.clone()
        return real(path, video, fps, *rest)

    monkeypatch.setattr(batch, "write_video", hook)
    return seen


def sample_rows(model, prompts, out, capsys, *args):
    code, stdout, err = run_cli(
        ["sample", "--model", str(model), "--prompts", str(prompts), "--out", str(out), *SMALL, *args], capsys
    )
    assert code in (0, None), err
    return stdout


def manifest(out) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def test_each_clip_is_the_single_clip_command_of_its_row(tiny_wan_dir, tmp_path, capsys):
    prompts = prompt_file(tmp_path)
    sample_rows(tiny_wan_dir, prompts, tmp_path / "clips", capsys, "--seed", "7")
    rows = manifest(tmp_path / "clips")
    assert [r["prompt"] for r in rows] == PROMPTS
    assert [r["seed"] for r in rows] == [item_seed(7, i) for i in range(4)]  # as synthesize draws them
    assert len({r["seed"] for r in rows}) == 4
    for i in (0, 3):  # the same file, byte for byte, as `accvideo sample --prompt P --seed S`
        one = tmp_path / f"one{i}.mp4"
        code, _, err = run_cli(
            ["sample", "--model", str(tiny_wan_dir), "--prompt", PROMPTS[i], "--seed", str(rows[i]["seed"]),
             *SMALL, "--out", str(one)],
            capsys,
        )  # fmt: skip
        assert code in (0, None), err
        assert digest(one) == digest(tmp_path / "clips" / rows[i]["file"])
    assert digest(tmp_path / "clips" / "000000.mp4") != digest(tmp_path / "clips" / "000001.mp4")
    clips, pairs, files = load_video_folder(tmp_path / "clips")  # the folder `accvideo evaluate --videos` reads
    assert pairs == [(r["prompt"], r["seed"]) for r in rows] and files == [f"{i:06d}.mp4" for i in range(4)]
    assert clips.shape == (4, 5, 32, 32, 3)


def test_batch_changes_no_clip_beyond_rounding(tiny_wan_dir, tmp_path, capsys, monkeypatch):
    prompts = prompt_file(tmp_path)
    one = capture(monkeypatch)
    sample_rows(tiny_wan_dir, prompts, tmp_path / "b1", capsys, "--batch", "1")
    three = capture(monkeypatch)
    sample_rows(tiny_wan_dir, prompts, tmp_path / "b3", capsys, "--batch", "3")
    assert sorted(one) == sorted(three) == [f"{i:06d}.mp4" for i in range(4)]
    for name in one:
        torch.testing.assert_close(three[name], one[name], atol=1e-4, rtol=0)
    assert (one["000000.mp4"] - one["000001.mp4"]).abs().max() > 0.05  # the rows differ: the check is not vacuous


def test_a_stopped_run_resumes_with_the_rows_it_lacks(tiny_wan_dir, tmp_path, capsys, monkeypatch):
    prompts, out = prompt_file(tmp_path), tmp_path / "clips"
    real, calls = batch.write_video, []

    def fail_third(path, video, fps, *rest):
        calls.append(path.name)
        if len(calls) == 4:
            raise KeyboardInterrupt  # Ctrl-C while the last clip of the second batch is written
        return real(path, video, fps, *rest)

    monkeypatch.setattr(batch, "write_video", fail_third)
    code, _, err = run_cli(["sample", "--model", str(tiny_wan_dir), "--prompts", str(prompts), "--out", str(out),
                            *SMALL, "--batch", "2"], capsys)  # fmt: skip
    assert code == 130 and "interrupted" in err
    assert [r["file"] for r in manifest(out)] == ["000000.mp4", "000001.mp4"]  # the second batch was not whole
    assert (out / "000002.mp4").is_file()  # written, not listed: sampled again
    with open(out / "manifest.jsonl", "a") as f:  # a line half appended when the run was killed
        f.write('{"file": "000002.mp4", "prom')
    monkeypatch.setattr(batch, "write_video", real)
    code, _, err = run_cli(["sample", "--model", str(tiny_wan_dir), "--prompts", str(prompts), "--out", str(out),
                            *SMALL, "--batch", "2"], capsys)  # fmt: skip
    assert code in (0, None), err
    monkeypatch.setattr(batch, "write_video", lambda *a: pytest.fail("a listed clip was sampled again"))
    stdout = sample_rows(tiny_wan_dir, prompts, out, capsys, "--batch", "3")  # --batch is not a clip's setting
    assert "wrote 0 clips" in stdout and "4 kept" in stdout
    whole = tmp_path / "whole"
    monkeypatch.setattr(batch, "write_video", real)
    sample_rows(tiny_wan_dir, prompts, whole, capsys, "--batch", "2")
    assert manifest(out) == manifest(whole)
    assert [digest(out / r["file"]) for r in manifest(out)] == [digest(whole / r["file"]) for r in manifest(whole)]


def test_an_edited_prompt_file_samples_only_the_changed_rows(tiny_wan_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "clips"
    sample_rows(tiny_wan_dir, prompt_file(tmp_path), out, capsys)
    before = {r["file"]: digest(out / r["file"]) for r in manifest(out)}
    edited = [PROMPTS[0], "a yellow star moving down", PROMPTS[2]]  # row 1 changed, row 3 gone
    seen = capture(monkeypatch)
    stdout = sample_rows(tiny_wan_dir, prompt_file(tmp_path, edited), out, capsys)
    assert sorted(seen) == ["000001.mp4"] and "2 kept" in stdout
    assert [r["prompt"] for r in manifest(out)] == edited
    assert digest(out / "000000.mp4") == before["000000.mp4"] and digest(out / "000002.mp4") == before["000002.mp4"]
    assert digest(out / "000001.mp4") != before["000001.mp4"]
    assert not (out / "000003.mp4").exists()  # the clip of the row the file no longer has


def test_other_settings_are_refused_and_change_nothing(tiny_wan_dir, tmp_path, capsys):
    prompts, out = prompt_file(tmp_path), tmp_path / "clips"
    sample_rows(tiny_wan_dir, prompts, out, capsys)
    before = {p.name: digest(p) for p in out.iterdir()}
    code, _, err = run_cli(["sample", "--model", str(tiny_wan_dir), "--prompts", str(prompts), "--out", str(out),
                            *SMALL, "--steps", "3"], capsys)  # fmt: skip
    assert code == 2 and err.count("\n") == 1
    assert "made with steps 2, and this run's is 3" in err and f"delete {out}" in err
    assert {p.name: digest(p) for p in out.iterdir()} == before


@pytest.mark.parametrize(
    "args, words",
    [
        (["--prompt", "a dog"], "not both"),
        (["--image", "x.png"], '"image" path'),
        (["--out", "clips.mp4"], "--out is a folder"),
    ],
)
def test_conflicting_flags_are_one_line(tiny_wan_dir, tmp_path, capsys, args, words):
    prompts = prompt_file(tmp_path)
    code, _, err = run_cli(["sample", "--model", str(tiny_wan_dir), "--prompts", str(prompts), *SMALL, *args], capsys)
    assert code == 2 and err.count("\n") == 1 and words in err


def test_batch_without_prompts_is_one_line(tiny_wan_dir, capsys):
    code, _, err = run_cli(["sample", "--model", str(tiny_wan_dir), "--batch", "2", *SMALL], capsys)
    assert code == 2 and err.count("\n") == 1 and "--batch goes with --prompts" in err


def test_image_rows_give_the_single_clip_commands_clip(tiny_i2v_dir, tmp_path, capsys, monkeypatch):
    for i in range(2):
        picture(20 + i, (40, 32)).save(tmp_path / f"{i}.png")  # not 32x32: fitted by crop, as --image is
    rows = [{"prompt": PROMPTS[i], "seed": 11 + i, "image": f"{i}.png"} for i in range(2)]
    prompts = tmp_path / "rows.jsonl"
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    seen = capture(monkeypatch)
    stdout = sample_rows(tiny_i2v_dir, prompts, tmp_path / "clips", capsys, "--batch", "2")
    assert "2 image(s) are not 32x32" in stdout
    again = sample_rows(tiny_i2v_dir, prompts, tmp_path / "clips", capsys, "--batch", "2")
    assert "2 of 2 clips are already in" in again and "image(s)" not in again  # kept rows' images: nothing resized
    assert [r["image"] for r in manifest(tmp_path / "clips")] == [str(tmp_path / f"{i}.png") for i in range(2)]
    one = sample_video(tiny_i2v_dir, tmp_path / "one.mp4", capsys, monkeypatch, "--prompt", PROMPTS[1], "--seed",
                       "12", "--image", str(tmp_path / "1.png"), *SMALL)  # fmt: skip
    torch.testing.assert_close(seen["000001.mp4"], one, atol=1e-4, rtol=0)
    (tmp_path / "text.txt").write_text("a dog\n")
    code, _, err = run_cli(["sample", "--model", str(tiny_i2v_dir), "--prompts", str(tmp_path / "text.txt"),
                            "--out", str(tmp_path / "c2"), *SMALL], capsys)  # fmt: skip
    assert code == 2 and "has no image" in err and not (tmp_path / "c2").exists()


def test_two_torchrun_processes_write_the_clips_of_one(tiny_wan_dir, tmp_path):
    """Each rank samples its share of every round; rank 0 keeps the manifest. Five rows on two ranks: the last round
    has one row, so rank 1 samples nothing in it and still takes part in the round's gather."""
    import os
    import subprocess
    import sys

    prompts = prompt_file(tmp_path, [*PROMPTS, "a white circle moving down"])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    args = ["-m", "accvideo", "sample", "--model", str(tiny_wan_dir), "--prompts", str(prompts), *SMALL]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    two = subprocess.run([*launcher, *args, "--out", str(tmp_path / "two")], env=env, capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("wrote 5 clips") == 1  # rank 0 reports for both
    one = subprocess.run([sys.executable, *args, "--out", str(tmp_path / "one")], env=env, capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert one.returncode == 0, one.stderr[-3000:]
    rows = manifest(tmp_path / "one")
    assert manifest(tmp_path / "two") == rows and len(rows) == 5
    for r in rows:  # byte for byte
        assert digest(tmp_path / "two" / r["file"]) == digest(tmp_path / "one" / r["file"]), r["file"]
    assert "cpu x 2" in (tmp_path / "two" / "sample.yaml").read_text()
    assert not (tmp_path / "two" / ".accvideo-lock").exists()


@pytest.mark.parametrize("stop", ["error", "ctrl-c"])
def test_an_error_or_ctrl_c_midway_is_the_last_line_not_glued_to_the_progress_bar(
    stop, tiny_wan_dir, tmp_path, capsys, monkeypatch
):
    """The bar was left open: the line went on after it (`| 3/40 [...]interrupted`), and the bar drew itself again
    after the line when it was collected."""
    from accvideo.errors import AccVideoError

    calls, real = [], batch.write_video

    def fails_at_the_third(path, *rest):
        calls.append(path)
        if len(calls) == 3:
            raise AccVideoError("the disk went away") if stop == "error" else KeyboardInterrupt
        return real(path, *rest)

    monkeypatch.setattr(batch, "write_video", fails_at_the_third)
    argv = ["sample", "--model", str(tiny_wan_dir), "--prompts", str(prompt_file(tmp_path)), *SMALL]
    code, _, err = run_cli([*argv, "--out", str(tmp_path / "clips")], capsys)
    last = "error: the disk went away" if stop == "error" else "interrupted"
    assert code == (2 if stop == "error" else 130), err
    assert "sample:" in err and err.endswith(f"\n{last}\n"), repr(err[-300:])


def test_an_image_damaged_past_its_header_is_refused_before_the_model_loads(
    tiny_i2v_dir, tmp_path, capsys, monkeypatch
):
    """Only the header was read before loading: the rows before the damaged one were sampled and written, and
    `sample --image` loaded the model first."""
    import accvideo.sample.run as sample_run

    def never(*a, **kw):
        raise AssertionError("loaded before the refusal")

    monkeypatch.setattr(sample_run, "open_model", never)
    picture(0, (64, 64)).save(tmp_path / "whole.png")
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])  # the header parses, the pixels end early
    rows = [{"prompt": "a red circle", "image": "whole.png"}] * 2 + [{"prompt": "a cat", "image": "cut.png"}]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "clips"
    args = ["sample", "--model", str(tiny_i2v_dir), *SMALL]
    code, _, err = run_cli([*args, "--prompts", str(tmp_path / "rows.jsonl"), "--out", str(out)], capsys)
    assert code == 2 and err.startswith(f"error: line 3 of {tmp_path / 'rows.jsonl'}: image ") and "is damaged" in err
    assert err.count("\n") == 1 and not out.exists()
    code, _, err = run_cli([*args, "--image", str(tmp_path / "cut.png"), "--out", str(tmp_path / "c.mp4")], capsys)
    assert code == 2 and err.startswith(f"error: image {tmp_path / 'cut.png'} is damaged (") and err.count("\n") == 1


def test_an_edited_manifest_never_removes_another_file(tiny_wan_dir, tmp_path, capsys):
    """A removed row's line may name only a clip of this command's convention: a notes file or the folder's marker
    named by an edited manifest line is kept."""
    out = tmp_path / "clips"
    sample_rows(tiny_wan_dir, prompt_file(tmp_path, PROMPTS[:3]), out, capsys)
    (out / "rows.txt").write_text("notes\n")
    marker = (out / ".accvideo-output.json").read_bytes()
    with open(out / "manifest.jsonl", "a") as f:
        for name in ("rows.txt", ".accvideo-output.json", "../outside.txt"):
            f.write(json.dumps({"file": name, "prompt": "x", "seed": 1}) + "\n")
    (tmp_path / "outside.txt").write_text("mine\n")
    sample_rows(tiny_wan_dir, prompt_file(tmp_path, PROMPTS[:2]), out, capsys)
    assert (out / "rows.txt").read_text() == "notes\n" and (out / ".accvideo-output.json").read_bytes() == marker
    assert (tmp_path / "outside.txt").read_text() == "mine\n"
    assert not (out / "000002.mp4").exists() and [r["file"] for r in manifest(out)] == ["000000.mp4", "000001.mp4"]


def test_listed_clips_without_their_settings_record_are_refused(tiny_wan_dir, tmp_path, capsys):
    """sample.yaml deleted: nothing says how the listed clips were made, so none is kept with other settings, and
    none is overwritten either (they may be the only copy): one line, the folder unchanged."""
    prompts, out = prompt_file(tmp_path), tmp_path / "clips"
    sample_rows(tiny_wan_dir, prompts, out, capsys)
    (out / "sample.yaml").unlink()
    before = {p.name: digest(p) for p in out.iterdir()}
    code, _, err = run_cli(["sample", "--model", str(tiny_wan_dir), "--prompts", str(prompts), "--out", str(out),
                            *SMALL, "--steps", "3"], capsys)  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and "no sample.yaml" in err and f"delete {out}" in err
    assert {p.name: digest(p) for p in out.iterdir()} == before


def test_a_truncated_or_replaced_clip_is_sampled_again(tiny_wan_dir, tmp_path, capsys, monkeypatch):
    prompts, out = prompt_file(tmp_path), tmp_path / "clips"
    sample_rows(tiny_wan_dir, prompts, out, capsys)
    assert all(r["sha256"] == digest(out / r["file"]) for r in manifest(out))
    whole = {r["file"]: digest(out / r["file"]) for r in manifest(out)}
    (out / "000001.mp4").write_bytes(b"")  # truncated
    (out / "000002.mp4").write_bytes((out / "000000.mp4").read_bytes())  # replaced by another clip
    seen = capture(monkeypatch)
    stdout = sample_rows(tiny_wan_dir, prompts, out, capsys)
    assert sorted(seen) == ["000001.mp4", "000002.mp4"] and "2 kept" in stdout
    assert {r["file"]: digest(out / r["file"]) for r in manifest(out)} == whole
    assert [r["sha256"] for r in manifest(out)] == list(whole.values())


def test_an_older_manifest_without_sha256_keeps_its_clips(tiny_wan_dir, tmp_path, capsys, monkeypatch):
    prompts, out = prompt_file(tmp_path), tmp_path / "clips"
    sample_rows(tiny_wan_dir, prompts, out, capsys)
    rows = [{k: v for k, v in r.items() if k != "sha256"} for r in manifest(out)]
    (out / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setattr(batch, "write_video", lambda *a: pytest.fail("a listed clip was sampled again"))
    assert "4 kept" in sample_rows(tiny_wan_dir, prompts, out, capsys)


@pytest.mark.parametrize("name", ["000001.mp4", "000003.mp4", "manifest.jsonl"])
def test_a_folder_where_a_clip_or_the_manifest_goes_is_one_line(tiny_wan_dir, tmp_path, capsys, name):
    """A folder at a resampled row's clip, a removed row's clip or the manifest: one line naming it, no traceback."""
    out = tmp_path / "clips"
    sample_rows(tiny_wan_dir, prompt_file(tmp_path), out, capsys)
    (out / name).unlink()
    (out / name).mkdir()
    (out / name / "keep.txt").write_text("mine\n")
    three = prompt_file(tmp_path, PROMPTS[:3])
    code, _, err = run_cli(["sample", "--model", str(tiny_wan_dir), "--prompts", str(three), "--out", str(out),
                            *SMALL], capsys)  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and str(out / name) in err and "remove it" in err, err
    assert (out / name / "keep.txt").read_text() == "mine\n"


@pytest.mark.parametrize("name", ["manifest.jsonl", "sample.yaml"])
def test_a_fifo_at_the_manifest_or_settings_is_one_line_not_a_hang(tiny_wan_dir, tmp_path, capsys, name):
    import os

    out = tmp_path / "clips"
    sample_rows(tiny_wan_dir, prompt_file(tmp_path), out, capsys)
    (out / name).unlink()
    os.mkfifo(out / name)
    code, _, err = run_cli(["sample", "--model", str(tiny_wan_dir), "--prompts", str(prompt_file(tmp_path)),
                            "--out", str(out), *SMALL], capsys)  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and str(out / name) in err and "FIFO" in err.upper(), err


def test_the_same_decoder_spelled_or_placed_another_way_resumes(tiny_wan_dir, tmp_path, capsys, monkeypatch):
    """--decoder counts by its weights' identity: DEC, ./DEC, DEC/.. /DEC or a moved copy resume the folder."""
    import shutil

    from test_decoder import small

    from accvideo.models.decoder import save_decoder, vae_identity

    save_decoder(tmp_path / "dec", small(seed=0), vae_identity(tiny_wan_dir), "wan")
    prompts, out = prompt_file(tmp_path, PROMPTS[:1]), tmp_path / "clips"
    sample_rows(tiny_wan_dir, prompts, out, capsys, "--decoder", str(tmp_path / "dec"))
    shutil.copytree(tmp_path / "dec", tmp_path / "moved")
    monkeypatch.setattr(batch, "write_video", lambda *a: pytest.fail("a listed clip was sampled again"))
    monkeypatch.chdir(tmp_path)
    for spelled in ("./dec", str(tmp_path / "dec" / ".." / "dec"), str(tmp_path / "moved")):
        assert "1 kept" in sample_rows(tiny_wan_dir, prompts, out, capsys, "--decoder", spelled)
