"""The CLI: version, sampling to MP4/GIF with resolved settings, and one-line errors with exit code 2."""

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml
from cli_helpers import run_cli

from accvideo import __version__, cli
from accvideo.cli import MEMORY_FIXES, fault_line, main
from accvideo.core.video import read_video


def test_version(capsys):
    code, out, _ = run_cli(["--version"], capsys)
    assert code == 0 and out.strip() == f"accvideo {__version__}"


def test_sample_writes_video_gif_and_settings(tiny_wan_dir, tmp_path, capsys):
    out = tmp_path / "new" / "clip.mp4"
    args = [
        "sample",
        "--model",
        str(tiny_wan_dir),
        "--prompt",
        "a red circle",
        "--steps",
        "3",
        "--guidance",
        "2",
        "--shift",
        "3",
        "--frames",
        "9",
        "--size",
        "32x48",
        "--seed",
        "7",
        "--out",
        str(out),
        "--gif",
    ]
    code, _, err = run_cli(args, capsys)
    assert code in (0, None), err
    video = read_video(out)
    assert video.shape == (9, 32, 48, 3)
    assert read_video(out.with_suffix(".gif")).shape == (9, 32, 48, 3)
    settings = yaml.safe_load(out.with_suffix(".yaml").read_text())
    assert settings["resolved_steps"] == 3 and settings["resolved_guidance"] == 2.0
    assert settings["sigmas"] == pytest.approx(
        [1.0, 3 * (2 / 3) / (1 + 2 * (2 / 3)), 3 * (1 / 3) / (1 + 2 / 3), 0.0], abs=1e-6
    )
    assert settings["seed"] == 7 and settings["family"] == "wan"
    assert not list(out.parent.glob(".*part*"))  # temporary files renamed away

    # same seed -> same clip; another seed -> another clip
    again = tmp_path / "again.mp4"
    run_cli(args[:-3] + ["--out", str(again)], capsys)
    np.testing.assert_array_equal(read_video(again), video)
    other = tmp_path / "other.mp4"
    run_cli(args[:-5] + ["--seed", "8", "--out", str(other)], capsys)
    assert np.abs(read_video(other).astype(int) - video.astype(int)).mean() > 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "{missing}"], "does not exist"),
        (["--model", "{notpipe}"], "not a diffusers pipeline"),
        (["--frames", "16"], "4k+1"),
        (["--size", "40x64"], "multiple of 16"),
        (["--size", "64x70"], "multiple of 16"),
        (["--size", "64"], "HxW"),
        (["--steps", "0"], "positive"),
        (["--steps", "-3"], "positive"),
        (["--out", "{blocked}/sub/clip.mp4"], "cannot create output folder"),
    ],
)
def test_bad_input_one_line_exit_2(tiny_wan_dir, tmp_path, capsys, args, message):
    (tmp_path / "notpipe").mkdir()
    (tmp_path / "blocked").write_text("a file where a folder should be")
    paths = {"missing": tmp_path / "nope", "notpipe": tmp_path / "notpipe", "blocked": tmp_path / "blocked"}
    args = [a.format(**paths) for a in args]
    base = {"--model": str(tiny_wan_dir), "--out": str(tmp_path / "c.mp4"), "--frames": "9", "--size": "32x32"}
    for flag, value in zip(args[::2], args[1::2], strict=False):
        base[flag] = value
    code, _, err = run_cli(["sample", *[x for kv in base.items() for x in kv]], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert not (tmp_path / "c.mp4").exists()


def test_console_script_has_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "accvideo", "sample", "--model", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.strip().startswith("error: model directory")

    # torch makes its kernel cache folder as diffusers is imported, before any command runs: was a traceback
    (tmp_path / "a-file").write_text("")

    def prompts_with_cache(cache: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "accvideo", "prompts", "--n", "2", "--out", str(tmp_path / "p.txt")],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache},
        )

    proc = prompts_with_cache(str(tmp_path / "a-file" / "kernels"))
    assert proc.returncode == 2 and proc.stderr == (
        f"error: cannot make TORCHINDUCTOR_CACHE_DIR={tmp_path}/a-file/kernels (Not a directory: "
        f"{tmp_path}/a-file/kernels); set TORCHINDUCTOR_CACHE_DIR to a folder you can write (docs/sample.md, "
        "run-time options)\n"
    )
    assert not (tmp_path / "p.txt").exists()
    if os.path.isdir("/proc/self"):  # a folder above it that cannot be made: makedirs names that one, not the cache
        proc = prompts_with_cache("/proc/accvideo-nope/kernels")
        assert proc.returncode == 2 and proc.stderr.startswith(
            "error: cannot make TORCHINDUCTOR_CACHE_DIR=/proc/accvideo-nope/kernels ("
        ), proc.stderr
        assert len(proc.stderr.splitlines()) == 1 and not (tmp_path / "p.txt").exists()


