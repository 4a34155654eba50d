"""`accvideo teacher train`: the built-in teacher from scratch (VAE, then flow matching), resumable."""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import warnings
from pathlib import Path

import torch

from accvideo.core import interrupts
from accvideo.core.averaging import update_average, warmup_decay
from accvideo.core.config import check_same_settings, save_config, to_dict
from accvideo.core.files import write_json_atomic, write_text_atomic
from accvideo.core.inputs import check_model_folder, load_safetensors, parse_json, read_json, read_yaml
from accvideo.core.outputs import mark_folder
from accvideo.core.progress import progress_bar
from accvideo.core.runtime import resolve_model
from accvideo.core.schedules import shift_sigmas
from accvideo.core.tensorfile import share_files
from accvideo.errors import AccVideoError
from accvideo.models import pipeline_class
from accvideo.models.defaults import SETTINGS_FILE, SMALL
from accvideo.models.tiny import word_tokenizer
from accvideo.models.wan import WanAdapter
from accvideo.models.wan_ti2v import WanTI2VImageAdapter
from accvideo.teacher.config import TeacherConfig
from accvideo.teacher.state import check_step_finite, save_state
from accvideo.teacher.vae import (
    check_step,
    checked_state,
    clips,
    load_trained_vae,
    reconstruction_psnr,
    restore,
    train_items,
    train_vae,
)
from accvideo.world import caption, vocabulary

COMMAND = "teacher train"
WORK_FILES = ("vae_state.pt", "vae.safetensors", "latents.safetensors", "transformer_state.pt")
RECORD = "accvideo_teacher.yaml"  # the settings and statistics of the run, inside the teacher folder
# settings a rerun may change: more steps continue the transformer phase from its last state
RESUMABLE_CHANGES = frozenset({"steps", "checkpoint_every"})
TRANSFORMER_STATE = ("model", "opt", "ema", "gen", "step")
LATENTS_FIX = "delete it to encode the clips again"


def is_teacher_output(folder: Path) -> bool:
    """A finished teacher from before output markers existed (core/outputs.py): a rerun may replace it."""
    return (folder / RECORD).is_file() and (folder / "model_index.json").is_file()


def is_work_folder(folder: Path) -> bool:
    """A training state folder from before output markers existed: a rerun resumes from it."""
    return any((folder / name).is_file() for name in WORK_FILES)


def check_not_work_folder(out: Path) -> None:
    """Refuse an --out that is a work folder (this command marks both alike, so the output guard lets it through):
    the output is replaced as a whole, which deleted the training state it holds."""
    out = Path(out)
    if out.is_dir() and (
        is_work_folder(out) or (out / "config.yaml").is_file() or (out / "transformer_log.jsonl").exists()
    ):
        whose = (
            f"teacher {out.name[: -len('.work')]}'s"
            if out.name.endswith(".work") and out.name != ".work"
            else "a teacher's"
        )
        raise AccVideoError(f"--out {out} is {whose} work folder; choose another --out")


def is_whole_teacher(out: Path) -> bool:
    """The teacher folder's files are all there and whole: model_index.json, a folder for each component it names,
    every JSON parsable and every safetensors file as long as its header says."""
    index = out / "model_index.json"
    if not index.is_file():
        return False
    try:
        components = read_json(index, "")
        check_model_folder(out, "")
    except AccVideoError:
        return False
    if not isinstance(components, dict):
        return False
    named = [k for k, v in components.items() if isinstance(v, list) and len(v) == 2 and v[0] is not None]
    return all((out / k).is_dir() and any((out / k).iterdir()) for k in named)


def _saved_settings(path: Path) -> dict:
    saved = read_yaml(path, "delete it to train again")
    if not isinstance(saved, dict):
        raise AccVideoError(f"{path} is not a settings record; delete it to train again")
    return saved


