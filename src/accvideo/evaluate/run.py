"""ToyBench scoring: evaluate_videos (the one metric path) and `accvideo evaluate` around it."""

from __future__ import annotations

import hashlib
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from accvideo.core.inputs import parse_json
from accvideo.core.outputs import FolderLock, check_folder, check_not_being_written, claim_folder, owner
from accvideo.core.progress import progress_bar
from accvideo.core.runtime import resolve_device, resolve_dtype, resolve_model
from accvideo.errors import AccVideoError
from accvideo.evaluate.classifier import (
    VideoClassifier,
    as_float_clips,
    check_clips,
    classify,
    load_classifier,
    shipped_classifier_dir,
)
from accvideo.evaluate.config import EvaluateConfig
from accvideo.evaluate.folder import VideoFolder, clear_video_folder, load_video_folder, write_video_folder
from accvideo.evaluate.generate import generate_videos
from accvideo.evaluate.intervals import ClipScores
from accvideo.evaluate.metrics import RunningGaussian, alignment_accuracy, motion_radius, running_frechet, warp_error
from accvideo.evaluate.report import write_reports
from accvideo.models.decoder import check_decoder, find_decoder
from accvideo.models.identity import sampled_identity
from accvideo.models.open import model_family, model_folder, open_model
from accvideo.models.student import find_student
from accvideo.world.attributes import (
    Attributes,
    PromptWarning,
    item_seed,
    parse_caption,
    prompts,
    warn_unknown_words,
)
from accvideo.world.render import WorldConfig, render_batch

# the commands whose output folder holds clip folders they write (OUT/videos/...)
CLIP_WRITERS = ("evaluate", "demo", "ablate")

# Seeds of the second real set that gives the Frechet floor: same prompts, other starts, sizes, speeds.
FLOOR_SEED_OFFSET = 0x51EED


def _parse_all(pairs: Sequence[tuple[str, int]]) -> list[Attributes | None]:
    """Attributes of every prompt, None (with a warning) for prompts outside the world's grammar."""
    warn_unknown_words(p for p, _ in pairs)
    parsed: list[Attributes | None] = []
    bad: list[str] = []
    for prompt, _ in pairs:
        try:
            parsed.append(parse_caption(prompt))
        except ValueError:
            parsed.append(None)
            bad.append(prompt)
    if bad:
        warnings.warn(
            f"{len(bad)} prompt(s) are not world captions (e.g. {bad[0]!r}); they are sampled but left out "
            "of alignment and Frechet distance",
            PromptWarning,
            stacklevel=3,
        )
    return parsed


