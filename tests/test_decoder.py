"""The tiny decoder (docs/decoder.md): its frame arithmetic equals the VAE's, chunked decoding equals whole-clip
decoding and is causal, the artifact round-trips bit for bit and refuses another VAE, training lowers the loss
and beats the untrained decoder, and a killed run resumes to the uninterrupted run's weights."""

from __future__ import annotations

import json
import math

import pytest
import torch
from cli_helpers import hand_made_run
from safetensors.torch import load_file

from accvideo.cli import main
from accvideo.errors import AccVideoError
from accvideo.models.decoder import (
    DecoderSpec,
    TinyDecoder,
    decode_video,
    load_decoder,
    save_decoder,
    spec_for,
    vae_identity,
)


def small(spec_kw=None, seed=0) -> TinyDecoder:
    torch.manual_seed(seed)
    return TinyDecoder(DecoderSpec(16, 4, 8, width=16, depth=2, stage_depth=1, **(spec_kw or {}))).eval()


def test_frames_and_size_equal_the_vae_decode(tiny_wan):
    z = torch.randn(2, *tiny_wan.latent_shape(9, 32, 48))
    dec = TinyDecoder(spec_for(tiny_wan, width=16)).eval()
    assert decode_video(dec, z).shape == tiny_wan.decode(z).shape == (2, 9, 32, 48, 3)


@pytest.mark.parametrize("factors", [(4, 8), (4, 16), (2, 4)])  # Wan / HunyuanVideo-like, and others
def test_one_latent_frame_gives_one_frame_and_each_later_one_temporal_factor(factors):
    t, s = factors
    dec = TinyDecoder(DecoderSpec(4, t, s, width=8, depth=1)).eval()
    with torch.no_grad():
        for f in (1, 2, 5):
            assert dec.decode(torch.randn(1, 4, f, 2, 3)).shape == (1, 1 + t * (f - 1), 3, 2 * s, 3 * s)


def test_chunked_decode_equals_whole_clip_and_is_causal():
    dec = small()
    z = torch.randn(2, 16, 7, 4, 4)
    with torch.no_grad():
        whole = dec.decode(z, chunk=7)
        for chunk in (1, 2, 3):
            torch.testing.assert_close(dec.decode(z, chunk=chunk), whole, rtol=0, atol=1e-5)
        later = z.clone()
        later[:, :, 4:] = torch.randn_like(later[:, :, 4:])  # latent frames 4.. change
        changed = dec.decode(later)
    first_affected = 1 + 4 * 3  # frames from latent frames 0..3
    torch.testing.assert_close(changed[:, :first_affected], whole[:, :first_affected], rtol=0, atol=1e-5)
    assert (changed[:, first_affected:] - whole[:, first_affected:]).abs().max() > 1e-3


