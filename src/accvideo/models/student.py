"""Reading the student artifact (to use, not to resume): weights in stock diffusers formats + student.json.

    student/
      student.json                      format, family, key sigmas (t'_m = 1 .. t'_0 = 0), teacher identity and folder,
                                        LoRA rank/alpha/targets, the size it was distilled at (frames, height,
                                        width: what `sample` and the export make by default), each transformer's
                                        weights identity (checked on load), iteration and samples
      transformer/                      full students: `WanTransformer3DModel.from_pretrained` loads it
      pytorch_lora_weights.safetensors  LoRA students: `pipe.load_lora_weights` loads it onto the teacher
      transformer_2/, pytorch_lora_weights_2.safetensors   Wan 2.2 A14B students: the low-noise expert's

The writer, `export_student`, is the distillation's (distill/student.py).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import warnings
from itertools import pairwise
from pathlib import Path

import torch

from accvideo.core.inputs import (
    check_safetensors,
    first_non_finite,
    is_int,
    is_number,
    load_safetensors,
    parse_json,
    read_json,
)
from accvideo.core.outputs import check_not_being_written
from accvideo.core.video import check_video_size
from accvideo.errors import AccVideoError
from accvideo.models import check_host_memory, load_adapter
from accvideo.models.base import WHOLE, LoadParts
from accvideo.models.identity import LEGACY_PREFIX, PREFIX, sampled_identity, teacher_identity

FORMAT = "accvideo.student/1"
INFO = "student.json"
LORA_WEIGHTS = "pytorch_lora_weights.safetensors"
FULL_WEIGHTS = "transformer"
# Wan 2.2 A14B students (student.json "experts"): one folder or LoRA file per expert; the second expert's LoRA loads
# with diffusers' `pipe.load_lora_weights(..., load_into_transformer_2=True)`
LORA_FILES = {FULL_WEIGHTS: LORA_WEIGHTS, "transformer_2": "pytorch_lora_weights_2.safetensors"}
STUDENT_GUIDANCE = 1.0  # AccVideo students sample without CFG: guidance is baked into the targets (docs/method.md 2)
EXPORT_MARKER = "accvideo_export.json"  # written by `accvideo export` in every folder it makes
WEIGHTS_ID = "weights_identity"  # student.json: each transformer's weights' sampled identity, as saved
STUDENT_PREFIX = "student1:"  # student_identity of a student that records WEIGHTS_ID

# A student that recorded the older, full-hash identity ('sha256:') is checked on load only when its teacher is up to
# this size (hashing a 14B checkpoint takes about a minute); export checks it at any size. The sampled identity of
# newer students costs milliseconds and is checked on every load.
CHECK_BYTES = 2 << 30
REDO = "rerun the distill command that wrote it (it resumes) or restore the run folder"
# a LoRA file whose layers are not its teacher's passes the header checks a rerun of distill makes: removed, it is
# saved again from the run's checkpoint
REFIT = "remove it and rerun the distill command that wrote it (it saves the student again), or restore the run folder"
# the identity `distill` records (models/identity.py): the sampled one, or the older full hash
TEACHER_ID = re.compile(rf"({re.escape(PREFIX)}|{re.escape(LEGACY_PREFIX)})[0-9a-f]{{64}}")
# a LoRA file's tensor names as diffusers saves a transformer's adapter (peft's portable names, prefixed)
LORA_KEY = re.compile(r"transformer\.(?P<layer>.+)\.(?:lora_(?P<part>[AB])\.weight|lora_embedding_(?P<emb>[AB]))")
LORA_META = "lora_adapter_metadata"  # diffusers' safetensors metadata key for the adapter's LoraConfig


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
    # the stock call's size, diffusers' names: the student's distilled size where the export says so (exports made
    # before, or of a student that records none, hold its teacher folder's default there, not a size of its own)
    size = info.get("size") if info.get("size_distilled") is True else None
    names = {"num_frames": "frames", "height": "height", "width": "width"}
    whole = isinstance(size, dict) and size.keys() == names.keys()
    size = {ours: size[k] for k, ours in names.items()} if whole else {}
    return {
        "key_sigmas": [float(s) for s in sigmas],
        **({"shift": float(shift)} if is_number(shift) else {}),
        **({"size": size} if size and all(is_int(v) and v > 0 for v in size.values()) else {}),
    }


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
    check_teacher_id(info.get("teacher"), path)
    if info["lora"] is not None:
        check_lora_settings(info["lora"], path)
    if "size" in info:  # older students record none: they sample at their teacher folder's size
        check_size(info["size"], path)
    if WEIGHTS_ID in info:  # older students record none: their files are checked by their headers and shapes alone
        ids = info[WEIGHTS_ID]
        if (
            not isinstance(ids, dict)
            or sorted(ids) != sorted(expert_names(info))
            or not all(
                isinstance(v, str) and re.fullmatch(rf"{re.escape(PREFIX)}[0-9a-f]{{64}}", v) for v in ids.values()
            )
        ):
            raise AccVideoError(f"{path}: {WEIGHTS_ID} must map {expert_names(info)} to identities; {REDO}")
    return info


def weights_identity(student_dir: Path, info: dict) -> dict[str, str]:
    """{transformer name: the sampled identity (models/identity.py) of its LoRA file, or of its folder's weights
    files (config.json apart: its values are checked against the weights)}: what a save records in student.json, so
    files replaced, swapped between Wan 2.2 A14B's experts, or copied in from another run are refused rather than
    sampled as this student (an edit between the sampled bytes is not noticed)."""
    out = {}
    for name in expert_names(info):
        if info["lora"] is not None:
            out[name] = sampled_identity(Path(student_dir) / LORA_FILES[name])
        else:
            files = sorted((Path(student_dir) / name).glob("*.safetensors"))
            joined = "".join(sampled_identity(f) for f in files).encode()
            out[name] = f"{PREFIX}{hashlib.sha256(joined).hexdigest()}"
    return out


def check_weights_identity(student_dir: Path, info: dict) -> None:
    """Refuse weights that are not the ones student.json recorded at the save (students that record them); run
    after the more specific checks (a LoRA file of other layers, a non-finite tensor), whose lines say more."""
    recorded = info.get(WEIGHTS_ID)
    if recorded is None:
        return
    for name, found in weights_identity(student_dir, info).items():
        if found != recorded[name]:
            entry = LORA_FILES[name] if info["lora"] is not None else name
            raise AccVideoError(
                f"{Path(student_dir) / entry} is not the {name} weights its student.json was saved with (replaced, "
                f"swapped with another file or edited since); {REDO}"
            )


def student_identity(student_dir: Path, info: dict) -> str:
    """What a student is, wherever it and its teacher lie: its student.json without the teacher's folder when it
    records its weights' identities (checked on every load), else (older students) the sampled identity of its
    whole folder."""
    if WEIGHTS_ID not in info:
        return sampled_identity(student_dir)
    canonical = json.dumps({k: v for k, v in info.items() if k != "teacher_dir"}, sort_keys=True).encode()
    return f"{STUDENT_PREFIX}{hashlib.sha256(canonical).hexdigest()}"


def check_size(size, path: Path) -> None:
    """student.json's distilled size: {frames, height, width}, whole numbers within the video bounds."""
    names = ("frames", "height", "width")
    if not isinstance(size, dict) or sorted(size) != sorted(names) or not all(is_int(size[k]) for k in names):
        raise AccVideoError(
            f"{path}: size must be {{frames, height, width}} as whole numbers, not {size!r:.80}; {REDO}"
        )
    try:
        check_video_size(size["frames"], size["height"], size["width"], 1, 1)  # bounds; the form once the model's known
    except ValueError as exc:
        raise AccVideoError(f"{path}: size {exc}; {REDO}") from None


