"""Bookkeeping that must not grow with the data: a resume reads no byte of what did not change, a ledger keeps every
entry however many files it lists and takes a file without rewriting itself, `evaluate --videos` holds a chunk of
clips, a start reads each shard header once (counted in calls, entries, bytes or traced memory here; speed itself is
measured in benchmarks/bookkeeping.py, never asserted)."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import pytest
import torch
from cli_helpers import run_forked

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


def _big_ledger(folder: Path, n: int) -> int:
    """A folder of `n` files its ledger lists (over INLINE_BYTES: changes go to the journal); the ledger's bytes."""
    entries = {}
    for i in range(n):
        (folder / f"{i:06d}.mp4").write_bytes(b"%d" % i)
        entries[f"{i:06d}.mp4"] = {"command": "sample", "sha256": files_mod.file_sha256(folder / f"{i:06d}.mp4")}
    (folder / outputs.LEDGER).write_text(json.dumps({"format": outputs.FORMAT, "files": entries}, indent=1) + "\n")
    size = (folder / outputs.LEDGER).stat().st_size
    assert size > outputs.INLINE_BYTES
    return size


def _bytes_read(monkeypatch) -> list[int]:
    sizes, real = [], outputs.read_small_file

    def counted(path, *args):
        data = real(path, *args)
        sizes.append(len(data))
        return data

    monkeypatch.setattr(outputs, "read_small_file", counted)
    return sizes


def test_recording_many_files_reads_the_ledger_a_bounded_number_of_times(tmp_path, monkeypatch):
    """Each recorded file read, pruned and rewrote the whole ledger (O(N) a file, O(N^2) for N: 0.5 s a file at
    50,000); a change is now one appended line, the journal folded in only when it outgrows the ledger."""
    size = _big_ledger(tmp_path, 600)
    read = _bytes_read(monkeypatch)
    for i in range(1500):
        path = tmp_path / f"new{i:05d}.mp4"
        path.write_bytes(b"new %d" % i)
        outputs.record_file(path, "sample")
    final = sum(p.stat().st_size for p in tmp_path.glob(".accvideo-files.json*"))  # the ledger and its journal
    assert 0 < sum(read) < 4 * final  # before: about 1500 x 2.5 x `size`
    assert final > 2.5 * size  # (the folds did happen)
    ledger = outputs._ledger(tmp_path)
    assert len(ledger) == 2100 and ledger["new01499.mp4"]["command"] == "sample"
    assert outputs.claim_file(tmp_path / "new01499.mp4", "sample") == tmp_path / "new01499.mp4"
    (tmp_path / "new01498.mp4").write_bytes(b"edited since")
    with pytest.raises(AccVideoError, match="was not written by accvideo"):
        outputs.claim_file(tmp_path / "new01498.mp4", "sample")
    (tmp_path / "theirs.mp4").write_bytes(b"a user's file")
    with pytest.raises(AccVideoError, match="was not written by accvideo"):
        outputs.claim_file(tmp_path / "theirs.mp4", "sample")
    assert outputs.remove_file(tmp_path / "new01497.mp4", "sample") and "new01497.mp4" not in outputs._ledger(tmp_path)


