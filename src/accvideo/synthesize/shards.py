"""SynVid shard files (docs/synvid.md, "Layout on disk"): self-describing safetensors, written whole or not at all.

A shard `shard-KKKKKK.safetensors` holds items [k*S, (k+1)*S) of the prompt list. Tensors are per item,
`{j}/latents` (K, C, F', H', W') and `{j}/cond/{name}`, plus the shard's `sigmas` grid (n+1,) float64.
The metadata (one JSON value under "synvid") carries the format, the dataset settings, the items (index, prompt,
seed) and a sha256 of every tensor. Writes go to a hidden `.shard-*.HOST-PID.part` file that is renamed when complete,
so listing `shard-*.safetensors` never shows a half shard, whatever kills the writer; a resumed run checks the digests
of every shard it keeps, except one whose file is unchanged since its digests were checked or it was written (its size,
mtime, ctime and inode as the hidden `.accvideo-checked*.jsonl` files record them): reading every byte of a SynVid of
terabytes at every resume is the full-folder hash the start-up must not do (docs/scale-out.md). A change made through
the file system changes that stat; damage below it (a disk's bit rot) is still caught where the items are read
(`SynVidDataset`, verify=True: every item's digests at its first read).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from accvideo.core.files import stat_witness, temp_name, write_text_atomic, writer_id
from accvideo.core.inputs import MAX_TEXT, is_int, object_lines, parse_json, read_small_file
from accvideo.core.schedules import check_key_indices, check_steps
from accvideo.core.tensorfile import write_safetensors
from accvideo.errors import AccVideoError
from accvideo.synthesize.config import STORES, SynVidSettings
from accvideo.synthesize.identity import tensor_sha256

FORMAT = "accvideo.synvid/1"
META_KEY = "synvid"
_NAME = re.compile(r"shard-(\d{6,})\.safetensors")
_ITEM_PATHS = ("image", "image_sha256", "video")  # optional str fields of an item
_ITEM_FIELDS = {  # what every item holds: (check, what it must be)
    "index": (lambda v: is_int(v) and v >= 0, "an int >= 0"),
    "prompt": (lambda v: isinstance(v, str), "a str"),
    "seed": (lambda v: is_int(v), "an int"),
}


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


CHECKED = ".accvideo-checked"  # CHECKED.jsonl (rank 0's, at start) and CHECKED.HOST-PID.jsonl (each writer's)


def record_checked(path: Path, witness: list[int] | None = None) -> None:
    """Note that shard `path` was just written or its digests checked (its stat `witness`, taken before its bytes were
    read; None: now): one line appended to this writer's own file (no other process appends to it), so nothing is
    rewritten per shard, nor at a start that finds every shard as recorded. Advice only: a line lost (a full disk)
    means one shard is hashed again."""
    path = Path(path)
    line = json.dumps({"name": path.name, "stat": stat_witness(path) if witness is None else witness}) + "\n"
    try:
        with open(path.parent / f"{CHECKED}.{writer_id()}.jsonl", "a", encoding="utf-8") as f:
            f.write(line)
    except OSError:
        pass


def checked_files(root: Path) -> list[Path]:
    return sorted(Path(root).glob(f"{CHECKED}*.jsonl"))


def read_checked(root: Path) -> dict[str, list]:
    """Shard name -> its stat when last written or checked, from every writer's file (unreadable ones say nothing)."""
    found: dict[str, list] = {}
    for path in checked_files(root):
        try:
            text = read_small_file(path, MAX_TEXT).decode("utf-8", errors="replace")
        except (OSError, ValueError):
            continue
        for row in object_lines(text):
            if isinstance(row.get("name"), str) and isinstance(row.get("stat"), list):
                found[row["name"]] = row["stat"]
    return found


MAX_CHECKED_FILES = 16  # writers' files (one a process that wrote or checked a shard) before they are merged


def compact_checked(root: Path, witnesses: dict[str, list]) -> None:
    """Past MAX_CHECKED_FILES files, replace them by one listing `witnesses` (rank 0, before any rank writes; O(shards),
    once every few runs): lines of removed or rewritten shards go with them."""
    root = Path(root)
    if len(checked_files(root)) <= MAX_CHECKED_FILES:
        return
    old = [p for p in checked_files(root) if p.name != f"{CHECKED}.jsonl"]
    text = "".join(json.dumps({"name": n, "stat": w}) + "\n" for n, w in sorted(witnesses.items()))
    try:
        write_text_atomic(root / f"{CHECKED}.jsonl", text)
        for path in old:
            path.unlink(missing_ok=True)
    except OSError:
        pass  # advice only: the next start hashes what it cannot vouch for


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


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _of_kind(value, annotation: str) -> bool:
    """Whether a JSON value fits a SynVidSettings field's annotation (`int`, `float | None`, `tuple[int, ...]`)."""
    if value is None:
        return annotation.endswith("| None")
    base = annotation.removesuffix(" | None")
    if base.startswith("tuple[int"):
        return isinstance(value, list) and all(is_int(v) for v in value)
    return {"str": isinstance(value, str), "int": is_int(value), "float": _is_number(value)}.get(base, True)


def _check_ranges(s: SynVidSettings) -> None:
    """Steps, key indices (rising from 0 to steps), sizes and choices within their ranges; ValueError if not."""
    check_steps(s.steps)
    try:
        check_key_indices(s.key_indices, s.steps)
    except AccVideoError as exc:
        raise ValueError(str(exc).split(" (e.g.")[0]) from None
    ok = {n: getattr(s, n) >= 1 for n in ("frames", "height", "width", "shard_size")}
    ok.update(shift=s.shift > 0, store=s.store in STORES, latent_shape=min(s.latent_shape, default=0) >= 1)
    bad = [name for name, fine in ok.items() if not fine]
    if bad:
        raise ValueError(f"setting {bad[0]} {getattr(s, bad[0])!r} is out of range")


