"""The stages the demo and the ablation share, each keeping its output under the run folder so reruns resume.

OUT/training.json       the settings behind the folder's SynVid and students (a rerun with others is refused)
OUT/prompts.jsonl       train-split world prompts with per-item seeds
OUT/synvid/             SynVid of the teacher (accvideo synthesize)
OUT/<student>/          distillation runs (accvideo distill)
OUT/videos/<sampler>/   the evaluation clips of each sampler (lossless .npy + manifest: re-scorable)
"""

from __future__ import annotations

import hashlib
import json
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from accvideo.core.config import to_dict
from accvideo.core.files import write_json_atomic
from accvideo.core.inputs import parse_json, read_small_file
from accvideo.core.runtime import BUILTIN_MODELS, resolve_device, resolve_model
from accvideo.demo.config import ChainConfig
from accvideo.distill import DistillConfig, distill
from accvideo.errors import AccVideoError
from accvideo.evaluate.classifier import load_classifier
from accvideo.evaluate.folder import load_video_folder, read_clip, read_manifest, write_video_folder
from accvideo.evaluate.generate import first_frames, generate_videos
from accvideo.evaluate.run import evaluate_videos
from accvideo.models.decoder import INFO as DECODER_INFO
from accvideo.models.decoder import find_decoder
from accvideo.models.identity import sampled_identity
from accvideo.models.open import model_family, model_folder, open_model
from accvideo.models.runtime import RuntimeOptions
from accvideo.models.student import INFO, find_student
from accvideo.synthesize.config import SynthConfig
from accvideo.synthesize.layout import OVERWRITE_FIX
from accvideo.synthesize.prompts import write_prompts
from accvideo.synthesize.run import synthesize
from accvideo.world import prompts
from accvideo.world.render import WorldConfig


@dataclass(frozen=True)
class Sampler:
    """One row of the comparison: a model sampled with some steps and guidance (None: the model's default)."""

    name: str
    model: str  # teacher folder / 'builtin' / distill run folder
    steps: int | None = None
    guidance: float | None = None
    label: str = ""
    decoder: str | None = None  # a tiny decoder instead of the VAE (models/decoder.py)


class Stages:
    """Wall-clock seconds per named stage, printed as each one starts and ends."""

    def __init__(self, echo=print):
        self.seconds: dict[str, float] = {}
        self.echo = echo

    @contextmanager
    def __call__(self, name: str):
        self.echo(f"== {name}")
        t0 = time.perf_counter()
        yield
        self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - t0, 2)
        self.echo(f"   {name}: {self.seconds[name]:.1f} s")


RECORD = "training.json"


def check_training_settings(cfg, keys: tuple[str, ...], report: Path, when: dict[str, str] | None = None) -> dict:
    """Refuse, in one line and before anything is written, a rerun whose settings in `keys` (those that shape the
    SynVid or the students' training without naming new runs) differ from those the folder's work was made with:
    OUT/training.json, or for a folder from before that record, the config of its earlier `report` (none while the
    folder holds neither prompts nor SynVid: nothing was made with the recorded ones). A key in `when` is compared
    only when the setting it names is set (not None) in both (ablate's real_data: adding row (e) to a folder without
    it only adds cells). Returns the settings to record (`record_training_settings`)."""
    out = Path(cfg.out)
    new = {k: v for k, v in to_dict(cfg).items() if k in keys}
    if not (out / "prompts.jsonl").exists() and not (out / "synvid").exists():
        return new  # nothing made yet (an earlier invocation stopped before its first stage)
    _check_teacher(cfg, out / "synvid")
    saved = read_json_dict(out / RECORD).get("settings")
    if not isinstance(saved, dict):
        saved = read_json_dict(report).get("config")
    if not isinstance(saved, dict):
        return new
    when = when or {}
    for key in keys:
        if key not in saved or saved[key] == new[key]:
            continue
        gate = when.get(key)
        if gate is not None and (saved.get(gate) is None or new[gate] is None):
            continue
        raise AccVideoError(
            f"{out} holds a SynVid and students made with {key}={saved[key]!r}, not {new[key]!r} (its report would "
            f"name a setting they never saw); use another --out, or {key}={saved[key]!r}"
        )
    unset = {gate for gate in when.values() if new[gate] is None}
    for key, gate in when.items():  # the earlier value stays the folder's while this run does not set its own
        if key in saved and gate in unset:
            new[key] = saved[key]
    return new