def test_out_of_gpu_memory_is_one_line_naming_the_fixes(monkeypatch, tmp_path, capsys):
    import torch

    import accvideo.sample.run as sample_run

    def boom(cfg, progress=True):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(sample_run, "sample", boom)
    with pytest.raises(SystemExit) as exc:
        main(["sample", "--out", str(tmp_path / "c.mp4")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1
    assert "out of GPU memory" in err and "--offload" in err and "smaller --size" in err
    assert "lora_rank" not in err  # a distill setting: sample has none


@pytest.mark.parametrize("verb", sorted(MEMORY_FIXES))
def test_each_verbs_out_of_memory_lines_name_only_its_own_settings(verb):
    """The lines a verb prints when out of GPU or CPU memory name flags and settings that verb has (distill has no
    --offload or --size, sample no lora_rank), each with a value it accepts."""
    import torch
    from test_docs_commands import usage_problem

    gpu = fault_line(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), verb)
    cpu = fault_line(
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: "
            "you tried to allocate 2147483648 bytes."
        ),
        verb,
    )
    assert gpu.startswith("out of GPU memory (CUDA out of memory.") and MEMORY_FIXES[verb][0] in gpu
    assert cpu.startswith("out of memory (CPU RAM; it asked for 2.0 GB more); try ") and MEMORY_FIXES[verb][1] in cpu
    for fixes in MEMORY_FIXES[verb]:
        assert usage_problem(f"{verb} {fixes}") is None
        settings = re.findall(r"--[a-z-]+ (?:\d+|on|bfloat16|cpu)\b|\b[a-z_]+=\w+", fixes)
        assert settings or "--" in fixes, fixes
        for setting in settings:  # each value resolves for the verb (a mistyped value would be refused here)
            base = ["--model", "builtin"] if verb == "evaluate" else []
            cli.resolve(cli.BY_NAME[verb], [*base, *setting.split()])
    assert "--offload" not in str(MEMORY_FIXES["distill"]) and "lora_rank" not in str(MEMORY_FIXES["sample"])