def test_a_journal_line_torn_by_a_kill_is_ignored(tmp_path):
    """SIGKILL mid-append leaves half a line: it lists nothing, and the next line starts on a line of its own."""
    _big_ledger(tmp_path, 600)
    (tmp_path / "a.mp4").write_bytes(b"a")
    outputs.record_file(tmp_path / "a.mp4", "sample")
    journal = tmp_path / outputs.JOURNAL
    whole = journal.read_bytes()
    journal.write_bytes(whole + whole[: len(whole) // 2].replace(b"a.mp4", b"b.mp4"))  # torn: no newline
    (tmp_path / "b.mp4").write_bytes(b"b")
    assert "b.mp4" not in outputs._ledger(tmp_path) and "a.mp4" in outputs._ledger(tmp_path)
    (tmp_path / "c.mp4").write_bytes(b"c")
    outputs.record_file(tmp_path / "c.mp4", "sample")
    ledger = outputs._ledger(tmp_path)
    assert {"a.mp4", "c.mp4"} <= set(ledger) and "b.mp4" not in ledger
    with pytest.raises(AccVideoError, match="was not written by accvideo"):
        outputs.claim_file(tmp_path / "b.mp4", "sample")


def test_a_fold_killed_before_it_removed_the_journal_reads_the_same(tmp_path):
    """The ledger is rewritten whole, then the journal removed: a kill between the two replays the journal over a
    ledger that holds it already, which changes nothing."""
    _big_ledger(tmp_path, 600)
    for name in ("a.mp4", "b.mp4"):
        (tmp_path / name).write_bytes(name.encode())
        outputs.record_file(tmp_path / name, "sample")
    outputs.vouch(tmp_path / "c.mp4", "sample")(tmp_path / "a.mp4")  # c's pending content: a's bytes
    assert outputs.remove_file(tmp_path / "b.mp4", "sample")
    before = outputs._ledger(tmp_path)
    journal = (tmp_path / outputs.JOURNAL).read_bytes()
    files = {n: e for n, e in before.items() if (tmp_path / n).is_file() or n == "c.mp4"}
    (tmp_path / outputs.LEDGER).write_text(json.dumps({"format": outputs.FORMAT, "files": files}, indent=1))
    (tmp_path / outputs.JOURNAL).write_bytes(journal)
    assert outputs._ledger(tmp_path) == before and "b.mp4" not in before and "pending" in before["c.mp4"]


def _record_into(folder: str, tag: int, n: int) -> None:
    for i in range(n):
        path = Path(folder) / f"w{tag}-{i}.txt"
        path.write_text(f"{tag} {i}\n")
        outputs.record_file(path, "prompts")


def test_two_writers_appending_and_folding_at_once_keep_every_entry(tmp_path):
    """Two processes (torchrun ranks) recording into a folder with a large ledger, through appends and folds."""
    _big_ledger(tmp_path, 600)
    run_forked(_record_into, [(str(tmp_path), tag, 700) for tag in range(2)], 120)
    ledger = outputs._ledger(tmp_path)
    assert len(ledger) == 600 + 1400
    for tag in range(2):
        for i in range(700):
            entry = ledger[f"w{tag}-{i}.txt"]
            assert entry["sha256"] == hashlib.sha256(f"{tag} {i}\n".encode()).hexdigest()


def _world_clip_folder(folder: Path, n: int) -> Path:
    """n clips of the world (renders of held-out prompts, a few of them noise) as 8-bit .npy, with their manifest."""
    import numpy as np

    from accvideo.evaluate.folder import write_video_folder
    from accvideo.world.attributes import parse_caption, prompts
    from accvideo.world.render import render_batch

    pairs = prompts(n, "heldout", seed=7)
    clips = render_batch([(parse_caption(c), s) for c, s in pairs])
    clips[::5] = np.random.default_rng(0).uniform(0, 1, clips[::5].shape)  # some far from their prompt
    return write_video_folder(folder, clips, pairs, "npy")


def test_evaluate_videos_holds_a_chunk_of_clips_not_the_folder(tmp_path, monkeypatch):
    """`evaluate --videos` read every clip into one array before scoring it (1 GB for 4,000 clips of 17x64x64); it
    now reads SCORE_CHUNK clips at a time: its peak (numpy's arrays, which tracemalloc sees) is about a chunk's."""
    import tracemalloc

    import accvideo.evaluate.run as run
    from accvideo.evaluate.config import EvaluateConfig

    n, clip_bytes = 96, 17 * 64 * 64 * 3
    folder = _world_clip_folder(tmp_path / "clips", n)
    monkeypatch.setattr(run, "SCORE_CHUNK", 4)
    clf = run.load_classifier(None)  # loaded before: its reads are not the clips'
    monkeypatch.setattr(run, "load_classifier", lambda *_: clf)
    tracemalloc.start()
    try:
        metrics = run.run_evaluate(EvaluateConfig(videos=str(folder), out=str(tmp_path / "ev")), progress=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert metrics["n_videos"] == n and metrics["frechet_distance"] > 1
    assert peak < 0.6 * n * clip_bytes  # 10 MB (4 clips and their renders, as floats); before 30 MB: every clip


def test_a_folder_scored_as_read_gives_the_numbers_of_the_folder_held(tmp_path, monkeypatch):
    """Every number of a folder read chunk by chunk is that of the same clips held in one array (bit for bit, the
    Frechet distance included: both take the running moments); that distance is the old formula on the held
    features (np.cov of all of them) to round-off (N < D here: the covariances are singular, and the square roots of
    their round-off eigenvalues differ by about 1e-8)."""
    import numpy as np

    import accvideo.evaluate.run as run
    from accvideo.evaluate.folder import VideoFolder, load_video_folder
    from accvideo.evaluate.metrics import frechet_distance

    folder = _world_clip_folder(tmp_path / "clips", 40)
    videos, pairs, _ = load_video_folder(folder)
    held = run.evaluate_videos(videos, pairs, per_clip=True)
    monkeypatch.setattr(run, "SCORE_CHUNK", 16)
    opened = VideoFolder(folder, videos.shape[1:4])
    assert opened.pairs == pairs and opened.dtype == np.uint8
    read = run.evaluate_videos(opened, pairs, per_clip=True)
    a, b = held.pop("per_clip"), read.pop("per_clip")
    assert held == read
    assert np.array_equal(a.features, b.features) and np.array_equal(a.hits, b.hits)
    assert read["frechet_distance"] == pytest.approx(frechet_distance(a.features, a.real_features), rel=1e-6)


def test_running_moments_are_the_old_frechet_distance(tmp_path):
    """The Frechet distance from running moments (float64, merged 64 rows at a time, whatever the chunks) equals the
    formula on the stacked features (np.cov) to 1e-9 relative, features far from zero mean included."""
    import numpy as np

    from accvideo.evaluate.metrics import RunningGaussian, frechet_distance, running_frechet

    rng = np.random.default_rng(0)
    mix = rng.normal(size=(64, 64)) * 0.1
    a = rng.normal(0, 1, (1000, 64)) @ mix + 1e3
    b = rng.normal(0.1, 1.1, (700, 64)) @ mix + 1e3

    def moments(x, cuts):
        g = RunningGaussian(64)
        for i, j in zip(cuts[:-1], cuts[1:], strict=True):
            g.add(x[i:j])
        return g

    old = frechet_distance(a, b)
    for cuts_a, cuts_b in (([0, 1000], [0, 700]), ([0, 1, 300, 999, 1000], [0, 256, 512, 700])):
        assert running_frechet(moments(a, cuts_a), moments(b, cuts_b)) == pytest.approx(old, rel=1e-9)
    assert running_frechet(moments(a, [0, 1000]), moments(b, [0, 700])) == running_frechet(
        moments(a, [0, 7, 1000]), moments(b, [0, 699, 700])
    )


def test_a_synthesize_start_reads_each_shard_header_once(tmp_path, tiny_wan_dir, tiny_wan, monkeypatch):
    """The teacher check, the disk check, the folder check, the manifest's and the rank's 'which shards are done'
    each read every shard's header: 4 reads a shard at a resume (5 with --videos), now 1 (plus, with --videos, the
    clips' manifest written at the end)."""
    from accvideo.synthesize import SynthConfig, synthesize
    from accvideo.synthesize import shards as shards_mod

    (tmp_path / "p.txt").write_text("".join(f"a red circle {i}\n" for i in range(6)))
    small = dict(steps=2, key_steps=1, frames=5, height=16, width=16, shard_size=1, batch=1)
    cfg = SynthConfig(teacher=str(tiny_wan_dir), prompts=str(tmp_path / "p.txt"), out=str(tmp_path / "syn"), **small)
    synthesize(cfg, adapter=tiny_wan, progress=False)
    opened = _count(monkeypatch, shards_mod, "safe_open")
    summary = synthesize(cfg, adapter=tiny_wan, progress=False)
    assert summary["shards_skipped"] == 6 and sorted(str(c[0]) for c in opened) == [
        str(shards_mod.shard_path(tmp_path / "syn", k)) for k in range(6)
    ]
    (tmp_path / "p.txt").write_text("".join(f"a red circle {i}\n" for i in range(7)))  # one more item: a 7th shard
    opened.clear()
    summary = synthesize(cfg, adapter=tiny_wan, progress=False)
    assert summary["shards_written"] == 1 and len(opened) == 6  # the new shard is written, never read


def _decoder_cfg(tiny_wan_dir, synvid, out, **kw):
    from accvideo.decoder import DecoderDistillConfig

    small = dict(width=16, depth=1, holdout=2, batch=4, lr=3e-3, log_every=10, device="cpu", iterations=1)
    return DecoderDistillConfig(teacher=str(tiny_wan_dir), data=str(synvid), out=str(out), **{**small, **kw})


def test_a_decoder_resume_keeps_its_target_chunks_without_reading_the_synvid_items(
    tiny_wan_dir, synvid, tmp_path, monkeypatch
):
    """Each kept target chunk was checked by reading the SynVid items it was made from whole (every key latent and
    the text encodings, digests checked): a resume read the dataset. A chunk now records its items' latent digests
    (from the shard headers) and is kept by them; a chunk whose inputs changed is still decoded again."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from accvideo.decoder import distill_decoder
    from accvideo.decoder.targets import chunk_name
    from accvideo.synthesize.dataset import SynVidDataset

    out = tmp_path / "dec"
    distill_decoder(_decoder_cfg(tiny_wan_dir, synvid, out), progress=False)
    chunk = out / "targets" / chunk_name(0)
    made = chunk.stat().st_mtime_ns, chunk.read_bytes()
    read: list = []
    real = SynVidDataset._item

    def counted(self, i, check):
        read.append(i)
        return real(self, i, check)

    monkeypatch.setattr(SynVidDataset, "_item", counted)
    distill_decoder(_decoder_cfg(tiny_wan_dir, synvid, out, iterations=2), progress=False)
    assert read == [] and (chunk.stat().st_mtime_ns, chunk.read_bytes()) == made
    with safe_open(str(chunk), "pt") as f:  # as if made from other inputs: other latents, their digests
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    tensors["latents"][0] += 1
    save_file(tensors, str(chunk), metadata={**meta, "sources": json.dumps(["synvid-latents:" + "0" * 64] * 10)})
    distill_decoder(_decoder_cfg(tiny_wan_dir, synvid, out, iterations=3), progress=False)
    assert chunk.read_bytes() == made[1] and sorted(read) == list(range(10))  # checked by its latents: decoded again
