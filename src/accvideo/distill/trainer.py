"""`accvideo distill`: trajectory-based few-step guidance (Eq. 6) plus adversarial training on SynVid (Eq. 7-8).

One outer iteration runs k = m-1 down to 0 (METHOD.md 3):
  1. trajectory loss: update the student on L_traj at key step k with a fresh batch;
  2. fakes: pop Q_{k+1} (fresh noise for k+1 = m), take ONE student Euler step t'_{k+1} -> t'_k, push it on Q_k;
  3. generator: update the student on lambda_adv * L_G of those fakes (the gradient flows through that step only);
  4. discriminator: update head H_k on L_D, real = l[t'_k] of the trajectories whose prompts the fakes carry;
and then 5. log, and save the whole training state every `checkpoint_every` iterations.

Under torchrun every rank draws the same global batch of items and fake seeds from the shared generator and
takes its contiguous slice; gradients are averaged by the parallel seam (core/parallel.py: DDP or FSDP2 for the
student, an all-reduce for the heads) and logged losses are global means, so K processes equal one.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from accvideo.core import dist, parallel
from accvideo.core.config import save_config, to_dict
from accvideo.core.runtime import resolve_device, resolve_dtype, resolve_model
from accvideo.core.sampling import euler_step
from accvideo.distill import losses
from accvideo.distill.checkpoint import NAME as CHECKPOINT
from accvideo.distill.checkpoint import SHARDED, check_resumable, load_latest, save_sharded, save_single, tidy
from accvideo.distill.config import DistillConfig
from accvideo.distill.data import Trajectories, fake_seed
from accvideo.distill.heads import Heads, default_feature_blocks
from accvideo.distill.lora import portable_lora_names
from accvideo.distill.models import make_student, student_view
from accvideo.distill.plots import LossLog, plot_losses, read_losses
from accvideo.distill.queues import KeyQueues
from accvideo.distill.student import export_student
from accvideo.errors import AccVideoError
from accvideo.models import adapter_class, load_adapter
from accvideo.synthesize import SynVidDataset, teacher_identity


class NonFiniteLoss(Exception):
    """A loss became NaN or Inf: the run stops before the bad value reaches the weights."""


def _finite(name: str, value: torch.Tensor) -> float:
    """The loss's mean over the ranks (so every rank stops together on a NaN, and logs the global mean)."""
    v = dist.mean(value)
    if not math.isfinite(v):
        raise NonFiniteLoss(f"{name} {v}")
    return v