def test_under_torchrun_a_refusal_prints_once_per_node_and_every_rank_exits_2(monkeypatch, tmp_path, capsys):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the ranks' shared marker folder
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "launch-1")
    missing = ["sample", "--model", str(tmp_path / "missing")]
    printed = []
    for rank in ("0", "1"):  # two ranks of one launch meet the same bad input
        monkeypatch.setenv("RANK", rank)
        with pytest.raises(SystemExit) as exc:
            main(missing)
        assert exc.value.code == 2
        printed.append(capsys.readouterr().err)
    assert printed[0].startswith("error: model directory") and printed[0].count("\n") == 1
    assert printed[1] == ""
    with pytest.raises(SystemExit):  # another line, met by one rank only, is still printed
        main(["sample", "--model", str(tmp_path / "other")])
    assert "other" in capsys.readouterr().err
    markers = sorted(tmp_path.glob("accvideo-error-*"))
    assert len(markers) == 2
    os.utime(markers[0], (time.time() - 7200,) * 2)  # a marker from two hours ago is swept by the next refusal
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "launch-2")  # the next launch prints it again
    with pytest.raises(SystemExit):
        main(missing)
    assert capsys.readouterr().err == printed[0]
    assert not markers[0].exists() and markers[1].exists() and len(list(tmp_path.glob("accvideo-error-*"))) == 2
    # a static rendezvous (--master_port): the run id is "none" at every launch; the second launch printed nothing
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")
    for launcher, said in ((101, printed[0]), (101, ""), (102, printed[0])):  # a node's ranks share their launcher
        monkeypatch.setattr(os, "getppid", lambda launcher=launcher: launcher)
        with pytest.raises(SystemExit):
            main(missing)
        assert capsys.readouterr().err == said
    # a fixed run id reused by the next launch (--rdzv-id $SLURM_JOB_ID across srun steps): its line was hidden for an
    # hour; a marker older than the window ranks of one launch meet their error in is an earlier launch's
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-42")
    with pytest.raises(SystemExit):
        main(missing)
    assert capsys.readouterr().err == printed[0]
    for marker in tmp_path.glob("accvideo-error-*"):
        os.utime(marker, (time.time() - 2 * cli.MARKER_WINDOW_S,) * 2)  # the first step failed two minutes ago
    with pytest.raises(SystemExit):
        main(missing)
    assert capsys.readouterr().err == printed[0]
    monkeypatch.delenv("TORCHELASTIC_RUN_ID")  # outside torchrun every refusal prints
    monkeypatch.delenv("RANK")
    for _ in range(2):
        with pytest.raises(SystemExit):
            main(missing)
        assert capsys.readouterr().err == printed[0]


def test_a_ctrl_c_while_the_libraries_load_is_interrupted_not_a_traceback(monkeypatch, capsys):
    import accvideo.cli as cli

    def ctrl_c():  # the first second or two of any command: torch and diffusers importing
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_quiet_libraries", ctrl_c)
    with pytest.raises(SystemExit) as exc:
        main(["sample", "--model", "builtin"])
    assert exc.value.code == 130 and capsys.readouterr().err == "interrupted\n"


def test_a_ctrl_c_while_the_command_line_imports_is_one_line(tmp_path):
    """The console script imports accvideo.cli (60-70 ms) before cli.main can catch a Ctrl-C: the entry module's
    handler makes one pressed then one line. Deterministic: the Ctrl-C is sent as accvideo.cli starts importing."""
    script = (
        "import os, signal, sys\n"
        "class Hook:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'accvideo.cli':\n"
        "            os.kill(os.getpid(), signal.SIGINT)\n"
        "        return None\n"
        "sys.meta_path.insert(0, Hook())\n"
        "sys.argv = ['accvideo', 'sample', '--out', sys.argv[1]]\n"
        "from accvideo.entry import main\n"
        "main()\n"
    )
    out = tmp_path / "clip.mp4"
    done = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr) == (130, "interrupted\n")
    assert not out.exists()
    bare_script = script.replace("from accvideo.entry import main\nmain()", "import accvideo.cli")
    bare = subprocess.run([sys.executable, "-c", bare_script, str(out)], capture_output=True, text=True, timeout=120)
    assert "Traceback" in bare.stderr and "KeyboardInterrupt" in bare.stderr  # the hook does send it: not vacuous


