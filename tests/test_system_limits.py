"""Limits of the system, met for real: the file-size limit (ulimit -f) while a command writes, and a lock whose own
write failed. Each ends in one line that names the limit and the fix, keeps nothing half-written, and a rerun
without the limit recovers."""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from accvideo.core.files import save_state_file
from accvideo.core.outputs import LOCK, FolderLock
from accvideo.errors import AccVideoError

LIMIT_LINE = "file too large"


@contextmanager
def file_size_limit(n_bytes: int):
    """Writes past n_bytes fail with EFBIG in this process (SIGXFSZ ignored, as `trap '' XFSZ` does)."""
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (n_bytes, old_limit[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)


def accvideo_limited(args: list[str], n_bytes: int, cwd: Path) -> subprocess.CompletedProcess:
    """`python -m accvideo ARGS` under a file-size limit of n_bytes."""

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (n_bytes, resource.RLIM_INFINITY))

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "accvideo", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, preexec_fn=limit, timeout=300)


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_training_state_over_the_file_size_limit_is_efbig_and_keeps_the_previous_file(tmp_path):
    """torch.save's own error ("unexpected pos ...") names no cause: it was reported as an input/output error."""
    path = tmp_path / "state.pt"
    save_state_file(path, {"w": torch.zeros(10)})
    before = path.read_bytes()
    with file_size_limit(64 << 10), pytest.raises(OSError) as failed:
        save_state_file(path, {"w": torch.zeros(1 << 16)})  # 256 KB of tensor
    assert failed.value.errno == errno.EFBIG and failed.value.filename == str(path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["state.pt"]


def test_tiny_model_over_the_file_size_limit_is_one_line_and_the_rerun_equals_a_fresh_one(tmp_path, capsys):
    """safetensors' SafetensorError ("... os error 27 ...") was a traceback."""
    from cli_helpers import run_cli

    limited = accvideo_limited(["tiny-model", "--out", "tm"], 48 << 10, tmp_path)  # a process of its own: the limit
    lines = limited.stderr.strip().splitlines()
    assert limited.returncode == 2 and len(lines) == 1, limited.stderr
    assert lines[0].startswith(f"error: {LIMIT_LINE}") and "ulimit -f" in lines[0]
    for name in ("tm", "fresh"):  # without the limit: in this process (seconds fewer than two more processes)
        code, _, err = run_cli(["tiny-model", "--out", str(tmp_path / name)], capsys)
        assert code in (0, None), err
    assert files_under(tmp_path / "tm") == files_under(tmp_path / "fresh")


def test_export_over_the_file_size_limit_is_one_line_and_keeps_the_earlier_export(tmp_path, request, monkeypatch):
    """copytree's shutil.Error (a list of failures, no errno) was a traceback."""
    from test_hostile import Env

    run = Env(tmp_path, request, monkeypatch).student_run()
    first = accvideo_limited(["export", str(run), "--out", "e"], resource.RLIM_INFINITY, tmp_path)
    assert first.returncode == 0, first.stderr
    before = files_under(tmp_path / "e")
    limited = accvideo_limited(["export", str(run), "--out", "e"], 16 << 10, tmp_path)
    lines = limited.stderr.strip().splitlines()
    assert limited.returncode == 2 and len(lines) == 1, limited.stderr
    assert lines[0].startswith(f"error: {LIMIT_LINE}")
    assert files_under(tmp_path / "e") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e", "run"]  # no temporary export left beside it


def test_a_lock_whose_write_failed_is_removed_and_an_old_empty_one_is_taken_over(tmp_path, monkeypatch):
    """A full disk while the lock's holder was written left an empty lock, and every rerun was refused as held by
    'unknown writer'."""
    real = os.fdopen

    class Full:
        def __init__(self, fd, mode):
            self.f = real(fd, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, _text):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fdopen", Full)
    with pytest.raises(OSError):
        FolderLock(tmp_path, "synthesize")
    assert not (tmp_path / LOCK).exists()
    monkeypatch.setattr(os, "fdopen", real)

    (tmp_path / LOCK).write_text("")  # left by an older accvideo, or a writer killed between create and write
    with pytest.raises(AccVideoError, match="unknown writer"):  # a writer may be about to fill it
        FolderLock(tmp_path, "synthesize")
    old = time.time() - 60
    os.utime(tmp_path / LOCK, (old, old))
    lock = FolderLock(tmp_path, "synthesize")
    assert (tmp_path / LOCK).read_text() == lock.me
    lock.release()


def test_a_lock_the_read_only_disk_keeps_does_not_hide_the_error_that_stopped_the_run(tmp_path, monkeypatch):
    """The file system turned read-only mid-run: the checkpoint's write failed, then the lock's removal raised in the
    run's cleanup and its line replaced the real one (`Read-only file system: .accvideo-lock`)."""
    lock = FolderLock(tmp_path, "distill")
    real = Path.unlink

    def read_only(self, missing_ok=False):
        if self.name == LOCK:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", read_only)
    with pytest.raises(OSError) as failed, lock:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(tmp_path / "checkpoint.pt"))
    assert failed.value.filename == str(tmp_path / "checkpoint.pt")
    assert lock.path.read_text() == lock.me  # left behind: a rerun takes it over, its writer being gone


