"""The paper's 1D experiment (Figure 2): why teacher trajectories beat re-noised data for distillation."""

from accvideo.toy1d.config import Toy1dConfig, full_preset, preset, quick_preset
from accvideo.toy1d.experiment import Toy1dResult, run_toy1d, summary_table, write_results

__all__ = [
    "Toy1dConfig",
    "Toy1dResult",
    "full_preset",
    "preset",
    "quick_preset",
    "run_toy1d",
    "summary_table",
    "write_results",
]
