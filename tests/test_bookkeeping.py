"""Bookkeeping that must not grow with the data: a resume reads no byte of what did not change, a ledger keeps every
entry however many files it lists (speed itself is measured in benchmarks/bookkeeping.py, never asserted here)."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import pytest
import torch

from accvideo.core import files as files_mod
from accvideo.core import outputs
from accvideo.errors import AccVideoError
from accvideo.sample import batch
from accvideo.synthesize import layout
from accvideo.synthesize.config import SynVidSettings
from accvideo.synthesize.prompts import Item
from accvideo.synthesize.shards import checked_files, write_shard

SIZE = 2


def _synvid(root: Path, shards: int):
    settings = SynVidSettings(
        teacher="sampled:" + "0" * 64,
        family="wan",
        steps=4,
        shift=3.0,
        key_indices=(0, 2, 4),
        guidance=5.0,
        negative_prompt="",
        frames=5,
        height=16,
        width=16,
        latent_shape=(2, 2, 2, 2),
        store="key",
        dtype="float32",
        shard_size=SIZE,
    )
    root.mkdir()
    items = [Item(i, f"prompt {i}", i) for i in range(shards * SIZE)]
    for k in range(shards):
        part = items[k * SIZE : (k + 1) * SIZE]
        rows = [{"index": it.index, "prompt": it.prompt, "seed": it.seed} for it in part]
        lat = [torch.full((3, 2, 2, 2, 2), float(it.index)) for it in part]
        write_shard(root, k, settings, rows, lat, {"text": [torch.zeros(3, 4) + it.index for it in part]}, SIZE)
    return settings, items


def _later() -> None:
    """Past the file system's timestamp tick (a jiffy on ext4): an edit right after the witness could keep its times
    there, which no user's edit does."""
    time.sleep(0.05)


def _count(monkeypatch, module, name: str) -> list:
    calls, real = [], getattr(module, name)

    def counted(*args, **kw):
        calls.append(args)
        return real(*args, **kw)

    monkeypatch.setattr(module, name, counted)
    return calls


def test_a_synthesize_resume_reads_the_tensors_of_changed_shards_only(tmp_path, monkeypatch):
    """Shards as written (or checked before) are not read again at a resume: the digest check of every byte is what
    made starting on a SynVid of terabytes take hours. A shard changed through the file system still fails it."""
    root = tmp_path / "syn"
    settings, items = _synvid(root, 6)
    calls = _count(monkeypatch, layout, "damaged_tensor")
    prepare = lambda: layout.prepare_folder(root, settings, items, SIZE, False, tmp_path / "teacher")  # noqa: E731
    assert prepare() == 0 and calls == []  # every shard's stat is the one recorded as it was written
    files = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in root.iterdir()}
    assert prepare() == 0 and calls == []
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in root.iterdir()} == files  # nothing rewritten
    shard = root / "shard-000003.safetensors"
    _later()
    data = bytearray(shard.read_bytes())
    data[-1] ^= 1  # tensor data: only the digests see it
    shard.write_bytes(bytes(data))
    with pytest.raises(AccVideoError, match="shard-000003.safetensors is damaged"):
        prepare()
    assert [c[0].path.name for c in calls] == ["shard-000003.safetensors"]


def test_a_copied_synvid_is_checked_whole_once(tmp_path, monkeypatch):
    """A copy (other inodes) has no witness of its own: its first resume reads every shard, the next none."""
    settings, items = _synvid(tmp_path / "syn", 4)
    root = tmp_path / "copy"
    shutil.copytree(tmp_path / "syn", root)
    calls = _count(monkeypatch, layout, "damaged_tensor")
    layout.prepare_folder(root, settings, items, SIZE, False, tmp_path / "teacher")
    assert len(calls) == 4
    layout.prepare_folder(root, settings, items, SIZE, False, tmp_path / "teacher")
    assert len(calls) == 4


def test_the_writers_witness_files_are_merged_now_and_then(tmp_path, monkeypatch):
    """One witness file a writer process; past MAX_CHECKED_FILES a start merges them into one, and still reads no
    shard whose stat they record."""
    from accvideo.synthesize import shards

    root = tmp_path / "syn"
    settings, items = _synvid(root, 3)
    (own,) = checked_files(root)
    for i in range(shards.MAX_CHECKED_FILES):
        shutil.copy(own, root / f".accvideo-checked.other-{i}.jsonl")
    calls = _count(monkeypatch, layout, "damaged_tensor")
    layout.prepare_folder(root, settings, items, SIZE, False, tmp_path / "teacher")
    assert calls == [] and [p.name for p in checked_files(root)] == [".accvideo-checked.jsonl"]
    assert sorted(shards.read_checked(root)) == [f"shard-00000{k}.safetensors" for k in range(3)]
    layout.prepare_folder(root, settings, items, SIZE, False, tmp_path / "teacher")
    assert calls == []


def _clips(out: Path, n: int) -> dict[int, dict]:
    out.mkdir()
    wanted = {i: batch._entry(Item(i, f"prompt {i}", i), False) for i in range(n)}
    lines = []
    for i, e in wanted.items():
        (out / e["file"]).write_bytes(b"clip %d" % i)
        lines.append(json.dumps(batch._with_sha(out, e)) + "\n")
    (out / batch.MANIFEST).write_text("".join(lines))
    return wanted


