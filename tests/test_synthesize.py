"""SynVid synthesis: items equal plain teacher sampling, the reader's checks, and bad input (docs/method.md 1)."""

from __future__ import annotations

import errno
import json
import os
import shutil

import numpy as np
import pytest
import torch
import yaml
from cli_helpers import run_cli

from accvideo.core.runtime import noise
from accvideo.core.sampling import euler_sample
from accvideo.core.schedules import key_sigmas, shifted_sigmas
from accvideo.core.video import read_video
from accvideo.errors import AccVideoError
from accvideo.models.identity import teacher_identity
from accvideo.synthesize import SynthConfig, SynVidDataset, build_index, read_prompts, synthesize
from accvideo.synthesize import shards as shards_mod
from accvideo.synthesize.shards import list_shards, partial_files, read_header
from accvideo.world import item_seed
from accvideo.world import prompts as world_prompts

PROMPTS = [
    "a red circle moving left",
    "a blue square",
    "a green star moving up",
    "a cat on a red background",
    "a yellow triangle spinning",
]
SMALL = dict(steps=10, key_steps=5, frames=9, height=32, width=32, shard_size=2, batch=2, guidance=3.0)


def prompt_file(path, prompts=PROMPTS):
    # a blank line and a whitespace-only line: skipped and counted, not items
    lines = [*prompts[:2], "", "   ", *prompts[2:]]
    path.write_text("\n".join(lines) + "\n")
    return path


def cfg(tiny_wan_dir, prompts, out, **kw):
    return SynthConfig(teacher=str(tiny_wan_dir), prompts=str(prompts), out=str(out), **{**SMALL, **kw})


def items(root, **kw):
    ds = SynVidDataset(root, **kw)
    return [ds[i] for i in range(len(ds))]


def test_read_prompts_txt_and_jsonl(tmp_path):
    txt = read_prompts(prompt_file(tmp_path / "p.txt"), base_seed=7)
    assert [it.prompt for it in txt.items] == PROMPTS and txt.blank_lines == 2
    assert [it.seed for it in txt.items] == [item_seed(7, i) for i in range(5)]
    assert len({it.seed for it in txt.items}) == 5
    jl = tmp_path / "p.jsonl"
    jl.write_bytes(b'\xef\xbb\xbf{"prompt": "a red circle", "seed": 11}\r\n\r\n{"prompt": " a blue square "}\r\n')
    got = read_prompts(jl, base_seed=3)
    assert [(it.index, it.prompt, it.seed) for it in got.items] == [
        (0, "a red circle", 11),
        (1, "a blue square", item_seed(3, 1)),
    ]
    assert got.blank_lines == 1
    # a `sample --prompts` manifest read back as prompts: its own keys are left alone; a key one typo from a read
    # one is refused (it was ignored: the default seed)
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(json.dumps({"file": "000000.mp4", "sha256": "ab", "prompt": "a red circle", "seed": 5}) + "\n")
    assert [(it.prompt, it.seed) for it in read_prompts(manifest).items] == [("a red circle", 5)]
    manifest.write_text(json.dumps({"prompt": "a red circle", "seeds": 5}) + "\n")
    with pytest.raises(AccVideoError, match="has the key 'seeds'; did you mean 'seed'"):
        read_prompts(manifest)


def test_prompts_command_writes_the_worlds_captions(tmp_path, capsys):
    code, out, err = run_cli(
        ["prompts", "--n", "6", "--out", str(tmp_path / "p.jsonl"), "--split", "heldout", "--seed", "4"], capsys
    )
    assert code in (0, None), err
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [(r["prompt"], r["seed"]) for r in rows] == world_prompts(6, "heldout", 4)
    # a text file holds captions only: read with the same base seed, a train list gives the same items as its JSONL
    for suffix in ("txt", "jsonl"):
        run_cli(["prompts", "--n", "6", "--out", str(tmp_path / f"train.{suffix}"), "--seed", "4"], capsys)
    assert read_prompts(tmp_path / "train.txt", 4).items == read_prompts(tmp_path / "train.jsonl").items
    # held-out and val seeds live in streams of their own (never a training seed): a .txt would drop them, and its
    # rows were then sampled from the train items' seeds, so it is refused
    for split in ("heldout", "val"):
        code, _, err = run_cli(
            ["prompts", "--n", "2", "--out", str(tmp_path / f"{split}.TXT"), "--split", split], capsys
        )
        assert code == 2 and f"{split} rows would be sampled from the train split's item seeds" in err
        assert f"write --out {tmp_path / split}.jsonl" in err and not (tmp_path / f"{split}.TXT").exists()


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "holds no prompts"),
        (b"\n  \n\n", "holds no prompts"),
        (b"a red circle\nan \xff\xfe odd line\n", "line 2 of"),
        ("a red circle\n".encode() + "caf\u00e9".encode("latin-1") + b"\n", "line 2 of"),
    ],
)
def test_bad_prompt_files_exit_2(tiny_wan_dir, tmp_path, capsys, content, message):
    (tmp_path / "p.txt").write_bytes(content)
    code, _, err = run_cli(
        [
            "synthesize",
            "--teacher",
            str(tiny_wan_dir),
            "--prompts",
            str(tmp_path / "p.txt"),
            "--out",
            str(tmp_path / "ds"),
            "--steps",
            "2",
            "--key-steps",
            "1",
        ],
        capsys,
    )
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    if message == "line 2 of":
        assert "UTF-8" in lines[0]
    assert not list_shards(tmp_path / "ds")


