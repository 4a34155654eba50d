"""Settings of one `accvideo sample` run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePath

from accvideo.core.sampling import check_guidance
from accvideo.core.schedules import check_steps
from accvideo.core.video import check_fps, check_video_size
from accvideo.models.runtime import RuntimeOptions
from accvideo.synthesize.prompts import check_prompt

DEFAULT_PROMPT = "a red circle moving left on a grey background"
MAX_BATCH = 1024


@dataclass(frozen=True)
class SampleConfig:
    """One clip (or, with `prompts`, one a prompt): model, prompt, solver settings and output. None means "the
    model's own default"."""

    model: str = "builtin"  # pipeline folder, 'builtin', or a student (distill run folder or its student/)
    prompt: str = DEFAULT_PROMPT
    prompts: str | None = None  # a prompt file (.txt, or .jsonl with seeds and images): one clip each, in --out
    batch: int = 1  # with --prompts: clips sampled at once (each from its own seed, so no clip depends on it)
    image: str | None = None  # image-to-video models: the first frame (PNG, JPEG), fitted to the size by crop
    negative_prompt: str | None = None  # None: the model's (accvideo.json, its family's, or none)
    steps: int | None = None  # teacher: 50; a student: its key steps
    guidance: float | None = None  # teacher: 5.0 (CFG); a student: 1.0 (guidance baked in)
    shift: float | None = None  # the checkpoint's scheduler shift
    seed: int = 0  # the clip's seed; with --prompts, the seed of rows that give none (item_seed(seed, row))
    frames: int | None = None  # None: the model's default (models/defaults.py: Wan 2.1 81, the built-in 17)
    height: int | None = None  # None: the model's default (Wan 2.1 480, HunyuanVideo 544, the built-in 64)
    width: int | None = None  # None: the model's default (Wan 2.1 832, HunyuanVideo 960, the built-in 64)
    fps: int | None = None  # None: the model's default (Wan 2.1 16, HunyuanVideo 24, the built-in 8)
    out: str | None = None  # None: clip.mp4; with --prompts the folder clips/ (000000.mp4, ..., manifest.jsonl)
    gif: bool = False  # also write a GIF next to the MP4
    device: str = "auto"  # auto: cuda when available, else cpu
    dtype: str = "auto"  # auto: bfloat16 on cuda, float32 on cpu
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)  # offload, vae_tiling, compile

    def __post_init__(self):
        check_video_size(self.frames, self.height, self.width, 1, 1)  # bounds only: the family's form once known
        check_prompt(self.prompt)  # blank, or bytes that are not UTF-8: a prompt file's line would be refused
        if self.negative_prompt is not None:
            check_prompt(self.negative_prompt, "--negative-prompt", blank=True)
        check_steps(self.steps)
        check_guidance(self.guidance)
        if self.shift is not None and self.shift <= 0:
            raise ValueError(f"shift must be positive (e.g. --shift 5); got {self.shift}")
        if not 1 <= self.batch <= MAX_BATCH:
            raise ValueError(f"--batch must be at least 1 and at most {MAX_BATCH} (clips at once); got {self.batch}")
        if self.prompts is None:
            if self.batch != 1:
                raise ValueError("--batch goes with --prompts FILE (clips sampled at once); drop it or give --prompts")
            if PurePath(self.output).suffix.lower() not in (".mp4", ".gif"):  # '.mp4' alone is a name, no suffix
                raise ValueError(f"--out must be a file name ending in .mp4 or .gif (e.g. clip.mp4); got {self.out}")
        else:
            if self.prompt != DEFAULT_PROMPT:
                raise ValueError("give --prompt TEXT (one clip) or --prompts FILE (one clip a line), not both")
            if self.image is not None:
                raise ValueError('--image goes with --prompt; with --prompts give each .jsonl row an "image" path')
            if self.output.lower().endswith((".mp4", ".gif")):
                raise ValueError(
                    f"with --prompts, --out is a folder (clips go in as 000000.mp4, ...); got {self.out}, a file name"
                )
        if self.fps is not None:
            check_fps(self.fps)

    @property
    def output(self) -> str:
        """--out, or its default: clip.mp4 for one clip, the folder clips for --prompts."""
        return self.out if self.out is not None else ("clip.mp4" if self.prompts is None else "clips")
