from pathlib import Path

import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from accvideo.core.sampling import cfg_combine, euler_sample, euler_step
from accvideo.core.schedules import shifted_sigmas


def _field(x, sigma):
    """A smooth, nonlinear, sigma-dependent stand-in velocity field."""
    s = sigma.view(-1, *([1] * (x.dim() - 1)))
    return torch.tanh(x) * (1 + s) - 0.3 * s * x.roll(1, dims=-1)


def test_euler_matches_diffusers_scheduler_with_explicit_sigmas():
    sig = shifted_sigmas(12, 7.0)
    x0 = torch.randn(2, 4, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    ours = euler_sample(_field, x0.clone(), sig)

    # shift=1 so the scheduler keeps our (already shifted) sigmas; it appends the final 0 itself
    sched = FlowMatchEulerDiscreteScheduler(shift=1.0)
    sched.set_timesteps(sigmas=sig[:-1].tolist())
    torch.testing.assert_close(sched.sigmas.double(), sig, atol=1e-6, rtol=0)
    x = x0.clone()
    for t in sched.timesteps:
        sigma = (t / 1000).expand(x.shape[0])
        x = sched.step(_field(x, sigma), t, x, return_dict=False)[0]
    torch.testing.assert_close(ours, x, atol=1e-5, rtol=0)

    # the same grid when the scheduler applies the shift to uniform levels itself
    sched7 = FlowMatchEulerDiscreteScheduler(shift=7.0)
    sched7.set_timesteps(sigmas=(1 - torch.arange(12) / 12).tolist())
    torch.testing.assert_close(sched7.sigmas.double(), sig, atol=1e-6, rtol=0)


def test_callback_sees_every_latent_including_noise():
    sig = shifted_sigmas(5, 3.0)
    x0 = torch.randn(1, 2, 1, 2, 2)
    seen = []
    out = euler_sample(_field, x0, sig, callback=lambda i, s, x: seen.append((i, s, x.clone())))
    assert [i for i, _, _ in seen] == list(range(6))
    assert [s for _, s, _ in seen] == [float(s) for s in sig]
    assert torch.equal(seen[0][2], x0) and torch.equal(seen[-1][2], out)
    # every transition is one Euler step with the field at the noisier level
    for (_i, s, x), (_, s_next, x_next) in zip(seen, seen[1:], strict=False):
        expect = x + (s_next - s) * _field(x, torch.full((1,), s))
        torch.testing.assert_close(x_next, expect)


def test_cfg_in_sampler_equals_combined_field():
    sig = shifted_sigmas(4, 5.0)
    x0 = torch.randn(3, 2, 1, 2, 2)

    def uncond(x, s):
        return 0.5 * x

    def combined(x, s):
        return uncond(x, s) + 4.0 * (_field(x, s) - uncond(x, s))

    guided = euler_sample(_field, x0, sig, uncond=uncond, guidance=4.0)
    torch.testing.assert_close(guided, euler_sample(combined, x0, sig))
    # guidance 1 ignores the unconditional field
    torch.testing.assert_close(
        euler_sample(_field, x0, sig, uncond=uncond, guidance=1.0), euler_sample(_field, x0, sig)
    )
    a, b = torch.tensor(2.0), torch.tensor(-1.0)
    assert cfg_combine(a, b, 3.0) == -1.0 + 3.0 * 3.0
    assert euler_step(torch.tensor(1.0), torch.tensor(2.0), 0.5, 0.25) == 1.0 - 0.5


def test_a_sample_rerun_leaves_only_what_it_wrote(tmp_path, tiny_wan_dir, capsys):
    import json

    from cli_helpers import run_cli

    out = tmp_path / "sm"
    base = ["sample", "--model", str(tiny_wan_dir), "--prompt", "x", "--steps", "2", "--frames", "5", "--size", "32x32"]
    base += ["--device", "cpu", "--out", str(out / "clip.mp4")]
    out.mkdir()
    (out / "other.gif").write_bytes(b"a user's file")
    assert run_cli([*base, "--seed", "1", "--gif"], capsys)[0] in (0, None)
    assert (out / "clip.gif").is_file()
    assert run_cli([*base, "--seed", "2"], capsys)[0] in (0, None)  # no --gif: the seed-1 GIF is not this run's
    assert sorted(p.name for p in out.iterdir()) == [".accvideo-files.json", "clip.mp4", "clip.yaml", "other.gif"]
    assert sorted(json.loads((out / ".accvideo-files.json").read_text())["files"]) == ["clip.mp4", "clip.yaml"]
    assert run_cli([*base, "--seed", "1", "--gif"], capsys)[0] in (0, None)
    (out / "clip.gif").write_bytes(b"edited since")  # not accvideo's any more: kept
    assert run_cli([*base, "--seed", "2"], capsys)[0] in (0, None)
    assert (out / "clip.gif").read_bytes() == b"edited since" and (out / "other.gif").is_file()


def test_a_run_killed_between_renaming_its_clip_and_recording_it_is_rerun(tmp_path, tiny_wan_dir, capsys, monkeypatch):
    """The clip is renamed into place, then listed in the folder's ledger. Was: a kill between the two left a clip the
    ledger did not vouch for, and every rerun was refused ('exists and was not written by accvideo')."""
    from cli_helpers import run_cli

    import accvideo.sample.run as sample_run

    out = tmp_path / "clip.mp4"
    base = ["sample", "--model", str(tiny_wan_dir), "--prompt", "x", "--steps", "2", "--frames", "5", "--size", "32x32"]
    base += ["--device", "cpu", "--out", str(out)]
    assert run_cli([*base, "--seed", "1"], capsys)[0] in (0, None)
    first = out.read_bytes()
    real = sample_run.record_file

    def killed(path, command):
        if Path(path) == out:
            raise KeyboardInterrupt  # the clip of seed 2 is in place, not yet recorded
        return real(path, command)

    monkeypatch.setattr(sample_run, "record_file", killed)
    assert run_cli([*base, "--seed", "2"], capsys)[0] == 130 and out.read_bytes() != first
    monkeypatch.setattr(sample_run, "record_file", real)
    code, _, err = run_cli([*base, "--seed", "2"], capsys)
    assert code in (0, None), err
    out.write_bytes(b"edited since")  # the ledger still vouches only for accvideo's own contents
    code, _, err = run_cli([*base, "--seed", "2"], capsys)
    assert code == 2 and "was not written by accvideo (or was changed since)" in err


def test_a_refused_clip_leaves_no_folder_it_made(tmp_path, capsys):
    """Was: `sample --decoder MISSING --out new/c.mp4` refused the decoder after making new/, left empty."""
    from cli_helpers import run_cli

    (tmp_path / "kept").mkdir()
    for out in (tmp_path / "new" / "deeper" / "c.mp4", tmp_path / "kept" / "c.mp4"):
        args = ["sample", "--model", "builtin", "--prompt", "a red circle", "--decoder", str(tmp_path / "no-decoder")]
        code, _, err = run_cli([*args, "--out", str(out)], capsys)
        assert code == 2 and "does not exist" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"] and not any((tmp_path / "kept").iterdir())


def test_an_adapter_output_of_the_wrong_shape_is_one_line_naming_the_method(tiny_wan, monkeypatch):
    """A model adapter of the user's own (docs/own-model.md) whose velocity was one latent frame short was broadcast by
    the Euler step into a plausible, wrong trajectory (stored by synthesize, exit 0); other shapes were tracebacks;
    a prompt batch of the wrong size, or a decode of the wrong size, went on too. Each is refused where generic code
    takes it, naming the adapter's method and the shape it owes."""
    import pytest

    from accvideo.core.sampling import SamplingPlan
    from accvideo.errors import AccVideoError
    from accvideo.sample.run import generate_clips

    plan = SamplingPlan(sigmas=torch.tensor([1.0, 0.5, 0.0]), guidance=1.0)
    shape = tiny_wan.latent_shape(5, 32, 32)  # 2 latent frames

    def clips():
        return generate_clips(tiny_wan, ["a", "b"], [1, 2], plan, frames=5, height=32, width=32)

    good = clips()
    assert good.shape == (2, 5, 32, 32, 3)
    velocity, encode, decode = tiny_wan.velocity, tiny_wan.encode_prompts, tiny_wan.decode
    with monkeypatch.context() as m:
        m.setattr(tiny_wan, "velocity", lambda x, s, c: velocity(x, s, c)[:, :, :1])
        with pytest.raises(AccVideoError) as caught:
            clips()
        want = (
            f"WanAdapter.velocity returned shape (2, {shape[0]}, 1, 4, 4) for latents of shape (2, {shape[0]}, 2, 4, 4)"
        )
        assert str(caught.value).startswith(want)
    with monkeypatch.context() as m:
        m.setattr(tiny_wan, "encode_prompts", lambda prompts: {k: v[:1] for k, v in encode(prompts).items()})
        with pytest.raises(AccVideoError, match=r"WanAdapter.encode_prompts gave 'prompt_embeds' of shape \(1, "):
            clips()
    with monkeypatch.context() as m:
        m.setattr(tiny_wan, "decode", lambda latents: decode(latents)[:, :, :30])
        with pytest.raises(
            AccVideoError, match=r"WanAdapter.decode returned shape \(2, 5, 30, 32, 3\), not \(2, 5, 32"
        ):
            clips()
    torch.testing.assert_close(clips(), good)  # the checks change nothing of a right adapter's clips