def check_teacher_id(teacher, path: Path) -> None:
    """The teacher identity a student records: without it, any teacher folder was taken (another teacher's VAE and
    text encoder under the student, exit 0)."""
    if not isinstance(teacher, str) or not TEACHER_ID.fullmatch(teacher):
        what = "no teacher" if teacher is None else f"the teacher {teacher!r:.40}"
        raise AccVideoError(
            f"{path} is damaged: it records {what}, not the identity of the teacher it was distilled from "
            f"('{PREFIX}' and 64 hex digits), so no teacher folder can be checked; {REDO}"
        )


def check_lora_settings(lora, path: Path) -> None:
    """student.json's LoRA settings: a positive whole rank, a positive alpha and the target module names."""
    rank, alpha, targets = (lora.get(k) if isinstance(lora, dict) else None for k in ("rank", "alpha", "targets"))
    ok = is_int(rank) and rank > 0 and is_number(alpha) and 0 < alpha < math.inf
    ok = ok and isinstance(targets, list) and bool(targets) and all(isinstance(t, str) and t for t in targets)
    if not ok:
        raise AccVideoError(
            f"{path}: lora must be null or the adapter's settings (a rank, an alpha and the target module names, "
            f'e.g. {{"rank": 16, "alpha": 16.0, "targets": ["to_q"]}}), not {lora!r:.80}; {REDO}'
        )


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
            lora_layers(files[0], info["lora"])
        else:
            files = sorted((student_dir / name).glob("*.safetensors"))
            if not files:
                raise AccVideoError(f"{student_dir / name} holds no weights; {REDO}")
            for f in files:
                check_safetensors(f, REDO)
            check_full_config(student_dir / name)
        out[name] = files
    return out


