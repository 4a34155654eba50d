"""A distillation run on disk: what its checkpoint holds, resuming from it, the exported student, config and summary.

Training state (to resume; written by checkpoint.py) and the exported student (to sample; student.py) are different
artifacts. Every function takes the run's Distiller and runs on every rank (most hold collectives); what only rank
0 writes, it says.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from accvideo.core import dist, parallel
from accvideo.core.config import save_config, to_dict
from accvideo.core.files import check_free_space, write_json_atomic
from accvideo.core.inputs import parse_json
from accvideo.core.outputs import FolderLock, check_folder, claim_folder
from accvideo.core.runtime import resolve_model
from accvideo.distill.checkpoint import (
    META,
    NAME,
    SHARDED,
    check_continues,
    check_resumable,
    load_latest,
    save_sharded,
    save_single,
    tidy,
)
from accvideo.distill.config import DistillConfig
from accvideo.distill.lora import portable_lora_names
from accvideo.distill.plots import plot_losses, read_losses
from accvideo.distill.student import export_student
from accvideo.errors import AccVideoError

if TYPE_CHECKING:
    from accvideo.distill.trainer import Distiller


def tensors_of(d: Distiller, ema: bool = True) -> dict:
    """Weights and AdamW states in this run's layout (local shards under FSDP2), keyed by parameter name."""
    module = d.pair.module
    out = {
        "student": parallel.module_state(module),
        "heads": d.heads.state_dict(),
        "opt_student": parallel.optimizer_state(module, d.opt_student),
        "opt_heads": parallel.optimizer_state(d.heads, d.opt_heads),
    }
    if ema:
        out["ema"] = d.pair.ema
    return out


def meta_of(d: Distiller) -> dict:
    """Everything else: settings, counters, RNG states, and the queues gathered whole (a collective)."""
    return {
        "config": to_dict(d.cfg),
        "teacher": d.identity,
        "dataset": d.dataset.identity,
        "dataset_items": len(d.dataset),
        "iteration": d.iteration,
        "samples": d.samples,
        "fakes": d.fakes,
        "train_seconds": d.train_seconds,
        "world_size": d.world,
        "has_ema": d.pair.ema is not None,
        "queues": d.queues.state_dict(gather=dist.gather_cat),
        "generator": d.rng.get_state(),
        "torch_rng": torch.get_rng_state(),
    }


def _target(d: Distiller, meta: dict) -> dict:
    """Where a sharded checkpoint is read into: this run's own tensors (an EMA placeholder if it had one)."""
    out = tensors_of(d, ema=False)
    if meta["has_ema"]:
        out["ema"] = {n: p.detach().clone() for n, p in d.pair.params.items()}
    return out


def restore(d: Distiller, meta: dict, tensors: dict, whole: bool) -> None:
    """Restore a checkpoint; `whole`: its tensors are unsharded (a one-process file), laid out here as needed."""
    parallel.load_module_state(d.pair.module, tensors["student"], whole)
    ema = tensors.get("ema")
    d.pair.ema = (
        None
        if ema is None
        else {n: parallel.like(ema[n], p.detach()) if whole else ema[n] for n, p in d.pair.params.items()}
    )
    d.heads.load_state_dict(tensors["heads"])
    parallel.load_optimizer_state(d.pair.module, d.opt_student, tensors["opt_student"], whole)
    parallel.load_optimizer_state(d.heads, d.opt_heads, tensors["opt_heads"], full=False)  # replicated
    for opt, lr in ((d.opt_student, d.cfg.lr), (d.opt_heads, d.cfg.head_lr)):
        for group in opt.param_groups:  # a resumed run may lower the learning rates (the fix after a NaN)
            group["lr"] = lr
    d.queues.load_state_dict(meta["queues"], d.device, d.mine)
    d.rng.set_state(meta["generator"])
    torch.set_rng_state(meta["torch_rng"])
    d.iteration, d.samples, d.fakes = meta["iteration"], meta["samples"], meta["fakes"]
    d.train_seconds = meta.get("train_seconds", 0.0)  # checkpoints before it was kept: 0


COMMAND = "distill"


def is_run_folder(out: Path) -> bool:
    """A folder distill wrote before output markers existed (core/outputs.py): it may resume there."""
    return (out / NAME).is_file() or (out / SHARDED / META).is_file() or (out / "student" / "student.json").is_file()


def output_inputs(cfg) -> dict:
    """The folders a run reads, which its --out may never be or lie inside."""
    real = getattr(cfg, "real_data", None)  # a folder of clips, or 'world' (rendered, no folder)
    return {"teacher": resolve_model(cfg.teacher), "dataset": cfg.data, "real clips": None if real == "world" else real}


