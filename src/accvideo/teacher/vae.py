"""Phase 1 of the built-in teacher: an AutoencoderKLWan trained on the world's clips.

Recipe (see `train_vae`): a signal-preserving, image-like initialisation; single frames first, then short clips
(which train the causal time convolutions and the chunk-to-chunk cache); crops centred on the shape; an L1 + MSE loss
that weights the shape's pixels and the colour (chroma) part of the error up; Adam with beta2 0.99.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from accvideo.core import interrupts
from accvideo.core.progress import progress_bar
from accvideo.errors import AccVideoError
from accvideo.teacher.config import TeacherConfig
from accvideo.teacher.state import check_step_finite, load_state, save_state
from accvideo.world import Attributes, WorldConfig, combinations, item_seed, render_batch


def build_vae(cfg: TeacherConfig):
    """A fresh AutoencoderKLWan of the configured size (8x spatial, 4x temporal compression)."""
    from diffusers import AutoencoderKLWan

    torch.manual_seed(cfg.seed)  # diffusers initialises from the global RNG; so does _init_weights
    vae = AutoencoderKLWan(
        base_dim=cfg.vae_base_dim,
        z_dim=cfg.vae_z_dim,
        dim_mult=list(cfg.vae_dim_mult),
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    )
    _init_weights(vae)
    return vae


@torch.no_grad()
def _init_weights(vae) -> None:
    """Replace PyTorch's default init, under which the input barely reaches the latents or the output.

    The default conv init (uniform, variance 1/(3 fan_in)) shrinks the signal ~1/sqrt(3) per conv and its random
    biases add a constant of the same size; after the ~10 convs of each half the image-dependent part of the
    latents is ~1/50 of the constant part, the per-pixel RMS norms then normalise mostly that constant, and the
    decoder's output hardly depends on its input (the net falls back to a grey mean or trains very slowly). Here:
    zero biases; N(0, gain^2/fan_in) weights (gain sqrt(2) after SiLU, 1 elsewhere); residual branches (conv2,
    attention projection) start at 0.2x so every block is close to the identity; the decoder's output conv at
    0.1x starts inside decode's [-1, 1] clamp. And "inflated" like an image VAE: the 3x3x3 causal convs only see
    the current frame and the temporal down/upsampling convs pass the current frame through, so the untrained
    video model is a per-frame image autoencoder of every 4th frame, and single-frame training transfers to it.
    """
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d

    for name, m in vae.named_modules():
        if not isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d)):
            continue
        m.bias.zero_()
        if name.endswith("time_conv"):  # temporal resampling: copy the current frame (to each output frame)
            m.weight.zero_()
            eye = torch.eye(m.in_channels)
            for k in range(m.out_channels // m.in_channels):
                m.weight[k * m.in_channels : (k + 1) * m.in_channels, :, -1, 0, 0] = eye
            continue
        inflate = isinstance(m, WanCausalConv3d) and m.kernel_size[0] > 1
        fan_in = m.weight[0, :, -1].numel() if inflate else m.weight[0].numel()
        gain = math.sqrt(2) if name.endswith(("conv1", "conv2", "conv_out")) else 1.0  # these follow a SiLU
        m.weight.normal_(0, gain / math.sqrt(fan_in))
        if inflate:
            m.weight[:, :, :-1].zero_()
        if name.endswith(("conv2", "attentions.0.proj")):
            m.weight.mul_(0.2)
    vae.decoder.conv_out.weight.mul_(0.1)


def world_config(cfg: TeacherConfig) -> WorldConfig:
    return WorldConfig(frames=cfg.frames, height=cfg.height, width=cfg.width)


def train_items(cfg: TeacherConfig, start: int, count: int, stream: int) -> list[tuple[Attributes, int]]:
    """Items `start`..`start+count` of a seeded stream over the world's train combinations."""
    combos = combinations("train")
    seeds = [item_seed(cfg.seed * 1000 + stream, i) for i in range(start, start + count)]
    return [(combos[s % len(combos)], s) for s in seeds]


def clips(cfg: TeacherConfig, items: list[tuple[Attributes, int]]) -> torch.Tensor:
    """Rendered clips as VAE input: (B, 3, F, H, W) in [-1, 1]."""
    return torch.from_numpy(render_batch(items, world_config(cfg))).permute(0, 4, 1, 2, 3) * 2 - 1


