"""ToyBench: the shipped classifier, the metrics, evaluate_videos, folders and the `evaluate` command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from accvideo.cli import main
from accvideo.errors import AccVideoError
from accvideo.evaluate import classify, evaluate_videos, frechet_distance, load_classifier, temporal_consistency
from accvideo.evaluate.folder import load_video_folder, write_video_folder
from accvideo.evaluate.metrics import alignment_accuracy, psd_sqrt, warp_error
from accvideo.world import (
    ATTRIBUTES,
    PromptWarning,
    UnknownWordsWarning,
    item_seed,
    parse_caption,
    prompts,
    render_batch,
)


@pytest.fixture(scope="module")
def clf():
    return load_classifier()


@pytest.fixture(scope="module")
def heldout():
    """64 held-out prompts with seeds, and their real clips."""
    pairs = prompts(64, "heldout", seed=7)
    return pairs, render_batch([(parse_caption(c), s) for c, s in pairs])


def _noise_clips(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (n, 17, 64, 64, 3)).astype(np.float32)


# --- metrics on known inputs -----------------------------------------------------------------------
def test_psd_sqrt_squares_back():
    a = np.random.default_rng(0).normal(size=(6, 6))
    m = a @ a.T
    r = psd_sqrt(m)
    assert np.allclose(r @ r, m, atol=1e-8) and np.allclose(r, r.T)


def test_frechet_distance_matches_closed_forms():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 4))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)
    shift = np.array([1.0, -2.0, 0.5, 0.0])
    assert frechet_distance(x, x + shift) == pytest.approx(float(shift @ shift), rel=1e-9)
    # same mean, covariances I and 4I: trace(I + 4I - 2*2I) = D
    assert frechet_distance(x, 2 * x + (1 - 2) * x.mean(0)) == pytest.approx(4.0, rel=1e-6)
    with pytest.raises(AccVideoError):
        frechet_distance(x[:1], x)


def test_alignment_accuracy_counts_hits():
    truth = np.array([[0, 1], [1, 1], [2, 0], [0, 0]])
    preds = {"a": np.array([0, 1, 0, 0]), "b": np.array([1, 0, 0, 0])}
    acc = alignment_accuracy(preds, truth, ["a", "b"])
    assert acc == {"a": 0.75, "b": 0.75, "mean": 0.75, "joint": 0.5}


def test_warp_error_ignores_motion_and_sees_flicker(heldout):
    _, real = heldout
    clips = torch.from_numpy(real[:8])
    static = clips[:, :1].expand(-1, 17, -1, -1, -1)
    assert np.all(warp_error(static) == 0.0)
    rolled = torch.stack([torch.roll(clips[0, 0], shifts=2 * t, dims=1) for t in range(17)])[None]
    assert warp_error(rolled)[0] < 1e-6  # a 2 px/frame translation is fully explained
    assert warp_error(rolled, radius=1)[0] > 1e-3  # unless it is faster than the search radius
    gains = torch.from_numpy(np.random.default_rng(0).uniform(0.7, 1.3, (8, 17, 1, 1, 1)))
    flicker = (clips * gains).clamp(0, 1)
    tc_real, tc_flicker = temporal_consistency(clips), temporal_consistency(flicker.float())
    tc_noise = temporal_consistency(torch.from_numpy(_noise_clips(4)))
    assert tc_real > 0.99 and tc_real > tc_flicker + 0.02 and tc_noise < 0.85


# --- the shipped classifier ------------------------------------------------------------------------
def test_shipped_classifier_is_small_and_expects_the_world_format(clf):
    from accvideo.evaluate.classifier import shipped_classifier_dir

    size = sum(p.stat().st_size for p in shipped_classifier_dir().iterdir())
    assert size <= 3 * 2**20
    assert (clf.cfg.frames, clf.cfg.height, clf.cfg.width) == (17, 64, 64)
    assert clf.cfg.classes == {k: list(v) for k, v in ATTRIBUTES.items()}


def test_shipped_classifier_is_accurate_on_heldout_combinations(clf, heldout):
    pairs, real = heldout
    preds, feats = classify(clf, real)
    truth = np.array([parse_caption(c).index() for c, _ in pairs])
    acc = alignment_accuracy(preds, truth, list(clf.cfg.classes))
    assert all(acc[name] >= 0.95 for name in ATTRIBUTES), acc
    assert feats.shape == (64, clf.cfg.feature_dim)


def test_frechet_is_near_zero_for_real_and_large_for_noise(clf, heldout):
    pairs, real = heldout
    other = render_batch([(parse_caption(c), item_seed(s, 99)) for c, s in pairs])
    _, f_real = classify(clf, real)
    _, f_other = classify(clf, other)
    _, f_noise = classify(clf, _noise_clips(64))
    same, real_real, real_noise = (
        frechet_distance(f_real, f_real),
        frechet_distance(f_real, f_other),
        frechet_distance(f_real, f_noise),
    )
    assert same < 1e-6
    assert real_noise > 20 * real_real, (real_real, real_noise)


# --- evaluate_videos and folders --------------------------------------------------------------------
def test_evaluate_videos_scores_real_clips_as_perfect_and_mismatched_prompts_as_wrong(clf, heldout):
    pairs, real = heldout
    m = evaluate_videos(real[:16], pairs[:16], classifier=clf)
    assert m["accuracy"]["mean"] >= 0.95 and m["frechet_distance"] < 1e-6
    assert m["temporal_consistency"] == pytest.approx(m["reference"]["temporal_consistency"])
    assert m["temporal_consistency"] > 0.99 and m["temporal_radius"] == 2
    assert m["n_scored"] == 16 and len(m["items"]) == 16 and m["warnings"] == []
    shuffled = pairs[1:17]  # each clip now carries another clip's prompt
    bad = evaluate_videos(real[:16], shuffled, classifier=clf)
    assert bad["accuracy"]["joint"] < 0.2 and bad["frechet_distance"] > 0.1


def test_scoring_in_chunks_gives_the_numbers_of_one_pass(clf, heldout, monkeypatch):
    """A folder is scored SCORE_CHUNK clips at a time (its float copies and renders took about 5 MB a clip in one
    pass); the chunks are whole classifier batches, so every number is the one pass's, bit for bit."""
    import accvideo.evaluate.run as run

    pairs, real = heldout
    clips = (np.concatenate([real[:24], _noise_clips(16)]) * 255).round().astype(np.uint8)  # as read from a folder
    whole = evaluate_videos(clips, pairs[:40], classifier=clf, per_clip=True)
    monkeypatch.setattr(run, "SCORE_CHUNK", 16)  # 3 chunks, the last one short
    chunked = evaluate_videos(clips, pairs[:40], classifier=clf, per_clip=True)
    a, b = whole.pop("per_clip"), chunked.pop("per_clip")
    assert whole == chunked and 0.3 < whole["accuracy"]["mean"] < 0.9  # real clips right, noise mostly wrong
    for name in ("hits", "features", "real_features", "consistency"):
        assert np.array_equal(getattr(a, name), getattr(b, name))


