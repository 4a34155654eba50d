"""Video writes that fail (ffmpeg's exit status, a full disk, a file-size limit): one line naming the file and the
cause, nothing half-written under a final name, no temporary left, and what was there before kept whole; `sample`
puts its clip, GIF and settings YAML into place together, so a failure never leaves a mixed set.

A file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored) makes real writes fail with EFBIG in a subprocess; a fake ffmpeg
(IMAGEIO_FFMPEG_EXE) fails the way a full disk makes the real one fail."""

from __future__ import annotations

import errno
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from cli_helpers import run_cli

from accvideo.core.video import read_video, write_video
from accvideo.errors import AccVideoError

SMALL = ["--steps", "2", "--frames", "5", "--size", "32x32", "--device", "cpu"]

# `accvideo ARGS` under a file-size limit of LIMIT bytes: a write past it fails with EFBIG (SIGXFSZ ignored)
LIMITED = (
    "import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
    "limit = int(sys.argv[1]); resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)); "
    "from accvideo.cli import main; main(sys.argv[2:])"
)


def _limited_cli(limit: int, args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", LIMITED, str(limit), *args], capture_output=True, text=True, timeout=120
    )


def _hashes(folder: Path) -> dict[str, str]:
    """Every file in `folder` (hidden ones too: the ledger, any temporary) by name: its SHA-256."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _one_error_line(err: str, *words: str) -> str:
    """The run's single `error:` line, checked for `words`; nothing of a traceback or of ffmpeg's own lines."""
    assert "Traceback" not in err and "Exception ignored" not in err, err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err
    line = errors[0][errors[0].index("error:") :]  # after a progress bar's carriage-returned text
    for word in words:
        assert word in line, line
    return line


def _fake_ffmpeg(folder: Path, line: str) -> Path:
    """An ffmpeg that writes a few bytes to its output (the last argument), prints `line` and exits 1: what the real
    one does when the disk fills mid-clip."""
    exe = folder / "ffmpeg"
    body = f"for last; do :; done\ncase $last in *.mp4) printf partial > \"$last\";; esac\necho '{line}' >&2\nexit 1\n"
    exe.write_text("#!/bin/sh\n" + body)
    exe.chmod(0o755)
    return exe


@pytest.mark.parametrize(
    ("line", "cause"),
    [
        ("[out#0/mp4 @ 0x1] Error writing trailer: No space left on device", errno.ENOSPC),
        ("[out#0/mp4 @ 0x1] Error writing trailer: File too large", errno.EFBIG),
        ("Unknown encoder libx265", "the encoder failed: Unknown encoder libx265); choose another --out"),
        # no ffmpeg (IMAGEIO_FFMPEG_EXE=/bin/false): it said "choose another --out", which cannot help
        ("", "exited with status 1 and said nothing); set IMAGEIO_FFMPEG_EXE to a working ffmpeg"),
    ],
)
def test_an_ffmpeg_that_fails_is_one_error_and_the_earlier_clip_is_kept(tmp_path, monkeypatch, capfd, line, cause):
    """imageio ignored ffmpeg's exit status: a clip cut short was renamed into place and reported written. Now a file
    error ffmpeg names is an OSError of that cause naming the clip (cli.fault_line's one line), any other failure one
    AccVideoError line; ffmpeg's own line never reaches the terminal."""
    rng = np.random.default_rng(0)
    clip = tmp_path / "out" / "clip.mp4"
    clip.parent.mkdir()
    before = read_video(write_video(clip, rng.integers(0, 255, (5, 16, 16, 3), dtype=np.uint8), fps=8))
    kept = _hashes(clip.parent)
    with monkeypatch.context() as patch, pytest.raises((OSError, AccVideoError)) as exc:  # read_video: real ffmpeg
        patch.setenv("IMAGEIO_FFMPEG_EXE", str(_fake_ffmpeg(tmp_path, line)))
        write_video(clip, rng.integers(0, 255, (5, 16, 16, 3), dtype=np.uint8), fps=8)
    if isinstance(cause, int):
        assert isinstance(exc.value, OSError) and exc.value.errno == cause and exc.value.filename == str(clip)
    else:
        message = str(exc.value)
        assert isinstance(exc.value, AccVideoError) and message.startswith(f"cannot write video {clip} ")
        assert cause in message and len(message.splitlines()) == 1
    assert not line or line not in capfd.readouterr().err  # ffmpeg's line is read, never passed to the terminal
    assert _hashes(clip.parent) == kept  # the earlier clip whole, no temporary beside it
    assert np.array_equal(read_video(clip), before)


def test_a_write_past_the_file_size_limit_is_one_line_and_keeps_the_earlier_clip(tiny_wan_dir, tmp_path, capsys):
    """`ulimit -f` below the clip's size: ffmpeg failed with EFBIG after writing 2,048 bytes, which were kept under
    the clip's name with exit code 0. Now: exit 2, fault_line's one line naming the clip and ulimit -f, the earlier
    clip kept."""
    out = tmp_path / "c" / "clip.mp4"
    code, _, err = run_cli(
        ["sample", "--model", str(tiny_wan_dir), "--prompt", "red", *SMALL, "--out", str(out)], capsys
    )
    assert code in (0, None), err
    kept = _hashes(out.parent)
    run = _limited_cli(2048, ["sample", "--model", str(tiny_wan_dir), "--prompt", "blue", *SMALL, "--out", str(out)])
    assert run.returncode == 2, run.stderr
    _one_error_line(run.stderr, f"file too large {out}:", "file-size limit (ulimit -f)", "nothing half-written")
    assert _hashes(out.parent) == kept  # clip, settings and ledger as they were; no temporary left
    assert read_video(out).shape == (5, 32, 32, 3)


def test_a_failed_gif_keeps_the_earlier_set_of_files_and_a_rerun_replaces_it(tiny_wan_dir, tmp_path, capsys):
    """The GIF failing after the clip was renamed left the new clip beside the old GIF and old settings (prompt:
    red), after a 20-line 'Exception ignored in PluginV3.__del__' traceback. Now every file is written before any is
    renamed: the old set stays whole, and a rerun (the ledger vouches for each file) writes the new set."""
    out = tmp_path / "c" / "clip.mp4"
    base = ["sample", "--model", str(tiny_wan_dir), *SMALL, "--out", str(out), "--gif"]
    code, _, err = run_cli([*base, "--prompt", "red"], capsys)
    assert code in (0, None), err
    kept = _hashes(out.parent)
    mp4, gif = out.stat().st_size, out.with_suffix(".gif").stat().st_size
    assert gif > mp4 + 2000  # a limit between them fails the GIF only, after the clip is whole
    run = _limited_cli((mp4 + gif) // 2, [*base, "--prompt", "blue"])
    assert run.returncode == 2, run.stderr
    _one_error_line(run.stderr, f"file too large {out.with_suffix('.gif')}:", "file-size limit (ulimit -f)")
    assert _hashes(out.parent) == kept
    assert yaml.safe_load(out.with_suffix(".yaml").read_text())["prompt"] == "red"

    code, _, err = run_cli([*base, "--prompt", "blue"], capsys)  # the rerun, no limit: the new set, recorded
    assert code in (0, None), err
    now = _hashes(out.parent)
    assert yaml.safe_load(out.with_suffix(".yaml").read_text())["prompt"] == "blue"
    assert all(now[n] != kept[n] for n in ("clip.mp4", "clip.gif", "clip.yaml"))
    ledger = json.loads((out.parent / ".accvideo-files.json").read_text())["files"]
    assert {n: e["sha256"] for n, e in ledger.items()} == {n: now[n] for n in ("clip.mp4", "clip.gif", "clip.yaml")}
    assert sorted(now) == [".accvideo-files.json", "clip.gif", "clip.mp4", "clip.yaml"]  # no temporary left


def test_a_failed_settings_file_keeps_the_earlier_clip(tiny_wan_dir, tmp_path, capsys, monkeypatch):
    """The YAML is written last: a full disk there left the new clip beside the old settings. Now the clip is only
    renamed into place once the settings are whole too; the line names the YAML, never its temporary name."""
    out = tmp_path / "c" / "clip.mp4"
    base = ["sample", "--model", str(tiny_wan_dir), *SMALL, "--out", str(out)]
    code, _, err = run_cli([*base, "--prompt", "red"], capsys)
    assert code in (0, None), err
    kept = _hashes(out.parent)
    real = Path.write_text

    def full_disk(self, *args, **kwargs):
        if ".yaml" in self.name:
            real(self, "prompt: blu", encoding="utf-8")  # a part was written when the disk filled
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_disk)
    code, _, err = run_cli([*base, "--prompt", "blue"], capsys)
    monkeypatch.undo()
    assert code == 2
    _one_error_line(err, f"no space left on the device writing {out.with_suffix('.yaml')};")
    assert _hashes(out.parent) == kept


def test_synthesize_videos_past_the_file_size_limit_keep_no_clip(tiny_wan_dir, tmp_path):
    """`synthesize --videos` kept a clip cut short at the limit under its final name and exited 0; now exit 2, one line
    saying how to go on, and no clip (the shard is not written either, so the rerun redoes both)."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle moving left\n")
    out = tmp_path / "syn"
    args = ["synthesize", "--teacher", str(tiny_wan_dir), "--prompts", str(prompts), "--out", str(out), "--videos"]
    run = _limited_cli(2048, [*args, "--steps", "10", "--frames", "5", "--size", "32x32", "--device", "cpu"])
    assert run.returncode == 2, run.stderr
    _one_error_line(run.stderr, "File too large", "ulimit -f", "rerun the same command")
    assert not [p for p in out.rglob("*") if p.suffix in (".mp4", ".safetensors") or ".part" in p.name]
