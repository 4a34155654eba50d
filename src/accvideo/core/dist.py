"""The distributed seam (docs/ARCHITECTURE.md): init from the torchrun environment, rank, world size, barrier, print0.

Only this module (and the parallelize seam) imports torch.distributed; model, loss and sampler code
never does. Every function also works in a plain single process, where rank is 0 and world size 1.
"""

from __future__ import annotations

import gc
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as tdist

from accvideo.core.inputs import env_int
from accvideo.core.interrupts import check as check_interrupt
from accvideo.core.launcher import watch_launcher
from accvideo.errors import AccVideoError


def env_world_size() -> int:
    """WORLD_SIZE as torchrun sets it (1 when launched without torchrun)."""
    return env_int("WORLD_SIZE", "1", 1, "a number of processes")


def is_distributed() -> bool:
    """True when a process group is up (several processes cooperate)."""
    return tdist.is_available() and tdist.is_initialized()


def rank() -> int:
    """This process's rank, 0 .. world_size()-1."""
    return tdist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """How many processes cooperate (1 without a process group)."""
    return tdist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    """This process's index on its machine (picks its GPU)."""
    return env_int("LOCAL_RANK", "0", 0, "a process index on this machine")


def is_main() -> bool:
    """Rank 0: the process that prints, and prepares shared folders."""
    return rank() == 0


def local_device(device: torch.device) -> torch.device:
    """A bare 'cuda' becomes this process's own GPU (cuda:LOCAL_RANK) under torchrun."""
    if device.type == "cuda" and device.index is None and env_world_size() > 1:
        return torch.device("cuda", local_rank())
    return device


def backend_for(device: torch.device) -> str:
    """gloo for CPU work, nccl for GPU work."""
    return "nccl" if device.type == "cuda" else "gloo"


def init(device: torch.device, timeout_minutes: float = 60.0) -> bool:
    """Join the torchrun process group if WORLD_SIZE > 1 and none is up; True when this call started it."""
    if env_world_size() <= 1 or is_distributed():
        return False
    if not tdist.is_available():
        raise AccVideoError("this torch build has no torch.distributed; run without torchrun")
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise AccVideoError(f"WORLD_SIZE is set but {', '.join(missing)} is not; launch with torchrun")
    size = env_world_size()
    env_int("RANK", "0", 0, f"a rank of {size} processes (0 to {size - 1})", size - 1)
    env_int("LOCAL_RANK", "0", 0, "a process index on this machine")
    env_int("MASTER_PORT", "0", 1, "a TCP port (1 to 65535)", 65535)
    watch_launcher()  # the CLI started it already; a library caller gets it here
    check_interrupt()  # a signal Python swallowed while this rank loaded: stop, not wait in the rendezvous for peers
    backend = backend_for(device)
    if backend == "nccl":
        torch.cuda.set_device(local_device(device))
    # the timeout bounds how long ranks wait for rank 0 to hash the teacher and prepare the folder
    _rendezvous(lambda: tdist.init_process_group(backend=backend, timeout=timedelta(minutes=timeout_minutes)))
    return True


WAIT_NOTE_S = 30.0  # a rank waiting this long for its peers says so (a peer that never started waits the timeout)


def _rendezvous(join: Callable[[], None], note_after: float = WAIT_NOTE_S) -> None:
    """Run `join` (the rendezvous) in a helper thread while this one waits: blocked in init_process_group's C++,
    the main thread ran no signal handler, so a rank whose peer never started ignored Ctrl-C and SIGTERM for the
    whole timeout (an hour). Waiting here, a signal stops it at once; after `note_after` seconds it says why."""
    failed: list[BaseException] = []

    def run() -> None:
        try:
            join()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread, which raises it
            failed.append(exc)

    thread = threading.Thread(target=run, name="accvideo-rendezvous", daemon=True)
    start, noted = time.monotonic(), False
    thread.start()
    while thread.is_alive():
        thread.join(0.2)  # a signal's handler runs between these waits
        check_interrupt()
        if not noted and time.monotonic() - start > note_after:
            noted = True
            _note_waiting()
    if failed:
        exc = failed[0]
        if "EADDRINUSE" in str(exc):  # torch's 40-line DistNetworkError traceback
            raise AccVideoError(
                f"the rendezvous port MASTER_PORT={os.environ.get('MASTER_PORT')} is in use by another program; "
                "choose another (torchrun --master_port PORT) and rerun"
            ) from None
        raise exc


def _note_waiting() -> None:
    """One line a node (its first process speaks for the others, which wait alike): who waits, where, for what."""
    if os.environ.get("LOCAL_RANK", "0") != "0":
        return
    try:
        rank, here = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    except ValueError:  # set by hand, not by torchrun
        rank, here = os.environ.get("RANK"), 1
    world = env_world_size()
    ranks = f"rank {rank} of {world} is" if here == 1 else f"ranks {rank} to {rank + here - 1} of {world} are"
    where = f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"
    print(
        f"{ranks} waiting at {where} for the other processes of this launch to start; Ctrl-C stops it",
        file=sys.stderr,
        flush=True,
    )


def shutdown() -> None:
    """Leave the process group (no-op without one).

    Wrapped models (FSDP2's hooks, DDP's reducer) hold the group in reference cycles; collecting them first destroys
    the gloo/NCCL objects now, while the interpreter is whole, not during its finalisation, where a rank could abort
    ("terminate called without an active exception") after its work was done and saved.
    """
    if is_distributed():
        gc.collect()
        tdist.destroy_process_group()
        gc.collect()


