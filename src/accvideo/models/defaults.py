"""Family defaults: the video a teacher makes when a command names none (frames, height x width, frame rate), its
negative prompt and guidance, read from the model folder, never from its path.

Precedence, for each setting: the command's value > a student's distilled size (frames, height and width recorded
in its student.json, or in a stock-diffusers export's accvideo_export.json) > the folder's `accvideo.json` > the
family's published defaults, which apply only to a transformer of a published width (Wan 2.1: 1,536 or 5,120; Wan 2.2
TI2V-5B: 3,072; HunyuanVideo: 3,072) > the built-in model's small clips (17 frames at 64x64, 8 fps, no negative
prompt). Tiny random test models are narrow, so they keep the small clips unless their `accvideo.json` says otherwise.
The published values are those of each family's own repository: Wan 2.1 and Wan 2.2 A14B (whose experts are Wan
2.1-wide) 81 frames at 480x832, 16 fps, the shared `sample_neg_prompt`; Wan 2.2 TI2V-5B 121 frames at 704x1280, 24
fps, the same negative prompt; HunyuanVideo 129 frames at 544x960, 24 fps.

`accvideo.json` (optional, at the pipeline's root) holds any of: frames, height, width, fps, negative_prompt, guidance
(the teacher's CFG scale; HunyuanVideo's embedded scalar is `embedded_guidance`; Wan 2.2 A14B's low-noise scale is
`guidance_2`), and HunyuanVideo's text settings
prompt_template, max_sequence_length, embedded_guidance (models/hunyuan.py).
"""

from __future__ import annotations

import json
import math
import string
from pathlib import Path

from accvideo.core.inputs import KeyGivenTwice, is_int, keys_once, parse_json, read_json, read_small_file
from accvideo.core.video import MAX_FPS, MAX_FRAMES, MAX_SIDE, check_video_size, largest_video
from accvideo.errors import AccVideoError

SETTINGS_FILE = "accvideo.json"
VIDEO_KEYS = ("frames", "height", "width", "negative_prompt", "fps")
TEXT_KEYS = ("prompt_template", "max_sequence_length", "embedded_guidance")
# HunyuanVideo pads every prompt to max_sequence_length tokens (memory and time grow with it): its pipeline uses 256
MAX_TEXT_TOKENS = 1024
MAX_PROMPT_CHARS = 20_000  # a negative prompt or template past this is no prompt (a 10 MB one took 3 GB and 38 s)
FIX = "fix or delete it"
KEYS = (*VIDEO_KEYS, "guidance", "guidance_2", *TEXT_KEYS)

# Wan 2.1's sample_neg_prompt (its repository's shared config; diffusers' WanPipeline examples use an English one)
WAN_NEGATIVE_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，"
    "丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，静止不动的画面，"
    "杂乱的背景，三条腿，背景人很多，倒着走"
)
SMALL = {"frames": 17, "height": 64, "width": 64, "negative_prompt": "", "fps": 8}  # the built-in model's clips
# family -> (published transformer widths, defaults): Wan 2.1 T2V at 480p; Wan 2.2 TI2V-5B at 720p (704 rows);
# HunyuanVideo at 540p with 129 frames
PUBLISHED: dict[str, tuple[tuple[int, ...], dict]] = {
    "wan": (
        (1536, 5120),
        {"frames": 81, "height": 480, "width": 832, "negative_prompt": WAN_NEGATIVE_PROMPT, "fps": 16},
    ),
    "wan2.2-ti2v": (
        (3072,),
        {"frames": 121, "height": 704, "width": 1280, "negative_prompt": WAN_NEGATIVE_PROMPT, "fps": 24},
    ),
    "hunyuanvideo": ((3072,), {"frames": 129, "height": 544, "width": 960, "negative_prompt": "", "fps": 24}),
}
FAMILY_NAMES = {"wan": "Wan 2.1", "wan2.2-ti2v": "Wan 2.2 TI2V", "hunyuanvideo": "HunyuanVideo"}


def _read(file: Path):
    """accvideo.json parsed, a key given twice refused (`"frames": 5, ... "frames": 9` used 9, silently), as the
    YAML and JSONL readers refuse it; one line naming the file for what else is wrong."""
    try:
        return parse_json(read_small_file(file).decode(), object_pairs_hook=keys_once)  # a FIFO: no hang
    except KeyGivenTwice as exc:
        raise AccVideoError(f"{file} gives {exc.args[0]!r} twice; keep one of them") from None
    except (OSError, ValueError):  # not JSON, not UTF-8, no small regular file
        read_json(file, FIX)  # says what is wrong (missing, unreadable, not JSON) in its words
        raise AccVideoError(f"{file} cannot be read; {FIX}") from None


