"""AccVideo distillation (docs/method.md 2-3): SynVid trajectories -> a few-step student (full weights or LoRA)."""

from accvideo.distill.config import DistillConfig, paper_config, quick_config
from accvideo.distill.trainer import Distiller, distill
from accvideo.models.student import find_student, load_student

__all__ = ["DistillConfig", "Distiller", "distill", "find_student", "load_student", "paper_config", "quick_config"]
