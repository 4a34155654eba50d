"""Interrupted work resumes: kill each resumable command at random instants, rerun it, compare with an unkilled run.

    python benchmarks/kill_sweep.py --kills 12 --json benchmarks/results/kill_sweep_cpu.json
    python benchmarks/kill_sweep.py --verbs synthesize,export --kills 4      # a few commands, a few kills
    git clone -q . /tmp/clean && PYTHONPATH=/tmp/clean/src python benchmarks/kill_sweep.py ...  # a clean checkout

For each command (on the built-in model, at small sizes so that one run takes seconds; two of them also under
torchrun with 2 processes): run it twice unkilled (the reference; a file the two runs write differently, such as a
record of seconds, is left out of the comparison and listed), then, per trial, start it, signal its process group at
a random instant between the run's own first line (imports done) and its expected end (the reference's span from its
first line to its end, stretched by how much slower this run's first line came: a busy machine's runs are still hit
inside; from 30% of the reference's time for a command that prints only at its end), with SIGKILL, SIGINT (Ctrl-C)
or SIGTERM (a scheduler's preemption) in turn, start it
again (a second signal in one trial of three) and let it finish. A trial passes when every signalled run stops
within 120 s and the finishing run exits 0 with no traceback, every compared file of the output equal to the
reference's byte for byte, and no file the reference lacks (a temporary left behind). Every run writes at one path
(a command's records name its output folder). Instants are drawn from `--seed` and the command's name, so a failing
trial is rerun by its seed. Prints a Markdown table; `--json` writes the trials; `--table JSON` prints a saved
result's table. Rerun with the same `--json`, `--seed` and `--kills` to resume an interrupted sweep.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

EXE = [sys.executable, "-m", "accvideo"]


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "accvideo"]


@dataclass(frozen=True)
class Command:
    """One resumable command: `line` with {in} for the shared inputs folder and {out} for the trial's folder;
    `output` is what it writes under {out}, compared file by file; `processes` 2 runs it under torchrun."""

    line: str
    output: str
    needs: tuple[str, ...] = ()  # inputs made once (see make_inputs)
    processes: int = 1

    def argv(self, inputs: Path, out: Path) -> list[str]:
        args = self.line.replace("{in}", str(inputs)).replace("{out}", str(out)).split()
        return [*(TORCHRUN if self.processes == 2 else EXE), *args]


SYNTHESIZE = "synthesize --teacher builtin --prompts {in}/prompts.txt --out {out}/data --steps 20 shard_size=2"
DISTILL = "distill --teacher builtin --data {in}/data --out {out}/run iterations=8 checkpoint_every=2"
COMMANDS = {
    "synthesize": Command(SYNTHESIZE, "data", ("prompts",)),
    "distill": Command(DISTILL, "run", ("data",)),
    "distill-lora": Command(f"{DISTILL} --lora-rank 4", "run", ("data",)),
    "sample-prompts": Command(
        "sample --model {in}/run --prompts {in}/prompts.txt --out {out}/clips", "clips", ("prompts", "run")
    ),
    "export": Command("export {in}/run --out {out}/export", "export", ("run",)),
    "decoder": Command(
        "decoder distill --teacher builtin --data {in}/data --out {out}/decoder iterations=40 checkpoint_every=10 "
        "width=16 holdout=2 --threads 1",
        "decoder",
        ("data",),
    ),
    "teacher-train": Command(
        "teacher train --out {out}/teacher vae_steps=24 vae_image_steps=12 dataset_size=16 steps=30 "
        "checkpoint_every=10 --threads 1",
        "teacher",
    ),
    "synthesize-2proc": Command(SYNTHESIZE, "data", ("prompts",), processes=2),
    "distill-2proc": Command(f"{DISTILL} batch=2", "run", ("data",), processes=2),
}
SIGNALS = (signal.SIGKILL, signal.SIGINT, signal.SIGTERM)  # killed; Ctrl-C; a scheduler's preemption


def make_inputs(root: Path, needs: set[str]) -> None:
    """The inputs the chosen commands read, made once, unkilled."""
    steps = {
        "prompts": ["prompts", "--n", "6", "--out", f"{root}/prompts.txt"],
        "data": [
            "synthesize",
            "--teacher",
            "builtin",
            "--prompts",
            f"{root}/prompts.txt",
            "--out",
            f"{root}/data",
            "--steps",
            "20",
        ],
        "run": ["distill", "--teacher", "builtin", "--data", f"{root}/data", "--out", f"{root}/run", "iterations=4"],
    }
    if "run" in needs:
        needs |= {"data"}
    if "data" in needs:
        needs |= {"prompts"}
    for name in ("prompts", "data", "run"):
        if name in needs and not (root / ("prompts.txt" if name == "prompts" else name)).exists():
            subprocess.run([*EXE, *steps[name]], check=True, capture_output=True)


# keys whose values are timings, memory or what this invocation did (`iterations_this_run`): left out of records and
# checkpoints. A checkpoint's global RNG (`torch_rng`) is compared: distill and decoder distill seed it from the run's
# seed, so a resumed run must save the same one
MEASURED = ("seconds", "per_s", "peak_memory", "this_run")


def _canonical(value, digest) -> None:
    """Feed a record or checkpoint (dicts, lists, tensors, numbers) into `digest`, keys in MEASURED left out."""
    import torch

    if isinstance(value, dict):
        for k in sorted(value, key=str):
            if not any(m in str(k) for m in MEASURED):
                digest.update(f"<{k}>".encode())
                _canonical(value[k], digest)
    elif isinstance(value, (list, tuple)):
        digest.update(b"[")
        for v in value:
            _canonical(v, digest)
        digest.update(b"]")
    elif isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        digest.update(f"{t.dtype}{tuple(t.shape)}".encode() + t.reshape(-1).view(torch.uint8).numpy().tobytes())
    else:
        digest.update(repr(value).encode())


def fingerprint(path: Path) -> str:
    """A file's SHA-256; for records (JSON, JSON lines, YAML) and torch checkpoints, of their content without the
    MEASURED keys (a resumed run's seconds differ; what it computed must not)."""
    import torch
    import yaml

    digest = hashlib.sha256()
    if path.suffix == ".jsonl":
        _canonical([json.loads(line) for line in path.read_text().splitlines() if line.strip()], digest)
    elif path.suffix == ".json":
        _canonical(json.loads(path.read_text()), digest)
    elif path.suffix in (".yaml", ".yml"):
        _canonical(yaml.safe_load(path.read_text()), digest)
    elif path.suffix == ".pt":
        _canonical(torch.load(path, map_location="cpu", weights_only=False), digest)  # our own checkpoints
    else:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def sharded_fingerprint(folder: Path) -> str:
    """A torch.distributed.checkpoint folder (a `.metadata` and one `.distcp` a process) as one state: its files'
    bytes depend on how the tensors were laid out when saved, not only on their values."""
    import tempfile

    import torch
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    with tempfile.TemporaryDirectory() as tmp:
        dcp_to_torch_save(str(folder), f"{tmp}/whole.pt")
        digest = hashlib.sha256()
        _canonical(torch.load(f"{tmp}/whole.pt", map_location="cpu", weights_only=False), digest)
        return digest.hexdigest()


def tree_hashes(folder: Path) -> dict[str, str]:
    out = {}
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        name = str(path.relative_to(folder))
        if path.name.startswith(".accvideo-checked"):  # stat witnesses: this run's inodes and times, advice only
            continue
        if path.suffix == ".distcp" or path.name == ".metadata" and any(path.parent.glob("*.distcp")):
            key = str(path.parent.relative_to(folder)) + "/(sharded state)"
            if key not in out:
                out[key] = sharded_fingerprint(path.parent)
            continue
        out[name] = fingerprint(path)
    return out


def start(cmd: Command, inputs: Path, out: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    return subprocess.Popen(
        cmd.argv(inputs, out),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
        text=True,
    )


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    _, err = proc.communicate()
    return proc.returncode, err


def run_whole(cmd: Command, inputs: Path, out: Path) -> tuple[float, float, int, str]:
    """Seconds to the command's first line (its imports and checks done), seconds in all, exit code, stderr."""
    t0 = time.perf_counter()
    proc = start(cmd, inputs, out)
    first = proc.stderr.readline()
    t_first = time.perf_counter() - t0
    code, err = finish(proc)
    return t_first, time.perf_counter() - t0, code, first + err


def first_line(proc: subprocess.Popen) -> tuple[threading.Thread, dict]:
    """A thread that reads the process's first stderr line and notes when ("t", perf_counter) it came; the rest is
    left to `communicate` once the thread has ended."""
    box: dict = {}

    def read() -> None:
        box["line"] = proc.stderr.readline()
        box["t"] = time.perf_counter()

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread, box


def kill_at(proc: subprocess.Popen, t0: float, at: float, begin: float, wall: float, sig: int, own_start: bool):
    """Send `sig` to the process group at fraction `at` of the span from the run's first line to its expected end.
    Returns (True when it stopped the run, False when the command ended first, None when it ignored the signal for
    120 s; the seconds after `t0` at which it was sent, or the run ended).

    With `own_start`, the span starts at this run's own first line (seconds after `t0`, its start) and lasts the
    reference's (wall - begin) seconds, stretched by how much slower this run's first line came than the reference's:
    on a busy machine the instants then still fall inside the run (drawn over the reference's seconds from the start,
    most came after the run had ended). Without it (a command that prints only at its end), `begin` counts from the
    start."""
    delay = begin + at * (wall - begin)
    if own_start:
        thread, box = first_line(proc)
        thread.join(timeout=3 * wall + 60)
        if thread.is_alive():  # no line for that long: signal it now (communicate must not race the reader)
            delay = 0.0
        elif not box["line"]:  # the run ended without a line
            proc.wait()
            return False, time.perf_counter() - t0
        else:
            own = box["t"] - t0
            delay = own + at * (wall - begin) * max(1.0, own / begin)
    try:
        proc.wait(timeout=max(0.0, delay - (time.perf_counter() - t0)))
        return False, time.perf_counter() - t0
    except subprocess.TimeoutExpired:
        pass
    sent = time.perf_counter() - t0
    os.killpg(proc.pid, sig)
    try:
        proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:  # the signal not heeded in two minutes: a finding; then kill it
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return None, sent
    return True, sent


def sweep(name: str, cmd: Command, inputs: Path, work: Path, kills: int, rng: random.Random) -> dict:
    refs = []
    out = work / name  # every run at one path: the settings a command records name its output folder
    for _ in range(2):
        shutil.rmtree(out, ignore_errors=True)
        first, seconds, code, err = run_whole(cmd, inputs, out)
        if code != 0:
            raise SystemExit(f"{name}: the unkilled run exited {code}: {err.strip().splitlines()[-1:]}")
        refs.append((first, seconds, tree_hashes(out / cmd.output)))
    begin, wall = min(r[0] for r in refs), min(r[1] for r in refs)
    own_start = wall - begin >= 0.2 * wall
    if not own_start:  # a command that prints only at its end (export): kills from 30% of its time on
        begin = 0.3 * wall
    ref = refs[0][2]
    varying = sorted(k for k in ref if refs[1][2].get(k) != ref[k])
    trials = []
    for t in range(kills):
        shutil.rmtree(out, ignore_errors=True)
        n_kills = 2 if t % 3 == 2 else 1
        events = []
        for k in range(n_kills):
            sig = SIGNALS[(t + k) % len(SIGNALS)]
            at = rng.uniform(0.0, 1.0)
            t0 = time.perf_counter()
            killed, after = kill_at(start(cmd, inputs, out), t0, at, begin, wall, sig, own_start)
            events.append(
                {
                    "signal": signal.Signals(sig).name,
                    "at": round(at, 3),  # of the span from the run's first line to its expected end
                    "after_s": round(after, 2),  # seconds from the run's start to the signal (or to its end)
                    "killed": killed if killed is not None else "ignored the signal for 120 s",
                }
            )
        code, err = finish(start(cmd, inputs, out))
        got = tree_hashes(out / cmd.output) if (out / cmd.output).exists() else {}
        differ = sorted(k for k in ref if k not in varying and got.get(k) != ref[k])
        extra = sorted(k for k in got if k not in ref)
        ok = code == 0 and "Traceback" not in err and not differ and not extra
        ok = ok and all(e["killed"] is not None and e["killed"] != "ignored the signal for 120 s" for e in events)
        trial = {"trial": t, "kills": events, "exit": code, "ok": ok}
        if not ok:
            trial.update(differ=differ, extra=extra, stderr_tail=err.strip().splitlines()[-3:])
        trials.append(trial)
        print(f"{name} trial {t}: {'ok' if ok else 'FAILED'} {events} exit {code}", file=sys.stderr)
        if not ok:  # kept for a look
            shutil.rmtree(work / f"{name}-failed{t}", ignore_errors=True)
            out.rename(work / f"{name}-failed{t}")
    shutil.rmtree(out, ignore_errors=True)
    launcher = "torchrun --standalone --nproc_per_node 2 -m accvideo" if cmd.processes == 2 else "accvideo"
    return {
        "command": f"{launcher} {cmd.line}",
        "processes": cmd.processes,
        "reference_seconds": round(wall, 2),
        "first_line_seconds": round(begin, 2),
        "compared_files": len(ref) - len(varying),
        "varying_files": varying,
        "trials": trials,
        "passed": sum(t["ok"] for t in trials),
    }


def source() -> dict:
    """The accvideo the commands run (PYTHONPATH=CLONE/src runs a clean checkout's) and its commit, with whether
    its tree had uncommitted changes."""
    import accvideo

    root = Path(accvideo.__file__).resolve().parents[2]
    git = ["git", "-C", str(root)]
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "src"], capture_output=True, text=True).stdout.strip()
    return {"path": str(root), "commit": commit, "uncommitted_changes_in_src": bool(dirty)}


