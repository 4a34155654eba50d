"""The procedural text-to-video world: captioned coloured shapes moving over backgrounds (docs/toybench.md)."""

from accvideo.world.attributes import (
    ATTRIBUTES,
    BACKGROUNDS,
    COLOURS,
    MOTIONS,
    SHAPES,
    Attributes,
    PromptWarning,
    UnknownWordsWarning,
    caption,
    combinations,
    item_seed,
    parse_caption,
    prompts,
    unknown_words,
    vocabulary,
    warn_unknown_words,
)
from accvideo.world.render import WorldConfig, render, render_batch

__all__ = [
    "ATTRIBUTES",
    "BACKGROUNDS",
    "COLOURS",
    "MOTIONS",
    "SHAPES",
    "Attributes",
    "PromptWarning",
    "UnknownWordsWarning",
    "WorldConfig",
    "caption",
    "combinations",
    "item_seed",
    "parse_caption",
    "prompts",
    "render",
    "render_batch",
    "unknown_words",
    "vocabulary",
    "warn_unknown_words",
]