def check_output(cfg) -> Path:
    """The output guard for distill, read-only (any rank, before anything is loaded)."""
    out = check_folder(cfg.out, COMMAND, inputs=output_inputs(cfg), legacy=is_run_folder)
    student = out / "student"
    for name, value in {"--data": cfg.data, "real_data": getattr(cfg, "real_data", None)}.items():
        if value in (None, "world"):
            continue
        given = Path(value).expanduser().resolve()
        if given == student or student in given.parents:  # moved away at every save, under the reading run
            raise AccVideoError(
                f"{name} {given} lies inside {student}, which every save of this run replaces; move it outside "
                f"{out} and pass its new place"
            )
    return out


def _prepare(d: Distiller) -> None:
    """Rank 0 claims the folder and tidies an interrupted checkpoint swap; its refusal reaches every rank."""

    def prepare() -> None:
        claim_folder(d.out, COMMAND, inputs=output_inputs(d.cfg), legacy=is_run_folder)
        d.lock = FolderLock(d.out, COMMAND)  # one writer at a time; released when run() ends
        tidy(d.out)

    dist.from_main(prepare)
    dist.check_shared_folder(d.out)


def check_same_run(d: Distiller, saved: dict, path: Path) -> None:
    """Refuse to resume a checkpoint (`path`: checkpoint.pt or the sharded checkpoint/) of other settings, another
    teacher or another dataset, or past the asked iterations."""
    check_resumable(saved, to_dict(d.cfg), d.identity, path, to_dict(DistillConfig()))
    check_continues(saved, d.out, d.cfg.data, d.dataset, d.cfg.iterations)


def resume(d: Distiller) -> None:
    """Prepare the run folder and restore its newer checkpoint when there is one (refused if it is another run's)."""
    _prepare(d)
    saved = load_latest(d.out, lambda s, path: check_same_run(d, s, path), lambda m: _target(d, m))
    if saved is not None:
        restore(d, *saved)


def write_config(d: Distiller) -> None:
    """Rank 0: config.yaml, the settings plus what the run derived from them."""
    if dist.is_main():
        save_config(
            d.cfg,
            d.out / "config.yaml",
            teacher_identity=d.identity,
            key_sigmas=d.key_sigmas,
            key_steps=d.m,
            feature_blocks=d.blocks,
            world_size=d.world,
            data_parallel=d.parallel.mode,
            bf16=d.parallel.bf16,
            per_process_batch=d.local_batch,
            accumulation=d.accumulation,
            feature_dim=d.feature_dim,
            token_grid=list(d.grid),
            grad_checkpointing_resolved="on" if d.checkpointing else "off",
            **({"experts": d.experts} if d.experts is not None else {}),
        )


def save_bytes(d: Distiller) -> int:
    """About what one save writes (whole, over every rank's shards): the checkpoint (the student's trainable
    weights, their average and two AdamW moments; the heads' weights and moments) and the student artifact. The
    previous save stays until the new one is whole, so this is what the disk must still hold."""

    def nbytes(tensors) -> int:
        return sum(t.numel() * t.element_size() for t in tensors)  # a DTensor's numel is the whole tensor's

    student = nbytes(d.pair.params.values())
    average = student if d.cfg.ema > 0 else 0
    return 3 * student + average + 3 * nbytes(d.heads.parameters()) + student


def check_disk(d: Distiller) -> None:
    """Rank 0 refuses, before the first iteration, a run whose save cannot fit on the disk (it failed at the first
    save, `checkpoint_every` iterations in: about 210 GB for a full 14B student); its line reaches every rank."""
    fix = "free space or choose an --out on a larger disk"
    if d.cfg.lora_rank == 0:
        fix += "; a LoRA student (lora_rank=64) saves far less"
    dist.from_main(lambda: check_free_space(d.out, save_bytes(d), "each save of this run", fix))


def save(d: Distiller) -> None:
    """The training state (to resume), the student artifact (to sample) and the loss plot."""
    tensors = tensors_of(d)
    if d.world == 1:
        save_single(d.out / NAME, {**meta_of(d), **tensors})
    else:
        save_sharded(d.out / SHARDED, {k: v for k, v in tensors.items() if v is not None}, meta_of(d))
    cfg = d.cfg
    lora = (
        None
        if cfg.lora_rank == 0
        else {
            "rank": cfg.lora_rank,
            "alpha": float(cfg.lora_alpha or cfg.lora_rank),
            "targets": sorted(d.pair.module.peft_config["default"].target_modules),
        }
    )
    use_ema = cfg.ema > 0 and d.pair.ema is not None
    if use_ema:
        d.pair.swap_ema()
    try:
        weights = parallel.full_module_state(d.pair.module)  # whole, on rank 0 (gathered from FSDP2 shards)
        if dist.is_main():
            # the plot first: student.json, written last, says the whole save is done (artifact_is_current)
            plot_losses(read_losses(d.out / "losses.jsonl"), d.out / "losses.png")
            export_student(
                d.out / "student",
                d.pair,
                key_sigmas=d.key_sigmas,
                teacher=d.identity,
                teacher_dir=d.model_dir,
                lora=lora,
                state=portable_lora_names(weights) if lora else weights,
                extra={
                    "size": distilled_size(d.dataset.settings),
                    "iteration": d.iteration,
                    "samples": d.samples,
                    "ema": use_ema,
                    **({"experts": d.experts} if d.experts is not None else {}),
                },
            )
    finally:
        if use_ema:
            d.pair.swap_ema()
    dist.barrier()


