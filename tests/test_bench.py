"""`accvideo bench`: every stage and the remainder are reported, timing does not change what is generated."""

from __future__ import annotations

import json

import pytest
import torch
from cli_helpers import run_cli


def test_bench_json_has_every_stage_and_the_overhead(tiny_wan_dir, tmp_path, capsys):
    code, out, err = run_cli(
        [
            "bench",
            "--model",
            str(tiny_wan_dir),
            "--size",
            "32x32x9",
            "--teacher-steps",
            "6",
            "--student-steps",
            "2",
            "--out",
            str(tmp_path),
        ],
        capsys,
    )
    assert code in (0, None), err
    report = json.loads((tmp_path / "bench.json").read_text())
    t, s = report["results"]["teacher"], report["results"]["student"]
    assert (t["steps"], t["forwards_per_step"], s["steps"], s["forwards_per_step"]) == (6, 2, 2, 1)
    for r in (t, s):
        assert len(r["transformer_steps_s"]) == r["steps"] and all(x > 0 for x in r["transformer_steps_s"])
        parts = r["text_encoding_s"] + r["transformer_total_s"] + r["vae_decode_s"]
        assert r["overhead_s"] >= 0 and r["end_to_end_s"] == pytest.approx(parts + r["overhead_s"])
        assert r["text_encoding_s"] > 0 and r["vae_decode_s"] > 0
    assert report["speedup_end_to_end"] == pytest.approx(t["end_to_end_s"] / s["end_to_end_s"])
    md = (tmp_path / "bench.md").read_text()
    for stage in ("text encoding", "transformer step", "VAE decode", "overhead", "end to end"):
        assert stage in md and stage in out


def test_the_built_in_model_is_named_as_given_not_by_its_install_path(tmp_path, capsys):
    """bench.json and bench.md are committed and pasted into docs: `--model builtin` is recorded as `builtin`, not
    as the folder it is installed in on this machine."""
    from accvideo.core.runtime import resolve_model

    args = ["bench", "--model", "builtin", "--teacher-steps", "2", "--student-steps", "1", "--out", str(tmp_path)]
    code, _, err = run_cli(args, capsys)
    assert code in (0, None), err
    assert json.loads((tmp_path / "bench.json").read_text())["model"] == "builtin"
    md = (tmp_path / "bench.md").read_text()
    assert md.startswith("# accvideo bench: builtin\n") and str(resolve_model("builtin")) not in md


def test_timing_wrapper_generates_the_same_clip(tiny_wan):
    from accvideo.bench.timing import TimedAdapter
    from accvideo.core.sampling import SamplingPlan
    from accvideo.core.schedules import shifted_sigmas
    from accvideo.sample.run import generate_clip

    args = dict(frames=5, height=32, width=32, seed=3)
    plan = SamplingPlan(shifted_sigmas(3, 5.0), guidance=4.0, negative_prompt="")
    timed = TimedAdapter(tiny_wan)
    a = generate_clip(tiny_wan, "a red circle", plan, **args)
    b = generate_clip(timed, "a red circle", plan, **args)
    assert torch.equal(a, b)
    assert (len(timed.text), len(timed.calls), len(timed.decode_s)) == (2, 6, 1)  # cond+uncond, 3 steps x CFG