def test_save_load_is_bit_exact_and_another_vae_is_refused(tmp_path, tiny_wan_dir):
    dec = small()
    vae = vae_identity(tiny_wan_dir)
    save_decoder(tmp_path / "dec", dec, vae, "wan", {"iteration": 3})
    loaded, info = load_decoder(tmp_path / "dec", vae)
    assert info["iteration"] == 3 and info["spec"]["width"] == 16
    for (name, a), (_, b) in zip(dec.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    z = torch.randn(1, 16, 3, 4, 4)
    assert torch.equal(decode_video(dec, z), decode_video(loaded, z))
    assert not any(p.suffix in (".pt", ".pkl", ".bin") for p in (tmp_path / "dec").iterdir())  # never a pickle
    with pytest.raises(AccVideoError, match="another VAE"):
        load_decoder(tmp_path / "dec", "sha256:" + "0" * 64)
    raw = bytearray((tmp_path / "dec" / "decoder.safetensors").read_bytes())
    raw[-1] ^= 1
    (tmp_path / "dec" / "decoder.safetensors").write_bytes(bytes(raw))
    with pytest.raises(AccVideoError, match="does not match the sha256"):
        load_decoder(tmp_path / "dec", vae)


def _cfg(tiny_wan_dir, synvid, out, **kw):
    from accvideo.decoder import DecoderDistillConfig

    settings = dict(
        teacher=str(tiny_wan_dir),
        data=str(synvid),
        out=str(out),
        width=16,
        depth=1,
        holdout=2,
        batch=4,
        lr=3e-3,
        log_every=10,
        device="cpu",
    )
    return DecoderDistillConfig(**{**settings, **kw})


def test_training_lowers_the_loss_and_beats_the_untrained_decoder(tiny_wan_dir, synvid, tmp_path):
    from accvideo.core.outputs import claim_folder
    from accvideo.decoder import distill_decoder
    from accvideo.decoder.train import COMMAND, DecoderDistiller

    cfg = _cfg(tiny_wan_dir, synvid, tmp_path / "dec", iterations=100, checkpoint_every=100)
    untrained = DecoderDistiller(_cfg(tiny_wan_dir, synvid, claim_folder(tmp_path / "untrained", COMMAND)))
    untrained.build_targets(progress=False)
    before = untrained.validate()
    summary = distill_decoder(cfg, progress=False)
    records = [json.loads(line) for line in (tmp_path / "dec" / "losses.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert sum(losses[-10:]) < 0.6 * sum(losses[:10]), (losses[:10], losses[-10:])
    assert summary["heldout_psnr_db"] > before + 3, (before, summary["heldout_psnr_db"])
    assert (tmp_path / "dec" / "losses.png").is_file() and summary["parameters"] > 0
    assert {"feat", "grad", "l1"} <= set(records[0])  # every term of the loss is on
    # detail_clips (32) covers the whole training pool (items 0..7): over it, the saved decoder's frames hold the
    # VAE frames' 3x3 high-pass energy exactly (before clamping), with a gain the summary and decoder.json record
    from accvideo.decoder.targets import Targets
    from accvideo.models.decoder import high_pass

    decoder, info = load_decoder(tmp_path / "dec", None)
    gain = info["spec"]["detail_gain"]
    assert gain == summary["detail_gain"] and gain > 0.01
    b = Targets(tmp_path / "dec" / "targets", 10, None).get(range(8), features=False)
    with torch.no_grad():
        frames = decoder.decode(b["latents"])
    energy = high_pass(frames.double()).pow(2).sum()
    torch.testing.assert_close(energy, high_pass(b["video"].double()).pow(2).sum(), rtol=1e-4, atol=0)
    decoder.set_detail_gain(0.0)
    with torch.no_grad():
        assert high_pass(decoder.decode(b["latents"]).double()).pow(2).sum() < energy / (1 + gain / 2)


def test_a_vae_with_no_up_block_to_match_trains_without_the_feature_term(tiny_wan_dir, synvid, tmp_path, monkeypatch):
    """HunyuanVideo's VAE grows time and space in the same up blocks (9 frames appear only at full size), so no
    block's features fit a decoder stage: the default `feature_weight` was refused after the targets were built.
    Now it warns and trains exactly the run with `feature_weight=0`."""
    from accvideo.decoder import distill_decoder, targets

    off = distill_decoder(
        _cfg(tiny_wan_dir, synvid, tmp_path / "off", iterations=4, feature_weight=0.0), progress=False
    )
    assert off["feature_stage"] is None
    on = distill_decoder(_cfg(tiny_wan_dir, synvid, tmp_path / "on", iterations=4), progress=False)
    assert on["feature_stage"] is not None  # the tiny Wan's VAE has such a block: the term is on
    monkeypatch.setattr(targets, "feature_level", lambda *a: None)  # as HunyuanVideo's VAE (targets rebuilt below)
    with pytest.warns(UserWarning, match="the feature term is off"):
        none = distill_decoder(_cfg(tiny_wan_dir, synvid, tmp_path / "none", iterations=4), progress=False)
    assert none["feature_stage"] is None
    weights = [load_file(tmp_path / d / "decoder" / "decoder.safetensors") for d in ("off", "none", "on")]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])


def test_a_killed_run_resumes_to_the_uninterrupted_weights(tiny_wan_dir, synvid, tmp_path, monkeypatch):
    """Stopped by SIGTERM (it saves the iteration under way), then killed (back to that save), then signalled in the
    last iteration (it finishes and says so): the same bytes."""
    import signal

    from accvideo.core.interrupts import Interrupted, catch_interrupts
    from accvideo.decoder import distill_decoder
    from accvideo.decoder.train import DecoderDistiller
    from accvideo.distill.plots import read_losses

    kw = dict(iterations=8, checkpoint_every=4, adv_weight=0.1, adv_start=0.3, crop=2, ema=0.5)  # all resume too
    distill_decoder(_cfg(tiny_wan_dir, synvid, tmp_path / "straight", **kw), progress=False)
    step = DecoderDistiller.train_iteration

    def signalled(self):
        if self.iteration == 4:
            signal.raise_signal(signal.SIGTERM)  # during iteration 5, between checkpoints: it saves that one
        return step(self)

    def killed(self):
        if self.iteration == 6:
            raise KeyboardInterrupt
        return step(self)

    out = tmp_path / "resumed"
    monkeypatch.setattr(DecoderDistiller, "train_iteration", signalled)
    with pytest.raises(Interrupted, match=f"^interrupted \\(SIGTERM\\) at iteration 5 of 8, which is saved in {out};"):
        with catch_interrupts():
            distill_decoder(_cfg(tiny_wan_dir, synvid, out, **kw), progress=False)
    assert [r["iteration"] for r in read_losses(out / "losses.jsonl") if "loss" in r] == [1, 2, 3, 4, 5]
    monkeypatch.setattr(DecoderDistiller, "train_iteration", killed)  # a kill goes back to iteration 5's save
    with pytest.raises(KeyboardInterrupt):
        distill_decoder(_cfg(tiny_wan_dir, synvid, out, **kw), progress=False)

    def signalled_in_the_last(self):
        if self.iteration == 7:
            signal.raise_signal(signal.SIGTERM)  # during iteration 8 of 8: it finishes, then says so
        return step(self)

    monkeypatch.setattr(DecoderDistiller, "train_iteration", signalled_in_the_last)
    with pytest.raises(Interrupted) as stopped, catch_interrupts():
        distill_decoder(_cfg(tiny_wan_dir, synvid, out, **kw), progress=False)
    assert str(stopped.value) == (
        f"interrupted (SIGTERM) during the last iteration, which finished: all 8 are saved in {out}; "
        "rerun the same command to go on from there"
    )
    assert json.loads((out / "summary.json").read_text())["iterations"] == 8
    a = (tmp_path / "straight" / "decoder" / "decoder.safetensors").read_bytes()
    assert a == (tmp_path / "resumed" / "decoder" / "decoder.safetensors").read_bytes()
    # and the log one go writes: the save at the signal (iteration 5) logged a held-out record off the schedule,
    # an extra point in losses.jsonl and losses.png (benchmarks/kill_sweep.py found it)
    logs = [
        [{k: v for k, v in r.items() if k != "seconds"} for r in read_losses(d / "losses.jsonl")]
        for d in (tmp_path / "straight", out)
    ]
    assert logs[0] == logs[1] and [r["iteration"] for r in logs[0] if "val_psnr" in r] == [4, 8]


def test_a_finished_runs_rerun_replaces_a_stale_or_damaged_decoder(tiny_wan_dir, synvid, tmp_path):
    """A kill between the last checkpoint and the artifact leaves the previous save's decoder and no plot: the rerun
    saves the checkpoint's (it used to see decoder/ and stop); likewise a decoder.json deleted since."""
    import shutil

    from accvideo.decoder import distill_decoder

    out = tmp_path / "dec"
    distill_decoder(_cfg(tiny_wan_dir, synvid, out, iterations=2, checkpoint_every=1), progress=False)
    stale = shutil.copytree(out / "decoder", tmp_path / "stale")
    distill_decoder(_cfg(tiny_wan_dir, synvid, out, iterations=4, checkpoint_every=1), progress=False)
    want = (out / "decoder" / "decoder.safetensors").read_bytes()
    shutil.rmtree(out / "decoder")
    shutil.copytree(stale, out / "decoder")
    (out / "losses.png").unlink()
    for damage in (None, "decoder.json"):
        if damage:
            (out / "decoder" / damage).unlink()
        distill_decoder(_cfg(tiny_wan_dir, synvid, out, iterations=4, checkpoint_every=1), progress=False)
        _, info = load_decoder(out / "decoder", None)
        assert info["iteration"] == 4 and (out / "decoder" / "decoder.safetensors").read_bytes() == want
        assert (out / "losses.png").is_file()


def test_a_finished_runs_rerun_rewrites_nothing_and_another_dataset_is_refused_first(tiny_wan_dir, synvid, tmp_path):
    """Was: an identical rerun rewrote summary.json with its idle figures (train_seconds 0.68 -> 0.004); a rerun on
    another dataset rewrote the cached targets with its decodes, then refused."""
    import shutil

    from accvideo.decoder import distill_decoder

    out, data = tmp_path / "dec", shutil.copytree(synvid, tmp_path / "data")
    first = distill_decoder(_cfg(tiny_wan_dir, data, out, iterations=2, checkpoint_every=1), progress=False)

    def files():
        return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.rglob("*") if p.is_file()}

    before = files()
    kept = {**first, "kept": True}  # said as kept: nothing trained, nothing written
    assert distill_decoder(_cfg(tiny_wan_dir, data, out, iterations=2, checkpoint_every=1), progress=False) == kept
    assert files() == before
    assert first["train_seconds"] > 0 and first["iterations_this_run"] == 2
    from accvideo.core.tensorfile import FILE_MODE

    assert (out / "decoder" / "decoder.safetensors").stat().st_mode & 0o777 == FILE_MODE  # was 600 (save_file)
    with pytest.raises(AccVideoError, match="past iterations=1; a run cannot go back"):
        distill_decoder(_cfg(tiny_wan_dir, data, out, iterations=1, checkpoint_every=1), progress=False)
    sorted(data.glob("shard-*.safetensors"))[0].unlink()  # the same folder, other items
    with pytest.warns(UserWarning, match="lacks"), pytest.raises(AccVideoError, match="trained on another dataset"):
        distill_decoder(_cfg(tiny_wan_dir, data, out, iterations=3, checkpoint_every=1), progress=False)
    assert files() == before
    # the original content at another path is the same dataset: the finished run resumes, rewriting nothing (was:
    # refused, data= being a path; distill resumed a moved dataset)
    assert distill_decoder(_cfg(tiny_wan_dir, synvid, out, iterations=2, checkpoint_every=1), progress=False) == kept
    assert files() == before


