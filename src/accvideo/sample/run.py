"""`accvideo sample`: one prompt -> one clip through the one sampling path (core/sampling.py); a prompt file ->
one clip each (sample/batch.py)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import torch
import yaml

from accvideo.core.adapter import check_decoded
from accvideo.core.config import to_dict
from accvideo.core.files import remove_stale_temps, temp_name
from accvideo.core.images import check_image_use, encode_conditioning, image_size, load_images
from accvideo.core.outputs import FolderLock, claim_file, record_file, remove_file, vouch
from accvideo.core.runtime import BUILTIN_MODELS, resolve_device, resolve_dtype, resolve_model
from accvideo.core.sampling import SamplingPlan, sample_latents
from accvideo.core.video import write_error, write_video
from accvideo.errors import AccVideoError
from accvideo.models import size_multiple_of
from accvideo.models.decoder import check_decoder
from accvideo.models.defaults import check_form, fill_video, settings_line
from accvideo.models.open import OpenModel, distilled_size, model_family, model_folder, open_model
from accvideo.sample.config import SampleConfig
from accvideo.world import warn_unknown_words

COMMAND = "sample"


def generate_clips(
    adapter,
    prompts: Sequence[str],
    seeds: Sequence[int],
    plan: SamplingPlan,
    *,
    frames: int,
    height: int,
    width: int,
    images: Sequence | None = None,
    uncond=None,
    progress: bool = False,
) -> torch.Tensor:
    """Clips (B, F, H, W, 3) in [0, 1], each from its own seed: `sample_latents` for the prompts (and, image-to-video,
    one PIL image of the video's size each), then the VAE decode. `uncond`: the negative prompt's conditioning, when
    a caller samples many batches (core/sampling.encode_negative). Every command that makes clips runs this:
    `sample` (one, or a prompt file's), `evaluate`, `demo` and `bench`."""
    shape = adapter.latent_shape(frames, height, width)
    cond = encode_conditioning(adapter, list(prompts), images, frames, height, width)
    latents = sample_latents(adapter, cond, list(seeds), shape, plan, uncond=uncond, progress=progress).latents
    with torch.inference_mode():
        return check_decoded(adapter, adapter.decode(latents), len(seeds), frames, height, width)


def generate_clip(
    adapter,
    prompt: str,
    plan: SamplingPlan,
    *,
    frames: int,
    height: int,
    width: int,
    seed: int,
    progress: bool = False,
    image=None,
) -> torch.Tensor:
    """One clip (F, H, W, 3) in [0, 1]: `generate_clips` of one prompt (`accvideo sample`, `accvideo bench`)."""
    images = None if image is None else [image]
    return generate_clips(
        adapter, [prompt], [seed], plan, frames=frames, height=height, width=width, images=images, progress=progress
    )[0]


def sample(cfg: SampleConfig, progress: bool = True) -> dict:
    """Generate cfg.prompt into cfg.out (plus a GIF when asked); returns the resolved settings. With `cfg.prompts`,
    one clip a prompt into the folder cfg.out instead (sample/batch.py).

    `cfg.model` may be a distill run folder or an exported student: it then samples with the student's stored
    key sigmas (m Euler steps) and guidance 1, unless steps, shift or guidance are given.
    """
    cfg = replace(cfg, out=cfg.output)
    if cfg.prompts is not None:
        from accvideo.sample.batch import sample_prompts

        return sample_prompts(cfg, progress)
    out = Path(cfg.out).expanduser()
    written = _outputs(cfg, out)
    inputs = {"model": resolve_model(cfg.model)}
    made = [p for p in (out.parent, *out.parent.parents) if not p.exists()]  # folders this run makes for its clip
    try:
        for path in written:  # the clip and its side files replace only files accvideo wrote (core/outputs.py)
            claim_file(path, COMMAND, inputs=inputs)
        _check_other_clip(out)
        # one sample at a time per --out: two interleaved their ledger entries, and every later run was refused
        with FolderLock.beside(out, COMMAND):
            return _sample(cfg, out, written, progress)
    except AccVideoError:  # refused (a missing --decoder, a bad --image, ...): no empty folder left behind
        for folder in made:
            try:
                folder.rmdir()  # only when empty
            except OSError:
                break
        raise


class Opened(NamedTuple):
    """A model ready to sample: the settings with the model's defaults filled in, and what was resolved."""

    cfg: SampleConfig
    model: OpenModel
    plan: SamplingPlan
    settings: str  # the one line every command prints (models/defaults.settings_line)
    device: torch.device
    dtype: torch.dtype
    seconds_load: float

    def resolved(self) -> dict:
        """What was resolved, for the settings YAML beside the clips."""
        cfg, plan = self.cfg, self.plan
        return {
            **self.model.describe(),
            "resolved_steps": plan.steps,
            "resolved_guidance": plan.guidance,
            "resolved_shift": plan.shift,
            "resolved_size": [cfg.frames, cfg.height, cfg.width],
            "settings": self.settings.removeprefix("settings: "),  # the printed line, without its label
            "sigmas": plan.describe()["sigmas"],
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
        }


def open_for_sampling(cfg: SampleConfig, has_images: bool, image_source: str, progress: bool) -> Opened:
    """Check the settings against the model's family before any weight is read, fill in the model's defaults, load
    it, check again against the loaded model, and resolve the sampling plan (printed when `progress`)."""
    family = model_family(cfg.model)  # validates the folder (a student's: its teacher's) before any weight is read
    check_image_use(family, has_images, image_source)
    folder = model_folder(cfg.model)
    # the model's size (a student's: the one it was distilled at) and negative prompt
    cfg, source = fill_video(cfg, folder, family.family, distilled_size(cfg.model))
    check_form(cfg, family.frame_step, size_multiple_of(family, folder), source)
    if cfg.runtime.decoder is not None:  # missing, damaged or another VAE's: before the model loads
        check_decoder(cfg.runtime.decoder, folder)
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    t0 = time.perf_counter()
    opened = open_model(cfg.model, device=device, dtype=dtype, runtime=cfg.runtime)
    check_form(cfg, opened.adapter.frame_step, opened.adapter.size_multiple, source)
    # a student: its own key steps, no CFG (guidance is baked in), unless overridden
    plan = opened.plan(cfg.steps, cfg.guidance, cfg.shift, cfg.negative_prompt)
    settings = settings_line(cfg, plan, source)
    if progress:
        print(settings, flush=True)
    return Opened(cfg, opened, plan, settings, device, dtype, time.perf_counter() - t0)


def _sample(cfg: SampleConfig, out: Path, written: list[Path], progress: bool) -> dict:
    remove_stale_temps(out.parent, f".{out.stem}.")  # what a killed run of this name left half-written
    if cfg.image is not None:
        image_size(cfg.image)  # a missing or non-image file is one line before any weight is read
    o = open_for_sampling(cfg, cfg.image is not None, "--image FILE", progress)
    cfg = o.cfg
    image = None
    if cfg.image is not None:
        (image,), notes = load_images([cfg.image], cfg.height, cfg.width)
        for note in notes if progress else ():
            print(note, flush=True)
    t1 = time.perf_counter()
    if cfg.model in BUILTIN_MODELS:  # the built-in teachers only know their world's words
        warn_unknown_words([cfg.prompt])
    video = generate_clip(
        o.model.adapter,
        cfg.prompt,
        o.plan,
        frames=cfg.frames,
        height=cfg.height,
        width=cfg.width,
        seed=cfg.seed,
        progress=progress,
        image=image,
    )
    t2 = time.perf_counter()
    resolved = {
        **o.resolved(),
        "outputs": [str(p) for p in written[:-1]],
        "seconds_load": round(o.seconds_load, 3),
        "seconds_generate": round(t2 - t1, 3),
    }
    if o.model.student is not None:
        resolved["key_sigmas_used"] = cfg.steps is None and cfg.shift is None
    _put_in_place(written, video, cfg.fps, yaml.safe_dump({**to_dict(cfg), **resolved}, sort_keys=False))
    for path in _stale(out, written):  # what an earlier run of this name wrote and this one did not (a GIF)
        remove_file(path, COMMAND)  # only this command's own, unchanged files (core/outputs.py)
    return resolved


def _put_in_place(written: list[Path], video: torch.Tensor, fps: int, settings_yaml: str) -> None:
    """Write the clip (and GIF) and the settings YAML (`written`, the YAML last) under temporary names, then rename
    them into place together: a write that fails (a full disk, a file-size limit) keeps the earlier run's set whole,
    never a new clip beside the old settings and GIF, and leaves no temporary behind. Each file is vouched for in
    the ledger before the renames and recorded after them (core/outputs.py), so a rerun may replace them."""
    staged: list[tuple[Path, Path]] = []  # (temporary, final)
    try:
        for path in written[:-1]:  # rename=False, positionally (tests wrap write_video): the whole temporary file
            staged.append((write_video(path, video, fps, None, False), path))
        staged.append((_stage_text(written[-1], settings_yaml), written[-1]))
        for tmp, path in staged:
            vouch(path, COMMAND)(tmp)
        for tmp, path in staged:
            os.replace(tmp, path)
    finally:
        for tmp, _ in staged:  # after a failure: the temporaries not yet renamed
            tmp.unlink(missing_ok=True)
    for path in written:
        record_file(path, COMMAND)


def _stage_text(path: Path, text: str) -> Path:
    """`text` whole under `path`'s temporary name; a failed write's error names `path`, never the temporary."""
    tmp = temp_name(path)
    try:
        tmp.write_text(text, encoding="utf-8")
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise write_error(path, exc) from None
    return tmp


def _check_other_clip(out: Path) -> None:
    """Refuse an --out whose settings YAML belongs to the clip of another --out of the same name (`a.gif`, then
    `--out a.mp4`: both are a.yaml's): this run would replace that YAML and then remove the other clip as stale."""
    try:
        earlier = yaml.safe_load(out.with_suffix(".yaml").read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return
    recorded = earlier.get("out") if isinstance(earlier, dict) else None
    if not isinstance(recorded, str) or Path(recorded).name == out.name:
        return
    other = out.with_name(Path(recorded).name)
    if other.stem == out.stem and other.is_file():
        raise AccVideoError(
            f"{other} is the clip of an earlier `accvideo sample --out {other.name}`, and {out.with_suffix('.yaml')} "
            f"holds its settings; pass another --out, or --out {other.name} to replace it"
        )


def _stale(out: Path, written: list[Path]) -> list[Path]:
    """Clips beside `out` of the same name (clip.mp4, clip.gif: they share clip.yaml, so they are one run's) that this
    run did not write: a rerun leaves only what it made. `remove_file` keeps any the ledger does not list as ours."""
    if not out.parent.is_dir():
        return []
    names = {p.name for p in written}
    return sorted(
        p
        for p in out.parent.iterdir()
        if p.stem == out.stem and p.suffix.lower() in (".mp4", ".gif") and p.name not in names
    )


def _outputs(cfg: SampleConfig, out: Path) -> list[Path]:
    """The files a run writes: the clip, a GIF when asked, and last the settings YAML beside them."""
    files = [out]
    if cfg.gif and out.suffix.lower() != ".gif":
        files.append(out.with_suffix(".gif"))
    return [*files, out.with_suffix(".yaml")]