class Distiller:
    """The student, its frozen teacher, the heads, optimisers and queues of one run; `run()` trains and saves."""

    def __init__(self, cfg: DistillConfig):
        # 0. setup: the dataset first (its refusals are cheap), then the teacher and the student made from it
        if dist.env_world_size() > 1 and not dist.is_distributed():
            raise AccVideoError("under torchrun, start distillation with accvideo.distill.distill(cfg), "
                                "which joins the process group")
        self.cfg = cfg
        self.world = dist.world_size()
        self.local_batch, micro, self.accumulation = cfg.split(self.world)
        self.mine = slice(dist.rank() * self.local_batch, (dist.rank() + 1) * self.local_batch)  # this rank's items
        self.out = Path(cfg.out).expanduser()
        model_dir = resolve_model(cfg.teacher)
        adapter_class(model_dir)  # a one-line error for a wrong folder before anything is hashed or loaded
        self.model_dir, self.identity = model_dir, teacher_identity(model_dir)
        self.dataset = SynVidDataset(cfg.data, teacher=self.identity, key_sigmas=cfg.key_sigmas)
        s = self.dataset.settings
        key = s.sigmas[list(s.latent_indices)][self.dataset.rows]  # float64, noisiest first
        self.t = [float(x) for x in key.flip(0)]  # t[k] = t'_k, so t[0] = 0 and t[m] = 1
        self.m = len(self.t) - 1
        self.device = dist.local_device(resolve_device(cfg.device))
        adapter = load_adapter(model_dir, device=self.device, dtype=resolve_dtype(cfg.dtype, self.device))
        if adapter.family != s.family:
            raise AccVideoError(f"{cfg.data} holds {s.family} latents but the teacher is {adapter.family}")
        self.grid = adapter.token_grid(s.latent_shape)
        self.blocks = list(cfg.feature_blocks or default_feature_blocks(adapter.num_blocks, self.m))
        if len(self.blocks) != self.m or not all(-adapter.num_blocks <= b < adapter.num_blocks for b in self.blocks):
            raise AccVideoError(f"feature_blocks needs {self.m} block indices (one per key step k = 0..{self.m - 1}) "
                                f"within the teacher's {adapter.num_blocks} blocks; got {self.blocks}")
        self.pair = make_student(adapter, cfg.lora_rank, cfg.lora_alpha, cfg.lora_targets, seed=cfg.seed)
        self.par = self._parallelize(adapter)
        self.data = Trajectories(self.dataset, self.device)
        with torch.random.fork_rng(devices=[]):  # heads initialise from the run's seed, not the global RNG
            torch.manual_seed(cfg.seed)
            self.feature_dim = self._feature_dim()
            self.heads = Heads(self.m, self.feature_dim, cfg.head_channels, cfg.heads == "shared").to(self.device)
        self.opt_s = torch.optim.AdamW(self.pair.params.values(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.opt_h = torch.optim.AdamW(self.heads.parameters(), lr=cfg.head_lr, weight_decay=cfg.weight_decay)
        self.queues = KeyQueues(self.m)
        self.gen = torch.Generator().manual_seed(cfg.seed)  # the same draws on every rank
        self.iteration = self.samples = self.fakes = 0
        self.chunks = [slice(i, i + micro) for i in range(0, self.local_batch, micro)]

    def _parallelize(self, adapter) -> parallel.Parallel:
        """Activation checkpointing, then DDP / FSDP2 on the student (core/parallel.py); its adapter runs the wrapper."""
        cfg, pair = self.cfg, self.pair
        size = sum(p.numel() for p in pair.module.parameters())
        mode = parallel.choose_mode(cfg.parallel, self.device, size, self.world)
        par = parallel.parallelize(pair.module, mode, self.device, teacher=None if pair.lora else adapter.transformer,
                                   grad_checkpointing=cfg.grad_checkpointing,
                                   bf16=parallel.use_bf16(cfg.mixed_precision, self.device))
        pair.params = {n: p for n, p in pair.module.named_parameters() if p.requires_grad}  # FSDP2 made new ones
        if par.forward_module is not pair.module:  # DDP: the student calls the wrapper, the teacher the module
            pair.student = student_view(pair.student, par.forward_module, pair.student.dtype)
        return par

    @torch.no_grad()
    def _feature_dim(self) -> int:
        latents, cond = self.data.load([0])
        with self.pair.teacher_mode():
            return self.pair.teacher.features(latents[:, -1], torch.zeros(1), cond, self.blocks[0]).shape[-1]

    def sigma(self, k: int, n: int) -> torch.Tensor:
        """t'_k for a batch of n, shape (n,)."""
        return torch.full((n,), self.t[k], device=self.device)

    def _student_step(self) -> None:
        if self.cfg.grad_clip > 0:  # on the averaged gradients, so every rank clips alike
            torch.nn.utils.clip_grad_norm_(self.pair.params.values(), self.cfg.grad_clip)
        self.opt_s.step()
        self.opt_s.zero_grad(set_to_none=True)
        if self.cfg.ema > 0:
            self.pair.update_ema(self.cfg.ema)

    def discriminator(self, k: int, x: torch.Tensor, cond: dict) -> torch.Tensor:
        """D(x, t'_k) = H_k(F_k(x, t'_k, c)): logits (B,) from the frozen teacher's block features; in teacher_mode()."""
        feats = self.pair.teacher.features(x, self.sigma(k, len(x)), cond, self.blocks[k])
        return self.heads(k, feats, self.grid)

    # 1. trajectory loss ----------------------------------------------------------------------------------
    def trajectory_update(self, k: int) -> float:
        """One student update on L_traj (Eq. 6): at l[t'_{k+1}], predict the secant to l[t'_k]."""
        idx, total = self.data.draw(self.cfg.batch, self.gen)[self.mine], 0.0
        for i, part in enumerate(self.chunks):
            latents, cond = self.data.load(idx[part])
            x, x_next = latents[:, self.m - k - 1], latents[:, self.m - k]
            with self.par.sync(last=i == len(self.chunks) - 1):
                with self.par.autocast():
                    v = self.pair.student.velocity(x, self.sigma(k + 1, len(x)), cond)
                loss = losses.trajectory_loss(v, x, x_next, self.t[k + 1], self.t[k])
                total += _finite("L_traj", loss) / len(self.chunks)
                (loss / len(self.chunks)).backward()
        self._student_step()
        self.samples += self.cfg.batch
        return total

    # 2 + 3. fakes and generator --------------------------------------------------------------------------
    def pop_fakes(self, k: int) -> dict:
        """A batch from Q_{k+1}; for k+1 = m fresh noise, each item from its own seed, with a drawn trajectory's prompt.

        Items and seeds are drawn for the global batch on every rank; each keeps its own slice.
        """
        if k + 1 < self.m:
            return self.queues.pop(k + 1)
        idx = self.data.draw(self.cfg.batch, self.gen)
        seeds = [fake_seed(self.cfg.seed, self.fakes + i) for i in range(len(idx))]
        self.fakes += len(idx)
        idx, seeds = idx[self.mine], seeds[self.mine]
        _, cond = self.data.load(idx)
        return {"x": self.data.noise(seeds), "cond": cond, "index": idx, "seed": torch.tensor(seeds)}

    def generator_update(self, k: int, entry: dict) -> tuple[dict, float]:
        """One student Euler step t'_{k+1} -> t'_k of the popped fakes, pushed on Q_k; the update on lambda_adv * L_G.

        Backward in two phases (NOTES-diffusers.md): through the frozen teacher and head to the detached fake
        inside teacher_mode(), then from the fake through the student's one step; so a LoRA student's shared
        weights never see both paths in one graph, and no gradient reaches earlier steps.
        """
        out, total = [], 0.0
        for i, part in enumerate(self.chunks):
            x, cond = entry["x"][part], {n: c[part] for n, c in entry["cond"].items()}
            with self.par.sync(last=i == len(self.chunks) - 1):
                with self.par.autocast():
                    v = self.pair.student.velocity(x, self.sigma(k + 1, len(x)), cond)
                fake = euler_step(x, v, self.t[k + 1], self.t[k])
                out.append(fake.detach())
                leaf = fake.detach().requires_grad_(True)
                with self.pair.teacher_mode():
                    loss = losses.generator_loss(self.discriminator(k, leaf, cond), self.cfg.gan_loss)
                    total += _finite("L_G", loss) / len(self.chunks)
                    (self.cfg.lambda_adv * loss / len(self.chunks)).backward()
                fake.backward(leaf.grad)
        fakes = {**entry, "x": torch.cat(out)}
        self.queues.push(k, fakes)
        self._student_step()
        return fakes, total

    # 4. discriminator --------------------------------------------------------------------------------------
    def discriminator_update(self, k: int, fakes: dict) -> float:
        """One update of H_k on L_D: real l[t'_k] and fake share each item's prompt (and so the teacher's features)."""
        self.opt_h.zero_grad(set_to_none=True)  # drop what L_G left on the heads
        total = 0.0
        for part in self.chunks:
            real, cond = self.data.load(fakes["index"][part])
            real, fake = real[:, self.m - k], fakes["x"][part]
            both = {n: torch.cat([c, c]) for n, c in cond.items()}
            with torch.no_grad(), self.pair.teacher_mode():
                feats = self.pair.teacher.features(torch.cat([real, fake]), self.sigma(k, 2 * len(real)), both,
                                                   self.blocks[k])
            f_real = feats[: len(real)].detach().requires_grad_(self.cfg.r1 > 0)
            d_real, d_fake = self.heads(k, f_real, self.grid), self.heads(k, feats[len(real):], self.grid)
            loss = losses.discriminator_loss(d_real, d_fake, self.cfg.gan_loss)
            if self.cfg.r1 > 0:  # on the heads' input: the teacher is frozen, the head is what D learns
                loss = loss + 0.5 * self.cfg.r1 * losses.r1_penalty(d_real, f_real)
            total += _finite("L_D", loss) / len(self.chunks)
            (loss / len(self.chunks)).backward()
        parallel.average_gradients(self.heads.parameters())
        self.opt_h.step()
        return total

    def train_iteration(self) -> dict:
        """Key steps k = m-1 .. 0 once; returns the record of per-key-step losses."""
        traj, gen, disc = [None] * self.m, [None] * self.m, [None] * self.m
        for k in reversed(range(self.m)):
            traj[k] = self.trajectory_update(k)
            if self.cfg.adv:
                fakes, gen[k] = self.generator_update(k, self.pop_fakes(k))
                disc[k] = self.discriminator_update(k, fakes)
        self.iteration += 1

        def mean(xs):
            return sum(xs) / len(xs) if xs[0] is not None else None

        return {"iteration": self.iteration, "samples": self.samples, "traj": mean(traj), "g": mean(gen),
                "d": mean(disc), "traj_k": traj, "g_k": gen, "d_k": disc}

    # 5. state, checkpoints and the artifact -----------------------------------------------------------------
    def tensors(self, ema: bool = True) -> dict:
        """Weights and AdamW states in this run's layout (local shards under FSDP2), keyed by parameter name."""
        par = self.pair.module
        out = {"student": parallel.module_state(par), "heads": self.heads.state_dict(),
               "opt_student": parallel.optimizer_state(par, self.opt_s),
               "opt_heads": parallel.optimizer_state(self.heads, self.opt_h)}
        if ema:
            out["ema"] = self.pair.ema
        return out

    def meta(self) -> dict:
        """Everything else: settings, counters, RNG states, and the queues gathered whole (a collective)."""
        return {
            "config": to_dict(self.cfg), "teacher": self.identity, "iteration": self.iteration,
            "samples": self.samples, "fakes": self.fakes, "world_size": self.world,
            "has_ema": self.pair.ema is not None, "queues": self.queues.state_dict(gather=dist.gather_cat),
            "generator": self.gen.get_state(), "torch_rng": torch.get_rng_state(),
        }

    def _target(self, meta: dict) -> dict:
        """Where a sharded checkpoint is read into: this run's own tensors (an EMA placeholder if it had one)."""
        out = self.tensors(ema=False)
        if meta["has_ema"]:
            out["ema"] = {n: p.detach().clone() for n, p in self.pair.params.items()}
        return out

    def load_state(self, meta: dict, tensors: dict, whole: bool) -> None:
        """Restore a checkpoint; `whole`: its tensors are unsharded (a one-process file), laid out here as needed."""
        parallel.load_module_state(self.pair.module, tensors["student"], whole)
        ema = tensors.get("ema")
        self.pair.ema = None if ema is None else {
            n: parallel.like(ema[n], p.detach()) if whole else ema[n] for n, p in self.pair.params.items()}
        self.heads.load_state_dict(tensors["heads"])
        parallel.load_optimizer_state(self.pair.module, self.opt_s, tensors["opt_student"], whole)
        parallel.load_optimizer_state(self.heads, self.opt_h, tensors["opt_heads"], full=False)  # replicated
        for opt, lr in ((self.opt_s, self.cfg.lr), (self.opt_h, self.cfg.head_lr)):
            for group in opt.param_groups:  # a resumed run may lower the learning rates (the fix after a NaN)
                group["lr"] = lr
        self.queues.load_state_dict(meta["queues"], self.device, self.mine)
        self.gen.set_state(meta["generator"])
        torch.set_rng_state(meta["torch_rng"])
        self.iteration, self.samples, self.fakes = meta["iteration"], meta["samples"], meta["fakes"]

    def save(self) -> None:
        """The training state (to resume), the student artifact (to sample) and the loss plot; every rank calls it."""
        tensors, meta = self.tensors(), self.meta()
        if self.world == 1:
            save_single(self.out / CHECKPOINT, {**meta, **tensors})
        else:
            save_sharded(self.out / SHARDED, {k: v for k, v in tensors.items() if v is not None}, meta)
        cfg = self.cfg
        lora = None if cfg.lora_rank == 0 else {
            "rank": cfg.lora_rank, "alpha": float(cfg.lora_alpha or cfg.lora_rank),
            "targets": sorted(self.pair.module.peft_config["default"].target_modules)}
        use_ema = cfg.ema > 0 and self.pair.ema is not None
        if use_ema:
            self.pair.swap_ema()
        try:
            state = parallel.full_module_state(self.pair.module)  # whole, on rank 0 (gathered from FSDP2 shards)
            if dist.is_main():
                export_student(self.out / "student", self.pair, key_sigmas=list(reversed(self.t)),
                               teacher=self.identity, teacher_dir=self.model_dir, lora=lora,
                               state=portable_lora_names(state) if lora else state,
                               extra={"iteration": self.iteration, "samples": self.samples, "ema": use_ema})
                plot_losses(read_losses(self.out / "losses.jsonl"), self.out / "losses.png")
        finally:
            if use_ema:
                self.pair.swap_ema()
        dist.barrier()

    def _prepare(self) -> None:
        """Rank 0 creates the folder and tidies an interrupted checkpoint swap; its refusal reaches every rank."""
        from accvideo.core.files import prepare_output

        error = None
        if dist.is_main():
            try:
                prepare_output(self.out / "config.yaml")
                tidy(self.out)
            except AccVideoError as exc:
                error = str(exc)
        error = dist.broadcast_object(error)
        if error is not None:
            raise AccVideoError(error)

    def run(self, progress: bool = True) -> dict:
        """Train to cfg.iterations, resuming from the run folder's checkpoint when there is one."""
        cfg, t0, main = self.cfg, time.perf_counter(), dist.is_main()
        self._prepare()
        saved = load_latest(self.out, lambda s: check_resumable(s, to_dict(cfg), self.identity, self.out / CHECKPOINT),
                            self._target)
        if saved is not None:
            self.load_state(*saved)
        start = self.iteration
        first_samples, t_train = self.samples, time.perf_counter()
        if main:
            save_config(cfg, self.out / "config.yaml", teacher_identity=self.identity,
                        key_sigmas=list(reversed(self.t)), key_steps=self.m, feature_blocks=self.blocks,
                        world_size=self.world, data_parallel=self.par.mode, bf16=self.par.bf16,
                        per_process_batch=self.local_batch, accumulation=self.accumulation,
                        feature_dim=self.feature_dim, token_grid=list(self.grid))
        log = LossLog(self.out / "losses.jsonl", start, self.out / "tensorboard" if cfg.tensorboard else None) \
            if main else None
        bar = tqdm(total=cfg.iterations, initial=start, desc="distill", unit="it", disable=not (progress and main),
                   dynamic_ncols=True)
        try:
            while self.iteration < cfg.iterations:
                try:
                    record = self.train_iteration()
                except NonFiniteLoss as exc:
                    kept = f"the last good checkpoint (iteration {start}) is kept" if start else "no checkpoint yet"
                    raise AccVideoError(
                        f"loss {exc} at iteration {self.iteration + 1}: stopped without saving; {kept} in {self.out}; "
                        "lower lr (e.g. lr=...) and rerun the same command to resume from it"
                    ) from None
                shown = self.iteration % cfg.log_every == 0
                if log is not None:
                    log.write({**record, "seconds": round(time.perf_counter() - t0, 3)}, scalars=shown)
                bar.update(1)
                if shown:
                    bar.set_postfix({k: f"{record[k]:.4g}" for k in ("traj", "g", "d") if record[k] is not None},
                                    refresh=False)
                if self.iteration % cfg.checkpoint_every == 0 or self.iteration == cfg.iterations:
                    self.save()
                    start = self.iteration
        finally:
            bar.close()
            if log is not None:
                log.close()
        if self.iteration == start and not dist.broadcast_object((self.out / "student").is_dir()):
            self.save()  # a finished run resumed with nothing to do still leaves its artifact
        trained, seconds = self.samples - first_samples, time.perf_counter() - t_train
        summary = {"out": str(self.out), "iterations": self.iteration, "samples": self.samples, "key_steps": self.m,
                   "seconds": round(time.perf_counter() - t0, 3), "student": str(self.out / "student"),
                   "rank": dist.rank(), "world_size": self.world, "data_parallel": self.par.mode,
                   # this invocation's training rate (samples = trajectories x key steps) and this rank's peak memory
                   "samples_per_s": round(trained / seconds, 3) if trained else None,
                   "peak_memory_mb": _peak_memory_mb(self.device)}
        if main:
            (self.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        return summary


def _peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process: the GPU's allocator peak on CUDA, else the resident-set peak (Linux: KiB)."""
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def distill(cfg: DistillConfig, progress: bool = True) -> dict:
    """Run `accvideo distill` with these settings (joining the torchrun process group if launched so); a summary."""
    with dist.distributed(dist.local_device(resolve_device(cfg.device))):
        return Distiller(cfg).run(progress)