def finished_teacher(cfg: TeacherConfig, out: Path) -> dict | None:
    """The statistics of the teacher at `out` when it was trained with `cfg`'s settings, else None (train it).

    A rerun of a finished run then writes nothing: rewriting the folder would change the teacher's identity (the
    record's seconds differ) and orphan every dataset and student made from it. A teacher of other settings is
    refused in one line; only `steps` and `checkpoint_every` may change (more steps continue from the work folder)."""
    check_not_work_folder(out)
    record = Path(out) / RECORD
    if not record.is_file():
        return None
    saved, config = _saved_settings(record), to_dict(cfg)
    check_same_settings(saved, config, out, to_dict(TeacherConfig()), RESUMABLE_CHANGES)
    done = saved.get("steps")
    if isinstance(done, int) and done > cfg.steps:  # fewer steps rewrote the finished teacher from its work state
        raise AccVideoError(
            f"{out} holds a teacher trained for {done} steps; steps={cfg.steps} would go back (a run cannot): give "
            f"steps={done} or more (more continue training), or another --out"
        )
    if saved.get("steps") != cfg.steps:
        return None
    if not is_whole_teacher(Path(out)):  # a damaged teacher: rebuilt from the work folder (or trained again)
        return None
    return {k: v for k, v in saved.items() if k not in config}


def warn_if_replacing(cfg: TeacherConfig, out: Path) -> None:
    """Say so before more steps continue a finished teacher: it is replaced in place, a new identity, and every
    dataset and student made from it is then refused naming a teacher that no longer exists anywhere."""
    done = _saved_settings(Path(out) / RECORD).get("steps") if (Path(out) / RECORD).is_file() else None
    if isinstance(done, int) and done < cfg.steps:
        warnings.warn(
            f"{out} holds a teacher trained for {done} steps: steps={cfg.steps} continues it and replaces it in place "
            "(another identity), so the SynVid datasets and students made from it will be refused; to keep it, stop "
            "now and copy the folder first",
            stacklevel=3,
        )


def work_fix(work_given) -> str:
    """The fix that trains in another folder: another work= for a work folder given, else another --out (OUT.work)."""
    return "another work= (or --out: its work folder is OUT.work)" if work_given else "another --out"


def check_work_folder(cfg: TeacherConfig, work: Path, elsewhere: str = "another --out") -> None:
    """Refuse to resume a work folder whose state was trained with other settings (they would mix silently), whose
    settings record is gone (its settings are unknown), or whose transformer state is past `cfg.steps`; `elsewhere`
    names the fix that trains in another folder."""
    if not is_work_folder(work):
        return
    saved = work / "config.yaml"
    if not saved.is_file():
        raise AccVideoError(
            f"work folder {work} holds training state but no readable settings record ({saved.name} is missing or "
            f"not a file); restore its {saved.name}, or delete {work} to start over"
        )
    check_same_settings(
        _saved_settings(saved), to_dict(cfg), work, to_dict(TeacherConfig()), RESUMABLE_CHANGES, elsewhere
    )
    vae_state = work / "vae_state.pt"
    if not (work / "vae.safetensors").is_file() and (state := checked_state(vae_state, ("step",))) is not None:
        check_step(vae_state, state["step"], cfg.vae_steps, "VAE step", "vae_steps")
    ckpt = work / "transformer_state.pt"
    if (state := checked_state(ckpt, TRANSFORMER_STATE)) is not None:
        check_step(ckpt, state["step"], cfg.steps, "transformer step", "steps")


def build_pipeline(cfg: TeacherConfig, vae):
    """Tokenizer + random frozen UMT5 + fresh WanTransformer3DModel + the trained VAE, as a WanPipeline."""
    from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    tokenizer = word_tokenizer(vocabulary(), cfg.max_length)
    torch.manual_seed(cfg.seed + 2)
    text_encoder = UMT5EncoderModel(
        UMT5Config(
            vocab_size=len(tokenizer),
            d_model=cfg.text_dim,
            d_kv=cfg.text_dim // 4,
            d_ff=2 * cfg.text_dim,
            num_layers=cfg.text_layers,
            num_heads=4,
            relative_attention_num_buckets=8,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            decoder_start_token_id=tokenizer.pad_token_id,
        )
    ).eval()
    torch.manual_seed(cfg.seed + 3)
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=cfg.heads,
        attention_head_dim=cfg.head_dim,
        in_channels=cfg.vae_z_dim,
        out_channels=cfg.vae_z_dim,
        text_dim=cfg.text_dim,
        freq_dim=256,
        ffn_dim=cfg.ffn_dim,
        num_layers=cfg.layers,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=64,
    )
    return WanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        transformer=transformer,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=cfg.shift),
    )


