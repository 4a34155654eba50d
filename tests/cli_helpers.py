"""What several test files share: the CLI run in-process, and the clip `accvideo sample` writes, captured."""

from __future__ import annotations

import pytest

from accvideo.cli import main


def run_cli(args: list[str], capsys) -> tuple[int | None, str, str]:
    """`accvideo ARGS` in this process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exc:
        main(args)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


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