def test_evaluate_videos_rejects_the_wrong_clip_format(clf):
    with pytest.raises(AccVideoError, match="17x64x64x3"):
        evaluate_videos(np.zeros((2, 9, 64, 64, 3), np.float32), prompts(2), classifier=clf)
    with pytest.raises(AccVideoError, match="prompt"):
        evaluate_videos(np.zeros((2, 17, 64, 64, 3), np.float32), prompts(3), classifier=clf)


def test_unknown_words_warn_but_are_scored_where_possible(clf, heldout):
    pairs, real = heldout
    odd = [("a red dragon flying over the sea", 1)] + pairs[1:4]
    with pytest.warns(PromptWarning) as record:
        m = evaluate_videos(real[:4], odd, classifier=clf)
    assert any(w.category is UnknownWordsWarning and "dragon" in str(w.message) for w in record)
    assert m["n_scored"] == 3 and m["items"][0]["correct"] is None
    assert any("dragon" in w for w in m["warnings"])


def test_folder_round_trip_reproduces_the_metrics(tmp_path, clf, heldout):
    pairs, real = heldout
    clips = (real[:6] * 255 + 0.5).astype(np.uint8)
    write_video_folder(tmp_path, clips, pairs[:6], fmt="npy")
    videos, got_pairs, files = load_video_folder(tmp_path, (17, 64, 64))
    assert got_pairs == pairs[:6] and files[0] == "000000.npy"
    assert videos.dtype == np.uint8 and np.array_equal(videos, clips)
    a = evaluate_videos(videos, got_pairs, classifier=clf)
    b = evaluate_videos(clips, pairs[:6], classifier=clf)
    assert a.pop("frechet_distance") == pytest.approx(b.pop("frechet_distance"), rel=1e-6)
    assert a == b


def test_a_clip_scores_the_same_in_any_memory_layout(clf):
    """generate_videos hands the scorer a transposed view of the decode; a folder read back is contiguous. The same
    clips must give the same features bit for bit (they differed by ~3e-6 in the classifier's convolutions)."""
    rng = np.random.default_rng(0)
    view = rng.integers(0, 256, (3, 17, 3, 64, 64), dtype=np.uint8).transpose(0, 1, 3, 4, 2)  # (N, F, H, W, 3)
    assert not view.flags["C_CONTIGUOUS"]
    (pa, fa), (pb, fb) = classify(clf, view), classify(clf, np.ascontiguousarray(view))
    assert np.array_equal(fa, fb) and all(np.array_equal(pa[k], pb[k]) for k in pa)


def _clips(n: int, value: int) -> np.ndarray:
    """n tiny distinct uint8 clips (F=2, 16x16): clip i is filled with value + i."""
    return (value + np.arange(n, dtype=np.uint8))[:, None, None, None, None] + np.zeros((n, 2, 16, 16, 3), np.uint8)


def test_rewriting_a_video_folder_leaves_exactly_the_clips_its_manifest_lists(tmp_path):
    from accvideo.evaluate.folder import clear_video_folder

    pairs = prompts(3)
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "000009.npy").write_bytes(b"mine too")  # a clip name, but no manifest of ours ever listed it
    write_video_folder(tmp_path, _clips(3, 10), pairs, fmt="npy")
    write_video_folder(tmp_path, _clips(2, 20), pairs[:2], fmt="npy")  # fewer clips: 000002.npy is stale
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "000000.npy",
        "000001.npy",
        "000009.npy",
        "manifest.jsonl",
        "notes.txt",
    ]
    write_video_folder(tmp_path, _clips(2, 30), pairs[:2], fmt="mp4")  # another format: every .npy of ours goes
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "000000.mp4",
        "000001.mp4",
        "000009.npy",
        "manifest.jsonl",
        "notes.txt",
    ]
    assert load_video_folder(tmp_path)[2] == ["000000.mp4", "000001.mp4"]
    clear_video_folder(tmp_path)  # --video-format none: no clips of ours, no manifest; the user's files stay
    assert sorted(p.name for p in tmp_path.iterdir()) == ["000009.npy", "notes.txt"]


