"""`accvideo sample --prompts FILE --out DIR`: one clip a prompt, the model loaded once, resumable.

DIR holds 000000.mp4, 000001.mp4, ... (the clip of prompt row i; `.gif` beside each with --gif), `manifest.jsonl`
(one line a clip: file, prompt, seed, and image) and `sample.yaml` (the resolved settings): the folder format
`accvideo evaluate --videos DIR` reads (evaluate/folder.py). Each clip is sampled from its row's own seed (the
row's, else item_seed(seed, row) as synthesize draws them), so `--batch` changes no clip beyond float rounding, and
a clip equals `accvideo sample --prompt P --seed S` of its row.

A clip is written whole under a temporary name and renamed into place, and the manifest lists it only after that,
so a run stopped at any point (Ctrl-C, a crash, a full disk) keeps every listed clip; the rerun samples only the
rows not listed. It keeps a listed clip only when its row is unchanged (prompt, seed, image bytes) and the settings
that make the clips (model, steps, sigmas, guidance, negative prompt, size, fps, dtype, decoder) are those of
`sample.yaml`; other settings are refused with one line naming the first that differs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import yaml
from tqdm.auto import tqdm

from accvideo.core.config import to_dict
from accvideo.core.files import remove_stale_temps, write_text_atomic
from accvideo.core.images import encode_conditioning, load_images
from accvideo.core.interrupts import check as check_interrupt
from accvideo.core.outputs import FolderLock, check_folder, claim_folder
from accvideo.core.runtime import BUILTIN_MODELS, resolve_model
from accvideo.core.sampling import encode_negative, sample_latents
from accvideo.core.video import write_video
from accvideo.errors import AccVideoError
from accvideo.evaluate.folder import MANIFESTS, video_name
from accvideo.models.identity import teacher_identity
from accvideo.models.open import model_family, model_folder
from accvideo.sample.config import SampleConfig
from accvideo.synthesize.prompts import Item, read_prompts
from accvideo.world import warn_unknown_words

COMMAND = "sample"
MANIFEST = MANIFESTS[0]
SETTINGS = "sample.yaml"


def sample_prompts(cfg: SampleConfig, progress: bool = True) -> dict:
    """One clip per row of cfg.prompts into the folder cfg.out; returns what was done and the resolved settings."""
    from accvideo.sample.run import open_for_sampling  # run.py dispatches here: imported late, no cycle

    out = Path(cfg.out).expanduser()
    items = read_prompts(cfg.prompts, cfg.seed)  # a missing, empty or malformed file: one line, nothing made
    inputs = {"model": resolve_model(cfg.model)}
    check_folder(out, COMMAND, inputs=inputs)  # before any weight is read; made only once the model is open
    items.check_images(bool(getattr(model_family(cfg.model), "image_conditioned", False)), cfg.prompts)
    o = open_for_sampling(cfg, items.has_images, f'"image" rows in {cfg.prompts}', progress)
    cfg = o.cfg
    made_with = {
        **o.model.describe(),
        "model_identity": teacher_identity(model_folder(cfg.model)),
        **o.plan.describe(),
        "negative_prompt": o.plan.negative_prompt,
        "size": [cfg.frames, cfg.height, cfg.width],
        "fps": cfg.fps,
        "gif": cfg.gif,
        "dtype": str(o.dtype).removeprefix("torch."),
        "decoder": cfg.runtime.decoder,
    }
    made_with.pop("model_dir", None)  # where the model lies is not what it is: a moved model resumes
    claim_folder(out, COMMAND, inputs=inputs)
    with FolderLock(out, COMMAND):  # one writer at a time: two would sample the same rows and race the manifest
        return _sample_rows(cfg, o, items.items, out, made_with, progress, items.resized(cfg.height, cfg.width))


def _entry(item: Item, gif: bool) -> dict:
    """The manifest line of `item`'s clip."""
    entry = {"file": video_name(item.index), "prompt": item.prompt, "seed": item.seed}
    if gif:
        entry["gif"] = video_name(item.index, ".gif")
    if item.image is not None:
        entry.update(image=item.image, image_sha256=item.image_sha256)
    return entry


