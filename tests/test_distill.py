"""Distillation internals (docs/method.md 2-3): losses by hand, heads, queues, gradient routing, LoRA sharing."""

from __future__ import annotations

import json
import math

import pytest
import torch

from accvideo.core.runtime import noise
from accvideo.core.sampling import euler_step
from accvideo.distill import Distiller, load_student, losses, quick_config
from accvideo.distill.heads import FeatureHead, Heads, default_feature_blocks, frames_of_tokens
from accvideo.distill.queues import KeyQueues
from accvideo.models import load_adapter


def distiller(tiny_wan_dir, synvid, out, **kw) -> Distiller:
    return Distiller(quick_config(teacher=str(tiny_wan_dir), data=str(synvid), out=str(out), **kw))


def test_trajectory_loss_equals_hand_computation():
    x = torch.tensor([1.0, 2.0]).view(1, 1, 1, 1, 2)  # l[t'_{k+1}] at t'_{k+1} = 0.8
    x_next = torch.tensor([0.5, 3.0]).view(1, 1, 1, 1, 2)  # l[t'_k] at t'_k = 0.3
    v = torch.tensor([2.0, 0.0]).view(1, 1, 1, 1, 2)
    # secant = (x_next - x) / (0.3 - 0.8) = (-0.5, 1) / -0.5 = (1, -2); v - secant = (1, 2); mean of squares 2.5
    assert losses.trajectory_loss(v, x, x_next, 0.8, 0.3).item() == pytest.approx(2.5)
    secant = losses.secant_velocity(x_next, x, 0.3, 0.8)
    assert secant.flatten().tolist() == pytest.approx([1.0, -2.0])
    # the secant is the velocity whose one Euler step lands exactly on the next stored key latent
    torch.testing.assert_close(euler_step(x, secant, 0.8, 0.3), x_next)


def test_gan_losses_equal_hand_computation():
    zero = torch.zeros(3)
    assert losses.discriminator_loss(zero, zero).item() == pytest.approx(2 * math.log(2))
    assert losses.generator_loss(zero).item() == pytest.approx(math.log(2))
    real, fake = torch.tensor([0.5, 2.0]), torch.tensor([-2.0, 0.0])
    # hinge: mean(relu(1 - real)) + mean(relu(1 + fake)) = 0.25 + 0.5; L_G = -mean(fake) = 1
    assert losses.discriminator_loss(real, fake, "hinge").item() == pytest.approx(0.75)
    assert losses.generator_loss(fake, "hinge").item() == pytest.approx(1.0)
    # R1 of D(x) = sum(3 x) per item: gradient 3 everywhere, ||.||^2 = 9 * 4 per item
    x = torch.ones(2, 4, requires_grad=True)
    assert losses.r1_penalty((3 * x).sum(1), x).item() == pytest.approx(36.0)


def test_heads_follow_the_token_grid():
    tokens = torch.arange(2 * 3 * 2 * 2 * 4, dtype=torch.float32).view(2, 12, 4)
    frames = frames_of_tokens(tokens, (3, 2, 2))
    assert frames.shape == (6, 4, 2, 2)
    # token (f, h, w) of item b is f*H*W + h*W + w and lands in image b*F + f: item 1, frame 1, position (1, 0)
    assert torch.equal(frames[1 * 3 + 1, :, 1, 0], tokens[1, 1 * 4 + 1 * 2 + 0])
    head = FeatureHead(dim=4, channels=8)
    assert head(tokens, (3, 2, 2)).shape == (2,)
    assert head(torch.randn(3, 2 * 4 * 6, 4), (2, 4, 6)).shape == (3,)  # another grid, the same head
    with pytest.raises(ValueError, match="token grid"):
        head(tokens, (2, 2, 2))
    assert len(Heads(5, 4, 8).heads) == 5 and len(Heads(5, 4, 8, shared=True).heads) == 1
    assert default_feature_blocks(60, 5) == [39, 59, 59, 59, 59]  # the paper's block 40 for t'_0, else the last
    assert default_feature_blocks(3, 5) == [1, 2, 2, 2, 2]