@pytest.mark.parametrize(
    "name, forwards, size",
    [
        ("wan-tiny", 2, "32x32x5"),
        ("hunyuan-tiny", 1, "32x32x5"),
        ("wan-i2v-tiny", 2, "32x32x5"),
        ("wan22-ti2v-tiny", 2, "64x64x5"),  # the Wan 2.2 VAE compresses 16x and the transformer patches 2x2
        ("wan22-a14b-tiny", 2, "32x32x5"),
    ],
)
def test_random_weights_build_the_named_config(name, forwards, size, tmp_path, capsys):
    code, out, err = run_cli(
        [
            "bench",
            "--random-weights",
            "--arch",
            name,
            "--size",
            size,
            "--teacher-steps",
            "2",
            "--student-steps",
            "1",
            "--decoder",
            "tiny",
            "--out",
            str(tmp_path),
        ],
        capsys,
    )
    assert code in (0, None), err
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["model"] == f"{name} (random weights)"
    # the student decodes with a random tiny decoder sized from this family's VAE; the teacher with the VAE
    assert report["student_decoder"] == "tiny" and "tiny decoder" in (tmp_path / "bench.md").read_text()
    # Wan's teacher runs CFG (2 forwards a step); HunyuanVideo's uses the embedded guidance (1)
    assert report["results"]["teacher"]["forwards_per_step"] == forwards
    from accvideo.bench.configs import MEASURED, RANDOM_CONFIGS

    assert {"wan2.1-t2v-1.3b", "wan2.1-t2v-14b", "wan2.1-i2v-14b-480p", "wan2.2-ti2v-5b", "wan2.2-t2v-a14b"} <= set(
        RANDOM_CONFIGS
    )
    # a family accvideo cannot sample yet says what its step is, in the JSON and the table
    assert report["measured"] == MEASURED.get(name)
    if name in MEASURED:
        assert f"Measured: {MEASURED[name]}." in (tmp_path / "bench.md").read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--size", "64by64"], "--size must look like HxW or HxWxF"),
        (["--random-weights", "--arch", "nope"], "unknown --arch 'nope'"),
        (["--teacher-steps", "0"], "teacher_steps must be a positive integer"),
    ],
)
def test_bad_bench_input_is_one_line(args, message, tmp_path, capsys):
    code, _, err = run_cli(["bench", "--out", str(tmp_path), *args], capsys)
    assert code == 2 and message in err and err.count("\n") == 1


def test_real_size_configs_have_the_published_parameter_counts():
    """Built on the meta device (no memory): Wan2.1-1.3B / 14B transformers, UMT5-XXL encoder, Wan VAE."""
    from accvideo.bench.configs import build_random

    def count(module):
        return sum(p.numel() for p in module.parameters())

    small = build_random("wan2.1-t2v-1.3b", torch.device("meta"), torch.bfloat16)
    big = build_random("wan2.1-t2v-14b", torch.device("meta"), torch.bfloat16)
    assert count(small.transformer) == 1_418_996_800
    assert 14.2e9 < count(big.transformer) < 14.4e9
    assert 5.6e9 < count(small.pipe.text_encoder) < 5.8e9  # the UMT5-XXL encoder
    assert 126e6 < count(small.vae) < 128e6
    hy = build_random("hunyuanvideo", torch.device("meta"), torch.bfloat16)
    assert 12.7e9 < count(hy.transformer) < 12.9e9 and hy.num_blocks == 60  # 20 dual + 40 single blocks
    assert 7.4e9 < count(hy.pipe.text_encoder) < 7.6e9 and 120e6 < count(hy.pipe.text_encoder_2) < 125e6