def evaluate_videos(
    videos,
    prompts_and_seeds: Sequence[tuple[str, int]],
    *,
    classifier: VideoClassifier | str | Path | None = None,
    world: WorldConfig | None = None,
    reference: bool = True,
    per_clip: bool = False,
    progress: bool = False,
) -> dict:
    """ToyBench metrics of clips (N, F, H, W, 3) (uint8 or float in [0, 1]; or a `VideoFolder`, its clips read as they
    are scored) for their (prompt, seed) pairs.

    Real clips are rendered for the same prompts and seeds; with `reference`, the real clips' own scores and
    a second real set (other seeds) give the values a perfect model would reach at this N. With `per_clip`, the
    result also holds the scored clips' `ClipScores` (arrays, for intervals.py; not JSON) under "per_clip".
    """
    model = classifier if isinstance(classifier, VideoClassifier) else load_classifier(classifier)
    if isinstance(videos, (list, tuple)):
        videos = as_float_clips(videos)
    check_clips(videos, model.cfg, "the generated videos")
    if len(videos) != len(prompts_and_seeds):
        raise AccVideoError(f"{len(videos)} videos but {len(prompts_and_seeds)} prompts; give one prompt per video")
    if len(videos) == 0:
        raise AccVideoError("no videos to evaluate")
    world = world or WorldConfig(frames=model.cfg.frames, height=model.cfg.height, width=model.cfg.width)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parsed = _parse_all(prompts_and_seeds)
    for w in caught:  # re-issue, so callers see them, and keep the text for the report
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    keep = [i for i, a in enumerate(parsed) if a is not None]
    items = [(parsed[i], int(prompts_and_seeds[i][1])) for i in keep]
    names = list(model.cfg.classes)
    truth = np.array([a.index() for a, _ in items], dtype=np.int64).reshape(-1, len(names))

    radius = motion_radius(world.frames, world.height, world.width, world.travel_range[1])
    clips = lambda i, j: videos[i:j]  # noqa: E731 - an array's slice, or a VideoFolder's clips read now
    preds, stats, feats, warp = _scores(model, clips, len(videos), radius, progress, "scoring clips", keep, per_clip)
    result: dict = {
        "n_videos": len(videos),
        "n_scored": len(keep),
        "accuracy": alignment_accuracy({k: v[keep] for k, v in preds.items()}, truth, names),
        "frechet_distance": None,
        "temporal_consistency": float(1.0 - warp.mean()),  # = temporal_consistency(clips, radius=radius)
        "temporal_radius": radius,
    }
    if items:
        rendered = lambda i, j: render_batch(items[i:j], world)  # noqa: E731
        scored = _scores(model, rendered, len(items), radius, progress, "scoring renders", hold=per_clip)
        real_preds, real_stats, real_feats, real_warp = scored
        if len(items) >= 2:
            result["frechet_distance"] = running_frechet(stats, real_stats)
        if per_clip:
            hits = np.stack([preds[n][keep] == truth[:, k] for k, n in enumerate(names)], axis=1)
            result["per_clip"] = ClipScores(names, hits, feats, real_feats, 1.0 - warp[keep])
        if reference:
            floor_items = [(a, item_seed(s, FLOOR_SEED_OFFSET)) for a, s in items]
            floor = lambda i, j: render_batch(floor_items[i:j], world)  # noqa: E731
            _, floor_stats, _, _ = _scores(model, floor, len(floor_items), None, progress, "scoring other renders")
            result["reference"] = {
                "accuracy": alignment_accuracy(real_preds, truth, names),
                "frechet_distance": running_frechet(floor_stats, real_stats) if len(items) >= 2 else None,
                "temporal_consistency": float(1.0 - real_warp.mean()),  # = temporal_consistency(real clips)
            }
    result["items"] = [
        {
            "prompt": p,
            "seed": int(s),
            "predicted": {n: model.cfg.classes[n][int(preds[n][i])] for n in names},
            "correct": None
            if parsed[i] is None
            else {n: model.cfg.classes[n][int(preds[n][i])] == getattr(parsed[i], n) for n in names},
        }
        for i, (p, s) in enumerate(prompts_and_seeds)
    ]
    result["warnings"] = [str(w.message) for w in caught]
    return result


# clips held as float32 at once, with their renders and warp pairs (scoring 17x64x64 clips peaked at 530 MB at 64, 1 GB
# at 256, the same numbers); a multiple of classify's batch, so its batches (and numbers) stay
SCORE_CHUNK = 64


def _scores(
    model: VideoClassifier,
    clips,
    n: int,
    radius: int | None,
    progress: bool,
    desc: str,
    rows: Sequence[int] | None = None,
    hold: bool = False,
):
    """(predictions {attribute: (n,)}, a RunningGaussian of the features of the clips `rows` (default: all), with
    `hold` those features (len(rows), D) (else None: a Frechet distance needs only the moments), warp errors (n,)
    (None without `radius`)) of the n clips `clips(i, j)` returns, SCORE_CHUNK at a time: nothing held grows with
    the clip count but the predictions (the float copies of a whole folder and of the renders of its pairs took about
    5 MB a 17x64x64 clip, 55 GB for 10,000)."""
    chosen = np.zeros(n, bool)
    chosen[np.arange(n) if rows is None else np.asarray(rows, np.int64)] = True
    stats = RunningGaussian(model.cfg.feature_dim)
    # filled in place, allocated before the chunks' large temporaries: small arrays kept from each chunk, between
    # them, kept the allocator from reusing their memory (the resident size grew with the clip count)
    preds = {k: np.zeros(n, np.int64) for k in model.cfg.classes}
    warp = np.zeros(n) if radius is not None else None
    feats = np.zeros((int(chosen.sum()), model.cfg.feature_dim)) if hold else None
    held = 0
    for i in progress_bar(range(0, n, SCORE_CHUNK), desc=desc, unit="chunk", show=progress and n > SCORE_CHUNK):
        j = min(n, i + SCORE_CHUNK)
        chunk = as_float_clips(clips(i, j))
        chunk_preds, chunk_feats = classify(model, chunk, progress=progress)
        for k, v in chunk_preds.items():
            preds[k][i:j] = v
        picked = chunk_feats[chosen[i:j]]
        stats.add(picked)
        if hold:
            feats[held : held + len(picked)], held = picked, held + len(picked)
        if radius is not None:
            warp[i:j] = warp_error(chunk, radius=radius)
    return preds, stats, feats, warp


