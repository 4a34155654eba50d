"""SynVid across processes: a SIGKILLed run resumes to the same dataset; 2 torchrun ranks equal 1 process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from accvideo.synthesize import SynthConfig, SynVidDataset, synthesize
from accvideo.synthesize.shards import list_shards, partial_files

PROMPTS = [
    "a red circle moving left",
    "a blue square",
    "a green star moving up",
    "a cat on a red background",
    "a yellow triangle spinning",
    "a white dog moving right",
    "an orange square",
]
ARGS = [
    "--steps",
    "10",
    "--key-steps",
    "5",
    "--frames",
    "9",
    "--size",
    "32x32",
    "--shard-size",
    "2",
    "--batch",
    "2",
    "--guidance",
    "3",
    "--seed",
    "3",
]

# Runs the CLI with a shard writer that leaves shard 1 half written on disk and then hangs, so the
# SIGKILL lands while a temporary file exists, the worst moment for a writer to die.
HANGING_WRITER = """
import sys, time
import accvideo.synthesize.shards as shards
real, calls = shards.write_safetensors, []
def hanging(tensors, metadata, path):
    calls.append(path)
    real(tensors, metadata, path)
    if len(calls) == 2:
        with open(path, "r+b") as f:
            f.truncate(f.seek(0, 2) // 2)
        time.sleep(600)
shards.write_safetensors = hanging
from accvideo.cli import main
main(sys.argv[1:])
"""


@pytest.fixture(scope="module")
def reference(tiny_wan, tiny_wan_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("synvid")
    prompts = root / "p.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    cfg = SynthConfig(
        teacher=str(tiny_wan_dir),
        prompts=str(prompts),
        out=str(root / "ref"),
        steps=10,
        key_steps=5,
        frames=9,
        height=32,
        width=32,
        shard_size=2,
        batch=2,
        guidance=3.0,
        seed=3,
    )
    synthesize(cfg, adapter=tiny_wan, progress=False)
    return prompts, root / "ref"


def assert_same_dataset(ref, got):
    names = [p.name for p in list_shards(ref)]
    assert [p.name for p in list_shards(got)] == names == [f"shard-{k:06d}.safetensors" for k in range(4)]
    for name in names:  # byte for byte: same items, same tensors, same metadata
        assert (ref / name).read_bytes() == (got / name).read_bytes(), name
    a, b = SynVidDataset(ref), SynVidDataset(got)
    assert len(a) == len(b) == len(PROMPTS)
    assert [b[i]["index"] for i in range(len(b))] == list(range(len(PROMPTS)))  # no duplicates, none missing
    for i in range(len(a)):
        assert torch.equal(a[i]["latents"], b[i]["latents"])
        assert torch.equal(a[i]["cond"]["prompt_embeds"], b[i]["cond"]["prompt_embeds"])
        assert (a[i]["prompt"], a[i]["seed"]) == (b[i]["prompt"], b[i]["seed"])
    assert not partial_files(got)


def env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def test_sigkilled_run_resumes_to_the_same_dataset(reference, tiny_wan, tiny_wan_dir, tmp_path):
    prompts, ref = reference
    out = tmp_path / "ds"
    cmd = [
        sys.executable,
        "-c",
        HANGING_WRITER,
        "synthesize",
        "--teacher",
        str(tiny_wan_dir),
        "--prompts",
        str(prompts),
        "--out",
        str(out),
        *ARGS,
    ]
    proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (list_shards(out) and partial_files(out)):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the first shard never appeared"
            time.sleep(0.02)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert [p.name for p in list_shards(out)] == ["shard-000000.safetensors"]  # the half shard is not listed
    assert len(SynVidDataset(out)) == 2

    cfg = SynthConfig(
        teacher=str(tiny_wan_dir),
        prompts=str(prompts),
        out=str(out),
        steps=10,
        key_steps=5,
        frames=9,
        height=32,
        width=32,
        shard_size=2,
        batch=2,
        guidance=3.0,
        seed=3,
    )
    summary = synthesize(cfg, adapter=tiny_wan, progress=False)
    assert (summary["shards_skipped"], summary["shards_written"], summary["items_written"]) == (1, 3, 5)
    assert_same_dataset(ref, out)


def test_two_torchrun_processes_equal_one(reference, tiny_wan_dir, tmp_path):
    prompts, ref = reference
    out = tmp_path / "ds"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "accvideo",
        "synthesize",
        "--teacher",
        str(tiny_wan_dir),
        "--prompts",
        str(prompts),
        "--out",
        str(out),
        *ARGS,
    ]
    proc = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # rank 0 reports its own share: shards 0 and 2 of 4
    assert "synthesized 4 item(s) in 2 shard(s), kept 0 complete shard(s) (rank 0 of 2" in proc.stdout, proc.stdout
    assert_same_dataset(ref, out)


def test_dist_seam_in_one_process(monkeypatch, capsys):
    from accvideo.core import dist

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert dist.init(torch.device("cpu")) is False  # no torchrun: nothing to join
    assert (dist.rank(), dist.world_size(), dist.is_main(), dist.is_distributed()) == (0, 1, True, False)
    assert dist.broadcast_object({"a": 1}) == {"a": 1}
    dist.barrier()
    dist.print0("hello")
    assert capsys.readouterr().out == "hello\n"
    assert dist.backend_for(torch.device("cpu")) == "gloo" and dist.backend_for(torch.device("cuda")) == "nccl"
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert dist.local_device(torch.device("cuda")) == torch.device("cuda", 1)
    assert dist.local_device(torch.device("cpu")) == torch.device("cpu")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(Exception, match="launch with torchrun"):
        dist.init(torch.device("cpu"))


# A stand-in for torchrun's launcher: starts the worker in its own session, as torchrun does, and waits for it.
LAUNCHER = """
import subprocess, sys
err = open(sys.argv[1], "w")
worker = subprocess.Popen(sys.argv[2:], stderr=err, stdout=subprocess.DEVNULL, start_new_session=True)
print(worker.pid, flush=True)
worker.wait()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _lone_rank(rank: int, tiny_wan_dir, reference, tmp_path) -> tuple[list[str], dict[str, str], int]:
    """A synthesize command for rank `rank` of a 2-process launch whose other rank never starts: (command, the
    torchrun environment, the rendezvous port)."""
    prompts, _ = reference
    port = _free_port()
    torchrun_env = dict(WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1")
    cmd = [sys.executable, "-m", "accvideo", "synthesize", "--teacher", str(tiny_wan_dir), "--prompts", str(prompts)]
    return [*cmd, "--out", str(tmp_path / "ds"), *ARGS], {**torchrun_env, "MASTER_PORT": str(port)}, port


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0] != "Z"  # a zombie has exited (its new parent reaps it late)
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc")
def test_a_torchrun_worker_stops_when_its_launcher_is_killed(tiny_wan_dir, reference, tmp_path):
    # rank 1 of 2 with no rank 0: it waits in the rendezvous, inside a C++ call, as a worker does whose launcher was
    # SIGKILLed during start-up. Was: it waited there for the whole 60-minute start-up timeout.
    cmd, torchrun_env, _ = _lone_rank(1, tiny_wan_dir, reference, tmp_path)
    err = tmp_path / "worker.err"
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(err), *cmd],
        env={**env(), **torchrun_env, "TORCHELASTIC_RUN_ID": "test"},
        stdout=subprocess.PIPE,
        text=True,
    )
    worker = int(launcher.stdout.readline())
    time.sleep(6)  # imports done: waiting for rank 0
    assert _running(worker)
    launcher.kill()
    launcher.wait()
    t0 = time.monotonic()
    while _running(worker) and time.monotonic() - t0 < 60:
        time.sleep(0.2)
    stopped = not _running(worker)
    if not stopped:
        os.kill(worker, signal.SIGKILL)
    assert stopped, "the worker outlived its launcher by a minute"
    assert "the torchrun launcher is gone, so this worker (rank 1) stopped" in err.read_text()
    assert "Traceback" not in err.read_text()


