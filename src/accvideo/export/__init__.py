"""`accvideo export`: a student -> a diffusers pipeline folder or a LoRA file that stock diffusers loads."""

from accvideo.export.run import FORMATS, export_run

__all__ = ["FORMATS", "export_run"]
