"""The 1D experiment (paper Figure 2): building blocks against closed forms, then the claims end to end."""

from __future__ import annotations

import dataclasses
import json
import math
import sys

import background
import pytest
import torch

from accvideo.cli import main
from accvideo.core.sampling import euler_sample
from accvideo.core.schedules import shifted_sigmas
from accvideo.errors import AccVideoError
from accvideo.toy1d import Toy1dConfig, quick_preset, run_toy1d
from accvideo.toy1d.data import phase_generator, sample_mismatched
from accvideo.toy1d.model import build_net
from accvideo.toy1d.train import accvideo_batches, kd_batches, rollout
from accvideo.toy1d.useless import useless_frequency

A = 3.0
M_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)


def exact_velocity(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The exact flow-matching velocity of data {-3, +3}: (x - E[x0 | x]) / sigma."""
    s = sigma.to(x.dtype)
    x0 = A * torch.tanh(x * (1 - s) * A / s**2)
    return (x - x0) / s


@pytest.fixture
def one_thread():
    """The tiny nets run fastest on one thread; restore the session's setting afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_config() -> Toy1dConfig:
    return dataclasses.replace(
        quick_preset(),
        teacher_iters=60,
        teacher_batch=64,
        student_iters=20,
        student_batch=64,
        num_trajectories=64,
        kd_mismatches=(0.0, 3.0),
        useless_points=300,
        dmd_iters=8,
        dmd_batch=64,
        eval_samples=300,
        teacher_steps=10,
    )


# -- building blocks ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"student_steps": 7},
        {"tau": 0.0},
        {"teacher_iters": 0},
        {"pe_dim": 7},
        {"kd_target": "labels"},
        {"useless_mismatches": (0.0, -1.0)},
        {"kd_mismatches": ()},
    ],
)
def test_config_rejects_bad_values(change):
    with pytest.raises(AccVideoError):
        dataclasses.replace(Toy1dConfig(), **change)


def test_net_returns_velocity_of_its_denoised_point_and_init_is_seeded():
    state = torch.random.get_rng_state()
    net = build_net(16, 8, A, phase_generator(0, "init")).eval()
    assert torch.equal(torch.random.get_rng_state(), state)  # global RNG untouched
    same = build_net(16, 8, A, phase_generator(0, "init")).eval()
    other = build_net(16, 8, A, phase_generator(1, "init")).eval()
    x, sigma = torch.linspace(-4, 4, 9), torch.linspace(0.1, 1.0, 9)
    with torch.no_grad():
        v = net(x, sigma)
        assert torch.allclose(v, (x - net.denoised(x, sigma)) / sigma)
        assert torch.equal(v, same(x, sigma)) and not torch.allclose(v, other(x, sigma))


def test_mismatched_data_follows_its_definition():
    x0 = sample_mismatched(4000, 0.0, A, phase_generator(0, "d"))
    assert set(x0.tolist()) == {-A, A} and abs(float((x0 > 0).float().mean()) - 0.5) < 0.05
    x = sample_mismatched(4000, 1.5, A, phase_generator(0, "d"))
    gap = x.abs() - A
    assert gap.min() >= -1.5 and gap.max() <= 1.5 and gap.min() < -1.4 and gap.max() > 1.4
    assert torch.equal(torch.sign(x), torch.sign(x0))  # same stream: same signs, u only adds the spread


def test_accvideo_pairs_step_from_one_key_latent_to_the_next():
    key_sigmas = torch.tensor([1.0, 0.6, 0.2, 0.0])
    latents = torch.randn(4, 10, generator=phase_generator(0, "k"))
    x, sigma, v = accvideo_batches(latents, key_sigmas, 256)(phase_generator(0, "b"))
    k = torch.searchsorted(-key_sigmas, -sigma)  # which key level each pair starts from
    assert torch.equal(key_sigmas[k], sigma)
    stepped = x + (key_sigmas[k + 1] - sigma) * v  # one Euler step of docs/method.md 0
    assert all(bool((latents[kk + 1] - s).abs().min() < 1e-5) for kk, s in zip(k.tolist(), stepped, strict=False))


def test_kd_pairs_carry_the_renoised_point_to_its_data_point():
    key_sigmas = torch.tensor([1.0, 0.5, 0.0])
    x, sigma, v = kd_batches(None, key_sigmas, 512, 1.5, A)(phase_generator(0, "kd"))
    x_d = x - sigma * v  # Euler to sigma = 0 with the pair's velocity
    assert set(sigma.unique().tolist()) == {1.0, 0.5}
    assert (x_d.abs() - A).abs().max() <= 1.5 + 1e-5


