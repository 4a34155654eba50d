"""`accvideo export --format single-file`: a Wan student's transformer as one safetensors file in the layout of
Wan-AI's own checkpoints (the layout of the single Wan files that ComfyUI's diffusion-model loader and diffusers'
`from_single_file` read), rather than diffusers' module names; a HunyuanVideo student's in Tencent's layout
(export/single_file_hunyuan.py). `write_single_file` picks the layout by the transformer's class (LAYOUTS).

The names are renamed module by module (`original_name`); every name this layout has no place for is refused
before anything is written. Before writing, the export checks its renaming against diffusers' own reader of this
layout (`convert_wan_transformer_to_diffusers`): each renamed key must map back to the student's own, or the export
stops with one line, so a diffusers change that breaks the round trip can never write a file that loads wrong.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from accvideo.core.tensorfile import write_safetensors
from accvideo.errors import AccVideoError
from accvideo.export.single_file_hunyuan import original_state as hunyuan_state

# diffusers' module path (a prefix of the parameter name) -> the Wan repository's
_TOP = {
    "patch_embedding": "patch_embedding",
    "condition_embedder.time_embedder.linear_1": "time_embedding.0",
    "condition_embedder.time_embedder.linear_2": "time_embedding.2",
    "condition_embedder.time_proj": "time_projection.1",
    "condition_embedder.text_embedder.linear_1": "text_embedding.0",
    "condition_embedder.text_embedder.linear_2": "text_embedding.2",
    "condition_embedder.image_embedder.norm1": "img_emb.proj.0",  # image-to-video: the CLIP embedding's MLP
    "condition_embedder.image_embedder.ff.net.0.proj": "img_emb.proj.1",
    "condition_embedder.image_embedder.ff.net.2": "img_emb.proj.3",
    "condition_embedder.image_embedder.norm2": "img_emb.proj.4",
    "proj_out": "head.head",
    "scale_shift_table": "head.modulation",
}
_ATTENTION = {"attn1": "self_attn", "attn2": "cross_attn"}
_PROJECTIONS = {
    "to_q": "q",
    "to_k": "k",
    "to_v": "v",
    "to_out.0": "o",
    "add_k_proj": "k_img",
    "add_v_proj": "v_img",
    "norm_q": "norm_q",
    "norm_k": "norm_k",
    "norm_added_k": "norm_k_img",
}
_BLOCK = {
    "norm2": "norm3",  # the cross-attention's norm: diffusers' norm2 is the repository's norm3 (and the reverse)
    "norm3": "norm2",
    "ffn.net.0.proj": "ffn.0",
    "ffn.net.2": "ffn.2",
    "scale_shift_table": "modulation",
}
_BLOCK_KEY = re.compile(r"blocks\.(\d+)\.(.+)")
SUFFIXES = ("weight", "bias")


def _module(path: str, table: dict[str, str]) -> str | None:
    """`path` (a parameter name, or a module path plus .weight/.bias) renamed through `table`, else None."""
    if path in table:  # a parameter that is itself a table entry (scale_shift_table)
        return table[path]
    module, _, leaf = path.rpartition(".")
    if leaf in SUFFIXES and module in table:
        return f"{table[module]}.{leaf}"
    return None


def original_name(key: str) -> str | None:
    """The Wan repository's name of diffusers' parameter `key`, or None when that layout has none."""
    found = _BLOCK_KEY.fullmatch(key)
    if found is None:
        return _module(key, _TOP)
    index, rest = found.groups()
    attn, _, inner = rest.partition(".")
    if attn in _ATTENTION:
        renamed = _module(inner, _PROJECTIONS)
        return None if renamed is None else f"blocks.{index}.{_ATTENTION[attn]}.{renamed}"
    renamed = _module(rest, _BLOCK)
    return None if renamed is None else f"blocks.{index}.{renamed}"


def original_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`state` under the Wan repository's names; one line naming a parameter it has no name for, and one line if
    diffusers' own reader of that layout would not map the names back to these."""
    renamed, unknown = {}, []
    for key, tensor in state.items():
        name = original_name(key)
        if name is None:
            unknown.append(key)
        else:
            renamed[name] = tensor
    if unknown:
        raise AccVideoError(
            f"the student's transformer has {len(unknown)} weight(s) the Wan single-file layout has no name for "
            f"(e.g. {unknown[0]}); export it with --format diffusers"
        )
    _check_round_trip(renamed, state)
    return renamed


def _check_round_trip(renamed: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> None:
    try:
        from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers
    except ImportError:  # a diffusers without this reader: the renaming stands as tested (tests/test_export.py)
        return

    names = {name: key for name, key in zip(renamed, state, strict=True)}  # original name -> diffusers key
    back = convert_wan_transformer_to_diffusers({name: torch.empty(0) for name in names})
    mapped = {new: old for new, old in zip(back, names, strict=True)}  # it renames in order, one key for one
    wrong = [old for new, old in mapped.items() if new != names[old]]
    if set(back) != set(state) or wrong:
        raise AccVideoError(
            "diffusers' reader of the Wan single-file layout maps this export's names to other weights "
            f"(e.g. {wrong[0] if wrong else sorted(set(back) ^ set(state))[0]}); export with --format diffusers"
        )


# the transformer class -> (whose checkpoints' layout the file takes, the family's name, the renaming into it)
LAYOUTS = {
    "WanTransformer3DModel": ("Wan-AI's own checkpoints", "Wan", original_state),
    "HunyuanVideoTransformer3DModel": ("Tencent's own HunyuanVideo checkpoints", "HunyuanVideo", hunyuan_state),
}


def write_single_file(state: dict[str, torch.Tensor], path: Path, metadata: dict[str, str], cls: str) -> None:
    """`state` of a transformer of class `cls` (a LAYOUTS key) in its repository's layout, as one safetensors file
    (contiguous tensors, names sorted, `metadata` in its header)."""
    renamed = LAYOUTS[cls][2](state)
    write_safetensors({k: v.contiguous() for k, v in renamed.items()}, {"format": "pt", **metadata}, path)


def original_lora_state(lora: dict[str, torch.Tensor], scale: float) -> dict[str, torch.Tensor]:
    """A LoRA file of diffusers' (`transformer.<module>.lora_A.weight`, ...) in the Wan repository's layout, as
    community Wan LoRAs are written: `diffusion_model.<module>.lora_A.weight` / `lora_B.weight`, with the adapter's
    scale (alpha / rank) multiplied into lora_B, so a loader that finds no alpha (and so scales by 1) applies it
    exactly. One line naming a module the layout has no name for."""
    out, unknown = {}, []
    for key, tensor in lora.items():
        module, _, part = key.removeprefix("transformer.").rpartition(".lora_")
        name = original_name(f"{module}.weight")
        if name is None or part not in ("A.weight", "B.weight"):
            unknown.append(key)
            continue
        out[f"diffusion_model.{name.removesuffix('.weight')}.lora_{part}"] = (
            tensor * scale if part == "B.weight" else tensor
        )
    if unknown:
        raise AccVideoError(
            f"the student's LoRA has {len(unknown)} weight(s) the Wan single-file layout has no name for "
            f"(e.g. {unknown[0]}); export it with --format lora"
        )
    return out