def _settings_of(raw) -> SynVidSettings:
    """The settings of a shard's metadata, every field of its kind and range; ValueError saying which is not."""
    if not isinstance(raw, dict):
        raise ValueError("its settings are not a mapping")
    kinds = {f.name: str(f.type) for f in fields(SynVidSettings)}
    for name, value in raw.items():
        if name in kinds and not _of_kind(value, kinds[name]):
            raise ValueError(f"setting {name} is {value!r}, not of the kind {kinds[name]}")
    settings = SynVidSettings.from_dict(raw)
    _check_ranges(settings)
    return settings


def _item_problem(it: dict) -> str | None:
    """What is wrong with one item of a shard's metadata (its int index >= 0, str prompt, int seed, optional str
    paths), or None."""
    for key, (fits, kind) in _ITEM_FIELDS.items():
        if not fits(it.get(key)):
            return f"{key} {it[key]!r} is not {kind}" if key in it else f"no {key}"
    odd = [k for k in _ITEM_PATHS if k in it and not isinstance(it[k], str)]
    return f"{odd[0]} {it[odd[0]]!r} is not a str" if odd else None


def _items_of(raw) -> tuple[dict, ...]:
    """The items of a shard's metadata, each checked; ValueError naming the first bad one."""
    if not isinstance(raw, list) or not raw or not all(isinstance(it, dict) for it in raw):
        raise ValueError("its items are not a list of mappings")
    for j, it in enumerate(raw):
        problem = _item_problem(it)
        if problem is not None:
            raise ValueError(f"item {j}: {problem}")
    return tuple(raw)


def _check_tensors(header: ShardHeader, shapes: dict[str, tuple[int, ...]]) -> None:
    """The metadata's cond_keys, latent_shape, steps and digests agree with the tensors the file holds (its header's
    names and shapes: no tensor is read)."""
    names = {"sigmas", *(n for j in range(len(header.items)) for n in item_tensor_names(j, header.cond_keys))}
    if set(shapes) != names or set(header.sha256) != names:
        odd = sorted(set(shapes) ^ names) or sorted(set(header.sha256) ^ names)
        raise ValueError(f"its metadata and its tensors disagree on {odd[0]}")
    s = header.settings
    want = {"sigmas": (s.steps + 1,)}
    want.update({f"{j}/latents": (len(s.latent_indices), *s.latent_shape) for j in range(len(header.items))})
    for name, shape in want.items():
        if shapes[name] != shape:
            raise ValueError(f"tensor {name} has shape {list(shapes[name])}, its metadata says {list(shape)}")


def _header_of(path: Path, meta, shapes: dict[str, tuple[int, ...]]) -> ShardHeader:
    found = meta.get("format") if isinstance(meta, dict) else None
    if found != FORMAT:
        raise ValueError(f"format {found!r}, expected {FORMAT!r}")
    cond_keys, digests = meta.get("cond_keys"), meta.get("sha256")
    if not isinstance(cond_keys, list) or not all(isinstance(k, str) for k in cond_keys):
        raise ValueError("its cond_keys are not a list of names")
    if not isinstance(digests, dict) or not all(isinstance(v, str) for v in digests.values()):
        raise ValueError("its sha256 are not a mapping of digests")
    if not is_int(meta.get("shard")) or meta["shard"] < 0 or not is_int(meta.get("batch")) or meta["batch"] < 1:
        raise ValueError("its shard or batch is not a count")
    header = ShardHeader(
        path=path,
        shard=meta["shard"],
        settings=_settings_of(meta.get("settings")),
        items=_items_of(meta.get("items")),
        sha256=dict(digests),
        cond_keys=tuple(cond_keys),
        batch=meta["batch"],
    )
    _check_tensors(header, shapes)
    return header


def read_header(path: str | Path) -> ShardHeader:
    """Parse a shard's metadata and check it (kinds, ranges, agreement with the tensors' names and shapes);
    AccVideoError naming the file if it is not a readable SynVid shard, which `synthesize --overwrite` redoes."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = parse_json((f.metadata() or {}).get(META_KEY, "{}"))
            shapes = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
        return _header_of(path, meta, shapes)
    except (SafetensorError, OSError, ValueError, KeyError, TypeError) as exc:
        why = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise AccVideoError(
            f"{path} is not a readable SynVid shard ({why}); rerun the synthesize command with --overwrite to "
            "regenerate it"
        ) from None


class HeaderCache:
    """Each shard's header read once while a start checks a folder (the teacher's identity, the disk check, the
    folder check, which shards are complete: four to five reads of every header before): a header is given again
    while its file's stat witness is unchanged, so a shard rewritten or replaced since is read anew."""

    def __init__(self):
        self._seen: dict[Path, tuple[list[int], ShardHeader]] = {}

    def read(self, path: str | Path) -> ShardHeader:
        """`read_header(path)`, from the cache when the file is unchanged since it was read."""
        path = Path(path)
        try:
            witness = stat_witness(path)  # taken before the read: a change during it is seen at the next one
        except OSError:
            return read_header(path)  # its one line
        hit = self._seen.get(path)
        if hit is not None and hit[0] == witness:
            return hit[1]
        header = read_header(path)
        self._seen[path] = (witness, header)
        return header


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
    record_checked(path)  # its digests were just computed from these very tensors
    return path
