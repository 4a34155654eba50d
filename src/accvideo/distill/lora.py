"""LoRA students through peft (diffusers' adapter API): the teacher is the same module with the adapter off."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from accvideo.errors import AccVideoError


def lora_config(rank: int, alpha: float | None, targets: Sequence[str]):
    """The peft LoraConfig of a student (B initialised to zero, so the student starts as the teacher)."""
    from peft import LoraConfig

    return LoraConfig(
        r=rank, lora_alpha=float(alpha or rank), target_modules=list(targets), lora_dropout=0.0, init_lora_weights=True
    )


def targets_for(adapter, targets: Sequence[str] | None) -> list[str]:
    """The configured target modules, or the adapter's `lora_targets` (models/base.py: the attention projections)."""
    if targets:
        return list(targets)
    default = getattr(adapter, "lora_targets", None)
    if not default:
        raise AccVideoError(f"no default LoRA targets for the {adapter.family} family; pass lora_targets=[...]")
    return list(default)


# the layers peft can wrap in a LoRA (the ones a video transformer has)
WRAPPABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Embedding, nn.MultiheadAttention)


def targeted(transformer: nn.Module, targets: Sequence[str]) -> list[tuple[str, nn.Module]]:
    """The modules `targets` names, as peft matches them: the whole name, or its last dotted parts."""
    return [(n, m) for n, m in transformer.named_modules() if any(n == t or n.endswith(f".{t}") for t in targets)]


def check_lora_targets(transformer: nn.Module, targets: Sequence[str]) -> None:
    """Refuse `lora_targets` that name no layer of `transformer`, or a module a LoRA cannot wrap (a block, a list
    of blocks), in one line. Works on a transformer built on the meta device (the check before loading)."""
    fix = "name layers by the end of their names (the default: to_q, to_k, to_v, to_out.0)"
    found = targeted(transformer, targets)
    if not found:
        raise AccVideoError(f"lora_targets {list(targets)} match no module of the teacher's transformer; {fix}")
    name, module = next(((n, m) for n, m in found if not isinstance(m, WRAPPABLE)), (None, None))
    if module is not None:
        raise AccVideoError(
            f"lora_targets match {name}, a {type(module).__name__}, which a LoRA cannot wrap (Linear, Conv or "
            f"Embedding layers only); {fix}"
        )


def targeted_rank(transformer: nn.Module, targets: Sequence[str]) -> int | None:
    """The largest rank (min of in and out features) among the Linear layers `targets` names; None if none match.
    Works on a transformer built on the meta device."""
    ranks = [min(m.in_features, m.out_features) for _, m in targeted(transformer, targets) if isinstance(m, nn.Linear)]
    return max(ranks) if ranks else None


def check_lora(transformer: nn.Module, rank: int, targets: Sequence[str]) -> None:
    """What can be checked of a LoRA student before it is made: its targets, and its rank against theirs."""
    check_lora_targets(transformer, targets)
    check_lora_rank(rank, targeted_rank(transformer, targets))


def check_lora_rank(rank: int, most: int | None) -> None:
    """Refuse a rank no targeted layer could use (2^63 overflowed torch's sizes: a traceback)."""
    if most is not None and rank > most:
        raise AccVideoError(
            f"lora_rank {rank} exceeds the rank of every targeted layer (at most {most}); use a lora_rank of "
            f"at most {most}, or lora_rank=0 for a full student"
        )


def add_lora(transformer: nn.Module, rank: int, alpha: float | None, targets: Sequence[str]) -> list[nn.Parameter]:
    """Wrap `targets` of `transformer` in LoRA layers (float32) in place; returns the trainable LoRA parameters."""
    check_lora(transformer, rank, targets)
    try:
        transformer.add_adapter(lora_config(rank, alpha, targets))
    except ValueError as exc:  # peft: no module matched the target names
        raise AccVideoError(
            f"cannot add a LoRA to the transformer ({str(exc).splitlines()[0]}); check lora_targets"
        ) from None
    params = [p for n, p in transformer.named_parameters() if "lora_" in n]
    for p in params:
        p.data = p.data.float()  # small, so the adapter trains in float32 whatever the base dtype
        p.requires_grad_(True)
    return params


@contextmanager
def adapter_off(transformer: nn.Module) -> Iterator[None]:
    """Run the base weights alone (the teacher) inside the block; the adapter is back on after it.

    peft clears requires_grad of the LoRA weights while disabled and sets it again on enable, so a backward
    through the student's graph must run after the block (see docs/distill.md: the two-phase backward).
    """
    transformer.disable_adapters()
    try:
        yield
    finally:
        transformer.enable_adapters()


def lora_state_dict(transformer: nn.Module) -> dict[str, torch.Tensor]:
    """The LoRA weights only, with peft's portable names (no adapter name), as diffusers saves them."""
    from peft.utils import get_peft_model_state_dict

    return {k: v.detach().clone() for k, v in get_peft_model_state_dict(transformer).items()}


def portable_lora_names(state: dict[str, torch.Tensor], adapter: str = "default") -> dict[str, torch.Tensor]:
    """The LoRA entries of a module state dict, renamed as `lora_state_dict` names them (adapter name dropped)."""
    return {k.replace(f".{adapter}.", "."): v for k, v in state.items() if "lora_" in k}


def initial_lora(transformer: nn.Module, seed: int) -> Iterator[tuple[str, torch.Tensor]]:
    """(parameter name, value) of the LoRA weights that `add_lora` draws under `torch.manual_seed(seed)`, computed
    without the base weights (for a transformer built on the meta device, where peft's draws are lost).

    peft makes, layer by layer in module order, A = nn.Linear(in, r) and B = nn.Linear(r, out) (each drawn
    kaiming-uniform, a = sqrt(5)), then redraws A the same way and zeroes B; these are the same draws, in order.
    tests/test_sharded_start.py checks the result against peft's on a real module.
    """
    import math

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name, module in transformer.named_modules():
            a_layers, b_layers = getattr(module, "lora_A", None), getattr(module, "lora_B", None)
            if not isinstance(a_layers, nn.ModuleDict) or "default" not in a_layers:
                continue
            a_shape, b_shape = a_layers["default"].weight.shape, b_layers["default"].weight.shape
            a = nn.init.kaiming_uniform_(torch.empty(a_shape), a=math.sqrt(5))
            nn.init.kaiming_uniform_(torch.empty(b_shape), a=math.sqrt(5))
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))
            yield f"{name}.lora_A.default.weight", a
            yield f"{name}.lora_B.default.weight", torch.zeros(b_shape)