def test_a_killed_video_folder_rewrite_keeps_every_listed_clip_and_the_next_write_cleans_up(tmp_path, monkeypatch):
    import accvideo.evaluate.folder as folder

    old, new = prompts(3, "heldout", 0), prompts(2, "heldout", 1)
    write_video_folder(tmp_path, _clips(3, 10), old, fmt="npy")
    real_save, saved = folder._save_npy, []

    def dies_on_the_second(path, clip):
        if len(saved) == 1:
            raise KeyboardInterrupt  # the run is killed while writing clips
        saved.append(path.name)
        real_save(path, clip)

    monkeypatch.setattr(folder, "_save_npy", dies_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        write_video_folder(tmp_path, _clips(2, 50), new, fmt="npy")
    videos, got, files = load_video_folder(tmp_path)  # only the old clip not yet replaced is listed, intact
    assert files == ["000002.npy"] and got == [old[2]] and np.array_equal(videos, _clips(3, 10)[2:])
    monkeypatch.setattr(folder, "_save_npy", real_save)
    write_video_folder(tmp_path, _clips(1, 70), new[:1], fmt="npy")  # 000001.npy and 000002.npy, ours: removed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["000000.npy", "manifest.jsonl"]
    videos, got, _ = load_video_folder(tmp_path)
    assert got == new[:1] and np.array_equal(videos, _clips(1, 70))


def test_folder_errors_name_the_fix(tmp_path):
    with pytest.raises(AccVideoError, match="no manifest"):
        load_video_folder(tmp_path)
    (tmp_path / "manifest.jsonl").write_text('{"prompt": "a red circle moving left on a grey background", "seed": 1}\n')
    with pytest.raises(AccVideoError, match="000000.mp4"):
        load_video_folder(tmp_path)
    (tmp_path / "manifest.jsonl").write_text('{"prompt": "x"\n')
    with pytest.raises(AccVideoError, match="not valid JSON"):
        load_video_folder(tmp_path)


# --- the command line -------------------------------------------------------------------------------
def _run_cli(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    return exc.value.code, capsys.readouterr()


def test_cli_scores_a_folder(tmp_path, heldout, capsys):
    pairs, real = heldout
    write_video_folder(tmp_path / "clips", real[:8], pairs[:8], fmt="mp4")
    code, out = _run_cli(["evaluate", "--videos", str(tmp_path / "clips"), "--out", str(tmp_path / "ev")], capsys)
    assert code in (0, None)
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["n_videos"] == 8 and metrics["accuracy"]["mean"] >= 0.9  # MP4 chroma loss aside
    table = (tmp_path / "ev" / "metrics.md").read_text()
    assert "| shape accuracy |" in table and "Frechet distance" in table and "temporal consistency" in table


def test_cli_wrong_size_folder_exits_2_without_traceback(tmp_path, capsys):
    clips = np.zeros((2, 9, 32, 32, 3), np.uint8)
    write_video_folder(tmp_path, clips, prompts(2), fmt="npy")
    code, out = _run_cli(["evaluate", "--videos", str(tmp_path), "--out", str(tmp_path / "ev")], capsys)
    assert code == 2
    assert out.err.startswith("error: ") and "17 frames of 64x64" in out.err and "Traceback" not in out.err
    assert len(out.err.strip().splitlines()) == 1


def test_cli_needs_exactly_one_source(tmp_path, capsys):
    code, out = _run_cli(["evaluate", "--out", str(tmp_path)], capsys)
    assert code == 2 and "exactly one of --model" in out.err


def test_cli_warns_about_unknown_words_without_failing(tmp_path, heldout, capsys):
    pairs, real = heldout
    odd = [("a red dragon moving left on a grey background", 3)] + pairs[1:3]
    write_video_folder(tmp_path / "clips", real[:3], odd, fmt="npy")
    code, out = _run_cli(["evaluate", "--videos", str(tmp_path / "clips"), "--out", str(tmp_path / "ev")], capsys)
    assert code in (0, None)
    assert "warning:" in out.err and "dragon" in out.err and "Traceback" not in out.err
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["n_scored"] == 2 and any("dragon" in w for w in metrics["warnings"])


def test_cli_samples_a_model_and_its_saved_clips_rescore_identically(tmp_wan_eval):
    first, second = tmp_wan_eval
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (first, second))
    assert a["n_videos"] == 3 and a["source"]["steps"] == 2
    from accvideo.evaluate.classifier import shipped_classifier_dir
    from accvideo.models.identity import sampled_identity

    # the classifier's content, not only its path (a retrained one in the same folder scores differently)
    assert a["source"]["classifier_identity"] == sampled_identity(shipped_classifier_dir())
    assert a["items"][0]["prompt"] == prompts(3, "heldout", 0)[0][0]
    a.pop("source"), b.pop("source")
    # the saved .npy clips are the scored clips, bit for bit, and score the same: re-scoring is exact
    assert a == b


@pytest.fixture()
def tmp_wan_eval(tmp_path, tiny_wan_dir):
    first, second = tmp_path / "ev_model", tmp_path / "ev_folder"
    sample = [
        "--model",
        str(tiny_wan_dir),
        "--prompts",
        "3",
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--video-format",
        "npy",
        "--out",
        str(first),
    ]
    for args in (sample, ["--videos", str(first / "videos"), "--out", str(second)]):
        with pytest.raises(SystemExit) as exc:
            main(["evaluate", *args])
        assert exc.value.code in (0, None)
    return first, second


def test_cli_rerun_reuses_identical_clips_and_leaves_only_the_clips_it_lists(tmp_path, tiny_wan_dir, monkeypatch):
    import accvideo.evaluate.run as run

    out, videos = tmp_path / "ev", tmp_path / "ev" / "videos"
    args = ["evaluate", "--model", str(tiny_wan_dir), "--steps", "2", "--device", "cpu", "--out", str(out)]

    def evaluate(*more):
        with pytest.raises(SystemExit) as exc:
            main([*args, *more])
        assert exc.value.code in (0, None)
        return json.loads((out / "metrics.json").read_text())

    first = evaluate("--prompts", "3", "--video-format", "npy")
    clips = load_video_folder(videos)[0]
    sample = run._sample_model
    monkeypatch.setattr(run, "_sample_model", lambda *a: pytest.fail("an identical rerun sampled again"))
    again = evaluate("--prompts", "3", "--video-format", "npy")  # identical: the kept clips are scored
    assert again["source"]["reused_videos"] is True and again["items"] == first["items"]
    assert again["accuracy"] == first["accuracy"] and np.array_equal(load_video_folder(videos)[0], clips)
    monkeypatch.setattr(run, "_sample_model", sample)
    np.save(videos / "000001.npy", np.zeros_like(clips[1]))  # a kept clip changed since: sampled again
    third = evaluate("--prompts", "3", "--video-format", "npy")
    assert "reused_videos" not in third["source"] and np.array_equal(load_video_folder(videos)[0], clips)
    fourth = evaluate("--prompts", "2", "--video-format", "mp4")  # fewer clips, another format: no .npy left
    assert "reused_videos" not in fourth["source"]
    assert sorted(p.name for p in videos.iterdir()) == ["000000.mp4", "000001.mp4", "manifest.jsonl"]
    evaluate("--prompts", "2", "--video-format", "none")  # no clips kept: none of an earlier run's either
    assert not videos.exists()


def test_classifier_training_is_reproducible(tmp_path, capsys):
    from safetensors.torch import load_file

    from accvideo.evaluate.train import ClassifierTrainConfig, train_classifier

    cfg = dict(steps=2, batch_size=2, eval_items=0)
    train_classifier(ClassifierTrainConfig(out=str(tmp_path / "a"), **cfg), progress=False)
    train_classifier(ClassifierTrainConfig(out=str(tmp_path / "b"), **cfg), progress=False)
    train_classifier(ClassifierTrainConfig(out=str(tmp_path / "c"), seed=1, **cfg), progress=False)
    wa, wb, wc = (load_file(str(tmp_path / d / "classifier.safetensors")) for d in "abc")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)
    assert load_classifier(tmp_path / "a").cfg.frames == 17
    from accvideo.core.tensorfile import FILE_MODE

    assert (tmp_path / "a" / "classifier.safetensors").stat().st_mode & 0o777 == FILE_MODE  # was 600 (save_file)
    assert (tmp_path / "a" / "classifier.safetensors").read_bytes() == (
        tmp_path / "b" / "classifier.safetensors"
    ).read_bytes()