def folder_settings(path: str | Path) -> dict:
    """The folder's accvideo.json (empty without one); unknown keys and wrong types are one line naming the file."""
    file = Path(path) / SETTINGS_FILE
    if not file.is_file():
        return {}
    raw = _read(file)
    if not isinstance(raw, dict):
        raise AccVideoError(f"{file} must hold a JSON object; {FIX}")
    unknown = set(raw) - set(KEYS)
    if unknown:
        raise AccVideoError(f"{file} has unknown keys {sorted(unknown)}; allowed: {', '.join(sorted(KEYS))}")
    for key in ("frames", "height", "width", "max_sequence_length", "fps"):
        if key in raw and (not isinstance(raw[key], int) or isinstance(raw[key], bool) or raw[key] < 1):
            raise AccVideoError(f"{file}: {key} must be a positive integer; got {raw[key]!r}")
    for key, most in (("fps", MAX_FPS), ("max_sequence_length", MAX_TEXT_TOKENS)):
        if key in raw and raw[key] > most:
            raise AccVideoError(f"{file}: {key} must be at most {most:,}; got {raw[key]}")
    for key in ("guidance", "guidance_2", "embedded_guidance"):
        value = raw.get(key, 0)  # JSON's NaN and 1e999 (inf) were taken, and sampled to NaN latents
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < math.inf:
            raise AccVideoError(f"{file}: {key} must be a finite number >= 0; got {value!r}")
    if "negative_prompt" in raw:
        check_text(raw["negative_prompt"], file, "negative_prompt")
    if "prompt_template" in raw:
        check_template(raw["prompt_template"], file)
    check_positions(raw, Path(path), file)
    return raw


def check_text(value, file: Path, key: str) -> None:
    """A string of at most MAX_PROMPT_CHARS characters, else one line naming the file and `key`."""
    if not isinstance(value, str):
        raise AccVideoError(f"{file}: {key} must be a string")
    if len(value) > MAX_PROMPT_CHARS:
        raise AccVideoError(
            f"{file}: {key} must be at most {MAX_PROMPT_CHARS:,} characters (a prompt, not a document); got "
            f"{len(value):,}"
        )


def check_template(value, file: Path) -> None:
    """HunyuanVideo's prompt_template: {"template": a string with one "{}" where the prompt goes and no other
    field, "crop_start": the template's tokens before the prompt (an int >= 0)}; the pipeline formats every prompt
    into it (a template without "{}" dropped every prompt, silently) and crops crop_start tokens off the front
    (models/hunyuan.py checks it against the template's token count once the tokenizer is at hand)."""
    key = "prompt_template"
    form = '{"template": "...{}...", "crop_start": N} (HunyuanVideo\'s: crop_start 95)'
    if not isinstance(value, dict) or "template" not in value or "crop_start" not in value:
        raise AccVideoError(f"{file}: {key} must be an object {form}; got {json.dumps(value)[:80]}")
    check_text(value["template"], file, f"{key} template")
    try:
        fields = [f[1:] for f in string.Formatter().parse(value["template"]) if f[1] is not None]
    except ValueError as exc:  # a lone "{" or "}" (write "{{" for a literal brace)
        raise AccVideoError(f"{file}: {key} template cannot be formatted ({exc}); {FIX}") from None
    if fields != [("", "", None)]:
        raise AccVideoError(
            f"{file}: {key} template must hold exactly one {{}} (where the prompt goes) and no other {{field}} "
            f"(write {{{{ for a literal brace); got {value['template'][:80]!r}"
        )
    crop = value["crop_start"]
    if not isinstance(crop, int) or isinstance(crop, bool) or crop < 0:
        raise AccVideoError(
            f"{file}: {key} crop_start must be an integer >= 0 (the template's tokens before the prompt); got "
            f"{json.dumps(crop)[:80]}"
        )