_HEAD_STEP = """
import torch
from accvideo.distill.heads import FeatureHead, frames_of_tokens
torch.manual_seed(0)
tokens = torch.randn(4, 2 * {h} * {w}, 256)  # teacher features: no gradient, as in the heads' L_D step
frames = frames_of_tokens(tokens, (2, {h}, {w}))
assert frames.stride() == (256 * {h} * {w}, {h} * {w}, {w}, 1), frames.stride()
head = FeatureHead(256, 8)
head(tokens, (2, {h}, {w})).sum().backward()
print(float(head.net[0].weight.grad.abs().sum()))
"""


@pytest.mark.parametrize("h, w", [(1, 1), (2, 2)])
def test_head_backward_on_a_one_token_frame(h, w):
    # torch 2.13's CPU GroupNorm backward killed `distill` (SIGSEGV) on channels-last strides when the input needs no
    # gradient; a 1x1 token grid (Wan 2.2 TI2V at 32x32) kept them through `.contiguous()`. In a subprocess: a crash
    # is a failed test, not a dead test run.
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", _HEAD_STEP.format(h=h, w=w)], capture_output=True, text=True)
    assert run.returncode == 0, (run.returncode, run.stderr[-500:])
    assert float(run.stdout) > 0  # the first GroupNorm's weight got a gradient


def test_queues_are_fifo_and_round_trip():
    q = KeyQueues(3)
    q.push(1, {"x": torch.ones(1), "cond": {"e": torch.zeros(1)}})
    state = q.state_dict()
    again = KeyQueues(3)
    again.load_state_dict(state)
    assert torch.equal(again.pop(1)["x"], torch.ones(1)) and len(again) == 0
    with pytest.raises(RuntimeError, match="Q_1 is empty"):
        again.pop(1)


def test_fake_at_key_step_k_took_m_minus_k_student_steps(tiny_wan_dir, synvid, tmp_path):
    d = distiller(tiny_wan_dir, synvid, tmp_path / "run", batch=2)
    m, t = d.m, d.t
    real_velocity = d.pair.student.velocity

    def marked_velocity(x, sigma, cond, **kw):
        # zero everywhere except channel 0, where one Euler step t'_{j} -> t'_{j-1} adds exactly 1
        j = min(range(len(t)), key=lambda i: abs(t[i] - float(sigma[0])))
        v = real_velocity(x, sigma, cond, **kw) * 0
        v[:, 0] += 1.0 / (t[j - 1] - t[j])
        return v

    d.pair.student.velocity = marked_velocity
    popped, pushed = [], []
    pop_fakes, push = d.pop_fakes, d.queues.push
    d.pop_fakes = lambda k: popped.append((k, pop_fakes(k))) or popped[-1][1]
    d.queues.push = lambda k, e: pushed.append((k, e)) or push(k, e)
    for _ in range(2):
        d.train_iteration()

    def steps_taken(entry):
        eps = torch.stack([noise(entry["x"].shape[1:], int(s)) for s in entry["seed"]])
        diff = entry["x"] - eps
        assert diff[:, 1:].abs().max() < 1e-5  # the marker only ever touched channel 0
        counts = diff[:, 0].mean(dim=(1, 2, 3))
        assert torch.allclose(counts, counts.round(), atol=1e-4)
        return set(counts.round().int().tolist())

    assert [k for k, _ in popped] == [4, 3, 2, 1, 0] * 2
    for k, entry in popped:  # popped for key step k: from Q_{k+1}, m-(k+1) steps so far
        assert steps_taken(entry) == {m - k - 1} and not entry["x"].requires_grad
    for k, entry in pushed:  # after its one step: at t'_k, m-k steps from noise
        assert steps_taken(entry) == {m - k}
    assert len(pushed) == 2 * m


@pytest.mark.parametrize("lora_rank", [0, 4])
def test_generator_loss_reaches_student_and_heads_never_the_teacher(tiny_wan_dir, synvid, tmp_path, lora_rank):
    d = distiller(tiny_wan_dir, synvid, tmp_path / "run", lora_rank=lora_rank, batch=2)
    k = d.m - 1
    entry = d.pop_fakes(k)
    _, loss = d.generator_backward(k, entry)  # the gradients stay until student_step
    assert math.isfinite(loss)
    student = [p.grad for p in d.pair.params.values()]
    assert all(g is not None for g in student) and sum(g.abs().sum() for g in student) > 0
    head_grads = [p.grad for p in d.heads[k].parameters()]
    assert all(g is not None for g in head_grads) and sum(g.abs().sum() for g in head_grads) > 0
    assert all(p.grad is None for j in range(k) for p in d.heads[j].parameters())  # only H_k is on the path
    teacher = [(n, p) for n, p in d.pair.teacher.transformer.named_parameters() if "lora_" not in n]
    assert teacher and all(p.grad is None and not p.requires_grad for _, p in teacher)