def test_reference_table_orders_corruptions_sensibly(clf):
    from accvideo.evaluate.reference import reference_rows, rows_markdown

    rows = {r["clips"]: r for r in reference_rows(clf, n=6)}
    assert rows["real"]["frechet_distance"] < 1e-6 and rows["real"]["mean"] == 1.0
    assert rows["uniform noise"]["frechet_distance"] > 10 * rows["real, other seeds"]["frechet_distance"]
    assert rows["frozen first frame"]["temporal_consistency"] == 1.0 and rows["frozen first frame"]["motion"] < 0.5
    assert rows["frame flicker +-20%"]["temporal_consistency"] < rows["real"]["temporal_consistency"] - 0.02
    assert "| uniform noise |" in rows_markdown(list(rows.values()), list(clf.cfg.classes))


def test_bootstrap_interval_has_the_binomial_width_and_pools_seeds_on_shared_clips():
    from accvideo.evaluate.intervals import ClipScores, summarise

    rng = np.random.default_rng(0)
    n, p = 400, 0.8

    def scores(hits):
        feats = rng.normal(size=(n, 4))
        return ClipScores(["shape"], hits[:, None], feats, feats + rng.normal(size=(n, 4)), np.full(n, 0.99))

    one = scores(rng.random(n) < p)
    s = summarise([one], draws=500)["accuracy"]
    half = 1.96 * (s["mean"] * (1 - s["mean"]) / n) ** 0.5  # the normal approximation's half-width
    assert s["lo"] < s["mean"] < s["hi"] and abs((s["hi"] - s["lo"]) / 2 - half) < 0.25 * half
    assert s["sd"] == 0 and s["seeds"] == [s["mean"]]
    # two seeds that score the same clips alike: the same interval; their spread is reported apart
    both = summarise([one, one], draws=500)["accuracy"]
    assert (both["lo"], both["hi"], both["sd"]) == (s["lo"], s["hi"], 0.0)
    other = scores(rng.random(n) < 0.6)
    mixed = summarise([one, other], draws=500)
    assert mixed["accuracy"]["mean"] == pytest.approx((one.metrics()["accuracy"] + other.metrics()["accuracy"]) / 2)
    assert mixed["accuracy"]["sd"] > 0.05 and mixed["frechet_distance"]["lo"] < mixed["frechet_distance"]["hi"]
    fewer = ClipScores(["shape"], one.hits[:-1], one.features[:-1], one.real_features[:-1], one.consistency[:-1])
    with pytest.raises(ValueError, match="same evaluation pairs"):
        summarise([one, fewer])


