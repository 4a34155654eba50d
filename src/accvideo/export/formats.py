"""The export formats: a whole diffusers pipeline folder, a LoRA file for the teacher's pipeline, or (Wan) the
transformer as one file in the Wan repository's layout (export/single_file.py)."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import torch

from accvideo.core.files import write_json_atomic
from accvideo.core.inputs import check_safetensors, load_safetensors, parse_json, read_json
from accvideo.core.tensorfile import copy_safetensors
from accvideo.errors import AccVideoError
from accvideo.export.folder import FORMAT, MARKER, copy_tree
from accvideo.export.scheduler import matching_scheduler
from accvideo.export.source import Source, student_call
from accvideo.models.base import scheduler_shift
from accvideo.models.student import (
    FULL_WEIGHTS,
    LORA_FILES,
    LORA_META,
    REDO,
    check_finite,
    check_part,
    expert_names,
    full_transformer,
)
from accvideo.models.wan_moe import EXPERTS

SKIPPED = {"transformer", "transformer_2", "scheduler"}  # the components an export replaces (A14B: both experts)


def _transformer_class(src: Source):
    import diffusers

    _, name = src.model_index()["transformer"]
    return getattr(diffusers, name)


def write_transformer(src: Source, dst: Path, dtype: torch.dtype | None, name: str = FULL_WEIGHTS) -> None:
    """The student's transformer `name` (Wan 2.2 A14B: each expert) as a diffusers model folder: full students as
    saved, LoRA students fused. Each student tensor is checked finite as it is read for this (one read)."""
    if not src.lora and dtype is None:
        _check_full_weights(src, name)
        copy_full_weights(src.student_dir / name, dst)
        return
    model = student_transformer(src, name)
    if dtype is not None:
        model = model.to(dtype)
    model.save_pretrained(str(dst), safe_serialization=True)


def _check_full_weights(src: Source, name: str) -> None:
    if not any((src.student_dir / name).glob("*.safetensors")):
        raise AccVideoError(
            f"{src.student_dir / name} holds no weights; export the student again (rerun `accvideo distill`)"
        )


def copy_full_weights(folder: Path, dst: Path) -> None:
    """A full student's transformer folder copied as saved, each weights file byte for byte with every tensor
    checked finite as it passes (check_part's line): the check and the copy in one read, where check_finite and
    then the folder copy read a 14B student's 28-56 GB twice. A hidden weights file is not copied (copy_tree
    leaves hidden files out) but, as student_files lists it, it is checked all the same."""
    copy_tree(folder, dst, skip=("*.safetensors",))
    for f in sorted(folder.glob("*.safetensors")):
        if f.name.startswith("."):
            check_finite(f)
        else:
            copy_safetensors(f, dst / f.name, check=check_part)


def lora_state(src: Source, name: str = FULL_WEIGHTS) -> tuple[dict[str, torch.Tensor], dict | None]:
    """(the tensors, the adapter metadata) of transformer `name`'s LoRA file, read once and checked finite: what
    diffusers' `load_lora_adapter` reads from the file, given to it in memory (and to the single-file LoRA) so the
    file is not read again by each. The metadata is the LoraConfig diffusers builds from the file's header (None
    without one: alpha = rank)."""
    path = src.student_dir / LORA_FILES[name]
    if not path.is_file():
        raise AccVideoError(f"{path} is missing; export the student again")
    tensors = load_safetensors(path, REDO)
    check_finite(path, tensors)
    raw = (check_safetensors(path, REDO).get("__metadata__") or {}).get(LORA_META)
    return tensors, (parse_json(raw) if raw else None)


def student_transformer(src: Source, name: str = FULL_WEIGHTS, lora: tuple | None = None) -> torch.nn.Module:
    """The student's transformer `name` as a diffusers model on the CPU: a full student as saved, a LoRA student's
    adapter fused into its teacher's weights (in float32). `lora`: lora_state's, when the caller holds it already.
    Either way each student tensor is checked finite as it is read, once."""
    _check_memory(src.teacher_dir if src.lora else src.student_dir, name)
    if not src.lora:
        _check_full_weights(src, name)
        return full_transformer(_transformer_class(src), src.student_dir / name)
    tensors, metadata = lora if lora is not None else lora_state(src, name)  # refused before the teacher is read
    teacher = str(src.teacher_dir / name)
    model = _transformer_class(src).from_pretrained(teacher, local_files_only=True, dtype=torch.float32)
    model.load_lora_adapter(tensors, prefix="transformer", adapter_name="student", metadata=metadata)
    model.fuse_lora()  # base weights + the scaled low-rank update, in float32
    model.unload_lora()
    return model


def _check_memory(folder: Path, name: str) -> None:
    """Refuse, before it is read, a transformer whose float32 copy on the CPU does not fit the host memory free now
    (the kernel's out-of-memory killer ends an export without a word, and leaves its temporary folder)."""
    from accvideo.core.runtime import available_memory
    from accvideo.models import host_bytes

    free = available_memory()
    need = host_bytes(folder, torch.float32, only=(name,)) if free is not None else 0
    if free is not None and need > free:
        raise AccVideoError(
            f"export holds {folder / name} in float32 on the CPU ({need / 2**30:.1f} GiB) and this machine has "
            f"{free / 2**30:.1f} GiB of memory free; free memory or export on a machine with more (a LoRA student's "
            "--format lora copies its file alone)"
        )


def _manifest(src: Source, kind: str, scheduler_settings: dict | None) -> dict:
    info = src.info
    return {
        "format": FORMAT,
        "kind": kind,
        "family": info["family"],
        "pipeline": src.pipeline,
        "key_sigmas": src.key_sigmas,
        "shift": teacher_shift(src),  # the grid the key sigmas come from (the scheduler below is fitted to them)
        "scheduler": scheduler_settings,
        "call": student_call(src),
        "size": clip_size(src),  # keyword arguments of the call too, kept apart: a caller may give its own size
        # the size is the one it was distilled at (`sample --model EXPORT` makes it by default), not its teacher's
        "size_distilled": "size" in info,
        "student": str(src.student_dir.resolve()),
        "teacher": info.get("teacher"),
        "teacher_dir": str(src.teacher_dir.resolve()),
        "lora": info.get("lora"),
        "iteration": info.get("iteration"),
        "samples": info.get("samples"),
        **({"experts": info["experts"]} if info.get("experts") else {}),
    }


def teacher_shift(src: Source) -> float:
    """The teacher's sigma shift, read as its adapter reads it (models/base.scheduler_shift)."""
    path = src.teacher_dir / "scheduler" / "scheduler_config.json"
    config = read_json(path, "re-save or re-download the teacher") if path.is_file() else {}
    return scheduler_shift(config if isinstance(config, dict) else {}, src.adapter.fallback_shift)


def _call_text(call: dict, size: dict | None = None) -> str:
    """The stock call's keyword arguments as text, the clip size first (the pipeline's own default size, 81x480x832
    for Wan, is not the one a small teacher was trained at)."""
    return ", ".join(f"{k}={v!r}" for k, v in {**(size or {}), **call}.items())


def _g(value: float | None) -> str:
    return "None" if value is None else f"{value:.6g}"


def clip_size(src: Source) -> dict:
    """The clip size `accvideo sample` makes with this student by default: the one it was distilled at, else (a
    student that records none) its teacher folder's (models/defaults.py)."""
    from accvideo.models.defaults import video_defaults

    values = src.info["size"] if "size" in src.info else video_defaults(src.teacher_dir, src.info["family"])[0]
    return {"num_frames": values["frames"], "height": values["height"], "width": values["width"]}


def _inputs(pipeline: str) -> str:
    """The README call's leading arguments: an image-to-video pipeline takes the image first, so name both."""
    if pipeline == "WanImageToVideoPipeline":  # image: a PIL image of exactly height x width (docs/image-to-video.md)
        return "image=image, prompt=prompt"
    return "prompt"


def write_diffusers(src: Source, tmp: Path, dtype: torch.dtype | None = None) -> dict:
    """Fill `tmp` with the teacher's components, the student's transformer and a key-sigma scheduler."""
    scheduler, settings = matching_scheduler(src.key_sigmas, src.pipeline)  # refuse before copying gigabytes
    check_experts(src, scheduler)
    index = src.model_index()
    components = [n for n, spec in index.items() if _copied(n, spec)]
    for name in components:
        if not (src.teacher_dir / name).is_dir():
            raise AccVideoError(f"{src.teacher_dir} lacks the component folder {name}; re-save the whole pipeline")
    for name in expert_names(src.info):  # first: a student refused as its weights are read has copied nothing
        write_transformer(src, tmp / name, dtype, name)
    for name in components:
        copy_tree(src.teacher_dir / name, tmp / name)
    for f in src.teacher_dir.iterdir():  # root files other than the index (e.g. accvideo.json, README)
        if f.is_file() and not f.name.startswith(".") and f.name not in {"model_index.json", MARKER, "README.md"}:
            shutil.copy2(f, tmp / f.name)
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
        f"video = pipe({_inputs(src.pipeline)}, {_call_text(manifest['call'], manifest.get('size'))}).frames[0]\n"
        "```\n\n"
        f"The scheduler (shift {settings['shift']:.6g}, shift_terminal {_g(settings['shift_terminal'])}) makes the "
        f"pipeline's own {src.steps} steps land on the student's key sigmas\n"
        f"{json.dumps([round(s, 6) for s in src.key_sigmas])}; other step counts leave the student's schedule.\n"
    )
    return manifest