def _check_teacher(cfg, synvid: Path) -> None:
    """Refuse a teacher other than the one whose SynVid the folder holds (by content: a moved teacher is the same)."""
    from accvideo.models.identity import teacher_identity
    from accvideo.synthesize.run import recorded_identity

    recorded = recorded_identity(synvid)
    if recorded is not None and teacher_identity(resolve_model(cfg.teacher), like=recorded) != recorded:
        raise AccVideoError(
            f"{cfg.out} holds a SynVid and students of another teacher than {cfg.teacher}; use another --out, or "
            "--teacher the one that made them"
        )


def record_training_settings(cfg, command: str, settings: dict) -> None:
    """OUT/training.json: the settings `check_training_settings` compares a rerun with (left as it is when equal)."""
    path = Path(cfg.out) / RECORD
    record = {"command": command, "settings": settings}
    if read_json_dict(path) != json.loads(json.dumps(record)):
        write_json_atomic(path, record)


def write_train_prompts(cfg: ChainConfig) -> Path:
    """OUT/prompts.jsonl: cfg.train_prompts train-split captions with their seeds; for an image-to-video teacher
    each row also names its first frame as the world renders it (OUT/images/, ToyBench's image-to-video mode).
    A file already there is kept when it holds the same rows, and refused (one line, nothing written) when not."""
    path = Path(cfg.out) / "prompts.jsonl"
    pairs = prompts(cfg.train_prompts, "train", cfg.seed)
    image = model_family(cfg.teacher).image_conditioned
    names = [f"images/{i:06d}.png" for i in range(len(pairs))] if image else None
    rows = [{"prompt": p, "seed": int(s), **({"image": names[i]} if names else {})} for i, (p, s) in enumerate(pairs)]
    kept = path.is_file()
    if kept and _read_rows(path) != rows:
        raise AccVideoError(
            f"{path} holds other train prompts than the {len(rows)} these settings make (train_prompts, seed or "
            f"the teacher's kind differ); use another --out, or the settings that made it"
        )
    if image:
        world = WorldConfig()
        (path.parent / "images").mkdir(parents=True, exist_ok=True)
        missing = [i for i, name in enumerate(names) if not kept or not (path.parent / name).is_file()]
        frames = first_frames([pairs[i] for i in missing], world.frames, world.height, world.width) if missing else []
        for i, frame in zip(missing, frames, strict=True):
            frame.save(path.parent / names[i])
    if not kept:
        write_prompts(path, pairs, names)
    return path


