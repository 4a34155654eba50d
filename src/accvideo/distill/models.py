"""The student and its frozen teacher (docs/method.md 2): a full float32 copy, or one module with a LoRA on/off."""

from __future__ import annotations

import copy
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from accvideo.core import parallel
from accvideo.core.averaging import update_average
from accvideo.distill.config import DistillConfig
from accvideo.distill.lora import (
    adapter_off,
    add_lora,
    initial_lora,
    lora_state_dict,
    targets_for,
)
from accvideo.errors import AccVideoError


@dataclass
class StudentTeacher:
    """`student.velocity` trains; `teacher.features` runs frozen, and only inside `teacher_mode()`.

    Full students hold two transformers. LoRA students hold one: `teacher` and `student` wrap the same module
    and `teacher_mode()` switches the adapter off, so the base weights exist once.
    """

    student: object  # a ModelAdapter whose transformer trains (under DDP: the wrapper, see core/parallel.py)
    teacher: object  # a ModelAdapter, frozen
    lora: bool
    module: nn.Module | None = None  # the student's own transformer, unwrapped (its weights, LoRA switch, export)
    params: dict[str, nn.Parameter] = field(default_factory=dict)  # the trainable weights, by name
    ema: dict[str, torch.Tensor] | None = None

    def teacher_mode(self) -> AbstractContextManager:
        """The block in which the transformer computes the teacher (adapter off for LoRA students)."""
        return adapter_off(self.module) if self.lora else nullcontext()

    def student_state(self) -> dict[str, torch.Tensor]:
        """The student's own weights: the whole transformer, or the LoRA weights alone."""
        if self.lora:
            return lora_state_dict(self.module)
        return self.module.state_dict()  # detached views: saving them needs no second copy

    @torch.no_grad()
    def update_ema(self, decay: float) -> None:
        """ema <- decay * ema + (1 - decay) * weights, over the trainable weights."""
        if self.ema is None:
            self.ema = {n: p.detach().clone() for n, p in self.params.items()}
            return
        update_average(self.ema, self.params, decay)

    @torch.no_grad()
    def swap_ema(self) -> None:
        """Exchange the trainable weights with their EMA (call twice to undo)."""
        for n, p in self.params.items():
            tmp = p.detach().clone()
            p.copy_(self.ema[n])
            self.ema[n].copy_(tmp)


def student_view(adapter, transformer: nn.Module, dtype: torch.dtype | None = None):
    """A shallow copy of `adapter` that runs `transformer` (text encoder and VAE stay shared)."""
    view = copy.copy(adapter)
    view.transformer = transformer
    view.dtype = dtype or next(transformer.parameters()).dtype
    return view


def make_student(
    adapter,
    lora_rank: int = 0,
    lora_alpha: float | None = None,
    lora_targets=None,
    seed: int = 0,
) -> StudentTeacher:
    """Initialise the student from the teacher `adapter` (whose weights stay frozen); LoRA A from `seed`."""
    teacher_tr = adapter.transformer.requires_grad_(False).eval()
    if lora_rank > 0:
        cuda = [adapter.device] if adapter.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):  # peft draws A from the global RNG: make it the run's seed
            torch.manual_seed(seed)
            add_lora(teacher_tr, lora_rank, lora_alpha, targets_for(adapter, lora_targets))
        student_tr = teacher_tr
    else:
        # the teacher may be bf16; the student keeps float32 master weights for AdamW
        student_tr = copy.deepcopy(teacher_tr).float().requires_grad_(True)
    student_tr.train()
    params = {n: p for n, p in student_tr.named_parameters() if p.requires_grad}
    student = student_view(adapter, student_tr) if lora_rank == 0 else adapter
    return StudentTeacher(student=student, teacher=adapter, lora=lora_rank > 0, module=student_tr, params=params)


def is_empty(module: nn.Module) -> bool:
    """True for a transformer built on the meta device (models.base.LoadParts.empty_transformer), not yet filled."""
    return any(p.is_meta for p in module.parameters())


def fill_pair(pair: StudentTeacher, model_dir: Path, device: torch.device, seed: int) -> None:
    """Fill a student/teacher pair built on the meta device (sharded by FSDP2 or not) from the teacher's safetensors:
    each rank reads only its rows (core/parallel.py `load_weights`); a LoRA starts as `add_lora` draws it."""
    files = sorted((Path(model_dir) / "transformer").glob("*.safetensors"))
    if not files:
        raise AccVideoError(
            f"{model_dir / 'transformer'} holds no safetensors weights, which a sharded start-up reads; re-save the "
            "pipeline with safe_serialization=True, or use parallel=ddp"
        )
    if not pair.lora:
        parallel.load_weights(pair.teacher.transformer, files, device)
        parallel.load_weights(pair.module, files, device)
        return

    def base_name(name: str) -> str | None:  # peft's wrapped layers keep the stored weight as base_layer
        return None if "lora_" in name else name.replace(".base_layer.", ".")

    left = set(parallel.load_weights(pair.module, files, device, rename=base_name))
    params = dict(pair.module.named_parameters())
    for name, value in initial_lora(pair.module, seed):
        parallel.copy_whole(params[name], value)
        left.discard(name)
    if left:
        raise AccVideoError(f"the student's {sorted(left)[0]} has no stored or initial value; use parallel=ddp")


def parallelize_student(
    pair: StudentTeacher,
    cfg: DistillConfig,
    device: torch.device,
    world: int,
    model_dir: Path | None = None,
    checkpointing: bool = False,
) -> parallel.Parallel:
    """Activation checkpointing, then DDP / FSDP2 on the student (core/parallel.py); its adapter runs the wrapper.

    A pair built on the meta device is filled from `model_dir` after FSDP2 has sharded it (each rank reads its own
    part), or before DDP wraps it (whole).
    """
    size = sum(p.numel() for p in pair.module.parameters())
    mode = parallel.choose_mode(cfg.parallel, device, size, world)
    empty = is_empty(pair.module)
    if empty and mode != "fsdp":
        fill_pair(pair, model_dir, device, cfg.seed)
    wrapped = parallel.parallelize(
        pair.module,
        mode,
        device,
        teacher=None if pair.lora else pair.teacher.transformer,
        grad_checkpointing=checkpointing,
        bf16=parallel.use_bf16(cfg.mixed_precision, device),
    )
    if empty and mode == "fsdp":
        fill_pair(pair, model_dir, device, cfg.seed)
    pair.params = {n: p for n, p in pair.module.named_parameters() if p.requires_grad}  # FSDP2 made new ones
    if wrapped.forward_module is not pair.module:  # DDP: the student calls the wrapper, the teacher the module
        pair.student = student_view(pair.student, wrapped.forward_module, pair.student.dtype)
    return wrapped