def test_a_small_file_over_the_limit_names_itself(tmp_path):
    """write() errors carry no file name: the full-disk line of a JSON or YAML file named none."""
    from accvideo.core.files import write_json_atomic

    with file_size_limit(1 << 10), pytest.raises(OSError) as failed:
        write_json_atomic(tmp_path / "summary.json", {"x": "y" * 4096})
    assert failed.value.errno == errno.EFBIG and failed.value.filename == str(tmp_path / "summary.json")
    assert list(tmp_path.iterdir()) == []


def test_a_loss_record_over_the_limit_names_its_file_and_leaves_no_torn_line(tmp_path):
    """An append to losses.jsonl past the file-size limit left a half record (invalid JSON, against the line's
    "nothing half-written was kept") and its error named no file."""
    from accvideo.distill.plots import LossLog, read_losses

    path = tmp_path / "losses.jsonl"
    log = LossLog(path, 0)
    log.write({"iteration": 1, "samples": 2, "traj": 0.5})
    before = path.read_bytes()
    with file_size_limit(len(before) + 16), pytest.raises(OSError) as failed:
        log.write({"iteration": 2, "samples": 4, "traj": 0.25, "note": "x" * 64})
    assert failed.value.errno == errno.EFBIG and failed.value.filename == str(path)
    assert path.read_bytes() == before and read_losses(path) == [{"iteration": 1, "samples": 2, "traj": 0.5}]


@pytest.mark.parametrize("unwritable", ["HOME", "MPLCONFIGDIR"])
def test_plots_with_a_config_folder_that_cannot_be_written_print_no_warning(unwritable, tmp_path):
    """matplotlib printed two warning lines (and rebuilt its font cache) on every run where HOME is read-only, or
    MPLCONFIGDIR names a folder it cannot make."""
    script = "from accvideo.core.plotting import pyplot; plt = pyplot(); plt.figure().savefig('x.png')"
    (tmp_path / "a-file").write_text("")
    env = {**os.environ, "HOME": "/proc", "TMPDIR": str(tmp_path)}
    env.pop("MPLCONFIGDIR", None), env.pop("XDG_CONFIG_HOME", None)
    if unwritable == "MPLCONFIGDIR":
        env.update(HOME=str(tmp_path), MPLCONFIGDIR=str(tmp_path / "a-file" / "mpl"))
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert (tmp_path / "x.png").stat().st_size > 0 and (tmp_path / f"accvideo-matplotlib-{os.getuid()}").is_dir()


def test_a_synvid_folder_deleted_under_synthesize_is_said_so(tiny_wan_dir, tmp_path, monkeypatch, capsys):
    """The line claimed its complete shards 'are kept' although the folder was gone."""
    import shutil

    import accvideo.synthesize.run as synthesize_run
    from accvideo.cli import main

    real = synthesize_run.write_shard

    def delete_then_write(root, *args):
        shutil.rmtree(root)  # the user's `rm -rf` while the run writes
        return real(root, *args)

    monkeypatch.setattr(synthesize_run, "write_shard", delete_then_write)
    (tmp_path / "p.txt").write_text("a red circle moving left\n")
    args = ["synthesize", "--teacher", str(tiny_wan_dir), "--prompts", str(tmp_path / "p.txt"), "--out"]
    with pytest.raises(SystemExit) as done:
        main([*args, str(tmp_path / "s"), "--steps", "2", "--key-steps", "2", "--frames", "5", "--size", "32x32"])
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip() and not x.startswith("synthesize:")]  # not its progress bar
    assert done.value.code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error: ") and "disappeared while synthesize wrote shard 0" in lines[0], err


def test_a_model_past_the_free_host_memory_is_refused_before_any_weight_is_read(tiny_wan_dir, tmp_path, capsys):
    """Loaded on the CPU past the free memory, the kernel killed the process without a word (a 14B Wan in float32 is
    57 GiB). The bytes are the loaded parameters' (the counted total equals the loaded pipeline's to the byte), for
    the parts a command loads (distill: the transformer alone)."""
    import accvideo.models as models
    from accvideo.models.base import LoadParts

    whole = models.load_adapter(tiny_wan_dir)
    loaded = {n: m for n, m in whole.pipe.components.items() if isinstance(m, torch.nn.Module)}
    nbytes = {n: sum(p.numel() * p.element_size() for p in m.parameters()) for n, m in loaded.items()}
    assert models.host_bytes(tiny_wan_dir, torch.float32) == sum(nbytes.values())
    alone = LoadParts(text=False, vae=False)
    assert models.host_bytes(tiny_wan_dir, torch.float32, alone) == nbytes["transformer"]
    assert models.host_bytes(tiny_wan_dir, torch.bfloat16, alone) == nbytes["transformer"] // 2
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(models, "available_memory", lambda: sum(nbytes.values()) - 1)
        with pytest.raises(AccVideoError, match=r"takes 0\.0 GiB in float32 on the CPU and this machine has 0\.0 GiB"):
            models.load_adapter(tiny_wan_dir)
        models.load_adapter(tiny_wan_dir, parts=alone)  # the transformer alone fits
        mp.setattr(models, "available_memory", lambda: sum(nbytes.values()))
        models.load_adapter(tiny_wan_dir)
        mp.setattr(models, "available_memory", lambda: sum(nbytes.values()) // 2)  # bfloat16 would fit: said so
        with pytest.raises(AccVideoError, match=r"run it on a GPU \(--device cuda\), --dtype bfloat16 \(0\.0 GiB\)"):
            models.load_adapter(tiny_wan_dir)