def test_a_decoder_run_resumes_with_its_videos_folder_moved(tiny_wan_dir, synvid, tmp_path):
    """`--videos DIR` resumed only as first spelled, from the first working folder (docs/decoder.md says the teacher
    and dataset folders may move): a moved folder with the same clips resumes without encoding them again."""
    import numpy as np

    from accvideo.core.video import write_video
    from accvideo.decoder import distill_decoder

    clips = tmp_path / "clips"
    clips.mkdir()
    rng = np.random.default_rng(2)
    for i in range(2):
        write_video(clips / f"c{i}.mp4", rng.integers(0, 255, (9, 32, 32, 3), dtype=np.uint8), fps=8)
    out = tmp_path / "dec"
    distill_decoder(_cfg(tiny_wan_dir, synvid, out, iterations=2, checkpoint_every=1, videos=str(clips)), False)
    chunk = next((out / "reals").glob("chunk-*.safetensors"))
    encoded = chunk.stat().st_mtime_ns
    moved = clips.rename(tmp_path / "moved")
    summary = distill_decoder(
        _cfg(tiny_wan_dir, synvid, out, iterations=3, checkpoint_every=1, videos=str(moved)), False
    )
    assert summary["iterations"] == 3 and chunk.stat().st_mtime_ns == encoded
    with pytest.raises(AccVideoError, match=r"holds a run with videos="):  # no clips where the run had some
        distill_decoder(_cfg(tiny_wan_dir, synvid, out, iterations=4, checkpoint_every=1), False)


def test_the_saved_decoder_is_the_moving_average_of_unchanged_training(tiny_wan_dir, synvid, tmp_path, monkeypatch):
    from accvideo.decoder import distill_decoder
    from accvideo.decoder.train import DecoderDistiller

    kw = dict(iterations=3, checkpoint_every=3, holdout=0)
    distill_decoder(_cfg(tiny_wan_dir, synvid, tmp_path / "last", **kw), progress=False)
    weights, step = [], DecoderDistiller.train_iteration

    def recorded(self):
        if not weights:
            weights.append({k: v.clone() for k, v in self.decoder.state_dict().items()})
        record = step(self)
        weights.append({k: v.clone() for k, v in self.decoder.state_dict().items()})
        return record

    monkeypatch.setattr(DecoderDistiller, "train_iteration", recorded)
    distill_decoder(_cfg(tiny_wan_dir, synvid, tmp_path / "average", ema=0.9, **kw), progress=False)
    last = load_file(tmp_path / "last" / "decoder" / "decoder.safetensors")
    average = load_file(tmp_path / "average" / "decoder" / "decoder.safetensors")
    expected = dict(weights[0])
    for i, w in enumerate(weights[1:]):  # decays 0.1, 2/11, 0.25: below ema=0.9 while the run is young
        d = min(0.9, (1 + i) / (10 + i))
        expected = {k: d * expected[k] + (1 - d) * w[k] for k in w}
    assert len(weights) == 4 and last.keys() == average.keys() == expected.keys()
    for k in last:
        torch.testing.assert_close(weights[-1][k], last[k], rtol=0, atol=0)  # averaging changes no step
        torch.testing.assert_close(average[k], expected[k], rtol=1e-6, atol=1e-7)
    moved = [k for k in last if not torch.equal(weights[0][k], last[k])]
    assert moved and any(not torch.allclose(average[k], last[k], atol=1e-6) for k in moved)


def test_sample_decodes_with_the_decoder(tiny_wan_dir, tmp_path, capsys):
    """`sample --decoder` swaps the VAE's decode for the tiny decoder (checked against the model's VAE)."""
    import numpy as np

    from accvideo.core.video import read_video

    dec = TinyDecoder(DecoderSpec(16, 4, 8, width=16, depth=1))
    with torch.no_grad():
        for p in dec.parameters():
            p.zero_()
        dec.out.bias.fill_(1.0)  # every pixel white: only this decoder makes that clip
    save_decoder(tmp_path / "dec", dec, vae_identity(tiny_wan_dir), "wan")
    out = tmp_path / "clip.mp4"
    args = ["sample", "--model", str(tiny_wan_dir), "--steps", "1", "--frames", "5", "--size", "32x32"]
    with pytest.raises(SystemExit) as exc:
        main([*args, "--device", "cpu", "--decoder", str(tmp_path / "dec"), "--out", str(out)])
    assert exc.value.code == 0, capsys.readouterr()
    clip = read_video(out)
    assert clip.shape == (5, 32, 32, 3) and np.all(clip >= 250)


