"""Wan 2.2 A14B behind the model seam: two experts switched by noise level, as diffusers' WanPipeline does.

`transformer` denoises while timestep = 1000 sigma >= boundary_ratio * 1000 (high noise), `transformer_2` below
(core/sampling.py `high_noise`). `ExpertPair` holds both as one module (state-dict names `transformer.*` and
`transformer_2.*`), so the distillation's student, EMA, LoRA, checkpoints and FSDP2 (`fully_shard` per `*blocks`
entry) treat the pair as one transformer; each call is routed item by item by its timestep.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from accvideo.core.adapter import Conditioning, select
from accvideo.core.sampling import high_noise
from accvideo.errors import AccVideoError
from accvideo.models.base import WHOLE, LoadParts, _config, empty_config, load_pipeline, stopped_at
from accvideo.models.wan import WanAdapter

EXPERTS = ("transformer", "transformer_2")  # high-noise, low-noise: WanPipeline's component names


def is_two_expert(index: dict) -> bool:
    """Whether a WanPipeline model_index.json is a Wan 2.2 A14B layout (a second expert and its boundary)."""
    second = index.get("transformer_2")  # [null, null] when a Wan 2.1 is saved by the same class
    return second not in (None, [None, None]) or index.get("boundary_ratio") is not None


def check_experts_alike(path: Path) -> None:
    """Both experts of one architecture, from their config.json files before any weight is read: the pair is driven
    as one model (feature blocks, token grid, LoRA targets), and Wan 2.2 A14B's two share one config. A key only one
    config holds (another diffusers version's default) is left alone."""
    first, second = (_config(Path(path) / name) for name in EXPERTS)
    differ = sorted(k for k in first.keys() & second.keys() if not k.startswith("_") and first[k] != second[k])
    if differ:
        k = differ[0]
        raise AccVideoError(
            f"{path}: its experts differ in architecture ({EXPERTS[0]} has {k} {first[k]!r}, {EXPERTS[1]} "
            f"{second[k]!r}); a Wan 2.2 A14B pipeline's two experts share one config: re-save the whole pipeline"
        )


class ExpertPair(nn.Module):
    """Both experts as one module; a forward runs, for each item, the expert that owns its timestep."""

    routed = True  # one expert a call: under DDP the other's weights get no gradient (core/parallel.py)

    def __init__(
        self, transformer: nn.Module, transformer_2: nn.Module, boundary_ratio: float, num_train_timesteps=1000
    ):
        super().__init__()
        self.transformer = transformer
        self.transformer_2 = transformer_2
        self.boundary_ratio = float(boundary_ratio)
        self.num_train_timesteps = int(num_train_timesteps)

    # what generic code reads off a diffusers transformer: the experts share one architecture
    @property
    def config(self):
        return self.transformer.config

    @property
    def dtype(self) -> torch.dtype:
        return self.transformer.dtype

    @property
    def device(self) -> torch.device:
        return self.transformer.device

    def experts(self) -> dict[str, nn.Module]:
        return {name: getattr(self, name) for name in EXPERTS}

    def high(self, timestep: torch.Tensor) -> torch.Tensor:
        """(B,) True where the high-noise expert runs: WanPipeline's `t >= boundary_ratio * num_train_timesteps`."""
        return timestep.float() >= self.boundary_ratio * self.num_train_timesteps

    def expert_of(self, sigma: float) -> str:
        """The expert ('transformer' or 'transformer_2') that owns noise level `sigma`."""
        high = high_noise(torch.tensor([sigma]), self.boundary_ratio, self.num_train_timesteps)
        return EXPERTS[0] if bool(high[0]) else EXPERTS[1]

    def forward(self, hidden_states, timestep, encoder_hidden_states, return_dict: bool = False, **kw):
        """WanTransformer3DModel's call; items on both sides of the boundary are split, run, and put back in order."""
        timestep = timestep.expand(hidden_states.shape[0]) if timestep.ndim == 0 else timestep
        high = self.high(timestep)
        if bool(high.all()) or not bool(high.any()):
            expert = self.transformer if bool(high[0]) else self.transformer_2
            args = dict(hidden_states=hidden_states, timestep=timestep, encoder_hidden_states=encoder_hidden_states)
            return expert(**args, return_dict=return_dict, **kw)
        rows, outs = [], []
        for mask, expert in ((high, self.transformer), (~high, self.transformer_2)):
            r = mask.nonzero().flatten()
            rows.append(r)
            outs.append(
                expert(
                    hidden_states=hidden_states[r],
                    timestep=timestep[r],
                    encoder_hidden_states=encoder_hidden_states[r.to(encoder_hidden_states.device)],
                    return_dict=False,
                    **kw,
                )[0]
            )
        out = torch.cat(outs)[torch.argsort(torch.cat(rows)).to(hidden_states.device)]
        if return_dict:
            from diffusers.models.modeling_outputs import Transformer2DModelOutput

            return Transformer2DModelOutput(sample=out)
        return (out,)

    # the diffusers model methods the distillation and the run-time options call, applied to both experts
    def compile(self, *args, **kw) -> None:
        """torch.compile each expert (the routing between them stays eager)."""
        for expert in self.experts().values():
            expert.compile(*args, **kw)

    def enable_gradient_checkpointing(self) -> None:
        for expert in self.experts().values():
            expert.enable_gradient_checkpointing()

    def add_adapter(self, config, adapter_name: str = "default") -> None:
        """One LoRA per expert (same settings), each drawn in turn from the global RNG."""
        for expert in self.experts().values():
            expert.add_adapter(config, adapter_name=adapter_name)

    def disable_adapters(self) -> None:
        for expert in self.experts().values():
            expert.disable_adapters()

    def enable_adapters(self) -> None:
        for expert in self.experts().values():
            expert.enable_adapters()

    @property
    def peft_config(self) -> dict:
        return self.transformer.peft_config

    @property
    def _hf_peft_config_loaded(self) -> bool:
        return bool(getattr(self.transformer, "_hf_peft_config_loaded", False))

    def save_config(self, folder) -> None:
        """Each expert's config.json in folder/<expert>."""
        for name, expert in self.experts().items():
            expert.save_config(str(Path(folder) / name))


def split_state(state: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """A pair's state dict ('transformer.x', 'transformer_2.x') as one state dict per expert ('x')."""
    out: dict[str, dict[str, torch.Tensor]] = {name: {} for name in EXPERTS}
    for key, value in state.items():
        name, _, rest = key.partition(".")
        if name not in out:
            raise AccVideoError(f"{key} belongs to neither expert of a Wan 2.2 A14B student; distill it again")
        out[name][rest] = value
    return out


class WanMoEAdapter(WanAdapter):
    """Wan 2.2 A14B text-to-video: WanAdapter with `transformer` an ExpertPair; the teacher's second CFG scale."""

    family = "wan"
    components = ("transformer", "transformer_2", "vae", "text_encoder", "tokenizer", "scheduler")
    default_guidance_2: float | None = None  # None: the same as `default_guidance` (WanPipeline's call default)

    def __init__(self, pipe, **kw):
        super().__init__(pipe, **kw)
        ratio = pipe.config.boundary_ratio
        if ratio is None or getattr(pipe, "transformer_2", None) is None:
            raise AccVideoError(
                "a Wan 2.2 A14B folder needs both experts (transformer, transformer_2) and boundary_ratio in its "
                "model_index.json; re-save the whole pipeline"
            )
        steps = int(pipe.scheduler.config.get("num_train_timesteps", 1000))
        self.transformer = ExpertPair(pipe.transformer, pipe.transformer_2, ratio, steps)
        self.boundary_ratio = float(ratio)

    @classmethod
    def load(
        cls,
        path: Path,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        parts: LoadParts = WHOLE,
        **kw,
    ):
        """Load a local diffusers-format Wan 2.2 A14B directory, both experts whole (no sharded start-up), or both
        empty (`parts.empty_experts`) for a caller that fills them."""
        from diffusers import AutoencoderKLWan, WanPipeline, WanTransformer3DModel

        # FSDP2 shards the loaded pair (docs/scale-out.md); a full student's load fills both experts itself
        whole = LoadParts(
            text=parts.text, vae=parts.vae, empty_transformer=parts.empty_experts, empty_experts=parts.empty_experts
        )
        cls.check_vae_config(path)
        check_experts_alike(path)
        pipe = load_pipeline(WanPipeline, path, dtype, device, whole, WanTransformer3DModel)
        vae_config = None if pipe.vae is not None else empty_config(AutoencoderKLWan, path / "vae")
        return cls(pipe, vae_config=vae_config, device=device, **kw)

    @property
    def pair(self) -> ExpertPair:
        """The experts, unwrapped (a student's transformer may be a DDP wrapper of the pair)."""
        return getattr(self.transformer, "module", self.transformer)

    def features(self, x: torch.Tensor, sigma: torch.Tensor, cond: Conditioning, block: int) -> torch.Tensor:
        """Video-token hidden states (B, tokens, dim) after block `block` of the expert that owns each item's sigma."""
        index = self.check_block(block)
        pair = self.pair
        high = pair.high(self._timestep(x, sigma))
        parts, rows = [], []
        for mask, expert in ((high, pair.transformer), (~high, pair.transformer_2)):
            r = mask.nonzero().flatten()
            if len(r) == 0:
                continue
            s = sigma.expand(x.shape[0])[r.to(sigma.device)] if sigma.numel() > 1 else sigma
            c = select(cond, r.to(cond["prompt_embeds"].device))
            parts.append(stopped_at(expert.blocks[index], lambda r=r, s=s, c=c: self._forward(x[r], s, c)))
            rows.append(r)
        if len(parts) == 1:
            return parts[0]
        return torch.cat(parts)[torch.argsort(torch.cat(rows)).to(x.device)]

    def block(self, index: int) -> torch.nn.Module:
        """Block `index` of the high-noise expert (`features` hooks the block of the expert that owns sigma)."""
        return self.pair.transformer.blocks[self.check_block(index)]


def key_step_experts(adapter, key_sigmas) -> dict | None:
    """Which expert trains each key step of a two-expert student (None for one transformer).

    The student runs at t'_m .. t'_1 (`key_sigmas[:-1]`, noisiest first; never at t'_0 = 0), each by the expert
    that owns it under WanPipeline's rule (a key step on the boundary: the high-noise expert). An expert that owns
    none is never trained and stays the teacher's (`untrained`).
    """
    pair = getattr(adapter, "pair", None)
    if not isinstance(pair, ExpertPair):
        return None
    sigmas = [float(s) for s in key_sigmas[:-1]]
    owners = [pair.expert_of(s) for s in sigmas]
    return {
        "boundary_ratio": pair.boundary_ratio,
        "key_sigmas": sigmas,
        "key_experts": owners,
        "untrained": [name for name in EXPERTS if name not in owners],
    }


def experts_line(experts: dict) -> str:
    """One line: which key steps each expert trains, and any expert that stays the teacher's."""
    parts = []
    for name in EXPERTS:
        mine = [f"{s:.4g}" for s, e in zip(experts["key_sigmas"], experts["key_experts"], strict=True) if e == name]
        parts.append(f"{name} trains key sigmas [{', '.join(mine)}]" if mine else f"{name} has no key step")
    line = f"experts (boundary_ratio {experts['boundary_ratio']:g}): " + "; ".join(parts)
    for name in experts["untrained"]:
        line += f"; {name} is not trained and stays the teacher's"
    return line
