"""The parallelize seam (docs/scale-out.md; torchtitan's parallelize_fn): data parallelism applied from outside.

Model, loss and sampler code never sees it. A `Parallel` records how the student's transformer was wrapped:
  none  one process: nothing wrapped (activation checkpointing and bf16 autocast on GPU still apply);
  ddp   DistributedDataParallel: a full replica per process, gradients averaged by all-reduce during backward;
  fsdp  FSDP2 (`fully_shard` per transformer block, then the root): weights, gradients and AdamW states sharded,
        bf16 compute with float32 reduction on GPU (MixedPrecisionPolicy).
It also holds the (sharded) state-dict and torch.distributed.checkpoint calls the training checkpoints use.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as tdist
from torch import nn

from accvideo.core import dist
from accvideo.errors import AccVideoError

MODES = ("auto", "none", "ddp", "fsdp")
PRECISIONS = ("auto", "bf16", "off")
# parallel=auto picks FSDP2 on GPU for students with at least this many parameters (Wan2.1-1.3B and up):
# their float32 weights, gradients and AdamW states (16 bytes a parameter) no longer fit next to activations
FSDP_MIN_PARAMS = 1_000_000_000


def choose_mode(mode: str, device: torch.device, num_params: int, world: int) -> str:
    """The data-parallel mode of this run: 'none' in one process; 'auto': fsdp on GPU for large students, else ddp."""
    if mode not in MODES:
        raise AccVideoError(f"parallel must be one of {', '.join(MODES)}; got {mode!r}")
    if world == 1:
        return "none"  # nothing to average; the same code path as a plain run
    if mode == "none":
        raise AccVideoError(f"parallel=none cannot train on {world} processes; use parallel=auto, ddp or fsdp")
    if mode == "auto":
        return "fsdp" if device.type == "cuda" and num_params >= FSDP_MIN_PARAMS else "ddp"
    return mode


def use_bf16(precision: str, device: torch.device) -> bool:
    """bf16 mixed precision: 'auto' -> on for CUDA, off elsewhere (CPU runs stay float32 and reproducible)."""
    if precision not in PRECISIONS:
        raise AccVideoError(f"mixed_precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    return device.type == "cuda" if precision == "auto" else precision == "bf16"


def transformer_blocks(module: nn.Module) -> list[nn.Module]:
    """The repeated blocks FSDP2 shards one by one: children of every ModuleList named '*blocks' (Wan, HunyuanVideo)."""
    blocks = [
        b
        for name, child in module.named_modules()
        if isinstance(child, nn.ModuleList) and name.rsplit(".", 1)[-1].endswith("blocks")
        for b in child
    ]
    if not blocks:
        raise AccVideoError(f"{type(module).__name__} has no '*blocks' ModuleList to shard; use parallel=ddp")
    return blocks


@dataclass
class Parallel:
    """How the student runs: `forward_module` is what the student's adapter calls; `module` the unwrapped weights."""

    mode: str
    module: nn.Module  # the student's transformer (FSDP2 shards it in place; DDP wraps it)
    forward_module: nn.Module
    bf16: bool = False
    device: torch.device = torch.device("cpu")

    def sync(self, last: bool) -> AbstractContextManager:
        """Gradient accumulation: average across processes only on the `last` micro-batch of an update."""
        if self.mode == "ddp" and not last:
            return self.forward_module.no_sync()
        if self.mode == "fsdp":
            self.module.set_requires_gradient_sync(last)
        return nullcontext()

    def autocast(self) -> AbstractContextManager:
        """bf16 autocast around student forwards (none/ddp on GPU; FSDP2 casts through its policy instead)."""
        if self.bf16 and self.mode != "fsdp":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()


def _shard(module: nn.Module, bf16: bool, trainable: bool) -> None:
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    # torch warns, once a rank, that a sharded module returned a view (diffusers' transformers end in a reshape):
    # only an in-place op on that output would lose the all-gather, and none is made on it here (a sharded run
    # equals one process to 1e-7, tests/test_scaleout.py); a warning the user can do nothing about
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view tensor", category=UserWarning)

    policy = MixedPrecisionPolicy(
        param_dtype=torch.bfloat16 if bf16 and trainable else None, reduce_dtype=torch.float32
    )
    for block in transformer_blocks(module):
        fully_shard(block, mp_policy=policy)
    fully_shard(module, mp_policy=policy)