def run_evaluate(cfg: EvaluateConfig, progress: bool = True) -> dict:
    """Sample a model on world prompts (or read a folder), score the clips, write metrics.json and metrics.md."""
    locks: list[FolderLock] = []  # the output folder's FolderLock, from its claim to the end of the run
    try:
        return _run_evaluate(cfg, progress, locks)
    finally:
        for lock in locks:
            lock.release()


def _run_evaluate(cfg: EvaluateConfig, progress: bool, locks: list[FolderLock]) -> dict:
    clf = load_classifier(cfg.classifier)
    t0 = time.perf_counter()
    source: dict = {}
    if cfg.videos is not None:
        clips = Path(cfg.videos).expanduser()
        check_not_being_written(clips)  # a `sample --prompts` still writing it: it scored the clips written so far
        for folder in clips.absolute().parents:  # or a command writing clip folders inside its own (E/videos)
            if owner(folder) in CLIP_WRITERS:  # not a distill resumed in the run folder that holds the clips
                check_not_being_written(folder)
        # read SCORE_CHUNK clips at a time while scored (VideoFolder): each clip is checked as it is read, so the
        # output folder is checked now and claimed only once every clip has passed (nothing made for a bad one)
        videos = VideoFolder(cfg.videos, (clf.cfg.frames, clf.cfg.height, clf.cfg.width))
        pairs, source = videos.pairs, {"videos": str(cfg.videos), "files": len(videos)}
        check_folder(cfg.out, "evaluate", inputs={"videos": cfg.videos})  # the output guard (core/outputs.py)
        if Path(cfg.out).expanduser().is_dir():  # one writer at a time: refused now, not after scoring
            locks.append(FolderLock(Path(cfg.out).expanduser(), "evaluate"))
    else:
        resolve_device(cfg.device)  # a device this machine lacks is refused before the folder is claimed
        model_family(cfg.model)  # likewise a model folder that is none (missing, another command's output)
        if cfg.runtime.decoder is not None:  # missing, damaged or another VAE's: before the folder and any load
            check_decoder(cfg.runtime.decoder, model_folder(cfg.model))
        out = claim_folder(
            cfg.out, "evaluate", inputs={"model": cfg.model and resolve_model(cfg.model)}
        )  # before sampling: fail fast
        locks.append(FolderLock(out, "evaluate"))  # one writer at a time: two replaced each other's clips and metrics
        record = _sampling_record(cfg, clf)
        kept = _kept_clips(out, record) if cfg.video_format == "npy" else None
        if kept is not None:  # an identical rerun: the kept clips are the ones sampled, bit for bit
            videos, pairs, source = kept
            if progress:
                print(
                    f"re-scoring the {len(videos)} clips kept in {out / 'videos'} (same model and settings)", flush=True
                )
        else:
            videos, pairs, source = _sample_model(cfg, clf, progress)
            if cfg.video_format != "none":  # OUT/videos then holds exactly the clips its manifest lists
                source["saved_to"] = str(write_video_folder(out / "videos", videos, pairs, cfg.video_format))
            else:
                clear_video_folder(out / "videos")  # an earlier run's clips would not be this run's
        source = {**source, "sampling_record": record, "videos_sha256": _clips_sha256(videos)}
    t1 = time.perf_counter()
    metrics = evaluate_videos(videos, pairs, classifier=clf, progress=progress)
    if cfg.videos is not None:
        out = claim_folder(cfg.out, "evaluate", inputs={"videos": cfg.videos})
        if not locks:  # a new folder: locked once made; another run that made it since is refused here
            locks.append(FolderLock(out, "evaluate"))
        own, given = (out / "videos").resolve(), Path(cfg.videos).expanduser().resolve()
        if own != given and own not in given.parents:  # an earlier model run's clips: not this run's
            clear_video_folder(out / "videos")
    metrics["source"] = {
        **source,
        "classifier": cfg.classifier or "shipped",
        # its content: a classifier retrained into the same folder scores differently, and the path alone cannot say
        "classifier_identity": sampled_identity(Path(cfg.classifier) if cfg.classifier else shipped_classifier_dir()),
        "seconds_videos": round(t1 - t0, 2),
        "seconds_scoring": round(time.perf_counter() - t1, 2),
    }
    write_reports(metrics, out)
    return metrics


