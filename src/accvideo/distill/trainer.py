"""`accvideo distill`: trajectory-based few-step guidance (Eq. 6) plus adversarial training on SynVid (Eq. 7-8).

One outer iteration runs k = m-1 down to 0 (docs/method.md 3), each key step on a fresh batch of trajectories:
  1. trajectory loss: the gradient of L_traj at key step k;
  2. fakes: pop Q_{k+1} (fresh noise for k+1 = m), take ONE student Euler step t'_{k+1} -> t'_k, push it on Q_k;
  3. generator: the gradient of lambda_adv * L_G of those fakes (it flows through that step only; none during the
     first `adv_warmup` iterations, while the heads learn against the trajectory-trained student);
     the student takes one AdamW step on the sum of 1 and 3 (`adv_update=joint`, the paper's summed objective)
     or one after each (`separate`);
  4. discriminator: update head H_k on L_D (`head_steps` times on the same features), real = l[t'_k] of the
     trajectories whose prompts the fakes carry;
and then 5. log (losses and the heads' accuracy, probe.py), and save the whole training state every
`checkpoint_every` iterations (state.py).

Under torchrun every rank draws the same global batch of items and fake seeds from the shared generator and
takes its contiguous slice; gradients are averaged by the parallel seam (core/parallel.py: DDP or FSDP2 for the
student, an all-reduce for the heads) and logged losses are global means, so K processes equal one.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from accvideo.core import dist, interrupts, parallel
from accvideo.core.config import to_dict
from accvideo.core.progress import progress_bar
from accvideo.core.runtime import available_memory, resolve_device, resolve_dtype, resolve_model
from accvideo.core.sampling import euler_step
from accvideo.distill import losses, state
from accvideo.distill.config import DistillConfig
from accvideo.distill.data import Trajectories, fake_seed
from accvideo.distill.heads import Heads, default_feature_blocks
from accvideo.distill.lora import check_lora, targets_for
from accvideo.distill.models import make_student, parallelize_student
from accvideo.distill.plots import LossLog, check_tensorboard
from accvideo.distill.probe import game_stats, probe_heads
from accvideo.distill.queues import KeyQueues
from accvideo.distill.reals import check_real_data, shared_real_clips
from accvideo.errors import AccVideoError
from accvideo.models import adapter_class, host_bytes, load_adapter
from accvideo.models.base import LoadParts
from accvideo.models.identity import teacher_identity
from accvideo.models.runtime import release_encoders
from accvideo.models.wan_moe import experts_line, key_step_experts
from accvideo.synthesize import SynVidDataset


class NonFiniteLoss(Exception):
    """A loss became NaN or Inf: the run stops before the bad value reaches the weights."""


def global_mean_checked(name: str, value: torch.Tensor) -> float:
    """The loss's mean over the ranks (a collective: every rank stops together on a NaN, and logs the global mean)."""
    v = dist.mean(value)
    if not math.isfinite(v):
        raise NonFiniteLoss(f"loss {name} {v}")
    return v


def check_gradients(what: str, params) -> None:
    """Stop before an optimiser step on NaN or infinite gradients (a finite loss can have them: an overflow in the
    backward pass, a huge lambda_adv), which made every weight NaN, saved as the next checkpoint or the student.
    The largest |gradient| of this rank's (local) gradients, all-reduced: a collective, so every rank stops."""
    local = [g.to_local() if hasattr(g, "to_local") else g for g in (p.grad for p in params) if g is not None]
    grads = [g for g in local if g.numel()]  # an FSDP2 shard may be empty, which has no max
    peak = torch.nn.utils.get_total_norm(grads, norm_type=math.inf) if grads else torch.zeros(())
    if not math.isfinite(dist.mean(peak)):
        raise NonFiniteLoss(f"a gradient of {what} {peak.item()}")


# what the ablation measured (docs/distill.md section 3, docs/demo.md), said where a user would otherwise not look
ONE_STEP_NOTE = (
    "note: at 1 key step the adversarial stage made the built-in model's student worse than L_traj alone "
    "(Frechet distance +52 [+42, +67], 3 seeds; docs/demo.md); adv=false trains L_traj only"
)