def parallelize(
    student: nn.Module,
    mode: str,
    device: torch.device,
    *,
    teacher: nn.Module | None = None,
    grad_checkpointing: bool = False,
    bf16: bool = False,
) -> Parallel:
    """Apply activation checkpointing, then DDP or FSDP2 to `student` (and FSDP2 to a separate frozen `teacher`).

    A LoRA student is the teacher's own module (pass teacher=None): DDP then averages only the adapter's
    gradients (the base is frozen), FSDP2 shards base and adapter together, block by block.
    """
    if grad_checkpointing:
        for tr in (student, teacher):
            if tr is not None:
                tr.enable_gradient_checkpointing()
    if mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        # a routed student (Wan 2.2 A14B's expert pair) runs one expert a call: the other's weights get no gradient
        unused = bool(getattr(student, "routed", False))
        wrapped = DistributedDataParallel(
            student, device_ids=ids, broadcast_buffers=False, find_unused_parameters=unused
        )
        return Parallel("ddp", student, wrapped, bf16, device)
    if mode == "fsdp":
        if teacher is not None:
            _shard(teacher, bf16, trainable=False)
        _shard(student, bf16, trainable=True)
    return Parallel(mode, student, student, bf16, device)


def average_gradients(params: Iterable[nn.Parameter]) -> None:
    """Average the gradients of replicated parameters (the heads) over the processes, in place."""
    if not dist.is_distributed():
        return
    grads = [p.grad for p in params if p.grad is not None]
    if grads:
        flat = torch.cat([g.reshape(-1) for g in grads])
        tdist.all_reduce(flat)
        flat /= dist.world_size()
        for g, part in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
            g.copy_(part.view_as(g))


# --- state dicts and torch.distributed.checkpoint (DCP) ----------------------------------------------------------
def _options(**kw):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(ignore_frozen_params=True, **kw)


def module_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """Trainable weights (and buffers) by name: local shards (DTensors) under FSDP2, whole tensors otherwise."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(module, options=_options())


def full_module_state(module: nn.Module) -> dict[str, torch.Tensor] | None:
    """Whole trainable weights on the CPU, gathered on rank 0 (None elsewhere); a collective under FSDP2."""
    if not dist.is_distributed():
        return {k: v.detach().cpu() for k, v in module_state(module).items()}
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    state = get_model_state_dict(module, options=_options(full_state_dict=True, cpu_offload=True))
    if not dist.is_main():
        return None
    for k, v in state.items():  # gathered tensors can be views of one buffer: safetensors wants their own storage
        state[k] = v.clone()
    return state


def load_module_state(module: nn.Module, state: dict, full: bool) -> None:
    """Load `module_state` output (or whole tensors with `full`, e.g. a one-process checkpoint into FSDP2 shards)."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict

    if full and dist.is_distributed():  # lay whole tensors out as this run's (sharded) ones
        local = module_state(module)
        state = {k: like(v, local[k]) if k in local else v for k, v in state.items()}
    result = set_model_state_dict(module, state, options=_options(strict=False))
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    missing = [k for k in result.missing_keys if k in trainable]
    if missing or result.unexpected_keys:
        raise AccVideoError(
            f"the checkpoint's student does not fit this run (e.g. {(missing or result.unexpected_keys)[0]})"
            "; use another --out"
        )