def test_paired_difference_is_the_difference_of_means_with_an_interval_on_shared_clips():
    from accvideo.evaluate.intervals import ClipScores, compare

    rng = np.random.default_rng(1)
    n = 300
    feats = rng.normal(size=(n, 4))

    def scores(p):
        return ClipScores(["shape"], (rng.random(n) < p)[:, None], feats, feats + 0.1, np.full(n, 0.99))

    good, bad = scores(0.9), scores(0.6)
    d = compare([good], [bad], draws=400)["accuracy"]
    assert d["diff"] == pytest.approx(good.metrics()["accuracy"] - bad.metrics()["accuracy"])
    assert 0 < d["lo"] < d["diff"] < d["hi"]  # 0.9 against 0.6 on 300 clips: clearly apart
    same = compare([good], [good], draws=100)["frechet_distance"]
    assert same["diff"] == same["lo"] == same["hi"] == 0  # paired: a row against itself never differs


def test_resampling_seeds_widens_the_interval_by_the_trainings_noise():
    """Three seeds of each row whose accuracies scatter (0.80, 0.70, 0.90 against 0.75, 0.85, 0.65): over clips
    alone the mean difference (+0.05) looks certain; over seeds and clips it does not, as it should not."""
    from accvideo.evaluate.intervals import ClipScores, compare

    rng = np.random.default_rng(2)
    n = 2000
    feats = rng.normal(size=(n, 4))

    def scores(p):
        return ClipScores(["shape"], (rng.random(n) < p)[:, None], feats, feats + 0.1, np.full(n, 0.99))

    first, second = [scores(p) for p in (0.80, 0.70, 0.90)], [scores(p) for p in (0.75, 0.85, 0.65)]
    clips = compare(first, second, draws=400)["accuracy"]
    both = compare(first, second, draws=400, resample_seeds=True)["accuracy"]
    assert both["diff"] == clips["diff"] == pytest.approx(0.05, abs=0.02)
    assert clips["lo"] > 0  # the clips alone: "shown"
    assert both["lo"] < 0 < both["hi"]  # with the seeds: not shown
    assert both["hi"] - both["lo"] > 3 * (clips["hi"] - clips["lo"])
    alike = [scores(0.8)] * 3  # seeds that agree: resampling them changes nothing
    assert compare(alike, [good := scores(0.6)] * 3, draws=200, resample_seeds=True)["accuracy"]["lo"] > 0.15
    assert compare([good], [good], draws=50, resample_seeds=True)["accuracy"]["hi"] == 0


def test_a_bootstrap_draw_fits_the_shared_real_clips_once_and_measures_the_same_distance():
    from accvideo.evaluate.intervals import ClipScores, _draw_metrics
    from accvideo.evaluate.metrics import frechet_distance

    rng = np.random.default_rng(2)
    n, d = 200, 16
    real = rng.normal(size=(n, d))
    sets = [
        ClipScores(["shape"], np.ones((n, 1), bool), real * s + rng.normal(size=(n, d)), real, np.ones(n))
        for s in (0.5, 1.0, 2.0)
    ]
    idx = rng.integers(n, size=n)
    fast = [v["frechet_distance"] for v in _draw_metrics(sets, idx)]  # one Gaussian of the real clips
    slow = [frechet_distance(s.features[idx], s.real_features[idx]) for s in sets]  # one per set
    assert fast == pytest.approx(slow, rel=1e-9) and len(set(np.round(fast, 6))) == 3
    other = ClipScores(["shape"], np.ones((n, 1), bool), sets[0].features, real + 1.0, np.ones(n))
    mixed = [v["frechet_distance"] for v in _draw_metrics([sets[0], other], idx)]  # not shared: each its own
    assert mixed == pytest.approx([slow[0], frechet_distance(other.features[idx], other.real_features[idx])], rel=1e-9)


def test_image_to_video_mode_starts_each_clip_from_the_worlds_first_frame():
    """ToyBench's image-to-video mode: an image model (here the built-in's weights in the TI2V image layout, the start
    of `teacher train image=true init=builtin`) decodes, as frame 0, the VAE's reconstruction of the world's first
    frame of that very prompt and seed; the rest is generated."""
    from diffusers import WanPipeline

    from accvideo.core.runtime import builtin_model_dir
    from accvideo.core.sampling import shifted_plan
    from accvideo.evaluate.generate import first_frames, generate_videos
    from accvideo.models.wan_ti2v import WanTI2VImageAdapter
    from accvideo.teacher.train import image_pipeline
    from accvideo.world import render
    from accvideo.world.render import WorldConfig

    adapter = WanTI2VImageAdapter(image_pipeline(WanPipeline.from_pretrained(str(builtin_model_dir()))))
    pairs = prompts(2, "heldout", 0)
    videos = generate_videos(adapter, pairs, shifted_plan(adapter, 2, 1.0), frames=17, height=64, width=64)
    images = first_frames(pairs, 17, 64, 64)
    for (prompt, seed), video, image in zip(pairs, videos, images, strict=True):
        real = render(parse_caption(prompt), seed, WorldConfig())
        assert np.abs(np.asarray(image) / 255.0 - real[0]).max() <= 0.5 / 255 + 1e-6  # the world's frame 0
        cond = adapter.encode_images([image], 17, 64, 64)["condition"]
        alone = (adapter.decode(cond)[0, 0].numpy() * 255 + 0.5).astype(np.uint8)  # the given latent frame, decoded
        assert np.abs(video[0].astype(int) - alone.astype(int)).max() <= 1
        own = np.abs(video[0] / 255.0 - real[0]).mean()  # the VAE's reconstruction of the real first frame
        other = np.abs(video[0] / 255.0 - render_batch([(parse_caption(p), s) for p, s in pairs if p != prompt])[0, 0])
        assert own < 0.06 and own < other.mean() / 2, (own, other.mean())