def init_folder(cfg: TeacherConfig) -> Path | None:
    """The text-to-video teacher folder `cfg.init` names (None: train from scratch); one-line errors, before any
    output folder is made."""
    if not cfg.init:
        return None
    folder = resolve_model(cfg.init)
    if not (folder / "model_index.json").is_file():
        raise AccVideoError(
            f"init={cfg.init}: {folder} is not a teacher folder; pass init=builtin or a teacher train out"
        )
    if pipeline_class(folder) != "WanPipeline":  # e.g. builtin-i2v: fine-tune from its text-to-video start
        raise AccVideoError(f"init={cfg.init} is a {pipeline_class(folder)}; pass a text-to-video teacher (builtin)")
    return folder


def init_pipeline(cfg: TeacherConfig):
    """The WanPipeline of `cfg.init` (a teacher this command made, or 'builtin'), checked against cfg's architecture."""
    from diffusers import WanPipeline

    folder = init_folder(cfg)
    pipe = WanPipeline.from_pretrained(str(folder), local_files_only=True)
    t, text = pipe.transformer.config, pipe.text_encoder.config
    have = dict(layers=t.num_layers, heads=t.num_attention_heads, head_dim=t.attention_head_dim, ffn_dim=t.ffn_dim)
    have |= dict(vae_z_dim=t.in_channels, text_dim=text.d_model, text_layers=text.num_layers)
    have |= dict(max_length=pipe.tokenizer.model_max_length)
    wrong = [f"{k}={v}" for k, v in have.items() if getattr(cfg, k) != v]
    if wrong:
        raise AccVideoError(f"init={cfg.init} has {', '.join(wrong)}; set these (or drop init= to train from scratch)")
    return pipe


def forget_source_paths(folder: Path) -> None:
    """Drop `_name_or_path` from a saved pipeline's component configs: diffusers records there the folder a component
    was loaded from (init=: this machine's path), which a shipped teacher must not carry."""
    for path in folder.glob("*/config.json"):
        config = read_json(path, "re-run accvideo teacher train")
        if config.pop("_name_or_path", None) is not None:
            write_json_atomic(path, config)


def image_pipeline(pipe):
    """The same components as a WanImageToVideoPipeline with expand_timesteps (Wan 2.2 TI2V's image layout)."""
    from diffusers import WanImageToVideoPipeline

    parts = {k: getattr(pipe, k) for k in ("tokenizer", "text_encoder", "transformer", "vae", "scheduler")}
    return WanImageToVideoPipeline(**parts, image_encoder=None, image_processor=None, expand_timesteps=True)


def flow_loss(v: torch.Tensor, target: torch.Tensor, given_frames: int = 0) -> torch.Tensor:
    """Flow-matching loss: mean of (v - (eps - x0))^2 over every latent frame after the `given_frames` clean ones."""
    return (v - target)[:, :, given_frames:].square().mean()


def pipeline_for_data(cfg: TeacherConfig, vae, data: dict[str, torch.Tensor]):
    """build_pipeline with the VAE's per-channel latent mean / std taken from the encoded training clips."""
    lat = data["latents"].transpose(0, 1).flatten(1)
    vae.register_to_config(latents_mean=lat.mean(1).tolist(), latents_std=lat.std(1).clamp_min(1e-3).tolist())
    return build_pipeline(cfg, vae)