def test_a_rank_waiting_for_peers_that_never_start_stops_on_sigterm(tiny_wan_dir, reference, tmp_path):
    # rank 0 of 2, and rank 1 never starts (one task of a launch failed to start): blocked in init_process_group's
    # C++, it ran no signal handler, so SIGTERM and Ctrl-C were ignored for the whole hour of the rendezvous timeout.
    cmd, torchrun_env, port = _lone_rank(0, tiny_wan_dir, reference, tmp_path)
    worker = subprocess.Popen(cmd, env={**env(), **torchrun_env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 120:  # rank 0 hosts the rendezvous store: its port opens as it starts waiting
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        time.sleep(1)
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    err = worker.stderr.read().decode()
    assert code == 143 and err.strip().splitlines()[-1] == "interrupted (SIGTERM)", err
    assert "Traceback" not in err


def test_a_rendezvous_port_in_use_is_one_line(tiny_wan_dir, reference, tmp_path):
    # rank 0 hosts the rendezvous store on MASTER_PORT: a port another program listens on was torch's traceback
    cmd, torchrun_env, _ = _lone_rank(0, tiny_wan_dir, reference, tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        torchrun_env["MASTER_PORT"] = str(busy.getsockname()[1])
        proc = subprocess.run(cmd, env={**env(), **torchrun_env}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr == (
        f"error: the rendezvous port MASTER_PORT={torchrun_env['MASTER_PORT']} is in use by another program; "
        "choose another (torchrun --master_port PORT) and rerun\n"
    )
    assert not (tmp_path / "ds").exists()


def _two_ranks(commands: list[list[str]], cwds: list[Path]) -> list[subprocess.CompletedProcess]:
    """Rank 0 and rank 1 of one 2-process launch, each started by hand with its own command line (as the nodes of a
    multi-node launch each parse their own), run to the end."""
    port = _free_port()
    procs = []
    for rank, (cmd, cwd) in enumerate(zip(commands, cwds, strict=True)):
        torchrun_env = dict(WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK="0", MASTER_ADDR="127.0.0.1")
        full_env = {**env(), **torchrun_env, "MASTER_PORT": str(port), "PYTHONPATH": os.pathsep.join(sys.path)}
        procs.append(subprocess.Popen(cmd, env=full_env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    done = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        done.append(subprocess.CompletedProcess(p.args, p.returncode, out.decode(), err.decode()))
    return done


def test_ranks_given_other_settings_are_refused_before_any_work(tiny_wan_dir, reference, tmp_path):
    """The nodes of a multi-node launch each parse their own command line: a node given --steps 20 beside one given
    10 wrote shards of its own into the dataset (every launch exit 0, the SynVid refused later by distill). Every rank
    compares its settings first and refuses in one line naming the first that differs; nothing is written."""
    prompts, _ = reference
    cmd = [sys.executable, "-m", "accvideo", "synthesize", "--teacher", str(tiny_wan_dir), "--prompts", str(prompts)]
    cmd += ["--out", str(tmp_path / "ds"), *ARGS]
    ranks = _two_ranks([cmd, [*cmd, "--guidance", "2"]], [tmp_path, tmp_path])
    line = "error: the processes of this launch were given other settings: rank 0 has guidance=3.0, rank 1 has"
    for p in ranks:
        assert p.returncode == 2 and p.stderr.startswith(line) and p.stderr.count("\n") == 1, p.stderr[-2000:]
    assert "guidance=2.0; run the very same command on every node" in ranks[0].stderr
    assert not (tmp_path / "ds").exists()


def test_ranks_that_do_not_share_the_output_folder_are_refused_before_any_work(tiny_wan_dir, reference, tmp_path):
    """Nodes whose --out is not one shared folder (the same path, node-local disks) each "succeeded"; a distill's
    sharded checkpoint then lacked the other nodes' files and never resumed. Rank 0 writes a token into the folder;
    a rank that cannot read it back refuses, on every rank, before any shard is made."""
    prompts, _ = reference
    cmd = [sys.executable, "-m", "accvideo", "synthesize", "--teacher", str(tiny_wan_dir), "--prompts", str(prompts)]
    cmd += ["--out", "ds", *ARGS]  # relative: each node's own folder
    (tmp_path / "node0").mkdir()
    (tmp_path / "node1").mkdir()
    ranks = _two_ranks([cmd, cmd], [tmp_path / "node0", tmp_path / "node1"])
    for p in ranks:
        assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr[-2000:]
        assert p.stderr.startswith("error: rank 1 does not see ds as rank 0 wrote it: every process of the launch")
    assert not list((tmp_path / "node0" / "ds").glob("shard-*")) and not (tmp_path / "node1" / "ds").exists()
    assert not [p for p in (tmp_path / "node0" / "ds").iterdir() if "rank-check" in p.name]  # its token removed
