"""What an export reads: the student (from a run folder or a student folder), its teacher and the stock call."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from accvideo.core.inputs import check_model_folder, parse_json
from accvideo.core.video import check_video_size
from accvideo.errors import AccVideoError
from accvideo.models import adapter_class, pipeline_class, size_multiple_of
from accvideo.models.hunyuan import text_settings
from accvideo.models.student import (
    INFO,
    REDO,
    STUDENT_GUIDANCE,
    check_identity_first,
    check_lora_on_teacher,
    check_teacher,
    find_student,
    read_student_info,
    student_weights,
    teacher_dir_of,
)


@dataclass(frozen=True)
class Source:
    """A checked student: its folder, student.json, the teacher folder and the teacher's pipeline class."""

    student_dir: Path
    info: dict
    teacher_dir: Path
    pipeline: str  # model_index.json `_class_name`, e.g. WanPipeline
    adapter: type  # the adapter class of that pipeline

    @property
    def key_sigmas(self) -> list[float]:
        return [float(x) for x in self.info["key_sigmas"]]

    @property
    def steps(self) -> int:
        return len(self.info["key_sigmas"]) - 1

    @property
    def lora(self) -> bool:
        return self.info.get("lora") is not None

    def model_index(self) -> dict:
        return parse_json((self.teacher_dir / "model_index.json").read_text())


def read_source(run: str | Path) -> Source:
    """The student of a distill run folder or student folder, with its teacher checked; one-line errors."""
    run = Path(run).expanduser()
    if not run.exists():
        raise AccVideoError(f"{run} does not exist; pass the folder `accvideo distill --out` wrote")
    student_dir = find_student(run)
    if student_dir is None:
        raise AccVideoError(
            f"{run} holds no student (no student.json in it or in student/); pass a distill run "
            "folder or its student/ folder"
        )
    info = read_student_info(student_dir)
    # whole and parseable (headers only); finite is checked tensor by tensor as the format writer reads each file for
    # its copy or conversion (export/formats.py), in the temporary folder, so a refused student replaces nothing
    student_weights(student_dir, info)
    teacher_dir = teacher_dir_of(student_dir, info, check=False)
    cls = adapter_class(teacher_dir)  # unknown family, missing component: one-line errors
    check_model_folder(teacher_dir, "restore the teacher folder the student was distilled from")
    if cls.family != info.get("family"):
        raise AccVideoError(
            f"{student_dir} holds a {info.get('family')} student but its teacher folder {teacher_dir} "
            f"is a {cls.family} pipeline; put the student's own teacher there"
        )
    if "size" in info:  # the stock call's size: of the family's form, as `sample` refuses it otherwise
        size = info["size"]
        try:
            check_video_size(
                size["frames"], size["height"], size["width"], cls.frame_step, size_multiple_of(cls, teacher_dir)
            )
        except ValueError as exc:
            raise AccVideoError(f"{student_dir / INFO}: size {exc}; {REDO}") from None
    check_teacher(student_dir, info, teacher_dir)  # after the plainer checks; an export hashes any size
    if info["lora"] is not None:  # its layers are the teacher's targeted ones, of their shapes (no weight read)
        check_lora_on_teacher(student_dir, info, teacher_dir)
    # before anything is written; one it passes is checked finite as the export reads it for its format, once
    check_identity_first(student_dir, info, teacher_dir)
    return Source(student_dir, info, teacher_dir, pipeline_class(teacher_dir), cls)


def _max_length(teacher_dir: Path, name: str, cap: int) -> int | None:
    """min(cap, the tokenizer's model_max_length), as the adapters encode prompts; None when not recorded."""
    try:
        raw = parse_json((teacher_dir / name / "tokenizer_config.json").read_text()).get("model_max_length")
    except (OSError, json.JSONDecodeError):
        return None
    return int(min(cap, raw)) if isinstance(raw, (int, float)) else None


def student_call(src: Source) -> dict:
    """Keyword arguments of the stock pipeline call that reproduces `accvideo sample` with the student."""
    call: dict = {"num_inference_steps": src.steps}
    if src.pipeline in ("WanPipeline", "WanImageToVideoPipeline"):  # the I2V call also takes `image=`
        call["guidance_scale"] = STUDENT_GUIDANCE  # WanPipeline: CFG only when guidance_scale > 1
        length = _max_length(src.teacher_dir, "tokenizer", 512)
        if length is not None and length != 512:  # Wan pads prompts with zeros to this length, unmasked
            call["max_sequence_length"] = length
    elif src.pipeline == "HunyuanVideoPipeline":
        text = text_settings(src.teacher_dir)
        call["guidance_scale"] = text["embedded_guidance"]  # the embedded scalar, not CFG
        call["true_cfg_scale"] = STUDENT_GUIDANCE
        call["max_sequence_length"] = text["max_sequence_length"]
        if text.get("prompt_template") is not None:
            call["prompt_template"] = text["prompt_template"]
    return call