def test_useless_frequency_of_the_exact_teacher_matches_the_closed_form():
    sigmas = shifted_sigmas(50, 1.0, torch.float32)
    freq = useless_frequency(exact_velocity, M_VALUES, 8000, A, sigmas, 0.5, phase_generator(0, "u"))
    # At M = 0 a point is useless exactly when the noise pushed it across 0 (the ODE's separatrix).
    normal_cdf = lambda t: 0.5 * (1 + math.erf(t / math.sqrt(2)))  # noqa: E731
    crossing = sum(normal_cdf(-A * (1 - s) / s) for s in sigmas[:-1].tolist()) / 50
    assert freq[0.0] == pytest.approx(crossing, abs=0.015) and crossing > 0.09
    values = [freq[m] for m in M_VALUES]
    assert all(b >= a for a, b in zip(values, values[1:], strict=False)) and values[-1] > 0.8


def test_rollout_keeps_the_requested_latents():
    z = torch.randn(32, generator=phase_generator(0, "z"))
    sigmas = shifted_sigmas(10, 1.0, torch.float32)
    kept = rollout(exact_velocity, z, sigmas, [0, 5, 10])
    assert torch.equal(kept[0], z)
    assert torch.allclose(kept[2], euler_sample(exact_velocity, z, sigmas))
    assert ((kept[2].abs() - A).abs() < 0.2).float().mean() > 0.95


# -- the experiment -------------------------------------------------------------------------------


def test_numbers_are_reproducible_for_a_seed(one_thread):
    first = run_toy1d(tiny_config(), seed=3, progress=False).numbers
    second = run_toy1d(tiny_config(), seed=3, progress=False).numbers
    other = run_toy1d(tiny_config(), seed=4, progress=False).numbers
    for n in (first, second, other):
        n.pop("seconds")
    assert json.dumps(first) == json.dumps(second)
    assert json.dumps(first) != json.dumps(other)


ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def quick_command() -> list[str]:
    """`accvideo toy1d --preset quick` (one thread, about 20 s), into a new folder of the background run's."""
    out = background.folder("toy1d") / "toy1d"  # new: the command writes only into folders it made
    return [sys.executable, "-m", "accvideo", "toy1d", "--out", str(out), "--seed", "0", "--preset", "quick"]


@pytest.fixture(scope="module")
def quick_run():
    """The command end to end with the reduced preset (the claims hold there too): started in the background
    when the session collected this file (conftest.py), so it runs beside the other tests."""
    out = background.wait("toy1d", quick_command(), ONE_THREAD) / "toy1d"
    return out, json.loads((out / "toy1d.json").read_text())


def test_command_writes_json_and_every_panel(quick_run):
    out, numbers = quick_run
    for name in (
        "a_teacher",
        "b_kd_pairs",
        "c_dmd_samples",
        "d_dmd_guidance",
        "e_useless_frequency",
        "f_students",
        "figure2",
    ):
        assert (out / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert numbers["tau"] == 0.5 and numbers["config"]["teacher_steps"] == 50
    assert [e["mismatch"] for e in numbers["useless_frequency"]] == list(M_VALUES)


def test_useless_points_exist_without_mismatch_and_grow_with_it(quick_run):
    freq = [e["frequency"] for e in quick_run[1]["useless_frequency"]]
    assert freq[0] > 0.03
    assert all(b > a for a, b in zip(freq, freq[1:], strict=False)) and freq[-1] > freq[0] + 0.5


def test_accvideo_student_lands_on_the_data_where_mismatched_kd_spreads(quick_run):
    numbers = quick_run[1]
    assert numbers["teacher"]["fraction_near"] >= 0.95
    near = {s["name"]: s["fraction_near"] for s in numbers["students"]}
    assert near["AccVideo"] >= 0.95
    assert near["KD M=3"] < 0.5 and near["KD M=3"] < near["AccVideo"] - 0.4
    assert near["KD M=0"] > near["KD M=1.5"] > near["KD M=3"]


def test_bad_preset_exits_with_code_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["toy1d", "--preset", "huge"])
    assert exc.value.code == 2 and "--preset must be one of full, quick" in capsys.readouterr().err