@torch.no_grad()
def encode_dataset(cfg: TeacherConfig, vae, work: Path, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Render and encode the training clips once: raw latents (N, z, F', H', W') and caption ids (N,)."""
    from safetensors.torch import save_file

    path = work / "latents.safetensors"
    if path.is_file():
        return _checked_data(cfg, load_safetensors(path, LATENTS_FIX), path)
    items = train_items(cfg, 0, cfg.dataset_size, stream=2)
    captions = sorted({caption(a) for a, _ in items})
    chunks = []
    vae.to(device)
    for i in progress_bar(range(0, len(items), 16), desc="teacher 2/3: encode clips", unit="batch"):
        chunks.append(vae.encode(clips(cfg, items[i : i + 16]).to(device)).latent_dist.mode().cpu())
    vae.to("cpu")
    data = {
        "latents": torch.cat(chunks).contiguous(),
        "caption_ids": torch.tensor([captions.index(caption(a)) for a, _ in items]),
    }
    tmp = work / ".latents.part"
    save_file(data, str(tmp), metadata={"captions": json.dumps(captions)})
    os.replace(tmp, path)
    return data


def _checked_data(cfg: TeacherConfig, data: dict, path: Path) -> dict[str, torch.Tensor]:
    """The encoded clips as this run made them: latents (dataset_size, vae_z_dim, F', H', W'), one caption id each."""
    latents, ids = data.get("latents"), data.get("caption_ids")
    why = None
    if latents is None or ids is None:
        why = "no latents or no caption_ids"
    elif (
        latents.dim() != 5 or not latents.is_floating_point() or latents.shape[:2] != (cfg.dataset_size, cfg.vae_z_dim)
    ):
        why = f"latents of shape {tuple(latents.shape)}, not ({cfg.dataset_size}, {cfg.vae_z_dim}, F, H, W)"
    elif ids.shape != (cfg.dataset_size,) or ids.is_floating_point() or ids.dtype == torch.bool:
        why = f"caption_ids of shape {tuple(ids.shape)} ({ids.dtype}), not ({cfg.dataset_size},) integers"
    if why is not None:
        raise AccVideoError(f"{path} is not this run's encoded clips ({why}); {LATENTS_FIX}")
    return data


def _captions(work: Path, data: dict[str, torch.Tensor]) -> list[str]:
    from safetensors import safe_open

    path = work / "latents.safetensors"
    with safe_open(str(path), "pt") as f:
        text = (f.metadata() or {}).get("captions")
    captions = None
    if isinstance(text, str):
        try:
            captions = parse_json(text)
        except ValueError:
            captions = None
    if not isinstance(captions, list) or not captions or not all(isinstance(c, str) for c in captions):
        raise AccVideoError(f"{path} holds no list of captions in its metadata; {LATENTS_FIX}")
    ids = data["caption_ids"]
    if len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= len(captions)):
        raise AccVideoError(f"{path} has caption ids past its {len(captions)} captions; {LATENTS_FIX}")
    return captions


def train_transformer(
    cfg: TeacherConfig,
    pipe,
    data: dict,
    captions: list[str],
    work: Path,
    device: torch.device | str = "cpu",
    elsewhere: str = "another --out",
) -> dict:
    """Flow matching (v = eps - x0) with caption dropout; AdamW, warmup + cosine, EMA. Resumable.

    Every random draw comes from one CPU generator and is then moved to `device`, so a GPU run sees the same
    batches, noise and noise levels as a CPU run (its weights differ only by floating-point rounding). With
    `cfg.image` the clip's own first latent frame is the condition (the VAE is causal: it is the first frame's
    latent alone), the model (WanTI2VImageAdapter) sees it clean at timestep 0, and the loss skips it.
    """
    adapter = (WanTI2VImageAdapter if cfg.image else WanAdapter)(pipe)
    z = pipe.vae.config
    mean = torch.tensor(z.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(z.latents_std).view(1, -1, 1, 1, 1)
    x_data = ((data["latents"] - mean) / std).to(device)
    cond_all = adapter.encode_prompts(captions)["prompt_embeds"].to(device)
    uncond = adapter.encode_prompts([""])["prompt_embeds"].to(device)

    model = pipe.transformer.to(device).train().requires_grad_(True)
    adapter.device = torch.device(device)  # prompts were encoded on the CPU; the transformer now runs here
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01, betas=(0.9, 0.99))
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
    gen = torch.Generator().manual_seed(cfg.seed + 4)
    step, log = 0, work / "transformer_log.jsonl"
    ckpt = work / "transformer_state.pt"
    # the loss's running mean and its first step's loss (saved with the state: a resumed run reports what one go would)
    running = first = None
    if (state := checked_state(ckpt, TRANSFORMER_STATE)) is not None:
        check_step(ckpt, state["step"], cfg.steps, "transformer step", "steps")

        def load_ema():
            nonlocal ema
            saved = state["ema"]
            if not isinstance(saved, dict) or saved.keys() != ema.keys():
                raise KeyError("its ema holds other weights")
            if any(not isinstance(v, torch.Tensor) or v.shape != ema[k].shape for k, v in saved.items()):
                raise ValueError("its ema holds weights of other shapes")
            ema = {k: v.to(device) for k, v in saved.items()}

        restore(
            ckpt,
            lambda: model.load_state_dict(state["model"]),
            lambda: opt.load_state_dict(state["opt"]),
            load_ema,
            lambda: gen.set_state(state["gen"]),
        )
        step, running, first = state["step"], state.get("running"), state.get("first_loss")
        if running is not None and not isinstance(running, float):
            running = None
        if not isinstance(first, float):  # a state saved before it was kept: no check at the end
            first = None
    _keep_log_until(log, step)  # lines a killed run wrote after its last checkpoint are written again
    bar = progress_bar(total=cfg.steps, initial=step, desc="teacher 3/3: transformer", unit="step")
    t0 = time.perf_counter()
    with interrupts.deferred(), bar:  # the first signal stops the loop after saving; the bar ends before the line
        while step < cfg.steps:
            warm = min(1.0, (step + 1) / cfg.warmup)
            lr = cfg.lr * warm * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
            for group in opt.param_groups:
                group["lr"] = lr
            idx = torch.randint(0, len(x_data), (cfg.batch,), generator=gen)
            x0 = x_data[idx.to(device)]
            cond = cond_all[data["caption_ids"][idx].to(device)]
            drop = (torch.rand(cfg.batch, generator=gen) < cfg.caption_dropout).to(device)
            cond = torch.where(drop.view(-1, 1, 1), uncond.expand_as(cond), cond)
            eps = torch.randn(x0.shape, generator=gen).to(device)
            sigma = shift_sigmas(torch.rand(cfg.batch, generator=gen), cfg.shift).to(device)
            s = sigma.view(-1, 1, 1, 1, 1)
            given = {"condition": x0[:, :, :1]} if cfg.image else {}
            v = adapter.velocity((1 - s) * x0 + s * eps, sigma, {"prompt_embeds": cond, **given})
            loss = flow_loss(v, eps - x0, 1 if cfg.image else 0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            check_step_finite(loss, norm, "transformer", step, work, f"lr (now {cfg.lr:g})", elsewhere)
            opt.step()
            update_average(ema, model.state_dict(), warmup_decay(cfg.ema, step))
            step += 1
            running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
            first = loss.item() if step == 1 else first
            bar.update(1)
            bar.set_postfix(loss=f"{running:.4f}")
            if step % 50 == 0:
                with log.open("a") as f:
                    f.write(json.dumps({"step": step, "loss": running, "lr": lr}) + "\n")
            stop = interrupts.stop_requested()  # a Ctrl-C or SIGTERM: save this step, then stop
            if stop or step % cfg.checkpoint_every == 0 or step == cfg.steps:
                save_state(
                    ckpt,
                    {
                        "model": model.state_dict(),
                        "opt": opt.state_dict(),
                        "ema": ema,
                        "gen": gen.get_state(),
                        "step": step,
                        "running": running,
                        "first_loss": first,
                    },
                )
            if stop and step < cfg.steps:  # the last step: the teacher is finished and written, then the line
                raise interrupts.Interrupted(interrupts.saved_line(step, cfg.steps, work, "transformer step"))
    model.load_state_dict(ema)
    model.to("cpu").eval().requires_grad_(False)
    warn_if_unlearned(first, running, cfg.lr, elsewhere)
    return {"final_loss": running, "transformer_seconds_this_run": round(time.perf_counter() - t0, 1)}


def warn_if_unlearned(first: float | None, final: float | None, lr: float, elsewhere: str) -> None:
    """Say so when the loss ended above twice its first step's: the weights stayed finite but training made them
    worse than their random start (`teacher train lr=1` ended at a loss near 3.6e5 from about 2, exit 0, a teacher
    nothing flagged). A loss that falls, or stays near its start on a short run, says nothing."""
    if first is not None and final is not None and final > 2 * first:
        warnings.warn(
            f"the teacher's loss ended at {final:.4g}, above twice its first step's {first:.4g}: training made it "
            f"worse; train it again with a lower lr (now {lr:g}) and {elsewhere}",
            stacklevel=2,
        )


def _keep_log_until(log: Path, step: int) -> None:
    """The JSONL log without the lines past `step` (what a resumed run will write again)."""
    if not log.is_file():
        return
    lines = log.read_text().splitlines()

    def step_of(line: str) -> float:
        try:
            return parse_json(line).get("step", 0)
        except ValueError:  # a line the kill cut short
            return float("inf")

    kept = [line for line in lines if line.strip() and step_of(line) <= step]
    if len(kept) != len(lines):
        write_text_atomic(log, "".join(f"{line}\n" for line in kept))


def train_teacher(cfg: TeacherConfig, out: Path, work: Path | None = None, device: torch.device | str = "cpu") -> dict:
    """All phases; finished phases are skipped on a rerun, so a killed run resumes where it stopped, and a finished
    run's rerun changes nothing (`finished_teacher`).

    The VAE trains on the CPU; encoding and the transformer run on `device` (a GPU trains the transformer in
    minutes; the run's `accvideo_teacher.yaml` records where it trained).
    """
    fix = work_fix(work)
    out, work = Path(out), Path(work or f"{out}.work")
    if (done := finished_teacher(cfg, out)) is not None:
        return done
    warn_if_replacing(cfg, out)
    check_work_folder(cfg, work, fix)
    work.mkdir(parents=True, exist_ok=True)
    save_config(cfg, work / "config.yaml")
    t0 = time.perf_counter()
    start = init_pipeline(cfg) if cfg.init else None  # fine-tuning: its VAE and latent normalisation are kept
    vae = start.vae if start is not None else load_trained_vae(cfg, train_vae(cfg, work, fix))
    t_vae = time.perf_counter() - t0
    data = encode_dataset(cfg, vae, work, device)
    t_encode = time.perf_counter() - t0 - t_vae
    captions = _captions(work, data)
    pipe = start if start is not None else pipeline_for_data(cfg, vae, data)
    if cfg.image:
        pipe = image_pipeline(pipe)
    stats = train_transformer(cfg, pipe, data, captions, work, device, fix)
    probe = clips(cfg, train_items(cfg, 0, 4, stream=3))
    stats |= {
        "vae_psnr_db": round(reconstruction_psnr(vae, probe), 2),
        "vae_seconds_this_run": round(t_vae, 1),  # a phase a rerun found done takes ~0 s
        "encode_seconds_this_run": round(t_encode, 1),
        "total_seconds_this_run": round(time.perf_counter() - t0, 1),
        "trained_on": torch.cuda.get_device_name(device) if torch.device(device).type == "cuda" else "cpu",
        "parameters": {
            n: sum(p.numel() for p in m.parameters())
            for n, m in (("transformer", pipe.transformer), ("vae", vae), ("text_encoder", pipe.text_encoder))
        },
    }
    tmp = out.with_name(f".{out.name}.part")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(str(tmp), safe_serialization=True)
    forget_source_paths(tmp)
    save_config(cfg, tmp / RECORD, **stats)
    if (cfg.frames, cfg.height, cfg.width) != (SMALL["frames"], SMALL["height"], SMALL["width"]):
        # its own clip size as its default (models/defaults.py): it was sampled at the built-in model's 17x64x64
        write_json_atomic(tmp / SETTINGS_FILE, {"frames": cfg.frames, "height": cfg.height, "width": cfg.width})
    mark_folder(tmp, COMMAND)  # the output guard's marker travels with the folder (hidden: not in the identity)
    share_files(tmp)  # save_pretrained writes weights with mode 600
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    if interrupts.stop_requested():  # a signal during the last transformer step, which finished
        raise interrupts.Interrupted(interrupts.finished_line(cfg.steps, out, "transformer step"))
    return stats
