"""Settings of `accvideo export`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath

FORMATS = ("diffusers", "lora", "single-file")
WEIGHT_FILES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf")


@dataclass(frozen=True)
class ExportConfig:
    """Export a student (a distill run folder or a student folder) for stock diffusers."""

    run: str = ""  # distill run folder, or a student folder (with student.json)
    out: str = ""  # folder to write (replaced whole; built aside, then renamed)
    format: str = "diffusers"  # diffusers (a pipeline), lora (a LoRA file), single-file (the original repo's layout)
    dtype: str | None = None  # cast the transformer (e.g. bfloat16)
    force: bool = False  # kept for old scripts: accvideo never replaces a folder it did not make
    decoder: str | None = None  # a tiny decoder (accvideo decoder distill) to carry in OUT/decoder

    def __post_init__(self):
        if not self.run:
            raise ValueError("name the run to export: accvideo export RUN --out DIR")
        if not self.out:
            raise ValueError("name the folder to write: accvideo export RUN --out DIR")
        if self.format not in FORMATS:
            raise ValueError(f"--format must be one of {', '.join(FORMATS)}; got {self.format!r}")
        suffix = PurePath(self.out).suffix.lower()
        if suffix in WEIGHT_FILES:  # it was made a folder of that name, which a single-file loader cannot open
            raise ValueError(
                f"--out names the folder the export writes (its weights, scheduler and README; docs/export.md), not a "
                f"file; drop the {suffix} from {self.out!r}"
            )
