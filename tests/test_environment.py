"""The process environment a command runs in: the locale's encoding, and paths of bytes that are no UTF-8.

Found by running every verb under a sitecustomize that refused and logged every socket connection and name lookup
(none was made, with HF_HUB_OFFLINE set or unset and HF_ENDPOINT unroutable), and under odd TMPDIR, HOME, HF_HOME,
XDG_CACHE_HOME, TORCH_HOME, PATH, umask, ulimit -n / -f, stdin and working folders (all handled already)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
from cli_helpers import run_cli

from accvideo.core.files import write_text_atomic
from accvideo.evaluate.folder import write_video_folder

NOT_UTF8 = "r\udcffn"  # the byte 0xff, as Python holds it in an argument or a file name


def test_a_non_ascii_argument_in_an_ascii_locale_is_one_line_naming_pythonutf8(tmp_path):
    """LC_ALL=POSIX with PYTHONUTF8=0: Python reads argument bytes as surrogate escapes, so `--negative-prompt 'flou
    é'` was a UnicodeEncodeError traceback writing the shard after the teacher loaded, a prompt `é` was encoded as the
    text '\\udcc3\\udca9', and a folder `tïny` was 'cannot load the pipeline ... re-download it'."""
    (tmp_path / "p.txt").write_text("a red circle moving left on a grey background\n")
    args = ["synthesize", "--prompts", "p.txt", "--out", "syn", "--steps", "2", "--key-steps", "1"]
    env = {**os.environ, "LC_ALL": "POSIX", "PYTHONUTF8": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "accvideo", *args, "--negative-prompt", "flou é"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "PYTHONUTF8=1" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "syn").exists()


def test_a_text_file_naming_a_path_of_bytes_that_are_no_utf8_is_written(tmp_path):
    """`evaluate --videos` of a folder whose name holds the byte 0xff names it in metrics.md: the strict UTF-8 write
    was a traceback after metrics.json had been written. The file holds the name's own bytes."""
    out = write_text_atomic(tmp_path / "m.md", f"# ToyBench: {NOT_UTF8}\n")
    assert out.read_bytes() == b"# ToyBench: r\xffn\n"


def test_evaluate_of_a_clip_folder_whose_name_is_no_utf8_writes_its_report(tmp_path, capsys):
    clips = np.random.default_rng(0).integers(0, 256, (2, 17, 64, 64, 3), dtype=np.uint8)
    videos = tmp_path / f"clips-{NOT_UTF8}"
    write_video_folder(videos, clips, [("a red circle moving left on a grey background", 0)] * 2, fmt="npy")
    code, _, err = run_cli(
        ["evaluate", "--videos", str(videos), "--out", str(tmp_path / "ev"), "--device", "cpu"], capsys
    )
    assert code == 0, err
    assert b"r\xffn" in (tmp_path / "ev" / "metrics.md").read_bytes()


def test_a_model_or_synvid_path_that_is_no_utf8_is_refused_before_anything_is_written(tiny_wan_dir, tmp_path, capsys):
    """safetensors opens only UTF-8 paths: `synthesize --out` of such a folder wrote a SynVid nothing could read
    (distill: 'rerun the synthesize command with --overwrite', which rewrote it as unreadable), and a teacher there was
    'cannot load the pipeline ... re-download it'."""
    (tmp_path / "p.txt").write_text("a red circle moving left on a grey background\n")
    synth = ["synthesize", "--prompts", str(tmp_path / "p.txt"), "--steps", "2", "--key-steps", "1", "--device", "cpu"]
    code, _, err = run_cli([*synth, "--teacher", str(tiny_wan_dir), "--out", str(tmp_path / NOT_UTF8)], capsys)
    assert code == 2 and "--out" in err and "is not UTF-8 (byte 0xff at column" in err, err
    assert not os.path.exists(os.fsencode(tmp_path) + b"/r\xffn")
    teacher = tmp_path / f"t-{NOT_UTF8}"
    shutil.copytree(tiny_wan_dir, teacher)
    code, _, err = run_cli([*synth, "--teacher", str(teacher), "--out", str(tmp_path / "syn")], capsys)
    assert code == 2 and err.startswith("error: --teacher") and "safetensors opens only UTF-8 paths" in err, err
    assert not (tmp_path / "syn").exists()
