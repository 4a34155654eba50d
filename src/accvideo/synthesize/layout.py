"""Which items go to which shard and rank, and which shards are already done (docs/synvid.md, "Determinism").

Shard k holds items [k*S, (k+1)*S) of the prompt list and rank r writes the shards with k % world == r.
Both depend on nothing but S and the prompt list, so a resumed run, or one with another number of
processes, computes every shard from the same items in the same batches: the same bits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from accvideo.core.files import remove_stale_temps, stat_witness
from accvideo.core.outputs import FolderLock, check_folder, claim_folder
from accvideo.errors import AccVideoError
from accvideo.synthesize.config import SynVidSettings
from accvideo.synthesize.prompts import Item
from accvideo.synthesize.shards import (
    ShardHeader,
    compact_checked,
    damaged_tensor,
    list_shards,
    read_checked,
    read_header,
    record_checked,
    shard_path,
)

COMMAND = "synthesize"
MANIFEST = "synvid.yaml"
VIDEOS = "videos"
VIDEO_MANIFEST = "manifest.jsonl"  # in VIDEOS: file, prompt, seed a clip, as `evaluate --videos` reads it


def shard_count(num_items: int, shard_size: int) -> int:
    """Shards needed for num_items items, the last one possibly short."""
    return -(-num_items // shard_size)


def shard_items(items: Sequence[Item], k: int, shard_size: int) -> Sequence[Item]:
    """The items of shard k."""
    return items[k * shard_size : (k + 1) * shard_size]


def owned_shards(num_shards: int, rank: int, world: int) -> list[int]:
    """The shards rank `rank` of `world` processes writes."""
    return list(range(rank, num_shards, world))


def video_name(index: int) -> str:
    """Path of an item's MP4, relative to the dataset folder."""
    return f"{VIDEOS}/{index:08d}.mp4"


def item_keys(items: Sequence[Item], header: ShardHeader) -> list[tuple[int, str, int, str | None]]:
    """What makes each of `items`' content, as `stored_keys(header)` spells it: (index, prompt, seed, image), the
    image by its bytes' digest where the shard recorded digests (an image moved with the same bytes makes the same
    item), else by its path (older shards: checked as they were made)."""
    digests = header.hashes_images
    return [(it.index, it.prompt, it.seed, it.image_sha256 if digests else it.image) for it in items]


def stored_keys(header: ShardHeader) -> list[tuple[int, str, int, str | None]]:
    """The shard's items as `item_keys` spells them."""
    digests = header.hashes_images
    return [(i, prompt, seed, sha if digests else image) for i, prompt, seed, image, sha in header.keys]


def other_teacher(name: str, theirs: str, ours: str) -> str:
    """Why shard `name`, made by the teacher of identity `theirs`, is not of this teacher's (`ours`) dataset."""
    return f"{name} was made by another teacher ({theirs[:19]}..., this one is {ours[:19]}...)"


OVERWRITE_FIX = "pass --overwrite to replace it, or choose another --out"


def another_dataset(root: Path, problem: str) -> AccVideoError:
    """The refusal of a folder holding another SynVid dataset, naming the fixes."""
    return AccVideoError(f"{root} holds another SynVid dataset: {problem}; {OVERWRITE_FIX}")


def _conflict(header: ShardHeader, settings: SynVidSettings, items: Sequence[Item], shard_size: int) -> str | None:
    """Why an existing shard cannot be part of this run's dataset, or None when it can."""
    name = header.path.name
    diff = header.settings.difference(settings)
    if header.settings.teacher != settings.teacher:
        return other_teacher(name, header.settings.teacher, settings.teacher)
    if diff:
        return f"{name} was made with other settings ({diff})"
    if header.path != shard_path(header.path.parent, header.shard):
        return f"{name} says it is shard {header.shard}"
    part = shard_items(items, header.shard, shard_size)
    stored, expected = stored_keys(header), item_keys(part, header)
    # a strict prefix means the prompt file grew: the shard is redone with its new items, not a conflict
    if not stored or stored != expected[: len(stored)]:
        first, last = header.shard * shard_size, header.shard * shard_size + len(stored) - 1
        for j, (s, e, it) in enumerate(zip(stored, expected, part, strict=False)):
            if s != e:
                return _first_difference(name, s, e, it, header.items[j].get("image"))
        return f"{name} holds other prompts or seeds (or images) than items {first}..{last} of the prompt file"
    return None