def test_export_carries_the_decoder_and_its_documented_call_runs(tiny_wan_dir, tmp_path):
    """`export --decoder`: OUT/decoder passes the VAE check against the exported pipeline, and the README's Python
    (stock WanPipeline latents -> the tiny decoder) runs as written."""
    import re

    from accvideo.export import export_run

    run = hand_made_run(tiny_wan_dir, tmp_path / "run", [1.0, 0.5, 0.0])
    save_decoder(tmp_path / "dec", small(), vae_identity(tiny_wan_dir), "wan")
    out = tmp_path / "export"
    manifest = export_run(run, "diffusers", out, decoder=tmp_path / "dec")
    assert manifest["decoder"]["vae_identity"] == vae_identity(out)  # the exported VAE is the teacher's
    code = re.findall(r"```python\n(.*?)```", (out / "README.md").read_text(), re.S)[-1]
    scope = {"PATH": str(out), "prompt": "a red circle"}
    # the README names the teacher's default clip size (17x64x64 for the tiny teacher); run it at a smaller one
    code, sized = re.subn(r"num_frames=17, height=64, width=64", "num_frames=5, height=32, width=32", code)
    assert sized == 1, code
    exec(code, scope)  # noqa: S102
    assert scope["video"].shape == (5, 32, 32, 3)


def test_demo_adds_the_student_with_the_tiny_decoder(tiny_wan_dir, tmp_path):
    """`demo --decoder DEC`: a fourth row, the same student decoded by DEC; its kept clips are tied to DEC's weights."""
    from cli_helpers import hand_made_run

    from accvideo.demo.chain import _sampler_record
    from accvideo.demo.config import ChainConfig
    from accvideo.demo.run import demo_samplers

    save_decoder(tmp_path / "dec", small(), "sha256:x", "wan")
    run = hand_made_run(tiny_wan_dir, tmp_path / "run", [1.0, 0.5, 0.0])  # a record names the student's content
    rows = demo_samplers(ChainConfig(out=str(tmp_path / "demo"), decoder=str(tmp_path / "dec")), run)
    assert [r.decoder for r in rows] == [None, None, None, str(tmp_path / "dec")]
    assert rows[-1].model == rows[-2].model
    sha = json.loads((tmp_path / "dec" / "decoder.json").read_text())["weights_sha256"]
    assert _sampler_record(rows[-1], [("a red circle", 1)])["decoder"] == sha


def test_artifacts_made_before_the_sampled_identity_still_work(tiny_wan_dir, tmp_path, monkeypatch):
    """A SynVid and a decoder that recorded the full-hash ('sha256:') identity are checked with it, not refused:
    `decoder distill` trains from the SynVid, and `load_decoder_for` loads the decoder against the model's VAE."""
    import accvideo.synthesize.run as synth_run
    from accvideo.decoder import distill_decoder
    from accvideo.models.decoder import load_decoder_for
    from accvideo.models.identity import LEGACY_PREFIX, content_sha256
    from accvideo.synthesize import SynthConfig, SynVidDataset, synthesize

    monkeypatch.setattr(synth_run, "teacher_identity", lambda folder, like=None: content_sha256(folder))
    (tmp_path / "p.txt").write_text("a red circle\na blue square\na green star\n")
    synth = dict(steps=4, key_steps=2, frames=5, height=32, width=32, batch=3, device="cpu")
    synthesize(
        SynthConfig(teacher=str(tiny_wan_dir), prompts=str(tmp_path / "p.txt"), out=str(tmp_path / "syn"), **synth),
        progress=False,
    )
    monkeypatch.undo()
    assert SynVidDataset(tmp_path / "syn").settings.teacher.startswith(LEGACY_PREFIX)
    summary = distill_decoder(_cfg(tiny_wan_dir, tmp_path / "syn", tmp_path / "dec", iterations=2, holdout=1))
    assert summary["iterations"] == 2

    legacy = content_sha256(tiny_wan_dir / "vae")
    save_decoder(tmp_path / "old", small(), legacy, "wan")
    assert load_decoder_for(tmp_path / "old", tiny_wan_dir)[1]["vae_identity"] == legacy
    save_decoder(tmp_path / "other", small(), LEGACY_PREFIX + "0" * 64, "wan")
    with pytest.raises(AccVideoError, match="another VAE"):
        load_decoder_for(tmp_path / "other", tiny_wan_dir)


def test_training_on_picked_frames_computes_exactly_those_frames_of_the_whole_decode():
    """`frames=` (training's frame pairs) runs the per-frame stages on the picked frames only: the same values as
    the whole decode's frames there, features included."""
    dec = small()
    z = torch.randn(2, 16, 3, 4, 4)
    pick = torch.tensor([[0, 1, 6, 7], [3, 4, 7, 8]])
    with torch.no_grad():
        whole, _, feat = dec(z, None, tap=1)
        part, _, part_feat = dec(z, None, tap=1, frames=pick)
    rows = torch.arange(2).unsqueeze(1)
    torch.testing.assert_close(part, whole[rows, pick], rtol=0, atol=1e-6)
    torch.testing.assert_close(part_feat, feat[rows, pick], rtol=0, atol=1e-6)


def test_a_decoder_saved_before_the_activation_setting_loads_as_relu_blocks(tmp_path):
    """decoder.json of the first release names no activation: it loads with ReLU after each residual sum, the
    blocks it was trained with, and decodes as it did."""
    first = small({"activation": "relu", "post_activation": True})
    save_decoder(tmp_path / "dec", first, "sha256:x", "wan")
    info_path = tmp_path / "dec" / "decoder.json"
    info = json.loads(info_path.read_text())
    for key in ("activation", "post_activation"):
        del info["spec"][key]
    info_path.write_text(json.dumps(info))
    loaded, _ = load_decoder(tmp_path / "dec", None)
    assert (loaded.spec.activation, loaded.spec.post_activation) == ("relu", True)
    z = torch.randn(1, 16, 3, 4, 4)
    assert torch.equal(decode_video(loaded, z), decode_video(first, z))
    assert not torch.equal(decode_video(small(), z), decode_video(first, z))  # the same weights as SiLU differ


def test_a_run_from_before_the_block_settings_resumes_only_as_it_ran(tiny_wan_dir, synvid, tmp_path):
    """A checkpoint written before activation / post_activation / frame_pairs / edge_weight existed ran ReLU blocks
    on whole clips with the plain L1: resuming it with today's defaults is refused in one line naming the values it
    ran with; with those values it resumes."""
    from accvideo.decoder import distill_decoder
    from accvideo.decoder.train import FORMAT, NAME
    from accvideo.distill.checkpoint import load_checkpoint, save_checkpoint

    old = dict(activation="relu", post_activation=True, frame_pairs=0, edge_weight=0.0)
    distill_decoder(_cfg(tiny_wan_dir, synvid, tmp_path / "run", iterations=2, checkpoint_every=2, **old), False)
    path = tmp_path / "run" / NAME
    state = load_checkpoint(path, FORMAT, "decoder distill")
    for key in old:
        del state["config"][key]
    save_checkpoint(path, state, FORMAT)
    with pytest.raises(AccVideoError, match="from before the setting"):
        distill_decoder(_cfg(tiny_wan_dir, synvid, tmp_path / "run", iterations=4, checkpoint_every=2), False)
    summary = distill_decoder(
        _cfg(tiny_wan_dir, synvid, tmp_path / "run", iterations=4, checkpoint_every=2, **old), False
    )
    assert summary["iterations"] == 4 and summary["iterations_this_run"] == 2


