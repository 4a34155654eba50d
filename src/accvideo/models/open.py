"""Opening what a user names with --model: a teacher pipeline folder, 'builtin', a distill run or a student.

Every sampling command (`sample`, `evaluate`, the benchmarks, the demo) goes through `open_model` and takes its
`SamplingPlan` from `OpenModel.plan`, so a student is always sampled the same way: its own key sigmas (m Euler
steps) and no CFG, unless overridden; a teacher with its shifted TEACHER_STEPS grid and its family's guidance.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from accvideo.core.runtime import resolve_model
from accvideo.core.sampling import TEACHER_STEPS, SamplingPlan, shifted_plan
from accvideo.errors import AccVideoError
from accvideo.models import adapter_class, load_adapter
from accvideo.models.runtime import RuntimeOptions, apply_runtime
from accvideo.models.student import (
    EXPORT_MARKER,
    INFO,
    STUDENT_GUIDANCE,
    exported_student,
    find_student,
    load_student,
    read_student_info,
    teacher_dir_of,
)


@dataclass
class OpenModel:
    """A loaded model and how it samples by default."""

    adapter: object  # the family's ModelAdapter (with its run-time options)
    model_dir: Path  # the folder with the pipeline's components (the teacher's, for a student)
    student_dir: Path | None = None
    student: dict | None = None  # student.json (an export's: its key sigmas alone)

    @property
    def default_guidance(self) -> float:
        return STUDENT_GUIDANCE if self.student is not None else self.adapter.default_guidance

    @property
    def default_steps(self) -> int:
        return len(self.student["key_sigmas"]) - 1 if self.student is not None else TEACHER_STEPS

    def plan(
        self,
        steps: int | None = None,
        guidance: float | None = None,
        shift: float | None = None,
        negative_prompt: str = "",
    ) -> SamplingPlan:
        """How this model samples, None meaning its default: a student's key sigmas (unless steps or shift are
        given) with guidance 1; a teacher's shifted grid of TEACHER_STEPS with its family's guidance."""
        guidance = self.default_guidance if guidance is None else guidance
        if self.student is not None and steps is None and shift is None:
            key = self.student["key_sigmas"]  # made on its teacher's grid: the teacher's shift is the one reported
            return SamplingPlan(key, guidance, negative_prompt, self.student.get("shift", self.adapter.default_shift))
        # a student at other steps: its teacher's shifted grid (an export's scheduler shift is fitted, with its
        # shift_terminal, to the key sigmas alone, and read without it made a grid neither model samples)
        own = self.student.get("shift") if self.student is not None else None
        if own is None and shift is None and self.student is not None and self.student_dir is None:
            # an export made before accvideo_export.json recorded its teacher's shift: the adapter's default is then
            # the scheduler's fitted one, whose grid is not the teacher's (a silently different clip)
            raise AccVideoError(
                f"{self.model_dir} was exported by an older accvideo that did not record its teacher's shift, so "
                f"{steps} steps cannot be placed on its teacher's grid; export the run again with this version, or "
                f"give --shift (the teacher's, e.g. 3 for the built-in)"
            )
        return shifted_plan(self.adapter, steps or self.default_steps, guidance, shift or own, negative_prompt)

    def describe(self) -> dict:
        info = {"family": self.adapter.family, "model_dir": str(self.model_dir)}
        if self.student_dir is not None:
            info["student_dir"] = str(self.student_dir)
        if isinstance(self.student, dict) and "iteration" in self.student:  # which save of its run sampled
            info["student_iteration"] = self.student["iteration"]
        return info


def model_folder(model: str) -> Path:
    """The pipeline folder of what --model names (a student's: its teacher's)."""
    model_dir = resolve_model(model)
    student_dir = find_student(model_dir)
    if student_dir is not None:
        model_dir = teacher_dir_of(student_dir, read_student_info(student_dir))
    return model_dir


def distilled_size(model: str) -> tuple[dict, Path] | None:
    """({frames, height, width}, the file recording it) of a student or a stock-diffusers export of one: the size it
    was distilled at, its default clip size; None for a teacher or a student that records none."""
    path = resolve_model(model)
    student_dir = find_student(path)
    if student_dir is not None:
        size, file = read_student_info(student_dir).get("size"), student_dir / INFO
    else:
        size, file = (exported_student(path) or {}).get("size"), path / EXPORT_MARKER
    return (dict(size), file) if size else None


def model_family(model: str):
    """The adapter class of what --model names (a student's: its teacher's), checked before any weight is read."""
    return adapter_class(model_folder(model))


def open_model(
    model: str,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    runtime: RuntimeOptions | None = None,
) -> OpenModel:
    """Load a teacher folder, 'builtin', a distill run folder, a student folder or a stock-diffusers export (with
    run-time options); a student or an export samples on its key sigmas without CFG by default."""
    path = resolve_model(model)
    student_dir = find_student(path)
    if student_dir is None:
        adapter = apply_runtime(load_adapter(path, device=device, dtype=dtype), runtime, path)
        exported = exported_student(path)  # an export is a pipeline that samples as its student
        return OpenModel(adapter, path, None, exported)
    adapter, info = load_student(student_dir, device=device, dtype=dtype)
    teacher_dir = teacher_dir_of(student_dir, info)
    return OpenModel(apply_runtime(adapter, runtime, teacher_dir), teacher_dir, student_dir, info)