def _first_difference(name: str, stored: tuple, expected: tuple, item: Item, stored_image: str | None) -> str:
    """Why item `item` of the prompt file is not the one shard `name` holds in its place, naming what differs
    (`stored_image`: the path the shard's item was made from)."""
    if stored[1] != expected[1]:
        return (
            f"{name} holds another prompt as item {item.index} ({stored[1][:40]!r}, the file says {item.prompt[:40]!r})"
        )
    if stored[2] != expected[2]:
        return f"{name} holds item {item.index} with seed {stored[2]}; this run gives it seed {item.seed}"
    if stored[3] != expected[3] and stored_image is not None and item.image is not None:
        if stored_image == item.image:
            return f"{name} was made from another version of image {item.image} (its bytes changed since)"
        if stored[3] == stored_image:  # a shard from before the digests: its items are told by the image's path
            return f"{name} was made from image {stored_image} as item {item.index}, the prompt file gives {item.image}"
        return (
            f"{name} was made from other image bytes as item {item.index} ({stored_image}) than {item.image}, "
            "which the prompt file gives"
        )
    if stored[3] != expected[3]:
        return (
            f"{name} was made from {stored_image or 'no image'} as item {item.index}, the prompt file gives "
            f"{item.image or 'no image'}"
        )
    return f"{name} holds item {stored[0]} where the prompt file has item {item.index}"


def remove_shard(header: ShardHeader) -> None:
    """Delete a shard and the videos it lists (only files this tool names)."""
    for item in header.items:
        if "video" in item:
            (header.path.parent / item["video"]).unlink(missing_ok=True)
    header.path.unlink(missing_ok=True)


def is_synvid_folder(root: Path) -> bool:
    """A folder synthesize wrote before output markers existed (core/outputs.py): it may resume there."""
    return bool(list_shards(root)) or (root / MANIFEST).is_file()


def check_output(root: Path, teacher_dir: Path) -> Path:
    """The output guard for synthesize: a new, empty or SynVid folder, never the teacher's (read-only, any rank)."""
    return check_folder(root, COMMAND, inputs={"teacher": teacher_dir}, legacy=is_synvid_folder)


def _header_or_remove(path: Path, overwrite: bool, read: Callable[[Path], ShardHeader]) -> ShardHeader | None:
    """A kept shard's header; with `overwrite`, an unreadable shard (damaged file or metadata) is removed (None), to
    be redone; without it, the one line saying so."""
    try:
        return read(path)
    except AccVideoError:
        if not overwrite:
            raise
        path.unlink(missing_ok=True)
        return None


def prepare_folder(
    root: Path,
    settings: SynVidSettings,
    items: Sequence[Item],
    shard_size: int,
    overwrite: bool,
    teacher_dir: Path,
    locks: list[FolderLock] | None = None,
    read: Callable[[Path], ShardHeader] = read_header,
) -> int:
    """Claim `root`, check the shards already there against this run and their digests (remove clashing or
    damaged ones if `overwrite`; a shard unchanged since it was written or checked, by its stat, is not read
    again: shards.py); clear temporary files of dead writers. With `locks`, the folder's FolderLock is
    taken first and appended to it (the caller releases it when the run ends): a second synthesize on the same
    folder is refused before it removes or writes anything (two duplicated each other's work, and an --overwrite
    one removed the other's shards under it).

    Returns the number of shards removed. Run on rank 0 only, before any rank writes. `read`: how a header is read
    (`HeaderCache.read`: once for the whole start).
    """
    claim_folder(root, COMMAND, inputs={"teacher": teacher_dir}, legacy=is_synvid_folder)
    if locks is not None:
        locks.append(FolderLock(root, COMMAND))
    removed = 0
    checked, kept, fresh = read_checked(root), {}, []
    for path in list_shards(root):
        header = _header_or_remove(path, overwrite, read)
        if header is None:
            removed += 1
            continue
        problem = _conflict(header, settings, items, shard_size)
        if problem is not None and not overwrite:
            raise another_dataset(root, problem)
        damage = None
        if problem is None:  # every byte is read only of a shard changed since it was written or last checked
            witness = stat_witness(path)
            if checked.get(path.name) != witness:
                damage = damaged_tensor(header)
                if damage is None:
                    fresh.append((path, witness))
            if damage is None:
                kept[path.name] = witness
        if damage is not None and not overwrite:
            raise AccVideoError(
                f"{path} is damaged ({damage} fails its sha256 check); pass --overwrite to redo the shard, "
                "or delete it and rerun the same command"
            )
        if problem is not None or damage is not None:
            remove_shard(header)
            removed += 1
    for path, witness in fresh:  # only now: a start refused on a later shard leaves the folder as it was
        record_checked(path, witness)
    compact_checked(root, kept)  # now and then: the writers' files merged into one, of the shards kept
    remove_stale_temps(root, ".shard-")  # left by a dead writer on this host; a live one's temp file stays
    remove_stale_temps(root / VIDEOS)
    return removed


def is_complete(
    root: Path, k: int, items: Sequence[Item], videos: bool, read: Callable[[Path], ShardHeader] = read_header
) -> bool:
    """Shard k exists and holds exactly its items (and their videos when asked for)."""
    path = shard_path(root, k)
    if not path.is_file():
        return False
    try:
        header = read(path)
    except AccVideoError:  # unreadable: redone under --overwrite, else prepare_folder refuses it
        return False
    if stored_keys(header) != item_keys(items, header):
        return False
    return not videos or all("video" in it and (root / it["video"]).is_file() for it in header.items)