def _config(file: Path) -> dict:
    """A component's config.json as a dict; {} when absent or unreadable (the loader says what is wrong with it)."""
    try:
        data = parse_json(file.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def position_limits(path: Path) -> tuple[int, dict[str, int]]:
    """(rope_max_seq_len, {frames, height, width: the largest its position table indexes}) of a Wan folder's
    transformer, as models/base.py check_latent_shape computes them; (0, {}) when the configs do not say (or hold
    values the loader refuses in its own words)."""
    transformer, vae = _config(path / "transformer" / "config.json"), _config(path / "vae" / "config.json")
    limit, patch = transformer.get("rope_max_seq_len"), transformer.get("patch_size", [1, 2, 2])
    temporal, spatial = vae.get("scale_factor_temporal", 4), vae.get("scale_factor_spatial", 8)
    sizes = (limit, temporal, spatial, *patch) if isinstance(patch, list) and len(patch) == 3 else (0,)
    if not all(is_int(v) and v > 0 for v in sizes):
        return 0, {}
    return limit, largest_video(limit, patch, temporal, spatial)


def check_positions(raw: dict, path: Path, file: Path) -> None:
    """Frames, height and width from accvideo.json within the model's position table, refused naming the file (the
    loaded model's check named no file, so a user who gave no --frames looked for a flag)."""
    limit, limits = position_limits(path) if any(k in raw for k in ("frames", "height", "width")) else (0, {})
    for name, largest in limits.items():
        bound = MAX_FRAMES if name == "frames" else MAX_SIDE  # past it: the bounds check's line (fill_video)
        if largest < raw.get(name, 0) <= bound:
            raise AccVideoError(
                f"{file}: {name} {raw[name]} is too large for this model (more positions than its transformer's "
                f"rope_max_seq_len, {limit}); use {name} of at most {largest} there"
            )


def transformer_width(path: str | Path) -> int | None:
    """Heads x head dim of the folder's transformer (its config.json), or None when it does not say."""
    file = Path(path) / "transformer" / "config.json"
    cfg = read_json(file, "re-save or re-download the pipeline")
    if not isinstance(cfg, dict):
        raise AccVideoError(f"{file} must hold a JSON object; re-save or re-download the pipeline")
    heads, dim = cfg.get("num_attention_heads"), cfg.get("attention_head_dim")
    return heads * dim if isinstance(heads, int) and isinstance(dim, int) else None


def video_defaults(path: str | Path, family: str) -> tuple[dict, str]:
    """({frames, height, width, negative_prompt, fps}, where they come from) for a model folder of `family`."""
    values, source = dict(SMALL), "the built-in model's small clips"
    widths, published = PUBLISHED.get(family, ((), {}))
    if transformer_width(path) in widths:
        values, source = dict(published), f"{FAMILY_NAMES.get(family, family)} published defaults"
    own = {k: v for k, v in folder_settings(path).items() if k in VIDEO_KEYS}
    if own:
        values.update(own)
        source = f"{Path(path) / SETTINGS_FILE}" + ("" if len(own) == len(VIDEO_KEYS) else f", then {source}")
    return values, source


def _names(keys) -> str:
    """'frames, size, negative prompt and fps' for setting keys (height and width together: 'size')."""
    names = [k.replace("_", " ") for k in keys]
    if "height" in keys and "width" in keys:  # one word for both: "frames, size and negative prompt"
        names = [n for n in names if n != "width"]
        names[names.index("height")] = "size"
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def fill_video(cfg, path: str | Path, family: str, distilled: tuple[dict, Path] | None = None):
    """`cfg` (a frozen dataclass with frames, height, width, negative_prompt; None: the model's) with every None
    filled from the model folder's defaults, a student's frames and size from the size it was `distilled` at ({frames,
    height, width}, the file recording it) first, and which settings came from where ("frames and size from the size
    it was distilled at (S); negative prompt from the built-in model's small clips"; None when the command gave all)."""
    from dataclasses import replace

    values, source = video_defaults(path, family)
    missing = {k: values[k] for k in VIDEO_KEYS if getattr(cfg, k) is None}
    if not missing:
        return cfg, None
    own = {k: v for k, v in (distilled[0] if distilled else {}).items() if k in missing}
    missing.update(own)
    groups = [(list(own), f"the size it was distilled at ({distilled[1]})")] if own else []
    rest = [k for k in missing if k not in own]
    groups += [(rest, source)] if rest else []
    text = "; ".join(f"{_names(keys)} from {where}" for keys, where in groups)
    try:
        return replace(cfg, **missing), text
    except ValueError as exc:  # the config's own bounds on a value from accvideo.json (was: a traceback)
        raise size_error(exc, text) from None


def check_form(cfg, frame_step: int, multiple: int, source: str | None = None) -> None:
    """`cfg`'s frames, height and width against a model's form (frames = frame_step*k + 1, sides multiples of
    `multiple`), as one line naming `source` (where values the command did not give came from)."""
    try:
        check_video_size(cfg.frames, cfg.height, cfg.width, frame_step, multiple)
    except ValueError as exc:
        raise size_error(exc, source) from None


def size_error(exc: ValueError, source: str | None) -> AccVideoError:
    """A frames or size check's line, naming where the values came from when the command did not give them all
    (`frames must be of the form 4k+1 ...; got 18` named no file when accvideo.json held the 18)."""
    name = str(exc).split(" ", 1)[0]  # frames, height or width: the value the check refused
    # "frames and size; fps" (the ones not given, of each source: "frames and size from X; fps from Y")
    values = "; ".join(part.split(" from ", 1)[0] for part in source.split("; ")) if source else ""
    came = name in values or (name in ("height", "width") and "size" in values)
    where = f" ({source}; fix it there or give it on the command line)" if came else ""
    return AccVideoError(f"{exc}{where}")


def _second(plan) -> str:
    """', guidance_2 G below boundary_ratio B' for a two-expert plan (Wan 2.2 A14B), else ''."""
    if getattr(plan, "boundary_ratio", None) is None:
        return ""
    return f" (guidance_2 {plan.guidance_2:g} below boundary_ratio {plan.boundary_ratio:g})"


def settings_line(cfg, plan, source: str | None) -> str:
    """One line: the resolved video, sampling and guidance settings, and where the model's defaults came from."""
    neg = plan.negative_prompt
    shown = f"{neg[:24]}..." if len(neg) > 24 else neg
    origin = f" ({source})" if source else ""
    return (
        f"settings: {cfg.frames} frames at {cfg.height}x{cfg.width} ({cfg.fps} fps), {plan.steps} steps, "
        f"shift {plan.shift:g}, "
        f"guidance {plan.guidance:g}{_second(plan)}, negative prompt {shown!r}{origin}"
    )