class Distiller:
    """The student, its frozen teacher, the heads, optimisers and queues of one run; `run()` trains and saves.

    Key steps are indexed as in docs/method.md: t[k] = t'_k, so t[0] = 0 and t[m] = 1. Stored latents, `key_sigmas`
    and the artifacts keep the data's order, noisiest first: row m - k holds t'_k (`at`).
    """

    def __init__(self, cfg: DistillConfig):
        # 0. setup: the dataset first (its refusals are cheap), then the teacher and the student made from it
        if dist.env_world_size() > 1 and not dist.is_distributed():
            raise AccVideoError(
                "under torchrun, start distillation with accvideo.distill.distill(cfg), which joins the process group"
            )
        dist.check_agree(to_dict(cfg))  # the nodes of a launch each parse their own command line
        self.cfg = cfg
        self.world = dist.world_size()
        self.local_batch, micro, self.accumulation = cfg.split(self.world)
        self.mine = slice(dist.rank() * self.local_batch, (dist.rank() + 1) * self.local_batch)  # this rank's items
        self.micro_batches = [slice(i, i + micro) for i in range(0, self.local_batch, micro)]
        self.out = Path(cfg.out).expanduser()
        if cfg.tensorboard:
            check_tensorboard()
        model_dir = resolve_model(cfg.teacher)
        family = adapter_class(model_dir)  # a one-line error for a wrong folder before anything is hashed or loaded
        if cfg.adv and cfg.real_data:
            check_real_data(cfg.real_data)
        self.dataset = SynVidDataset(cfg.data, key_sigmas=cfg.key_sigmas)
        if self.dataset.missing and dist.is_main():
            warnings.warn(self.dataset.missing_line(), stacklevel=2)
        # once, on rank 0, in the scheme the dataset recorded (a dataset made before the sampled identity still fits)
        self.model_dir = model_dir
        self.identity = dist.from_main(lambda: teacher_identity(model_dir, like=self.dataset.settings.teacher))
        self.dataset.check_teacher(self.identity, cfg.teacher)
        s = self.dataset.settings
        self.key_sigmas = [float(x) for x in s.sigmas[list(s.latent_indices)][self.dataset.rows]]  # noisiest first
        self.t = self.key_sigmas[::-1]
        self.m = len(self.t) - 1
        read = getattr(family, "folder_num_blocks", None)  # an adapter of the user's own may not say
        if cfg.feature_blocks is not None and read is not None and (count := read(model_dir)) is not None:
            self.check_feature_blocks(list(cfg.feature_blocks), count)  # before loading: minutes at real size
        if cfg.lora_rank > 0 and (empty := getattr(family, "folder_transformer", lambda _: None)(model_dir)):
            check_lora(empty, cfg.lora_rank, targets_for(family, cfg.lora_targets))  # likewise
        self.device = dist.local_device(resolve_device(cfg.device))
        # the transformer alone: SynVid items hold the text encodings; the VAE (and the text encoders, for the clips'
        # captions) only to encode real videos, released once they are encoded (run()). When FSDP2 may shard
        # the student, it is built on the meta device and each rank reads its own part after sharding.
        reals = bool(cfg.adv and cfg.real_data)
        empty = self.world > 1 and (cfg.parallel == "fsdp" or (cfg.parallel == "auto" and self.device.type == "cuda"))
        parts = LoadParts(text=reals, vae=reals, empty_transformer=empty)
        dtype = resolve_dtype(cfg.dtype, self.device)
        if self.device.type == "cpu" and self.world == 1 and cfg.lora_rank == 0:
            self.check_host_memory(model_dir, dtype, parts)  # before loading, as load_adapter does for the teacher
        adapter = load_adapter(model_dir, device=self.device, dtype=dtype, parts=parts)
        if adapter.family != s.family:
            raise AccVideoError(f"{cfg.data} holds {s.family} latents but the teacher is {adapter.family}")
        self.grid = adapter.token_grid(s.latent_shape)
        self.blocks = list(cfg.feature_blocks or default_feature_blocks(adapter.num_blocks, self.m))
        self.check_feature_blocks(self.blocks, adapter.num_blocks)
        self.experts = key_step_experts(adapter, self.key_sigmas)  # Wan 2.2 A14B: the expert of each key step
        self.pair = make_student(adapter, cfg.lora_rank, cfg.lora_alpha, cfg.lora_targets, seed=cfg.seed)
        tokens, width = math.prod(self.grid), adapter.width
        self.checkpointing = cfg.checkpointing(tokens, width)  # grad_checkpointing=auto, resolved (config.yaml)
        self.parallel = parallelize_student(self.pair, cfg, self.device, self.world, model_dir, self.checkpointing)
        self.data = Trajectories(self.dataset, self.device)
        with torch.random.fork_rng(devices=[]):  # heads initialise from the run's seed, not the global RNG
            torch.manual_seed(cfg.seed)
            self.feature_dim = self._feature_dim()
            self.heads = Heads(self.m, self.feature_dim, cfg.head_channels, cfg.heads == "shared").to(self.device)
        self.opt_student = torch.optim.AdamW(self.pair.params.values(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.opt_heads = torch.optim.AdamW(self.heads.parameters(), lr=cfg.head_lr, weight_decay=cfg.weight_decay)
        self.queues = KeyQueues(self.m)
        self.reals = None  # real videos as more real samples (reals.py: RealClips), loaded in run()
        self.rng = torch.Generator().manual_seed(cfg.seed)  # items and fake seeds: the same draws on every rank
        # the global generator, which the checkpoint keeps (torch_rng) for code that draws from it (an own adapter's
        # dropout): from the run's seed, so two fresh runs of the same settings save the same checkpoint
        torch.manual_seed(cfg.seed)
        self.iteration = self.samples = self.fakes = 0
        self.stepped = False  # whether this process has updated any weights (a NaN before that is not the lr's)
        self.train_seconds = 0.0  # wall seconds of training behind the current state, summed over resumes
        self.lock = None  # rank 0: the run folder's FolderLock while run() runs
        self.save_seconds = None  # this invocation's last save (checkpoint + student): must fit a SIGTERM's grace

    @torch.no_grad()
    def _feature_dim(self) -> int:
        latents, cond = self.data.load([0])
        with self.pair.teacher_mode():
            return self.pair.teacher.features(self.at(latents, 0), torch.zeros(1), cond, self.blocks[0]).shape[-1]

    def sigma(self, k: int, n: int) -> torch.Tensor:
        """t'_k for a batch of n, shape (n,)."""
        return torch.full((n,), self.t[k], device=self.device)

    def at(self, latents: torch.Tensor, k: int) -> torch.Tensor:
        """l[t'_k]: (B, C, F', H', W') from stored trajectories (B, m+1, C, F', H', W'), noisiest first."""
        return latents[:, self.m - k]

    def discriminator(self, k: int, x: torch.Tensor, cond: dict) -> torch.Tensor:
        """D(x, t'_k) = H_k(F_k(x, t'_k, c)): logits (B,) of the frozen teacher's block features; in teacher_mode()."""
        feats = self.pair.teacher.features(x, self.sigma(k, len(x)), cond, self.blocks[k])
        return self.heads(k, feats, self.grid)

    def accumulate(self, name: str, micro_step: Callable[[slice], torch.Tensor]) -> float:
        """Gradient accumulation over this rank's micro-batches; the loss's global mean (checked finite).

        `micro_step(part)` back-propagates its micro-batch's loss divided by the number of micro-batches and
        returns the loss; the student's gradients are averaged across processes with the last micro-batch.
        """
        n, total = len(self.micro_batches), 0.0
        for i, part in enumerate(self.micro_batches):
            with self.parallel.sync(last=i == n - 1):
                total += global_mean_checked(name, micro_step(part)) / n
        return total

    def student_step(self) -> None:
        """One AdamW step of the student on the gradients gathered since the last one (clipped, then EMA)."""
        check_gradients("the student", self.pair.params.values())
        if self.cfg.grad_clip > 0:  # on the averaged gradients, so every rank clips alike
            torch.nn.utils.clip_grad_norm_(self.pair.params.values(), self.cfg.grad_clip)
        self.opt_student.step()
        self.stepped = True
        self.opt_student.zero_grad(set_to_none=True)
        if self.cfg.ema > 0:
            self.pair.update_ema(self.cfg.ema)

    # batch -----------------------------------------------------------------------------------------------------
    def batch(self) -> torch.Tensor:
        """Item indices (B,) of this rank's slice of a fresh global batch of trajectories."""
        return self.data.draw(self.cfg.batch, self.rng)[self.mine]

    # 1. trajectory loss ----------------------------------------------------------------------------------------
    def trajectory_backward(self, k: int) -> float:
        """The student's gradient of L_traj (Eq. 6): at l[t'_{k+1}], predict the secant to l[t'_k]."""
        idx = self.batch()

        def micro_step(part: slice) -> torch.Tensor:
            latents, cond = self.data.load(idx[part])
            x, x_next = self.at(latents, k + 1), self.at(latents, k)
            with self.parallel.autocast():
                v = self.pair.student.velocity(x, self.sigma(k + 1, len(x)), cond)
            loss = losses.trajectory_loss(v, x, x_next, self.t[k + 1], self.t[k])
            (loss / len(self.micro_batches)).backward()
            return loss

        total = self.accumulate("L_traj", micro_step)
        self.samples += self.cfg.batch
        return total

    # 2. fakes --------------------------------------------------------------------------------------------------
    def pop_fakes(self, k: int) -> dict:
        """A batch from Q_{k+1}; for k+1 = m fresh noise, each item from its own seed, with a drawn trajectory's prompt.

        Items and seeds are drawn for the global batch on every rank; each keeps its own slice.
        """
        if k + 1 < self.m:
            return self.queues.pop(k + 1)
        idx = self.data.draw(self.cfg.batch, self.rng)
        seeds = [fake_seed(self.cfg.seed, self.fakes + i) for i in range(len(idx))]
        self.fakes += len(idx)
        idx, seeds = idx[self.mine], seeds[self.mine]
        _, cond = self.data.load(idx)
        x = self.pair.teacher.keep_given(self.data.noise(seeds), cond)  # as sample_latents starts (TI2V's frame 0)
        return {"x": x, "cond": cond, "index": idx, "seed": torch.tensor(seeds)}

    # 2 + 3. the fakes' Euler step and the generator loss -------------------------------------------------------
    def generator_backward(self, k: int, entry: dict) -> tuple[dict, float]:
        """One student Euler step t'_{k+1} -> t'_k of the popped fakes, pushed on Q_k; the gradient of lambda_adv * L_G.

        Backward in two phases (docs/distill.md, "What one iteration does"): through the frozen teacher and head to
        the detached fake inside teacher_mode(), then from the fake through the student's one step; so a LoRA
        student's shared weights never see both paths in one graph, and no gradient reaches earlier steps.
        """
        out, warm = [], self.iteration < self.cfg.adv_warmup  # warm-up: the fakes and L_G, no student gradient

        def micro_step(part: slice) -> torch.Tensor:
            x, cond = entry["x"][part], {n: c[part] for n, c in entry["cond"].items()}
            with self.parallel.autocast(), torch.set_grad_enabled(not warm):
                v = self.pair.student.velocity(x, self.sigma(k + 1, len(x)), cond)
            fake = euler_step(x, v, self.t[k + 1], self.t[k])
            out.append(fake.detach())
            if warm:
                with torch.no_grad(), self.pair.teacher_mode():
                    return losses.generator_loss(self.discriminator(k, fake, cond), self.cfg.gan_loss)
            leaf = fake.detach().requires_grad_(True)
            with self.pair.teacher_mode():
                loss = losses.generator_loss(self.discriminator(k, leaf, cond), self.cfg.gan_loss)
                (self.cfg.lambda_adv * loss / len(self.micro_batches)).backward()
            fake.backward(leaf.grad)
            return loss

        total = self.accumulate("L_G", micro_step)
        fakes = {**entry, "x": torch.cat(out)}
        self.queues.push(k, fakes)
        return fakes, total

    # 4. discriminator ------------------------------------------------------------------------------------------
    def discriminator_update(self, k: int, fakes: dict) -> tuple[float, float, float]:
        """`head_steps` updates of H_k on L_D: real l[t'_k] and fake share each item's prompt (and so the teacher's
        features, computed once and kept for the further steps).

        Returns L_D and the head's balanced accuracy and logit gap on this batch (before the first update), global
        means.
        """
        logits: list[tuple[torch.Tensor, torch.Tensor]] = []
        kept: dict[int, tuple[torch.Tensor, int]] = {}  # micro-batch start -> (features, real count), for step 2..

        mix = None  # without real_data (or at real_weight 0) the real samples are the trajectories' latents only
        if self.reals is not None and self.cfg.real_weight > 0:
            mix = self.reals.draw(self.rng, self.cfg.batch, self.cfg.real_weight, self.mine, len(fakes["x"]))

        def teacher_features(part: slice) -> tuple[torch.Tensor, int]:
            if part.start in kept:
                return kept[part.start]
            latents, cond = self.data.load(fakes["index"][part])
            real, fake, real_cond = self.at(latents, k), fakes["x"][part], cond
            if mix is not None:
                real, real_cond = self.reals.mix(real, cond, *(x[part] for x in mix), self.t[k])
            both = {n: torch.cat([real_cond[n], c]) for n, c in cond.items()}
            with torch.no_grad(), self.pair.teacher_mode():
                feats = self.pair.teacher.features(
                    torch.cat([real, fake]), self.sigma(k, 2 * len(real)), both, self.blocks[k]
                )
            if self.cfg.head_steps > 1:
                kept[part.start] = (feats, len(real))
            return feats, len(real)

        def micro_step(part: slice) -> torch.Tensor:
            feats, n = teacher_features(part)
            f_real = feats[:n].detach().requires_grad_(self.cfg.r1 > 0)
            d_real, d_fake = self.heads(k, f_real, self.grid), self.heads(k, feats[n:], self.grid)
            if len(logits) < len(self.micro_batches):  # the first step's: the heads before this update
                logits.append((d_real.detach(), d_fake.detach()))
            loss = losses.discriminator_loss(d_real, d_fake, self.cfg.gan_loss)
            if self.cfg.r1 > 0:  # on the heads' input: the teacher is frozen, the head is what D learns
                loss = loss + 0.5 * self.cfg.r1 * losses.r1_penalty(d_real, f_real)
            (loss / len(self.micro_batches)).backward()
            return loss

        first = None
        for _ in range(self.cfg.head_steps):
            self.opt_heads.zero_grad(set_to_none=True)  # drop what L_G (or the previous step) left on the heads
            value = self.accumulate("L_D", micro_step)
            first = value if first is None else first
            parallel.average_gradients(self.heads.parameters())
            check_gradients("the heads", self.heads.parameters())
            self.opt_heads.step()
            self.stepped = True
        acc, gap = game_stats(torch.cat([r for r, _ in logits]), torch.cat([f for _, f in logits]))
        return first, dist.mean(torch.tensor(acc)), dist.mean(torch.tensor(gap))

    def check_host_memory(self, model_dir: Path, dtype: torch.dtype, parts: LoadParts) -> None:
        """A full student on the CPU holds, besides the teacher, its float32 weights, their gradients and two AdamW
        moments (and an average with `ema`): 16 to 20 bytes a parameter, which the kernel's out-of-memory killer
        ended without a word when they did not fit. Refused before loading, with what a LoRA student needs."""
        free = available_memory()
        if free is None:
            return
        teacher = host_bytes(model_dir, dtype, parts)
        params = host_bytes(model_dir, torch.float32, LoadParts(text=False, vae=False)) // 4
        need = teacher + params * (16 + (4 if self.cfg.ema > 0 else 0))
        if need > free:
            gib = 2**30
            raise AccVideoError(
                f"a full student of {model_dir} on the CPU takes at least {need / gib:.1f} GiB (the teacher, and the "
                f"student's float32 weights, gradients and AdamW moments) and this machine has {free / gib:.1f} GiB "
                f"of memory free; distill a LoRA student (lora_rank=64; the teacher alone is {teacher / gib:.1f} GiB) "
                "or on a GPU (device=cuda)"
            )

    def check_feature_blocks(self, blocks: list[int], num_blocks: int) -> None:
        """One teacher block per key step, each within the teacher's blocks (negative ones count from the end)."""
        if len(blocks) != self.m or not all(-num_blocks <= b < num_blocks for b in blocks):
            raise AccVideoError(
                f"feature_blocks needs {self.m} block indices (one per key step k = 0..{self.m - 1}) "
                f"within the teacher's {num_blocks} blocks; got {blocks}"
            )

    def diverged_line(self, exc: NonFiniteLoss, start: int) -> str:
        """The one line of a NaN or infinite loss or gradient: what is kept, and the settings to lower."""
        cfg, at = self.cfg, f"{exc} at iteration {self.iteration + 1}: stopped without saving"
        if self.iteration == 0 and not self.stepped and "gradient" in str(exc) and cfg.adv:  # lambda_adv * L_G
            return f"{at}, before any update; lower lambda_adv (now {cfg.lambda_adv:g}) and rerun the same command"
        if self.iteration == 0 and not self.stepped:  # no update yet: the inputs, not a learning rate
            return (
                f"{at}, before any update, so no learning rate caused it: the SynVid {cfg.data} holds latents "
                "(or conditioning) the teacher's transformer cannot take; make it again with accvideo synthesize"
            )
        kept = f"the last good checkpoint (iteration {start}) is kept" if start else "no checkpoint yet"
        then = "resume from it" if start else "start again"
        rates = f"lr (now {cfg.lr:g})" + (f", head_lr (now {cfg.head_lr:g})" if cfg.adv else "")
        weight = f" or lambda_adv (now {cfg.lambda_adv:g})" if cfg.adv and not start else ""  # a resume keeps it
        return f"{at}; {kept} in {self.out}; lower {rates}{weight} and rerun the same command to {then}"

    def settings_line(self) -> str:
        """One line: what this run resolved (student, processes, checkpointing, what of the teacher it loaded)."""
        cfg = self.cfg
        student = f"LoRA rank {cfg.lora_rank}" if cfg.lora_rank else "full"
        loaded = "transformer, text encoders and VAE (real clips)" if self.reals is not None else "transformer only"
        return (
            f"settings: {self.m}-step {student} student, batch {cfg.batch} over {self.world} process(es) "
            f"({self.parallel.mode}{', bf16' if self.parallel.bf16 else ''}), grad checkpointing "
            f"{'on' if self.checkpointing else 'off'} ({cfg.grad_checkpointing}), teacher {loaded}, "
            f"token grid {'x'.join(map(str, self.grid))}"
        )

    def train_iteration(self) -> dict:
        """Key steps k = m-1 .. 0 once; returns the record of per-key-step losses and the heads' game."""
        m, adv = self.m, self.cfg.adv
        traj, gen, disc, acc, gap = ([None] * m for _ in range(5))
        for k in reversed(range(m)):
            traj[k] = self.trajectory_backward(k)
            if not (adv and self.cfg.adv_update == "joint"):
                self.student_step()
            if adv:
                fakes, gen[k] = self.generator_backward(k, self.pop_fakes(k))
                self.student_step()
                disc[k], acc[k], gap[k] = self.discriminator_update(k, fakes)
        self.iteration += 1

        def mean(xs):
            return sum(xs) / len(xs) if xs[0] is not None else None

        record = {"iteration": self.iteration, "samples": self.samples}  # losses.jsonl keys, in this order
        record.update(traj=mean(traj), g=mean(gen), d=mean(disc), traj_k=traj, g_k=gen, d_k=disc)
        if adv:
            record.update(acc=mean(acc), acc_k=acc, gap_k=gap)
            if self.cfg.probe_every and self.iteration % self.cfg.probe_every == 0:
                record["probe_acc_k"], record["probe_gap_k"] = probe_heads(self)
                record["probe_acc"] = mean(record["probe_acc_k"])
        return record

    # 5. log and save -------------------------------------------------------------------------------------------
    def run(self, progress: bool = True) -> dict:
        """Train to cfg.iterations, resuming from the run folder's checkpoint when there is one."""
        try:
            return self._train(progress)
        finally:
            if self.lock is not None:  # rank 0's hold on the run folder (state.resume takes it)
                self.lock.release()

    def _train(self, progress: bool) -> dict:
        cfg, t0, main = self.cfg, time.perf_counter(), dist.is_main()
        state.resume(self)
        if self.iteration >= cfg.iterations and (earlier := dist.from_main(lambda: state.finished_summary(self))):
            # a finished run, whole: nothing to train, nothing rewritten (but a moved teacher's new folder in
            # student.json); said as kept, at the folder's path now
            if dist.is_main():
                state.repoint_teacher(self)
            return {
                **earlier,
                "out": str(self.out),
                "student": str(self.out / "student"),
                "rank": dist.rank(),
                "kept": True,
            }
        state.check_disk(self)
        if cfg.adv and cfg.real_data:
            s = self.dataset.settings
            shape = (s.frames, s.height, s.width)
            self.reals = shared_real_clips(
                cfg.real_data,
                self.out,
                self.pair.teacher,
                shape,
                cfg.real_clips,
                cfg.seed,
                progress and main,
                trained=self.iteration > 0,  # before a checkpoint, cached clips of another folder are encoded again
            )
            release_encoders(self.pair.teacher, self.pair.student)  # encoded once: not needed again
        if progress and main:
            print(self.settings_line(), flush=True)
            if self.m == 1 and cfg.adv:
                print(ONE_STEP_NOTE, flush=True)
            if self.experts is not None:
                print(experts_line(self.experts), flush=True)
        start = self.iteration
        first_samples, t_train, before = self.samples, time.perf_counter(), self.train_seconds
        state.write_config(self)
        board = self.out / "tensorboard" if cfg.tensorboard else None
        log = LossLog(self.out / "losses.jsonl", start, board) if main else None
        quiet = not (progress and main)
        bar = progress_bar(
            total=cfg.iterations, initial=start, desc="distill", unit="it", show=not quiet, dynamic_ncols=True
        )
        stop = False
        with interrupts.deferred():  # a Ctrl-C or SIGTERM: save after the iteration under way, then stop
            try:
                while self.iteration < cfg.iterations:
                    try:
                        record = self.train_iteration()
                    except NonFiniteLoss as exc:
                        raise AccVideoError(self.diverged_line(exc, start)) from None
                    shown = self.iteration % cfg.log_every == 0
                    self.train_seconds = before + time.perf_counter() - t_train
                    if log is not None:
                        log.write({**record, "seconds": round(self.train_seconds, 3)}, scalars=shown)
                    bar.update(1)
                    if shown:
                        bar.set_postfix(
                            {k: f"{record[k]:.4g}" for k in ("traj", "g", "d") if record[k] is not None}, refresh=False
                        )
                    # a collective: every rank stops at the same iteration, with the signal one of them received
                    signum = dist.max_int(interrupts.received())
                    stop = signum > 0
                    interrupts.adopt(signum)
                    if stop or self.iteration % cfg.checkpoint_every == 0 or self.iteration == cfg.iterations:
                        t_save = time.perf_counter()
                        state.save(self)
                        start, self.save_seconds = self.iteration, round(time.perf_counter() - t_save, 3)
                    if stop and self.iteration < cfg.iterations:
                        raise interrupts.Interrupted(interrupts.saved_line(self.iteration, cfg.iterations, self.out))
            finally:
                bar.close()
                if log is not None:
                    log.close()
        if self.iteration == start and not dist.from_main(lambda: state.artifact_is_current(self)):
            state.save(self)  # a finished run resumed with nothing to do still leaves its artifact, whole and current
        trained, train_seconds = self.samples - first_samples, time.perf_counter() - t_train
        summary = state.write_summary(self, time.perf_counter() - t0, trained, train_seconds)
        if stop:  # the signal came during the last iteration: every rank finished it and says so
            raise interrupts.Interrupted(interrupts.finished_line(cfg.iterations, self.out))
        return summary


def distill(cfg: DistillConfig, progress: bool = True) -> dict:
    """Run `accvideo distill` with these settings (joining the torchrun process group if launched so); a summary."""
    with dist.distributed(dist.local_device(resolve_device(cfg.device))):
        return Distiller(cfg).run(progress)