def test_new_wan_configs_have_the_published_parameter_counts():
    """Meta device: Wan2.1-I2V-14B-480P (+ CLIP ViT-H/14), Wan2.2-TI2V-5B (+ its 48-channel VAE), Wan2.2-T2V-A14B.

    The I2V transformer is 16.39 B, not 14 B: the name counts the T2V backbone (14.29 B); the image cross-attention
    adds K/V projections of 5,120 x 5,120 per block (40 x 2 x 26.2 M = 2.1 B).
    """
    from accvideo.bench.configs import build_random

    def count(module):
        return sum(p.numel() for p in module.parameters())

    meta, bf16 = torch.device("meta"), torch.bfloat16
    i2v = build_random("wan2.1-i2v-14b-480p", meta, bf16)
    cfg = i2v.transformer.config
    assert (cfg.in_channels, cfg.out_channels, cfg.image_dim, cfg.added_kv_proj_dim) == (36, 16, 1280, 5120)
    assert count(i2v.transformer) == 16_394_878_784 and i2v.latent_channels == 16 and i2v.condition_channels == 20
    assert 630e6 < count(i2v.image_encoder) < 634e6  # CLIP ViT-H/14 vision tower with projection
    ti2v = build_random("wan2.2-ti2v-5b", meta, bf16)
    assert count(ti2v.transformer) == 4_999_787_712 and ti2v.num_blocks == 30 and ti2v.width == 3072
    assert 700e6 < count(ti2v.vae) < 710e6 and ti2v.vae.config.z_dim == 48
    assert (ti2v.latent_channels, ti2v.spatial_factor, ti2v.size_multiple) == (48, 16, 32)
    assert ti2v.pipe.config.expand_timesteps
    a14b = build_random("wan2.2-t2v-a14b", meta, bf16)
    assert count(a14b.transformer) == count(a14b.pipe.transformer_2) == 14_288_491_584  # = Wan2.1-T2V-14B each
    assert a14b.pipe.config.boundary_ratio == 0.875


def test_i2v_layout_feeds_noise_plus_condition_and_the_image_embedding():
    from accvideo.bench.configs import build_random

    adapter = build_random("wan-i2v-tiny", torch.device("cpu"), torch.float32)
    seen = {}
    adapter.transformer.patch_embedding.register_forward_pre_hook(lambda m, a: seen.update(x=a[0].shape))
    adapter.transformer.condition_embedder.register_forward_hook(lambda m, a, out: seen.update(img=out[-1].shape))
    cond = adapter.encode_prompts(["a red circle"])
    x = torch.randn(1, *adapter.latent_shape(5, 32, 32))
    v = adapter.velocity(x, torch.tensor(0.5), cond)
    assert v.shape == x.shape == (1, 16, 2, 4, 4)
    assert seen["x"] == (1, 36, 2, 4, 4)  # 16 noise + 20 condition channels
    # CLIP's penultimate hidden states (28 / 14 = 2 x 2 patches + the class token), projected to the width
    assert cond["image_embeds"].shape == (1, 5, 16) and seen["img"] == (1, 5, adapter.width)


def test_ti2v_layout_passes_per_token_timesteps_as_the_stock_pipeline():
    from accvideo.bench.configs import build_random

    adapter = build_random("wan22-ti2v-tiny", torch.device("cpu"), torch.float32)
    seen = []
    adapter.transformer.condition_embedder.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape))
    cond = adapter.encode_prompts(["a red circle"])
    x = torch.randn(1, *adapter.latent_shape(5, 64, 64))
    v = adapter.velocity(x, torch.tensor(0.5), cond)
    # (B, tokens) flattened by the transformer: 2 latent frames x 2 x 2 patches (a scalar timestep would give (1,))
    assert seen == [(1 * 2 * 2 * 2,)]
    # every token carries the same t, so the output is the scalar-timestep forward's
    ref = adapter.transformer(
        hidden_states=x, timestep=torch.tensor([500.0]), encoder_hidden_states=cond["prompt_embeds"], return_dict=False
    )[0]
    assert torch.allclose(v, ref, atol=1e-5)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--random-weights", "--arch", "wan2.1-t2v-1.3b", "--size", "480x832x80"], "of the form 4k+1 (e.g. 77 or 81)"),
        (["--random-weights", "--arch", "hunyuanvideo", "--size", "0x0x0"], "frames must be at least 1"),
        (["--random-weights", "--arch", "nope", "--size", "480x832x80"], "unknown --arch 'nope'"),
        (["--size", "64x60x17"], "width must be a positive multiple of 16 (e.g. 64); got 60"),
    ],
)
def test_a_size_the_model_cannot_take_is_refused_before_it_is_built_and_makes_no_folder(
    args, message, tiny_wan_dir, tmp_path, capsys, monkeypatch
):
    """The size was checked after building the model (a 1.3B random Wan: minutes on a CPU) and after making the
    output folder, which the refusal left behind empty."""
    import accvideo.bench.run as bench_run

    def never(*a, **kw):
        raise AssertionError("built or loaded before the size was checked")

    monkeypatch.setattr(bench_run, "build_random", never)
    monkeypatch.setattr(bench_run, "open_model", never)
    model = [] if "--random-weights" in args else ["--model", str(tiny_wan_dir)]
    code, _, err = run_cli(["bench", *model, *args, "--device", "cpu", "--out", str(tmp_path / "b")], capsys)
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "b").exists()