def test_bad_jsonl_and_settings_are_refused(tmp_path):
    (tmp_path / "p.jsonl").write_text('{"prompt": "a red circle"}\nnot json\n')
    with pytest.raises(AccVideoError, match="line 2 of .* is not JSON"):
        read_prompts(tmp_path / "p.jsonl")
    with pytest.raises(ValueError, match="do not divide"):
        SynthConfig(steps=10, key_steps=3)
    with pytest.raises(ValueError, match="rise strictly"):
        SynthConfig(steps=10, key_indices=[0, 5, 9])
    with pytest.raises(ValueError, match="either"):
        SynthConfig(steps=10, key_steps=5, key_indices=[0, 10])
    with pytest.raises(ValueError, match="store"):
        SynthConfig(store="some")
    assert SynthConfig(steps=50, key_indices=[0, 10, 20, 30, 40, 50]).indices == (0, 10, 20, 30, 40, 50)
    assert SynthConfig(steps=50).indices == (0, 10, 20, 30, 40, 50)  # m = 5 by default


def test_key_latents_equal_plain_teacher_sampling(tiny_wan, tiny_wan_dir, tmp_path):
    prompts = prompt_file(tmp_path / "p.txt")
    summary = synthesize(cfg(tiny_wan_dir, prompts, tmp_path / "ds", batch=1, seed=5), adapter=tiny_wan, progress=False)
    assert summary["items"] == 5 and summary["blank_lines"] == 2 and summary["shards"] == 3
    got = items(tmp_path / "ds")
    sigmas = shifted_sigmas(10, tiny_wan.default_shift)
    keys = [0, 2, 4, 6, 8, 10]
    uncond = tiny_wan.encode_prompts([""])
    shape = tiny_wan.latent_shape(9, 32, 32)
    for i, item in enumerate(got):
        assert (item["index"], item["prompt"], item["seed"]) == (i, PROMPTS[i], item_seed(5, i))
        cond = tiny_wan.encode_prompts([PROMPTS[i]])
        seen = {}
        with torch.inference_mode():
            final = euler_sample(
                lambda x, s, cond=cond: tiny_wan.velocity(x, s, cond),
                noise((1, *shape), item_seed(5, i)),
                sigmas,
                uncond=lambda x, s: tiny_wan.velocity(x, s, uncond),
                guidance=3.0,
                callback=lambda j, _s, x, seen=seen: seen.__setitem__(j, x.clone()),
            )
        want = torch.cat([seen[j] for j in keys])
        assert item["latents"].shape == (6, *shape)
        assert torch.equal(item["latents"], want)
        assert torch.equal(item["latents"][-1], final[0]) and torch.equal(
            item["latents"][0], noise(shape, item["seed"])
        )
        assert torch.equal(item["cond"]["prompt_embeds"], cond["prompt_embeds"][0])
        assert torch.equal(item["sigmas"], key_sigmas(sigmas, keys).float())
    assert item["sigmas"][0] == 1.0 and item["sigmas"][-1] == 0.0 and 0 < item["sigmas"][2] < 1

    # batching inside a shard changes only rounding, never which item gets which noise
    synthesize(cfg(tiny_wan_dir, prompts, tmp_path / "b2", batch=2, seed=5), adapter=tiny_wan, progress=False)
    for a, b in zip(got, items(tmp_path / "b2"), strict=False):
        torch.testing.assert_close(a["latents"], b["latents"], atol=1e-4, rtol=1e-4)