@pytest.mark.parametrize("mask", [0o777, 0o277, 0o177])
def test_a_umask_that_locks_out_the_owner_is_refused_before_anything_is_made(tmp_path, capsys, mask):
    out = tmp_path / "d"
    old = os.umask(mask)
    try:
        code, _, err = run_cli(["prompts", "--n", "2", "--out", str(out / "p.txt")], capsys)
    finally:
        os.umask(old)
    assert code == 2 and err == f"error: the umask is {mask:04o}, {err.split(', ', 1)[1]}" and "umask 022" in err
    assert not out.exists()
    code, _, err = run_cli(["prompts", "--n", "2", "--out", str(out / "p.txt")], capsys)  # 022 or 077: written
    assert code == 0 and len((out / "p.txt").read_text().splitlines()) == 2


class _SwallowsCtrlC:
    """Ctrl-C pressed while Python runs a finalizer (as in a fork handler): Python prints it and carries on."""

    def __del__(self):
        signal.raise_signal(signal.SIGINT)


def test_a_ctrl_c_python_swallowed_still_stops_the_run_at_the_next_step(monkeypatch, capsys, tmp_path):
    import accvideo.cli as cli

    swallowed = []
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: swallowed.append(unraisable.exc_type))
    quiet = cli._quiet_libraries

    def libraries_then_ctrl_c():
        quiet()
        _SwallowsCtrlC()  # dropped at once: its __del__ gets the Ctrl-C

    monkeypatch.setattr(cli, "_quiet_libraries", libraries_then_ctrl_c)
    out = tmp_path / "clip.mp4"
    with pytest.raises(SystemExit) as exc:
        main(["sample", "--model", "builtin", "--steps", "2", "--out", str(out), "--device", "cpu"])
    assert swallowed == []  # Python swallowed it, and the CLI kept its "Exception ignored" lines from the user
    assert exc.value.code == 130 and capsys.readouterr().err.endswith("interrupted\n")
    assert not out.exists()  # stopped at the first denoising step, not sampled to the end
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back


def test_a_ctrl_c_the_process_was_started_ignoring_stays_ignored():
    """A shell starts a script's background jobs (`cmd &`) with SIGINT ignored, so the terminal's Ctrl-C spares
    them; the CLI's handler undid that."""
    from accvideo.core.interrupts import catch_interrupts

    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with catch_interrupts():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL  # SIGTERM is still recorded
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, old)


def test_a_command_that_returns_after_a_swallowed_ctrl_c_is_reported_interrupted(monkeypatch, capsys):
    import accvideo.cli as cli

    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: None)

    def command(argv):  # swallows the Ctrl-C at its very end: no step boundary after it
        _SwallowsCtrlC()

    monkeypatch.setattr(cli, "dispatch", command)
    with pytest.raises(SystemExit) as exc:
        main(["sample"])
    assert exc.value.code == 130 and capsys.readouterr().err == "interrupted\n"


def test_a_ctrl_c_inside_a_finalizer_prints_only_the_interrupted_line(monkeypatch, capsys):
    """Python prints "Exception ignored in: <function ...__del__>" and the signal handler's traceback when a
    signal lands in a finalizer (a regex Group.__del__ as a tokenizer loads, under load 3 SIGTERMs in 4): 8 lines
    before `interrupted`. The CLI's hook drops exactly those; another finalizer's error is still printed."""
    import accvideo.cli as cli

    class _Fails:
        def __del__(self):
            raise ValueError("a finalizer's own error")

    def command(argv):
        _Fails()
        _SwallowsCtrlC()

    printed = []  # what reaches Python's hook (it prints each one)
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: printed.append(unraisable.exc_type))
    monkeypatch.setattr(cli, "dispatch", command)
    with pytest.raises(SystemExit) as exc:
        main(["sample"])
    assert exc.value.code == 130 and capsys.readouterr().err == "interrupted\n"
    assert printed == [ValueError]


