"""The world's attributes, its caption grammar and its train / held-out split of attribute combinations."""

from __future__ import annotations

import itertools
import re
import warnings
from collections.abc import Iterable
from dataclasses import astuple, dataclass

import numpy as np

from accvideo.errors import AccVideoError

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star")
COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange")
MOTIONS: tuple[str, ...] = ("left", "right", "up", "down", "still")
BACKGROUNDS: tuple[str, ...] = ("grey", "black", "white")
# Attribute name -> its values, in the order the classifier's heads use.
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "shape": SHAPES,
    "colour": COLOURS,
    "motion": MOTIONS,
    "background": BACKGROUNDS,
}
SPLITS = ("train", "heldout", "test", "val", "all")
# Noise streams: held-out (test) and validation pairs share the held-out combinations but draw their render and
# noise seeds from streams of their own, never a train item's seed (item_seed); train and all keep the plain one.
SEED_STREAMS = {"train": None, "all": None, "heldout": 1, "test": 1, "val": 2}

# Grammar: "a|an {colour} {shape} {moving left|moving right|moving up|moving down|standing still} on a {bg} background"
_MOTION_PHRASES = {m: ("standing still" if m == "still" else f"moving {m}") for m in MOTIONS}
_CAPTION_RE = re.compile(
    r"^an? (?P<colour>\w+) (?P<shape>\w+) (?P<motion>moving \w+|standing still) on an? (?P<background>\w+) background$"
)


@dataclass(frozen=True)
class Attributes:
    """One combination the world can render: what the caption of a clip says."""

    shape: str
    colour: str
    motion: str
    background: str

    def __post_init__(self):
        for name, values in ATTRIBUTES.items():
            value = getattr(self, name)
            if value not in values:
                raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(values)}")

    def index(self) -> tuple[int, int, int, int]:
        """Class indices (shape, colour, motion, background), as the classifier's heads count them."""
        return tuple(ATTRIBUTES[name].index(v) for name, v in zip(ATTRIBUTES, astuple(self), strict=True))


def caption(attrs: Attributes) -> str:
    """The one caption of a combination: 'a red triangle moving left on a grey background' ('an orange ...')."""
    article = "an" if attrs.colour[0] in "aeiou" else "a"
    return f"{article} {attrs.colour} {attrs.shape} {_MOTION_PHRASES[attrs.motion]} on a {attrs.background} background"


def _normalise(text: str) -> str:
    """Lower case, single spaces, no trailing full stop: the forms parse_caption accepts."""
    return " ".join(text.lower().replace(",", " ").split()).rstrip(".").strip()


def parse_caption(text: str) -> Attributes:
    """The inverse of caption(); raises ValueError naming the grammar when `text` does not follow it."""
    m = _CAPTION_RE.match(_normalise(text))
    motion = m and m["motion"].removeprefix("moving ").replace("standing still", "still")
    if m is None or motion not in MOTIONS:
        raise ValueError(
            f"{text!r} does not follow the world's grammar "
            "'a COLOUR SHAPE moving left|right|up|down (or standing still) on a BACKGROUND background'"
        )
    return Attributes(shape=m["shape"], colour=m["colour"], motion=motion, background=m["background"])


def vocabulary() -> list[str]:
    """Every word the captions use, sorted (for building a tokenizer)."""
    words = {"a", "an", "on", "background", "moving", "standing"}
    for values in ATTRIBUTES.values():
        words.update(values)
    return sorted(words)


def unknown_words(prompt: str) -> list[str]:
    """Words of `prompt` outside vocabulary(), in order of first appearance."""
    known = set(vocabulary())
    # words of any script: "ünï" was read as the word "n" (its ASCII letter) and the rest dropped
    return list(dict.fromkeys(w for w in re.findall(r"[^\W_]+(?:'[^\W_]+)*", prompt.lower()) if w not in known))


class PromptWarning(UserWarning):
    """A prompt the world cannot fully score or a world-trained model cannot fully understand."""


class UnknownWordsWarning(PromptWarning):
    """A prompt uses words the world's captions never use: a model trained on the world cannot know them."""


def warn_unknown_words(prompts: Iterable[str]) -> list[str]:
    """Warn once per prompt that has words outside vocabulary(), naming them; returns all such words."""
    found: list[str] = []
    for prompt in dict.fromkeys(prompts):
        words = unknown_words(prompt)
        if words:
            warnings.warn(
                f"prompt {prompt!r} has words outside the world's vocabulary: {', '.join(words)} "
                "(the model never saw them; see accvideo.world.vocabulary())",
                UnknownWordsWarning,
                stacklevel=2,
            )
            found += [w for w in words if w not in found]
    return found


def _is_heldout(attrs: Attributes) -> bool:
    """Deterministic 1-in-8 rule over class indices: held-out combos cover every value, each value trains too."""
    s, c, m, b = attrs.index()
    return (7 * s + 3 * c + 5 * m + 2 * b) % 8 == 0


def combinations(split: str = "all") -> list[Attributes]:
    """All combinations of a split ('train', 'heldout' or 'all'), in a fixed order."""
    if split not in SPLITS:
        raise AccVideoError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    combos = [Attributes(*v) for v in itertools.product(*ATTRIBUTES.values())]
    if split == "all":
        return combos
    return [a for a in combos if _is_heldout(a) == (split != "train")]


def item_seed(seed: int, index: int, stream: int | None = None) -> int:
    """The render (and noise) seed of prompt `index` of a prompt list made with `seed`, in a split's `stream`
    (SEED_STREAMS; independent of list length).

    Train seeds (and every other seed a run draws: fakes, probes) lie below 2**31; stream s >= 1 lies in its own
    quarter of [2**31, 2**32), so evaluation noises never coincide with training noises, by construction.
    """
    word = int(
        np.random.SeedSequence(
            [int(seed), int(index), *(() if stream is None else (0x5EED, int(stream)))]
        ).generate_state(1)[0]
    )
    if stream is None:
        return word & 0x7FFFFFFF
    return 0x80000000 | ((int(stream) - 1) & 3) << 29 | (word & 0x1FFFFFFF)


def prompts(n: int, split: str = "heldout", seed: int = 0) -> list[tuple[str, int]]:
    """n deterministic (caption, render seed) pairs; each pass covers the split once in a seeded order.

    The list for n is a prefix of the list for any larger n, so runs with fewer prompts stay comparable. 'test'
    (= 'heldout') and 'val' list the same held-out captions in the same order with disjoint seed streams: tune on
    val, report on test; neither shares a seed with 'train'.
    """
    if n < 0:
        raise AccVideoError(f"the number of prompts must be >= 0; got {n}")
    combos = combinations(split)
    out: list[tuple[str, int]] = []
    for epoch in range(-(-n // len(combos))):
        order = np.random.default_rng([int(seed), epoch]).permutation(len(combos))
        stream = SEED_STREAMS[split]
        out += [(caption(combos[int(j)]), item_seed(seed, len(out) + k, stream)) for k, j in enumerate(order)]
    return out[:n]