def _copied(name: str, spec) -> bool:
    """Whether model_index.json's entry `name` is a teacher component the diffusers export copies."""
    return not name.startswith("_") and name not in SKIPPED and isinstance(spec, list) and spec[0] is not None


def write_lora(src: Source, tmp: Path) -> dict:
    """Fill `tmp` with the LoRA file `pipe.load_lora_weights` takes, plus the scheduler the student needs."""
    if not src.lora:
        raise AccVideoError(
            f"{src.student_dir} is a full student (no LoRA); use `accvideo export RUN --format "
            "diffusers`, or distill a LoRA student (lora_rank=16)"
        )
    names = expert_names(src.info)
    for name in names:
        weights = src.student_dir / LORA_FILES[name]
        if not weights.is_file():
            raise AccVideoError(f"{weights} is missing; export the student again (rerun `accvideo distill`)")
        copy_safetensors(weights, tmp / LORA_FILES[name], check=check_part)  # checked as copied: one read
    scheduler, settings = _scheduler_or_none(src)
    if scheduler is not None:
        scheduler.save_pretrained(str(tmp / "scheduler"))
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
        f"{json.dumps([round(s, 6) for s in src.key_sigmas])}, "
        + (
            "so swap in the scheduler shipped here:\n\n"
            if settings is not None
            else "which no stock scheduler reaches from a step count (they are not uniform on a shifted grid):\n"
            "pass them as `sigmas=` to a pipeline that takes them (the scheduler's shift set to 1), or sample with\n"
            "`accvideo sample`.\n\n"
        )
        + "```python\n"
        f"from diffusers import FlowMatchEulerDiscreteScheduler, {src.pipeline}\n"
        f"pipe = {src.pipeline}.from_pretrained(TEACHER)\n"
        f"{_lora_loads(names)}"
        f"{sched}"
        + (
            f"video = pipe({_inputs(src.pipeline)}, {_call_text(manifest['call'], manifest.get('size'))}).frames[0]\n"
            if settings is not None
            else ""  # a step count alone would run a schedule the student was not trained on
        )
        + "```\n"
    )
    return manifest