@contextmanager
def distributed(device: torch.device) -> Iterator[None]:
    """Join the process group for the body when launched by torchrun; leave it after, if joined here.

    After a body that succeeded on this rank, every rank waits for the others before any tears the group down, so
    no rank closes its connections while another still talks to it.
    """
    started = init(device)
    try:
        yield
        if started:
            barrier()
    finally:
        if started:
            shutdown()


def barrier() -> None:
    """Wait for every rank (no-op in one process)."""
    if is_distributed():
        tdist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank src's picklable `obj`, on every rank (control messages only, never data)."""
    if not is_distributed():
        return obj
    box = [obj if rank() == src else None]
    tdist.broadcast_object_list(box, src=src)
    return box[0]


def from_main(fn: Callable[[], Any]) -> Any:
    """fn() run on rank 0 alone (hashing, preparing a folder), its result on every rank; a collective.

    A failure on rank 0 reaches every rank before it is raised (else they would wait in the broadcast until the
    timeout): rank 0 raises its own exception, the others an AccVideoError with its line.
    """
    reply: tuple = ("error", "rank 0 failed")
    if is_main():
        try:
            reply = ("ok", fn())
        except BaseException as exc:
            broadcast_object(("error", str(exc) if isinstance(exc, AccVideoError) else f"rank 0 failed: {exc!r}"))
            raise
    reply = broadcast_object(reply)
    if reply[0] == "error":
        raise AccVideoError(reply[1])
    return reply[1]


RANK_LOCAL = ("device",)  # settings each rank may hold its own value of (its GPU)


def check_agree(settings: dict) -> None:
    """Every rank was given these same settings, or a one-line refusal on every rank naming the first that differs.

    The ranks of a multi-node launch each parse their own command line: a node given another --steps or lr wrote
    shards, clips or gradients of its own while rank 0's records named rank 0's settings (every launch exit 0).
    A collective; rank-local settings (the device) are left out by the caller."""
    if not is_distributed():
        return
    everyone = gather_objects({k: v for k, v in settings.items() if k not in RANK_LOCAL})
    first = everyone[0]
    for r, theirs in enumerate(everyone[1:], start=1):
        for key in [*first, *(k for k in theirs if k not in first)]:
            if first.get(key) != theirs.get(key):
                raise AccVideoError(
                    f"the processes of this launch were given other settings: rank 0 has {key}={first.get(key)!r}, "
                    f"rank {r} has {key}={theirs.get(key)!r}; run the very same command on every node"
                )


def check_shared_folder(folder: Path) -> None:
    """Every rank sees the folder rank 0 writes (`--out` on a file system all of them see), or a one-line refusal on
    every rank: nodes writing into folders of their own each "succeeded", and a sharded checkpoint missing the other
    nodes' files could never be resumed. A collective, after rank 0 made the folder."""
    if not is_distributed():
        return
    from accvideo.core.files import temp_name

    def write() -> tuple[str, str]:
        token, path = secrets.token_hex(16), temp_name(Path(folder) / "rank-check")
        path.write_text(token)
        return path.name, token

    name, token = from_main(write)
    seen = False
    for _ in range(10):  # a network file system may show another node's new file a moment late
        try:
            seen = (Path(folder) / name).read_text() == token
        except (OSError, UnicodeDecodeError):
            seen = False
        if seen:
            break
        time.sleep(0.5)
    everyone = gather_objects(seen)  # every rank has read before rank 0 removes it
    if is_main():
        (Path(folder) / name).unlink(missing_ok=True)
    if not all(everyone):
        r = everyone.index(False)
        raise AccVideoError(
            f"rank {r} does not see {folder} as rank 0 wrote it: every process of the launch must write into one "
            "folder on a file system all of them see; give every node the same shared --out"
        )


def mean(value: torch.Tensor | float) -> float:
    """The mean of a scalar over every rank (the value itself in one process); a collective."""
    if not is_distributed():
        return float(value.detach() if isinstance(value, torch.Tensor) else value)
    t = _on_backend(torch.as_tensor(value).detach().double().reshape(1))
    tdist.all_reduce(t)
    return float(t) / world_size()


def max_int(value: int) -> int:
    """The largest of every rank's `value` (the value itself in one process); a collective."""
    if not is_distributed():
        return int(value)
    t = _on_backend(torch.tensor([int(value)], dtype=torch.int64))
    tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
    return int(t)


def gather_cat(t: torch.Tensor) -> torch.Tensor:
    """Every rank's `t` (same shape on each), concatenated along dim 0 in rank order; a collective."""
    if not is_distributed():
        return t
    sent = _on_backend(t.contiguous())
    parts = [torch.empty_like(sent) for _ in range(world_size())]
    tdist.all_gather(parts, sent)
    return torch.cat(parts).to(t.device)


def gather_objects(obj: Any) -> list:
    """Every rank's picklable `obj` (control messages only, never data), in rank order; a collective."""
    if not is_distributed():
        return [obj]
    box: list = [None] * world_size()
    tdist.all_gather_object(box, obj)
    return box


def _on_backend(t: torch.Tensor) -> torch.Tensor:
    """nccl moves only GPU tensors: CPU tensors (item indices, seeds) travel through this rank's GPU."""
    if tdist.get_backend() == "nccl" and t.device.type != "cuda":
        return t.to(torch.device("cuda", torch.cuda.current_device()))
    return t


def print0(*args, **kwargs) -> None:
    """print on rank 0 only."""
    if is_main():
        print(*args, **kwargs)
