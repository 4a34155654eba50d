"""`accvideo export --format single-file` for HunyuanVideo: the student's transformer as one safetensors file in the
layout of Tencent's own HunyuanVideo checkpoints (`double_blocks.0.img_attn_qkv.weight`, `single_blocks.0.linear1
.weight`, `final_layer.adaLN_modulation.1.weight`, ...), the layout of the single HunyuanVideo files that ComfyUI's
diffusion-model loader and diffusers' `HunyuanVideoTransformer3DModel.from_single_file` read.

Three things differ from a renaming:
- the query, key and value projections are one matrix (`img_attn_qkv`, `txt_attn_qkv`, the token refiner's
  `self_attn_qkv`): diffusers' to_q, to_k and to_v stacked along the output rows, in that order;
- a single block's q, k, v and MLP input are one matrix, `linear1`: rows q, k, v, then proj_mlp;
- the final modulation (`final_layer.adaLN_modulation.1`) holds its halves as shift, scale; diffusers' norm_out
  holds scale, shift.

Before writing, the export reads its own file back with diffusers' reader of this layout
(`convert_hunyuan_video_transformer_to_diffusers`) and requires every tensor equal to the student's, or stops with one
line. That reader splits `linear1` at HunyuanVideo's published width (3072); a student of another width (the tiny
test models) is written by the same rules, which tests/test_hunyuan.py checks against that reader at width 3072.
"""

from __future__ import annotations

import re

import torch

from accvideo.errors import AccVideoError

READER_WIDTH = 3072  # the hidden size diffusers' reader assumes when it splits a single block's linear1

# diffusers' module path -> the repository's: a name, or (fused name, part, parts) for rows stacked into one matrix
_TOP = {
    "x_embedder.proj": "img_in.proj",
    "context_embedder.time_text_embed.timestep_embedder.linear_1": "txt_in.t_embedder.mlp.0",
    "context_embedder.time_text_embed.timestep_embedder.linear_2": "txt_in.t_embedder.mlp.2",
    "context_embedder.time_text_embed.text_embedder.linear_1": "txt_in.c_embedder.linear_1",
    "context_embedder.time_text_embed.text_embedder.linear_2": "txt_in.c_embedder.linear_2",
    "context_embedder.proj_in": "txt_in.input_embedder",
    "time_text_embed.timestep_embedder.linear_1": "time_in.mlp.0",
    "time_text_embed.timestep_embedder.linear_2": "time_in.mlp.2",
    "time_text_embed.text_embedder.linear_1": "vector_in.in_layer",
    "time_text_embed.text_embedder.linear_2": "vector_in.out_layer",
    "time_text_embed.guidance_embedder.linear_1": "guidance_in.mlp.0",
    "time_text_embed.guidance_embedder.linear_2": "guidance_in.mlp.2",
    "proj_out": "final_layer.linear",
    "norm_out.linear": "final_layer.adaLN_modulation.1",  # its halves swapped (SWAPPED)
}
SWAPPED = "final_layer.adaLN_modulation.1"
_REFINER = {
    "norm1": "norm1",
    "norm2": "norm2",
    "attn.to_q": ("self_attn_qkv", 0, 3),
    "attn.to_k": ("self_attn_qkv", 1, 3),
    "attn.to_v": ("self_attn_qkv", 2, 3),
    "attn.to_out.0": "self_attn_proj",
    "ff.net.0.proj": "mlp.fc1",
    "ff.net.2": "mlp.fc2",
    "norm_out.linear": "adaLN_modulation.1",
}
_DOUBLE = {
    "norm1.linear": "img_mod.linear",
    "norm1_context.linear": "txt_mod.linear",
    "attn.norm_q": "img_attn_q_norm",
    "attn.norm_k": "img_attn_k_norm",
    "attn.to_q": ("img_attn_qkv", 0, 3),
    "attn.to_k": ("img_attn_qkv", 1, 3),
    "attn.to_v": ("img_attn_qkv", 2, 3),
    "attn.to_out.0": "img_attn_proj",
    "attn.norm_added_q": "txt_attn_q_norm",
    "attn.norm_added_k": "txt_attn_k_norm",
    "attn.add_q_proj": ("txt_attn_qkv", 0, 3),
    "attn.add_k_proj": ("txt_attn_qkv", 1, 3),
    "attn.add_v_proj": ("txt_attn_qkv", 2, 3),
    "attn.to_add_out": "txt_attn_proj",
    "ff.net.0.proj": "img_mlp.fc1",
    "ff.net.2": "img_mlp.fc2",
    "ff_context.net.0.proj": "txt_mlp.fc1",
    "ff_context.net.2": "txt_mlp.fc2",
}
_SINGLE = {
    "attn.norm_q": "q_norm",
    "attn.norm_k": "k_norm",
    "attn.to_q": ("linear1", 0, 4),
    "attn.to_k": ("linear1", 1, 4),
    "attn.to_v": ("linear1", 2, 4),
    "proj_mlp": ("linear1", 3, 4),
    "proj_out": "linear2",
    "norm.linear": "modulation.linear",
}
# diffusers' block prefix -> (the repository's, that block kind's table)
_REFINER_BLOCKS = "txt_in.individual_token_refiner.blocks"
_BLOCKS = (
    (re.compile(r"context_embedder\.token_refiner\.refiner_blocks\.(\d+)\.(.+)"), _REFINER_BLOCKS, _REFINER),
    (re.compile(r"transformer_blocks\.(\d+)\.(.+)"), "double_blocks", _DOUBLE),
    (re.compile(r"single_transformer_blocks\.(\d+)\.(.+)"), "single_blocks", _SINGLE),
)  # fmt: skip
SUFFIXES = ("weight", "bias")