def _read_rows(path: Path) -> list | None:
    try:
        return [parse_json(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return None


def synthesize_synvid(
    cfg: ChainConfig, prompts_file: Path, progress: bool = True, key_indices: list[int] | None = None
) -> tuple[Path, int]:
    """OUT/synvid and the items this call wrote: the teacher's key latents for every train prompt (resumes a partial
    dataset); at cfg.key_steps uniform key steps, or at explicit grid `key_indices` (the ablation keeps every m's in
    one dataset)."""
    out = Path(cfg.out) / "synvid"
    try:
        summary = _synthesize(cfg, prompts_file, out, progress, key_indices)
    except AccVideoError as exc:  # synthesize's fix names its --overwrite, which demo and ablate do not have
        text = str(exc)
        if OVERWRITE_FIX not in text:
            raise
        fix = f"rerun with the settings it was made with, or delete {out} (or give another --out) to make it again"
        raise AccVideoError(text.replace(OVERWRITE_FIX, fix)) from None
    return out, summary["items_written"]


def _synthesize(cfg: ChainConfig, prompts_file: Path, out: Path, progress: bool, key_indices) -> dict:
    return synthesize(
        SynthConfig(
            teacher=cfg.teacher,
            prompts=str(prompts_file),
            out=str(out),
            steps=cfg.teacher_steps,
            key_steps=None if key_indices else cfg.key_steps,
            key_indices=key_indices,
            guidance=cfg.guidance,
            seed=cfg.seed,
            batch=cfg.synth_batch,
            device=cfg.device,
        ),
        progress=progress,
    )


def distill_student(cfg: ChainConfig, synvid: Path, name: str = "distill", progress: bool = True, **overrides) -> Path:
    """OUT/<name>: a student distilled from the SynVid with the chain's settings plus `overrides`."""
    out = Path(cfg.out) / name
    settings = dict(
        teacher=cfg.teacher,
        data=str(synvid),
        out=str(out),
        iterations=cfg.iterations,
        batch=cfg.batch,
        lr=cfg.lr,
        head_lr=cfg.head_lr,
        lora_rank=cfg.lora_rank,
        seed=cfg.seed,
        checkpoint_every=max(1, cfg.iterations // 4),
        device=cfg.device,
    )
    distill(DistillConfig(**{**settings, **overrides}), progress=progress)
    return out


def training_seconds(run: Path) -> float | None:
    """The wall seconds of training behind a distill run's weights, summed over its resumes (summary.json); None
    for a run whose checkpoint predates the count (a rescoring rerun must not report its own near-zero seconds)."""
    seconds = read_json_dict(Path(run) / "summary.json").get("train_seconds")
    return seconds or None


def kept_seconds(seconds: dict[str, float], earlier: dict, reused: set[str]) -> dict[str, float]:
    """The stage seconds of a report: a stage this invocation reused whole (nothing synthesized, trained or sampled)
    keeps the seconds an earlier invocation measured for it, not its own near-zero, and `total` moves by as much."""
    out = dict(seconds)
    earlier = earlier if isinstance(earlier, dict) else {}
    for name in sorted(reused):
        value = earlier.get(name)
        if isinstance(value, (int, float)) and name in out:
            out["total"] = round(out["total"] + value - out[name], 2)
            out[name] = value
    return out


def report_kept(earlier: dict, now: dict, reused: set[str], work: set[str], files: list[Path]) -> bool:
    """Whether a rerun keeps the report as it is, writing nothing: it did no work (every stage in `work` was
    reused whole), every report file is there, and the report says what the earlier one said (timings aside)."""
    if not work <= reused or not all(f.is_file() for f in files):
        return False
    return _untimed(json.loads(json.dumps(now))) == _untimed(earlier)


def _untimed(report: dict) -> dict:
    return {k: v for k, v in report.items() if k != "seconds"}


def kept_samplers(cfg: ChainConfig, samplers: list[Sampler], split: str = "test") -> set[str]:
    """The samplers whose clips `sample_and_score` would re-score rather than make (read before it runs)."""
    pairs = eval_pairs(cfg, split)
    return {s.name for s in samplers if _clips_kept(Path(cfg.out) / "videos" / s.name, s, pairs)}


def _clips_kept(folder: Path, s: Sampler, pairs) -> bool:
    done = folder / "sampler.json"
    return done.is_file() and read_json_dict(done).get("sampler") == _sampler_record(s, pairs)


def eval_pairs(cfg: ChainConfig, split: str = "test") -> list[tuple[str, int]]:
    """The held-out (prompt, seed) pairs every sampler is scored on (the grid uses the first few); their noise
    seeds are never a training seed (world.prompts: test reports, val tunes)."""
    return prompts(cfg.eval_prompts, split, cfg.seed)


def sample_and_score(
    cfg: ChainConfig, samplers: list[Sampler], progress: bool = True, split: str = "test", per_clip: bool = False
) -> dict[str, dict]:
    """Sample every sampler on the same held-out prompts and seeds, keep the clips, score them with ToyBench.

    Clips already in OUT/videos/<name> (a finished earlier run of the same sampler) are re-scored, not remade.
    With `per_clip`, each result also holds its ClipScores under "per_clip" (for intervals; not JSON).
    """
    clf = load_classifier()
    size = (clf.cfg.frames, clf.cfg.height, clf.cfg.width)
    pairs = eval_pairs(cfg, split)
    device = resolve_device(cfg.device)
    results: dict[str, dict] = {}
    opened: dict[tuple, object] = {}
    for s in samplers:
        folder = Path(cfg.out) / "videos" / s.name
        done = folder / "sampler.json"
        if _clips_kept(folder, s, pairs):
            try:
                videos, _, _ = load_video_folder(folder, size)
            except AccVideoError as exc:  # its words are for a user's folder ("re-encode it"): this is our cache
                raise AccVideoError(f"{exc}; here, delete {folder} and rerun to sample its clips again") from None
            info = read_json_dict(done)
        else:
            key = (s.model, s.decoder)
            t0 = time.perf_counter()
            if key not in opened:
                runtime = RuntimeOptions(decoder=s.decoder) if s.decoder else None
                opened[key] = open_model(s.model, device=device, dtype=torch.float32, runtime=runtime)
            # apart: the first sampler of each model pays its load, which made the student look no faster than
            # the naive teacher with as many steps
            seconds_loading, t0 = time.perf_counter() - t0, time.perf_counter()
            model = opened[key]
            plan = model.plan(s.steps, s.guidance)
            videos = generate_videos(
                model.adapter,
                pairs,
                plan,
                frames=size[0],
                height=size[1],
                width=size[2],
                batch_size=cfg.eval_batch,
                progress=progress,
            )
            info = {
                "sampler": _sampler_record(s, pairs),
                **plan.describe(),
                "seconds_sampling": time.perf_counter() - t0,
                "seconds_loading": seconds_loading,  # 0: the model was already open for an earlier sampler
                **model.describe(),
            }
            write_video_folder(folder, videos, pairs, "npy")
            write_json_atomic(done, info)
            videos, _, _ = load_video_folder(folder, size)  # score the kept 8-bit clips: a rescore gives the same
        metrics = evaluate_videos(videos, pairs, classifier=clf, per_clip=per_clip)
        results[s.name] = {
            "label": s.label or s.name,
            "videos": str(folder),
            "steps": info["steps"],
            "guidance": info["guidance"],
            "sigmas": info["sigmas"],
            "seconds_sampling": round(info["seconds_sampling"], 2),
            # clips kept from before 2026-12-04 have no load time apart (their sampling seconds include it)
            **({"seconds_loading": round(info["seconds_loading"], 2)} if "seconds_loading" in info else {}),
            "accuracy": metrics["accuracy"],
            "frechet_distance": metrics["frechet_distance"],
            "temporal_consistency": metrics["temporal_consistency"],
            "reference": metrics.get("reference"),
        }
        if per_clip:
            results[s.name]["per_clip"] = metrics["per_clip"]
    return results


def load_clips(folder: str | Path, n: int) -> np.ndarray:
    """The first n clips (uint8) of a sampler's folder."""
    folder = Path(folder)
    return np.stack([read_clip(folder / e["file"]) for e in read_manifest(folder)[:n]])


def _sampler_record(s: Sampler, pairs) -> dict:
    """What makes kept clips reusable: the same model (for a student, the same exported weights) and settings. A
    model folder counts by its content (models/identity.py), not by its path: the same demo folder named another
    way (absolute, relative, moved) re-scores its clips (it sampled its students again)."""
    student = find_student(s.model) if s.model not in BUILTIN_MODELS else None
    version = hashlib.sha256((student / INFO).read_bytes()).hexdigest()[:16] if student is not None else None
    record = {
        "model": s.model if s.model in BUILTIN_MODELS else sampled_identity(model_folder(s.model)),
        "student": version,
        "steps": s.steps,
        "guidance": s.guidance,
        "pairs": [list(p) for p in pairs],
    }
    if s.decoder is not None:  # the decoder's weights, by their sha256 in decoder.json
        record["decoder"] = read_json_dict(find_decoder(s.decoder) / DECODER_INFO).get("weights_sha256")
    return record


def read_json_dict(path: Path) -> dict:
    """A JSON file's object, or {} when it is missing, unreadable, no small regular file (a FIFO hung the rerun) or
    not an object."""
    try:
        data = parse_json(read_small_file(Path(path)))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
