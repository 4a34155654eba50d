"""SynVid shard files (DESIGN.md "Data: SynVid shards"): self-describing safetensors, written whole or not at all.

A shard `shard-KKKKKK.safetensors` holds items [k*S, (k+1)*S) of the prompt list. Tensors are per item,
`{j}/latents` (K, C, F', H', W') and `{j}/cond/{name}`, plus the shard's `sigmas` grid (n+1,) float64.
The metadata (one JSON value under "synvid") carries the format, the dataset settings, the items (index, prompt,
seed) and a sha256 of every tensor. Writes go to a hidden `.shard-*.HOST-PID.part` file that is renamed when complete,
so listing `shard-*.safetensors` never shows a half shard, whatever kills the writer; a resumed run checks the digests
of every shard it keeps.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from accvideo.core.files import is_stale_temp, temp_name
from accvideo.errors import AccVideoError
from accvideo.synthesize.config import SynVidSettings
from accvideo.synthesize.identity import tensor_sha256

FORMAT = "accvideo.synvid/1"
META_KEY = "synvid"
_UMASK = os.umask(0o22)
os.umask(_UMASK)  # reading the umask means setting it; put it straight back
_FILE_MODE = 0o666 & ~_UMASK
_NAME = re.compile(r"shard-(\d{6,})\.safetensors")


def shard_path(root: Path, k: int) -> Path:
    """Where shard k lives."""
    return Path(root) / f"shard-{k:06d}.safetensors"


def list_shards(root: str | Path) -> list[Path]:
    """Complete shard files of a dataset folder, in shard order (temporary files never match)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _NAME.fullmatch(p.name)) and p.is_file()]
    return [p for _, p in sorted(found)]


def partial_files(root: str | Path) -> list[Path]:
    """Temporary shard files: being written, or left by a writer that was killed or failed."""
    root = Path(root)
    return sorted(root.glob(".shard-*.part")) if root.is_dir() else []


def stale_files(root: str | Path) -> list[Path]:
    """The temporary shard files whose writer is gone (this host, dead pid): never a live writer's (core/files.py)."""
    return [p for p in partial_files(root) if is_stale_temp(p)]


def damaged_tensor(header: ShardHeader) -> str | None:
    """The first tensor of a shard whose bytes fail their recorded sha256 (or that is missing), else None."""
    try:
        with safe_open(str(header.path), framework="pt") as f:
            if set(f.keys()) != set(header.sha256):
                return "its tensor list"
            for name, digest in sorted(header.sha256.items()):
                if tensor_sha256(f.get_tensor(name)) != digest:
                    return name
    except (SafetensorError, OSError, ValueError) as exc:
        return f"its data ({str(exc).splitlines()[0][:80]})"
    return None


def item_tensor_names(j: int, cond_keys) -> list[str]:
    """Tensor names of the j-th item of a shard."""
    return [f"{j}/latents"] + [f"{j}/cond/{k}" for k in sorted(cond_keys)]


@dataclass(frozen=True)
class ShardHeader:
    """A shard's metadata, read without loading its tensors."""

    path: Path
    shard: int
    settings: SynVidSettings
    items: tuple[dict, ...]  # {"index", "prompt", "seed"} (+ "video": path relative to the dataset)
    sha256: dict[str, str]  # tensor name -> hex digest
    cond_keys: tuple[str, ...]
    batch: int

    @property
    def keys(self) -> list[tuple[int, str, int]]:
        """(index, prompt, seed) of each item: what makes the shard's content."""
        return [(it["index"], it["prompt"], it["seed"]) for it in self.items]


def read_header(path: str | Path) -> ShardHeader:
    """Parse a shard's metadata; AccVideoError naming the file if it is not a readable SynVid shard."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get(META_KEY, "{}"))
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT!r}")
        return ShardHeader(
            path=path,
            shard=int(meta["shard"]),
            settings=SynVidSettings.from_dict(meta["settings"]),
            items=tuple(meta["items"]),
            sha256=dict(meta["sha256"]),
            cond_keys=tuple(meta["cond_keys"]),
            batch=int(meta["batch"]),
        )
    except (SafetensorError, OSError, ValueError, KeyError, TypeError) as exc:
        raise AccVideoError(
            f"{path} is not a readable SynVid shard ({exc}); delete it and rerun synthesize to regenerate it"
        ) from None


def _write_file(tensors: dict[str, torch.Tensor], metadata: dict[str, str], path: Path) -> None:
    """Write and flush one safetensors file to disk (the step a full disk makes fail)."""
    save_file(tensors, str(path), metadata=metadata)
    os.chmod(path, _FILE_MODE)  # safetensors creates files owner-only; datasets are often shared
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _fsync_dir(root: Path) -> None:
    try:
        fd = os.open(root, os.O_RDONLY)
    except OSError:  # some filesystems (and Windows) cannot open folders: the rename is still atomic
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_shard(
    root: Path,
    k: int,
    settings: SynVidSettings,
    items: list[dict],
    latents: torch.Tensor,
    cond: dict[str, torch.Tensor],
    batch: int,
) -> Path:
    """Atomically write shard k: latents (N, K, C, F', H', W'), cond {name: (N, ...)}; items describe the N rows."""
    if latents.shape[0] != len(items) or any(v.shape[0] != len(items) for v in cond.values()):
        raise ValueError(f"shard {k}: {len(items)} items but tensors of batch {latents.shape[0]}")
    tensors = {"sigmas": settings.sigmas.contiguous()}
    for j in range(len(items)):
        # clone: safetensors refuses tensors that share storage, and rows of one batch tensor do
        tensors[f"{j}/latents"] = latents[j].clone()
        for name, value in cond.items():
            tensors[f"{j}/cond/{name}"] = value[j].clone()
    header = {
        "format": FORMAT,
        "shard": k,
        "settings": settings.to_dict(),
        "items": items,
        "sha256": {name: tensor_sha256(t) for name, t in tensors.items()},
        "cond_keys": sorted(cond),
        "batch": batch,
    }
    # one metadata key: safetensors writes several in hash order, which would make equal shards differ in bytes
    metadata = {META_KEY: json.dumps(header, sort_keys=True, ensure_ascii=False)}
    path = shard_path(root, k)
    tmp = temp_name(path)  # names this writer, so no other process's cleanup removes it
    try:
        _write_file(tensors, metadata, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(Path(root))
    return path