def _shape_mask(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, F, H, W): 1 where a pixel differs from the background (the frame's corner, which the shape never
    covers), else 0."""
    return ((x - x[..., :1, :1]).abs().amax(1, keepdim=True) > 0.05).float()


def _random_crop(x: torch.Tensor, cfg: TeacherConfig, gen: torch.Generator, frames: int | None = None) -> torch.Tensor:
    """A random run of `frames` frames (default cfg.vae_crop_frames) and a vae_crop_size square around the shape.

    The square is centred on the shape's pixels in those frames, moved by up to a quarter of its side and kept
    inside the frame: a uniformly placed crop would mostly hold flat background, which the VAE learns at once,
    while the shape (~5% of a frame) is what it has to learn. Channels after the first three (e.g. loss weights)
    are cropped along but not used for the centring.
    """
    frames = frames or cfg.vae_crop_frames
    b, _, f, h, w = x.shape
    s = cfg.vae_crop_size
    t0 = int(torch.randint(0, f - frames + 1, (1,), generator=gen))
    x = x[:, :, t0 : t0 + frames]
    shape = _shape_mask(x[:, :3])[:, 0].amax(1)  # (B, H, W)
    jitter = torch.randint(-(s // 4), s // 4 + 1, (b, 2), generator=gen)
    out = []
    for i in range(b):
        ys, xs = torch.nonzero(shape[i], as_tuple=True)
        cy, cx = (int(ys.float().mean()), int(xs.float().mean())) if len(ys) else (h // 2, w // 2)
        y0 = min(max(cy - s // 2 + int(jitter[i, 0]), 0), h - s)
        x0 = min(max(cx - s // 2 + int(jitter[i, 1]), 0), w - s)
        out.append(x[i, :, :, y0 : y0 + s, x0 : x0 + s])
    return torch.stack(out)


def _lr(cfg: TeacherConfig, step: int) -> float:
    """Linear warmup and cosine decay, restarted for the clip phase (at a lower peak)."""
    if step < cfg.vae_image_steps:
        peak, i, n = cfg.vae_lr, step, cfg.vae_image_steps
    else:
        peak, i, n = cfg.vae_video_lr, step - cfg.vae_image_steps, cfg.vae_steps - cfg.vae_image_steps
    warmup = max(1, min(50, n // 10))
    return peak * min(1.0, (i + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * i / n))


def _batch(cfg: TeacherConfig, step: int, gen: torch.Generator) -> torch.Tensor:
    """Step `step`'s training crops with their loss weights as a 4th channel: (B, 4, F, S, S)."""
    image = step < cfg.vae_image_steps
    if image:
        start, count = step * cfg.vae_image_batch, cfg.vae_image_batch
    else:
        start = cfg.vae_image_steps * cfg.vae_image_batch + (step - cfg.vae_image_steps) * cfg.vae_batch
        count = cfg.vae_batch
    x = clips(cfg, train_items(cfg, start, count, stream=1))
    weight = 1 + cfg.vae_shape_weight * _shape_mask(x)  # background judged on the whole frame, before cropping
    return _random_crop(torch.cat([x, weight], 1), cfg, gen, frames=1 if image else None)


def _loss(vae, batch: torch.Tensor, cfg: TeacherConfig, raw: list) -> torch.Tensor:
    x, weight = batch[:, :3], batch[:, 3:]
    # a deterministic autoencoder (posterior mean): sampling with the initial unit std drowns the
    # signal, and the latents are normalised for diffusion afterwards anyway
    post = vae.encode(x).latent_dist
    raw.clear()
    err = vae.decode(post.mode()).sample - x
    # the backgrounds are grey/black/white, so colour lives only on the shape and an RGB MSE learns it last
    err = err + (cfg.vae_chroma_weight - 1) * (err - err.mean(1, keepdim=True))
    overshoot = (torch.cat(raw, 2).abs() - 1).relu().mean()  # decode clamps; keep the raw output inside
    rec = (weight * (err.abs() + err.square())).mean() / weight.mean()  # L1 + MSE, shape pixels weighted up
    return rec + overshoot + cfg.vae_kl * post.mean.square().mean()


REDO = "delete it to redo the phase"


def checked_state(path: Path, keys: tuple[str, ...]) -> dict | None:
    """`load_state`, refused in one line when the state lacks one of `keys` or its step is no count."""
    state = load_state(path)
    if state is None:
        return None
    missing = [k for k in keys if k not in state]
    if missing:
        raise AccVideoError(f"{path} is not a readable training state (no {', '.join(missing)}); {REDO}")
    if type(state["step"]) is not int or state["step"] < 0:
        raise AccVideoError(f"{path} is not a readable training state (its step is not a count); {REDO}")
    return state


