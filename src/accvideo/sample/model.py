"""Opening what a user names with --model: a teacher pipeline folder, 'builtin', a distill run or a student.

Every sampling command (`sample`, `evaluate`, the benchmarks, the demo) goes through `open_model`, so a
student is always sampled the same way: its own key sigmas (m Euler steps) and no CFG, unless overridden.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from accvideo.core.runtime import resolve_model
from accvideo.core.schedules import shifted_sigmas
from accvideo.distill.student import find_student, load_student, read_student_info, teacher_dir_of
from accvideo.models import adapter_class, load_adapter
from accvideo.models.runtime import RuntimeOptions, apply_runtime

TEACHER_STEPS = 50
STUDENT_GUIDANCE = 1.0  # AccVideo students sample without CFG (METHOD.md 2)


@dataclass
class OpenModel:
    """A loaded model and how it samples by default."""

    adapter: object  # the family's ModelAdapter
    model_dir: Path  # the folder with the pipeline's components (the teacher's, for a student)
    student_dir: Path | None = None
    student: dict | None = None  # student.json

    @property
    def default_guidance(self) -> float:
        return STUDENT_GUIDANCE if self.student is not None else self.adapter.default_guidance

    @property
    def default_steps(self) -> int:
        return len(self.student["key_sigmas"]) - 1 if self.student is not None else TEACHER_STEPS

    def sigmas(self, steps: int | None = None, shift: float | None = None) -> torch.Tensor:
        """The sampling grid (steps+1,), noisiest first: a student's key sigmas unless steps or shift are given."""
        if self.student is not None and steps is None and shift is None:
            return torch.tensor(self.student["key_sigmas"], dtype=torch.float64)
        return shifted_sigmas(steps or self.default_steps, shift or self.adapter.default_shift)

    def describe(self) -> dict:
        info = {"family": self.adapter.family, "model_dir": str(self.model_dir)}
        if self.student_dir is not None:
            info["student_dir"] = str(self.student_dir)
        return info


def model_family(model: str):
    """The adapter class of what --model names (a student's: its teacher's), checked before any weight is read."""
    model_dir = resolve_model(model)
    student_dir = find_student(model_dir)
    if student_dir is not None:
        model_dir = teacher_dir_of(student_dir, read_student_info(student_dir))
    return adapter_class(model_dir)


def open_model(model: str, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
               runtime: RuntimeOptions | None = None) -> OpenModel:
    """Load a teacher folder, 'builtin', a distill run folder or an exported student (with run-time options)."""
    path = resolve_model(model)
    student_dir = find_student(path)
    if student_dir is None:
        return OpenModel(apply_runtime(load_adapter(path, device=device, dtype=dtype), runtime), path)
    adapter, info = load_student(student_dir, device=device, dtype=dtype)
    return OpenModel(apply_runtime(adapter, runtime), teacher_dir_of(student_dir, info), student_dir, info)