@pytest.mark.parametrize("model", ["missing", "synvid"])
def test_a_model_that_is_none_is_refused_before_the_folder_is_made(model, synvid, tmp_path, capsys):
    """The folder was claimed first, then the model's identity refused a missing one ("teacher folder ... holds no
    files; pass --teacher", a flag evaluate lacks), leaving an empty marked folder."""
    given = {"missing": tmp_path / "nowhere", "synvid": synvid}[model]
    out = tmp_path / "ev"
    code, captured = _run_cli(["evaluate", "--model", str(given), "--prompts", "4", "--out", str(out)], capsys)
    err = captured.err
    want = {
        "missing": f"model directory {given} does not exist; pass a local diffusers pipeline folder",
        "synvid": f"{given} is the output of `accvideo synthesize`, not a model",
    }[model]
    assert code == 2 and err.count("\n") == 1 and want in err, err
    assert not out.exists()


def test_a_manifest_naming_a_file_that_is_no_clip_or_a_folder_is_one_line(tmp_path, heldout, capsys):
    """A file no decoder reads was wrapped twice ("cannot read X (AccVideoError: video X is not readable (...);
    re-encode or remove it); re-encode it ..."); a folder was said not to exist."""
    pairs, real = heldout
    folder = write_video_folder(tmp_path / "clips", real[:2], pairs[:2], fmt="mp4")
    (folder / "notes.mp4").write_text("not a video")
    (folder / "sub.mp4").mkdir()
    rows = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]
    for name, says in (
        ("notes.mp4", "is not readable ("),
        ("sub.mp4", "which is a folder, not a clip; fix the manifest"),
    ):
        rows[0]["file"] = name
        (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        code, out = _run_cli(["evaluate", "--videos", str(folder), "--out", str(tmp_path / "ev")], capsys)
        assert code == 2 and out.err.count("\n") == 1 and says in out.err, out.err
        assert "cannot read" not in out.err and out.err.count("re-encode") <= 1


@pytest.mark.parametrize(
    "setting, words",
    [
        ("--frames 0", "frames must be at least 1"),
        ("--frames 3", "frames must be of the form 4k+1 (e.g. 1 or 5); got 3"),
        ("--frames 9999", "frames must be of the form 4k+1 (e.g. 9997); got 9999"),  # 10001 is past the cap
        ("--size 30x30", "height must be a positive multiple of 16 (e.g. 32); got 30"),
    ],
)
def test_a_classifier_for_clips_no_model_makes_is_refused_before_training(setting, words, tmp_path, capsys):
    """`--frames 0` was a traceback after the folder was made; `--size 30x30` trained, and evaluate with it then
    crashed in the sampler (no model makes 30x30 clips)."""
    out = tmp_path / "clf"
    code, captured = _run_cli(["world-train-classifier", "--out", str(out), "--steps", "1", *setting.split()], capsys)
    assert code == 2 and captured.err.count("\n") == 1 and words in captured.err, captured.err
    assert not out.exists()


def test_a_manifest_that_is_a_fifo_lists_nothing_and_does_not_hang(tmp_path):
    """An evaluate or sample writer read its folder's manifest.jsonl as text first: a FIFO there hung it."""
    import os

    from accvideo.core.video import manifest_entries

    os.mkfifo(tmp_path / "manifest.jsonl")
    assert manifest_entries(tmp_path) == []
    write_video_folder(tmp_path, np.zeros((1, 5, 8, 8, 3), np.uint8), [("a red circle", 1)], "npy")
    assert [e["seed"] for e in manifest_entries(tmp_path)] == [1]  # replaced by a file


# --- bad manifests, clips that are no files, and folders another command is writing -------------------------------
def _tiny_folder(folder, n: int = 2):
    """A folder of n tiny .npy clips and their manifest (every field valid; the clips are too small to score)."""
    return write_video_folder(folder, _clips(n, 10), prompts(n, "heldout", 0), fmt="npy")


def _rows(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]


def _write_rows(folder, rows: list[dict]) -> None:
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _one_line(args, capsys) -> str:
    code, out = _run_cli(args, capsys)
    lines = out.err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in out.err, out.err
    return lines[0]


def test_a_manifest_that_is_not_utf8_is_one_line_naming_its_line(tmp_path, capsys):
    """A manifest.jsonl with a byte that is no UTF-8 (one saved as UTF-16 or Latin-1) was a UnicodeDecodeError
    traceback from read_text(); it is one line naming the file and line, as a prompt file's is. A UTF-8 byte-order
    mark is read as prompt files read it."""
    folder = _tiny_folder(tmp_path / "clips")
    manifest, out = folder / "manifest.jsonl", tmp_path / "ev"
    rows = _rows(folder)
    text = manifest.read_text()
    manifest.write_bytes(text.encode() + b'{"prompt": "caf\xe9", "seed": 3}\n')  # Latin-1, on line 3
    line = _one_line(["evaluate", "--videos", str(folder), "--out", str(out)], capsys)
    assert line == f"error: line 3 of {manifest} is not UTF-8 (byte 0xe9 at column 16); re-save the file as UTF-8"
    manifest.write_bytes(text.encode("utf-16"))  # a Windows editor's "Unicode": its byte-order mark is FF FE
    line = _one_line(["evaluate", "--videos", str(folder), "--out", str(out)], capsys)
    assert line == f"error: line 1 of {manifest} is not UTF-8 (byte 0xff at column 1); re-save the file as UTF-8"
    assert not out.exists()
    manifest.write_bytes(text.encode("utf-8-sig"))  # UTF-8 with a byte-order mark: the same entries
    assert load_video_folder(folder)[1] == [(r["prompt"], r["seed"]) for r in rows]
    manifest.write_bytes(text.encode() + b'{"prompt": "x"\n')  # a row that is no JSON: named by the file's line
    with pytest.raises(AccVideoError, match=r"manifest.jsonl is not valid JSON \(line 3: "):
        load_video_folder(folder)


@pytest.mark.parametrize(
    "seed, shown",
    [(-5, "-5"), (True, "True"), (1.9, "1.9"), (2**70, str(2**70)), (2**63, str(2**63)), ("3", "'3'")],
)
def test_a_manifest_seed_that_is_no_seed_is_refused_as_in_a_prompt_file(seed, shown, tmp_path, capsys):
    """The seed a clip's reference is rendered with: -5 crashed numpy with a traceback; true, 1.9 and 2**70 were read
    as 1, 1 and a seed the clip was never made with, exit 0. The check JSONL prompt rows get, naming the entry."""
    folder = _tiny_folder(tmp_path / "clips")
    rows = _rows(folder)
    rows[1]["seed"] = seed
    _write_rows(folder, rows)
    line = _one_line(["evaluate", "--videos", str(folder), "--out", str(tmp_path / "ev")], capsys)
    assert line == f"error: manifest entry 1 in {folder}: seed must be an integer in [0, 2^63); got {shown}"
    assert not (tmp_path / "ev").exists()
    rows[1]["seed"] = 2**63 - 1  # the largest seed: taken as it is
    _write_rows(folder, rows)
    assert [s for _, s in load_video_folder(folder)[1]] == [rows[0]["seed"], 2**63 - 1]


@pytest.mark.parametrize("named", [True, False])
def test_a_clip_that_is_a_fifo_is_named_for_what_it_is(named, tmp_path, capsys):
    """A FIFO where a clip belongs was said not to exist ("which does not exist; fix the manifest"), or, under the
    conventional name, not found at all; it is there, and no clip file. Never opened (reading it waits forever)."""
    import os

    folder = _tiny_folder(tmp_path / "clips")
    if not named:  # no "file": the clip is found by its conventional name
        _write_rows(folder, [{k: v for k, v in r.items() if k != "file"} for r in _rows(folder)])
    (folder / "000001.npy").unlink()
    os.mkfifo(folder / "000001.npy")
    line = _one_line(["evaluate", "--videos", str(folder), "--out", str(tmp_path / "ev")], capsys)
    fifo = folder / "000001.npy"
    assert line == f"error: manifest entry 1 names {fifo}, which is a FIFO (named pipe), not a clip; fix the manifest"
    assert not (tmp_path / "ev").exists()


def _live_writer() -> str:
    """The HOST-PID of a live process of this host that is not this one (the lock of a writer still running)."""
    import os

    from accvideo.core.files import writer_id

    return writer_id().rsplit("-", 1)[0] + f"-{os.getppid()}"


def _contents(folder) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("held", ["clips", "above"])
def test_a_clips_folder_another_command_is_writing_is_refused(held, tmp_path, heldout, capsys):
    """A running `sample --prompts` (its .accvideo-lock held by a live process) was scored on the clips it had made
    so far, exit 0; so was an evaluate's OUT/videos while that evaluate wrote it. Refused before anything is made;
    a lock whose writer is dead is no writer."""
    import subprocess
    import sys

    from accvideo.core.outputs import mark_folder

    pairs, real = heldout
    holder = tmp_path / "live"
    clips = holder if held == "clips" else holder / "videos"
    write_video_folder(clips, (real[:2] * 255 + 0.5).astype(np.uint8), pairs[:2], fmt="npy")
    command = "sample" if held == "clips" else "evaluate"
    mark_folder(holder, command)
    (holder / ".accvideo-lock").write_text(_live_writer())
    before, out = _contents(holder), tmp_path / "ev"
    line = _one_line(["evaluate", "--videos", str(clips), "--out", str(out)], capsys)
    assert line.startswith(f"error: {holder} is being written by `accvideo {command}` ({_live_writer()}); wait")
    assert f"delete {holder / '.accvideo-lock'} if none is running" in line
    assert not out.exists() and _contents(holder) == before
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (holder / ".accvideo-lock").write_text(_live_writer().rsplit("-", 1)[0] + "-" + dead.stdout.strip())
    code, _ = _run_cli(["evaluate", "--videos", str(clips), "--out", str(out)], capsys)  # its writer was killed
    assert code in (0, None) and json.loads((out / "metrics.json").read_text())["n_videos"] == 2


def test_a_clip_replaced_since_its_manifest_listed_it_is_refused(tmp_path, heldout, capsys):
    """`sample --prompts` lists each clip's sha256; a clip copied over another was scored as the listed prompt's
    (Frechet 75 -> 330, exit 0). A manifest without sha256 (a folder of your own) is read as before."""
    from accvideo.core.files import file_sha256

    pairs, real = heldout
    clips = tmp_path / "clips"
    write_video_folder(clips, (real[:3] * 255 + 0.5).astype(np.uint8), pairs[:3], fmt="npy")
    manifest = clips / "manifest.jsonl"
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    manifest.write_text("".join(json.dumps({**r, "sha256": file_sha256(clips / r["file"])}) + "\n" for r in rows))
    code, _ = _run_cli(["evaluate", "--videos", str(clips), "--out", str(tmp_path / "ev")], capsys)
    assert code in (0, None) and json.loads((tmp_path / "ev" / "metrics.json").read_text())["n_videos"] == 3
    (clips / rows[0]["file"]).write_bytes((clips / rows[2]["file"]).read_bytes())  # copied over by hand
    line = _one_line(["evaluate", "--videos", str(clips), "--out", str(tmp_path / "ev2")], capsys)
    assert f"{clips / rows[0]['file']} is not the clip the manifest in {clips} lists (its sha256 differs" in line
    assert not (tmp_path / "ev2").exists()
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))  # no sha256: the file as it is
    code, _ = _run_cli(["evaluate", "--videos", str(clips), "--out", str(tmp_path / "ev3")], capsys)
    assert code in (0, None)