def distilled_size(settings) -> dict:
    """The clip size the student was distilled at (its SynVid's): what `sample` and the export's stock call make by
    default, rather than its teacher folder's (a student distilled at 33 frames sampled 81 it never saw)."""
    return {"frames": settings.frames, "height": settings.height, "width": settings.width}


def artifact_is_current(d: Distiller) -> bool:
    """Whether student/ holds this state's weights, whole (its student.json names this iteration) and the loss plot
    is there (drawn before the student, so as current): a kill between the checkpoint and the export, or a file
    deleted since, or weights that are not the ones student.json recorded (replaced or edited since: `sample` says to
    rerun), makes a finished run's rerun export again (rank 0 looks)."""
    from accvideo.models.student import check_weights_identity, read_student_info, student_weights

    folder = d.out / "student"
    try:
        info = read_student_info(folder)
        student_weights(folder, info)
        check_weights_identity(folder, info)
    except AccVideoError:
        return False
    return (
        info.get("iteration") == d.iteration and info.get("samples") == d.samples and (d.out / "losses.png").is_file()
    )


def repoint_teacher(d: Distiller) -> None:
    """Rank 0: a student whose teacher moved since its save names the teacher's folder now, in its student.json
    (rewritten whole, the rest as saved): a finished run's rerun with the new --teacher fixes `sample`'s "the
    student's teacher folder ... is gone", without saving the training state again (hundreds of GB at 14B)."""
    from accvideo.models.student import INFO, read_student_info

    folder = d.out / "student"
    try:
        info = read_student_info(folder)
    except AccVideoError:
        return
    now = str(Path(d.model_dir).resolve())
    if info.get("teacher_dir") != now:
        write_json_atomic(folder / INFO, {**info, "teacher_dir": now})


def read_summary(out: Path) -> dict:
    """OUT/summary.json as a run wrote it, or {} (none yet, or damaged)."""
    try:
        data = parse_json((Path(out) / "summary.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def kept_summary(out: Path, counts: dict, is_current: Callable[[], bool]) -> dict | None:
    """A finished run's summary.json when it records these `counts` (iterations, ...) and its artifact is current:
    its rerun then rewrites nothing, and its figures stay the training's, not an idle pass's (distill, decoder)."""
    earlier = read_summary(out)
    if not earlier or any(earlier.get(k) != v for k, v in counts.items()):
        return None
    return earlier if is_current() else None


def finished_summary(d: Distiller) -> dict | None:
    """kept_summary of a distill run (rank 0 looks)."""
    return kept_summary(d.out, {"iterations": d.iteration, "samples": d.samples}, lambda: artifact_is_current(d))


def write_summary(d: Distiller, seconds: float, trained: int, loop_seconds: float) -> dict:
    """summary.json (rank 0): where the run went, the training seconds behind its weights (summed over resumes),
    and this invocation's seconds, training rate and this rank's peak memory."""
    summary = {
        "out": str(d.out),
        "iterations": d.iteration,
        "samples": d.samples,
        "key_steps": d.m,
        "seconds": round(seconds, 3),
        "train_seconds": round(d.train_seconds, 3),
        "student": str(d.out / "student"),
        "rank": dist.rank(),
        "world_size": d.world,
        "data_parallel": d.parallel.mode,
        # samples = trajectories x key steps
        "samples_per_s": round(trained / loop_seconds, 3) if trained else None,
        "peak_memory_mb": peak_memory_mb(d.device),
        "save_seconds": d.save_seconds,  # the last save of this invocation (torchrun's SIGKILL follows 30 s after)
    }
    if d.experts is not None:  # Wan 2.2 A14B: which expert trained which key step, which stayed the teacher's
        summary["experts"] = d.experts
    if d.reals is not None:  # real_data: how many clips the heads saw as real, how many were skipped
        summary["real_clips"] = {"used": len(d.reals), "skipped": d.reals.skipped}
    earlier = read_summary(d.out) if not trained else {}
    if earlier.get("samples_per_s") is not None:  # a rerun that only saved again: the training's rate and peak
        for key in ("samples_per_s", "peak_memory_mb", "save_seconds"):
            summary[key] = earlier.get(key, summary[key])
    if dist.is_main():
        write_json_atomic(d.out / "summary.json", summary)
    return summary


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process: the GPU's allocator peak on CUDA, else the resident-set peak (Linux: KiB)."""
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    import resource  # Unix only: imported here so the module itself loads everywhere

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