def check_full_config(folder: Path) -> None:
    """A full student's config.json describes its weights, as a pipeline folder's is checked when loaded (and, here,
    both ways and by shape): a `num_layers` 1 over two blocks' weights passed `export`, whose output `sample` then
    refused."""
    module = _config_module(folder)
    if module is None:
        return
    from accvideo.models.base import weight_mismatch

    stored = {k: v.get("shape") for f in sorted(folder.glob("*.safetensors")) for k, v in _tensors(f).items()}
    want = {k: list(v.shape) for k, v in module.state_dict().items()}
    unused, missing = weight_mismatch(module, set(stored))  # the loaded pipeline's check, and shapes besides
    wrong = sorted(k for k in want if k in stored and stored[k] != want[k])
    problems = [
        (unused, "stored tensor(s) are not used by the model it describes"),
        (missing, "tensor(s) the model it describes needs are not stored"),
        (wrong, "stored tensor(s) are not of the shape the model it describes needs"),
    ]
    for names, what in problems:
        if names:
            raise AccVideoError(
                f"{folder}/config.json does not match its weights: {len(names)} {what} (e.g. {names[0]}); restore "
                "the config.json or the run folder, or rerun the distill command that wrote it (it resumes)"
            )


def _config_module(folder: Path):
    """The diffusers model `folder`'s config.json describes, built on the meta device; None when its class is not
    one of diffusers' (an adapter of the user's own: the load says what is wrong)."""
    import diffusers

    from accvideo.models.base import check_config_sizes, empty_module

    config = folder / "config.json"
    if not config.is_file():
        raise AccVideoError(f"{folder} holds weights but no config.json; {REDO}")
    # a billion blocks built on the meta device for minutes all the same
    check_config_sizes(folder, "restore the config.json or the run folder, or rerun the distill command that wrote it")
    data = read_json(config, REDO)
    cls = getattr(diffusers, str(data.get("_class_name")) if isinstance(data, dict) else "", None)
    if not (isinstance(cls, type) and issubclass(cls, diffusers.ModelMixin)):
        return None
    try:
        return empty_module(cls, folder)
    except Exception as exc:  # noqa: BLE001 - a config its class cannot take: one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise AccVideoError(f"{config} does not build a {cls.__name__} ({first}); restore it; {REDO}") from None


def _tensors(path: Path) -> dict[str, dict]:
    """A checked safetensors file's tensor entries (name -> dtype, shape, offsets), its metadata left out."""
    return {k: v for k, v in check_safetensors(path, REDO).items() if k != "__metadata__"}