def optimizer_state(module: nn.Module, opt: torch.optim.Optimizer) -> dict:
    """AdamW state keyed by parameter name (not position), so it reshards across process counts."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(module, opt, options=_options())


def load_optimizer_state(module: nn.Module, opt: torch.optim.Optimizer, state: dict, full: bool) -> None:
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    full = full and dist.is_distributed()
    set_optimizer_state_dict(module, opt, state, options=_options(full_state_dict=full))


def like(full: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """A whole tensor laid out as `ref` (this rank's shard when `ref` is an FSDP2 DTensor)."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    if isinstance(ref, DTensor):
        return distribute_tensor(full.to(ref.device, ref.dtype), ref.device_mesh, ref.placements)
    return full.to(ref.device, ref.dtype)


def dcp_save(state: dict, folder: Path) -> None:
    """Every rank writes its shards of `state` into `folder` (replicated tensors once); a collective."""
    import torch.distributed.checkpoint as dcp

    dcp.save(state, checkpoint_id=str(folder), no_dist=not dist.is_distributed())


def dcp_load(state: dict, folder: Path) -> None:
    """Fill `state` (the layout of this run, any process count) in place from `folder`; a collective."""
    import warnings

    import torch.distributed.checkpoint as dcp

    with warnings.catch_warnings():  # one process reading shards is intended here, not a mistake to warn about
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.load(state, checkpoint_id=str(folder), no_dist=not dist.is_distributed())


# --- sharded start-up: a module built on the meta device, filled from safetensors files ---------------------------
def _rows(param: torch.Tensor) -> tuple[torch.Tensor, slice | None]:
    """(the tensor this rank fills, the rows of the whole tensor it holds: None for all of them).

    FSDP2 shards dim 0 as torch.chunk does: ceil(n / world) rows per rank, the last ranks holding fewer or none.
    """
    from torch.distributed.tensor import DTensor, Shard

    if not isinstance(param, DTensor):
        return param, None
    if any(not isinstance(p, Shard) or p.dim != 0 for p in param.placements) or param.device_mesh.ndim != 1:
        raise AccVideoError(f"cannot fill a tensor laid out as {param.placements}; use parallel=ddp")
    local = param.to_local()
    n, world = param.shape[0], param.device_mesh.size()
    start = min(dist.rank() * -(-n // world), n)
    return local, slice(start, start + local.shape[0])


def copy_whole(param: torch.Tensor, value: torch.Tensor) -> None:
    """Set a (sharded or whole) parameter from its whole value: this rank copies its own rows."""
    target, rows = _rows(param)
    with torch.no_grad():
        target.copy_((value if rows is None else value[rows]).to(target.dtype))


def load_weights(module: nn.Module, files: list[Path], device: torch.device, rename=None, check=None) -> list[str]:
    """Fill `module`, built on the meta device (`models.base.empty_module`) and sharded by FSDP2 or not, from
    safetensors `files`: each rank reads only its own rows of each tensor, one tensor at a time, so start-up memory
    is its shard plus one tensor's slice. Buffers keep the values they were built with. `rename(param name)` gives
    a parameter's name in the files (None: not stored there, e.g. a LoRA weight, left for the caller to fill);
    `check(file, name, part)` sees each part read, as stored, before it is cast and copied (and may refuse it).
    Returns the names of the parameters left unfilled."""
    from safetensors import safe_open

    buffers = {n: b.detach().clone() for n, b in module.named_buffers()}
    module.to_empty(device=device)
    where: dict[str, Path] = {}
    for f in files:
        with safe_open(str(f), framework="pt") as h:
            where.update(dict.fromkeys(h.keys(), f))
    left: list[str] = []
    with torch.no_grad():
        for name, b in module.named_buffers():
            b.copy_(buffers[name])
        opened: dict[Path, object] = {}
        for name, param in module.named_parameters():
            key = rename(name) if rename else name
            if key is None:
                left.append(name)
                continue
            if key not in where:
                raise AccVideoError(f"{files[0].parent} lacks the weight {key}; re-save or re-download the model")
            f = where[key]
            if f not in opened:
                opened[f] = safe_open(str(f), framework="pt")
            target, rows = _rows(param)
            stored = opened[f].get_slice(key)
            if list(stored.get_shape()) != list(param.shape):
                raise AccVideoError(f"{f}: {key} has shape {stored.get_shape()}, the model {list(param.shape)}")
            if not param.shape:
                part = opened[f].get_tensor(key)
            else:
                part = stored[rows] if rows is not None else stored[:]
            if check is not None:
                check(f, key, part)
            target.copy_(part.to(target.dtype))
    return left
