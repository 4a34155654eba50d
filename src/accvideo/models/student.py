"""Reading the student artifact (to use, not to resume): weights in stock diffusers formats + student.json.

    student/
      student.json                      format, family, key sigmas (t'_m = 1 .. t'_0 = 0), teacher identity and folder,
                                        LoRA rank/alpha/targets, iteration and samples seen
      transformer/                      full students: `WanTransformer3DModel.from_pretrained` loads it
      pytorch_lora_weights.safetensors  LoRA students: `pipe.load_lora_weights` loads it onto the teacher
      transformer_2/, pytorch_lora_weights_2.safetensors   Wan 2.2 A14B students: the low-noise expert's

The writer, `export_student`, is the distillation's (distill/student.py).
"""

from __future__ import annotations

import math
from itertools import pairwise
from pathlib import Path

import torch

from accvideo.core.inputs import check_safetensors, load_safetensors, read_json
from accvideo.core.outputs import check_not_being_written
from accvideo.errors import AccVideoError
from accvideo.models import load_adapter
from accvideo.models.identity import LEGACY_PREFIX, teacher_identity

FORMAT = "accvideo.student/1"
INFO = "student.json"
LORA_WEIGHTS = "pytorch_lora_weights.safetensors"
FULL_WEIGHTS = "transformer"
# Wan 2.2 A14B students (student.json "experts"): one folder or LoRA file per expert; the second expert's LoRA loads
# with diffusers' `pipe.load_lora_weights(..., load_into_transformer_2=True)`
LORA_FILES = {FULL_WEIGHTS: LORA_WEIGHTS, "transformer_2": "pytorch_lora_weights_2.safetensors"}
STUDENT_GUIDANCE = 1.0  # AccVideo students sample without CFG: guidance is baked into the targets (docs/method.md 2)
EXPORT_MARKER = "accvideo_export.json"  # written by `accvideo export` in every folder it makes

# A student that recorded the older, full-hash identity ('sha256:') is checked on load only when its teacher is up to
# this size (hashing a 14B checkpoint takes about a minute); export checks it at any size. The sampled identity of
# newer students costs milliseconds and is checked on every load.
CHECK_BYTES = 2 << 30
REDO = "rerun the distill command that wrote it (it resumes) or restore the run folder"


def find_student(path: str | Path) -> Path | None:
    """The student folder of a distill run folder or of an exported student, else None; refused while a distill
    writes the run (its student/ is replaced at every checkpoint)."""
    path = Path(path).expanduser()
    for candidate in (path, path / "student"):
        if (candidate / INFO).is_file():
            for folder in {path, candidate.parent}:  # the run folder, whichever of the two was named
                check_not_being_written(folder)
            return candidate
    return None


def exported_student(path: str | Path) -> dict | None:
    """What a stock-diffusers export (`accvideo export --format diffusers`) at `path` samples as, else None: it is a
    pipeline folder, so it loads as a teacher would, but it samples as its student (m steps on its `key_sigmas`, no
    CFG), not on a teacher's 50-step grid; `shift`, when recorded, is its teacher's (the export's own scheduler holds
    the one fitted to the key sigmas)."""
    marker = Path(path).expanduser() / EXPORT_MARKER
    if not marker.is_file():
        return None
    info = read_json(marker, "export the student again")
    sigmas = info.get("key_sigmas") if isinstance(info, dict) and info.get("kind") == "diffusers" else None
    if not isinstance(sigmas, list) or len(sigmas) < 2 or not all(isinstance(s, (int, float)) for s in sigmas):
        return None
    shift = info.get("shift")
    return {"key_sigmas": [float(s) for s in sigmas], **({"shift": float(shift)} if _number(shift) else {})}


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def read_student_info(student_dir: Path) -> dict:
    """student.json, checked; one-line errors for a damaged or foreign file."""
    path = Path(student_dir) / INFO
    info = read_json(path, REDO)
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise AccVideoError(f"{path} is not an accvideo student (no format {FORMAT!r}); {REDO}")
    missing = [k for k in ("family", "key_sigmas", "teacher_dir", "lora") if k not in info]
    if missing:
        raise AccVideoError(f"{path} lacks {', '.join(missing)}; {REDO}")
    check_key_sigmas(info["key_sigmas"], path)
    for key in ("family", "teacher_dir"):  # a number there was a traceback in every command that read it
        if not isinstance(info[key], str) or not info[key]:
            raise AccVideoError(f"{path}: {key} must be a name or a path, not {info[key]!r}; {REDO}")
    if info["lora"] is not None and not isinstance(info["lora"], dict):
        raise AccVideoError(f"{path}: lora must be null or the adapter's settings, not {info['lora']!r}; {REDO}")
    return info