def lora_layers(path: Path, lora: dict) -> dict[str, dict[str, list]]:
    """The layers a LoRA student's file holds (layer name -> {"A": shape, "B": shape}), from its safetensors header
    alone, checked against student.json's LoRA settings: diffusers-named LoRA tensors only, each of a targeted
    layer, of the recorded rank, and the alpha and targets diffusers will load it with being the recorded ones."""
    header = check_safetensors(path, REDO)
    layers: dict[str, dict[str, list]] = {}
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        match = LORA_KEY.fullmatch(key)
        if match is None:
            raise AccVideoError(
                f"{path} holds {key!r:.80}, which is no LoRA weight of a transformer (not the student's LoRA "
                f"file?); {REDO}"
            )
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if not isinstance(shape, list) or len(shape) < 2 or not all(isinstance(n, int) for n in shape):
            raise AccVideoError(f"{path} has a damaged safetensors header ({key}: shape {shape!r:.40}); {REDO}")
        layers.setdefault(match["layer"], {})[match["part"] or match["emb"]] = shape
    if not layers:
        raise AccVideoError(f"{path} holds no LoRA weights; {REDO}")
    _check_lora_layers(path, layers, lora)
    _check_lora_metadata(path, header.get("__metadata__"), lora)
    return layers


def targets_layer(name: str, targets) -> bool:
    """Whether `targets` name the layer `name` as peft matches them: the whole name, or its last dotted parts."""
    return any(name == t or name.endswith(f".{t}") for t in targets)


def _check_lora_layers(path: Path, layers: dict, lora: dict) -> None:
    for name, parts in sorted(layers.items()):
        if not targets_layer(name, lora["targets"]):
            raise AccVideoError(
                f"{path} holds LoRA weights for {name}, which its student.json's targets {lora['targets']} do not "
                f"name; {REDO}"
            )
        if set(parts) != {"A", "B"}:
            raise AccVideoError(f"{path} holds only lora_{''.join(parts)} of {name}; {REDO}")
        ranks = {parts["A"][0], parts["B"][1]}
        if ranks != {lora["rank"]}:
            found = "/".join(str(r) for r in sorted(ranks))
            raise AccVideoError(
                f"{path} holds rank-{found} LoRA weights ({name}) but its student.json says rank {lora['rank']}: "
                f"not this student's LoRA file; {REDO}"
            )


def _check_lora_metadata(path: Path, metadata, lora: dict) -> None:
    """The rank, alpha and targets diffusers builds the adapter with (the file's metadata; without any, alpha =
    rank) are student.json's: another alpha scales every update (exit 0, another model)."""
    raw = metadata.get(LORA_META) if isinstance(metadata, dict) else None
    if raw is None:
        if lora["alpha"] != lora["rank"]:
            raise AccVideoError(
                f"{path} records no LoRA alpha, so diffusers loads it at alpha = rank ({lora['rank']}), but its "
                f"student.json says alpha {lora['alpha']}; {REDO}"
            )
        return
    try:
        stored = parse_json(raw)
    except (TypeError, ValueError):  # no text, or no JSON (nested past the recursion limit included)
        stored = None
    stored = stored if isinstance(stored, dict) else {}
    want = {"r": lora["rank"], "lora_alpha": lora["alpha"], "target_modules": sorted(lora["targets"])}
    for key, value in want.items():
        got = stored.get(f"transformer.{key}")
        got = sorted(got) if key == "target_modules" and isinstance(got, list) else got
        if got != value:
            raise AccVideoError(
                f"{path} records {key} {got!r:.60} in its {LORA_META}, but its student.json says {value!r:.60}: "
                f"not this student's LoRA file; {REDO}"
            )


def check_lora_fits(path: Path, layers: dict, transformer: torch.nn.Module, targets) -> None:
    """The file's layers are exactly the layers of `transformer` that `targets` name, each of their shape: a file
    of other layers (renamed, another model's) loaded nothing, and the student sampled as its teacher (exit 0)."""
    wanted = {n: m for n, m in transformer.named_modules() if targets_layer(n, targets)}
    extra = sorted(set(layers) - set(wanted))
    if extra:
        raise AccVideoError(
            f"{path} holds LoRA weights for {len(extra)} layer(s) its teacher's transformer lacks (e.g. {extra[0]}): "
            f"not this student's LoRA file; {REFIT}"
        )
    missing = sorted(set(wanted) - set(layers))
    if missing:
        raise AccVideoError(
            f"{path} holds no LoRA weights for {len(missing)} of the {len(wanted)} layers its targets {targets} "
            f"name (e.g. {missing[0]}); {REFIT}"
        )
    for name, module in sorted(wanted.items()):
        _check_lora_shape(path, name, module, layers[name])