def test_whole_trajectories_and_the_readers_checks(tiny_wan, tiny_wan_dir, tmp_path):
    prompts = prompt_file(tmp_path / "p.txt")
    synthesize(cfg(tiny_wan_dir, prompts, tmp_path / "key"), adapter=tiny_wan, progress=False)
    synthesize(cfg(tiny_wan_dir, prompts, tmp_path / "all", store="all"), adapter=tiny_wan, progress=False)
    (tmp_path / "key" / "synvid.yaml").unlink()  # the index comes from the shards alone
    key, whole = items(tmp_path / "key"), items(tmp_path / "all")
    assert [len(h.items) for h in build_index(tmp_path / "key")] == [2, 2, 1]
    for a, b in zip(key, whole, strict=False):
        assert torch.equal(a["latents"], b["latents"]) and torch.equal(a["sigmas"], b["sigmas"])
    size = {d: sum(p.stat().st_size for p in list_shards(tmp_path / d)) for d in ("key", "all")}
    assert 6 / 11 * 0.9 < size["key"] / size["all"] < 6 / 11 * 1.3  # text conditioning is stored once in each

    sigmas = shifted_sigmas(10, tiny_wan.default_shift)
    three = key_sigmas(sigmas, [0, 4, 10]).tolist()
    sub = SynVidDataset(tmp_path / "all", key_sigmas=three)  # a whole trajectory serves other key steps
    assert torch.equal(sub[1]["latents"], whole[1]["latents"][[0, 2, 5]])
    with pytest.raises(AccVideoError, match="the trainer asks for"):
        SynVidDataset(tmp_path / "key", key_sigmas=key_sigmas(sigmas, [0, 5, 10]).tolist())
    teacher = build_index(tmp_path / "key")[0].settings.teacher
    SynVidDataset(tmp_path / "key", teacher=teacher)
    with pytest.raises(AccVideoError, match="not by this trainer's teacher"):
        SynVidDataset(tmp_path / "key", teacher="sha256:" + "0" * 64)
    # the Python API as docs/synvid.md shows it, given what it does not take: a rising list served clean latents
    # first, silently; [] and "1,0" were Python's errors; a folder name was told to pass what it passed
    for bad in ([three[-1], three[1], three[0]], [1.0, 1.0, 0.0], [], "1,0", 1.0):
        with pytest.raises(AccVideoError, match="key_sigmas must be a list of at least 2 numbers falling strictly"):
            SynVidDataset(tmp_path / "all", key_sigmas=bad)
    with pytest.raises(AccVideoError, match=r"teacher='builtin' is no teacher identity; pass teacher_identity\(FOLDER"):
        SynVidDataset(tmp_path / "key", teacher="builtin")

    # DataLoader workers open the files themselves and see the same items
    loader = torch.utils.data.DataLoader(SynVidDataset(tmp_path / "key"), batch_size=2, num_workers=2)
    batches = list(loader)
    assert torch.equal(torch.cat([b["latents"] for b in batches]), torch.stack([it["latents"] for it in key]))
    assert [p for b in batches for p in b["prompt"]] == PROMPTS

    # a damaged byte in a tensor is caught by its sha256
    path = list_shards(tmp_path / "key")[1]
    blob = bytearray(path.read_bytes())
    blob[-5] ^= 0xFF
    path.write_bytes(bytes(blob))
    ds = SynVidDataset(tmp_path / "key")
    assert torch.equal(ds[0]["latents"], key[0]["latents"])
    with pytest.raises(AccVideoError, match="sha256"):
        ds.verify_all()
    shutil.copy(list_shards(tmp_path / "all")[0], tmp_path / "key" / "shard-000000.safetensors")
    with pytest.raises(AccVideoError, match="mixes datasets"):
        SynVidDataset(tmp_path / "key")


