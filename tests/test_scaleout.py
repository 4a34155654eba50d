"""Distillation across processes (docs/scale-out.md): 2 gloo ranks equal 1 process; checkpoints move between counts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from accvideo.core import parallel
from accvideo.distill import Distiller, quick_config
from accvideo.distill.checkpoint import META, NAME, SHARDED
from accvideo.distill.lora import lora_state_dict, portable_lora_names
from accvideo.distill.plots import read_losses
from accvideo.distill.queues import KeyQueues
from accvideo.errors import AccVideoError

QUICK = {"lr": 1e-4, "head_lr": 1e-4, "head_channels": 8, "device": "cpu", "checkpoint_every": 2}


def settings(teacher, data, out, **kw) -> dict:
    return {"teacher": str(teacher), "data": str(data), "out": str(out), **QUICK, **kw}


def run_one(**kw) -> None:
    Distiller(quick_config(**kw)).run(progress=False)


def torchrun_command(**kw) -> list[str]:
    """`torchrun --nproc_per_node 2 -m accvideo distill key=value ...` on gloo."""
    args = [f"{k}={v}" for k, v in kw.items() if k not in ("teacher", "data", "out")]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "accvideo",
        "distill",
        "--teacher",
        kw["teacher"],
        "--data",
        kw["data"],
        "--out",
        kw["out"],
        *args,
    ]


def torchrun(**kw) -> str:
    """Run `torchrun_command`; its stdout."""
    cmd = torchrun_command(**kw)
    proc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "returned a view tensor" not in proc.stderr  # torch's FSDP2 warning, once a rank, of nothing to act on
    return proc.stdout


def losses(run, iterations=slice(None)) -> torch.Tensor:
    """Every per-key-step loss of every iteration, (iterations, 3, m)."""
    records = read_losses(run / "losses.jsonl")[iterations]
    return torch.tensor([[r["traj_k"], r["g_k"], r["d_k"]] for r in records], dtype=torch.float64)


def assert_same_losses(run, reference, iterations=slice(None)) -> None:
    ours, ref = read_losses(run / "losses.jsonl")[iterations], read_losses(reference / "losses.jsonl")[iterations]
    assert [(r["iteration"], r["samples"]) for r in ours] == [(r["iteration"], r["samples"]) for r in ref]
    # the same global batch: equal up to the order of float reductions
    torch.testing.assert_close(losses(run, iterations), losses(reference, iterations), rtol=1e-4, atol=1e-6)


def test_two_processes_equal_one_and_their_checkpoint_resumes_on_one(tiny_wan_dir, synvid, tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    run_one(**settings(tiny_wan_dir, synvid, whole, batch=2, iterations=4))
    stdout = torchrun(**settings(tiny_wan_dir, synvid, split, batch=2, iterations=2))
    assert stdout.count("wrote the 5-step student") == 1  # rank 0 reports
    assert_same_losses(split, whole, slice(0, 2))
    cfg = yaml.safe_load((split / "config.yaml").read_text())
    assert (cfg["world_size"], cfg["data_parallel"], cfg["per_process_batch"], cfg["accumulation"]) == (2, "ddp", 1, 1)
    # a sharded checkpoint (DCP files of both ranks + rank 0's state.pt), one exported weights file
    files = {p.name for p in (split / SHARDED).iterdir()}
    assert {".metadata", META} <= files and len([f for f in files if f.endswith(".distcp")]) == 2
    assert not (split / NAME).exists()
    assert [p.name for p in (split / "student" / "transformer").glob("*.safetensors")] == [
        "diffusion_pytorch_model.safetensors"
    ]
    queues = torch.load(split / SHARDED / META, weights_only=True)["queues"]["queues"]
    assert queues[0][0]["x"].shape[0] == 2  # Q_0 saved whole: both ranks' fakes

    # damaged copies are refused in one line, never trained from zero over the run (DCP's errors are BaseExceptions)
    import shutil

    damages = {
        "a truncated shard": lambda c: c.joinpath("__1_0.distcp").write_bytes(b"half"),
        "no state.pt": lambda c: c.joinpath(META).unlink(),
        "a file in its place": lambda c: (shutil.rmtree(c), c.write_text("junk")),
    }
    for i, (what, damage) in enumerate(damages.items()):
        bad = shutil.copytree(split, tmp_path / f"bad{i}")
        damage(bad / SHARDED)
        before = (bad / "losses.jsonl").read_bytes()
        with pytest.raises(AccVideoError, match="checkpoint") as exc:
            run_one(**settings(tiny_wan_dir, synvid, bad, batch=2, iterations=4))
        assert "delete" in str(exc.value) and len(str(exc.value).splitlines()) == 1, what
        assert (bad / "losses.jsonl").read_bytes() == before, what

    # other settings are refused with one line naming the checkpoint it holds (the folder, not a checkpoint.pt)
    with pytest.raises(AccVideoError, match="lambda_adv") as exc:
        run_one(**settings(tiny_wan_dir, synvid, split, batch=2, iterations=4, lambda_adv=0.2))
    assert str(exc.value).startswith(f"{split / SHARDED} holds a run with lambda_adv=0.1")

    run_one(**settings(tiny_wan_dir, synvid, split, batch=2, iterations=4))  # one process resumes it
    assert_same_losses(split, whole)
    assert (split / NAME).is_file() and not (split / SHARDED).exists()  # the newer format replaces the older
    a = load_file(whole / "student" / "transformer" / "diffusion_pytorch_model.safetensors")
    b = load_file(split / "student" / "transformer" / "diffusion_pytorch_model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5)


def test_a_run_resumes_with_another_micro_batch_and_trains_the_same(tiny_wan_dir, synvid, tmp_path):
    """micro_batch is memory, not results (a run out of GPU memory resumes with micro_batch=1): the same global
    batch, losses and weights equal to an unbroken run's up to the order of float sums; config.yaml says the new one."""
    whole, moved = tmp_path / "whole", tmp_path / "moved"
    run_one(**settings(tiny_wan_dir, synvid, whole, batch=2, iterations=4))
    run_one(**settings(tiny_wan_dir, synvid, moved, batch=2, iterations=2))
    run_one(**settings(tiny_wan_dir, synvid, moved, batch=2, iterations=4, micro_batch=1))
    assert_same_losses(moved, whole)
    assert yaml.safe_load((moved / "config.yaml").read_text())["micro_batch"] == 1
    a = load_file(whole / "student" / "transformer" / "diffusion_pytorch_model.safetensors")
    b = load_file(moved / "student" / "transformer" / "diffusion_pytorch_model.safetensors")
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5)