def place(key: str) -> tuple[str, int, int] | None:
    """Where diffusers' parameter `key` goes in the repository's layout: (name, part, parts), the part-th of `parts`
    row blocks of tensor `name` (0, 1 for a tensor of its own); None when the layout has no place for it."""
    module, _, leaf = key.rpartition(".")
    if leaf not in SUFFIXES:
        return None
    target, prefix = _TOP.get(module), ""
    if target is None:
        for pattern, block, table in _BLOCKS:
            found = pattern.fullmatch(module)
            if found is not None:
                target, prefix = table.get(found.group(2)), f"{block}.{found.group(1)}."
                break
    if target is None:
        return None
    name, part, parts = (target, 0, 1) if isinstance(target, str) else target
    return f"{prefix}{name}.{leaf}", part, parts


def original_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`state` (diffusers' HunyuanVideoTransformer3DModel) in the repository's layout; one line naming a weight the
    layout has no place for, or a fused matrix missing a part, and one line if diffusers' reader of the layout would
    not read the result back as `state`."""
    groups: dict[str, dict[int, torch.Tensor]] = {}
    sizes: dict[str, int] = {}
    unknown = []
    for key, tensor in state.items():
        where = place(key)
        if where is None:
            unknown.append(key)
            continue
        name, part, parts = where
        groups.setdefault(name, {})[part] = tensor
        sizes[name] = parts
    if unknown:
        raise AccVideoError(
            f"the student's transformer has {len(unknown)} weight(s) the HunyuanVideo single-file layout has no place "
            f"for (e.g. {unknown[0]}); export it with --format diffusers"
        )
    out = {}
    for name, parts in groups.items():
        if len(parts) != sizes[name]:
            raise AccVideoError(
                f"the student's transformer lacks part of {name} of the HunyuanVideo single-file layout; export it "
                "with --format diffusers"
            )
        tensor = parts[0] if len(parts) == 1 else torch.cat([parts[i] for i in range(len(parts))])
        if name.startswith(SWAPPED):
            scale, shift = tensor.chunk(2)
            tensor = torch.cat([shift, scale])
        out[name] = tensor
    _check_round_trip(out, state)
    return out


def _check_round_trip(renamed: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> None:
    """diffusers' reader of the layout must give back `state`, tensor for tensor (where it reads this width)."""
    try:
        from diffusers.loaders.single_file_utils import convert_hunyuan_video_transformer_to_diffusers
    except ImportError:  # a diffusers without this reader: the layout stands as tested (tests/test_hunyuan.py)
        return
    width = state["x_embedder.proj.weight"].shape[0] if "x_embedder.proj.weight" in state else None
    if width != READER_WIDTH:
        return  # the reader would split linear1 at the published width: these rules are checked at it in tests
    back = convert_hunyuan_video_transformer_to_diffusers(dict(renamed))  # it pops and adds keys: a copy
    wrong = sorted(set(back) ^ set(state)) or [k for k in state if not torch.equal(back[k], state[k])]
    if wrong:
        raise AccVideoError(
            "diffusers' reader of the HunyuanVideo single-file layout reads this export back as other weights "
            f"(e.g. {wrong[0]}); export with --format diffusers"
        )