def _check_settings(out: Path, made_with: dict) -> None:
    """Refuse to add clips made another way to those `out` holds: one line naming the first setting that differs."""
    try:
        before = yaml.safe_load((out / SETTINGS).read_text()) or {}
    except FileNotFoundError:
        return
    except (OSError, yaml.YAMLError) as exc:
        raise AccVideoError(f"cannot read {out / SETTINGS} ({exc}); delete {out} to sample again") from None
    old = before.get("made_with") if isinstance(before, dict) else None
    if not isinstance(old, dict):
        raise AccVideoError(f"{out / SETTINGS} holds no made_with settings; delete {out} to sample again")
    for key in [*made_with, *(k for k in old if k not in made_with)]:  # steps before sigmas
        if old.get(key) != made_with.get(key):
            raise AccVideoError(
                f"{out} holds clips made with {key} {_short(old.get(key))}, and this run's is "
                f"{_short(made_with.get(key))}; use another --out, or delete {out} to sample them again"
            )


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _listed(out: Path) -> list[dict]:
    """The manifest's lines (an unreadable manifest lists nothing: its clips are sampled again)."""
    try:
        lines = (out / MANIFEST).read_text().splitlines()
        entries = [json.loads(line) for line in lines if line.strip()]
    except (OSError, ValueError):
        return []
    return [e for e in entries if isinstance(e, dict)]


def _write_manifest(out: Path, entries: dict[int, dict]) -> None:
    write_text_atomic(out / MANIFEST, "".join(json.dumps(entries[i]) + "\n" for i in sorted(entries)))


def _sample_rows(cfg, o, items, out: Path, made_with: dict, progress: bool, resized: str | None) -> dict:
    remove_stale_temps(out)  # what a killed run left half-written (never a live writer's)
    _check_settings(out, made_with)
    wanted = {it.index: _entry(it, cfg.gif) for it in items}
    listed = _listed(out)
    done = {
        i: e
        for i, e in wanted.items()
        if e in listed and all((out / e[k]).is_file() for k in ("file", "gif") if k in e)
    }
    _write_manifest(out, done)  # before any clip is replaced: the manifest never lists one being rewritten
    for e in listed:  # clips of rows the prompt file no longer has (a shorter or edited file)
        if e not in done.values():
            for k in ("file", "gif"):
                name = e.get(k)
                if isinstance(name, str) and Path(name).name == name and name not in _names(wanted):
                    (out / name).unlink(missing_ok=True)
    one_clip = ("prompt", "image")  # the single-clip settings, unused here
    settings = {**{k: v for k, v in to_dict(cfg).items() if k not in one_clip}, **o.resolved(), "made_with": made_with}
    write_text_atomic(out / SETTINGS, yaml.safe_dump(settings, sort_keys=False))
    todo = [it for it in items if it.index not in done]
    if progress:
        if done:
            print(f"{len(done)} of {len(items)} clips are already in {out}; sampling the other {len(todo)}", flush=True)
        if resized and todo:
            print(resized, flush=True)
    if cfg.model in BUILTIN_MODELS:  # the built-in teachers only know their world's words
        warn_unknown_words([it.prompt for it in todo])
    adapter = o.model.adapter
    shape = adapter.latent_shape(cfg.frames, cfg.height, cfg.width)
    t0 = time.perf_counter()
    uncond = encode_negative(adapter, o.plan) if todo else None  # one row, shared by every batch
    bar = tqdm(total=len(items), initial=len(done), desc="sample", unit="clip", disable=not progress)
    for start in range(0, len(todo), cfg.batch):
        chunk = todo[start : start + cfg.batch]
        images = None
        if chunk[0].image is not None:
            images, _ = load_images([it.image for it in chunk], cfg.height, cfg.width)
        cond = encode_conditioning(adapter, [it.prompt for it in chunk], images, cfg.frames, cfg.height, cfg.width)
        latents = sample_latents(adapter, cond, [it.seed for it in chunk], shape, o.plan, uncond=uncond).latents
        with torch.inference_mode():
            videos = adapter.decode(latents)
        for it, video in zip(chunk, videos, strict=True):
            entry = wanted[it.index]
            for k in ("file", "gif"):
                if k in entry:
                    write_video(out / entry[k], video, cfg.fps)
            done[it.index] = entry
        _write_manifest(out, done)
        bar.update(len(chunk))
        check_interrupt()  # a swallowed Ctrl-C stops here; the rerun samples only the rows not listed
    bar.close()
    seconds = time.perf_counter() - t0
    settings.update(seconds_load=round(o.seconds_load, 3), seconds_generate=round(seconds, 3))
    write_text_atomic(out / SETTINGS, yaml.safe_dump(settings, sort_keys=False))
    return {
        **o.resolved(),
        "out": str(out),
        "clips": len(items),
        "sampled": len(todo),
        "kept": len(items) - len(todo),
        "seconds_load": round(o.seconds_load, 3),
        "seconds_generate": round(seconds, 3),
    }


def _names(entries: dict[int, dict]) -> set[str]:
    return {e[k] for e in entries.values() for k in ("file", "gif") if k in e}