def test_a_sample_resume_hashes_only_clips_changed_since_they_were_hashed(tmp_path, monkeypatch):
    out = tmp_path / "clips"
    wanted = _clips(out, 5)
    settings = {"made_with": {"model": "x"}}
    (out / batch.SETTINGS).write_text(json.dumps(settings))
    calls = _count(monkeypatch, batch, "file_sha256")
    assert len(batch._prepare(out, wanted, settings)) == 5 and len(calls) == 5  # no record yet: each clip read once
    assert len(batch._prepare(out, wanted, settings)) == 5 and len(calls) == 5  # then none
    _later()
    (out / "000001.mp4").write_bytes(b"clip 1")  # rewritten with the same bytes: read, and kept
    (out / "000002.mp4").write_bytes(b"clip X")  # the same size, other bytes: read, and sampled again
    done = batch._prepare(out, wanted, settings)
    assert sorted(done) == [0, 1, 3, 4] and len(calls) == 7


def test_the_witness_is_taken_before_the_bytes_are_read(tmp_path, monkeypatch):
    """A clip changed while it was hashed keeps the stat of before, so the next resume hashes it again."""
    out = tmp_path / "clips"
    out.mkdir()
    (out / "000000.mp4").write_bytes(b"a")
    real = batch.file_sha256

    def racing(path):
        digest = real(path)
        Path(path).write_bytes(b"bb")  # another size: whatever the timestamps' tick
        return digest

    monkeypatch.setattr(batch, "file_sha256", racing)
    witnessed: list = []
    batch._with_sha(out, {"file": "000000.mp4"}, witnessed)
    assert witnessed[0]["stat"] != files_mod.stat_witness(out / "000000.mp4")


def test_a_ledger_of_many_files_keeps_every_entry(tmp_path):
    """Past 4 MB (about 35,000 files) the ledger was read as none: every entry was dropped at the next write, and
    each of those files' reruns was refused as 'not written by accvideo'."""
    n = 40_000
    names = [f"{i:06d}.mp4" for i in range(n)]
    for name in names:
        (tmp_path / name).touch()
    entries = {name: {"command": "sample", "sha256": files_mod.file_sha256(tmp_path / names[0])} for name in names}
    (tmp_path / outputs.LEDGER).write_text(json.dumps({"format": outputs.FORMAT, "files": entries}, indent=1))
    assert (tmp_path / outputs.LEDGER).stat().st_size > 4 << 20
    (tmp_path / "new.mp4").write_bytes(b"x")
    outputs.record_file(tmp_path / "new.mp4", "sample")
    assert len(outputs._ledger(tmp_path)) == n + 1
    assert outputs.claim_file(tmp_path / names[-1], "sample") == tmp_path / names[-1]  # still ours to replace


def _clip_folder(folder: Path, clips: list) -> Path:
    import numpy as np

    folder.mkdir()
    for i, clip in enumerate(clips):
        np.save(folder / f"{i:06d}.npy", clip)
    rows = [json.dumps({"file": f"{i:06d}.npy", "prompt": "a", "seed": i}) + "\n" for i in range(len(clips))]
    (folder / "manifest.jsonl").write_text("".join(rows))
    return folder


def test_a_video_folder_is_held_once_in_memory(tmp_path):
    """`evaluate --videos` over thousands of clips: the loader held them twice (a list, then np.stack) and the
    digest a third time (tobytes); now its peak is the array it returns plus about a clip."""
    import tracemalloc

    import numpy as np

    from accvideo.evaluate.folder import load_video_folder
    from accvideo.evaluate.run import _clips_sha256

    clip = np.random.default_rng(0).integers(0, 255, (5, 32, 32, 3), dtype=np.uint8)
    folder = _clip_folder(tmp_path / "clips", [clip] * 200)
    tracemalloc.start()
    try:
        videos, _, _ = load_video_folder(folder)
        loaded = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        digest = _clips_sha256(videos)
        hashed = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert loaded < 1.3 * videos.nbytes and hashed < 0.1 * videos.nbytes
    assert digest == hashlib.sha256(videos.tobytes()).hexdigest()


@pytest.mark.parametrize("kinds", ["uuu", "ufu", "fud", "dd"])
def test_a_video_folder_of_mixed_clips_loads_as_before(tmp_path, kinds):
    """uint8 clips stay uint8; any float clip makes the whole float32 in [0, 1], bit for bit as the list + stack did."""
    import numpy as np

    from accvideo.evaluate.folder import load_video_folder

    rng = np.random.default_rng(1)
    dtypes = {"f": np.float32, "d": np.float64}
    clips = [
        rng.integers(0, 255, (3, 4, 4, 3), dtype=np.uint8)
        if k == "u"
        else rng.uniform(-0.0005, 1.0005, (3, 4, 4, 3)).astype(dtypes[k])
        for k in kinds
    ]
    videos, _, _ = load_video_folder(_clip_folder(tmp_path / "clips", clips))
    if kinds == "uuu":
        before = np.stack(clips)
    else:
        before = np.stack([c / 255.0 if c.dtype == np.uint8 else np.clip(c, 0, 1) for c in clips]).astype(np.float32)
    assert videos.dtype == before.dtype and np.array_equal(videos, before)
