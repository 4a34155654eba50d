"""SynVid shard files (docs/synvid.md, "Layout on disk"): self-describing safetensors, written whole or not at all.

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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from accvideo.core.files import temp_name
from accvideo.core.inputs import parse_json
from accvideo.core.tensorfile import write_safetensors
from accvideo.errors import AccVideoError
from accvideo.synthesize.config import SynVidSettings
from accvideo.synthesize.identity import tensor_sha256

FORMAT = "accvideo.synvid/1"
META_KEY = "synvid"
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
    # {"index", "prompt", "seed"} (+ "image": its path, "image_sha256": its bytes; "video": relative to the dataset)
    items: tuple[dict, ...]
    sha256: dict[str, str]  # tensor name -> hex digest
    cond_keys: tuple[str, ...]
    batch: int

    @property
    def keys(self) -> list[tuple[int, str, int, str | None, str | None]]:
        """(index, prompt, seed, image path, image sha256) of each item (None: none): what makes the shard's
        content. Shards made before images were hashed hold no digest."""
        return [(it["index"], it["prompt"], it["seed"], it.get("image"), it.get("image_sha256")) for it in self.items]

    @property
    def hashes_images(self) -> bool:
        return any("image_sha256" in it for it in self.items)


def read_header(path: str | Path) -> ShardHeader:
    """Parse a shard's metadata; AccVideoError naming the file if it is not a readable SynVid shard."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = parse_json((f.metadata() or {}).get(META_KEY, "{}"))
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
    latents: Sequence[torch.Tensor],
    cond: dict[str, Sequence[torch.Tensor]],
    batch: int,
) -> Path:
    """Atomically write shard k: latents (N, K, C, F', H', W') or N per-item tensors, cond {name: (N, ...) or N
    tensors}; items describe the N rows. Rows are written from where they lie (views, never copies), so a shard is
    held once in host memory however many latents an item stores (`--store all`)."""
    if len(latents) != len(items) or any(len(v) != len(items) for v in cond.values()):
        raise ValueError(f"shard {k}: {len(items)} items but tensors of batch {len(latents)}")
    tensors = {"sigmas": settings.sigmas.contiguous()}
    for j in range(len(items)):
        tensors[f"{j}/latents"] = latents[j]
        for name, value in cond.items():
            tensors[f"{j}/cond/{name}"] = value[j]
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
        write_safetensors(tensors, metadata, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(Path(root))
    return path
