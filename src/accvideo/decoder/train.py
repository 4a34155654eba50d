"""`accvideo decoder distill`: a tiny decoder trained on the teacher VAE's own decodes (docs/decoder.md).

0. setup: the SynVid (checked against the teacher), the teacher's VAE, the decoder sized from the VAE's geometry;
1. targets: the VAE decodes each input once (SynVid's l[t'_0], real clips with --videos), frames and the
   features of one of its up blocks, cached in OUT/targets (targets.py);
2. batch: clips drawn from the run's generator (the last `holdout` SynVid items never);
3. reconstruction: L1 weighted by the target's edges + image-gradient L1 + amplitude-spectrum L1 (+ 1 - SSIM when
   weighted) + normalised feature MSE (a 1x1 projection, dropped at export), on `frame_pairs` random pairs of
   consecutive frames per clip (the per-frame stages are the cost: more clips per step for the same work);
4. adversarial (optional, after `adv_start` of the run): a patch discriminator, hinge loss;
5. log, and every `checkpoint_every` iterations the training state (resume), the decoder artifact (the weights'
   moving average with `ema`; its detail gain fitted on `detail_clips` training clips), the held-out PSNR, the
   loss plot; at the end summary.json with the cost.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from pathlib import Path

import torch

from accvideo.core import interrupts
from accvideo.core.averaging import update_average, warmup_decay
from accvideo.core.config import save_config, to_dict
from accvideo.core.files import write_json_atomic
from accvideo.core.outputs import FolderLock, check_folder, claim_folder
from accvideo.core.progress import progress_bar
from accvideo.core.runtime import resolve_device, resolve_model
from accvideo.decoder import losses
from accvideo.decoder.config import RESUMABLE_CHANGES, DecoderDistillConfig
from accvideo.decoder.targets import Targets, build_targets, synvid_final_latents, synvid_sources
from accvideo.distill.checkpoint import check_continues, check_resumable, load_checkpoint, save_checkpoint
from accvideo.distill.plots import LossLog, plot_losses, read_losses
from accvideo.distill.reals import check_real_data, load_real_clips
from accvideo.distill.state import kept_summary, peak_memory_mb
from accvideo.errors import AccVideoError
from accvideo.models import adapter_class, load_adapter
from accvideo.models.decoder import (
    LEGACY_SPEC,
    TinyDecoder,
    detail_sums,
    fit_detail_gain,
    load_decoder,
    save_decoder,
    spec_for,
    to_video,
    vae_identity,
)
from accvideo.models.identity import teacher_identity
from accvideo.synthesize import SynVidDataset

COMMAND = "decoder distill"
FORMAT = "accvideo.decoder-state/1"
NAME = "checkpoint.pt"
# How a run behaved before these settings existed (the first release's blocks, every frame): its checkpoint resumes
# only with these values.
BEFORE_SETTINGS = {
    **LEGACY_SPEC,
    "frame_pairs": 0,
    "edge_weight": 0.0,
    "min_width": 16,
    "spectral_weight": 0.0,
    "ema": 0.0,
    "spectral_balance": False,
    "ssim_weight": 0.0,
    "detail_clips": 0,
}
CURVES = (
    ("loss", "total loss"),
    ("l1", "L1"),
    ("grad", "image-gradient L1"),
    ("spec", "amplitude-spectrum L1"),
    ("ssim", "1 - SSIM"),
    ("feat", "VAE feature MSE (normalised)"),
    ("adv", "patch GAN (generator)"),
    ("val_psnr", "held-out PSNR (dB)"),
)


def output_inputs(cfg: DecoderDistillConfig) -> dict:
    """The folders a run reads, which its --out may never be or lie inside."""
    videos = None if cfg.videos in (None, "world") else cfg.videos
    return {"teacher": resolve_model(cfg.teacher), "dataset": cfg.data, "real clips": videos}


def check_output(cfg: DecoderDistillConfig) -> Path:
    """The output guard, read-only, before anything is loaded."""
    return check_folder(cfg.out, COMMAND, inputs=output_inputs(cfg))


class DecoderDistiller:
    """The decoder, its optimiser, the targets of one run; `run()` trains and saves."""

    def __init__(self, cfg: DecoderDistillConfig):
        # 0. setup: the dataset first (its refusals are cheap), then the teacher's VAE
        self.cfg = cfg
        self.out = Path(cfg.out).expanduser()
        model_dir = resolve_model(cfg.teacher)
        adapter_class(model_dir)  # a one-line error for a wrong folder before anything is hashed or loaded
        if cfg.videos:
            check_real_data(cfg.videos, "videos")
        self.dataset = SynVidDataset(cfg.data)
        if self.dataset.missing:
            warnings.warn(self.dataset.missing_line(), stacklevel=2)
        # in the dataset's scheme: a SynVid made before the sampled identity is checked with its full hash
        self.model_dir = model_dir
        self.identity = teacher_identity(model_dir, like=self.dataset.settings.teacher)
        self.dataset.check_teacher(self.identity, cfg.teacher)
        self.vae = vae_identity(model_dir)
        n = len(self.dataset)
        if n <= cfg.holdout:
            raise AccVideoError(f"{cfg.data} holds {n} items; holdout={cfg.holdout} leaves none to train on")
        self.device = resolve_device(cfg.device)
        self.adapter = load_adapter(model_dir, device=self.device, dtype=torch.float32)
        with torch.random.fork_rng(devices=[]):  # weights from the run's seed, not the global RNG
            torch.manual_seed(cfg.seed)
            self.decoder = TinyDecoder(
                spec_for(
                    self.adapter,
                    cfg.width,
                    cfg.depth,
                    cfg.stage_depth,
                    min_width=cfg.min_width,
                    activation=cfg.activation,
                    post_activation=cfg.post_activation,
                )
            ).to(self.device)
        self.average = copy.deepcopy(self.decoder).requires_grad_(False) if cfg.ema > 0 else None
        self.rng = torch.Generator().manual_seed(cfg.seed)
        torch.manual_seed(cfg.seed)  # the global generator the checkpoint keeps: from the seed, as distill's
        self.iteration = self.samples = 0
        self.train_seconds = 0.0  # training wall time behind the weights, summed over resumes
        self.reals = None
        self.targets: Targets | None = None

    # 1. targets ------------------------------------------------------------------------------------------------
    def build_targets(self, progress: bool, trained: bool = True) -> None:
        """The VAE's decodes of every input, cached in OUT/targets; then the pieces sized by them. `trained`: a
        checkpoint trained on the cached real clips (before one, a cache of other clips is encoded again)."""
        cfg, n_syn = self.cfg, len(self.dataset)
        if cfg.videos:
            s = self.dataset.settings
            shape = (s.frames, s.height, s.width)
            self.reals = load_real_clips(
                cfg.videos, self.out, self.adapter, shape, cfg.video_clips, cfg.seed, progress, "videos", trained
            )
        n_real = 0 if self.reals is None else len(self.reals)

        def latents_of(rows: range) -> torch.Tensor:
            syn = [i for i in rows if i < n_syn]
            parts = [synvid_final_latents(self.dataset, syn)] if syn else []
            if rows.stop > n_syn:
                parts.append(self.reals.latents[max(rows.start, n_syn) - n_syn : rows.stop - n_syn])
            return torch.cat(parts).to(self.device)

        syn_sources = synvid_sources(self.dataset)  # from the shard headers: a kept chunk needs no item read

        def sources_of(rows: range) -> list[str | None]:
            return [syn_sources[i] if i < n_syn else None for i in rows]  # real clips: checked by their latents

        self.targets = build_targets(self.adapter, latents_of, n_syn + n_real, self.out, progress, sources_of)
        self.holdout = list(range(n_syn - cfg.holdout, n_syn))
        self.pool = torch.tensor([i for i in range(n_syn + n_real) if not n_syn - cfg.holdout <= i < n_syn])
        level = self.targets.level if cfg.feature_weight > 0 else None
        if cfg.feature_weight > 0 and level is None:  # HunyuanVideo's VAE grows time and space in the same blocks
            warnings.warn(
                "the teacher's VAE has no decoder up block at the clip's full frame count below its full size, so "
                "the feature term is off (feature_weight has no effect; pass feature_weight=0 to silence this)",
                stacklevel=2,
            )
        h, w = self.targets.shapes["latents"][-2:]
        if cfg.crop >= max(h, w):
            warnings.warn(
                f"crop={cfg.crop} is not smaller than the {h}x{w} latents, so the run trains on whole frames "
                "(crop=0 says so)",
                stacklevel=2,
            )
        self.tap = None if level is None else level[1]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed + 1)
            self.proj = None
            if self.tap is not None:
                c_t = self.targets.get([0])["features"].shape[2]
                self.proj = torch.nn.Conv2d(self.decoder.spec.widths[self.tap], c_t, 1).to(self.device)
            self.disc = losses.PatchDiscriminator().to(self.device) if cfg.adv_weight > 0 else None
        params = [*self.decoder.parameters(), *(self.proj.parameters() if self.proj is not None else [])]
        self.opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
        self.opt_disc = (
            torch.optim.AdamW(self.disc.parameters(), lr=cfg.lr / 4, betas=(0.5, 0.9))
            if self.disc is not None
            else None
        )

    # 2. batch --------------------------------------------------------------------------------------------------
    def batch(self) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """Clips drawn from the run's generator, cropped to `crop` latent pixels (one window per batch), and the
        picked frames (`pick`); the targets of the picked frames only, read from the cache as such."""
        idx = self.pool[torch.randint(len(self.pool), (self.cfg.batch,), generator=self.rng)]
        shapes = self.targets.shapes
        h, w = shapes["latents"][-2:]
        c, window = self.cfg.crop, None
        if 0 < c < max(h, w):
            ch, cw = min(c, h), min(c, w)
            y = int(torch.randint(h - ch + 1, (1,), generator=self.rng))
            x = int(torch.randint(w - cw + 1, (1,), generator=self.rng))
            window = (y, x, ch, cw)
        pick = self.pick(shapes["video"][0])
        b = self.targets.get(idx.tolist(), features=self.tap is not None, frames=pick)
        if window is not None:
            b = {k: crop(v, *window, v.shape[-1] // w) for k, v in b.items()}
        return {k: v.to(self.device) for k, v in b.items()}, pick

    def pick(self, count: int) -> torch.Tensor | None:
        """(batch, 2 frame_pairs) frame indices: per clip, distinct random pairs (f, f + 1) from the run's
        generator; None (every frame) when frame_pairs is 0 or the clip has too few frames."""
        n = self.cfg.frame_pairs
        if n == 0 or 2 * n >= count:
            return None
        starts = torch.stack([torch.randperm(count - 1, generator=self.rng)[:n] for _ in range(self.cfg.batch)])
        return torch.stack([starts, starts + 1], 2).flatten(1)

    def lr(self) -> float:
        """Cosine decay from lr to lr/20 over the run."""
        p = min(1.0, self.iteration / self.cfg.iterations)
        return self.cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * p)))

    def adversarial(self) -> bool:
        return self.disc is not None and self.iteration >= self.cfg.adv_start * self.cfg.iterations

    # 3 + 4. one step -------------------------------------------------------------------------------------------
    def train_iteration(self) -> dict:
        cfg = self.cfg
        b, pick = self.batch()  # with pick: the picked frames (the gradient term's time axis is each pair's)
        for group in self.opt.param_groups:
            group["lr"] = self.lr()
        frames, _, feat = self.decoder(b["latents"], None, tap=self.tap, frames=pick)
        pairs = (lambda v: v) if pick is None else (lambda v: v.unflatten(1, (-1, 2)).flatten(0, 1))
        weights = losses.edge_weights(b["video"], cfg.edge_weight) if cfg.edge_weight > 0 else None
        rec = {
            "l1": losses.l1(frames, b["video"], weights),
            "grad": losses.gradient_loss(pairs(frames), pairs(b["video"])),
        }
        loss = cfg.l1_weight * rec["l1"] + cfg.gradient_weight * rec["grad"]
        if cfg.spectral_weight > 0:
            rec["spec"] = losses.spectral_loss(frames, b["video"], cfg.spectral_balance)
            loss = loss + cfg.spectral_weight * rec["spec"]
        if cfg.ssim_weight > 0:
            rec["ssim"] = losses.ssim_loss(frames, b["video"])
            loss = loss + cfg.ssim_weight * rec["ssim"]
        if self.tap is not None:
            projected = self.proj(feat.flatten(0, 1)).view(*feat.shape[:2], -1, *feat.shape[3:])
            rec["feat"] = losses.feature_loss(projected, b["features"])
            loss = loss + cfg.feature_weight * rec["feat"]
        adv = self.adversarial()
        if adv:
            rec["adv"] = losses.hinge_g(self.disc(frames))
            loss = loss + cfg.adv_weight * rec["adv"]
        if not torch.isfinite(loss):
            raise self.diverged(f"loss {loss.item()}", self.iteration + 1)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_([p for g in self.opt.param_groups for p in g["params"]], 1.0)
        if not torch.isfinite(norm):  # the step would make every weight NaN, saved at the next checkpoint
            raise self.diverged(f"gradient norm {norm.item()}", self.iteration + 1)
        self.opt.step()
        if self.average is not None:
            update_average(self.average.state_dict(), self.decoder.state_dict(), warmup_decay(cfg.ema, self.iteration))
        if adv:
            self.opt_disc.zero_grad(set_to_none=True)
            d = losses.hinge_d(self.disc(b["video"]), self.disc(frames.detach()))
            d.backward()
            self.opt_disc.step()
            rec["d"] = d
        self.iteration += 1
        self.samples += cfg.batch
        record = {"iteration": self.iteration, "samples": self.samples, "loss": loss.item(), "lr": self.lr()}
        record.update({k: v.item() for k, v in rec.items()})
        return record

    def diverged(self, what: str, iteration: int) -> AccVideoError:
        """The one line of a run whose training diverged: nothing of that iteration is saved."""
        return AccVideoError(
            f"{what} at iteration {iteration}: stopped without saving; lower lr (now {self.cfg.lr:g}) and rerun the "
            "same command to resume from the last checkpoint"
        )

    @property
    def artifact(self) -> TinyDecoder:
        """The decoder a run saves and validates: the weights' moving average with `ema`, else the last weights."""
        return self.decoder if self.average is None else self.average

    @torch.no_grad()
    def fit_detail(self) -> float:
        """Set the saved decoder's detail gain so that its frames hold the VAE's 3x3 high-pass energy on
        `detail_clips` training clips spread over the pool, one clip in memory at a time (0 when none)."""
        decoder, n = self.artifact, min(self.cfg.detail_clips, len(self.pool))
        decoder.set_detail_gain(0.0)
        if n == 0:
            return 0.0
        decoder.eval()
        sums = torch.zeros(4, dtype=torch.float64)
        for i in torch.linspace(0, len(self.pool) - 1, n).round().long().unique().tolist():
            b = self.targets.get([int(self.pool[i])], features=False)
            sums += detail_sums(decoder.decode(b["latents"].to(self.device)), b["video"])
        self.decoder.train()
        if not torch.isfinite(sums).all():  # weights grown past what float32 decodes: no decoder to save
            raise self.diverged("the decoder decodes NaN or infinite frames", self.iteration)
        gain = round(fit_detail_gain(sums), 4)
        decoder.set_detail_gain(gain)
        return gain

    @torch.no_grad()
    def validate(self) -> float | None:
        """Mean PSNR (dB) of the saved decoder's frames against the VAE's on the held-out SynVid items."""
        if not self.holdout:
            return None
        decoder = self.artifact
        decoder.eval()
        values = []
        for s in range(0, len(self.holdout), 16):
            b = self.targets.get(self.holdout[s : s + 16], features=False)
            pred = to_video(decoder.decode(b["latents"].to(self.device)))
            values.append(losses.psnr(pred, to_video(b["video"])))
        self.decoder.train()
        return round(torch.cat(values).mean().item(), 3)

    # 5. state ----------------------------------------------------------------------------------------------------
    def state(self) -> dict:
        def sd(m):
            return None if m is None else m.state_dict()

        return {
            "config": to_dict(self.cfg),
            "teacher": self.identity,
            "dataset": self.dataset.identity,
            "dataset_items": len(self.dataset),
            "iteration": self.iteration,
            "samples": self.samples,
            "train_seconds": self.train_seconds,
            "decoder": sd(self.decoder),
            "average": sd(self.average),
            "proj": sd(self.proj),
            "disc": sd(self.disc),
            "opt": sd(self.opt),
            "opt_disc": sd(self.opt_disc),
            "generator": self.rng.get_state(),
            "torch_rng": torch.get_rng_state(),
        }

    def saved_state(self) -> dict | None:
        """The run folder's checkpoint, checked to be this run's before anything is written (targets included)."""
        path = self.out / NAME
        saved = load_checkpoint(path, FORMAT, "decoder distill")
        if saved is not None:
            check_resumable(saved, to_dict(self.cfg), self.identity, path, BEFORE_SETTINGS, RESUMABLE_CHANGES)
            check_continues(saved, self.out, self.cfg.data, self.dataset, self.cfg.iterations)
        return saved

    def resume(self, saved: dict | None) -> None:
        if saved is None:
            return
        self.decoder.load_state_dict(saved["decoder"])
        if self.average is not None:
            self.average.load_state_dict(saved["average"])
        for module, key in ((self.proj, "proj"), (self.disc, "disc"), (self.opt, "opt"), (self.opt_disc, "opt_disc")):
            if module is not None:
                module.load_state_dict(saved[key])
        self.rng.set_state(saved["generator"])
        torch.set_rng_state(saved["torch_rng"])
        self.iteration, self.samples = saved["iteration"], saved["samples"]
        self.train_seconds = saved.get("train_seconds", 0.0)  # checkpoints before it was kept: 0

    def save(self, log: LossLog, logged: bool = True) -> float | None:
        """Checkpoint, decoder artifact (its detail gain fitted first), held-out PSNR (logged, unless `logged` is
        False: the artifact saved again for a checkpoint whose record the log already holds, or a save at a signal,
        off the schedule, whose record one go would not write); the loss plot at the end and every 4th save."""
        gain = self.fit_detail()
        val = self.validate()
        record = {"iteration": self.iteration, "samples": self.samples, "detail_gain": gain}
        if logged:
            log.write(record if val is None else {**record, "val_psnr": val}, scalars=False)
        save_checkpoint(self.out / NAME, self.state(), FORMAT)
        extra = {
            "teacher_identity": self.identity,
            "iteration": self.iteration,
            "samples": self.samples,
            "heldout_psnr_db": val,
        }
        if self.iteration >= self.cfg.iterations or self.iteration % (4 * self.cfg.checkpoint_every) == 0:
            plot_losses(read_losses(self.out / "losses.jsonl"), self.out / "losses.png", CURVES)  # seconds: not always
        # last: decoder.json naming this iteration says the save is done, the final plot included (artifact_is_current)
        save_decoder(self.out / "decoder", self.artifact, self.vae, self.adapter.family, extra)
        return val

    def artifact_is_current(self) -> bool:
        """Whether decoder/ holds this state's weights, whole (decoder.json names this iteration, the weights match
        its sha256) and the loss plot is there: a kill between the checkpoint and the artifact, or a file deleted
        since, makes a finished run's rerun save again."""
        try:
            _, info = load_decoder(self.out / "decoder", self.vae)
        except AccVideoError:
            return False
        return info.get("iteration") == self.iteration and (self.out / "losses.png").is_file()

    def run(self, progress: bool = True) -> dict:
        """Targets, then train to cfg.iterations, resuming from the run folder's checkpoint when there is one."""
        t0, cpu0 = time.perf_counter(), time.process_time()
        claim_folder(self.out, COMMAND, inputs=output_inputs(self.cfg))
        lock = FolderLock(self.out, COMMAND)  # one writer at a time
        try:
            return self._train(progress, t0, cpu0)
        finally:
            lock.release()

    def _train(self, progress: bool, t0: float, cpu0: float) -> dict:
        cfg = self.cfg
        saved = self.saved_state()  # another run's checkpoint is refused before the targets are (re)built
        self.build_targets(progress, trained=saved is not None)
        t_targets = time.perf_counter() - t0
        self.resume(saved)
        start = self.iteration
        if start >= cfg.iterations and (
            earlier := kept_summary(self.out, {"iterations": self.iteration}, self.artifact_is_current)
        ):
            return {**earlier, "out": str(self.out), "decoder": str(self.out / "decoder"), "kept": True}  # as distill's
        save_config(cfg, self.out / "config.yaml", vae_identity=self.vae, spec=to_dict(self.decoder.spec))
        log = LossLog(self.out / "losses.jsonl", start, curves=CURVES)
        bar = progress_bar(total=cfg.iterations, initial=start, desc="decoder", unit="it", show=progress)
        t_train, val, before = time.perf_counter(), None, self.train_seconds
        self.decoder.train()
        stop = False
        with interrupts.deferred():  # the first Ctrl-C or SIGTERM stops the loop after saving
            try:
                while self.iteration < cfg.iterations:
                    record = self.train_iteration()
                    shown = self.iteration % cfg.log_every == 0
                    self.train_seconds = before + time.perf_counter() - t_train
                    log.write({**record, "seconds": round(self.train_seconds, 3)}, scalars=shown)
                    bar.update(1)
                    if shown:
                        bar.set_postfix(
                            {k: f"{record[k]:.4g}" for k in ("l1", "grad", "feat") if k in record}, refresh=False
                        )
                    stop = interrupts.stop_requested()  # a Ctrl-C or SIGTERM: save this iteration, then stop
                    due = self.iteration % cfg.checkpoint_every == 0 or self.iteration == cfg.iterations
                    if stop or due:  # a save at a signal logs no held-out record: the log is the one go's
                        val = self.save(log, logged=due)
                    if stop and self.iteration < cfg.iterations:
                        raise interrupts.Interrupted(interrupts.saved_line(self.iteration, cfg.iterations, self.out))
            finally:
                bar.close()
                log.close()
        if self.iteration == start and not self.artifact_is_current():
            # a finished run resumed with nothing to do still leaves its artifact, current; the log written before its
            # checkpoint holds this iteration's record already
            val = self.save(log, logged=False)
        if val is None:  # resumed with nothing to do: the saved artifact's figures, computed again
            self.fit_detail()
            val = self.validate()
        summary = {
            "out": str(self.out),
            "decoder": str(self.out / "decoder"),
            "iterations": self.iteration,
            "samples": self.samples,
            "clips": {"synvid": len(self.dataset), "real": 0 if self.reals is None else len(self.reals)},
            "heldout_psnr_db": val,
            "detail_gain": self.artifact.spec.detail_gain,
            "feature_stage": self.tap,  # the decoder stage matched to the VAE's features; None: no feature term
            "parameters": sum(p.numel() for p in self.artifact.parameters()),
            "seconds": round(time.perf_counter() - t0, 3),
            "targets_seconds": round(t_targets, 3),
            "train_seconds": round(self.train_seconds, 3),  # behind the weights, summed over resumes
            "cpu_seconds": round(time.process_time() - cpu0, 3),  # this invocation, all threads
            "iterations_this_run": self.iteration - start,
            "threads": torch.get_num_threads(),
            "peak_memory_mb": peak_memory_mb(self.device),
        }
        write_json_atomic(self.out / "summary.json", summary)
        if stop:  # the signal came during the last iteration, which finished
            raise interrupts.Interrupted(interrupts.finished_line(cfg.iterations, self.out))
        return summary


def crop(t: torch.Tensor, y: int, x: int, h: int, w: int, scale: int) -> torch.Tensor:
    """The window (y, x, h, w) in latent pixels of a tensor whose last two axes are `scale` times the latent's."""
    return t[..., y * scale : (y + h) * scale, x * scale : (x + w) * scale]


def distill_decoder(cfg: DecoderDistillConfig, progress: bool = True) -> dict:
    """Run `accvideo decoder distill` with these settings; its summary."""
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    return DecoderDistiller(cfg).run(progress)