def test_the_edge_weighted_l1_weighs_the_pixels_on_both_sides_of_an_edge_by_the_strength():
    """edge_weight=s: a pixel within one of an edge of height 1 counts 1 + s times a flat one; s=0 is the plain L1."""
    from accvideo.decoder.losses import edge_weights, l1

    target = torch.zeros(1, 1, 3, 8, 8)
    target[..., 4:] = 1.0  # a vertical edge between columns 3 and 4
    w = edge_weights(target, 10.0)
    assert w.shape == (1, 1, 1, 8, 8)
    assert torch.equal(w[0, 0, 0, 0], torch.tensor([1.0, 1, 11, 11, 11, 1, 1, 1]))

    def err_at(col):
        pred = target.clone()
        pred[..., col] += 0.5
        return pred

    far, near = l1(err_at(0), target, w), l1(err_at(3), target, w)
    torch.testing.assert_close(near / far, torch.tensor(11.0))
    torch.testing.assert_close(l1(err_at(3), target, edge_weights(target, 0.0)), l1(err_at(3), target))
    torch.testing.assert_close(l1(err_at(3), target), torch.tensor(0.5 / 8))


def test_the_spectral_loss_sees_missing_detail_but_not_where_it_lies():
    """spectral_weight: a circular shift of a frame costs nothing (same amplitudes), a blur of it does; two flat
    frames of one sign differ in the DC bin alone, by |c - d| sqrt(H W), averaged over the H (W/2 + 1) bins."""
    from accvideo.decoder.losses import l1, spectral_loss

    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 3, 8, 8, generator=g) * 2 - 1
    shifted = torch.roll(x, shifts=(2, 3), dims=(-2, -1))
    assert l1(shifted, x) > 0.3
    torch.testing.assert_close(spectral_loss(shifted, x), torch.tensor(0.0), atol=1e-6, rtol=0)
    blurred = (x + torch.roll(x, 1, -1) + torch.roll(x, -1, -1)) / 3
    assert spectral_loss(blurred, x) > 0.1
    flat_c, flat_d = torch.full((1, 1, 3, 8, 8), 0.25), torch.full((1, 1, 3, 8, 8), 0.75)
    torch.testing.assert_close(spectral_loss(flat_c, flat_d), torch.tensor(0.5 * 8 / (8 * 5)))


def test_the_balanced_spectral_loss_counts_fine_detail_like_coarse():
    """spectral_balance: a frame of a strong coarse wave and a weak fine one (amplitudes 1 and 0.01). The flat
    spectral loss charges losing the fine wave a hundredth of losing the coarse one; the balanced loss charges each
    its amplitude over itself plus the floor, nearly the same. A cosine of amplitude c along x of an 8 x 8 frame
    is one rfft2 bin of amplitude 4 c (orthonormal)."""
    from accvideo.decoder.losses import SPECTRAL_FLOOR, spectral_loss

    x = torch.arange(8.0).view(1, 1, 1, 1, 8).expand(1, 1, 1, 8, 8)
    coarse, fine = torch.cos(2 * math.pi * x / 8), 0.01 * torch.cos(2 * math.pi * 3 * x / 8)
    frame = coarse + fine
    bins = 8 * 5
    torch.testing.assert_close(spectral_loss(coarse, frame), torch.tensor(0.04 / bins))
    torch.testing.assert_close(spectral_loss(fine, frame), torch.tensor(4.0 / bins))
    torch.testing.assert_close(
        spectral_loss(coarse, frame, balance=True), torch.tensor(0.04 / (0.04 + SPECTRAL_FLOOR) / bins)
    )
    # float32 round-off in the empty bins, divided by the floor, stays below a thousandth of the value
    expected = torch.tensor(4.0 / (4.0 + SPECTRAL_FLOOR) / bins)
    torch.testing.assert_close(spectral_loss(fine, frame, balance=True), expected, rtol=1e-3, atol=0)
    # the scale is the batch's mean amplitude per bin: a second item without the fine wave halves its mean there
    batch = torch.cat([frame, coarse])
    pred = torch.cat([coarse, coarse])
    torch.testing.assert_close(
        spectral_loss(pred, batch, balance=True), torch.tensor(0.04 / (0.02 + SPECTRAL_FLOOR) / bins / 2)
    )


def test_the_ssim_metric_is_wang_et_al_per_plane():
    """ssim blurs the five local moments of every colour plane at once (a grouped convolution): it equals the
    textbook formula computed plane by plane with an 11-tap Gaussian (sigma 1.5), valid region, averaged per clip."""
    import torch.nn.functional as F

    from accvideo.decoder.losses import ssim

    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 20, 24, 3, generator=g)
    b = (a + 0.1 * torch.randn(a.shape, generator=g)).clamp(0, 1)
    x = torch.arange(11, dtype=torch.float64) - 5
    w = torch.exp(-(x**2) / (2 * 1.5**2))
    window = (w / w.sum()).outer(w / w.sum()).view(1, 1, 11, 11)
    per_clip = []
    for i in range(2):
        values = []
        for f in range(3):
            for c in range(3):
                p, q = a[i, f, :, :, c].double()[None, None], b[i, f, :, :, c].double()[None, None]
                mp, mq = F.conv2d(p, window), F.conv2d(q, window)
                vp, vq = F.conv2d(p * p, window) - mp**2, F.conv2d(q * q, window) - mq**2
                cpq = F.conv2d(p * q, window) - mp * mq
                c1, c2 = 0.01**2, 0.03**2
                values.append(((2 * mp * mq + c1) * (2 * cpq + c2)) / ((mp**2 + mq**2 + c1) * (vp + vq + c2)))
        per_clip.append(torch.cat([v.flatten() for v in values]).mean())
    torch.testing.assert_close(ssim(a, b).double(), torch.stack(per_clip), rtol=0, atol=2e-5)


