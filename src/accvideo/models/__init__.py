"""Model families behind the seam; the family is read from model_index.json, never from a path."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch

from accvideo.core.adapter import ModelAdapter
from accvideo.core.inputs import check_model_folder, check_safetensors, parse_json, read_json, read_small_file
from accvideo.core.interrupts import check as check_interrupt
from accvideo.core.outputs import owner
from accvideo.core.runtime import available_memory
from accvideo.errors import AccVideoError
from accvideo.models.base import WHOLE, LoadParts, check_config_sizes
from accvideo.models.defaults import folder_settings
from accvideo.models.hunyuan import HunyuanVideoAdapter
from accvideo.models.wan import WanAdapter
from accvideo.models.wan_i2v import WanI2VAdapter
from accvideo.models.wan_moe import WanMoEAdapter, is_two_expert
from accvideo.models.wan_ti2v import WanTI2VAdapter, WanTI2VImageAdapter

# pipeline class name in model_index.json -> adapter class
ADAPTERS: dict[str, type] = {cls.pipeline_class: cls for cls in (WanAdapter, WanI2VAdapter, HunyuanVideoAdapter)}
# the same pipeline class in another layout: (class name, its test on model_index.json, the adapter of that layout)
VARIANTS: list[tuple[str, Callable[[dict], bool], type]] = [
    ("WanPipeline", is_two_expert, WanMoEAdapter),  # Wan 2.2 A14B: two experts switched at boundary_ratio
    ("WanPipeline", lambda index: bool(index.get("expand_timesteps")), WanTI2VAdapter),  # Wan 2.2 TI2V-5B
    # Wan 2.2 TI2V-5B saved for image input: the first latent frame given, no CLIP
    ("WanImageToVideoPipeline", lambda index: bool(index.get("expand_timesteps")), WanTI2VImageAdapter),
]


ENTRY_POINTS = "accvideo.adapters"  # installed packages name their adapter classes here (docs/own-model.md)
# what every command asks of an adapter class before loading it (the ModelAdapter protocol, core/adapter.py)
REQUIRED = (
    "family",
    "pipeline_class",
    "components",
    "frame_step",
    "default_guidance",
    "load",
    "encode_prompts",
    "velocity",
    "features",
    "token_grid",
    "latent_shape",
    "keep_given",
    "decode",
    "encode",
)
_BUILT_IN = frozenset(ADAPTERS)
_plugins: dict[str, str] = {}  # pipeline class -> the entry point that registered it ("" once loading was tried)


def register_adapter(cls: type, *, when: Callable[[dict], bool] | None = None) -> type:
    """Make `cls` the adapter of the pipelines whose model_index.json `_class_name` is `cls.pipeline_class`: your own
    model family (docs/own-model.md). With `when(index)`, only of the folders of that class it holds for (another
    layout of a class, as Wan 2.2's). A built-in class is never replaced; returns `cls` (usable as a decorator)."""
    lacking = [name for name in REQUIRED if not hasattr(cls, name)]
    if lacking:
        raise AccVideoError(
            f"the adapter {cls.__module__}.{cls.__qualname__} lacks {', '.join(lacking)}; an adapter provides the "
            "ModelAdapter protocol (docs/own-model.md)"
        )
    name = cls.pipeline_class
    if when is not None:
        VARIANTS.insert(0, (name, when, cls))
    elif name in _BUILT_IN:
        raise AccVideoError(
            f"the adapter {cls.__module__}.{cls.__qualname__} would replace the built-in one of {name}; give "
            "register_adapter a when= test for its layout of that class, or a pipeline class of its own"
        )
    else:
        ADAPTERS[name] = cls
    return cls


def load_plugins() -> None:
    """Register the adapter classes that installed packages name in the `accvideo.adapters` entry-point group, once,
    when a folder's pipeline class is not built in. A plugin that does not import or is no adapter is one line
    naming it. Entry points add pipeline classes; a layout of a built-in class is `register_adapter(cls, when=...)`."""
    if "" in _plugins:
        return
    _plugins[""] = ""
    from importlib.metadata import entry_points

    for point in entry_points(group=ENTRY_POINTS):
        try:
            cls = point.load()
        except Exception as exc:  # noqa: BLE001 - whatever a plugin's import raises: one line naming the plugin
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise AccVideoError(
                f"the adapter plugin {point.name} ({point.value}) does not import ({first}); fix or uninstall its "
                "package"
            ) from None
        if not isinstance(cls, type):
            raise AccVideoError(f"the adapter plugin {point.name} ({point.value}) is not a class; name its adapter")
        register_adapter(cls)
        _plugins[cls.pipeline_class] = f"{point.name} ({point.value})"


def _recorded(folder: Path, key: str) -> str:
    """`key` of a student's student.json, as a hint in a refusal; 'its --teacher' when unreadable."""
    try:
        value = parse_json(read_small_file(folder / "student.json")).get(key)
    except (OSError, ValueError, AttributeError):
        value = None
    return _still_there(value) if isinstance(value, str) else "its --teacher"


def _still_there(recorded: str) -> str:
    """A folder a file recorded, for a hint: said to be gone when it moved since (the hint would send the user to
    nothing)."""
    return recorded if Path(recorded).exists() else f"recorded as {recorded}, gone from there: pass it where it is now"


def _lora_export_student(path: Path) -> str | None:
    """The student a LoRA export was made from (its accvideo_export.json's record), 'its distill run' when not
    recorded; None for any other export."""
    try:
        info = parse_json(read_small_file(path / "accvideo_export.json"))
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or info.get("kind") != "lora":
        return None
    return _still_there(info["student"]) if isinstance(info.get("student"), str) else "its distill run"


def model_index(path: str | Path) -> dict:
    """The parsed model_index.json of a local diffusers pipeline directory, with one-line errors for bad paths."""
    path = Path(path)
    if not path.exists():
        raise AccVideoError(
            f"model directory {path} does not exist; pass a local diffusers pipeline folder (--model, --teacher)"
        )
    if not path.is_dir():
        raise AccVideoError(
            f"{path} is a file, not a folder; pass the folder that holds model_index.json (--model, --teacher)"
        )
    index = path / "model_index.json"
    if not index.is_file() and (made_by := owner(path)) is not None:  # another command's output, named as a model
        if made_by == "distill" and (path / "student" / "student.json").is_file():  # a student is never a teacher
            raise AccVideoError(
                f"{path} is a distill run: its student samples (`accvideo sample --model {path}`) but is no teacher "
                f"pipeline; pass the pipeline it was distilled from ({_recorded(path / 'student', 'teacher_dir')})"
            )
        if made_by == "distill":
            raise AccVideoError(
                f"{path} is a distill run with no student yet (it writes one at its first checkpoint); rerun its "
                "distill command to train it, or pass a run that has one"
            )
        if made_by == "export" and (lora := _lora_export_student(path)) is not None:
            raise AccVideoError(
                f"{path} is a LoRA export: the student's LoRA weights alone, which diffusers loads onto its teacher "
                f"(its README.md); pass the student it was made from ({lora}) or a --format diffusers export"
            )
        if made_by in ("tiny-model", "teacher train"):  # a pipeline whose model_index.json is gone or no file
            raise AccVideoError(
                f"{path} is a pipeline `accvideo {made_by}` wrote, but its model_index.json is missing or no file; "
                "rerun that command to write it again"
            )
        raise AccVideoError(f"{path} is the output of `accvideo {made_by}`, not a model; pass a pipeline or a student")
    if not index.is_file():
        raise AccVideoError(
            f"{path} is not a diffusers pipeline (no model_index.json); pass the folder that holds it "
            "(--model, --teacher)"
        )
    raw = read_json(index, "re-save or re-download the pipeline")
    if not isinstance(raw, dict) or not isinstance(raw.get("_class_name"), str):
        raise AccVideoError(f"{index} is not a diffusers model index (no _class_name); re-save the pipeline")
    return raw


def pipeline_class(path: str | Path) -> str:
    """The `_class_name` of a local diffusers pipeline directory, with one-line errors for bad paths."""
    return str(model_index(path)["_class_name"])


def unsupported_variant(index: dict) -> str | None:
    """Why a pipeline of a supported class is still not supported, or None.

    Wan 2.2 is saved as the Wan 2.1 classes: A14B as a `WanPipeline` with a low-noise expert `transformer_2` switched
    at `boundary_ratio` (models/wan_moe.py); TI2V-5B with `expand_timesteps`, as a `WanPipeline` (text-to-video) or a
    `WanImageToVideoPipeline` (image input, the first latent frame kept clean; models/wan_ti2v.py). Two experts with
    image input (Wan 2.2 I2V-A14B) are refused.
    """
    if index["_class_name"] == WanI2VAdapter.pipeline_class and is_two_expert(index):
        return (
            "a Wan 2.2 I2V-A14B pipeline (WanImageToVideoPipeline with two experts), and two-expert image input is "
            "not supported yet"
        )
    return None


def adapter_class(path: str | Path, family: str | None = None) -> type:
    """The adapter class for a pipeline directory; checks every component folder is present.

    `family` ("wan", "wan2.2-ti2v", "hunyuanvideo") refuses a directory of another family with a one-line error.
    """
    index = model_index(path)
    name = str(index["_class_name"])
    if name not in ADAPTERS:  # adapters of installed packages (docs/own-model.md): a broken one never blocks the rest
        load_plugins()
    variant = unsupported_variant(index)
    if variant is not None:
        raise AccVideoError(
            f"{path} holds {variant}; pass a Wan 2.1 T2V or I2V, Wan 2.2 T2V-A14B, Wan 2.2 TI2V or HunyuanVideo T2V "
            "folder"
        )
    if name not in ADAPTERS:
        known = ", ".join(sorted(ADAPTERS))
        raise AccVideoError(
            f"{path} holds a {name}, which accvideo does not support; supported: {known} (another family takes an "
            "adapter of your own: docs/own-model.md)"
        )
    cls = next((c for n, test, c in VARIANTS if n == name and test(index)), ADAPTERS[name])
    if family is not None and cls.family != family:
        every = (*ADAPTERS.values(), *(c for _, _, c in VARIANTS))
        wanted = next((c.pipeline_class for c in every if c.family == family), family)
        raise AccVideoError(
            f"{path} holds a {name} ({cls.family}) but a {family} pipeline is expected; pass a "
            f"{wanted} diffusers folder"
        )
    missing = [c for c in cls.components if not (Path(path) / c).is_dir()]
    if missing:
        raise AccVideoError(f"{path} lacks the component folder(s) {', '.join(missing)}; re-save the whole pipeline")
    return cls


def size_multiple_of(cls: type, path: str | Path) -> int:
    """The size multiple of the folder at `path` for adapter class `cls`, before any weight is loaded (an adapter of
    the user's own without `folder_size_multiple`: its class's `size_multiple`, else 16)."""
    read = getattr(cls, "folder_size_multiple", None)
    return read(path) if read is not None else getattr(cls, "size_multiple", 16)


TEXT_PARTS = ("text_encoder", "text_encoder_2", "image_encoder")  # what LoadParts.text=False leaves out


def host_bytes(path: Path, dtype: torch.dtype, parts: LoadParts = WHOLE, only: tuple[str, ...] | None = None) -> int:
    """The bytes the components `parts` names (`only`: these component folders alone) take once loaded in `dtype`,
    from their safetensors headers alone (every tensor's shape; nothing is read past the header). A transformer built
    on the meta device takes none."""
    skip = set(TEXT_PARTS if not parts.text else ()) | ({"vae"} if not parts.vae else set())
    skip |= {"transformer", "transformer_2"} if parts.empty_transformer else set()
    size = torch.empty((), dtype=dtype).element_size()
    numel = 0
    folders = (p for p in path.iterdir() if p.is_dir() and p.name not in skip and (only is None or p.name in only))
    for component in sorted(folders):
        for file in sorted(component.glob("*.safetensors")):
            header = check_safetensors(file, "re-save or re-download the pipeline")
            numel += sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")
    return numel * size


def check_host_memory(path: Path, dtype: torch.dtype, parts: LoadParts = WHOLE) -> None:
    """Refuse, before reading any weight, a model that does not fit in the host memory free now: loaded on the CPU
    past it, the kernel's out-of-memory killer ends the process without a word (exit 137), minutes in."""
    free = available_memory()
    if free is None:  # no /proc/meminfo: nothing to compare with, so no header is read for it
        return
    need = host_bytes(path, dtype, parts)
    if need > free:
        gib, size = 2**30, torch.empty((), dtype=dtype).element_size()
        half = f", --dtype bfloat16 ({need / size * 2 / gib:.1f} GiB)" if size > 2 and need / size * 2 <= free else ""
        raise AccVideoError(
            f"the model in {path} takes {need / gib:.1f} GiB in {str(dtype).removeprefix('torch.')} on the CPU and "
            f"this machine has {free / gib:.1f} GiB of memory free; run it on a GPU (--device cuda){half}, or free "
            "memory"
        )


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def loader_cause(exc: BaseException, limit: int = 300) -> str:
    """What a loader's exception says, in one line that keeps the cause: diffusers' "Unable to load weights from
    checkpoint file for '<path>' at '<path>'" names the file twice and the cause not at all (it is chained), so the
    file is named once and the innermost exception's first line follows."""
    import re

    line = _first_line(exc)
    hit = re.match(r"Unable to load weights from checkpoint file for '(.*?)' at '\1'", line)
    if hit is None:
        return line[:limit]
    inner, seen = exc, {id(exc)}
    while (nxt := inner.__cause__ or inner.__context__) is not None and id(nxt) not in seen:
        seen.add(id(nxt))
        inner = nxt
    cause = _first_line(inner) if inner is not exc else "no reason given"
    return f"{hit[1]} does not load: {cause}"[:limit]


def load_adapter(
    path: str | Path,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    family: str | None = None,
    **kw,
) -> ModelAdapter:
    """Load the adapter for a local diffusers pipeline directory (of `family`, when given).

    Every config and weights file is checked first (input guard), so a damaged folder is one line, not a traceback
    from deep inside the loader; what the loader still refuses is one line too.
    """
    cls = adapter_class(path, family)
    check_model_folder(path, "re-save or re-download the pipeline")
    for component in sorted(p for p in Path(path).iterdir() if p.is_dir()):  # before any model is built from them
        check_config_sizes(component)
    if torch.device(device).type == "cpu":
        check_host_memory(Path(path), dtype, kw.get("parts", WHOLE))
    try:
        adapter = cls.load(Path(path), device=device, dtype=dtype, **kw)
    except Exception as exc:  # noqa: BLE001 - whatever the loader raises for a bad folder, one line
        if isinstance(exc, (AccVideoError, MemoryError, torch.OutOfMemoryError)) or "can't allocate memory" in str(exc):
            raise  # memory is a fault of the machine: the CLI says what to change
        check_interrupt()  # a Ctrl-C Python swallowed in an import (importlib's lock callback) broke it: stop
        raise AccVideoError(
            f"cannot load the pipeline in {path} ({loader_cause(exc)}); re-save or re-download it"
        ) from None
    own = folder_settings(path)
    if own.get("guidance") is not None:  # the folder's accvideo.json names its teacher's CFG scale
        adapter.default_guidance = float(own["guidance"])
    if own.get("guidance_2") is not None and hasattr(adapter, "default_guidance_2"):  # Wan 2.2 A14B's second
        adapter.default_guidance_2 = float(own["guidance_2"])
    return adapter