def _check_lora_shape(path: Path, name: str, module: torch.nn.Module, parts: dict) -> None:
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() < 2:
        return  # a layer peft cannot wrap: its own load says so
    rows, cols = (1, 0) if isinstance(module, torch.nn.Embedding) else (0, 1)
    if parts["A"][1] != weight.shape[cols] or parts["B"][0] != weight.shape[rows]:
        raise AccVideoError(
            f"{path}: the LoRA weights of {name} are for a layer of {parts['A'][1]} inputs and {parts['B'][0]} "
            f"outputs, its teacher's has {weight.shape[cols]} and {weight.shape[rows]}; {REFIT}"
        )


def check_lora_on_teacher(student_dir: Path, info: dict, teacher_dir: Path) -> None:
    """A LoRA student's files against its teacher's transformers built on the meta device from their configs (no
    weight read): what `load_student` checks on the loaded ones, for `export`."""
    for name in expert_names(info):
        transformer = _config_module(Path(teacher_dir) / name)
        if transformer is not None:
            path = Path(student_dir) / LORA_FILES[name]
            check_lora_fits(path, lora_layers(path, info["lora"]), transformer, info["lora"]["targets"])


def student_weights(student_dir: Path, info: dict) -> list[Path]:
    """The student's weights files, each checked whole."""
    return [f for files in student_files(student_dir, info).values() for f in files]


def check_finite(path: Path, tensors=None) -> None:
    """Refuse a student weights file holding a NaN or infinite value: it samples NaN latents, and an export would pass
    it on. `tensors` (name -> tensor) when the file is already in memory; else read one tensor at a time."""
    if tensors is None:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            bad = first_non_finite((name, f.get_tensor(name)) for name in f.keys())  # noqa: SIM118 - not iterable
    else:
        bad = first_non_finite(tensors.items())
    if bad is not None:
        raise _not_finite(path, bad)


def _not_finite(path: Path, name: str) -> AccVideoError:
    return AccVideoError(
        f"{path}: {name} holds NaN or infinite values (a damaged student, or one saved by a run that diverged); "
        f"remove the student/ folder and rerun the distill command that wrote it (it saves the student again "
        "from its last checkpoint), or restore the run folder"
    )


def check_part(path: Path, name: str, part: torch.Tensor) -> None:
    """`parallel.load_weights`' and `tensorfile.copy_safetensors`' check: each tensor of a student's file finite, as
    stored (before a cast), in check_finite's line, as it is read for its use (the file read once, not twice)."""
    if first_non_finite([(name, part)]) is not None:
        raise _not_finite(path, name)


def _fill_full(transformer, student_dir: Path, paths: list[Path], device) -> None:
    """Fill a transformer built on the meta device from a full student's files, one tensor at a time and on
    `device` directly: the teacher's weights, replaced whole, are never read, and no second copy is held in host
    memory (a 14B student read twice, held twice, before). The files must hold the teacher's transformer's weights
    both ways and at their shapes (check_full_fits)."""
    from safetensors import safe_open

    from accvideo.core.parallel import load_weights

    check_full_fits(transformer, student_dir, paths)
    load_weights(transformer, paths, torch.device(device), check=check_part)
    buffers = dict(transformer.named_buffers())  # persistent ones (none in diffusers' video models) as stored
    for f in paths:
        with safe_open(str(f), framework="pt") as h, torch.no_grad():
            for name in (k for k in h.keys() if k in buffers):  # noqa: SIM118 - not iterable
                stored = h.get_tensor(name)
                check_part(f, name, stored)
                buffers[name].copy_(stored)


