"""`accvideo bench`: time per stage of the n-step teacher (with its guidance) and an m-step student (without)."""

from __future__ import annotations

import platform
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from accvideo.bench.configs import MEASURED, build_random, check_arch
from accvideo.bench.timing import time_generation
from accvideo.core.config import to_dict
from accvideo.core.files import write_json_atomic, write_text_atomic
from accvideo.core.outputs import FolderLock, claim_folder
from accvideo.core.runtime import BUILTIN_MODELS, available_memory, resolve_device, resolve_dtype, resolve_model
from accvideo.core.sampling import TEACHER_STEPS, check_guidance, shifted_plan
from accvideo.core.schedules import check_steps
from accvideo.core.video import check_video_size
from accvideo.errors import AccVideoError
from accvideo.models import size_multiple_of
from accvideo.models.decoder import check_decoder
from accvideo.models.defaults import check_form
from accvideo.models.open import model_family, model_folder, open_model
from accvideo.models.runtime import RuntimeOptions, apply_runtime
from accvideo.models.student import STUDENT_GUIDANCE
from accvideo.synthesize.prompts import check_prompt


@dataclass(frozen=True)
class BenchConfig:
    model: str = "builtin"  # pipeline folder, 'builtin' or a distill run (ignored with random_weights)
    random_weights: bool = False
    arch: str = "wan2.1-t2v-1.3b"  # with random_weights: an architecture named in bench/configs.py
    height: int = 64
    width: int = 64
    frames: int = 17
    teacher_steps: int = TEACHER_STEPS
    student_steps: int = 5
    guidance: float | None = None  # the teacher's CFG scale (None: the family's); the student runs without CFG
    prompt: str = "a red circle moving left on a grey background"
    repeats: int = 1  # timed runs of each; the table reports the fastest
    # offload, vae_tiling, compile, decoder (the student decodes with --decoder, tiny: random weights; the teacher
    # with its VAE)
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)
    device: str = "auto"
    dtype: str = "auto"
    out: str = "bench"  # the folder of bench.json and bench.md

    def __post_init__(self):
        for name in ("teacher_steps", "student_steps"):
            check_steps(getattr(self, name), name)
        if self.repeats < 1:
            raise ValueError(f"repeats must be >= 1; got {self.repeats}")
        check_guidance(self.guidance)  # -1 was the sampler's traceback, after the folder was made
        check_prompt(self.prompt)
        check_video_size(self.frames, self.height, self.width, 1, 1)  # bounds: --size 0x0x0 built the model first


# every --arch's VAE compresses time 4x and space 8x or 16x, under 2x2 patches: the form a size must have before a
# random model is built (minutes on a CPU at real size); the built adapter's own form is checked after
RANDOM_FORM = (4, 16)


def _check_before_loading(cfg: BenchConfig) -> None:
    """The model, the size and the --decoder, before the output folder is made and any weight is read or built."""
    if cfg.runtime.decoder is not None:
        check_decoder(cfg.runtime.decoder, None if cfg.random_weights else model_folder(cfg.model), allow_random=True)
    if cfg.random_weights:
        check_arch(cfg.arch)
        check_form(cfg, *RANDOM_FORM)
        _check_host_memory(cfg)
        return
    family = model_family(cfg.model)
    if family.image_conditioned:
        raise AccVideoError(
            "bench --model times text-to-video sampling and this model is image-to-video; time its layout with "
            "--random-weights --arch wan2.1-i2v-14b-480p, or time `accvideo sample --image`"
        )
    check_form(cfg, family.frame_step, size_multiple_of(family, model_folder(cfg.model)))


def _check_host_memory(cfg: BenchConfig) -> None:
    """Refuse, before building, random weights that do not fit in the host memory free now: on the CPU the kernel
    killed the process without a word (wan2.1-t2v-1.3b is 7.2 B parameters with its text encoder: 27 GiB in
    float32). The count comes from the pipeline built on the meta device (seconds, no memory)."""
    device = resolve_device(cfg.device)
    free = available_memory()
    if device.type != "cpu" or free is None:
        return
    dtype = resolve_dtype(cfg.dtype, device)
    built = build_random(cfg.arch, torch.device("meta"), dtype)
    modules = [m for m in built.pipe.components.values() if isinstance(m, torch.nn.Module)]
    need = sum(p.numel() * p.element_size() for m in modules for p in m.parameters())
    if need > free:
        gib, kind = 2**30, str(dtype).removeprefix("torch.")
        raise AccVideoError(
            f"{cfg.arch} with random weights takes {need / gib:.1f} GiB in {kind} and this machine has "
            f"{free / gib:.1f} GiB of memory free; time it on a GPU (--device cuda) or a smaller --arch (wan-tiny: "
            "the same code paths)"
        )


def _load(cfg: BenchConfig, device: torch.device, dtype: torch.dtype):
    """(adapter, what it is, its pipeline folder: None for random weights)."""
    if cfg.random_weights:
        return build_random(cfg.arch, device, dtype), f"{cfg.arch} (random weights)", None
    opened = open_model(cfg.model, device=device, dtype=dtype)
    what = cfg.model if cfg.model in BUILTIN_MODELS else str(opened.student_dir or opened.model_dir)
    return opened.adapter, what, opened.model_dir


