"""Writing the student artifact (to use, not to resume); its layout and the reader are in accvideo.models.student."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from accvideo.core.tensorfile import rewrite_sorted, share_files
from accvideo.models.student import FORMAT, FULL_WEIGHTS, INFO, LORA_FILES, WEIGHTS_ID, weights_identity
from accvideo.models.wan_moe import ExpertPair, split_state


def _save_transformer(module, state: dict[str, torch.Tensor], folder: Path) -> None:
    """What diffusers' save_pretrained writes (config.json + weights), from the gathered state."""
    from huggingface_hub import save_torch_state_dict

    module.save_config(str(folder))
    save_torch_state_dict(
        state, folder, filename_pattern="diffusion_pytorch_model{suffix}.safetensors", max_shard_size="10GB"
    )
    share_files(folder)  # it writes through private temporary files (mode 600)


def export_student(
    out: Path,
    pair,
    *,
    key_sigmas,
    teacher: str,
    teacher_dir: Path,
    lora: dict | None,
    extra: dict,
    state: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write the student of `pair` (a StudentTeacher) to `out`, replacing any previous export whole.

    `state` is the student's whole weights (LoRA: peft's portable names) when they are gathered from shards;
    by default they are read from `pair`. The layout is the same whatever the number of training processes.
    """
    out = Path(out)
    state = pair.student_state() if state is None else state
    tmp = out.with_name(f".{out.name}.part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:  # a second Ctrl-C or a fault midway leaves no hidden half-written student behind
        experts = pair.module.experts() if isinstance(pair.module, ExpertPair) else None
        # one file or folder per expert (Wan 2.2 A14B: transformer, transformer_2), else the one transformer's
        parts = split_state(state) if experts is not None else {FULL_WEIGHTS: state}
        for name, part in parts.items():
            if lora is not None:
                type(pair.teacher.pipe).save_lora_weights(
                    str(tmp),
                    transformer_lora_layers=part,
                    weight_name=LORA_FILES[name],
                    transformer_lora_adapter_metadata={
                        "r": lora["rank"],
                        "lora_alpha": lora["alpha"],
                        "target_modules": lora["targets"],
                    },
                )
                rewrite_sorted(tmp / LORA_FILES[name])  # equal students, equal bytes; mode as the umask allows
            else:
                _save_transformer(experts[name] if experts is not None else pair.module, part, tmp / name)
        weights = [LORA_FILES[n] for n in parts] if lora is not None else list(parts)
        info = {
            "format": FORMAT,
            "family": pair.teacher.family,
            "key_sigmas": [float(s) for s in key_sigmas],
            "teacher": teacher,
            "teacher_dir": str(Path(teacher_dir).resolve()),
            "lora": lora,
            "weights": weights[0] if len(weights) == 1 else weights,
            **extra,
        }
        info[WEIGHTS_ID] = weights_identity(tmp, info)  # checked on every load: files replaced or swapped since
        (tmp / INFO).write_text(json.dumps(info, indent=1) + "\n")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = out.with_name(f".{out.name}.old")
    if old.is_dir():  # a save stopped between its renames: keep what the folder held beyond the student
        if out.exists():
            _carry_over(old, out)
        else:
            os.replace(old, out)
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    _carry_over(old, out)
    shutil.rmtree(old, ignore_errors=True)
    return out


def _carry_over(old: Path, new: Path) -> None:
    """Move into the new student folder what the old one held beyond the student files (a run's student writes
    the same names at every save): the teacher copy `teacher/` that a moved teacher is looked for in (every save
    deleted it, the only copy when the teacher had been moved there)."""
    if not old.is_dir():
        return
    for entry in old.iterdir():
        if not (new / entry.name).exists():
            os.replace(entry, new / entry.name)