def test_lora_student_shares_the_teachers_base_weights(tiny_wan_dir, synvid, tmp_path):
    d = distiller(tiny_wan_dir, synvid, tmp_path / "run", lora_rank=4, batch=1, iterations=2, checkpoint_every=2)
    student, teacher = d.pair.student.transformer, d.pair.teacher.transformer
    base = {n: p for n, p in teacher.named_parameters() if "lora_" not in n}
    # every wrapped layer's base weight is the very storage the teacher computes with: one copy of the model
    for name, module in student.named_modules():
        if hasattr(module, "base_layer"):
            assert module.base_layer.weight.data_ptr() == base[f"{name}.base_layer.weight"].data_ptr()
    ptrs = {p.data_ptr() for p in student.parameters()} | {p.data_ptr() for p in teacher.parameters()}
    assert len(ptrs) == len(list(student.parameters()))
    assert set(d.pair.params) == {n for n, _ in student.named_parameters() if "lora_" in n}

    reference = load_adapter(tiny_wan_dir)  # the untouched teacher, loaded apart
    x, sigma = torch.randn(1, 16, 3, 4, 4), torch.tensor([0.7])
    cond = {"prompt_embeds": torch.randn(1, 8, 32)}
    d.run(progress=False)
    with torch.no_grad():
        with d.pair.teacher_mode():
            v_teacher = d.pair.teacher.velocity(x, sigma, cond)
        v_student = d.pair.student.velocity(x, sigma, cond)
        v_reference = reference.velocity(x, sigma, cond)
    torch.testing.assert_close(v_teacher, v_reference)  # adapter off = the frozen teacher, after training
    assert (v_student - v_reference).abs().max() > 1e-6  # the adapter on is the trained student
    # the exported LoRA (stock diffusers format) loads onto the teacher and reproduces the student
    loaded, info = load_student(tmp_path / "run" / "student")
    assert info["lora"]["rank"] == 4 and info["key_sigmas"] == pytest.approx([1.0, *d.t[-2:0:-1], 0.0])
    with torch.no_grad():
        torch.testing.assert_close(loaded.velocity(x, sigma, cond), v_student, atol=1e-5, rtol=1e-4)


def test_head_steps_repeat_the_head_update_on_features_computed_once(tiny_wan_dir, synvid, tmp_path):
    """head_steps=3 equals three head_steps=1 updates on the same fakes (the teacher's features are deterministic),
    with one teacher forward instead of three, and reports L_D and the accuracy of the heads before the first step."""
    opts = {"batch": 2, "micro_batch": 1}
    runs = {n: distiller(tiny_wan_dir, synvid, tmp_path / f"h{n}", head_steps=n, **opts) for n in (1, 3)}
    k = runs[1].m - 1
    fakes = runs[1].pop_fakes(k)  # both runs share the seed: the same fakes and heads
    calls = {}
    for n, d in runs.items():

        def counted(*a, n=n, f=d.pair.teacher.features, **kw):
            calls[n] = calls.get(n, 0) + 1
            return f(*a, **kw)

        d.pair.teacher.features = counted
    reported = [runs[1].discriminator_update(k, fakes) for _ in range(3)]
    assert calls[1] == 3 * 2  # three updates, two micro-batches each
    assert runs[3].discriminator_update(k, fakes) == pytest.approx(reported[0])
    assert calls[3] == 2 and reported[0][0] > reported[2][0]  # one forward per micro-batch; L_D fell over the steps
    for a, b in zip(runs[1].heads[k].parameters(), runs[3].heads[k].parameters(), strict=True):
        torch.testing.assert_close(a, b)
        assert runs[3].opt_heads.state[b]["step"] == 3


