"""Settings of one `accvideo evaluate` run."""

from __future__ import annotations

from dataclasses import dataclass, field

from accvideo.core.schedules import check_steps
from accvideo.models.runtime import RuntimeOptions
from accvideo.synthesize.prompts import check_prompt
from accvideo.world.attributes import SPLITS

VIDEO_FORMATS = ("mp4", "gif", "npy", "none")


MAX_CLIPS = 100_000  # clips scored at once are held in memory: 100,000 built-in clips (8-bit) are 21 GB


@dataclass(frozen=True)
class EvaluateConfig:
    """Score a model (sampled on world prompts) or a folder of clips with a manifest; exactly one of the two."""

    model: str | None = None  # a diffusers pipeline folder, a distill run (its student) or 'builtin'
    videos: str | None = None  # folder of clips + manifest.jsonl
    prompts: int = 64  # prompts sampled from the split (model only)
    split: str = "heldout"  # train | heldout (= test) | val | all: held-out captions, noise seeds never trained on
    seed: int = 0  # seed of the prompt list (each prompt gets its own render / noise seed)
    steps: int | None = None  # None: 50 for a teacher, a student's own key steps
    guidance: float | None = None  # None: 5 for a teacher, 1 (no CFG) for a student
    shift: float | None = None  # None: the checkpoint's
    negative_prompt: str = ""  # with CFG (guidance > 1): the unconditional branch's prompt
    batch_size: int = 4  # clips sampled together (each clip's own noise; float rounding may move a pixel 1 level)
    classifier: str | None = None  # None: the shipped classifier
    out: str = "eval"
    video_format: str = "mp4"  # how clips are kept under OUT/videos (npy: lossless; an identical rerun re-scores them)
    device: str = "auto"
    dtype: str = "auto"
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)  # offload, vae_tiling, compile

    def __post_init__(self):
        if (self.model is None) == (self.videos is None):
            raise ValueError("pass exactly one of --model (sample and score a model) or --videos (score a folder)")
        if not 2 <= self.prompts <= MAX_CLIPS:
            raise ValueError(
                f"--prompts must be at least 2 (the Frechet distance needs two clips) and at most {MAX_CLIPS:,} "
                f"(every clip is held in memory); got {self.prompts}"
            )
        if self.split not in SPLITS:
            raise ValueError(f"--split must be one of {', '.join(SPLITS)}; got {self.split!r}")
        check_steps(self.steps, "--steps")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1; got {self.batch_size}")
        if self.guidance is not None and self.guidance < 0:
            raise ValueError(f"--guidance must be >= 0 (1 turns CFG off); got {self.guidance}")
        if self.shift is not None and self.shift <= 0:
            raise ValueError(f"--shift must be positive; got {self.shift}")
        if self.negative_prompt is not None:
            check_prompt(self.negative_prompt, "--negative-prompt", blank=True)  # bytes that are no UTF-8: refused
        if self.video_format not in VIDEO_FORMATS:
            raise ValueError(f"--video-format must be one of {', '.join(VIDEO_FORMATS)}; got {self.video_format!r}")