def test_disk_full_midway_leaves_no_partial_shard_and_resumes(tiny_wan, tiny_wan_dir, tmp_path, monkeypatch, capsys):
    prompts = prompt_file(tmp_path / "p.txt")
    synthesize(cfg(tiny_wan_dir, prompts, tmp_path / "ref"), adapter=tiny_wan, progress=False)
    real = shards_mod.write_safetensors
    calls = []

    def full_disk(tensors, metadata, path):
        calls.append(path)
        if len(calls) == 2:
            path.write_bytes(b"\0" * 1000)  # part of the file made it to disk
            raise OSError(errno.ENOSPC, "No space left on device")
        real(tensors, metadata, path)

    monkeypatch.setattr(shards_mod, "write_safetensors", full_disk)
    args = [
        "synthesize",
        "--teacher",
        str(tiny_wan_dir),
        "--prompts",
        str(prompts),
        "--out",
        str(tmp_path / "ds"),
        "--steps",
        "10",
        "--key-steps",
        "5",
        "--frames",
        "9",
        "--size",
        "32x32",
        "--shard-size",
        "2",
        "--batch",
        "2",
        "--guidance",
        "3",
    ]
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "No space left on device" in err and "rerun" in err and "Traceback" not in err
    assert [p.name for p in list_shards(tmp_path / "ds")] == ["shard-000000.safetensors"]
    assert not partial_files(tmp_path / "ds")
    assert len(SynVidDataset(tmp_path / "ds")) == 2

    monkeypatch.setattr(shards_mod, "write_safetensors", real)
    code, out, err = run_cli(args, capsys)
    assert code in (0, None), err
    assert "synthesized 3 item(s) in 2 shard(s), kept 1 complete shard(s)" in out and "2 blank line(s)" in out
    for a, b in zip(list_shards(tmp_path / "ref"), list_shards(tmp_path / "ds"), strict=True):
        assert a.read_bytes() == b.read_bytes()


def test_videos_added_to_a_finished_dataset_are_decoded_from_its_shards(tiny_wan, tiny_wan_dir, tmp_path, monkeypatch):
    """Was: --videos on a finished SynVid sampled every trajectory again only to decode its last latent."""
    import accvideo.synthesize.run as run_mod

    prompts = prompt_file(tmp_path / "p.txt", PROMPTS[:3])
    synthesize(cfg(tiny_wan_dir, prompts, tmp_path / "ref", videos=True), adapter=tiny_wan, progress=False)
    synthesize(cfg(tiny_wan_dir, prompts, tmp_path / "ds"), adapter=tiny_wan, progress=False)
    assert not (tmp_path / "ds" / "videos").exists()

    def no_sampling(*a, **kw):
        raise AssertionError("sampled again")

    monkeypatch.setattr(run_mod, "sample_latents", no_sampling)
    summary = synthesize(cfg(tiny_wan_dir, prompts, tmp_path / "ds", videos=True), adapter=tiny_wan, progress=False)
    assert (summary["shards_given_videos"], summary["shards_written"], summary["items_written"]) == (2, 0, 0)
    # the shards a run with --videos from the start writes, byte for byte, and the same clips
    for a, b in zip(list_shards(tmp_path / "ref"), list_shards(tmp_path / "ds"), strict=True):
        assert a.read_bytes() == b.read_bytes()
    for name in ("00000000.mp4", "00000002.mp4"):
        assert np.array_equal(
            read_video(tmp_path / "ref" / "videos" / name), read_video(tmp_path / "ds" / "videos" / name)
        )
    manifest, listed = tmp_path / "ds" / "synvid.yaml", tmp_path / "ds" / "videos" / "manifest.jsonl"
    before, listed_before = (
        (manifest.stat().st_mtime_ns, manifest.read_bytes()),
        (listed.stat().st_mtime_ns, listed.read_bytes()),
    )
    assert yaml.safe_load(before[1])["videos"] is True
    # a rerun with nothing to write (another batch size, videos no longer asked) keeps the manifest of the run that
    # made the shards (was: rewritten with the rerun's batch and videos: false beside the videos)
    for videos in (True, False):
        again = synthesize(
            cfg(tiny_wan_dir, prompts, tmp_path / "ds", videos=videos, batch=1), adapter=tiny_wan, progress=False
        )
        assert (again["shards_given_videos"], again["shards_skipped"]) == (0, 2)
        assert (manifest.stat().st_mtime_ns, manifest.read_bytes()) == before
    # the clips come with the manifest `evaluate --videos` reads (was: none, so it refused the folder), kept as it is
    # by a rerun; the same whether the clips were made with the shards or added to them
    assert (listed.stat().st_mtime_ns, listed.read_bytes()) == listed_before
    items = [it for shard in build_index(tmp_path / "ds") for it in shard.items]
    rows = [json.loads(line) for line in listed.read_text().splitlines()]
    assert rows == [{"file": f"{it['index']:08d}.mp4", "prompt": it["prompt"], "seed": it["seed"]} for it in items]
    assert listed.read_bytes() == (tmp_path / "ref" / "videos" / "manifest.jsonl").read_bytes()
    from accvideo.evaluate.folder import load_video_folder

    clips, pairs = load_video_folder(tmp_path / "ds" / "videos")[:2]
    assert [list(p) for p in pairs] == [[it["prompt"], it["seed"]] for it in items] and len(clips) == 3