def table(result: dict) -> str:
    """Per command: the reference's seconds, files compared, files left out, trials passed, and how many signals
    stopped a run by kind (the others came after the run had ended)."""
    lines = [
        "| command | processes | unkilled run (s) | files compared | left out (differ between two unkilled runs) | "
        "trials passed | runs stopped (KILL / INT / TERM) |",
        "|---|---|---|---|---|---|---|",
    ]
    order = list(COMMANDS)
    for name, r in sorted(result["commands"].items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99):
        stopped = [e["signal"] for t in r["trials"] for e in t["kills"] if e["killed"] is True]
        kinds = " / ".join(str(stopped.count(f"SIG{k}")) for k in ("KILL", "INT", "TERM"))
        left = ", ".join(r["varying_files"]) or "-"
        lines.append(
            f"| {name} | {r.get('processes', 1)} | {r['reference_seconds']:.1f} | {r['compared_files']} | {left} | "
            f"{r['passed']} / {len(r['trials'])} | {kinds} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--verbs", default=",".join(COMMANDS), help=f"comma-separated, of {', '.join(COMMANDS)}")
    p.add_argument("--kills", type=int, default=12, help="trials per command")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", type=Path, default=None, help="keep the trial folders here (default: a temporary one)")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--table", type=Path, default=None, help="print the table of a saved result and stop")
    a = p.parse_args()
    if a.table:
        print(table(json.loads(a.table.read_text())))
        return
    names = [v.strip() for v in a.verbs.split(",") if v.strip()]
    unknown = [v for v in names if v not in COMMANDS]
    if unknown:
        p.error(f"unknown command(s) {unknown}; choose from {', '.join(COMMANDS)}")
    work = a.work or Path(tempfile.mkdtemp(prefix="kill_sweep_"))
    inputs = work / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    make_inputs(inputs, {n for v in names for n in COMMANDS[v].needs})
    result = {"argv": sys.argv[1:], "seed": a.seed, "kills": a.kills, "commands": {}}
    if a.json and a.json.is_file():  # an interrupted sweep: the commands it finished are kept
        done = json.loads(a.json.read_text())
        if (done.get("seed"), done.get("kills")) == (a.seed, a.kills):
            result["commands"] = {k: v for k, v in done["commands"].items() if k in names}
    for name in names:
        if name in result["commands"]:
            print(f"{name}: kept from {a.json}", file=sys.stderr)
            continue
        rng = random.Random(f"{a.seed}-{name}")
        result["commands"][name] = {**sweep(name, COMMANDS[name], inputs, work, a.kills, rng), "source": source()}
        if a.json:
            a.json.write_text(json.dumps(result, indent=1) + "\n")
    print(table(result))
    if not a.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
