"""The two export formats: a whole diffusers pipeline folder, or a LoRA file for the teacher's pipeline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from accvideo.core.files import write_json_atomic
from accvideo.errors import AccVideoError
from accvideo.export.folder import FORMAT, MARKER, copy_tree
from accvideo.export.scheduler import matching_scheduler
from accvideo.export.source import Source, student_call
from accvideo.models.student import FULL_WEIGHTS, LORA_WEIGHTS

SKIPPED = {"transformer", "scheduler"}  # the components an export replaces


def _transformer_class(src: Source):
    import diffusers

    _, name = src.model_index()["transformer"]
    return getattr(diffusers, name)


def write_transformer(src: Source, dst: Path, dtype: torch.dtype | None) -> None:
    """The student's transformer as a diffusers model folder: full students as saved, LoRA students fused."""
    weights = src.student_dir / FULL_WEIGHTS
    if not src.lora:
        if not any(weights.glob("*.safetensors")):
            raise AccVideoError(f"{weights} holds no weights; export the student again (rerun `accvideo distill`)")
        if dtype is None:
            copy_tree(weights, dst)
            return
        model = _transformer_class(src).from_pretrained(str(weights), local_files_only=True)
    else:
        if not (src.student_dir / LORA_WEIGHTS).is_file():
            raise AccVideoError(f"{src.student_dir / LORA_WEIGHTS} is missing; export the student again")
        model = _transformer_class(src).from_pretrained(
            str(src.teacher_dir / "transformer"), local_files_only=True, dtype=torch.float32
        )
        model.load_lora_adapter(
            str(src.student_dir), weight_name=LORA_WEIGHTS, prefix="transformer", adapter_name="student"
        )
        model.fuse_lora()  # base weights + the scaled low-rank update, in float32
        model.unload_lora()
    if dtype is not None:
        model = model.to(dtype)
    model.save_pretrained(str(dst), safe_serialization=True)


def _manifest(src: Source, kind: str, scheduler_settings: dict | None) -> dict:
    info = src.info
    return {
        "format": FORMAT,
        "kind": kind,
        "family": info["family"],
        "pipeline": src.pipeline,
        "key_sigmas": src.key_sigmas,
        "scheduler": scheduler_settings,
        "call": student_call(src),
        "student": str(src.student_dir.resolve()),
        "teacher": info.get("teacher"),
        "teacher_dir": str(src.teacher_dir.resolve()),
        "lora": info.get("lora"),
        "iteration": info.get("iteration"),
        "samples": info.get("samples"),
    }


def _call_text(call: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in call.items())


def _inputs(pipeline: str) -> str:
    """The README call's leading arguments: an image-to-video pipeline takes the image first, so name both."""
    if pipeline == "WanImageToVideoPipeline":  # image: a PIL image of exactly height x width (docs/image-to-video.md)
        return "image=image, prompt=prompt"
    return "prompt"


def write_diffusers(src: Source, tmp: Path, dtype: torch.dtype | None = None) -> dict:
    """Fill `tmp` with the teacher's components, the student's transformer and a key-sigma scheduler."""
    scheduler, settings = matching_scheduler(src.key_sigmas, src.pipeline)  # refuse before copying gigabytes
    index = src.model_index()
    for name, spec in index.items():
        if name.startswith("_") or name in SKIPPED or not isinstance(spec, list) or spec[0] is None:
            continue
        if not (src.teacher_dir / name).is_dir():
            raise AccVideoError(f"{src.teacher_dir} lacks the component folder {name}; re-save the whole pipeline")
        copy_tree(src.teacher_dir / name, tmp / name)
    for f in src.teacher_dir.iterdir():  # root files other than the index (e.g. accvideo.json, README)
        if f.is_file() and not f.name.startswith(".") and f.name not in {"model_index.json", MARKER, "README.md"}:
            shutil.copy2(f, tmp / f.name)
    write_transformer(src, tmp / "transformer", dtype)
    scheduler.save_pretrained(str(tmp / "scheduler"))
    index["scheduler"] = ["diffusers", type(scheduler).__name__]
    write_json_atomic(tmp / "model_index.json", index)
    manifest = _manifest(src, "diffusers", settings)
    write_json_atomic(tmp / MARKER, manifest)
    (tmp / "README.md").write_text(
        f"# A {src.steps}-step AccVideo student ({src.pipeline})\n\n"
        "Written by `accvideo export --format diffusers`. Load it with stock diffusers:\n\n"
        "```python\n"
        f"from diffusers import {src.pipeline}\n"
        f"pipe = {src.pipeline}.from_pretrained(PATH)\n"
        f"video = pipe({_inputs(src.pipeline)}, {_call_text(manifest['call'])}).frames[0]\n"
        "```\n\n"
        f"The scheduler (shift {settings['shift']:.6g}, shift_terminal {settings['shift_terminal']}) makes the "
        f"pipeline's own {src.steps} steps land on the student's key sigmas\n"
        f"{json.dumps([round(s, 6) for s in src.key_sigmas])}; other step counts leave the student's schedule.\n"
    )
    return manifest


