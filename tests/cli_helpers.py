"""What several test files share: the CLI run in-process, its one-line refusals, the clip `accvideo sample` writes,
captured, and a distill run folder made by hand."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from accvideo.cli import main

# the two students each family's export tests distill (2 iterations of quick settings): full and LoRA rank 2
QUICK_STUDENTS = {"full": {}, "lora": {"lora_rank": 2}}


def quick_distill_config(teacher, data, out, **extra):
    """The quick distill settings of the family tests' fixtures (2 iterations, batch 2, CPU), `extra` on top."""
    from accvideo.distill import DistillConfig

    return DistillConfig(
        teacher=str(teacher),
        data=str(data),
        out=str(out),
        iterations=2,
        batch=2,
        lr=1e-3,
        head_lr=1e-4,
        head_channels=8,
        device="cpu",
        **extra,
    )


def run_cli(args: list[str], capsys) -> tuple[int | None, str, str]:
    """`accvideo ARGS` in this process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exc:
        main(args)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def one_line_error(args: list[str], capsys, message: str) -> str:
    """`accvideo ARGS` refused: exit code 2 and one `error:` line holding `message`; the line."""
    code, _, err = run_cli(args, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    return lines[0]


def hand_made_run(teacher: Path, run: Path, key_sigmas: list[float]) -> Path:
    """A distill run folder made by hand: `teacher`'s transformer as a full student on `key_sigmas`, with its
    student.json (seconds, where a trained run takes a distill)."""
    from accvideo.core.outputs import mark_folder
    from accvideo.models.identity import teacher_identity

    shutil.copytree(teacher / "transformer", run / "student" / "transformer")
    info = {
        "format": "accvideo.student/1",
        "family": "wan",
        "key_sigmas": key_sigmas,
        "teacher": teacher_identity(teacher),
        "teacher_dir": str(teacher.resolve()),
        "lora": None,
        "weights": "transformer",
    }
    (run / "student" / "student.json").write_text(json.dumps(info))
    mark_folder(run, "distill")
    return run


def sample_video(model, out, capsys, monkeypatch, *args: str):
    """What `accvideo sample --model MODEL --out OUT ARGS` generates, (F, H, W, 3) float in [0, 1], captured before
    encoding; a failed run fails the test with its error."""
    import accvideo.sample.run as sample_run

    seen, real = [], sample_run.write_video

    def capture(path, video, fps, *rest):
        seen.append(video.clone())
        return real(path, video, fps, *rest)

    monkeypatch.setattr(sample_run, "write_video", capture)
    code, _, err = run_cli(["sample", "--model", str(model), *args, "--out", str(out)], capsys)
    assert code in (0, None), err
    return seen[0]


def run_forked(target, args: list[tuple], timeout: float) -> None:
    """`target(*a)` for every `a` in forked processes at once (writers racing on one folder); each must exit 0."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=target, args=a) for a in args]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout)
    assert all(proc.exitcode == 0 for proc in procs), [proc.exitcode for proc in procs]