def check_key_sigmas(sigmas, path: Path) -> None:
    """A student's key sigmas: at least two finite numbers in [0, 1], falling strictly, the last 0 (a clean clip).
    Anything else sampled nonsense with exit 0, was exported as a "-1-step" student, or was a traceback."""
    ok = isinstance(sigmas, list) and len(sigmas) >= 2
    ok = ok and all(isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) for s in sigmas)
    ok = ok and all(0 <= s <= 1 for s in sigmas) and all(a > b for a, b in pairwise(sigmas)) and sigmas[-1] == 0
    if not ok:
        raise AccVideoError(
            f"{path}: key_sigmas must fall strictly from at most 1 to 0 (e.g. [1.0, 0.75, 0.5, 0.25, 0.0]); got "
            f"{sigmas!r:.80}; {REDO}"
        )


def expert_names(info: dict) -> list[str]:
    """The transformers a student holds: ['transformer'], or both experts of a Wan 2.2 A14B student."""
    return list(LORA_FILES) if info.get("experts") else [FULL_WEIGHTS]


def student_files(student_dir: Path, info: dict) -> dict[str, list[Path]]:
    """Each transformer's weights files (expert name -> files), each checked whole (a truncated or damaged file is
    one line, not a load)."""
    student_dir = Path(student_dir)
    out = {}
    for name in expert_names(info):
        if info["lora"] is not None:
            files = [student_dir / LORA_FILES[name]]
            if not files[0].is_file():
                raise AccVideoError(f"{files[0]} is missing; {REDO}")
        else:
            files = sorted((student_dir / name).glob("*.safetensors"))
            if not files:
                raise AccVideoError(f"{student_dir / name} holds no weights; {REDO}")
            config = student_dir / name / "config.json"
            if config.is_file():
                read_json(config, REDO)
        for f in files:
            check_safetensors(f, REDO)
        out[name] = files
    return out


def student_weights(student_dir: Path, info: dict) -> list[Path]:
    """The student's weights files, each checked whole."""
    return [f for files in student_files(student_dir, info).values() for f in files]


def _folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def check_teacher(student_dir: Path, info: dict, teacher_dir: Path) -> None:
    """Refuse a teacher folder that is not the one the student was distilled from (student.json's identity)."""
    if not info.get("teacher"):
        return
    found = teacher_identity(teacher_dir, like=info["teacher"])
    if found != info["teacher"]:
        raise AccVideoError(
            f"{teacher_dir} holds another teacher ({found[:19]}...) than the one {student_dir} was distilled "
            f"from ({info['teacher'][:19]}...); put that teacher there, or distill again from this one"
        )


def teacher_dir_of(student_dir: Path, info: dict, *, check: bool | None = None) -> Path:
    """The folder with the teacher's other components: the student's own copy `teacher/`, else the recorded one.

    It must hold the teacher the student was distilled from: a student on another teacher's VAE and text
    encoder decodes nonsense. `check` None: always, except a full-hash ('sha256:') identity of a folder larger than
    CHECK_BYTES; True: always; False: never.
    """
    legacy = str(info.get("teacher") or "").startswith(LEGACY_PREFIX)
    for candidate in (Path(student_dir) / "teacher", Path(info["teacher_dir"])):
        if (candidate / "model_index.json").is_file():
            if check or (check is None and (not legacy or _folder_bytes(candidate) <= CHECK_BYTES)):
                check_teacher(student_dir, info, candidate)
            return candidate
    raise AccVideoError(
        f"the student's teacher folder {info['teacher_dir']} is gone; put the teacher pipeline (identity "
        f"{info['teacher'][:19]}...) there or in {Path(student_dir) / 'teacher'}"
    )


def load_student(student_dir: str | Path, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
    """(adapter running the student, student.json): the teacher's pipeline with the student's transformer weights."""
    student_dir = Path(student_dir)
    info = read_student_info(student_dir)
    adapter = load_adapter(teacher_dir_of(student_dir, info), device=device, dtype=dtype)
    if adapter.family != info["family"]:
        raise AccVideoError(
            f"{student_dir} holds a {info['family']} student but its teacher folder {info['teacher_dir']} is a "
            f"{adapter.family} pipeline; put the student's own teacher there, or {REDO}"
        )
    files = student_files(student_dir, info)
    if bool(info.get("experts")) != (getattr(adapter, "boundary_ratio", None) is not None):
        raise AccVideoError(f"{student_dir}: its experts do not match its teacher folder's; {REDO}")
    if info["lora"] is not None:
        for name in files:  # the second expert's file loads into transformer_2, as diffusers' Wan LoRA loader does
            second = {"load_into_transformer_2": True} if name != FULL_WEIGHTS else {}
            adapter.pipe.load_lora_weights(
                str(student_dir), weight_name=LORA_FILES[name], adapter_name="student", **second
            )
        adapter.pipe.fuse_lora(components=list(files))  # a student samples at the base model's cost
        adapter.pipe.unload_lora_weights()
    else:
        for name, paths in files.items():
            state = {}
            for f in paths:
                state.update(load_safetensors(f, REDO))
            try:
                getattr(adapter.pipe, name).load_state_dict(state, strict=True)
            except RuntimeError as exc:
                raise AccVideoError(
                    f"{student_dir}: the student does not fit its teacher ({str(exc).splitlines()[0]})"
                ) from None
    adapter.transformer.requires_grad_(False).eval()
    return adapter, info
