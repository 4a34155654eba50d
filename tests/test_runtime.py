"""Run-time options (models/runtime.py): VAE tiling auto/on/off, offload, torch.compile; same outputs."""

from __future__ import annotations

import pytest
import torch

from accvideo.models import load_adapter
from accvideo.models.runtime import RuntimeOptions, apply_runtime


def latents_of(adapter, seed=0):
    return torch.randn((1, *adapter.latent_shape(5, 32, 32)), generator=torch.Generator().manual_seed(seed))


def test_auto_tiling_retries_tiled_after_out_of_memory(tiny_wan_dir):
    adapter = apply_runtime(load_adapter(tiny_wan_dir), RuntimeOptions(vae_tiling="auto"))
    reference = load_adapter(tiny_wan_dir)
    reference.vae.enable_tiling(tile_sample_min_height=16, tile_sample_min_width=16)
    adapter.vae.tile_sample_min_height = adapter.vae.tile_sample_min_width = 16  # so tiling changes the work
    untiled_decode = adapter.vae.decode
    calls = []

    def decode(z, **kw):  # an untiled decode that does not fit in memory
        calls.append(adapter.vae.use_tiling)
        if not adapter.vae.use_tiling:
            raise torch.OutOfMemoryError("simulated")
        return untiled_decode(z, **kw)

    adapter.vae.decode = decode
    z = latents_of(adapter)
    video = adapter.decode(z)
    assert calls == [False, True] and adapter.vae.use_tiling  # retried tiled, and stays tiled
    assert torch.allclose(video, reference.decode(z), atol=1e-6)


@pytest.mark.parametrize("mode, tiled", [("on", True), ("off", False)])
def test_tiling_on_and_off_are_set(tiny_wan_dir, mode, tiled):
    adapter = load_adapter(tiny_wan_dir)
    adapter.vae.use_tiling = not tiled
    apply_runtime(adapter, RuntimeOptions(vae_tiling=mode))
    assert adapter.vae.use_tiling is tiled


def test_compiled_transformer_gives_the_eager_velocity(tmp_path):
    """torch.compile (inductor on this CPU) changes speed, not the answer. One block: the compile's time (~25 s
    idle, against ~35 s for the suite's 3-block model) is the test's, and one block exercises every kind of op."""
    from accvideo.models.tiny import save_tiny_wan

    folder = save_tiny_wan(tmp_path / "wan", seed=0, num_layers=1)
    eager = load_adapter(folder)
    compiled = apply_runtime(load_adapter(folder), RuntimeOptions(compile=True))
    cond = eager.encode_prompts(["a red circle"])
    x, sigma = latents_of(eager), torch.tensor([0.7])
    with torch.no_grad():
        assert torch.allclose(compiled.velocity(x, sigma, cond), eager.velocity(x, sigma, cond), atol=1e-5)


@pytest.mark.gpu
def test_offload_keeps_text_encoder_and_vae_on_the_cpu_and_the_same_clip(tiny_wan_dir):
    from accvideo.core.sampling import SamplingPlan
    from accvideo.core.schedules import shifted_sigmas
    from accvideo.models.runtime import text_encoders
    from accvideo.sample.run import generate_clip

    args = dict(frames=5, height=32, width=32, seed=1)
    plan = SamplingPlan(shifted_sigmas(3, 5.0), guidance=4.0)
    plain = load_adapter(tiny_wan_dir, device="cuda")
    off = apply_runtime(load_adapter(tiny_wan_dir, device="cuda"), RuntimeOptions(offload=True))
    a, b = generate_clip(plain, "a red circle", plan, **args), generate_clip(off, "a red circle", plan, **args)
    assert torch.allclose(a, b, atol=1e-5)
    for m in [*text_encoders(off), off.vae]:
        assert next(m.parameters()).device.type == "cpu"
    assert next(off.transformer.parameters()).device.type == "cuda"


def test_bad_tiling_value_is_one_line(tmp_path, capsys):
    from accvideo.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["sample", "--vae-tiling", "sometimes", "--out", str(tmp_path / "c.mp4")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "vae_tiling must be auto, on or off" in err