def check_single_file(src: Source) -> None:
    """Refuse, before anything is written, a student no single-file layout accvideo writes can hold."""
    from accvideo.export.single_file import LAYOUTS

    if _transformer_class(src).__name__ not in LAYOUTS:
        raise AccVideoError(
            "--format single-file writes Wan and HunyuanVideo transformers; this student's teacher is a "
            f"{src.pipeline}: use --format diffusers"
        )


def write_single(src: Source, tmp: Path, dtype: torch.dtype | None = None) -> dict:
    """Fill `tmp` with each transformer of a Wan student as one file in the Wan repository's layout
    (export/single_file.py), plus the scheduler that lands on its key sigmas when a stock one does."""
    from accvideo.export.single_file import write_single_file

    check_single_file(src)
    scheduler, settings = _scheduler_or_none(src)
    names = expert_names(src.info)
    meta = {"accvideo_key_sigmas": json.dumps(src.key_sigmas), "accvideo_shift": repr(teacher_shift(src))}
    adapters = []
    for name in names:
        lora = lora_state(src, name) if src.lora else None  # read once: fused below, and written alone
        model = student_transformer(src, name, lora)
        _warn_unreadable_width(model)
        state = {k: (v.to(dtype) if dtype is not None else v) for k, v in model.state_dict().items()}
        write_single_file(state, tmp / f"{name}.safetensors", meta, type(model).__name__)
        del model, state
        if _single_lora_layout(src):  # the adapter alone too, as community Wan LoRAs are written
            adapters.append(_single_lora(src, tmp, name, meta, lora[0]))
    files = [f"{n}.safetensors" for n in names] + adapters
    if scheduler is not None:
        scheduler.save_pretrained(str(tmp / "scheduler"))
    manifest = {**_manifest(src, "single-file", settings), "files": files}
    write_json_atomic(tmp / MARKER, manifest)
    _single_readme(src, tmp, manifest, names)
    return manifest