def test_a_load_broken_by_a_swallowed_ctrl_c_is_interrupted_not_a_damaged_folder(tiny_wan_dir, monkeypatch, capsys):
    """A Ctrl-C that lands in importlib's module-lock callback is swallowed and can break the import under way
    (diffusers' lazy import then raises `Failed to import ...`): it was `error: cannot load the pipeline ...;
    re-save or re-download it`, exit 2 (seen on a SIGTERM to torchrun 1.5 s into a run)."""
    import accvideo.cli as cli
    from accvideo.models.wan import WanAdapter

    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: None)

    def load(cls, *a, **kw):
        _SwallowsCtrlC()
        raise RuntimeError("Failed to import diffusers.models.autoencoders.autoencoder_kl_wan because of ...")

    monkeypatch.setattr(cli, "_quiet_libraries", lambda: None)
    monkeypatch.setattr(WanAdapter, "load", classmethod(load))
    with pytest.raises(SystemExit) as exc:
        main(["sample", "--model", str(tiny_wan_dir), "--steps", "2", "--device", "cpu"])
    assert exc.value.code == 130 and capsys.readouterr().err.endswith("interrupted\n")


def test_a_sigterm_landing_in_an_exec_of_a_string_exits_143_under_python_m(tmp_path):
    """`python -m accvideo` (how torchrun starts its workers): a SIGTERM that lands while a module being imported
    makes a dataclass (an exec of a string) marked the KeyboardInterrupt unhandled, and CPython ended the run by
    SIGINT after the CLI chose 143 (a shell read 130, subprocess -2; in 6 of 40 SIGTERMs during start-up)."""
    package = tmp_path / "runs_accvideo"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(
        "from accvideo import cli\n"
        "def command(argv):  # the SIGTERM lands in an exec of a string, as in dataclasses' making a class\n"
        "    exec('import os, signal; os.kill(os.getpid(), signal.SIGTERM)')\n"
        "cli.dispatch = command\n"
        "cli.main(['sample'])\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-m", package.name], capture_output=True, text=True, env=env, timeout=60)
    assert (run.returncode, run.stderr) == (143, "interrupted (SIGTERM)\n")


def test_under_torchrun_a_rank_whose_peer_stopped_says_so_in_one_line(monkeypatch):
    from accvideo.cli import fault_line

    gone = RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed by peer [127.0.0.1]:3")
    monkeypatch.delenv("RANK", raising=False)
    assert fault_line(gone) is None  # outside torchrun: not ours to explain, the traceback stays
    monkeypatch.setenv("RANK", "1")
    line = fault_line(gone)  # said "its error is above" also when a peer was killed from outside and printed none
    assert line.startswith("another process of this launch stopped first: if it printed a line above, fix what it")
    assert "killed from outside (the out-of-memory killer, a scheduler): what was saved is kept, rerun" in line
    assert fault_line(RuntimeError("mat1 and mat2 shapes cannot be multiplied")) is None  # a bug stays a traceback


def test_a_deleted_working_folder_is_one_line_before_torch_loads(tmp_path, capsys):
    """A shell left in a removed folder: torch's libraries failed to load (oneMKL's FATAL ERROR, its own lines)."""
    gone = tmp_path / "gone"
    gone.mkdir()
    here = os.getcwd()
    os.chdir(gone)
    gone.rmdir()
    try:
        with pytest.raises(SystemExit) as exc:
            main(["sample", "--model", "builtin", "--out", str(tmp_path / "c.mp4")])
    finally:
        os.chdir(here)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith("error: the current folder no longer exists (deleted or moved); ")
    assert err.endswith("cd to an existing folder and rerun the command\n") and err.count("\n") == 1
    assert not (tmp_path / "c.mp4").exists()


def test_a_swallowed_signal_stops_a_rank_before_it_waits_in_the_rendezvous(monkeypatch):
    """A torchrun worker whose SIGTERM Python swallowed while it loaded went on into the rendezvous, waiting for a
    peer that had stopped, until torchrun killed it 30 s later with no line (1 in 16 in the signal fuzz)."""
    import torch

    from accvideo.core import dist, interrupts

    for key, value in {"WORLD_SIZE": "2", "RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29599"}.items():
        monkeypatch.setenv(key, value)
    with interrupts.catch_interrupts():
        interrupts.INTERRUPTED.set()  # what the handler records before Python swallows the KeyboardInterrupt
        with pytest.raises(KeyboardInterrupt):
            dist.init(torch.device("cpu"), timeout_minutes=0.05)  # the old code waited the whole timeout, then failed
    assert not dist.is_distributed()