@pytest.mark.parametrize(
    "options",
    [
        {"adv": False},
        {"gan_loss": "hinge", "r1": 1.0, "heads": "shared", "ema": 0.9, "micro_batch": 1},
    ],
)
def test_options_train_with_finite_losses(tiny_wan_dir, synvid, tmp_path, options):
    d = distiller(tiny_wan_dir, synvid, tmp_path / "run", batch=2, iterations=1, **options)
    record = d.train_iteration()
    assert all(math.isfinite(v) for v in record["traj_k"]) and record["samples"] == 2 * d.m
    if not options.get("adv", True):
        assert record["g"] is None and record["d"] is None and len(d.queues) == 0
        assert all(p.grad is None for p in d.heads.parameters())
    else:
        assert all(math.isfinite(v) for v in record["g_k"] + record["d_k"]) and len(d.heads.heads) == 1
        assert d.pair.ema is not None
        ema_differs = any(not torch.equal(d.pair.ema[n], p) for n, p in d.pair.params.items())
        assert ema_differs  # the EMA lags the weights


def test_full_student_resumes_to_the_same_weights(tiny_wan_dir, synvid, tmp_path):
    opts = {"batch": 1, "ema": 0.5, "checkpoint_every": 2}
    whole = distiller(tiny_wan_dir, synvid, tmp_path / "whole", iterations=4, **opts)
    whole.run(progress=False)
    first = distiller(tiny_wan_dir, synvid, tmp_path / "parts", iterations=2, **opts).run(progress=False)
    parts = distiller(tiny_wan_dir, synvid, tmp_path / "parts", iterations=4, **opts)  # resumes at iteration 2
    second = parts.run(progress=False)
    # the training seconds behind the weights add up over resumes; a finished run resumed keeps them
    again = distiller(tiny_wan_dir, synvid, tmp_path / "parts", iterations=4, **opts).run(progress=False)
    assert 0 < first["train_seconds"] < second["train_seconds"] == again["train_seconds"]
    logged = [json.loads(line)["seconds"] for line in (tmp_path / "parts" / "losses.jsonl").read_text().splitlines()]
    assert len(logged) == 4 and logged == sorted(logged) and logged[-1] == second["train_seconds"]
    for name, p in whole.pair.params.items():
        assert torch.equal(p, parts.pair.params[name]) and torch.equal(whole.pair.ema[name], parts.pair.ema[name])
    assert parts.samples == whole.samples == 4 * 5
    # the export holds the EMA weights and the key sigmas, and loads onto the teacher
    loaded, info = load_student(tmp_path / "parts" / "student")
    assert info["ema"] and info["lora"] is None and len(info["key_sigmas"]) == 6
    name = next(iter(whole.pair.ema))
    torch.testing.assert_close(loaded.transformer.state_dict()[name], whole.pair.ema[name])


def test_a_run_older_than_a_setting_resumes_at_that_settings_default(tmp_path):
    """A checkpoint written before `adv_warmup` existed holds no such key: the default (0, the old behaviour)
    resumes it, another value is refused, and a key the checkpoint does hold is still compared."""
    from accvideo.core.config import to_dict
    from accvideo.distill.checkpoint import check_resumable
    from accvideo.distill.config import DistillConfig
    from accvideo.errors import AccVideoError

    defaults = to_dict(DistillConfig())
    old = {k: v for k, v in defaults.items() if k != "adv_warmup"}
    saved = {"teacher": "t", "config": old}
    check_resumable(saved, defaults, "t", tmp_path, defaults)  # no error
    with pytest.raises(AccVideoError, match=r"before the setting adv_warmup \(it ran as adv_warmup=0\), not 5"):
        check_resumable(saved, {**defaults, "adv_warmup": 5}, "t", tmp_path, defaults)
    with pytest.raises(AccVideoError, match="lambda_adv"):
        check_resumable(saved, {**defaults, "lambda_adv": 0.5}, "t", tmp_path, defaults)


def test_empty_lora_targets_are_the_default_and_recorded_so(tmp_path):
    """`lora_targets=[]` trains the family's attention projections (targets_for), so the run records None, the
    default's value; a checkpoint of an older run that recorded [] resumes under either spelling."""
    from accvideo.core.config import to_dict
    from accvideo.distill.checkpoint import check_resumable
    from accvideo.distill.config import DistillConfig

    config = to_dict(DistillConfig(lora_rank=2, lora_targets=[]))
    assert config["lora_targets"] is None
    assert to_dict(DistillConfig(lora_rank=2, lora_targets=["to_q"]))["lora_targets"] == ["to_q"]
    old = {"teacher": "t", "config": {**config, "lora_targets": []}}
    check_resumable(old, config, "t", tmp_path, config)  # no error