def test_output_of_another_teacher_or_prompt_list_is_refused(tiny_wan, tiny_wan_dir, tmp_path, capsys, monkeypatch):
    prompts = prompt_file(tmp_path / "p.txt", PROMPTS[:3])
    out = tmp_path / "ds"
    synthesize(cfg(tiny_wan_dir, prompts, out, videos=True), adapter=tiny_wan, progress=False)
    assert [it["video"] for it in build_index(out)[0].items] == ["videos/00000000.mp4", "videos/00000001.mp4"]
    assert read_video(out / "videos" / "00000002.mp4").shape == (9, 32, 32, 3)

    other = tmp_path / "other_teacher"
    shutil.copytree(tiny_wan_dir, other)
    with open(other / "model_index.json", "a") as f:
        f.write("\n")  # same weights, other bytes: another identity
    base = [
        "synthesize",
        "--prompts",
        str(prompts),
        "--out",
        str(out),
        "--steps",
        "10",
        "--frames",
        "9",
        "--size",
        "32x32",
        "--shard-size",
        "2",
        "--batch",
        "2",
        "--guidance",
        "3",
    ]
    import accvideo.synthesize.run as synth_run

    def no_load(*args, **kwargs):
        raise AssertionError("another teacher's folder is refused before any weight is read")

    with monkeypatch.context() as m:
        m.setattr(synth_run, "load_adapter", no_load)
        code, _, err = run_cli([*base, "--teacher", str(other)], capsys)
    assert code == 2 and "another teacher" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert "shard-000000.safetensors was made by another teacher" in err, err
    code, _, err = run_cli([*base, "--teacher", str(tiny_wan_dir), "--steps", "20"], capsys)
    assert code == 2 and "other settings (steps 10 vs 20)" in err
    code, _, err = run_cli([*base, "--teacher", str(tiny_wan_dir), "--seed", "9"], capsys)
    stored = read_header(out / "shard-000000.safetensors").items[0]["seed"]
    given = read_prompts(prompts, 9).items[0].seed
    assert (
        code == 2
        and f"shard-000000.safetensors holds item 0 with seed {stored}; this run gives it seed {given};" in err
    )
    assert stored != given

    # the prompt file grew: complete shards stay, the short last one is redone with its new item
    prompt_file(prompts, PROMPTS)
    code, out_text, err = run_cli([*base, "--teacher", str(tiny_wan_dir)], capsys)
    assert code in (0, None) and "kept 1 complete shard(s)" in out_text, err
    assert [it["prompt"] for it in items(out)] == PROMPTS
    # the redone shard (no --videos now) dropped its clip, and the clips' manifest with it
    listed = [json.loads(line)["file"] for line in (out / "videos" / "manifest.jsonl").read_text().splitlines()]
    assert listed == ["00000000.mp4", "00000001.mp4"] == sorted(p.name for p in (out / "videos").glob("*.mp4"))

    code, out_text, err = run_cli([*base, "--teacher", str(other), "--overwrite"], capsys)
    assert code in (0, None) and "kept 0 complete shard(s)" in out_text, err
    assert (
        {h.settings.teacher for h in build_index(out)} == {teacher_identity(other)} != {teacher_identity(tiny_wan_dir)}
    )
    assert not list((out / "videos").glob("*.mp4"))  # removed with the shards that listed them
    assert not (out / "videos" / "manifest.jsonl").exists()  # and their manifest