def _warn_unreadable_width(model) -> None:
    """Say so when diffusers' `from_single_file` cannot read the HunyuanVideo file about to be written: its reader
    splits a single block's linear1 at the published width only (the README's call would fail)."""
    from accvideo.export.single_file_hunyuan import READER_WIDTH

    cfg = model.config
    if type(model).__name__ != "HunyuanVideoTransformer3DModel":
        return
    width = cfg.num_attention_heads * cfg.attention_head_dim
    if width != READER_WIDTH:
        warnings.warn(
            f"this HunyuanVideo student is {width} wide, and diffusers' from_single_file reads only the published "
            f"width ({READER_WIDTH}): the file is written in the layout, but its README's call will not load it; "
            "export with --format diffusers to load it in diffusers",
            stacklevel=3,
        )


def _single_lora_layout(src: Source) -> bool:
    """Whether a LoRA student's adapter is also written alone in the single-file layout: Wan's. HunyuanVideo's
    layout fuses q, k and v into one matrix, and diffusers' reader of its LoRAs splits the token refiner's fused
    lora_A by rows, which no LoRA of the three projections survives; its students' adapters go with --format lora."""
    return bool(src.lora) and _transformer_class(src).__name__ == "WanTransformer3DModel"


def _single_lora(src: Source, tmp: Path, name: str, meta: dict, tensors: dict[str, torch.Tensor]) -> str:
    """The LoRA of transformer `name` (`tensors`, its file's, as lora_state read them) in the Wan layout
    (export/single_file.original_lora_state); its file name."""
    from accvideo.core.tensorfile import write_safetensors
    from accvideo.export.single_file import original_lora_state

    lora = src.info["lora"]
    scale = lora.get("alpha", lora["rank"]) / lora["rank"]  # peft's lora_alpha / r
    state = original_lora_state(tensors, scale)
    file = f"{name}_lora.safetensors"
    write_safetensors({k: v.contiguous() for k, v in state.items()}, {"format": "pt", **meta}, tmp / file)
    return file


