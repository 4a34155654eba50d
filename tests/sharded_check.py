"""Run by tests/test_sharded_start.py under torchrun (2 gloo processes): a student/teacher pair built on the meta
device, sharded by FSDP2 and filled by each rank from the teacher's safetensors equals the pair loaded whole in one
process, parameter by parameter and buffer by buffer, for a full and a LoRA student. Rank 0 writes OUT/result.json.

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/sharded_check.py TEACHER OUT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

from accvideo.core import dist
from accvideo.distill.config import quick_config
from accvideo.distill.models import make_student, parallelize_student
from accvideo.models import load_adapter
from accvideo.models.base import LoadParts

CPU = torch.device("cpu")


def whole(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every weight and buffer of a (sharded) module, whole (a collective)."""
    state = get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k: v.clone() for k, v in state.items()}


def pair_states(teacher: Path, lora: int, sharded: bool) -> dict[str, dict[str, torch.Tensor]]:
    parts = LoadParts(text=False, vae=False, empty_transformer=sharded)
    adapter = load_adapter(teacher, device=CPU, parts=parts)
    pair = make_student(adapter, lora_rank=lora, seed=3)
    if sharded:
        cfg = quick_config(teacher=str(teacher), parallel="fsdp", lora_rank=lora, seed=3)
        mode = parallelize_student(pair, cfg, CPU, dist.world_size(), teacher).mode
        assert mode == "fsdp", mode
    states = {"student": whole(pair.module) if sharded else dict(pair.module.state_dict())}
    if not lora:
        tr = pair.teacher.transformer
        states["teacher"] = whole(tr) if sharded else dict(tr.state_dict())
    return states


def main(teacher: Path, out: Path) -> None:
    with dist.distributed(CPU):
        result = {}
        for lora in (0, 4):
            sharded = pair_states(teacher, lora, sharded=True)
            if dist.is_main():
                reference = pair_states(teacher, lora, sharded=False)
                for part, ref in reference.items():
                    got = sharded[part]
                    result[f"lora{lora}/{part}"] = {
                        "keys_equal": sorted(got) == sorted(ref),
                        "tensors": len(ref),
                        "unequal": [k for k in ref if k not in got or not torch.equal(got[k], ref[k])],
                        "meta_left": [k for k, v in got.items() if v.is_meta],
                    }
        if dist.is_main():
            out.mkdir(parents=True, exist_ok=True)
            (out / "result.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