@pytest.mark.parametrize("value", ["0", "-3", "four", ""])
def test_a_thread_count_openmp_cannot_read_is_refused_before_torch_loads(value, monkeypatch, tmp_path, capsys):
    """libgomp printed `Invalid value for environment variable OMP_NUM_THREADS` as torch loaded, and the run went on
    with a thread count the user did not choose; OpenMP's own forms (a number, a nested list) still run."""
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    with pytest.raises(SystemExit) as exc:
        main(["prompts", "--n", "1", "--out", str(tmp_path / "p.txt")])
    assert exc.value.code == 2 and capsys.readouterr().err == (
        f"error: OMP_NUM_THREADS={value!r} is not a positive number of threads; set it to one (e.g. "
        "OMP_NUM_THREADS=2) or unset it\n"
    )
    assert not (tmp_path / "p.txt").exists()
    for fine in ("2", "4,2"):
        monkeypatch.setenv("OMP_NUM_THREADS", fine)
        with pytest.raises(SystemExit) as exc:
            main(["prompts", "--n", "1", "--out", str(tmp_path / f"p{fine}.txt")])
        assert exc.value.code == 0 and (tmp_path / f"p{fine}.txt").is_file()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_after_success_while_python_shuts_down_keeps_exit_0(signum, tmp_path):
    """export and demo print their last line, then Python's exit hooks take up to a second: a Ctrl-C or SIGTERM
    there killed the finished command without a line (the shell saw 130 or 143). Now they are ignored: exit 0."""
    script = tmp_path / "late.py"
    script.write_text(
        "import atexit, os, signal, sys, time\n"
        "import accvideo.cli as cli\n"
        "def command(argv=None):\n"
        "    print('wrote everything', flush=True)\n"
        "    sys.exit(0)\n"
        "cli.main = command\n"
        f"atexit.register(lambda: (os.kill(os.getpid(), {int(signum)}), time.sleep(0.5)))\n"
        "from accvideo.entry import main\n"
        "main()\n"
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "wrote everything\n", "")


@pytest.mark.parametrize(("local_rank", "said"), [("0", True), ("3", False)])
def test_a_rank_waiting_for_its_peers_says_so_once_a_node(local_rank, said, monkeypatch, capsys):
    """Every rank of a node waits alike for a peer that has not started: its first process says so, the others do
    not (8 processes a node printed the note 8 times)."""
    import threading

    from accvideo.core import dist

    env = {"WORLD_SIZE": "16", "RANK": str(8 + int(local_rank)), "LOCAL_RANK": local_rank, "LOCAL_WORLD_SIZE": "8"}
    for key, value in {**env, "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500"}.items():
        monkeypatch.setenv(key, value)
    joined = threading.Event()
    dist._rendezvous(lambda: joined.wait(1.0), note_after=0.3)  # the peers come after a second
    err = capsys.readouterr().err
    expected = "ranks 8 to 15 of 16 are waiting at 10.0.0.1:29500 for the other processes"
    assert err.count("\n") == (1 if said else 0), err
    assert (expected in err) == said, err