def _scheduler_or_none(src: Source):
    """(a stock scheduler that lands on the key sigmas, its settings), or (None, None) when none does."""
    try:
        scheduler, settings = matching_scheduler(src.key_sigmas, src.pipeline)
    except AccVideoError:
        return None, None  # the key sigmas must then be passed explicitly
    check_experts(src, scheduler)
    return scheduler, settings


def _single_readme(src: Source, tmp: Path, manifest: dict, names: list[str]) -> None:
    """The README of a single-file export: what the files are, and the diffusers call that loads them."""
    from accvideo.export.single_file import LAYOUTS
    from accvideo.export.single_file_hunyuan import READER_WIDTH

    cls = _transformer_class(src).__name__
    owner, family, _ = LAYOUTS[cls]
    tested = "tested here with diffusers' `from_single_file`"
    if family == "HunyuanVideo":
        tested = (
            "tested here with diffusers' reader of the layout, the one `from_single_file` runs, which reads "
            f"HunyuanVideo's published width ({READER_WIDTH})"
        )
    fused = " A LoRA student's adapter is fused in." if src.lora else ""
    if src.lora and not _single_lora_layout(src):
        fused += " The adapter alone, in diffusers' names, is `accvideo export --format lora`."
    experts = (
        " `transformer.safetensors` is the high-noise expert (steps with timestep >= boundary_ratio x 1000), "
        "`transformer_2.safetensors` the low-noise one."
        if len(names) > 1
        else ""
    )
    lines = [
        f"# A {src.steps}-step AccVideo student of {src.pipeline}, as single files",
        "",
        f"Written by `accvideo export --format single-file`: the transformer in the layout of {owner} (the layout "
        f"of the single {family} files ComfyUI's diffusion-model loader reads; {tested}, not with ComfyUI "
        f"itself).{experts}{fused} It samples only at its key sigmas "
        f"{json.dumps([round(s, 6) for s in src.key_sigmas])} (on the teacher's shift {manifest['shift']:g} grid), "
        "without CFG.",
        "",
        "```python",
        f"from diffusers import FlowMatchEulerDiscreteScheduler, {cls}, {src.pipeline}",
        *(f'{n} = {cls}.from_single_file(PATH + "/{n}.safetensors", config=TEACHER, subfolder="{n}")' for n in names),
        f"pipe = {src.pipeline}.from_pretrained(TEACHER, {', '.join(f'{n}={n}' for n in names)})",
    ]
    if manifest["scheduler"] is not None:
        lines += [
            'pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(PATH, subfolder="scheduler")',
            f"video = pipe({_inputs(src.pipeline)}, {_call_text(manifest['call'], manifest.get('size'))}).frames[0]",
        ]
    else:
        lines.append(
            "# no stock scheduler reaches these key sigmas from a step count: pass them as sigmas= where taken"
        )
    lines.append("```")
    if _single_lora_layout(src):
        lines += [
            "",
            "The adapter alone is here too (`*_lora.safetensors`), in the layout of community Wan LoRAs "
            "(`diffusion_model.` names, `lora_A` / `lora_B`, the alpha / rank scale multiplied into `lora_B`); "
            "diffusers loads it on the teacher pipeline; ComfyUI's LoRA loader reads this layout (not tested here):",
            "",
            "```python",
            f"pipe = {src.pipeline}.from_pretrained(TEACHER)",
            *(
                f'pipe.load_lora_weights(PATH, weight_name="{n}_lora.safetensors"'
                + (", load_into_transformer_2=True)" if n != FULL_WEIGHTS else ")")
                for n in names
            ),
            "```",
        ]
    (tmp / "README.md").write_text("\n".join([*lines, ""]))


