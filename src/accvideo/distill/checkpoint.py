"""The whole training state (to resume), written atomically: a kill mid-write leaves the previous checkpoint whole.

One process writes one file, `checkpoint.pt`. Several (torchrun) write a folder, `checkpoint/`: the student, EMA,
heads and AdamW states as torch.distributed.checkpoint shards (`__<rank>_0.distcp`, `.metadata`) plus rank 0's
`state.pt` (counters, RNG states, the global queues). Weights and optimiser states are keyed by parameter name
in both, so either resumes on any number of processes; a run keeps only the newer of the two.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from accvideo.core import dist, parallel
from accvideo.core.config import check_same_settings
from accvideo.core.files import is_stale_temp, load_state_file, save_state_file
from accvideo.distill.config import RESUMABLE_CHANGES
from accvideo.errors import AccVideoError

FORMAT = "accvideo.distill-state/2"  # /1: positional AdamW states, one process only
NAME = "checkpoint.pt"  # one process
SHARDED = "checkpoint"  # several processes: a folder
META = "state.pt"  # in SHARDED: everything but the sharded tensors


def save_checkpoint(path: Path, state: dict, fmt: str = FORMAT) -> Path:
    """Write `state` (tensors, state dicts, ints, RNG states) to a temporary file, flush it, rename it over `path`."""
    return save_state_file(path, {"format": fmt, **state})


def load_checkpoint(path: Path, fmt: str = FORMAT, what: str = "distill") -> dict | None:
    """The saved state of format `fmt` (a `what` checkpoint), or None when there is none (weights only: loading
    runs no code)."""
    path = Path(path)
    for stale in path.parent.glob(f".{path.name}.*.part"):  # left by a dead writer (never a live one's)
        if is_stale_temp(stale):
            stale.unlink(missing_ok=True)
    state = load_state_file(path, "checkpoint", "delete it to start over")
    if state is None:
        return None
    if state.get("format") == "accvideo.distill-state/1":
        raise AccVideoError(
            f"{path} was written by an older accvideo; delete it to start over, or choose another --out"
        )
    if state.get("format") != fmt:
        raise AccVideoError(f"{path} is not an accvideo {what} checkpoint; choose another --out")
    return state


def check_resumable(
    saved: dict,
    config: dict,
    teacher: str,
    path: Path,
    defaults: dict | None = None,
    resumable: frozenset = RESUMABLE_CHANGES,
) -> None:
    """Refuse to resume a checkpoint of another teacher or other settings (those in `resumable` may change; see
    core/config.check_same_settings for settings newer than the checkpoint)."""
    if saved["teacher"] != teacher:
        raise AccVideoError(f"{path} was trained from another teacher; use another --out or the same --teacher")
    recorded = dict(saved["config"])
    if recorded.get("lora_targets") == []:  # runs before `lora_targets=[]` was recorded as the default it means
        recorded["lora_targets"] = None
    from accvideo.distill.reals import records_clips

    for key in CLIP_FOLDERS:  # a clip folder may move or be spelled another way: its cached chunks check its clips
        if _is_folder(recorded.get(key)) and _is_folder(config.get(key)) and records_clips(Path(path).parent):
            recorded[key] = config[key]
    check_same_settings(recorded, config, path, defaults, resumable)


# settings naming a folder of real clips (distill `real_data`, decoder distill `videos`): their encoded chunks record
# the clips' names, prompts and sha256 (distill/reals.py), so a resume checks the clips, not how the folder is named
# (chunks cached before the digests cannot be checked so: their folder must be named as it was)
CLIP_FOLDERS = ("real_data", "videos")


def _is_folder(value) -> bool:
    return isinstance(value, str) and value != "world"


def check_continues(saved: dict, out: Path, data, dataset, iterations: int) -> None:
    """Refuse to go on from a checkpoint made on another dataset than `dataset` (its identity: a dataset moved
    elsewhere is the same one; one grown, completed or remade since is not) or past `iterations` (no going back)."""
    if "dataset" not in saved:
        check_unchanged_since(out, data, dataset)
    elif saved["dataset"] != dataset.identity:
        raise AccVideoError(
            f"{out} was trained on another dataset ({saved.get('dataset_items')} items) than {data} holds "
            f"({len(dataset)} items, or other trajectories); use another --out, or --data the dataset it trained on"
        )
    if saved["iteration"] > iterations:
        raise AccVideoError(
            f"{out} is at iteration {saved['iteration']}, past iterations={iterations}; a run cannot go back: "
            f"use another --out, or iterations={saved['iteration']} or more"
        )


def check_unchanged_since(out: Path, data, dataset) -> None:
    """A checkpoint of an accvideo before the dataset identity was kept (e005bda) cannot name the dataset it trained
    on; it resumed on any --data, a dataset grown or remade since included (silently another dataset). Its last save
    is the best witness left: a shard written after it (a synthesize that grew, completed or remade the dataset) is
    refused; a dataset untouched since resumes as before."""
    saves = [p for p in (Path(out) / NAME, Path(out) / SHARDED / META) if p.is_file()]
    shards = list(Path(dataset.root).glob("shard-*.safetensors"))
    if saves and shards and max(p.stat().st_mtime for p in shards) > max(p.stat().st_mtime for p in saves):
        raise AccVideoError(
            f"{out} was saved by an older accvideo that did not record its dataset, and {data} has shards written "
            f"after its last save (grown, completed or remade), so it may not be the dataset it trained on; use "
            f"another --out (a new run), or --data the dataset as it was"
        )


def save_sharded(folder: Path, tensors: dict, meta: dict) -> Path:
    """Every rank: DCP shards of `tensors`, and rank 0's `meta`; built aside, then swapped in whole by rank 0."""
    folder = Path(folder)
    tmp, old = folder.with_name(f".{folder.name}.part"), folder.with_name(f".{folder.name}.old")
    if dist.is_main():
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    dist.barrier()
    parallel.dcp_save(tensors, tmp)
    dist.barrier()  # every shard is written
    if dist.is_main():
        save_checkpoint(tmp / META, meta)
        shutil.rmtree(old, ignore_errors=True)
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
        (folder.parent / NAME).unlink(missing_ok=True)  # the newer state is this folder
    dist.barrier()
    return folder