def test_fsdp_lora_with_accumulation_resumes_a_one_process_checkpoint(tiny_wan_dir, synvid, tmp_path):
    opts = {"batch": 4, "micro_batch": 1, "lora_rank": 2}  # 2 ranks x 2 micro-batches = 1 process x 4
    whole, moved = tmp_path / "whole", tmp_path / "moved"
    run_one(**settings(tiny_wan_dir, synvid, whole, iterations=4, **opts))
    run_one(**settings(tiny_wan_dir, synvid, moved, iterations=2, **opts))
    torchrun(**settings(tiny_wan_dir, synvid, moved, iterations=4, parallel="fsdp", **opts))
    assert_same_losses(moved, whole)
    cfg = yaml.safe_load((moved / "config.yaml").read_text())
    assert (cfg["data_parallel"], cfg["per_process_batch"], cfg["accumulation"]) == ("fsdp", 2, 2)
    assert (moved / SHARDED / META).is_file() and not (moved / NAME).exists()
    # the LoRA gathered from FSDP2 shards: the same file, names and values as one process writes
    a = load_file(whole / "student" / "pytorch_lora_weights.safetensors")
    b = load_file(moved / "student" / "pytorch_lora_weights.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5)


def _worker(launcher: int, rank: int) -> int | None:
    """The pid of torchrun's worker of `rank` (a child of its agent whose environment says RANK=rank)."""
    for child in Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split():
        try:
            if f"RANK={rank}".encode() in Path(f"/proc/{child}/environ").read_bytes().split(b"\0"):
                return int(child)
        except OSError:
            pass
    return None


@pytest.mark.parametrize("target", ["launcher", "rank 1"])
def test_sigterm_to_torchrun_saves_every_rank_at_one_iteration(tiny_wan_dir, synvid, tmp_path, target):
    """Ctrl-C or SIGTERM on torchrun makes it SIGTERM its workers (a preempted job's workers get one too): they agree
    on one iteration (a collective each iteration), save it together and stop with one line; they used to die at
    once and lose everything since the last checkpoint. A SIGTERM to one worker alone (a scheduler preempting one
    task) stops every rank alike: rank 0, which the signal never reached, said "interrupted" (a Ctrl-C's line)
    beside rank 1's "interrupted (SIGTERM)"."""
    run = tmp_path / "run"
    cmd = torchrun_command(**settings(tiny_wan_dir, synvid, run, batch=2, iterations=40, parallel="fsdp"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(read_losses(run / "losses.jsonl")) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    if target == "launcher":
        proc.send_signal(signal.SIGTERM)
    else:
        os.kill(_worker(proc.pid, 1), signal.SIGTERM)
    err = proc.communicate(timeout=120)[1].decode()
    saved = torch.load(run / SHARDED / META, weights_only=True)["iteration"]
    assert 3 <= saved < 40 and len(read_losses(run / "losses.jsonl")) == saved  # every rank saved the same one
    line = f"interrupted (SIGTERM) at iteration {saved} of 40, which is saved in {run}; rerun the same command"
    assert err.count(line) == 1  # one line for the node, not one a rank
    assert [x for x in err.splitlines() if x.startswith("interrupted")] == [f"{line} to resume"]
    run_one(**settings(tiny_wan_dir, synvid, run, batch=2, iterations=saved + 1))  # one process resumes it
    assert [r["iteration"] for r in read_losses(run / "losses.jsonl")] == list(range(1, saved + 2))


def test_batch_split_and_mode_choice():
    assert quick_config(batch=8, micro_batch=2).split(2) == (4, 2, 2)
    assert quick_config(batch=8).split(4) == (2, 2, 1)
    with pytest.raises(AccVideoError, match="batch=3 is the global batch and must be divisible by the 2 processes"):
        quick_config(batch=3).split(2)
    # a resumed run cannot change its batch: the line also names the process counts that fit it
    with pytest.raises(AccVideoError, match=r"use e\.g\. batch=8, or a process count that divides 6 \(1, 2, 3, 6;"):
        quick_config(batch=6).split(4)
    with pytest.raises(AccVideoError, match="micro_batch=2 must divide the per-process batch 1"):
        quick_config(batch=2, micro_batch=2).split(2)
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert parallel.choose_mode("auto", gpu, 10**10, 1) == "none"  # one process never wraps
    assert parallel.choose_mode("auto", gpu, 10**10, 8) == "fsdp"
    assert parallel.choose_mode("auto", gpu, 10**6, 8) == "ddp"
    assert parallel.choose_mode("auto", cpu, 10**10, 2) == "ddp"
    assert parallel.choose_mode("fsdp", cpu, 10**6, 2) == "fsdp"
    with pytest.raises(AccVideoError, match="parallel=none cannot train on 2 processes"):
        parallel.choose_mode("none", cpu, 10, 2)
    assert parallel.use_bf16("auto", gpu) and not parallel.use_bf16("auto", cpu) and not parallel.use_bf16("off", gpu)


def test_queues_save_global_batches_and_reload_a_slice():
    q = KeyQueues(2)
    q.push(0, {"x": torch.zeros(2, 3), "cond": {"e": torch.ones(2, 1)}, "index": torch.tensor([4, 5])})
    # as rank 0 of 2 would see it: the other rank's slice follows its own
    state = q.state_dict(gather=lambda t: torch.cat([t, t + 10]))
    saved = state["queues"][0][0]
    assert saved["index"].tolist() == [4, 5, 14, 15] and saved["cond"]["e"].shape == (4, 1)
    again = KeyQueues(2)
    again.load_state_dict(state, part=slice(2, 4))  # rank 1 of 2
    assert again.pop(0)["index"].tolist() == [14, 15]
    again.load_state_dict(state)  # one process takes the whole batch
    assert again.pop(0)["x"].shape == (4, 3)


def test_lora_checkpoint_names_map_to_the_exported_names(tiny_wan_dir, synvid, tmp_path):
    d = Distiller(quick_config(**settings(tiny_wan_dir, synvid, tmp_path / "run", lora_rank=2)))
    portable = portable_lora_names(parallel.full_module_state(d.pair.module))
    reference = lora_state_dict(d.pair.module)
    assert portable.keys() == reference.keys()
    assert all(torch.equal(portable[k], reference[k]) for k in reference)
