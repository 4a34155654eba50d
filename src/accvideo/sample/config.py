"""Settings of one `accvideo sample` run."""

from __future__ import annotations

from dataclasses import dataclass, field

from accvideo.core.schedules import check_steps
from accvideo.core.video import check_fps, check_video_size
from accvideo.models.runtime import RuntimeOptions


@dataclass(frozen=True)
class SampleConfig:
    """One clip: model, prompt, solver settings and output. None means "the model's own default"."""

    model: str = "builtin"  # pipeline folder, 'builtin', or a student (distill run folder or its student/)
    prompt: str = "a red circle moving left on a grey background"
    image: str | None = None  # image-to-video models: the first frame (PNG, JPEG), fitted to the size by crop
    negative_prompt: str | None = None  # None: the model's (accvideo.json, its family's, or none)
    steps: int | None = None  # teacher: 50; a student: its key steps
    guidance: float | None = None  # teacher: 5.0 (CFG); a student: 1.0 (guidance baked in)
    shift: float | None = None  # the checkpoint's scheduler shift
    seed: int = 0
    frames: int | None = None  # None: the model's default (models/defaults.py: Wan 2.1 81, the built-in 17)
    height: int | None = None  # None: the model's default (Wan 2.1 480, HunyuanVideo 544, the built-in 64)
    width: int | None = None  # None: the model's default (Wan 2.1 832, HunyuanVideo 960, the built-in 64)
    fps: int = 8
    out: str = "clip.mp4"
    gif: bool = False  # also write a GIF next to the MP4
    device: str = "auto"  # auto: cuda when available, else cpu
    dtype: str = "auto"  # auto: bfloat16 on cuda, float32 on cpu
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)  # offload, vae_tiling, compile

    def __post_init__(self):
        check_video_size(self.frames, self.height, self.width, 1, 1)  # bounds only: the family's form once known
        check_steps(self.steps)
        if self.guidance is not None and self.guidance < 0:
            raise ValueError(f"guidance must be >= 0 (1 turns CFG off); got {self.guidance}")
        if self.shift is not None and self.shift <= 0:
            raise ValueError(f"shift must be positive (e.g. --shift 5); got {self.shift}")
        if not self.out.lower().endswith((".mp4", ".gif")):
            raise ValueError(f"--out must end in .mp4 or .gif; got {self.out}")
        check_fps(self.fps)
