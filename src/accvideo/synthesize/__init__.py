"""SynVid (docs/method.md 1): teacher trajectories -> resumable, sharded, self-describing datasets, and their reader."""

from accvideo.synthesize.config import SynthConfig, SynVidSettings
from accvideo.synthesize.dataset import SynVidDataset, build_index
from accvideo.synthesize.prompts import Item, PromptList, read_prompts, write_prompts
from accvideo.synthesize.run import synthesize

__all__ = [
    "Item",
    "PromptList",
    "SynVidDataset",
    "SynVidSettings",
    "SynthConfig",
    "build_index",
    "read_prompts",
    "synthesize",
    "write_prompts",
]