def restore(path: Path, *loads, fix: str = REDO) -> None:
    """Run the `loads` (load_state_dict / set_state calls) of a saved state; a state that does not fit the model
    (another architecture, a foreign object) is one line naming `path`."""
    try:
        for load in loads:
            load()
    except (RuntimeError, KeyError, ValueError, TypeError, AttributeError, IndexError) as exc:
        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        raise AccVideoError(f"{path} does not fit this model ({why}); {fix}") from None


def check_step(path: Path, step: int, steps: int, name: str, setting: str) -> None:
    """Refuse a saved state past the asked number of steps: the run would finish at its step, not at `steps`."""
    if step > steps:
        raise AccVideoError(
            f"{path} holds {name} {step}; {setting}={steps} would go back (a run cannot): give {setting}={step} or "
            f"more, or delete {path.parent} to start over"
        )


def train_vae(cfg: TeacherConfig, work: Path, elsewhere: str = "another --out") -> Path:
    """Train (or resume) the VAE; returns the path of its finished weights in `work`.

    Steps 0..vae_image_steps-1 train on single frames (~5x cheaper than 9-frame crops: only the first causal
    chunk runs); the rest on vae_crop_frames-frame crops, with a fresh optimiser state and learning-rate cycle.
    """
    from safetensors.torch import save_file

    done = work / "vae.safetensors"
    if done.is_file():
        return done
    vae = build_vae(cfg)
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, betas=(0.9, 0.99), weight_decay=0.0)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    step = 0
    ckpt = work / "vae_state.pt"
    if (state := checked_state(ckpt, ("model", "opt", "gen", "step"))) is not None:
        check_step(ckpt, state["step"], cfg.vae_steps, "VAE step", "vae_steps")
        restore(
            ckpt,
            lambda: vae.load_state_dict(state["model"]),
            lambda: opt.load_state_dict(state["opt"]),
            lambda: gen.set_state(state["gen"]),
        )
        step = state["step"]
    vae.train()
    raw: list[torch.Tensor] = []  # decoder outputs before decode's clamp, to penalise overshoot
    hook = vae.decoder.register_forward_hook(lambda _m, _a, out: raw.append(out))
    bar = progress_bar(total=cfg.vae_steps, initial=step, desc="teacher 1/3: VAE", unit="step")
    running = None
    with interrupts.deferred(), bar:  # the first signal stops the loop after saving; the bar ends before the line
        while step < cfg.vae_steps:
            if step == cfg.vae_image_steps:
                opt.state.clear()  # the clip phase starts its own Adam statistics (so does a run resumed here)
                running = None
            lr = _lr(cfg, step)
            for group in opt.param_groups:
                group["lr"] = lr
            loss = _loss(vae, _batch(cfg, step, gen), cfg, raw)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
            name = "vae_lr" if step < cfg.vae_image_steps else "vae_video_lr"
            check_step_finite(loss, norm, "VAE", step, work, f"{name} (now {getattr(cfg, name):g})", elsewhere)
            opt.step()
            step += 1
            running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
            bar.update(1)
            bar.set_postfix(phase="frames" if step <= cfg.vae_image_steps else "clips", loss=f"{running:.4f}")
            stop = interrupts.stop_requested()  # a Ctrl-C or SIGTERM: save this step, then stop
            if stop or step % cfg.checkpoint_every == 0 or step == cfg.vae_steps:
                save_state(
                    ckpt, {"model": vae.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state(), "step": step}
                )
            if stop:  # the last step too: the next phase does not start
                raise interrupts.Interrupted(interrupts.saved_line(step, cfg.vae_steps, work, "VAE step"))
    hook.remove()
    save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, str(done))
    return done


def load_trained_vae(cfg: TeacherConfig, path: Path):
    from accvideo.core.inputs import load_safetensors

    vae = build_vae(cfg)
    fix = "delete it to train the VAE again"
    weights = load_safetensors(path, fix)
    restore(path, lambda: vae.load_state_dict(weights), fix=fix)
    return vae.eval().requires_grad_(False)


@torch.no_grad()
def reconstruction_psnr(vae, clips: torch.Tensor) -> float:
    """PSNR (dB) of whole-clip reconstructions through the posterior mean, clips in [-1, 1]."""
    rec = vae.decode(vae.encode(clips).latent_dist.mode()).sample.clamp(-1, 1)
    mse = ((rec - clips) / 2).square().mean().item()
    return float(10 * np.log10(1.0 / max(mse, 1e-12)))