def test_the_ssim_loss_charges_a_blur_what_the_l1_lets_pass():
    """ssim_weight: 1 - SSIM equals one minus the metric on the same frames; a blurred texture and a brightness
    offset of the same L1 error cost it very differently: the blur loses local contrast, the offset keeps it."""
    from accvideo.decoder.losses import l1, ssim, ssim_loss

    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 3, 32, 32, generator=g) * 1.6 - 0.8
    blurred = (x + torch.roll(x, 1, -1) + torch.roll(x, -1, -1) + torch.roll(x, 1, -2) + torch.roll(x, -1, -2)) / 5
    offset = x + l1(blurred, x)
    torch.testing.assert_close(l1(offset, x), l1(blurred, x))
    assert ssim_loss(x, x).abs() < 1e-6
    video = lambda f: (f / 2 + 0.5).permute(0, 1, 3, 4, 2)  # noqa: E731
    torch.testing.assert_close(ssim_loss(blurred, x), 1 - ssim(video(blurred), video(x)).mean())
    assert ssim_loss(blurred, x) > 10 * ssim_loss(offset, x)


def test_the_detail_gain_is_the_exact_root_and_sums_over_clips():
    """fit_detail_gain: the gain that gives blurred frames their target's high-pass energy, from sums that add
    over clips (one clip in memory at a time fits what the whole batch fits); frames as detailed as the target,
    or more, get none."""
    from accvideo.models.decoder import detail_sums, fit_detail_gain, high_pass

    g = torch.Generator().manual_seed(0)
    target = torch.rand(3, 5, 3, 16, 16, generator=g) * 2 - 1
    blurred = target - 0.6 * high_pass(target)
    sums = detail_sums(blurred, target)
    parts = sum(detail_sums(blurred[i : i + 1], target[i : i + 1]) for i in range(3))
    torch.testing.assert_close(parts, sums, rtol=1e-6, atol=0)  # float32 sums, added in float64
    gain = fit_detail_gain(sums)
    sharpened = blurred + gain * high_pass(blurred)
    torch.testing.assert_close(high_pass(sharpened).pow(2).sum(), high_pass(target).pow(2).sum(), rtol=1e-5, atol=0)
    assert 0.3 < gain < 3
    assert fit_detail_gain(detail_sums(target, target)) == 0.0
    assert fit_detail_gain(detail_sums(target + 0.5 * high_pass(target), target)) == 0.0


def test_decode_applies_the_detail_gain_to_each_frame_and_it_is_saved(tmp_path):
    """A decoder's detail gain: decode gives frames + gain x (frames - their 3x3 box blur, edges replicated),
    chunked still equals whole, and the gain is saved in decoder.json (a decoder saved without it has none)."""
    dec = small()
    z = torch.randn(2, 16, 5, 4, 4)
    with torch.no_grad():
        plain = dec.decode(z)
        dec.set_detail_gain(0.4)
        sharp = dec.decode(z)
        torch.testing.assert_close(dec.decode(z, chunk=1), sharp, rtol=0, atol=1e-5)
    flat = plain.flatten(0, 1)
    box = torch.nn.functional.conv2d(
        torch.nn.functional.pad(flat, (1, 1, 1, 1), mode="replicate"), torch.full((3, 1, 3, 3), 1 / 9), groups=3
    )
    torch.testing.assert_close(sharp, (flat + 0.4 * (flat - box)).view_as(plain), rtol=0, atol=1e-5)
    save_decoder(tmp_path / "d", dec, "vae-id", "wan")
    loaded, info = load_decoder(tmp_path / "d", "vae-id")
    assert info["spec"]["detail_gain"] == 0.4
    with torch.no_grad():
        torch.testing.assert_close(loaded.decode(z), sharp, rtol=0, atol=1e-6)
    del info["spec"]["detail_gain"]
    (tmp_path / "d" / "decoder.json").write_text(json.dumps(info))
    with torch.no_grad():
        torch.testing.assert_close(load_decoder(tmp_path / "d", "vae-id")[0].decode(z), plain, rtol=0, atol=1e-6)