def _lora_loads(names: list[str]) -> str:
    """The README's LoRA loading lines: one file, or one per Wan 2.2 A14B expert (the second into transformer_2)."""
    if len(names) == 1:
        return "pipe.load_lora_weights(PATH)\n"
    lines = f'pipe.load_lora_weights(PATH, weight_name="{LORA_FILES[names[0]]}")  # transformer (high noise)\n'
    for name in names[1:]:
        lines += (
            f'pipe.load_lora_weights(PATH, weight_name="{LORA_FILES[name]}", load_into_transformer_2=True)'
            f"  # {name} (low noise)\n"
        )
    return lines


def check_experts(src: Source, scheduler) -> None:
    """Refuse a scheduler whose steps would hand a key step to the other expert than the one that trained it (Wan
    2.2 A14B: the stock loop picks the expert by `t >= boundary_ratio * num_train_timesteps`, with its own float32
    timesteps; a key sigma within 1e-6 of the boundary could fall on the other side)."""
    experts = src.info.get("experts")
    if not experts:
        return
    boundary = experts["boundary_ratio"] * scheduler.config.num_train_timesteps
    stock = [EXPERTS[0] if float(t) >= boundary else EXPERTS[1] for t in scheduler.timesteps]
    if stock != experts["key_experts"]:
        raise AccVideoError(
            f"the stock scheduler's timesteps {[round(float(t), 4) for t in scheduler.timesteps]} give the experts "
            f"{stock}, but the student trained {experts['key_experts']}; a key sigma sits on the boundary "
            f"{experts['boundary_ratio']}: distill with other key steps"
        )


def carry_decoder(folder: Path, info: dict, tmp: Path, manifest: dict) -> dict:
    """Copy a tiny decoder into tmp/decoder and add to the README the stock call that decodes with it."""
    copy_tree(folder, tmp / "decoder")
    manifest = {**manifest, "decoder": {"folder": "decoder", "vae_identity": info["vae_identity"]}}
    write_json_atomic(tmp / MARKER, manifest)
    call = {k: v for k, v in manifest["call"].items() if k != "output_type"}
    imports, load = manifest["pipeline"], f"pipe = {manifest['pipeline']}.from_pretrained(PATH)\n"
    # a LoRA file rides on its teacher, whose scheduler samples the teacher's sigmas: the student's is swapped in (the
    # snippet ran the teacher's schedule), and without a stock one no step count reaches the key sigmas
    stock = manifest["kind"] == "diffusers" or (tmp / "scheduler").is_dir()
    if manifest["kind"] != "diffusers":
        load = f"pipe = {manifest['pipeline']}.from_pretrained(TEACHER)\n{_lora_loads(expert_names(manifest))}"
        if stock:
            imports = f"FlowMatchEulerDiscreteScheduler, {imports}"
            load += 'pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(PATH, subfolder="scheduler")\n'
    sample = (
        f"latents = pipe({_inputs(manifest['pipeline'])}, {_call_text(call, manifest.get('size'))}, "
        'output_type="latent").frames\n'
        if stock
        else '# latents: the output_type="latent" frames of a call on the key sigmas above (no stock scheduler)\n'
    )
    with (tmp / "README.md").open("a") as f:
        f.write(
            "\n## With the tiny decoder (`decoder/`, made by `accvideo decoder distill` for this VAE)\n\n"
            "Ask the pipeline for its latents and decode them with the tiny decoder instead of the VAE:\n\n"
            "```python\n"
            f"from diffusers import {imports}\n"
            "from accvideo.models.decoder import decode_video, load_decoder\n"
            f"{load}"
            'decoder, _ = load_decoder(PATH + "/decoder", None)  # None: skip the VAE identity check\n'
            f"{sample}"
            "video = decode_video(decoder.to(pipe.device), latents)[0]  # (F, H, W, 3) float in [0, 1]\n"
            "```\n"
        )
    return manifest