def _sampling_record(cfg: EvaluateConfig, clf: VideoClassifier) -> dict:
    """What fixes the sampled clips: every setting that reaches the sampler and the content identity of the teacher,
    the student and the decoder (models/identity.py: milliseconds for any size)."""
    student = find_student(resolve_model(cfg.model))
    decoder = cfg.runtime.decoder
    device = resolve_device(cfg.device)
    return {
        "model": sampled_identity(model_folder(cfg.model)),
        "student": sampled_identity(student) if student is not None else None,
        "decoder": sampled_identity(find_decoder(decoder)) if decoder is not None else None,
        "runtime": asdict(cfg.runtime),
        "pairs": [[p, int(s)] for p, s in prompts(cfg.prompts, cfg.split, cfg.seed)],
        "size": [clf.cfg.frames, clf.cfg.height, clf.cfg.width],
        **{k: getattr(cfg, k) for k in ("steps", "guidance", "shift", "negative_prompt", "batch_size")},
        "device": str(device),
        "dtype": str(resolve_dtype(cfg.dtype, device)),
    }


def _clips_sha256(videos: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(videos).reshape(-1).view(np.uint8)).hexdigest()  # no copy in bytes


def _kept_clips(out: Path, record: dict):
    """(videos, pairs, source) of the clips an earlier run with this very record kept in OUT/videos as .npy and
    scored, unchanged since; None when anything differs (the run then samples again)."""
    try:
        source = parse_json((out / "metrics.json").read_text())["source"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(source, dict) or source.get("sampling_record") != record:
        return None
    try:
        videos, pairs, files = load_video_folder(out / "videos", record["size"])
    except AccVideoError:
        return None
    if [list(p) for p in pairs] != record["pairs"] or not all(f.endswith(".npy") for f in files):
        return None
    if videos.dtype != np.uint8 or _clips_sha256(videos) != source.get("videos_sha256"):
        return None
    keep = ("sampling_record", "videos_sha256", "seconds_videos", "seconds_scoring")
    return videos, pairs, {**{k: v for k, v in source.items() if k not in keep}, "reused_videos": True}


def _sample_model(cfg: EvaluateConfig, clf: VideoClassifier, progress: bool):
    """Clips of cfg.prompts world prompts from cfg.model (a teacher or a student), in the classifier's size."""
    family = model_family(cfg.model)  # validates the folder before any weight is read
    f, h, w = clf.cfg.frames, clf.cfg.height, clf.cfg.width
    if (f - 1) % family.frame_step:
        raise AccVideoError(f"the classifier expects {f} frames, which a {family.family} model cannot make")
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    opened = open_model(cfg.model, device=device, dtype=dtype, runtime=cfg.runtime)
    plan = opened.plan(cfg.steps, cfg.guidance, cfg.shift, cfg.negative_prompt)
    pairs = prompts(cfg.prompts, cfg.split, cfg.seed)
    videos = generate_videos(
        opened.adapter, pairs, plan, frames=f, height=h, width=w, batch_size=cfg.batch_size, progress=progress
    )
    described = plan.describe()
    source = {
        **opened.describe(),
        "split": cfg.split,
        "prompt_seed": cfg.seed,
        "image_to_video": bool(family.image_conditioned),  # each clip from the world's first frame (generate.py)
        "steps": plan.steps,
        "guidance": plan.guidance,
        "shift": plan.shift,
        "sigmas": described["sigmas"],
        "device": str(device),
    }
    return videos, pairs, source
