"""The procedural world: grammar, splits, prompt lists and rendering."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from accvideo.distill.data import fake_seed
from accvideo.distill.probe import probe_seed
from accvideo.errors import AccVideoError
from accvideo.world import (
    ATTRIBUTES,
    Attributes,
    UnknownWordsWarning,
    WorldConfig,
    caption,
    combinations,
    item_seed,
    parse_caption,
    prompts,
    render,
    unknown_words,
    vocabulary,
    warn_unknown_words,
)
from accvideo.world.render import BACKGROUND_RGB, COLOUR_RGB


def _mask(video: np.ndarray, attrs: Attributes) -> np.ndarray:
    """Pixels (F, H, W) far from the background colour: the shape."""
    return np.abs(video - np.asarray(BACKGROUND_RGB[attrs.background])).max(-1) > 0.2


def _centroids(video: np.ndarray, attrs: Attributes) -> np.ndarray:
    """(F, 2) centre of mass (x, y) of the shape in each frame."""
    m = _mask(video, attrs)
    ys, xs = np.mgrid[: m.shape[1], : m.shape[2]]
    return np.stack([(xs * m).sum((1, 2)) / m.sum((1, 2)), (ys * m).sum((1, 2)) / m.sum((1, 2))], 1)


def test_world_size_meets_the_brief():
    assert len(ATTRIBUTES["shape"]) >= 4 and len(ATTRIBUTES["colour"]) >= 6
    assert len(ATTRIBUTES["motion"]) >= 5 and "still" in ATTRIBUTES["motion"] and len(ATTRIBUTES["background"]) >= 3


def test_caption_round_trips_for_every_combination():
    combos = combinations("all")
    assert len(combos) == np.prod([len(v) for v in ATTRIBUTES.values()])
    assert all(parse_caption(caption(a)) == a for a in combos)
    assert len({caption(a) for a in combos}) == len(combos)


def test_caption_grammar():
    a = Attributes("triangle", "red", "left", "grey")
    assert caption(a) == "a red triangle moving left on a grey background"
    assert caption(Attributes("star", "blue", "still", "black")) == "a blue star standing still on a black background"
    assert caption(Attributes("circle", "orange", "up", "white")) == "an orange circle moving up on a white background"
    assert parse_caption("  A Red  triangle moving left on a grey background. ") == a
    for bad in (
        "a red triangle moving sideways on a grey background",
        "a red dragon moving left on a grey background",
        "red triangle",
        "a red triangle moving left",
    ):
        with pytest.raises(ValueError):
            parse_caption(bad)


def test_splits_are_disjoint_and_cover_every_value():
    train, held = combinations("train"), combinations("heldout")
    assert not set(train) & set(held)
    assert set(train) | set(held) == set(combinations("all"))
    assert 0.10 <= len(held) / len(combinations("all")) <= 0.15
    for name, values in ATTRIBUTES.items():
        assert {getattr(a, name) for a in train} == set(values)
        assert {getattr(a, name) for a in held} == set(values)  # so held-out accuracy exists per value
    # every pair of attribute values is still seen together in training: held-out is a new *combination*
    for n1, n2 in itertools.combinations(ATTRIBUTES, 2):
        assert len({(getattr(a, n1), getattr(a, n2)) for a in train}) == len(ATTRIBUTES[n1]) * len(ATTRIBUTES[n2])
    assert combinations("heldout") == held == combinations("test") == combinations("val")  # deterministic
    with pytest.raises(AccVideoError):
        combinations("dev")


def test_prompts_are_deterministic_prefix_stable_and_in_split():
    p = prompts(100, "heldout", seed=3)
    assert p == prompts(100, "heldout", seed=3)
    assert prompts(10, "heldout", seed=3) == p[:10]
    assert p != prompts(100, "heldout", seed=4)
    held = {caption(a) for a in combinations("heldout")}
    assert all(c in held for c, _ in p)
    assert {c for c, _ in p[: len(held)]} == held  # one pass covers the split once
    assert len({s for _, s in p}) == len(p)
    train = {caption(a) for a in combinations("train")}
    assert all(c in train for c, _ in prompts(50, "train", seed=0))


def test_evaluation_noise_seeds_are_never_training_seeds():
    # the ablation's sizes and more: 3 prompt-list seeds, 4096 train items, 20k fakes per run, 1024 eval pairs
    train = {s for seed in range(3) for _, s in prompts(4096, "train", seed)}
    fakes = {fake_seed(seed, i) for seed in range(3) for i in range(20_000)}
    for seed in range(3):
        test, val = prompts(1024, "test", seed), prompts(1024, "val", seed)
        assert test == prompts(1024, "heldout", seed)
        assert [c for c, _ in test] == [c for c, _ in val]  # the same captions in the same order ...
        test_seeds, val_seeds = {s for _, s in test}, {s for _, s in val}
        assert len(test_seeds) == len(val_seeds) == 1024 and not test_seeds & val_seeds  # ... other noises
        assert not (test_seeds | val_seeds) & (train | fakes)
        assert all(2**31 <= s < 2**32 for s in test_seeds | val_seeds) and max(train | fakes) < 2**31
        assert not (test_seeds | val_seeds) & {probe_seed(seed, i) for i in range(64)}


def test_fakes_and_probes_never_start_from_a_synvid_items_noise():
    # SeedSequence ignores trailing zero words: [seed, 1, 0] was [seed, 1], item 1's seed, so the first fake of
    # every run began at a stored trajectory's noise (and probe 0 at item 2's)
    for seed in range(3):
        items = {item_seed(seed, i) for i in range(256)}
        fakes, probes = {fake_seed(seed, i) for i in range(256)}, {probe_seed(seed, i) for i in range(256)}
        assert len(items) == len(fakes) == len(probes) == 256
        assert not items & fakes and not items & probes and not fakes & probes


def test_vocabulary_is_exactly_the_caption_words():
    used = {w for a in combinations("all") for w in caption(a).split()}
    assert set(vocabulary()) == used
    assert unknown_words(caption(combinations("all")[5])) == []
    assert unknown_words("A red dragon flying over the red sea") == ["dragon", "flying", "over", "the", "sea"]
    assert unknown_words("a red circle ünï, moving  Drachen's_way") == ["ünï", "drachen's", "way"]  # was: ["n"]


def test_unknown_words_warn_with_their_names():
    with pytest.warns(UnknownWordsWarning, match="dragon"):
        found = warn_unknown_words(["a red dragon moving left on a grey background"])
    assert found == ["dragon"]


def test_render_is_deterministic_and_well_formed():
    a = Attributes("star", "orange", "up", "white")
    v = render(a, 11)
    assert v.shape == (17, 64, 64, 3) and v.dtype == np.float32
    assert 0.0 <= v.min() and v.max() <= 1.0
    assert np.array_equal(v, render(a, 11))
    assert not np.array_equal(v, render(a, 12))
    small = render(a, 11, WorldConfig(frames=9, height=32, width=48))
    assert small.shape == (9, 32, 48, 3)


@pytest.mark.parametrize("motion", ["left", "right", "up", "down", "still"])
def test_motion_is_clearly_visible(motion):
    a = Attributes("square", "green", motion, "grey")
    for seed in range(4):
        c = _centroids(render(a, seed), a)
        dx, dy = c[-1] - c[0]
        expect = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1), "still": (0, 0)}[motion]
        if motion == "still":
            assert abs(dx) < 1e-6 and abs(dy) < 1e-6
        else:
            assert expect[0] * dx + expect[1] * dy > 15  # >= 15 px of 64 over 17 frames
            assert abs(expect[1] * dx + expect[0] * dy) < 0.5  # and none across (pixel sampling aside)


def test_shape_colour_and_background_are_as_captioned():
    for a in combinations("all")[::17]:
        v = render(a, 5)
        m = _mask(v, a)
        assert m.sum((1, 2)).min() > 40  # the shape is there in every frame
        assert np.allclose(v[m].mean(0), COLOUR_RGB[a.colour], atol=0.12)
        assert np.allclose(v[:, 0, 0], BACKGROUND_RGB[a.background], atol=0.04)
        assert not m[:, [0, -1], :].any() and not m[:, :, [0, -1]].any()  # stays inside the frame


def test_shapes_differ_in_outline():
    areas = {}
    for s in ATTRIBUTES["shape"]:
        a = Attributes(s, "red", "still", "black")
        areas[s] = _mask(render(a, 0, WorldConfig(size_range=(0.15, 0.15), rotation_jitter=0.0)), a)[0].sum()
    assert areas["circle"] > areas["square"] > areas["triangle"] and areas["circle"] > areas["star"]


def test_texture_and_noise_make_the_world_harder():
    a = Attributes("circle", "blue", "still", "grey")
    flat, tex = render(a, 1), render(a, 1, WorldConfig(texture=0.15, noise=0.02))
    assert flat[0, :8, :8].std((0, 1)).max() < 1e-6
    assert tex[0, :8, :8].std((0, 1)).min() > 0.01
    with pytest.raises(ValueError):
        WorldConfig(texture=-1.0)
    with pytest.raises(ValueError):
        WorldConfig(size_range=(0.2, 0.3))
    with pytest.raises(ValueError):
        Attributes("hexagon", "red", "left", "grey")