def save_single(path: Path, state: dict) -> Path:
    """One process: the whole state in one file; a folder left by an earlier multi-process run goes."""
    save_checkpoint(path, state)
    shutil.rmtree(Path(path).with_name(SHARDED), ignore_errors=True)
    return path


def tidy(out: Path) -> None:
    """Rank 0, before anyone reads: finish a swap that a kill interrupted, drop half-written parts."""
    folder = Path(out) / SHARDED
    old = folder.with_name(f".{folder.name}.old")
    if old.is_dir() and not folder.exists():
        os.replace(old, folder)
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(folder.with_name(f".{folder.name}.part"), ignore_errors=True)


def load_latest(
    out: Path, check: Callable[[dict, Path], None], target: Callable[[dict], dict]
) -> tuple[dict, dict, bool] | None:
    """(state, tensors, whole) of the newer checkpoint of the run folder, or None; every rank calls it.

    `check(state, path)` may refuse it (naming `path`, the file or folder it came from) before any tensor is read.
    From `checkpoint.pt` the tensors are whole (whole=True); from `checkpoint/` they are read with DCP into
    `target(state)`, this run's own (possibly sharded) layout, whatever process count wrote them.
    """
    single = load_checkpoint(Path(out) / NAME)
    folder = Path(out) / SHARDED
    if folder.exists() and not folder.is_dir():
        raise AccVideoError(f"{folder} is not a folder, so not a readable checkpoint; delete it to start over")
    meta = load_checkpoint(folder / META) if folder.is_dir() else None  # state.pt as a folder: one line
    if folder.is_dir() and meta is None:  # written whole or not at all (.checkpoint.part, then a rename)
        raise AccVideoError(f"{folder} lacks its {META} (damaged); delete the folder to start over")
    if meta is None or (single is not None and single["iteration"] >= meta["iteration"]):
        if single is not None:
            check(single, Path(out) / NAME)
        return None if single is None else (single, single, True)
    check(meta, folder)
    tensors = target(meta)
    try:
        parallel.dcp_load(tensors, folder)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - DCP's CheckpointException is a BaseException; damage is one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        raise AccVideoError(f"{folder} is not a readable checkpoint ({first}); delete it to start over") from None
    return meta, tensors, False