def check_full_fits(transformer, student_dir: Path, paths: list[Path]) -> None:
    """A full student's files (headers alone) against `transformer` (built on the meta device): its weights both ways
    and at their shapes, as load_state_dict's strict check had them (`check_full_config` compared them with the
    student's own config.json only, and a student of more blocks lost the extra ones without a word)."""
    from safetensors import safe_open

    stored: dict[str, list[int]] = {}
    for f in paths:
        with safe_open(str(f), framework="pt") as h:
            stored.update({k: list(h.get_slice(k).get_shape()) for k in h.keys()})  # noqa: SIM118 - not iterable
    wanted = {k: list(v.shape) for k, v in transformer.state_dict().items()}
    if stored != wanted:
        missing, extra = sorted(wanted.keys() - stored.keys()), sorted(stored.keys() - wanted.keys())
        shaped = sorted(k for k in wanted.keys() & stored.keys() if wanted[k] != stored[k])
        what = (
            f"missing {missing[0]}"
            if missing
            else f"unexpected {extra[0]}"
            if extra
            else f"{shaped[0]} is {stored[shaped[0]]}, the teacher's {wanted[shaped[0]]}"
        )
        raise AccVideoError(
            f"{student_dir}: the student does not fit its teacher ({len(missing)} weights missing, {len(extra)} "
            f"unexpected, {len(shaped)} of another shape; {what}); {REDO}"
        )


def full_transformer(cls, folder: Path) -> torch.nn.Module:
    """A full student's transformer (diffusers class `cls`, its folder's config.json) on the CPU in float32, as
    `cls.from_pretrained(folder)` loads it, each tensor checked finite as it is read (`_fill_full`): an export reads
    the weights once, where check_finite and then from_pretrained read them twice."""
    from accvideo.models.base import empty_module

    folder = Path(folder)
    transformer = empty_module(cls, folder)
    _fill_full(transformer, folder, sorted(folder.glob("*.safetensors")), "cpu")
    transformer.register_to_config(_name_or_path=str(folder))  # as from_pretrained records it (a saved config.json)
    return transformer.eval()


def _folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def check_teacher(student_dir: Path, info: dict, teacher_dir: Path) -> None:
    """Refuse a teacher folder that is not the one the student was distilled from (student.json's identity)."""
    check_teacher_id(info.get("teacher"), Path(student_dir) / INFO)
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
    recorded = Path(info["teacher_dir"])
    what = "is not a diffusers pipeline folder (no model_index.json)" if recorded.exists() else "is gone"
    raise AccVideoError(
        f"the student's teacher folder {recorded} {what}; put the teacher pipeline (identity "
        f"{info['teacher'][:19]}...) there or in {Path(student_dir) / 'teacher'}"
    )


