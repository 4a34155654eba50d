"""Family defaults: the video a teacher makes when a command names none (frames, height x width, frame rate), its
negative prompt and guidance, read from the model folder, never from its path.

Precedence, for each setting: the command's value > the folder's `accvideo.json` > the family's published defaults,
which apply only to a transformer of a published width (Wan 2.1: 1,536 or 5,120; Wan 2.2 TI2V-5B: 3,072;
HunyuanVideo: 3,072) > the built-in model's small clips (17 frames at 64x64, 8 fps, no negative prompt). Tiny random
test models are narrow, so they keep the small clips unless their `accvideo.json` says otherwise. The published values
are those of each family's own repository: Wan 2.1 and Wan 2.2 A14B (whose experts are Wan 2.1-wide) 81 frames at
480x832, 16 fps, the shared `sample_neg_prompt`; Wan 2.2 TI2V-5B 121 frames at 704x1280, 24 fps, the same negative
prompt; HunyuanVideo 129 frames at 544x960, 24 fps.

`accvideo.json` (optional, at the pipeline's root) holds any of: frames, height, width, fps, negative_prompt, guidance
(the teacher's CFG scale; HunyuanVideo's embedded scalar is `embedded_guidance`; Wan 2.2 A14B's low-noise scale is
`guidance_2`), and HunyuanVideo's text settings
prompt_template, max_sequence_length, embedded_guidance (models/hunyuan.py).
"""

from __future__ import annotations

import math
from pathlib import Path

from accvideo.core.inputs import read_json
from accvideo.core.video import MAX_FPS, check_video_size
from accvideo.errors import AccVideoError

SETTINGS_FILE = "accvideo.json"
VIDEO_KEYS = ("frames", "height", "width", "negative_prompt", "fps")
TEXT_KEYS = ("prompt_template", "max_sequence_length", "embedded_guidance")
MAX_TEXT_TOKENS = 65_536  # past any text encoder's context (HunyuanVideo's pads every prompt to it: memory)
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


def folder_settings(path: str | Path) -> dict:
    """The folder's accvideo.json (empty without one); unknown keys and wrong types are one line naming the file."""
    file = Path(path) / SETTINGS_FILE
    if not file.is_file():
        return {}
    raw = read_json(file, "fix or delete it")
    if not isinstance(raw, dict):
        raise AccVideoError(f"{file} must hold a JSON object; fix or delete it")
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
    if "negative_prompt" in raw and not isinstance(raw["negative_prompt"], str):
        raise AccVideoError(f"{file}: negative_prompt must be a string")
    return raw


def transformer_width(path: str | Path) -> int | None:
    """Heads x head dim of the folder's transformer (its config.json), or None when it does not say."""
    file = Path(path) / "transformer" / "config.json"
    cfg = read_json(file, "re-save or re-download the pipeline")
    if not isinstance(cfg, dict):
        raise AccVideoError(f"{file} must hold a JSON object; re-save or re-download the pipeline")
    heads, dim = cfg.get("num_attention_heads"), cfg.get("attention_head_dim")
    return heads * dim if isinstance(heads, int) and isinstance(dim, int) else None


def video_defaults(path: str | Path, family: str) -> tuple[dict, str]:
    """({frames, height, width, negative_prompt}, where they come from) for a model folder of `family`."""
    values, source = dict(SMALL), "the built-in model's small clips"
    widths, published = PUBLISHED.get(family, ((), {}))
    if transformer_width(path) in widths:
        values, source = dict(published), f"{FAMILY_NAMES.get(family, family)} published defaults"
    own = {k: v for k, v in folder_settings(path).items() if k in VIDEO_KEYS}
    if own:
        values.update(own)
        source = f"{Path(path) / SETTINGS_FILE}" + ("" if len(own) == len(VIDEO_KEYS) else f", then {source}")
    return values, source


def fill_video(cfg, path: str | Path, family: str):
    """`cfg` (a frozen dataclass with frames, height, width, negative_prompt; None: the model's) with every None
    filled from the model folder's defaults, and which settings came from where ("negative prompt from the built-in
    model's small clips"; None when the command gave all)."""
    from dataclasses import replace

    values, source = video_defaults(path, family)
    missing = {k: values[k] for k in VIDEO_KEYS if getattr(cfg, k) is None}
    if not missing:
        return cfg, None
    names = [k.replace("_", " ") for k in missing]  # "frames, size, negative prompt and fps from ..."
    if "height" in missing and "width" in missing:  # one word for both: "frames, size and negative prompt"
        names = [n for n in names if n != "width"]
        names[names.index("height")] = "size"
    what = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
    try:
        return replace(cfg, **missing), f"{what} from {source}"
    except ValueError as exc:  # the config's own bounds on a value from accvideo.json (was: a traceback)
        raise size_error(exc, f"{what} from {source}") from None


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
    values = source.split(" from ", 1)[0] if source else ""  # "frames, size and fps" (the ones not given)
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
