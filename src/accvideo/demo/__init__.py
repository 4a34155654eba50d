"""The main job and its evidence: `accvideo demo` (the whole chain, a report) and `accvideo ablate`."""

from accvideo.demo.ablate import run_ablation
from accvideo.demo.config import ChainConfig, quick_config
from accvideo.demo.run import run_demo

__all__ = ["ChainConfig", "quick_config", "run_ablation", "run_demo"]