def test_shards_are_written_as_safetensors_writes_them_from_views(synvid, tmp_path):
    """The streaming writer (one copy of a shard in memory, rows written from their batch tensor) makes the very bytes
    safetensors' save_file makes from copies, for float64 sigmas, float32 latents and bfloat16 conditioning."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    header = build_index(synvid)[0]
    n = len(header.items)
    latents = torch.randn(n, *([len(header.settings.latent_indices), *header.settings.latent_shape]))
    cond = {"prompt_embeds": torch.randn(n, 7, 5).to(torch.bfloat16), "mask": torch.ones(n, 7)}
    path = shards_mod.write_shard(tmp_path, 0, header.settings, list(header.items), latents.unbind(), cond, 2)
    with safe_open(str(path), "pt") as f:
        metadata = f.metadata()
        for j in range(n):
            assert torch.equal(f.get_tensor(f"{j}/latents"), latents[j])
            assert torch.equal(f.get_tensor(f"{j}/cond/prompt_embeds"), cond["prompt_embeds"][j])
    copies = {"sigmas": header.settings.sigmas}
    for j in range(n):
        copies[f"{j}/latents"] = latents[j].clone()
        copies.update({f"{j}/cond/{k}": v[j].clone() for k, v in cond.items()})
    save_file(copies, str(tmp_path / "ref.safetensors"), metadata=metadata)
    assert path.read_bytes() == (tmp_path / "ref.safetensors").read_bytes()


def test_a_rewritten_safetensors_file_has_sorted_metadata_and_the_same_tensors(tmp_path):
    """safetensors writes several metadata keys in hash order (diffusers' LoRA file: two), so equal files differed
    in bytes; rewrite_sorted (used on exported LoRA files) makes equal contents equal bytes, readable (not 600)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from accvideo.core.tensorfile import FILE_MODE, rewrite_sorted

    tensors = {"b": torch.randn(3, 2), "a": torch.arange(4), "c": torch.randn(2).to(torch.bfloat16)}
    metadata = {f"key{i}": f"value {i}" for i in range(12)}
    files = []
    for i in range(6):  # enough writes that hash order shows (each map gets its own random state)
        path = tmp_path / f"f{i}.safetensors"
        save_file(tensors, str(path), metadata=metadata)
        os.chmod(path, 0o600)
        rewrite_sorted(path)
        files.append(path.read_bytes())
    assert len(set(files)) == 1
    with safe_open(str(tmp_path / "f0.safetensors"), "pt") as f:
        assert f.metadata() == metadata
        assert all(torch.equal(f.get_tensor(k), v) for k, v in tensors.items())
    assert (tmp_path / "f0.safetensors").stat().st_mode & 0o777 == FILE_MODE
    raw = files[0]
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    assert list(header["__metadata__"]) == sorted(metadata)
    assert not list(tmp_path.glob(".*"))


def test_a_copied_shard_is_named_with_the_item_it_repeats(synvid, tmp_path):
    """A shard copied under another name ("holds an item twice") named neither item nor shard: which file to delete
    was left to guess. The line names both shards; deleting the copy, as it says, reads the dataset again."""
    import shutil

    from accvideo.synthesize import SynVidDataset

    data = shutil.copytree(synvid, tmp_path / "s")
    shutil.copy(data / "shard-000001.safetensors", data / "shard-000007.safetensors")
    with pytest.raises(AccVideoError) as caught:
        SynVidDataset(data)
    assert str(caught.value).startswith(
        f"{data} holds item 5 twice (in shard-000001.safetensors and in shard-000007.safetensors); delete a shard"
    )
    (data / "shard-000007.safetensors").unlink()
    assert len(SynVidDataset(data)) == 10


def test_another_teachers_dataset_names_its_teacher_only_where_it_is(synvid, tiny_wan_dir, tmp_path, monkeypatch):
    """The refusal of a dataset made by another teacher told the user to pass the folder synthesize was given, also
    when that folder had moved away: a fix that fails. It names the folder only where it still is."""
    import shutil

    from accvideo.synthesize import SynVidDataset

    data = shutil.copytree(synvid, tmp_path / "s")
    other = "sha256:" + "0" * 64
    with pytest.raises(AccVideoError) as caught:
        SynVidDataset(data, teacher=other)
    assert f"pass --teacher {tiny_wan_dir} (the folder synthesize was given), or synthesize" in str(caught.value)
    gone = tmp_path / "moved-away"
    text = (data / "synvid.yaml").read_text().replace(f"teacher: {tiny_wan_dir}", f"teacher: {gone}")
    (data / "synvid.yaml").write_text(text)
    with pytest.raises(AccVideoError) as caught:
        SynVidDataset(data, teacher=other)
    assert f"pass the teacher synthesize was given ({gone}, gone from there) where it is now, or" in str(caught.value)
    assert "--teacher" not in str(caught.value)
    # the folder given is the one it was made from, changed since: "pass --teacher" that folder was no fix
    text = (data / "synvid.yaml").read_text().replace(f"teacher: {gone}", f"teacher: {tiny_wan_dir}")
    (data / "synvid.yaml").write_text(text)
    with pytest.raises(AccVideoError) as caught:
        SynVidDataset(data).check_teacher(other, tiny_wan_dir)
    assert f"and {tiny_wan_dir}, the folder it was made from, now holds another (sha256:000000000000" in str(
        caught.value
    )
    assert "restore the folder as it was, or synthesize a dataset with this teacher" in str(caught.value)
    # a relative path names a folder only from where synthesize ran: the folder it resolved is recorded beside it
    relative = text.replace(f"teacher: {tiny_wan_dir}", f"teacher: {tiny_wan_dir.name}")
    assert f"teacher_dir: {tiny_wan_dir.resolve()}" in relative
    (data / "synvid.yaml").write_text(relative)
    monkeypatch.chdir(tmp_path)  # another working folder: "wan" names nothing here, the record still says where
    with pytest.raises(AccVideoError) as caught:
        SynVidDataset(data).check_teacher(other, tiny_wan_dir)
    assert f"and {tiny_wan_dir}, the folder it was made from, now holds another" in str(caught.value)
    # an older dataset (no teacher_dir): which folder its relative path named is not known here
    (data / "synvid.yaml").write_text(relative.replace(f"teacher_dir: {tiny_wan_dir.resolve()}\n", ""))
    with pytest.raises(AccVideoError) as caught:
        SynVidDataset(data).check_teacher(other, tiny_wan_dir)
    assert (
        f"pass --teacher {tiny_wan_dir.name} as synthesize was given it, from the folder it ran in (if that is"
        in str(caught.value)
    )


def test_a_shard_removed_under_a_reader_is_one_line(synvid, tmp_path):
    """`synthesize --overwrite` removing shards under a running distill ended it in a FileNotFoundError traceback."""
    import shutil

    from accvideo.errors import AccVideoError
    from accvideo.synthesize import SynVidDataset

    data = shutil.copytree(synvid, tmp_path / "s")
    ds = SynVidDataset(data)
    ds[0]
    last = ds.headers[-1].path
    last.unlink()
    with pytest.raises(AccVideoError, match="the dataset changed while this command read it"):
        ds[len(ds) - 1]


BAD_METADATA = {  # an edit of a shard's metadata -> what the one line says of it
    "steps a string": (lambda m: m["settings"].update(steps="10"), "setting steps is '10', not of the kind int"),
    "negative shift": (lambda m: m["settings"].update(shift=-1.0), "setting shift -1.0 is out of range"),
    "unknown store": (lambda m: m["settings"].update(store="some"), "setting store 'some' is out of range"),
    "latent shape": (
        lambda m: m["settings"].update(latent_shape=[16, 3, 4, 8]),
        "tensor 0/latents has shape [6, 16, 3, 4, 4], its metadata says [6, 16, 3, 4, 8]",
    ),
    "key indices past the steps": (
        lambda m: m["settings"].update(key_indices=[0, 2, 4, 6, 8, 15]),
        "key indices [0, 2, 4, 6, 8, 15] must rise strictly from 0 to 10",
    ),
    "negative index": (lambda m: m["items"][0].update(index=-1), "item 0: index -1 is not an int >= 0"),
    "prompt a number": (lambda m: m["items"][1].update(prompt=3), "item 1: prompt 3 is not a str"),
    "seed a boolean": (lambda m: m["items"][0].update(seed=True), "item 0: seed True is not an int"),
    "no seed": (lambda m: m["items"][4].pop("seed"), "item 4: no seed"),
    "video a number": (lambda m: m["items"][0].update(video=7), "item 0: video 7 is not a str"),
    "no items": (lambda m: m.update(items=[]), "its items are not a list of mappings"),
    "a cond tensor it lacks": (
        lambda m: m["cond_keys"].append("mask"),
        "its metadata and its tensors disagree on 0/cond/mask",
    ),
    "a digest dropped": (lambda m: m["sha256"].pop("sigmas"), "its metadata and its tensors disagree on sigmas"),
    "shard a string": (lambda m: m.update(shard="1"), "its shard or batch is not a count"),
}


@pytest.mark.parametrize("edit", list(BAD_METADATA))
def test_a_shard_with_edited_metadata_is_unreadable_naming_what_and_the_fix(synvid, tmp_path, edit):
    """Metadata that no synthesize writes (a type, a range, a disagreement with the tensors' names and shapes in the
    file's header) reads as a damaged shard: one line naming the shard, what is wrong and `--overwrite`; the tensors
    are not read for it. It was a traceback in distill (RuntimeError, IndexError, TypeError, KeyError)."""
    from test_hostile import edit_shard_metadata

    change, says = BAD_METADATA[edit]
    shard = shutil.copy(synvid / "shard-000001.safetensors", tmp_path / "shard-000001.safetensors")
    assert shards_mod.read_header(shard).items[4]["index"] == 9  # read whole before the edit
    edit_shard_metadata(shard, change)
    with pytest.raises(AccVideoError) as exc:
        shards_mod.read_header(shard)
    assert str(exc.value) == (
        f"{shard} is not a readable SynVid shard ({says}); rerun the synthesize command with --overwrite to "
        "regenerate it"
    )


def test_overwrite_with_a_shorter_prompt_file_rewrites_the_manifest(tiny_wan_dir, tiny_wan, tmp_path):
    """The shards past the shorter file were removed, but synvid.yaml kept `items: 6`: every distill then warned
    that 4 items were missing and told to rerun the same synthesize, which changed nothing."""
    six, two = tmp_path / "p6.txt", tmp_path / "p2.txt"
    six.write_text("".join(f"{p}\n" for p in PROMPTS + ["a white dog"]))
    two.write_text("".join(f"{p}\n" for p in PROMPTS[:2]))
    synthesize(cfg(tiny_wan_dir, six, tmp_path / "ds", steps=4, key_steps=2), adapter=tiny_wan, progress=False)
    assert yaml.safe_load((tmp_path / "ds" / "synvid.yaml").read_text())["items"] == 6
    shorter = cfg(tiny_wan_dir, two, tmp_path / "ds", steps=4, key_steps=2, overwrite=True)
    synthesize(shorter, adapter=tiny_wan, progress=False)
    assert yaml.safe_load((tmp_path / "ds" / "synvid.yaml").read_text())["items"] == 2
    data = SynVidDataset(tmp_path / "ds")
    assert len(data) == 2 and not data.missing and data.missing_line() is None


@pytest.mark.parametrize("damage", ["edited metadata", "truncated"])
def test_overwrite_redoes_an_unreadable_shard_bit_for_bit(synvid, tiny_wan_dir, tmp_path, capsys, damage):
    """A shard whose metadata was edited (or that is cut short) is refused by a rerun, naming --overwrite; a rerun
    with --overwrite writes exactly the shard that was there (it was a KeyError traceback, with --overwrite too, or
    a refusal --overwrite could not lift)."""
    from test_hostile import SYNVID, SYNVID_BATCH, edit_shard_metadata, truncate

    data = shutil.copytree(synvid, tmp_path / "syn")
    shard = data / "shard-000001.safetensors"
    good = shard.read_bytes()
    if damage == "truncated":
        truncate(shard)
    else:
        edit_shard_metadata(shard, lambda m: m["items"][2].pop("seed"))
    damaged = shard.read_bytes()
    args = ["synthesize", "--teacher", str(tiny_wan_dir), "--prompts", str(synvid.parent / "p.txt"), "--out", str(data)]
    code, _, err = run_cli([*args, *SYNVID, *SYNVID_BATCH], capsys)
    assert code == 2 and err.count("\n") == 1 and f"{shard} is not a readable SynVid shard" in err, err
    assert "rerun the synthesize command with --overwrite" in err and shard.read_bytes() == damaged
    code, out, err = run_cli([*args, *SYNVID, *SYNVID_BATCH, "--overwrite"], capsys)
    assert code in (0, None), err
    assert "synthesized 5 item(s) in 1 shard(s), kept 1 complete shard(s)" in out
    assert shard.read_bytes() == good


def test_a_synvid_yaml_that_is_no_small_file_says_nothing(synvid, tmp_path):
    """synvid.yaml is advice (the item count a finished run will hold): one that is larger than any synthesize
    writes, a FIFO (reading it waited for a writer forever) or a link to /dev/zero (read until memory ran out) is
    not read and says nothing; the dataset reads from its shards."""
    import threading

    data = shutil.copytree(synvid, tmp_path / "s")
    manifest = data / "synvid.yaml"
    manifest.write_text("items: 12\n")
    assert SynVidDataset(data).missing == 2  # what a readable one says
    manifest.write_text("items: 12\n" + "#" * (5 << 20) + "\n")
    assert SynVidDataset(data).missing == 0
    manifest.unlink()
    os.mkfifo(manifest)
    found: dict = {}
    reader = threading.Thread(target=lambda: found.update(missing=SynVidDataset(data).missing), daemon=True)
    reader.start()
    reader.join(30)
    hung = reader.is_alive()
    if hung:  # let the reader go: a writer that writes the count and closes
        with open(manifest, "w") as f:
            f.write("items: 12\n")
        reader.join(60)
    assert not hung and found == {"missing": 0}
    manifest.unlink()
    manifest.symlink_to("/dev/zero")
    assert SynVidDataset(data).missing == 0 and len(SynVidDataset(data)) == 10