def _closed_reader(args: list[str], both: bool = False, **env) -> tuple[int, str]:
    """`accvideo ARGS | true`: stdout (and stderr, with `both`) a pipe whose reader has gone; (exit code, stderr)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "accvideo", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if both else subprocess.PIPE,
        env={**os.environ, **env},
    )
    proc.stdout.close()  # the reader exits before the command prints anything
    err = b"" if both else proc.stderr.read()
    return proc.wait(timeout=120), err.decode()


def test_a_reader_that_went_away_stops_nothing_and_keeps_the_exit_code(tmp_path):
    """`accvideo ... | head` ended every verb in a BrokenPipeError traceback and exit 1 at its next line, after its
    work (the prompt file here) was written; a refusal read through `2>&1 | head` exited 1, not 2."""
    out = tmp_path / "p.txt"
    code, err = _closed_reader(["prompts", "--n", "3", "--out", str(out)])
    assert (code, err) == (0, "") and len(out.read_text().splitlines()) == 3
    assert _closed_reader(["--help"]) == (0, "")
    code, _ = _closed_reader(["prompts", "--n", "0", "--out", str(tmp_path / "q.txt")], both=True)
    assert code == 2 and not (tmp_path / "q.txt").exists()


def test_a_log_on_a_full_disk_stops_nothing_and_keeps_the_exit_code(tmp_path):
    """`accvideo ... > /full/disk/log.txt`: the first print's ENOSPC stopped the command with "no space left ...
    choose an --out on another disk" (exit 2, nothing written) though --out's disk was fine; a refusal whose stderr
    is full exited 1."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    out = tmp_path / "p.txt"
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [sys.executable, "-m", "accvideo", "prompts", "--n", "3", "--out", str(out)],
            stdout=full,
            stderr=subprocess.PIPE,
            timeout=120,
        )
        assert (proc.returncode, proc.stderr) == (0, b"") and len(out.read_text().splitlines()) == 3
        bad = [sys.executable, "-m", "accvideo", "prompts", "--n", "0", "--out", str(tmp_path / "q.txt")]
        assert subprocess.run(bad, stdout=subprocess.PIPE, stderr=full, timeout=120).returncode == 2
    assert not (tmp_path / "q.txt").exists()


def test_a_list_flag_takes_the_form_help_shows_its_default_in():
    """--help shows a list default as [1,2,3,5]; given so, the flag was refused ("got '[1'")."""
    verb = cli.BY_NAME["synthesize"]
    base = ["--teacher", "builtin", "--prompts", "p.txt", "--steps", "50"]
    given = {form: cli.resolve(verb, [*base, "--key-indices", form]).key_indices for form in ("[0,25,50]", "0,25,50")}
    assert given == {"[0,25,50]": [0, 25, 50], "0,25,50": [0, 25, 50]}
    assert cli.resolve(verb, [*base, "key_indices=[0,25,50]"]).key_indices == [0, 25, 50]


def test_a_path_a_strict_utf8_stream_cannot_show_is_printed_escaped(tmp_path):
    """A file name of bytes that are no UTF-8 (held as surrogates) made a strict UTF-8 stdout (PYTHONIOENCODING=utf-8,
    as Docker images set it) raise UnicodeEncodeError after the file was written: a traceback and exit 1."""
    out = os.fsencode(tmp_path) + b"/bad\xff.txt"
    proc = subprocess.run(
        [sys.executable, "-m", "accvideo", "prompts", "--n", "2", "--out", os.fsdecode(out)],
        capture_output=True,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stderr == b"", proc.stderr
    assert proc.stdout.decode().endswith("/bad\\udcff.txt\n") and len(open(out).read().splitlines()) == 2


def test_decoder_distill_without_held_out_clips_says_so(tiny_wan_dir, synvid, tmp_path, capsys):
    """holdout=0 printed "held-out PSNR None dB"."""
    args = ["decoder", "distill", "--teacher", str(tiny_wan_dir), "--data", str(synvid), "--out", str(tmp_path / "d")]
    code, out, err = run_cli(
        [*args, "iterations=1", "width=8", "depth=1", "holdout=0", "batch=2", "device=cpu"], capsys
    )
    assert code in (0, None), err
    assert "; no held-out clips (holdout=0);" in out and "None" not in out