def load_student(student_dir: str | Path, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
    """(adapter running the student, student.json): the teacher's pipeline with the student's transformer weights."""
    student_dir = Path(student_dir)
    info = read_student_info(student_dir)
    # a full student replaces the teacher's transformer whole: built empty, filled from the student's files alone
    full = info["lora"] is None
    parts = LoadParts(empty_transformer=True, empty_experts=True) if full else WHOLE
    teacher_dir = teacher_dir_of(student_dir, info)
    if full and torch.device(device).type == "cpu":  # the student's weights fill the empty transformer: counted too
        check_host_memory(teacher_dir, dtype, WHOLE)
    check_identity_first(student_dir, info, teacher_dir)  # before minutes of loading a 14B teacher and student
    adapter = load_adapter(teacher_dir, device=device, dtype=dtype, parts=parts)
    if adapter.family != info["family"]:
        raise AccVideoError(
            f"{student_dir} holds a {info['family']} student but its teacher folder {info['teacher_dir']} is a "
            f"{adapter.family} pipeline; put the student's own teacher there, or {REDO}"
        )
    files = student_files(student_dir, info)
    if bool(info.get("experts")) != (getattr(adapter, "boundary_ratio", None) is not None):
        raise AccVideoError(f"{student_dir}: its experts do not match its teacher folder's; {REDO}")
    if info["lora"] is not None:
        for name in files:
            check_finite(files[name][0])
            _load_lora(adapter.pipe, student_dir, name, info["lora"])
        adapter.pipe.fuse_lora(components=list(files))  # a student samples at the base model's cost
        adapter.pipe.unload_lora_weights()
    elif full and all(any(p.is_meta for p in getattr(adapter.pipe, name).parameters()) for name in files):
        for name, paths in files.items():  # each expert of Wan 2.2 A14B (transformer, transformer_2) from its files
            _fill_full(getattr(adapter.pipe, name), student_dir, paths, device)
    else:  # a family whose loader builds the transformer whole: its weights replaced in place
        for name, paths in files.items():
            state = {}
            for f in paths:
                tensors = load_safetensors(f, REDO)
                check_finite(f, tensors)
                state.update(tensors)
            try:
                getattr(adapter.pipe, name).load_state_dict(state, strict=True)
            except RuntimeError as exc:
                raise AccVideoError(
                    f"{student_dir}: the student does not fit its teacher ({str(exc).splitlines()[0]})"
                ) from None
    adapter.transformer.requires_grad_(False).eval()
    return adapter, info


def check_identity_first(student_dir: Path, info: dict, teacher_dir: Path) -> None:
    """check_weights_identity before any weight loads or is written (load_student, export). A student it refuses is
    first given the lines that say more, from headers and configs (a LoRA file of other layers, a full student of
    another architecture) and then from its tensors (a NaN or infinite one), as the load would give them: only a
    refused student's files are read for it."""
    try:
        check_weights_identity(student_dir, info)
    except AccVideoError:
        files = student_files(student_dir, info)
        if info["lora"] is not None:
            check_lora_on_teacher(student_dir, info, teacher_dir)
        else:
            for name, paths in files.items():
                module = _config_module(Path(teacher_dir) / name)
                if module is not None:
                    check_full_fits(module, student_dir, paths)
        for paths in files.values():
            for f in paths:
                check_finite(f)
        raise


def _load_lora(pipe, student_dir: Path, name: str, lora: dict) -> None:
    """Load the LoRA file of transformer `name` onto the teacher's (the second expert's into transformer_2, as
    diffusers' Wan LoRA loader does), checked before (the file's layers against the transformer's) and after
    (every targeted layer took its weights); whatever diffusers or peft raise is one line."""
    path, transformer = student_dir / LORA_FILES[name], getattr(pipe, name)
    check_lora_fits(path, lora_layers(path, lora), transformer, lora["targets"])
    second = {"load_into_transformer_2": True} if name != FULL_WEIGHTS else {}
    try:
        with warnings.catch_warnings():  # checked both ways here (check_lora_fits, check_lora_loaded): its multi-line
            # "inconsistency ... can be ignored" (Wan I2V's add_k_proj / add_v_proj, which diffusers pads) at every load
            warnings.filterwarnings("ignore", message="While injecting the PEFT adapters", category=RuntimeWarning)
            pipe.load_lora_weights(str(student_dir), weight_name=path.name, adapter_name="student", **second)
    except Exception as exc:  # noqa: BLE001 - whatever the loader raises for a bad file, one line
        if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
            raise  # a fault of the machine: the CLI says what to change
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise AccVideoError(f"{path} does not load onto its teacher's {name} ({first}); {REFIT}") from None
    check_lora_loaded(path, transformer, lora["targets"])


def check_lora_loaded(path: Path, transformer: torch.nn.Module, targets, adapter: str = "student") -> None:
    """Every layer `targets` name carries the adapter: peft skips a layer whose weights are not in the file with a
    warning that says it "can be ignored"."""
    wanted = [n for n, _ in transformer.named_modules() if targets_layer(n, targets) and not n.endswith(".base_layer")]
    bare = [n for n in wanted if adapter not in getattr(transformer.get_submodule(n), "lora_A", {})]
    bare = [n for n in bare if adapter not in getattr(transformer.get_submodule(n), "lora_embedding_A", {})]
    if bare:
        raise AccVideoError(
            f"{path} gave no LoRA weights to {len(bare)} of the {len(wanted)} layers its targets name (e.g. "
            f"{bare[0]}); {REFIT}"
        )
