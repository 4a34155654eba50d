"""The adversarial stage: its numbers (accuracy, logit gap, probe), the update schemes, real videos as reals."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch

from accvideo.core.sampling import SamplingPlan, sample_latents
from accvideo.core.video import write_video
from accvideo.distill import DistillConfig, distill
from accvideo.distill import reals as reals_module
from accvideo.distill.heads import default_feature_blocks
from accvideo.distill.probe import game_stats, naive_teacher_latents, train_head_alone
from accvideo.distill.reals import fit_clip, folder_sources, load_real_clips, shared_real_clips, world_sources
from accvideo.distill.trainer import Distiller
from accvideo.errors import AccVideoError
from accvideo.models import load_adapter
from accvideo.models.open import resolve_model
from accvideo.world import prompts


def test_game_stats_are_the_balanced_accuracy_and_the_logit_gap():
    real, fake = torch.tensor([2.0, 1.0, -1.0, 3.0]), torch.tensor([-1.0, -2.0, 0.5, 0.5])
    acc, gap = game_stats(real, fake)
    assert acc == pytest.approx((3 / 4 + 2 / 4) / 2) and gap == pytest.approx(1.25 - (-0.5))
    assert game_stats(torch.ones(4), torch.ones(4))[0] == 0.5  # a constant head is at chance


def test_a_head_alone_tells_real_key_latents_from_the_naive_teachers_on_the_builtin_model():
    """The features and the head can learn at all: real l[t'_0] of the 8-step teacher vs its own 2-step solve."""
    torch.manual_seed(0)
    adapter = load_adapter(resolve_model("builtin"), device=torch.device("cpu"), dtype=torch.float32)
    pairs = prompts(40, "train", seed=5)
    shape = adapter.latent_shape(9, 32, 32)
    cond = adapter.encode_prompts([p for p, _ in pairs])
    seeds = [s for _, s in pairs]
    teacher = SamplingPlan(adapter_plan_sigmas(adapter, 8), 5.0)
    real = sample_latents(adapter, cond, seeds, shape, teacher).latents
    naive = naive_teacher_latents(adapter, cond, [s + 1 for s in seeds], shape, teacher.sigmas[::4], 5.0)[:, -1]
    block = default_feature_blocks(adapter.num_blocks, 2)[0]
    with torch.no_grad():
        zero = torch.zeros(len(real))
        f_real, f_fake = (adapter.features(x, zero, cond, block) for x in (real, naive))
    acc = train_head_alone(f_real, f_fake, adapter.token_grid(shape), 28, steps=100, lr=1e-3)
    assert acc >= 0.8  # on 12 held-out items of each kind
    chance = train_head_alone(f_real, f_real.roll(1, 0), adapter.token_grid(shape), 28, steps=100, lr=1e-3)
    assert chance <= 0.7  # real against real: nothing to learn


def adapter_plan_sigmas(adapter, steps):
    from accvideo.core.schedules import shifted_sigmas

    return [float(s) for s in shifted_sigmas(steps, adapter.default_shift)]


def run(tiny_wan_dir, synvid, out, **kw):
    settings = dict(teacher=str(tiny_wan_dir), data=str(synvid), out=str(out), iterations=2, batch=2, lr=1e-4)
    settings.update(head_lr=1e-3, head_channels=8, checkpoint_every=2, device="cpu")
    return DistillConfig(**{**settings, **kw})


def test_losses_jsonl_logs_the_game_per_key_step_and_the_probe_every_n_iterations(tiny_wan_dir, synvid, tmp_path):
    cfg = run(tiny_wan_dir, synvid, tmp_path / "run", iterations=2, probe_every=2, probe_items=4)
    distill(cfg, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "losses.jsonl").read_text().splitlines()]
    m = len(rows[0]["d_k"])
    for r in rows:
        assert len(r["acc_k"]) == len(r["gap_k"]) == m and all(a in (0, 0.25, 0.5, 0.75, 1) for a in r["acc_k"])
        assert r["acc"] == pytest.approx(sum(r["acc_k"]) / m) and all(math.isfinite(g) for g in r["gap_k"])
    assert [("probe_acc_k" in r) for r in rows] == [False, True]
    probe = rows[1]["probe_acc_k"]
    assert len(probe) == m and all(a in {i / 8 for i in range(9)} for a in probe)  # 4 reals and 4 fakes
    # the probe draws nothing from the run's generators: the same losses with the probe off
    distill(run(tiny_wan_dir, synvid, tmp_path / "quiet", iterations=2, probe_every=0), progress=False)
    quiet = [json.loads(line) for line in (tmp_path / "quiet" / "losses.jsonl").read_text().splitlines()]
    assert [r["d_k"] for r in quiet] == [r["d_k"] for r in rows] and "probe_acc_k" not in quiet[1]
    assert (tmp_path / "run" / "losses.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("scheme, steps_per_key_step", [("joint", 1), ("separate", 2)])
def test_joint_takes_one_student_step_on_the_summed_loss_separate_two(
    tiny_wan_dir, synvid, tmp_path, scheme, steps_per_key_step
):
    d = Distiller(run(tiny_wan_dir, synvid, tmp_path / "run", adv_update=scheme))
    steps, grads = [], []
    real_step = d.student_step

    def counted():
        grads.append(sum(p.grad.abs().sum().item() for p in d.pair.params.values() if p.grad is not None))
        steps.append(1)
        real_step()

    d.student_step = counted
    d.train_iteration()
    assert len(steps) == steps_per_key_step * d.m and all(g > 0 for g in grads)
    off = Distiller(run(tiny_wan_dir, synvid, tmp_path / "off", adv=False, adv_update=scheme))
    calls = []
    off.student_step = lambda: calls.append(1)
    off.train_iteration()
    assert len(calls) == off.m  # without the adversarial term both schemes are plain L_traj steps


def test_fit_clip_centre_crops_to_the_aspect_then_resizes():
    clip = np.zeros((12, 32, 64, 3), np.uint8)
    clip[:, :, 16:48] = 255  # a white centre square between black side bands
    out = fit_clip(clip, 9, 16, 16)
    assert out.shape == (9, 16, 16, 3) and out.min() > 0.99  # the bands were cropped away
    assert fit_clip(clip, 13, 16, 16) is None  # too short
    tall = np.zeros((9, 64, 32, 3), np.uint8)
    tall[:, 16:48] = 200
    assert fit_clip(tall, 9, 8, 8).mean() == pytest.approx(200 / 255, abs=0.01)
    with pytest.raises(TypeError, match="uint8"):
        fit_clip(tall.astype(np.float32) / 255, 9, 8, 8)


def test_world_clips_are_the_renders_in_eight_bits():
    """real_data=world: each clip is its caption's render at the run's size, as a file would hold it (8 bits)."""
    from accvideo.world import parse_caption, render
    from accvideo.world.render import WorldConfig

    sources = world_sources(3, 0)
    for source in sources:
        clip = reals_module._load(source, 9, 32, 32)
        want = render(parse_caption(source.prompt), source.seed, WorldConfig(frames=9, height=32, width=32))
        assert clip.shape == (9, 32, 32, 3)
        torch.testing.assert_close(clip, torch.from_numpy(want), atol=0.5 / 255 + 1e-6, rtol=0)
        assert clip.max() > 0.5  # on the [0, 1] scale, not divided by 255 twice


def test_world_clips_cached_before_the_8_bit_fix_are_encoded_again(tiny_wan, tmp_path):
    """A chunk of world clips cached without the clips marker (written before commit 8735ac6: near black) is not
    trusted: the next load encodes it again, and the result equals a fresh cache's."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    fresh = load_real_clips("world", tmp_path / "a", tiny_wan, (9, 32, 32), 4, 0, progress=False)
    chunk = next((tmp_path / "a" / "reals").glob("chunk-*.safetensors"))
    with safe_open(str(chunk), "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    assert meta["clips"] == "8bit"
    del meta["clips"]
    save_file({**tensors, "latents": tensors["latents"] / 255}, str(chunk), metadata=meta)  # as the bug cached them
    again = load_real_clips("world", tmp_path / "a", tiny_wan, (9, 32, 32), 4, 0, progress=False)
    assert torch.equal(again.latents, fresh.latents)


def test_real_clip_folder_skips_and_counts_what_it_cannot_use_and_caches_the_encoding(tiny_wan, tmp_path, monkeypatch):
    folder = tmp_path / "clips"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        write_video(folder / f"c{i}.mp4", rng.integers(0, 255, (9, 48, 40, 3), dtype=np.uint8), fps=8)
    (folder / "c1.txt").write_text("a red circle")
    write_video(folder / "short.mp4", rng.integers(0, 255, (5, 32, 32, 3), dtype=np.uint8), fps=8)
    (folder / "broken.mp4").write_bytes(b"\x00not a video" * 10)
    assert [s.prompt for s in folder_sources(folder)] == ["", "", "a red circle", "", ""]
    with pytest.warns(UserWarning, match=r"2 of 5 clips could not be used .* the run uses the other 3"):  # was silent
        reals = load_real_clips(str(folder), tmp_path / "run", tiny_wan, (9, 32, 32), 0, 0, progress=False)
    assert len(reals) == 3 and reals.skipped == 2
    assert tuple(reals.latents.shape[1:]) == tuple(tiny_wan.latent_shape(9, 32, 32))
    chunk = next((tmp_path / "run" / "reals").glob("chunk-*.safetensors"))
    before = chunk.stat().st_mtime_ns
    with pytest.warns(UserWarning, match="2 of 5 clips"):  # the cached chunk keeps the count
        again = load_real_clips(str(folder), tmp_path / "run", tiny_wan, (9, 32, 32), 0, 0, progress=False)
    assert chunk.stat().st_mtime_ns == before and torch.equal(again.latents, reals.latents)  # read, not re-encoded
    import accvideo.distill.reals as reals_mod

    witnesses = json.loads((tmp_path / "run" / "reals" / "witnesses.json").read_text())
    assert sorted(witnesses) == sorted(str(p.resolve()) for p in folder.glob("*.mp4"))  # every clip, once
    # the witnesses of a large folder (here padded past the 4 MB of a small file, about 19,000 clips) still read
    from accvideo.core.inputs import MAX_SMALL_FILE

    padded = {**witnesses, **{f"/gone/{i:07d}.mp4": ["0" * 64, [0, 0, 0, 0]] for i in range(MAX_SMALL_FILE // 90)}}
    (tmp_path / "run" / "reals" / "witnesses.json").write_text(json.dumps(padded))
    assert (tmp_path / "run" / "reals" / "witnesses.json").stat().st_size > MAX_SMALL_FILE
    with monkeypatch.context() as m:  # a resume read every clip file whole to check its digest: now their stats
        m.setattr(reals_mod, "file_sha256", lambda path: pytest.fail(f"{path} was read again"))
        with pytest.warns(UserWarning, match="2 of 5 clips"):
            load_real_clips(str(folder), tmp_path / "run", tiny_wan, (9, 32, 32), 0, 0, progress=False)
    assert json.loads((tmp_path / "run" / "reals" / "witnesses.json").read_text()) == witnesses  # pruned to the clips
    x, cond = reals.noised(torch.tensor([0, 0]), [7, 7], 1.0, torch.device("cpu"))
    assert torch.equal(x[0], x[1]) and not torch.equal(x[0], reals.latents[0])  # pure noise at sigma 1
    x0, _ = reals.noised(torch.tensor([2]), [7], 0.0, torch.device("cpu"))
    assert torch.equal(x0[0], reals.latents[2]) and torch.equal(cond["prompt_embeds"][0], cond["prompt_embeds"][1])
    # the folder changed under the run (a clip replaced, one added): its resume trained on the old clips, silently
    write_video(folder / "c0.mp4", rng.integers(0, 255, (9, 48, 40, 3), dtype=np.uint8), fps=8)
    with pytest.raises(AccVideoError, match=r"real_data=.* changed since this run encoded its clips"):
        load_real_clips(str(folder), tmp_path / "run", tiny_wan, (9, 32, 32), 0, 0, progress=False)
    assert chunk.stat().st_mtime_ns == before  # kept, as the checkpoint trained on it
    with pytest.raises(AccVideoError, match="none of 1 clips"):
        only_short = tmp_path / "short"
        only_short.mkdir()
        (only_short / "s.mp4").write_bytes((folder / "short.mp4").read_bytes())
        load_real_clips(str(only_short), tmp_path / "run2", tiny_wan, (9, 32, 32), 0, 0, progress=False)


def test_real_videos_replace_the_drawn_share_of_the_heads_reals(tiny_wan_dir, synvid, tmp_path):
    def clips(d):
        s = d.dataset.settings
        shape = (s.frames, s.height, s.width)
        return shared_real_clips("world", d.out, d.pair.teacher, shape, d.cfg.real_clips, d.cfg.seed, False)

    d = Distiller(run(tiny_wan_dir, synvid, tmp_path / "run", real_data="world", real_clips=4, real_weight=1.0))
    d.reals = clips(d)
    assert len(d.reals) == 4 and (tmp_path / "run" / "reals").is_dir()
    mix = d.reals.draw(d.rng, 2, 1.0, d.mine, 2)
    assert mix[0].all()  # real_weight 1: every real sample comes from the real clips
    latents, cond = d.data.load(torch.tensor([0, 1]))
    real, real_cond = d.reals.mix(d.at(latents, 1), cond, *mix, d.t[1])
    x, c = d.reals.noised(mix[1], mix[2].tolist(), d.t[1], d.device)
    assert torch.equal(real, x) and torch.equal(real_cond["prompt_embeds"], c["prompt_embeds"])
    mine = slice(1, 2)  # rank 1 of 2: the second item of the same global draw
    assert [t[0] for t in d.reals.draw(torch.Generator().manual_seed(3), 2, 1.0, mine, 1)] == [
        t[1] for t in d.reals.draw(torch.Generator().manual_seed(3), 2, 1.0, slice(0, 2), 2)
    ]
    half = Distiller(run(tiny_wan_dir, synvid, tmp_path / "half", real_data="world", real_clips=4, real_weight=0.5))
    half.reals = clips(half)
    use = torch.cat([half.reals.draw(half.rng, 2, 0.5, half.mine, 2)[0] for _ in range(200)])
    assert 0.4 < use.float().mean() < 0.6  # the drawn share is real_weight
    summary = distill(run(tiny_wan_dir, synvid, tmp_path / "full", real_data="world", real_clips=4), progress=False)
    assert summary["real_clips"] == {"used": 4, "skipped": 0}


def test_a_run_resumes_with_its_clip_folder_moved_or_named_another_way(tiny_wan_dir, synvid, tmp_path, monkeypatch):
    """`real_data=DIR` was compared as the string first typed: the same folder named absolutely, from another working
    folder, or moved, was refused ("use the run's settings", which could not work from elsewhere). The run's cached
    chunks record the clips (names, prompts, sha256): a folder with the same clips resumes under any name, without
    encoding them again; one with other clips, or world renders in its place, is still refused."""
    folder = tmp_path / "work" / "clips"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(3):
        write_video(folder / f"c{i}.mp4", rng.integers(0, 255, (9, 32, 32, 3), dtype=np.uint8), fps=8)
    monkeypatch.chdir(tmp_path / "work")
    out = tmp_path / "run"
    distill(run(tiny_wan_dir, synvid, out, iterations=2, real_data="clips"), progress=False)
    chunk = next((out / "reals").glob("chunk-*.safetensors"))
    encoded = chunk.stat().st_mtime_ns
    monkeypatch.chdir(tmp_path)
    moved = (tmp_path / "work" / "clips").rename(tmp_path / "moved")
    for spelled, iterations in ((str(moved), 3), ("moved", 4)):  # absolute, then relative from another folder
        summary = distill(run(tiny_wan_dir, synvid, out, iterations=iterations, real_data=spelled), progress=False)
        assert summary["iterations"] == iterations and chunk.stat().st_mtime_ns == encoded  # not encoded again
    write_video(moved / "c1.mp4", rng.integers(0, 255, (9, 32, 32, 3), dtype=np.uint8), fps=8)
    with pytest.raises(AccVideoError, match=r"real_data=moved holds other clips than real_data=clips, which this run"):
        distill(run(tiny_wan_dir, synvid, out, iterations=5, real_data="moved"), progress=False)
    with pytest.raises(AccVideoError, match=r"holds a run with real_data='moved', not 'world'"):
        distill(run(tiny_wan_dir, synvid, out, iterations=5, real_data="world"), progress=False)
    # the cache deleted: nothing records the clips, so another folder is refused by name (it was taken, and trained on)
    shutil.rmtree(out / "reals")
    shutil.copytree(moved, tmp_path / "other")
    with pytest.raises(AccVideoError, match=r"holds a run with real_data='moved', not 'other'"):
        distill(run(tiny_wan_dir, synvid, out, iterations=5, real_data="other"), progress=False)


def test_another_clip_folder_is_encoded_before_a_checkpoint_and_refused_after(tiny_wan, tmp_path):
    """Cached chunks of one folder's clips, given another folder: with no checkpoint trained on them (a run stopped
    while encoding) they are encoded again from the folder given; once trained on, the line names the folder the run
    encoded (it said the given folder "changed since"). Chunks from before the clip digests keep the old rule: the
    folder must be named as it was, for nothing in them tells their clips."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from accvideo.distill.checkpoint import check_resumable

    rng = np.random.default_rng(4)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(2):
            write_video(tmp_path / name / f"c{i}.mp4", rng.integers(0, 255, (9, 32, 32, 3), dtype=np.uint8), fps=8)
    run, shape = tmp_path / "run", (9, 32, 32)
    first = load_real_clips(str(tmp_path / "a"), run, tiny_wan, shape, 0, 0, progress=False, trained=False)
    with pytest.raises(AccVideoError, match=rf"real_data={tmp_path / 'b'} holds other clips than real_data="):
        load_real_clips(str(tmp_path / "b"), run, tiny_wan, shape, 0, 0, progress=False)
    other = load_real_clips(str(tmp_path / "b"), run, tiny_wan, shape, 0, 0, progress=False, trained=False)
    assert not torch.equal(other.latents, first.latents)  # encoded from b, not a's cache
    config = {"real_data": str(tmp_path / "c")}
    saved = {"teacher": "t", "config": {"real_data": str(tmp_path / "b")}}
    check_resumable(saved, config, "t", run / "checkpoint.pt", resumable=frozenset())  # digests: any name
    chunk = next((run / "reals").glob("chunk-*.safetensors"))
    with safe_open(str(chunk), "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    del meta["sources"]
    save_file(tensors, str(chunk), metadata=meta)  # as cached before the digests
    with pytest.raises(AccVideoError, match=r"holds a run with real_data='.*b', not '.*c'"):
        check_resumable(saved, config, "t", run / "checkpoint.pt", resumable=frozenset())


def test_during_adv_warmup_the_heads_learn_and_the_student_sees_no_generator_gradient(tiny_wan_dir, synvid, tmp_path):
    def trained(name, **kw):
        d = Distiller(run(tiny_wan_dir, synvid, tmp_path / name, **kw))
        for _ in range(2):
            d.train_iteration()
        return d

    zero = trained("zero", lambda_adv=0.0)  # L_G's gradient times 0: the student learns from L_traj only
    warm = trained("warm", adv_warmup=2)
    after = trained("after", adv_warmup=1)  # L_G reaches the student from the second iteration
    for name, p in zero.pair.params.items():
        assert torch.equal(warm.pair.params[name], p)  # bit for bit: warm-up adds nothing to the student
    assert any(not torch.equal(after.pair.params[n], p) for n, p in zero.pair.params.items())
    for a, b in zip(zero.heads.parameters(), warm.heads.parameters(), strict=True):
        assert torch.equal(a, b)  # the heads saw the same fakes and reals, and did learn
    start = Distiller(run(tiny_wan_dir, synvid, tmp_path / "start", adv_warmup=2)).heads
    assert any(not torch.equal(a, b) for a, b in zip(start.parameters(), warm.heads.parameters(), strict=True))


def test_a_clip_folder_that_holds_no_clips_is_refused_before_any_model_loads(
    tiny_wan_dir, synvid, tmp_path, monkeypatch, capsys
):
    """distill and decoder distill refused it only after loading the teacher (minutes at real size); ablate only after
    its whole SynVid (384 trajectories). Each is now one line before any of that, and makes no folder."""
    from cli_helpers import run_cli

    import accvideo.decoder.train as decoder_train
    import accvideo.demo.ablate as ablate
    import accvideo.distill.trainer as trainer

    def never(*args, **kw):
        raise AssertionError("the refusal must come before this")

    for module, name in ((trainer, "load_adapter"), (decoder_train, "load_adapter"), (ablate, "synthesize_synvid")):
        monkeypatch.setattr(module, name, never)
    (tmp_path / "empty").mkdir()
    given = ["--teacher", str(tiny_wan_dir), "--data", str(synvid), "--device", "cpu"]
    for clips, says in ((tmp_path / "missing", "is not a folder of MP4 clips"), (tmp_path / "empty", "holds no .mp4")):
        for argv, setting in (
            (["distill", *given, f"real_data={clips}"], "real_data"),
            (["decoder", "distill", *given, "--videos", str(clips)], "videos"),
            (["ablate", f"real_data={clips}"], "real_data"),
        ):
            code, _, err = run_cli([*argv, "--out", str(tmp_path / "out")], capsys)
            assert code == 2 and err.startswith(f"error: {setting}={clips} {says}") and err.count("\n") == 1, err
            assert not (tmp_path / "out").exists()


def test_a_cached_chunk_of_another_source_is_encoded_again(tiny_wan, tmp_path):
    """The cache was keyed by chunk index alone: a run whose --videos held no usable clip cached an empty chunk, and
    the rerun with --videos world read it and said none of the world's clips could be used."""
    folder = tmp_path / "clips"
    folder.mkdir()
    (folder / "broken.mp4").write_bytes(b"\x00not a video" * 10)
    with pytest.raises(AccVideoError, match="none of 1 clips could be used"):
        load_real_clips(str(folder), tmp_path / "run", tiny_wan, (9, 32, 32), 0, 0, progress=False)
    reals = load_real_clips("world", tmp_path / "run", tiny_wan, (9, 32, 32), 4, 0, progress=False)
    fresh = load_real_clips("world", tmp_path / "fresh", tiny_wan, (9, 32, 32), 4, 0, progress=False)
    assert len(reals) == 4 and torch.equal(reals.latents, fresh.latents)
