"""`accvideo sample`: one prompt -> one clip with the Euler sampler of accvideo.core."""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from accvideo.core.config import save_config
from accvideo.core.runtime import noise, resolve_device, resolve_dtype, resolve_model
from accvideo.core.sampling import euler_sample
from accvideo.core.schedules import shifted_sigmas
from accvideo.core.video import write_video
from accvideo.distill.student import find_student, load_student, read_student_info, teacher_dir_of
from accvideo.errors import AccVideoError
from accvideo.models import adapter_class, load_adapter
from accvideo.sample.config import SampleConfig, check_video_size

TEACHER_STEPS = 50
TEACHER_GUIDANCE = 5.0
STUDENT_GUIDANCE = 1.0  # AccVideo students sample without CFG (METHOD.md 2)


def prepare_output(out: str | Path) -> Path:
    """Create the output's folder (one-line error if impossible) and check it is writable."""
    out = Path(out).expanduser()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AccVideoError(f"cannot create output folder {out.parent} ({exc.strerror}); choose another --out") from None
    if not os.access(out.parent, os.W_OK):
        raise AccVideoError(f"output folder {out.parent} is not writable; choose another --out")
    return out


def sample(cfg: SampleConfig, progress: bool = True) -> dict:
    """Generate cfg.prompt into cfg.out (plus a GIF when asked); returns the resolved settings.

    `cfg.model` may be a distill run folder or an exported student: it then samples with the student's stored
    key sigmas (m Euler steps) and guidance 1, unless steps, shift or guidance are given.
    """
    out = prepare_output(cfg.out)
    model_dir = resolve_model(cfg.model)
    student_dir = find_student(model_dir)  # a distill run folder or an exported student
    student = read_student_info(student_dir) if student_dir is not None else None
    teacher_dir = teacher_dir_of(student_dir, student) if student is not None else model_dir
    family = adapter_class(teacher_dir)  # validates the directory before any weight is read
    try:
        check_video_size(cfg.frames, cfg.height, cfg.width, family.frame_step)
    except ValueError as exc:
        raise AccVideoError(str(exc)) from None
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    t0 = time.perf_counter()
    if student is not None:
        adapter, _ = load_student(student_dir, device=device, dtype=dtype)
    else:
        adapter = load_adapter(model_dir, device=device, dtype=dtype)
    try:
        check_video_size(cfg.frames, cfg.height, cfg.width, adapter.frame_step, adapter.size_multiple)
    except ValueError as exc:
        raise AccVideoError(str(exc)) from None

    if student is not None:  # the student's own key steps, no CFG (guidance is baked in), unless overridden
        key = torch.tensor(student["key_sigmas"], dtype=torch.float64)
        steps = cfg.steps or len(key) - 1
        guidance = STUDENT_GUIDANCE if cfg.guidance is None else cfg.guidance
        shift = cfg.shift or adapter.default_shift
        sigmas = key if cfg.steps is None and cfg.shift is None else shifted_sigmas(steps, shift)
    else:
        steps = cfg.steps or TEACHER_STEPS
        guidance = TEACHER_GUIDANCE if cfg.guidance is None else cfg.guidance
        shift = cfg.shift or adapter.default_shift
        sigmas = shifted_sigmas(steps, shift)
    t1 = time.perf_counter()
    if cfg.model == "builtin":  # the built-in teacher only knows its world's words
        from accvideo.world import warn_unknown_words

        warn_unknown_words([cfg.prompt])
    cond = adapter.encode_prompts([cfg.prompt])
    uncond = adapter.encode_prompts([cfg.negative_prompt]) if guidance != 1.0 else None
    x = noise((1, *adapter.latent_shape(cfg.frames, cfg.height, cfg.width)), cfg.seed, device)
    with torch.inference_mode():
        latents = euler_sample(
            lambda x, s: adapter.velocity(x, s, cond),
            x, sigmas, guidance=guidance, progress=progress,
            uncond=(lambda x, s: adapter.velocity(x, s, uncond)) if uncond is not None else None,
        )
        video = adapter.decode(latents)[0]
    t2 = time.perf_counter()
    write_video(out, video, cfg.fps)
    written = [str(out)]
    if cfg.gif and out.suffix.lower() != ".gif":
        written.append(str(write_video(out.with_suffix(".gif"), video, cfg.fps)))
    resolved = {
        "family": adapter.family, "model_dir": str(model_dir), "resolved_steps": steps,
        "resolved_guidance": guidance, "resolved_shift": shift, "sigmas": [round(float(s), 6) for s in sigmas],
        "device": str(device), "dtype": str(dtype).removeprefix("torch."), "outputs": written,
        "seconds_load": round(t1 - t0, 3), "seconds_generate": round(t2 - t1, 3),
    }
    if student is not None:
        resolved |= {"student_dir": str(student_dir), "model_dir": str(teacher_dir),
                     "key_sigmas_used": cfg.steps is None and cfg.shift is None}
    save_config(cfg, out.with_suffix(".yaml"), **resolved)
    return resolved