def test_channels_last_weights_compute_what_the_plain_layout_computes(tmp_path):
    """Every TinyDecoder holds channels-last weights (a speed choice): decodes and gradients equal a plain (NCHW)
    copy's up to rounding, and the saved weights are plain contiguous tensors that load back exactly."""
    dec = small()
    assert dec.stem.weight.is_contiguous(memory_format=torch.channels_last)
    assert not dec.stem.weight.is_contiguous()
    plain = small().to(memory_format=torch.contiguous_format)
    plain.load_state_dict(dec.state_dict())
    assert plain.stem.weight.is_contiguous()
    z = torch.randn(2, 16, 5, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(dec.decode(z, chunk=2), plain.decode(z, chunk=2), rtol=0, atol=1e-5)
    for m in (dec, plain):
        m.train()
        m(z, None, frames=torch.tensor([[0, 1], [4, 5]]))[0].square().mean().backward()
    torch.testing.assert_close(dec.stem.weight.grad, plain.stem.weight.grad, rtol=1e-4, atol=1e-6)
    save_decoder(tmp_path / "dec", dec, "sha256:x", "wan")
    saved = load_file(str(tmp_path / "dec" / "decoder.safetensors"))
    assert all(t.is_contiguous() for t in saved.values())
    loaded, _ = load_decoder(tmp_path / "dec", "sha256:x")
    for (name, a), (_, b) in zip(dec.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_the_picked_frames_are_read_from_the_cache_as_the_whole_clips_hold_them(tiny_wan_dir, synvid, tmp_path):
    """Targets.get(frames=...) reads item b's frames frames[b] only: equal to indexing the whole clips; the 3x3
    dilation of the edge weights equals max_pool2d's."""
    import torch.nn.functional as F

    from accvideo.core.outputs import claim_folder
    from accvideo.decoder.losses import dilate
    from accvideo.decoder.targets import runs
    from accvideo.decoder.train import COMMAND, DecoderDistiller

    assert runs([3, 4, 9, 10, 5]) == [(3, 5), (9, 11), (5, 6)] and runs([]) == []
    d = DecoderDistiller(_cfg(tiny_wan_dir, synvid, claim_folder(tmp_path / "dec", COMMAND)))
    d.build_targets(progress=False)
    count = d.targets.shapes["video"][0]
    frames = torch.tensor([[0, 1, count - 2, count - 1], [2, 3, 0, 1], [1, 2, 3, 4]])
    items = [0, 3, 1]
    whole = d.targets.get(items)
    picked = d.targets.get(items, frames=frames)
    assert set(picked) == set(whole) == {"latents", "video", "features"}
    rows = torch.arange(len(items)).unsqueeze(1)
    assert torch.equal(picked["latents"], whole["latents"])
    for name in ("video", "features"):
        assert torch.equal(picked[name], whole[name][rows, frames]), name
    x = torch.rand(2, 3, 1, 9, 7)
    assert torch.equal(dilate(x), F.max_pool2d(x.flatten(0, 2), 3, 1, 1).view_as(x))


def test_a_cached_target_chunk_is_reused_only_for_the_latents_it_decoded(tiny_wan, tmp_path):
    """build_targets keeps a chunk when it holds exactly the latents asked for, and decodes it again when they
    changed (e.g. real clips encoded again after a fix), so a resumed run never trains on stale decodes."""
    from accvideo.decoder.targets import build_targets, chunk_name

    g = torch.Generator().manual_seed(0)
    first = torch.randn(3, 16, 3, 4, 4, generator=g)
    second = first.clone()
    second[1] += 1.0
    build_targets(tiny_wan, lambda r: first[r.start : r.stop], 3, tmp_path, progress=False)
    path = tmp_path / "targets" / chunk_name(0)
    before = path.stat().st_mtime_ns, load_file(str(path))["video"]
    build_targets(tiny_wan, lambda r: first[r.start : r.stop], 3, tmp_path, progress=False)
    assert path.stat().st_mtime_ns == before[0]  # the same latents: reused, not decoded again
    targets = build_targets(tiny_wan, lambda r: second[r.start : r.stop], 3, tmp_path, progress=False)
    saved = load_file(str(path))
    assert torch.equal(saved["latents"], second) and not torch.equal(saved["video"], before[1])
    assert torch.equal(targets.get([1])["latents"][0], second[1])


def test_sample_prompts_keeps_clips_only_of_the_same_decoder_weights(tiny_wan_dir, tmp_path, capsys):
    """`sample --prompts --decoder DEC` resumes only with DEC's weights: a decoder trained again at that path is
    another decoder, refused in one line before any clip changes."""
    (tmp_path / "p.txt").write_text("a red circle\n")
    save_decoder(tmp_path / "dec", small(seed=0), vae_identity(tiny_wan_dir), "wan")
    args = ["sample", "--model", str(tiny_wan_dir), "--prompts", str(tmp_path / "p.txt"), "--steps", "1"]
    args += ["--frames", "5", "--size", "32x32", "--device", "cpu", "--decoder", str(tmp_path / "dec")]
    args += ["--out", str(tmp_path / "clips")]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 0, capsys.readouterr()
    clip = (tmp_path / "clips" / "000000.mp4").read_bytes()
    save_decoder(tmp_path / "dec", small(seed=1), vae_identity(tiny_wan_dir), "wan")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(args)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and "decoder_identity" in err, err
    assert (tmp_path / "clips" / "000000.mp4").read_bytes() == clip


def test_every_command_refuses_a_wrong_decoder_before_any_work_or_folder(tiny_wan_dir, tmp_path, capsys, monkeypatch):
    """They took the --decoder only where they sampled with it: the demo after its SynVid and distillation, evaluate
    and bench after making their folder and loading (or building) the model, sample after loading it."""
    from cli_helpers import run_cli

    import accvideo.demo.run as demo_run
    import accvideo.evaluate.run as evaluate_run

    def never(*a, **kw):
        raise AssertionError("the refusal must come before this")

    import accvideo.bench.run as bench_run
    import accvideo.sample.run as sample_run

    monkeypatch.setattr(demo_run, "synthesize_synvid", never)
    monkeypatch.setattr(evaluate_run, "open_model", never)
    monkeypatch.setattr(sample_run, "open_model", never)
    monkeypatch.setattr(bench_run, "open_model", never)
    save_decoder(tmp_path / "other", small(), "sha256:" + "0" * 64, "wan")  # made for another VAE
    # made for this VAE, by hand, for latents at 2x time: its spec, not its VAE identity, tells (was: after loading)
    torch.manual_seed(0)
    half_time = TinyDecoder(DecoderSpec(16, 2, 8, width=16, depth=2, stage_depth=1)).eval()
    save_decoder(tmp_path / "geometry", half_time, vae_identity(tiny_wan_dir), "wan")
    for decoder, says in (
        (tmp_path / "other", "another VAE"),
        (tmp_path / "missing", "missing does not exist; pass the --out of `accvideo decoder distill`"),  # a typo
        (tmp_path, "holds no decoder.json"),  # a folder, but no decoder's
        (
            tmp_path / "geometry",
            "the decoder takes latents of 16 channels at 2x time / 8x space, but this model's VAE has 16 at 4x / 8x",
        ),
    ):
        for argv in (
            ["demo", "--teacher", str(tiny_wan_dir)],
            ["evaluate", "--model", str(tiny_wan_dir), "--prompts", "2"],
            ["bench", "--model", str(tiny_wan_dir)],
        ):
            out = tmp_path / "out"
            code, _, err = run_cli([*argv, "--decoder", str(decoder), "--device", "cpu", "--out", str(out)], capsys)
            assert code == 2 and says in err and err.count("\n") == 1, err
            assert not out.exists()
        clip = tmp_path / "clip.mp4"
        argv = ["sample", "--model", str(tiny_wan_dir), "--prompt", "a red circle", "--decoder", str(decoder)]
        code, _, err = run_cli([*argv, "--out", str(clip)], capsys)
        assert code == 2 and says in err and err.count("\n") == 1 and not clip.exists(), err


def test_a_crop_as_large_as_the_latents_warns_and_trains_whole_frames(tiny_wan_dir, synvid, tmp_path):
    """`crop` at or past the latents' size (4x4 here) cannot crop: the run says so and trains exactly the run
    with crop=0; a smaller crop trains other weights."""
    from accvideo.decoder import distill_decoder

    runs = {}
    for name, crop in (("whole", 0), ("big", 100), ("small", 2)):
        if crop == 100:
            with pytest.warns(UserWarning, match=r"crop=100 is not smaller than the 4x4 latents.*whole frames"):
                distill_decoder(_cfg(tiny_wan_dir, synvid, tmp_path / name, iterations=3, crop=crop), progress=False)
        else:
            distill_decoder(_cfg(tiny_wan_dir, synvid, tmp_path / name, iterations=3, crop=crop), progress=False)
        runs[name] = load_file(tmp_path / name / "decoder" / "decoder.safetensors")
    assert all(torch.equal(runs["whole"][k], runs["big"][k]) for k in runs["whole"])
    assert not all(torch.equal(runs["whole"][k], runs["small"][k]) for k in runs["whole"])


def _rewrite_chunk(path, change) -> None:
    """Write a target chunk again with `change(tensors)` applied, its metadata kept."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    change(tensors)
    save_file(tensors, str(path), metadata=meta)


CHUNK_DAMAGE = {  # a change to a cached target chunk that keeps its latents
    "no video": lambda t: t.pop("video"),
    "no features": lambda t: t.pop("features"),
    "a frame short": lambda t: t.update(video=t["video"][:, :-1].contiguous()),
    "features at another size": lambda t: t.update(features=t["features"][..., :-1].contiguous()),
}


@pytest.mark.parametrize("damage", list(CHUNK_DAMAGE))
def test_a_cached_target_chunk_without_its_tensors_at_their_shapes_is_decoded_again(tiny_wan, tmp_path, damage):
    """A chunk holding the asked latents is kept only if it also holds the video (and the features its level names)
    at the shapes those latents decode to, read from its header; else it is decoded again. A chunk without its video
    was kept, and training ended in SafetensorError 'File does not contain tensor video' (a traceback)."""
    from accvideo.decoder.targets import build_targets, chunk_name

    z = torch.randn(3, 16, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    build_targets(tiny_wan, lambda r: z[r.start : r.stop], 3, tmp_path, progress=False)
    path = tmp_path / "targets" / chunk_name(0)
    good = load_file(str(path))
    assert good["video"].shape == (3, 9, 3, 32, 32) and good["features"].shape[:2] == (3, 9)
    _rewrite_chunk(path, CHUNK_DAMAGE[damage])
    targets = build_targets(tiny_wan, lambda r: z[r.start : r.stop], 3, tmp_path, progress=False)
    again = load_file(str(path))
    assert again.keys() == good.keys() and all(torch.equal(again[k], good[k]) for k in good)
    assert torch.equal(targets.get([2])["video"][0], good["video"][2].float())


def test_a_run_whose_cached_chunk_lost_its_video_decodes_it_again(tiny_wan_dir, synvid, tmp_path):
    """The probe's run: `decoder distill`, the video deleted from its cached chunk (and checkpoint.pt and
    summary.json removed), then the same command again: it trains as the first did (was: SafetensorError)."""
    from accvideo.decoder import distill_decoder
    from accvideo.decoder.targets import chunk_name

    out = tmp_path / "dec"
    distill_decoder(_cfg(tiny_wan_dir, synvid, out, iterations=1), progress=False)
    chunk = out / "targets" / chunk_name(0)
    good, weights = chunk.read_bytes(), (out / "decoder" / "decoder.safetensors").read_bytes()
    _rewrite_chunk(chunk, lambda t: t.pop("video"))
    (out / "checkpoint.pt").unlink()
    (out / "summary.json").unlink()
    distill_decoder(_cfg(tiny_wan_dir, synvid, out, iterations=1), progress=False)
    assert chunk.read_bytes() == good and (out / "decoder" / "decoder.safetensors").read_bytes() == weights


def test_a_finished_runs_artifact_saved_again_adds_no_second_record(tiny_wan_dir, synvid, tmp_path):
    """A finished run whose decoder/ was lost saves it again from its checkpoint; that save appended the last
    iteration's record to losses.jsonl a second time."""
    import shutil

    from accvideo.decoder import distill_decoder
    from accvideo.distill.plots import read_losses

    out = tmp_path / "dec"
    distill_decoder(_cfg(tiny_wan_dir, synvid, out, iterations=2, checkpoint_every=1), progress=False)
    records = read_losses(out / "losses.jsonl")
    shutil.rmtree(out / "decoder")
    distill_decoder(_cfg(tiny_wan_dir, synvid, out, iterations=2, checkpoint_every=1), progress=False)
    assert (out / "decoder" / "decoder.safetensors").is_file()
    assert read_losses(out / "losses.jsonl") == records  # the same records, none twice
    assert sorted(r["iteration"] for r in records if "detail_gain" in r) == [1, 2]


def test_two_fresh_runs_save_the_same_global_generator(tiny_wan_dir, synvid, tmp_path):
    """As distill's: the checkpoint's copy of the global torch generator starts from the run's seed."""
    from accvideo.decoder import distill_decoder
    from accvideo.decoder.train import FORMAT, NAME
    from accvideo.distill.checkpoint import load_checkpoint

    saved = []
    for name in ("a", "b"):
        torch.rand(3)
        distill_decoder(_cfg(tiny_wan_dir, synvid, tmp_path / name, iterations=1, checkpoint_every=1, seed=5), False)
        saved.append(load_checkpoint(tmp_path / name / NAME, FORMAT, "decoder distill")["torch_rng"])
    assert torch.equal(saved[0], saved[1]) and torch.equal(saved[0], torch.random.manual_seed(5).get_state())


@pytest.mark.parametrize("stop", ["after-the-decoder", "before-the-decoder"])
def test_a_kill_inside_the_last_save_leaves_a_rerun_equal_to_an_unbroken_run(
    stop, tiny_wan_dir, synvid, tmp_path, monkeypatch
):
    """Stopped between the last save's writes: with the decoder written and the final plot not, the rerun took the
    artifact as current and kept the plot of an earlier save; and checking the artifact built a decoder from the
    global generator, so the checkpoint its rerun saved held that generator moved on. The plot is drawn before
    decoder.json now, and loading a decoder leaves the generator as it was."""
    import accvideo.decoder.train as train
    from accvideo.decoder import distill_decoder
    from accvideo.distill.checkpoint import load_checkpoint

    kw = dict(iterations=8, checkpoint_every=1)  # plots at iterations 4 (every 4th save) and 8 (the last)
    ref, out = tmp_path / "ref", tmp_path / "run"
    distill_decoder(_cfg(tiny_wan_dir, synvid, ref, **kw), progress=False)
    real = train.save_decoder

    def stopped(folder, artifact, vae, family, extra):
        if extra["iteration"] == 8:
            if stop == "after-the-decoder":
                real(folder, artifact, vae, family, extra)
            raise KeyboardInterrupt
        return real(folder, artifact, vae, family, extra)

    monkeypatch.setattr(train, "save_decoder", stopped)
    with pytest.raises(KeyboardInterrupt):
        distill_decoder(_cfg(tiny_wan_dir, synvid, out, **kw), progress=False)
    monkeypatch.setattr(train, "save_decoder", real)
    distill_decoder(_cfg(tiny_wan_dir, synvid, out, **kw), progress=False)
    assert (out / "losses.png").read_bytes() == (ref / "losses.png").read_bytes()
    weights = "decoder/decoder.safetensors"
    assert (out / weights).read_bytes() == (ref / weights).read_bytes()
    saved = [load_checkpoint(r / train.NAME, train.FORMAT, "decoder distill") for r in (out, ref)]
    assert torch.equal(saved[0]["torch_rng"], saved[1]["torch_rng"])