def test_clips_inside_a_run_a_live_distill_resumes_in_are_scored(tmp_path, heldout, capsys):
    """Only a command that writes clip folders inside its own (evaluate, demo, ablate) holds a clips folder above it:
    clips sampled earlier into RUN/clips are scored while a distill resumed in RUN trains."""
    from accvideo.core.outputs import mark_folder

    pairs, real = heldout
    run = tmp_path / "run"
    write_video_folder(run / "clips", (real[:2] * 255 + 0.5).astype(np.uint8), pairs[:2], fmt="npy")
    mark_folder(run, "distill")
    (run / ".accvideo-lock").write_text(_live_writer())
    code, _ = _run_cli(["evaluate", "--videos", str(run / "clips"), "--out", str(tmp_path / "ev")], capsys)
    assert code in (0, None) and json.loads((tmp_path / "ev" / "metrics.json").read_text())["n_videos"] == 2


@pytest.mark.parametrize("source", ["videos", "model"])
def test_evaluate_refuses_an_output_folder_another_evaluate_is_writing(
    source, tmp_path, tiny_wan_dir, heldout, capsys, monkeypatch
):
    """Two evaluates into one --out both exited 0, and one's clips and metrics replaced the other's. The folder's
    lock (as `sample --prompts` holds its folder's) refuses the second in one line, before it samples or scores."""
    import accvideo.evaluate.run as run
    from accvideo.core.outputs import mark_folder

    def never(*a, **kw):
        raise AssertionError("sampled or scored for a folder another evaluate holds")

    monkeypatch.setattr(run, "evaluate_videos", never)
    monkeypatch.setattr(run, "_sample_model", never)

    out = tmp_path / "ev"
    out.mkdir()
    mark_folder(out, "evaluate")
    (out / "metrics.json").write_text('{"theirs": true}')
    (out / ".accvideo-lock").write_text(_live_writer())
    before = _contents(out)
    pairs, real = heldout
    clips = write_video_folder(tmp_path / "clips", (real[:2] * 255 + 0.5).astype(np.uint8), pairs[:2], fmt="npy")
    given = ["--videos", str(clips)]
    if source == "model":
        given = ["--model", str(tiny_wan_dir), "--prompts", "2", "--steps", "1", "--device", "cpu"]
    line = _one_line(["evaluate", *given, "--out", str(out)], capsys)
    assert line == (
        f"error: another `accvideo evaluate` ({_live_writer()}) is writing {out}; wait for it to end, or delete "
        f"{out / '.accvideo-lock'} if none is running"
    )
    assert _contents(out) == before