def run_bench(cfg: BenchConfig) -> dict:
    """Warm up, then time the teacher and the student on the real sampling path; write bench.json and bench.md."""
    _check_before_loading(cfg)
    out = claim_folder(cfg.out, "bench", inputs={"model": None if cfg.random_weights else resolve_model(cfg.model)})
    with FolderLock(out, "bench"):  # one writer at a time: two at once both said "wrote", one's bench.json lost
        return _bench(cfg, out)


def _bench(cfg: BenchConfig, out: Path) -> dict:
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    try:
        adapter, what, model_dir = _load(cfg, device, dtype)
    except torch.OutOfMemoryError:
        raise AccVideoError(
            f"out of GPU memory building {cfg.arch}; try a smaller --size or model, or a GPU with more memory"
        ) from None
    # the teacher decodes with its VAE; the student with --decoder when one is given
    student = apply_runtime(adapter, cfg.runtime, model_dir, allow_random=True)
    adapter = apply_runtime(adapter, replace(cfg.runtime, decoder=None)) if cfg.runtime.decoder else student
    check_form(cfg, adapter.frame_step, adapter.size_multiple)
    # both on the model's shifted grid: the teacher with its guidance, the student without CFG
    teacher = shifted_plan(adapter, cfg.teacher_steps, cfg.guidance)
    runs = {
        "teacher": (adapter, teacher),
        "student": (student, shifted_plan(adapter, cfg.student_steps, STUDENT_GUIDANCE)),
    }
    args = dict(prompt=cfg.prompt, frames=cfg.frames, height=cfg.height, width=cfg.width, seed=0)
    try:
        for runner in {id(a): a for a, _ in runs.values()}.values():  # warm-up, each decoder once
            time_generation(runner, shifted_plan(adapter, 1, teacher.guidance), **args)
        results = {}
        for name, (runner, plan) in runs.items():
            timings = [time_generation(runner, plan, **args) for _ in range(cfg.repeats)]
            results[name] = min(timings, key=lambda t: t["end_to_end_s"])
    except torch.OutOfMemoryError:
        raise AccVideoError("out of GPU memory; try --vae-tiling, a smaller --size, or CPU offload") from None
    report = {
        "model": what,
        "config": to_dict(cfg),
        "device": _device_name(device),
        "dtype": str(dtype).removeprefix("torch."),
        "torch": torch.__version__,
        "student_decoder": cfg.runtime.decoder or "vae",
        # what a step is, for a family accvideo cannot sample yet (bench/layouts.py); None: the real sampling path
        "measured": MEASURED.get(cfg.arch) if cfg.random_weights else None,
        "results": results,
        "speedup_end_to_end": results["teacher"]["end_to_end_s"] / results["student"]["end_to_end_s"],
    }
    write_json_atomic(out / "bench.json", report)
    write_text_atomic(out / "bench.md", bench_markdown(report))
    return report


def bench_markdown(report: dict) -> str:
    """The stage table: one column per sampler, every stage and the overhead no stage accounts for."""
    t, s = report["results"]["teacher"], report["results"]["student"]
    cfg = report["config"]
    rows = [
        (
            "Euler steps x forwards per step",
            f"{t['steps']} x {t['forwards_per_step']}",
            f"{s['steps']} x {s['forwards_per_step']}",
        ),
        ("text encoding (s)", f"{t['text_encoding_s']:.3f}", f"{s['text_encoding_s']:.3f}"),
        ("transformer step, mean (s)", f"{t['transformer_mean_step_s']:.4f}", f"{s['transformer_mean_step_s']:.4f}"),
        ("transformer, all steps (s)", f"{t['transformer_total_s']:.3f}", f"{s['transformer_total_s']:.3f}"),
        (_decode_label(report), f"{t['vae_decode_s']:.3f}", f"{s['vae_decode_s']:.3f}"),
        (
            "overhead: the rest (s)",
            f"{t['overhead_s']:.4f} ({100 * t['overhead_fraction']:.2f}%)",
            f"{s['overhead_s']:.4f} ({100 * s['overhead_fraction']:.2f}%)",
        ),
        ("end to end (s)", f"{t['end_to_end_s']:.3f}", f"{s['end_to_end_s']:.3f}"),
    ]
    lines = [
        f"# accvideo bench: {report['model']}",
        "",
        f"{cfg['height']}x{cfg['width']}x{cfg['frames']}, {report['device']}, {report['dtype']}, torch "
        f"{report['torch']}; teacher guidance {t['guidance']:g}, student without CFG; fastest of {cfg['repeats']}.",
        "",
        "| stage | teacher | student |",
        "|---|---:|---:|",
        *[f"| {a} | {b} | {c} |" for a, b, c in rows],
        "",
        f"End-to-end speed-up: **{report['speedup_end_to_end']:.1f}x**.",
        "",
    ]
    if report.get("measured"):
        lines += [f"Measured: {report['measured']}.", ""]
    return "\n".join(lines)


def _decode_label(report: dict) -> str:
    decoder = report.get("student_decoder", "vae")
    if decoder == "vae":
        return "VAE decode (s)"
    return f"decode (s): teacher VAE, student {'random tiny decoder' if decoder == 'tiny' else 'tiny decoder'}"


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"