def test_random_weights_past_the_free_host_memory_are_refused_before_building(tmp_path, capsys, monkeypatch):
    """On the CPU the kernel killed the process without a word (wan2.1-t2v-1.3b: 27 GiB in float32 on a 23 GiB
    machine). The bytes come from the pipeline built on the meta device: here wan-tiny's float32 parameters, against
    one byte less free memory (refused) and exactly as much (built)."""
    import accvideo.bench.run as bench_run
    from accvideo.bench.configs import build_random
    from accvideo.errors import AccVideoError

    def loads(*a, **kw):
        raise AccVideoError("building")

    meta = build_random("wan-tiny", torch.device("meta"), torch.float32)
    modules = [m for m in meta.pipe.components.values() if isinstance(m, torch.nn.Module)]
    need = 4 * sum(p.numel() for m in modules for p in m.parameters())
    monkeypatch.setattr(bench_run, "_load", loads)
    args = ["bench", "--random-weights", "--arch", "wan-tiny", "--size", "32x32x5", "--device", "cpu"]
    for free, says in ((need - 1, "takes 0.0 GiB in float32 and this machine has 0.0 GiB of memory free"), (need, "")):
        monkeypatch.setattr(bench_run, "available_memory", lambda free=free: free)
        code, _, err = run_cli([*args, "--out", str(tmp_path / f"b{free}")], capsys)
        assert code == 2 and (says in err if says else err == "error: building\n"), err
    assert not (tmp_path / f"b{need - 1}").exists()


def test_bench_refuses_an_output_folder_another_bench_is_writing(tiny_wan_dir, tmp_path, capsys, monkeypatch):
    """Two benches into one --out both said "wrote" and exited 0; bench.json held one of them. The folder's lock
    refuses the second in one line, writing nothing; a bench holds it until its reports are written."""
    import os

    import accvideo.bench.run as run
    from accvideo.core.files import writer_id
    from accvideo.core.outputs import mark_folder

    out = tmp_path / "b"
    out.mkdir()
    mark_folder(out, "bench")
    (out / "bench.json").write_text('{"theirs": true}')
    live = writer_id().rsplit("-", 1)[0] + f"-{os.getppid()}"  # a live process of this host that is not this one
    (out / ".accvideo-lock").write_text(live)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    args = ["bench", "--model", str(tiny_wan_dir), "--size", "32x32x5", "--teacher-steps", "1", "--student-steps", "1"]
    code, _, err = run_cli([*args, "--out", str(out)], capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err == (
        f"error: another `accvideo bench` ({live}) is writing {out}; wait for it to end, or delete "
        f"{out / '.accvideo-lock'} if none is running\n"
    )
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    (out / ".accvideo-lock").unlink()  # that bench ended
    held, write = [], run.write_json_atomic
    monkeypatch.setattr(
        run, "write_json_atomic", lambda *a: (held.append((out / ".accvideo-lock").read_text()), write(*a))
    )
    code, _, err = run_cli([*args, "--out", str(out)], capsys)
    assert code in (0, None), err
    assert held == [writer_id()] and not (out / ".accvideo-lock").exists()
    assert json.loads((out / "bench.json").read_text())["results"]["student"]["steps"] == 1