def test_evaluate_holds_its_output_folder_from_the_claim_to_the_end(tmp_path, heldout, capsys, monkeypatch):
    """`--videos` makes its --out only once every clip has been scored: another evaluate that made and locked it
    meanwhile keeps it (this one is refused at its claim, writing nothing), and a run that claims it holds its lock
    until its reports are written."""
    import accvideo.evaluate.run as run
    from accvideo.core.files import writer_id
    from accvideo.core.outputs import mark_folder

    pairs, real = heldout
    clips = write_video_folder(tmp_path / "clips", (real[:2] * 255 + 0.5).astype(np.uint8), pairs[:2], fmt="npy")
    out, score, report = tmp_path / "ev", run.evaluate_videos, run.write_reports

    def another_run_claims_it(*a, **kw):
        out.mkdir()
        mark_folder(out, "evaluate")
        (out / ".accvideo-lock").write_text(_live_writer())
        return score(*a, **kw)

    monkeypatch.setattr(run, "evaluate_videos", another_run_claims_it)
    line = _one_line(["evaluate", "--videos", str(clips), "--out", str(out)], capsys)
    assert line.startswith(f"error: another `accvideo evaluate` ({_live_writer()}) is writing {out};")
    assert sorted(_contents(out)) == [".accvideo-lock", ".accvideo-output.json"]  # theirs alone, as they left it
    monkeypatch.setattr(run, "evaluate_videos", score)
    (out / ".accvideo-lock").unlink()  # that run ended
    held = []
    monkeypatch.setattr(
        run, "write_reports", lambda *a: (held.append((out / ".accvideo-lock").read_text()), report(*a))
    )
    code, _ = _run_cli(["evaluate", "--videos", str(clips), "--out", str(out)], capsys)
    assert code in (0, None) and held == [writer_id()] and not (out / ".accvideo-lock").exists()
    assert json.loads((out / "metrics.json").read_text())["n_videos"] == 2
