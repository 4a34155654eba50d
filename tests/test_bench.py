"""`accvideo bench`: every stage and the remainder are reported, timing does not change what is generated."""

from __future__ import annotations

import json

import pytest
import torch

from accvideo.cli import main


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


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


@pytest.mark.parametrize("name, forwards", [("wan-tiny", 2), ("hunyuan-tiny", 1)])
def test_random_weights_build_the_named_config(name, forwards, tmp_path, capsys):
    code, out, err = run_cli(
        [
            "bench",
            "--random-weights",
            "--arch",
            name,
            "--size",
            "32x32x5",
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
    from accvideo.bench.configs import RANDOM_CONFIGS

    assert {"wan2.1-t2v-1.3b", "wan2.1-t2v-14b"} <= set(RANDOM_CONFIGS)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--size", "64by64"], "--size must look like HxW or HxWxF"),
        (["--random-weights", "--arch", "nope"], "unknown --arch 'nope'"),
        (["--teacher-steps", "0"], "teacher_steps must be >= 1"),
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