def write_lora(src: Source, tmp: Path) -> dict:
    """Fill `tmp` with the LoRA file `pipe.load_lora_weights` takes, plus the scheduler the student needs."""
    if not src.lora:
        raise AccVideoError(
            f"{src.student_dir} is a full student (no LoRA); use `accvideo export RUN --format "
            "diffusers`, or distill a LoRA student (lora_rank=16)"
        )
    weights = src.student_dir / LORA_WEIGHTS
    if not weights.is_file():
        raise AccVideoError(f"{weights} is missing; export the student again (rerun `accvideo distill`)")
    shutil.copy2(weights, tmp / LORA_WEIGHTS)
    try:
        scheduler, settings = matching_scheduler(src.key_sigmas, src.pipeline)
        scheduler.save_pretrained(str(tmp / "scheduler"))
    except AccVideoError:
        settings = None  # the key sigmas must then be passed explicitly
    manifest = _manifest(src, "lora", settings)
    write_json_atomic(tmp / MARKER, manifest)
    sched = (
        'pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(PATH, subfolder="scheduler")\n'
        if settings is not None
        else "# no stock scheduler reproduces these key sigmas: pass them explicitly\n"
    )
    (tmp / "README.md").write_text(
        f"# A {src.steps}-step AccVideo LoRA student for {src.pipeline}\n\n"
        "Written by `accvideo export --format lora`. The student samples ONLY at its key sigmas\n"
        f"{json.dumps([round(s, 6) for s in src.key_sigmas])}, so swap in the scheduler shipped here:\n\n"
        "```python\n"
        f"from diffusers import FlowMatchEulerDiscreteScheduler, {src.pipeline}\n"
        f"pipe = {src.pipeline}.from_pretrained(TEACHER)\n"
        "pipe.load_lora_weights(PATH)\n"
        f"{sched}"
        f"video = pipe({_inputs(src.pipeline)}, {_call_text(manifest['call'])}).frames[0]\n"
        "```\n"
    )
    return manifest


def carry_decoder(folder: Path, info: dict, tmp: Path, manifest: dict) -> dict:
    """Copy a tiny decoder into tmp/decoder and add to the README the stock call that decodes with it."""
    copy_tree(folder, tmp / "decoder")
    manifest = {**manifest, "decoder": {"folder": "decoder", "vae_identity": info["vae_identity"]}}
    write_json_atomic(tmp / MARKER, manifest)
    call = {k: v for k, v in manifest["call"].items() if k != "output_type"}
    load = (
        f"pipe = {manifest['pipeline']}.from_pretrained(PATH)\n"
        if manifest["kind"] == "diffusers"
        else f"pipe = {manifest['pipeline']}.from_pretrained(TEACHER)\npipe.load_lora_weights(PATH)\n"
    )
    with (tmp / "README.md").open("a") as f:
        f.write(
            "\n## With the tiny decoder (`decoder/`, made by `accvideo decoder distill` for this VAE)\n\n"
            "Ask the pipeline for its latents and decode them with the tiny decoder instead of the VAE:\n\n"
            "```python\n"
            f"from diffusers import {manifest['pipeline']}\n"
            "from accvideo.models.decoder import decode_video, load_decoder\n"
            f"{load}"
            'decoder, _ = load_decoder(PATH + "/decoder", None)  # None: skip the VAE identity check\n'
            f'latents = pipe({_inputs(manifest["pipeline"])}, {_call_text(call)}, output_type="latent").frames\n'
            "video = decode_video(decoder.to(pipe.device), latents)[0]  # (F, H, W, 3) float in [0, 1]\n"
            "```\n"
        )
    return manifest
