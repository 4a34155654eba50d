"""`accvideo sample`: one prompt -> one clip with the Euler sampler of accvideo.core."""

from __future__ import annotations

import time

import torch

from accvideo.core.config import save_config
from accvideo.core.files import prepare_output
from accvideo.core.runtime import noise, resolve_device, resolve_dtype
from accvideo.core.sampling import euler_sample
from accvideo.core.video import check_video_size, write_video
from accvideo.errors import AccVideoError
from accvideo.models.runtime import RuntimeOptions
from accvideo.sample.config import SampleConfig
from accvideo.sample.model import model_family, open_model


def generate_clip(adapter, prompt: str, *, negative_prompt: str = "", frames: int, height: int, width: int,
                  sigmas: torch.Tensor, guidance: float, seed: int, progress: bool = False) -> torch.Tensor:
    """One clip (F, H, W, 3) in [0, 1]: text encoding, the Euler loop over `sigmas` (CFG unless guidance is 1),
    VAE decode. `accvideo sample` and `accvideo bench` both run exactly this."""
    cond = adapter.encode_prompts([prompt])
    uncond = adapter.encode_prompts([negative_prompt]) if guidance != 1.0 else None
    x = noise((1, *adapter.latent_shape(frames, height, width)), seed, adapter.device)
    with torch.inference_mode():
        latents = euler_sample(
            lambda x, s: adapter.velocity(x, s, cond),
            x, sigmas, guidance=guidance, progress=progress,
            uncond=(lambda x, s: adapter.velocity(x, s, uncond)) if uncond is not None else None,
        )
        return adapter.decode(latents)[0]


def sample(cfg: SampleConfig, progress: bool = True) -> dict:
    """Generate cfg.prompt into cfg.out (plus a GIF when asked); returns the resolved settings.

    `cfg.model` may be a distill run folder or an exported student: it then samples with the student's stored
    key sigmas (m Euler steps) and guidance 1, unless steps, shift or guidance are given.
    """
    out = prepare_output(cfg.out)
    family = model_family(cfg.model)  # validates the folder (a student's: its teacher's) before any weight is read
    try:
        check_video_size(cfg.frames, cfg.height, cfg.width, family.frame_step)
    except ValueError as exc:
        raise AccVideoError(str(exc)) from None
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    t0 = time.perf_counter()
    opened = open_model(cfg.model, device=device, dtype=dtype, runtime=RuntimeOptions.of(cfg))
    adapter = opened.adapter
    try:
        check_video_size(cfg.frames, cfg.height, cfg.width, adapter.frame_step, adapter.size_multiple)
    except ValueError as exc:
        raise AccVideoError(str(exc)) from None
    # a student: its own key steps, no CFG (guidance is baked in), unless overridden
    sigmas = opened.sigmas(cfg.steps, cfg.shift)
    steps = len(sigmas) - 1
    guidance = opened.default_guidance if cfg.guidance is None else cfg.guidance
    shift = cfg.shift or adapter.default_shift
    t1 = time.perf_counter()
    if cfg.model == "builtin":  # the built-in teacher only knows its world's words
        from accvideo.world import warn_unknown_words

        warn_unknown_words([cfg.prompt])
    video = generate_clip(adapter, cfg.prompt, negative_prompt=cfg.negative_prompt, frames=cfg.frames,
                          height=cfg.height, width=cfg.width, sigmas=sigmas, guidance=guidance, seed=cfg.seed,
                          progress=progress)
    t2 = time.perf_counter()
    write_video(out, video, cfg.fps)
    written = [str(out)]
    if cfg.gif and out.suffix.lower() != ".gif":
        written.append(str(write_video(out.with_suffix(".gif"), video, cfg.fps)))
    resolved = {
        **opened.describe(), "resolved_steps": steps,
        "resolved_guidance": guidance, "resolved_shift": shift, "sigmas": [round(float(s), 6) for s in sigmas],
        "device": str(device), "dtype": str(dtype).removeprefix("torch."), "outputs": written,
        "seconds_load": round(t1 - t0, 3), "seconds_generate": round(t2 - t1, 3),
    }
    if opened.student is not None:
        resolved["key_sigmas_used"] = cfg.steps is None and cfg.shift is None
    save_config(cfg, out.with_suffix(".yaml"), **resolved)
    return resolved
