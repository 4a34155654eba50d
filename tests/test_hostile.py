"""Hostile input (issue 16): every case ends in exactly one line on stderr, exit code 2, no traceback, and the bytes
of every file that existed before are unchanged (none modified, none removed).

One case per class of the guards: the output guard (core/outputs.py), the input guard (core/inputs.py, the model's
size limits, finite settings), faults (full disk, CPU out of memory) and resume verification (a flipped bit).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_helpers import hand_made_run, run_forked

from accvideo.cli import main
from accvideo.core.files import is_stale_temp, temp_name
from accvideo.core.outputs import mark_folder

# the conftest `synvid` settings: a rerun on a copy of it resumes (and so verifies every shard it keeps)
SYNVID = ["--steps", "10", "--key-steps", "5", "--frames", "9", "--size", "32x32", "--guidance", "3"]
SYNVID_BATCH = ["--shard-size", "5", "--batch", "5", "--device", "cpu"]
SMALL = ["--steps", "2", "--frames", "5", "--size", "32x32", "--device", "cpu"]  # a cheap sample
SYNTH = [*SMALL, "--key-steps", "2"]  # a cheap synthesize
DISTILL = ["iterations=1", "batch=2", "head_channels=8", "device=cpu", "probe_every=0"]
PROGRESS = re.compile(r"([\w ./]+: +\d+%\|[^|]*\| \d+/\d+ \[[^]]*\])+")  # tqdm bars (a TTY redraws them in place)
USER_BYTES = b"the user's own file: must survive every refused command\n"


@dataclass
class Env:
    """What a case builds on: the session's tiny teacher and SynVid, and copies of them it may damage."""

    tmp: Path
    request: pytest.FixtureRequest
    monkeypatch: pytest.MonkeyPatch
    variant: str | None = None  # a case run several ways: which one
    used_synvid: bool = False

    @property
    def teacher(self) -> Path:
        return self.request.getfixturevalue("tiny_wan_dir")

    @property
    def synvid(self) -> Path:
        self.used_synvid = True
        return self.request.getfixturevalue("synvid")

    def copy(self, src: Path, name: str) -> Path:
        dst = self.tmp / name
        shutil.copytree(src, dst)
        return dst

    def prompts(self) -> Path:
        path = self.tmp / "prompts.txt"
        path.write_text("a red circle moving left\n")
        return path

    def user_file(self, rel: str) -> Path:
        path = self.tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(USER_BYTES)
        return path

    def student_run(self, teacher: Path | None = None) -> Path:
        """A distill run folder by hand: the tiny teacher's transformer (or `teacher`'s) as a full student, with its
        student.json."""
        return hand_made_run(teacher or self.teacher, self.tmp / "run", [1.0, 0.75, 0.5, 0.25, 0.0])


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def flip_last_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 1  # the last byte of a safetensors file is tensor data: only the digests can see it
    path.write_bytes(bytes(data))


def snapshot(*roots: Path) -> dict[Path, str]:
    """sha256 of every file under the roots."""
    found = {}
    for root in roots:
        for path in sorted(Path(root).rglob("*")):
            if path.is_file():
                found[path] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


# --- the cases: each builds its inputs and returns (argv, words the one line must hold) ---------------------------

Case = Callable[[Env], tuple[list[str], str]]
CASES: dict[str, Case] = {}


def case(fn: Case) -> Case:
    CASES[fn.__name__] = fn
    return fn


# output guard: the teacher, the dataset, another command's folder, a folder accvideo did not make, the user's files
@case
def synthesize_out_is_the_teacher(env):
    t = env.copy(env.teacher, "teacher")
    return ["synthesize", "--teacher", str(t), "--prompts", str(env.prompts()), "--out", str(t), *SYNTH], "teacher"


@case
def distill_out_is_the_teacher(env):
    t = env.copy(env.teacher, "teacher")
    return ["distill", "--teacher", str(t), "--data", str(env.synvid), "--out", str(t), *DISTILL], "is the teacher"


@case
def distill_out_is_the_dataset(env):
    data = env.synvid
    return ["distill", "--teacher", str(env.teacher), "--data", str(data), "--out", str(data)], "is the dataset"


@case
def distill_out_inside_the_dataset(env):
    data = env.synvid
    return ["distill", "--teacher", str(env.teacher), "--data", str(data), "--out", str(data / "run")], "inside the"


@case
def tiny_model_into_a_users_model(env):
    return ["tiny-model", str(env.copy(env.teacher, "my-model"))], "not made by `accvideo tiny-model`"


@case
def tiny_model_over_a_synvid_folder(env):
    return ["tiny-model", str(env.copy(env.synvid, "syn"))], "output of `accvideo synthesize`"


@case
def synthesize_into_a_distill_run(env):
    run = env.student_run()
    args = ["synthesize", "--teacher", str(env.teacher), "--prompts", str(env.prompts()), "--out", str(run)]
    return [*args, *SYNTH], "output of `accvideo distill`"


@case
def distill_into_an_export(env):
    export = env.tmp / "exported"
    export.mkdir()
    (export / "model_index.json").write_text("{}")
    mark_folder(export, "export")
    args = ["distill", "--teacher", str(env.teacher), "--data", str(env.synvid), "--out", str(export), *DISTILL]
    return args, "output of `accvideo export`"


@case
def synthesize_into_a_non_empty_folder(env):
    env.user_file("mine/notes.txt")
    args = [
        "synthesize",
        "--teacher",
        str(env.teacher),
        "--prompts",
        str(env.prompts()),
        "--out",
        str(env.tmp / "mine"),
    ]
    return [*args, *SYNTH], "not empty"


@case
def sample_over_a_users_video(env):
    out = env.user_file("clip.mp4")
    return ["sample", "--model", str(env.teacher), *SMALL, "--out", str(out)], "not written by accvideo"


@case
def sample_over_a_users_settings_yaml(env):
    env.user_file("clip.yaml")  # the side file `sample` writes beside the clip
    return ["sample", "--model", str(env.teacher), *SMALL, "--out", str(env.tmp / "clip.mp4")], "clip.yaml exists"


@case
def sample_gif_over_a_users_gif(env):
    env.user_file("clip.gif")
    args = ["sample", "--model", str(env.teacher), *SMALL, "--out", str(env.tmp / "clip.mp4"), "--gif"]
    return args, "clip.gif exists"


@case
def sample_mp4_beside_the_gif_of_another_out(env):  # a.gif (another prompt, --out a.gif) was removed as stale
    clip = ["sample", "--model", str(env.teacher), *SMALL]
    with pytest.raises(SystemExit) as first:
        main([*clip, "--prompt", "a red circle", "--out", str(env.tmp / "a.gif")])
    assert first.value.code in (0, None) and (env.tmp / "a.gif").is_file()
    return [*clip, "--prompt", "a blue square", "--out", str(env.tmp / "a.mp4")], "is the clip of an earlier"


@case
def sample_into_the_model_folder(env):
    t = env.copy(env.teacher, "teacher")
    return ["sample", "--model", str(t), *SMALL, "--out", str(t / "clip.mp4")], "inside the model folder"


@case
def sample_prompts_into_a_users_folder(env):
    env.user_file("mine/000000.mp4")  # a folder of the user's own clips, named as sample's would be
    args = ["sample", "--model", str(env.teacher), "--prompts", str(env.prompts()), "--out", str(env.tmp / "mine")]
    return [*args, *SMALL], "not empty"


@case
def sample_prompts_into_another_commands_folder(env):
    args = ["sample", "--model", str(env.teacher), "--prompts", str(env.prompts()), "--out", str(env.synvid)]
    return [*args, *SMALL], "holds the output of `accvideo synthesize`"


@case
def prompts_over_a_users_file(env):
    return ["prompts", "--n", "3", "--out", str(env.user_file("notes.txt"))], "not written by accvideo"


@case
def export_force_over_a_users_folder(env):
    env.user_file("busy/notes.txt")
    return ["export", str(env.student_run()), "--out", str(env.tmp / "busy"), "--force"], "--force included"


@case
def evaluate_out_is_the_model(env):
    t = env.copy(env.teacher, "teacher")
    return ["evaluate", "--model", str(t), "--prompts", "2", "--out", str(t)], "is the model folder"


@case
def bench_out_is_the_model(env):
    t = env.copy(env.teacher, "teacher")
    return ["bench", "--model", str(t), "--out", str(t)], "is the model folder"


@case
def toy1d_into_a_non_empty_folder(env):
    env.user_file("plots/notes.txt")
    return ["toy1d", "--preset", "quick", "--out", str(env.tmp / "plots")], "not made by `accvideo toy1d`"


@case
def demo_into_a_non_empty_folder(env):
    env.user_file("d/notes.txt")
    return ["demo", "--preset", "quick", "--out", str(env.tmp / "d")], "not made by `accvideo demo`"


@case
def teacher_train_into_a_users_model(env):
    return ["teacher", "train", "--preset", "quick", "--out", str(env.copy(env.teacher, "t"))], "not made by"


# input guard: damaged model folders, students, shards and configs; numbers and sizes
def _use_model(env, verb: str, model: Path) -> list[str]:
    if verb == "sample":
        return ["sample", "--model", str(model), *SMALL, "--out", str(env.tmp / "clip.mp4")]
    if verb == "synthesize":
        return [
            "synthesize",
            "--teacher",
            str(model),
            "--prompts",
            str(env.prompts()),
            "--out",
            str(env.tmp / "s"),
            *SYNTH,
        ]
    return ["bench", "--model", str(model), "--frames", "5", "--size", "32x32", "--out", str(env.tmp / "b")]


def _edit_header(path: Path, edit: Callable[[dict], None] | None = None, raw: Callable[[dict], str] | None = None):
    """Rewrite a safetensors file's JSON header: `edit` changes the parsed one, or `raw` gives its new text."""
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    if edit is not None:
        edit(header)
    text = (raw(header) if raw is not None else json.dumps(header)).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + data[8 + n :])


def _drop_tensor(path: Path, key: str) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(path))
    del tensors[key]
    save_file(tensors, str(path), metadata={"format": "pt"})


def _set_config(path: Path, **values) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **values}))


@case
def a_weights_shape_that_is_not_a_list_of_sizes(env):  # a 39-line TypeError from host_bytes' math.prod
    t = env.copy(env.teacher, "teacher")
    edit = lambda h: h["proj_out.bias"].update(shape="abc")  # noqa: E731
    _edit_header(t / "transformer" / "diffusion_pytorch_model.safetensors", edit)
    return _use_model(env, "sample", t), "has a damaged safetensors header (tensor 'proj_out.bias' has shape \"abc\""


@case
def a_weights_shape_the_file_cannot_hold(env):  # "takes 3725.3 GiB ... run it on a GPU": the header was wrong
    t = env.copy(env.teacher, "teacher")
    edit = lambda h: h["proj_out.bias"].update(shape=[10**12])  # noqa: E731
    _edit_header(t / "transformer" / "diffusion_pytorch_model.safetensors", edit)
    return _use_model(env, "sample", t), "of shape [1000000000000] in F32 takes 4000000000000 bytes"


@case
def a_weights_header_with_an_unknown_dtype(env):
    t = env.copy(env.teacher, "teacher")
    _edit_header(t / "text_encoder" / "model.safetensors", lambda h: h["shared.weight"].update(dtype="Q7"))
    return _use_model(env, "sample", t), "tensor 'shared.weight' has dtype \"Q7\", no safetensors dtype"


@case
def a_weights_header_that_names_a_tensor_twice(env):
    t = env.copy(env.teacher, "teacher")
    twice = lambda h: json.dumps(h)[:-1] + ', "proj_out.bias": ' + json.dumps(h["proj_out.bias"]) + "}"  # noqa: E731
    _edit_header(t / "transformer" / "diffusion_pytorch_model.safetensors", raw=twice)
    return _use_model(env, "sample", t), "damaged safetensors header ('proj_out.bias' is given twice)"


@case
def a_weights_header_with_overlapping_offsets(env):  # the loader's line was cut at 200 characters, before its cause
    t = env.copy(env.teacher, "teacher")

    def same(h):  # two tensors of one size at the same bytes: the header's sizes add up, the loader refuses it
        h["blocks.0.norm2.weight"]["data_offsets"] = h["blocks.0.norm2.bias"]["data_offsets"]

    _edit_header(t / "transformer" / "diffusion_pytorch_model.safetensors", same)
    return _use_model(env, "sample", t), "does not load: Error while deserializing header: invalid offset"


@case
def a_text_encoder_missing_a_tensor(env):  # filled with random weights: exit 0, a wrong clip
    t = env.copy(env.teacher, "teacher")
    _drop_tensor(t / "text_encoder" / "model.safetensors", "encoder.final_layer_norm.weight")
    return _use_model(env, "sample", t), "lack 1 tensor(s) its config.json's model needs (encoder.final_layer_norm."


@case
def a_text_encoder_config_with_fewer_layers_than_its_weights(env):  # one layer loaded, the other dropped: exit 0
    t = env.copy(env.teacher, "teacher")
    _set_config(t / "text_encoder" / "config.json", num_layers=1)
    return _use_model(env, "sample", t), "it gives num_layers 1, its weights hold 2 blocks"


@case
def a_text_encoder_with_a_tensor_it_does_not_use(env):
    import torch
    from safetensors.torch import load_file, save_file

    t = env.copy(env.teacher, "teacher")
    path = t / "text_encoder" / "model.safetensors"
    save_file({**load_file(str(path)), "extra.weight": torch.zeros(3)}, str(path), metadata={"format": "pt"})
    return _use_model(env, "sample", t), "are not used by the model it describes (e.g. extra.weight)"


@case
def an_image_encoder_missing_a_tensor(env):  # filled with random weights: exit 0, a wrong clip
    from PIL import Image

    t = env.copy(env.request.getfixturevalue("tiny_i2v_dir"), "i2v")
    _drop_tensor(t / "image_encoder" / "model.safetensors", "post_layernorm.weight")
    image = env.tmp / "image.png"
    Image.new("RGB", (32, 32), (200, 10, 10)).save(image)
    args = ["sample", "--model", str(t), "--image", str(image), *SMALL, "--out", str(env.tmp / "clip.mp4")]
    return args, "image_encoder lack 1 tensor(s) its config.json's model needs (post_layernorm.weight)"


@case
def a_transformer_missing_a_tensor(env):  # the line was torch's "Please use torch.nn.Module.to_empty()"
    t = env.copy(env.teacher, "teacher")
    _drop_tensor(t / "transformer" / "diffusion_pytorch_model.safetensors", "blocks.0.norm2.weight")
    return _use_model(env, "sample", t), "(blocks.0.norm2.weight); re-save or re-download the pipeline"


@case
def a_transformer_config_with_a_billion_blocks(env):  # diffusers built 1e9 blocks: past 300 s, memory growing
    t = env.copy(env.teacher, "teacher")
    _set_config(t / "transformer" / "config.json", num_layers=10**9)
    return _use_model(env, "sample", t), "it gives num_layers 1000000000, its weights hold 3 blocks"


@case
def a_transformer_block_count_that_is_text(env):  # "'str' object cannot be interpreted as an integer"
    t = env.copy(env.teacher, "teacher")
    _set_config(t / "transformer" / "config.json", num_layers="2")
    return _use_model(env, "sample", t), 'config.json gives num_layers "2", not a count of blocks'


@case
def a_rope_table_past_any_memory(env):  # killed for memory (exit 137), no line
    t = env.copy(env.teacher, "teacher")
    _set_config(t / "transformer" / "config.json", rope_max_seq_len=10**9)
    return _use_model(env, "sample", t), "rope_max_seq_len 1000000000, where a whole number of positions up to 65536"


@case
def a_transformer_file_that_is_a_fifo(env):  # hung, waiting for a writer
    t = env.copy(env.teacher, "teacher")
    name = {"config": "config.json", "weights": "diffusion_pytorch_model.safetensors"}[env.variant]
    (t / "transformer" / name).unlink()
    os.mkfifo(t / "transformer" / name)
    return _use_model(env, "sample", t), f"{name} is a FIFO (named pipe), not a"


@case
def a_transformer_config_that_links_to_dev_zero(env):  # read until killed for memory (exit 137)
    t = env.copy(env.teacher, "teacher")
    (t / "transformer" / "config.json").unlink()
    (t / "transformer" / "config.json").symlink_to("/dev/zero")
    return _use_model(env, "sample", t), "config.json is a device or socket, not a"


@case
def truncated_transformer_weights(env):
    t = env.copy(env.teacher, "teacher")
    truncate(t / "transformer" / "diffusion_pytorch_model.safetensors")
    return _use_model(env, env.variant, t), "is truncated"


@case
def garbled_transformer_config(env):
    t = env.copy(env.teacher, "teacher")
    (t / "transformer" / "config.json").write_text('{"num_layers": 3,,}')
    return _use_model(env, env.variant, t), "is not valid JSON"


@case
def model_index_not_json(env):
    t = env.copy(env.teacher, "teacher")
    (t / "model_index.json").write_bytes(b"\x89PNG\r\n\x1a\n")
    return _use_model(env, "sample", t), "model_index.json"


@case
def export_a_truncated_student(env):
    run = env.student_run()
    truncate(run / "student" / "transformer" / "diffusion_pytorch_model.safetensors", 0.9)
    return ["export", str(run), "--out", str(env.tmp / "exported")], "is truncated"


@case
def sample_a_truncated_student(env):
    run = env.student_run()
    truncate(run / "student" / "transformer" / "diffusion_pytorch_model.safetensors", 0.9)
    return ["sample", "--model", str(run), *SMALL, "--out", str(env.tmp / "clip.mp4")], "is truncated"


@case
def student_json_garbled(env):
    run = env.student_run()
    (run / "student" / "student.json").write_text("{'format': ")
    return ["export", str(run), "--out", str(env.tmp / "exported")], "student.json is not valid JSON"


BAD_STUDENT = {  # student.json values that sampled nonsense with exit 0, exported a "-1-step" student, or crashed
    "one_sigma": ("key_sigmas", [1.0]),
    "text": ("key_sigmas", "abc"),
    "rising": ("key_sigmas", [0.2, 1.0]),
    "nan": ("key_sigmas", [1.0, float("nan")]),
    "not_to_zero": ("key_sigmas", [1.0, 0.75]),
    "teacher_dir_a_number": ("teacher_dir", 7),
}


@case
def a_student_json_value_that_cannot_be(env):
    run = env.student_run()
    info = json.loads((run / "student" / "student.json").read_text())
    key, value = BAD_STUDENT[env.variant]
    (run / "student" / "student.json").write_text(json.dumps({**info, key: value}))
    verb = ["export", str(run)] if env.variant in ("one_sigma", "nan") else ["sample", "--model", str(run), *SMALL]
    return [*verb, "--out", str(env.tmp / "out.mp4")], f"student.json: {key} must "


@case
def malformed_yaml_config(env):
    path = env.tmp / "bad.yaml"
    path.write_text("steps: [1, 2\nguidance: 3\n")
    return ["sample", "--config", str(path), "--out", str(env.tmp / "clip.mp4")], "is not valid YAML"


@case
def binary_yaml_config(env):
    path = env.tmp / "bad.yaml"
    path.write_bytes(b"\xff\xfe\x00garbage\x00")
    return ["sample", "--config", str(path), "--out", str(env.tmp / "clip.mp4")], "is not a text file"


@case
def frames_past_the_models_positions(env):
    return ["sample", "--frames", "257", "--steps", "1", "--out", str(env.tmp / "clip.mp4")], "rope_max_seq_len"


@case
def height_past_the_models_positions(env):
    return ["sample", "--size", "1040x64", "--frames", "5", "--steps", "1", "--out", str(env.tmp / "c.mp4")], "height"


@case
def a_setting_that_yaml_cannot_read(env):
    # a stray quote or bracket was OmegaConf's YAML error: a traceback
    return ["sample", env.variant, "--out", str(env.tmp / "clip.mp4")], "is not a value ("


@case
def settings_nested_past_the_recursion_limit(env):
    deep = "[" * 5000 + "]" * 5000
    if env.variant == "setting":
        return ["sample", f"guidance={deep}", "--out", str(env.tmp / "c.mp4")], "setting guidance nests too deeply"
    config = env.tmp / "deep.yaml"
    config.write_text(f"guidance: {deep}\n")
    return ["sample", "--config", str(config), "--out", str(env.tmp / "c.mp4")], "deep.yaml nests too deeply"


@case
def a_config_of_aliases_of_aliases(env):
    # 'billion laughs': 600 bytes that OmegaConf expanded for minutes and GBs before refusing the unknown key
    config = env.tmp / "laughs.yaml"
    rows = ["a0: &a0 [x]"] + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    config.write_text("\n".join(rows) + "\n")
    return ["sample", "--config", str(config), "--out", str(env.tmp / "c.mp4")], "more than 100,000 values"


@case
def a_json_input_nested_past_the_recursion_limit(env):
    deep = "[" * 100_000 + "\n"
    if env.variant == "prompts":
        prompts = env.tmp / "deep.jsonl"
        prompts.write_text(deep)
        return ["sample", "--prompts", str(prompts), "--out", str(env.tmp / "clips"), *SMALL], "nested too deeply"
    teacher = env.copy(env.teacher, "teacher")
    (teacher / "transformer" / "config.json").write_text(deep)
    return ["sample", "--model", str(teacher), "--out", str(env.tmp / "c.mp4"), *SMALL], "nested too deeply"


def _vae_config(env, **values) -> Path:
    """A copy of the tiny teacher whose vae/config.json gives `values`."""
    t = env.copy(env.teacher, "teacher")
    path = t / "vae" / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **values}))
    return t


def _sample_model(env, model: Path, *extra: str) -> list[str]:
    return ["sample", "--model", str(model), *SMALL, *extra, "--out", str(env.tmp / "c.mp4")]


@case
def a_vae_config_with_a_zero_temporal_factor(env):  # ZeroDivisionError in latent_shape
    return _sample_model(env, _vae_config(env, scale_factor_temporal=0)), "gives scale_factor_temporal 0, not a"


@case
def a_vae_config_with_a_zero_spatial_factor(env):  # ZeroDivisionError in the size check
    return _sample_model(env, _vae_config(env, scale_factor_spatial=0)), "gives scale_factor_spatial 0, not a"


@case
def a_vae_config_whose_temporal_factor_is_not_its_layers(env):  # --frames 13 made 17 frames, exit 0
    args = [*_sample_model(env, _vae_config(env, scale_factor_temporal=3)), "--frames", "13"]
    return args, "vae/config.json gives scale_factor_temporal 3, but the VAE its layers describe"


def _settings(env, text: str) -> Path:
    """A copy of the tiny teacher with `text` as its accvideo.json."""
    t = env.copy(env.teacher, "teacher")
    (t / "accvideo.json").write_text(text)
    return t


@case
def an_accvideo_json_that_gives_a_key_twice(env):  # json kept the last frames, silently
    t = _settings(env, '{"frames": 5, "height": 32, "width": 32, "frames": 9}')
    return ["sample", "--model", str(t), "--device", "cpu", "--out", str(env.tmp / "c.mp4")], "gives 'frames' twice"


@case
def an_accvideo_json_negative_prompt_of_a_document(env):  # 10 MB: 38 s, 3.3 GB and a 10.6 MB o.yaml, exit 0
    t = _settings(env, json.dumps({"negative_prompt": "blurry " * 3000}))
    return _sample_model(env, t), "accvideo.json: negative_prompt must be at most 20,000 characters"


@case
def accvideo_json_frames_past_the_position_table(env):  # the line named no file, as if --frames had been given
    t = _settings(env, '{"frames": 129, "height": 32, "width": 32}')
    args = ["sample", "--model", str(t), "--steps", "2", "--device", "cpu", "--out", str(env.tmp / "c.mp4")]
    return args, "accvideo.json: frames 129 is too large for this model"


@case
def a_conditioning_image_that_is_a_fifo(env):  # said "does not exist"
    fifo = env.tmp / "first.png"
    os.mkfifo(fifo)
    model = env.request.getfixturevalue("tiny_i2v_dir")
    return _sample_model(env, model, "--image", str(fifo)), f"image {fifo} is not a regular file"


@case
def a_float_image_of_no_clear_range(env):  # a 32-bit float TIFF in [0, 255] came out white
    import numpy as np
    from PIL import Image

    image = env.tmp / "first.tif"
    Image.fromarray(np.full((32, 32), 200.0, dtype=np.float32)).save(image)
    model = env.request.getfixturevalue("tiny_i2v_dir")
    return _sample_model(env, model, "--image", str(image)), "is a floating-point image whose values are"


@case
def a_prompt_file_that_is_a_fifo(env):
    # read_bytes waited for a writer forever
    fifo = env.tmp / "prompts.txt"
    os.mkfifo(fifo)
    return ["sample", "--prompts", str(fifo), "--out", str(env.tmp / "clips"), *SMALL], "is not a regular file"


@case
def a_prompt_row_that_gives_a_key_twice(env):
    # json keeps the last "prompt" of a row without a word
    rows = env.tmp / "prompts.jsonl"
    rows.write_text('{"prompt": "a red circle", "seed": 1}\n{"prompt": "a", "prompt": "b"}\n')
    return ["sample", "--prompts", str(rows), "--out", str(env.tmp / "clips"), *SMALL], "gives 'prompt' twice"


@case
def a_teacher_clip_smaller_than_its_vae_crop(env):
    # "the VAE crop must fit inside a clip" named no setting
    args = ["teacher", "train", "--out", str(env.tmp / "t"), "--size", "32x32", "--frames", "5"]
    return args, "lower vae_crop_frames / vae_crop_size or raise frames / size"


@case
def a_single_process_command_under_torchrun(env):
    # each rank ran it whole (evaluate, export: the same files written at once), or sample's ranks refused each other
    env.monkeypatch.setenv("WORLD_SIZE", "2")
    env.monkeypatch.setenv("RANK", "0")
    if env.variant == "sample":
        return ["sample", "--model", str(env.teacher), *SMALL, "--out", str(env.tmp / "c.mp4")], (
            "`accvideo sample --prompt` runs in one process; run it without torchrun"
        )
    if env.variant == "no-count":  # int() of it was a ValueError traceback
        env.monkeypatch.setenv("WORLD_SIZE", "two")
        return ["prompts", "--n", "1", "--out", str(env.tmp / "p.txt")], "WORLD_SIZE='two' is not a number of processes"
    if env.variant == "superscript":  # a digit to str.isdigit, not to int()
        env.monkeypatch.setenv("WORLD_SIZE", "\u00b2")
        return ["prompts", "--n", "1", "--out", str(env.tmp / "p.txt")], "WORLD_SIZE='\u00b2' is not a number"
    if env.variant == "export":
        return ["export", str(env.student_run()), "--out", str(env.tmp / "e")], "`accvideo export` runs in one process"
    return ["evaluate", "--model", str(env.teacher), "--out", str(env.tmp / "ev")], "`accvideo evaluate` runs in one"


@case
def export_over_an_earlier_export_holding_a_users_file(env):
    # the folder is replaced whole: the user's notes inside the earlier export were deleted, exit 0
    run, out = env.student_run(), env.tmp / "e"
    with pytest.raises(SystemExit) as first:
        main(["export", str(run), "--out", str(out)])
    assert first.value.code in (0, None)
    env.user_file("e/notes.txt")
    return ["export", str(run), "--out", str(out)], "holds notes.txt, which the earlier export did not write"


@case
def a_classifier_thread_count_out_of_range(env):  # RuntimeError traceback after the folder was made
    args = ["world-train-classifier", "threads=-1", "steps=1", "eval_items=0", "--out", str(env.tmp / "wc")]
    return args, "threads must be 0 (torch's default) or a count up to 4096; got -1"


@case
def a_teacher_with_no_attention_heads(env):  # ZeroDivisionError once the VAE had trained
    args = ["teacher", "train", "--preset", "quick", "heads=0", "--out", str(env.tmp / "t")]
    return args, "heads must be >= 1; got 0"


@case
def a_negative_bench_guidance(env):  # the sampler's ValueError traceback, with the folder made
    args = ["bench", "--model", str(env.teacher), "--frames", "5", "--size", "32x32", "--teacher-steps", "2"]
    return [*args, "--student-steps", "1", "--device", "cpu", "--guidance", "-1", "--out", str(env.tmp / "b")], (
        "guidance must be >= 0 (1 turns CFG off); got -1.0"
    )


@case
def a_negative_ablate_real_clips(env):  # distill's traceback, after the prompts and the SynVid were synthesized
    args = ["ablate", "--preset", "quick", "rows=[e]", "real_data=world", "real_clips=-1", "--out", str(env.tmp / "a")]
    return args, "real_clips must be between 1 and 100,000"


@case
def an_ablate_row_at_an_m_outside_key_steps(env):  # exit 0, ablation.md held the teacher's row alone
    args = ["ablate", "--preset", "quick", "rows=[c]", "shared_head_steps=[7]", "--out", str(env.tmp / "a")]
    return args, "no row of rows=['c'] runs at any m of key_steps=[1, 2] (shared_head_steps); give m from key_steps"


@case
def a_negative_guidance_2(env):  # said `guidance must be >= 0`: the wrong setting
    args = ["synthesize", "--teacher", str(env.teacher), "--prompts", str(env.prompts()), *SYNTH]
    return [*args, "--guidance-2", "-1", "--out", str(env.tmp / "s")], "guidance_2 must be >= 0 (1 turns CFG off)"


@case
def a_blank_prompt(env):  # sampled with an empty prompt, exit 0, while a blank prompt file row is refused
    args = ["sample", "--model", str(env.teacher), *SMALL, "--prompt", "  ", "--out", str(env.tmp / "c.mp4")]
    return args, "--prompt '  ' has no prompt string (it is blank)"


@case
def a_prompt_that_is_not_utf8(env):  # byte 0xff arrives as a surrogate escape: sampled as the text "\udcff", exit 0
    args = ["sample", "--model", str(env.teacher), *SMALL, "--prompt", "a\udcff", "--out", str(env.tmp / "c.mp4")]
    return args, "--prompt is not UTF-8 (byte 0xff at column 2); give the prompt as UTF-8 text"


TEACHER_QUICK = ["teacher", "train", "--preset", "quick"]
SAMPLE_CPU = ["--frames", "5", "--size", "32x32", "--device", "cpu"]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["world-train-classifier", "--threads", "100000"], "a count up to 4096; got 100000"),  # was a segfault
        ([*TEACHER_QUICK, "max_length=-1"], "max_length must be >= 10 (the world's longest caption in tokens"),
        ([*TEACHER_QUICK, "max_length=9"], "a shorter one cuts captions); got 9"),
        ([*TEACHER_QUICK, "lr=-1", "steps=1"], "lr must be positive; got -1.0"),
        ([*TEACHER_QUICK, "shift=-1"], "shift must be positive (e.g. shift=3); got -1.0"),
        ([*TEACHER_QUICK, "text_dim=-1"], "text_dim must be >= 4 (the text encoder's 4 heads split it); got -1"),
        ([*TEACHER_QUICK, "text_layers=-1"], "text_layers must be >= 1; got -1"),
        ([*TEACHER_QUICK, "head_dim=7"], "head_dim must be a positive even number"),
        ([*TEACHER_QUICK, "head_dim=-2"], "head_dim must be a positive even number"),
        ([*TEACHER_QUICK, "ffn_dim=-1"], "ffn_dim must be >= 1; got -1"),
        ([*TEACHER_QUICK, "warmup=0"], "warmup must be >= 1; got 0"),
        ([*TEACHER_QUICK, "vae_base_dim=1"], "vae_base_dim must be >= 2 (its decoder halves it); got 1"),
        ([*TEACHER_QUICK, "vae_z_dim=-1"], "vae_z_dim must be >= 1; got -1"),
        ([*TEACHER_QUICK, "vae_lr=-1"], "vae_lr must be positive; got -1.0"),
        ([*TEACHER_QUICK, "vae_video_lr=0"], "vae_video_lr must be positive; got 0.0"),
        ([*TEACHER_QUICK, "vae_kl=-1"], "vae_kl must be >= 0; got -1.0"),
        ([*TEACHER_QUICK, "vae_shape_weight=-1"], "vae_shape_weight must be >= 0; got -1.0"),
        ([*TEACHER_QUICK, "vae_chroma_weight=-1"], "vae_chroma_weight must be >= 0; got -1.0"),
        ([*TEACHER_QUICK, "vae_dim_mult=[]"], "vae_dim_mult must list 4 positive channel multipliers"),
        ([*TEACHER_QUICK, "vae_dim_mult=[1, 2, 4]"], "one a VAE level (e.g. [1, 2, 4, 4]); got [1, 2, 4]"),
        ([*TEACHER_QUICK, "vae_crop_frames=-3"], "vae_crop_frames must be >= 1; got -3"),
        (["ablate", "--preset", "quick", "real_data=world", "real_data_steps=[-1]"], "real_data_steps must list"),
        (["ablate", "--preset", "quick", "rows=[e]", "real_data=world", "real_data_steps=[99]"], "(real_data_steps)"),
        (["ablate", "--preset", "quick", "shared_head_steps=[]"], "must list the m (>= 1) at which row c runs; got []"),
        (["bench", "--prompt", "", *SAMPLE_CPU], "--prompt '' has no prompt string"),
        (["bench", "--prompt", "\udcfe", *SAMPLE_CPU], "--prompt is not UTF-8 (byte 0xfe at column 1)"),
        (["sample", "--prompt", "", *SAMPLE_CPU], "--prompt '' has no prompt string"),
        (["decoder", "distill", "width=100000"], "width must be at most 1,024 (a tiny decoder"),
        (["decoder", "distill", "depth=100000"], "depth must be at most 64"),
        (
            ["sample", "--prompt", "a" * 20_001, *SAMPLE_CPU],
            "--prompt is 20,001 characters; a prompt holds at most 20,000",
        ),
        (["sample", "--negative-prompt", "\udcff", *SAMPLE_CPU], "--negative-prompt is not UTF-8 (byte 0xff"),
        (["synthesize", "--negative-prompt", "\udcff", *SAMPLE_CPU], "--negative-prompt is not UTF-8 (byte 0xff"),
        (
            ["evaluate", "--model", "builtin", "--negative-prompt", "\udcff"],
            "--negative-prompt is not UTF-8 (byte 0xff",
        ),
    ],
)
def test_a_refused_setting_is_refused_before_anything_is_made(args, words, tmp_path, capsys, monkeypatch):
    """Settings that failed as tracebacks after the output folder was made (teacher train: after its VAE trained),
    or ran with a wrong result: one line, and nothing under the working folder, not even an empty --out."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.txt").write_text("a red circle moving left\n")
    out = "c.mp4" if args[0] == "sample" else "out"
    with pytest.raises(SystemExit) as exc:
        main([*args, *(["--prompts", "p.txt"] if args[0] == "synthesize" else []), "--out", out])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and words in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.txt"]


def test_a_sampling_plan_names_the_guidance_it_refuses():
    from accvideo.core.sampling import SamplingPlan

    with pytest.raises(ValueError, match=r"^guidance_2 must be >= 0 \(1 turns CFG off\); got -2.0$"):
        SamplingPlan((1.0, 0.0), guidance=5.0, guidance_2=-2.0)
    with pytest.raises(ValueError, match=r"^guidance must be >= 0 \(1 turns CFG off\); got -1.0$"):
        SamplingPlan((1.0, 0.0), guidance=-1.0, guidance_2=3.0)
    assert SamplingPlan((1.0, 0.0), guidance=5.0, guidance_2=0.0).guidance_2 == 0.0


@case
def a_setting_that_is_not_finite(env):
    return ["sample", env.variant, "--out", str(env.tmp / "clip.mp4")], "must be a finite number"


@case
def a_seed_past_64_bits(env):
    return ["sample", "--seed", "99999999999999999999999", "--out", str(env.tmp / "clip.mp4")], "signed 64-bit integer"


@case
def a_guidance_that_overflows_the_sampler(env):
    args = ["sample", "--model", str(env.teacher), *SMALL, "--steps", "1", "--negative-prompt", "x"]
    return [*args, "--guidance", "1e308", "--out", str(env.tmp / "clip.mp4")], "NaN or infinite latents"


@case
def a_trillion_prompts(env):
    return ["prompts", "--n", "1000000000000", "--out", str(env.tmp / "p.txt")], "at most 10,000,000"


@case
def threads_out_of_range(env):
    return ["toy1d", "--preset", "quick", "--threads", "-3", "--out", str(env.tmp / "t")], "threads must be"


@case
def tiny_model_with_absurd_layers(env):
    return ["tiny-model", str(env.tmp / "m"), "--layers", "100000"], "--layers must lie in"


@case
def truncated_synvid_shard(env):
    data = env.copy(env.synvid, "syn")
    truncate(data / "shard-000001.safetensors")
    args = ["distill", "--teacher", str(env.teacher), "--data", str(data), "--out", str(env.tmp / "run"), *DISTILL]
    return args, "not a readable SynVid shard"


@case
def unreadable_video_in_an_evaluated_folder(env):
    folder = env.tmp / "clips"
    folder.mkdir()
    (folder / "000000.mp4").write_bytes(b"\x00\x00\x00 ftypisom" + bytes(64))
    (folder / "manifest.jsonl").write_text(json.dumps({"prompt": "a red circle", "seed": 0}) + "\n")
    return ["evaluate", "--videos", str(folder), "--out", str(env.tmp / "scores")], "000000.mp4"


@case
def demo_with_negative_threads(env):
    return ["demo", "--out", str(env.tmp / "demo"), "threads=-1"], "threads must lie in [0, "


@case
def truncated_custom_classifier(env):
    from accvideo.evaluate.classifier import shipped_classifier_dir

    clf = env.copy(shipped_classifier_dir(), "clf")
    weights = next(clf.glob("*.safetensors"))
    truncate(weights)
    folder = env.tmp / "clips"
    folder.mkdir()
    args = ["evaluate", "--videos", str(folder), "--classifier", str(clf), "--out", str(env.tmp / "scores")]
    return args, weights.name


# resume verifies what it keeps
@case
def synthesize_resume_over_a_flipped_bit(env):
    data = env.copy(env.synvid, "syn")
    flip_last_bit(data / "shard-000001.safetensors")
    prompts = env.tmp / "p.txt"
    shutil.copy(env.synvid.parent / "p.txt", prompts)
    args = ["synthesize", "--teacher", str(env.teacher), "--prompts", str(prompts), "--out", str(data)]
    return [*args, *SYNVID, *SYNVID_BATCH], "fails its sha256 check"


@case
def distill_over_a_flipped_bit(env):
    data = env.copy(env.synvid, "syn")
    flip_last_bit(data / "shard-000000.safetensors")
    args = ["distill", "--teacher", str(env.teacher), "--data", str(data), "--out", str(env.tmp / "run"), *DISTILL]
    return args, "fails its sha256 check"


@case
def a_missing_path_holding_a_newline(env):  # the error line named it raw: two lines
    return ["sample", "--model", str(env.tmp / "no\npe"), *SMALL], "no\\npe does not exist"


@case
def export_of_a_teacher_holding_a_symbolic_link_loop(env):  # the line named the export's temporary copy
    teacher = env.copy(env.teacher, "teacher")
    (teacher / "vae" / "loop").symlink_to("loop")
    run = env.student_run(teacher)
    return ["export", str(run), "--out", str(env.tmp / "e")], f"{teacher}/vae/loop cannot be copied into the export"


@case
def a_prompt_file_line_of_a_megabyte(env):  # read whole and encoded: 21 s and 575 MB for one clip's prompt
    path = env.tmp / "p.txt"
    path.write_text("a red circle moving left\n" + "a" * 1_000_000 + "\n")
    args = ["synthesize", "--teacher", str(env.teacher), "--prompts", str(path), *SYNTH, "--out", str(env.tmp / "s")]
    return args, "p.txt: the prompt is 1,000,000 characters; a prompt holds at most 20,000"


@case
def a_tiny_model_without_its_model_index(env):  # was "is the output of `accvideo tiny-model`, not a model"
    t = env.copy(env.teacher, "teacher")
    mark_folder(t, "tiny-model")  # as `accvideo tiny-model` marks what it writes
    (t / "model_index.json").unlink()
    (t / "model_index.json").mkdir()
    return _use_model(env, "sample", t), "is a pipeline `accvideo tiny-model` wrote, but its model_index.json is"


@case
def an_output_file_that_is_a_folder(env):  # os.replace onto it: an IsADirectoryError traceback
    out = env.tmp / "wc"
    args = ["world-train-classifier", "--out", str(out), "steps=1", "eval_items=0", "--size", "32x32", "--frames", "5"]
    with pytest.raises(SystemExit):
        main([*args, "--batch-size", "2"])
    (out / "classifier.json").unlink()
    (out / "classifier.json").mkdir()
    return [*args, "--batch-size", "2"], "wc/classifier.json is a folder where this command writes a file; remove"


@case
def distill_without_the_teacher_that_made_the_synvid(env):  # the built-in is the default teacher
    args = ["distill", "--data", str(env.synvid), "--out", str(env.tmp / "run"), *DISTILL]
    return args, f"pass --teacher {env.teacher}"


# SynVid shard metadata edited by hand: tracebacks (wrong types, key indices past the grid, a tensor it lacks), and
# `synthesize --overwrite` could not redo such a shard; a folder marker that is no small file (a link to /dev/zero
# filled memory, a FIFO hung, a folder was a traceback)
def edit_shard_metadata(path: Path, change: Callable[[dict], None]) -> None:
    """Rewrite a shard's "synvid" metadata JSON through `change`, its tensors' bytes unchanged."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    meta = json.loads(header["__metadata__"]["synvid"])
    change(meta)
    header["__metadata__"]["synvid"] = json.dumps(meta)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + n :])


def _edited_synvid(env, change: Callable[[dict], None], shards=(1,)) -> Path:
    data = env.copy(env.synvid, "syn")
    for k in shards:
        edit_shard_metadata(data / f"shard-{k:06d}.safetensors", change)
    return data


def _distill_on(env, data: Path) -> list[str]:
    return ["distill", "--teacher", str(env.teacher), "--data", str(data), "--out", str(env.tmp / "run"), *DISTILL]


@case
def a_shard_whose_latent_shape_was_edited(env):  # "Sizes of tensors must match" in the trainer
    data = _edited_synvid(env, lambda m: m["settings"].update(latent_shape=[16, 3, 4, 8]), shards=(0, 1))
    return _distill_on(env, data), "shard-000000.safetensors is not a readable SynVid shard (tensor 0/latents has"


@case
def a_shard_whose_key_indices_pass_its_steps(env):  # an IndexError in the dataset
    data = _edited_synvid(env, lambda m: m["settings"].update(key_indices=[0, 2, 4, 6, 8, 15]), shards=(0, 1))
    return _distill_on(env, data), "(key indices [0, 2, 4, 6, 8, 15] must rise strictly from 0 to 10)"


@case
def a_shard_item_whose_index_is_a_string(env):  # a TypeError in sorted
    data = _edited_synvid(env, lambda m: m["items"][0].update(index="5"))
    return _distill_on(env, data), "shard-000001.safetensors is not a readable SynVid shard (item 0: index '5' is not"


@case
def a_shard_item_without_its_seed(env):  # KeyError 'seed'
    data = _edited_synvid(env, lambda m: m["items"][2].pop("seed"))
    return _distill_on(env, data), "shard-000001.safetensors is not a readable SynVid shard (item 2: no seed)"


@case
def resuming_synthesize_on_a_shard_item_without_its_seed(env):  # KeyError 'seed', with --overwrite too
    data = _edited_synvid(env, lambda m: m["items"][2].pop("seed"))
    args = ["synthesize", "--teacher", str(env.teacher), "--prompts", str(env.synvid.parent / "p.txt")]
    return [*args, "--out", str(data), *SYNVID, *SYNVID_BATCH], "(item 2: no seed); rerun the synthesize command with"


@case
def a_shard_listing_a_conditioning_tensor_it_lacks(env):  # a SafetensorError mid-training
    data = _edited_synvid(env, lambda m: m["cond_keys"].append("mask"))
    return _distill_on(env, data), "(its metadata and its tensors disagree on 0/cond/mask)"


def answered_fifo(env, path: Path) -> Path:
    """A FIFO at `path`. A reader that opens it as a file waits for a writer forever, so a writer thread answers each
    one with '{}' while the case runs: such a reader then fails the case instead of hanging it."""
    import threading

    os.mkfifo(path)
    stop = threading.Event()
    env.request.addfinalizer(stop.set)

    def answer() -> None:
        while not stop.wait(0.1):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO while no reader has it open
            except OSError:
                continue
            try:
                os.write(fd, b"{}")
            except OSError:
                pass
            finally:
                os.close(fd)

    threading.Thread(target=answer, daemon=True).start()
    return path


@case
def a_folder_marker_that_is_a_link_to_a_device(env):  # read to the end: memory filled until the kernel killed it
    (env.tmp / "k").mkdir()
    os.symlink("/dev/zero", env.tmp / "k" / ".accvideo-output.json")
    args = ["distill", "--teacher", str(env.teacher), "--data", str(env.synvid), "--out", str(env.tmp / "k")]
    return [*args, *DISTILL], ".accvideo-output.json is a device or socket, not a file"


@case
def a_folder_marker_that_is_a_fifo(env):  # tiny-model waited for a writer forever
    (env.tmp / "f").mkdir()
    answered_fifo(env, env.tmp / "f" / ".accvideo-output.json")
    return ["tiny-model", str(env.tmp / "f")], ".accvideo-output.json is a FIFO (named pipe), not a file"


@case
def a_folder_lock_that_is_a_fifo(env):  # its reader waited for a writer forever
    (env.tmp / "f").mkdir()
    answered_fifo(env, env.tmp / "f" / ".accvideo-lock")
    if env.variant == "read":  # a SynVid being read: is another command writing it?
        data = env.copy(env.synvid, "syn")
        answered_fifo(env, data / ".accvideo-lock")
        args = ["distill", "--teacher", str(env.teacher), "--data", str(data), "--out", str(env.tmp / "r"), *DISTILL]
        return args, ".accvideo-lock is a FIFO (named pipe), not a file, so not accvideo's lock; remove it"
    return ["tiny-model", str(env.tmp / "f")], ".accvideo-lock is a FIFO (named pipe), not a file"


@case
def a_folder_marker_that_is_a_folder(env):  # IsADirectoryError from the marker's rename: a traceback
    (env.tmp / "d" / ".accvideo-output.json").mkdir(parents=True)
    return ["tiny-model", str(env.tmp / "d")], ".accvideo-output.json is a folder, not a file"


# the tiny decoder (docs/decoder.md): made for another VAE, damaged, or trained without its SynVid
def tiny_decoder(env, vae: str):
    from accvideo.models.decoder import DecoderSpec, TinyDecoder, save_decoder

    return save_decoder(env.tmp / "dec", TinyDecoder(DecoderSpec(16, 4, 8, width=8, depth=1)), vae, "wan")


@case
def sample_with_a_decoder_of_another_vae(env):
    dec = tiny_decoder(env, "sha256:" + "1" * 64)
    return ["sample", "--model", str(env.teacher), "--decoder", str(dec), "--out", str(env.tmp / "c.mp4"), *SMALL], (
        "distilled for another VAE"
    )


@case
def sample_with_a_damaged_decoder(env):
    from accvideo.models.decoder import vae_identity

    dec = tiny_decoder(env, vae_identity(env.teacher))
    flip_last_bit(dec / "decoder.safetensors")
    return ["sample", "--model", str(env.teacher), "--decoder", str(dec), "--out", str(env.tmp / "c.mp4"), *SMALL], (
        "does not match the sha256"
    )


@case
def sample_with_a_decoder_json_spec_far_larger_than_its_weights(env):  # built for minutes before the refusal
    import json

    from accvideo.models.decoder import vae_identity

    dec = tiny_decoder(env, vae_identity(env.teacher))
    info = json.loads((dec / "decoder.json").read_text())
    info["spec"][env.variant] = 10**9
    (dec / "decoder.json").write_text(json.dumps(info))
    return ["sample", "--model", str(env.teacher), "--decoder", str(dec), "--out", str(env.tmp / "c.mp4"), *SMALL], (
        "is larger than its"
    )


@case
def sample_with_a_decoder_of_a_negative_detail_gain(env):
    import json

    from accvideo.models.decoder import vae_identity

    dec = tiny_decoder(env, vae_identity(env.teacher))
    info = json.loads((dec / "decoder.json").read_text())
    info["spec"]["detail_gain"] = -0.5  # a hand-edited JSON: a gain below 0 blurs, and is refused
    (dec / "decoder.json").write_text(json.dumps(info))
    return ["sample", "--model", str(env.teacher), "--decoder", str(dec), "--out", str(env.tmp / "c.mp4"), *SMALL], (
        "detail_gain must lie in [0, 10)"
    )


@case
def sample_with_the_random_timing_decoder(env):
    return ["sample", "--model", str(env.teacher), "--decoder", "tiny", "--out", str(env.tmp / "c.mp4"), *SMALL], (
        "random decoder for timing"
    )


@case
def decoder_distill_without_a_synvid(env):
    args = ["decoder", "distill", "--teacher", str(env.teacher), "--data", str(env.tmp / "no-synvid")]
    return [*args, "--out", str(env.tmp / "dec"), "--device", "cpu"], "does not exist"


@case
def decoder_distill_out_is_the_dataset(env):
    args = ["decoder", "distill", "--teacher", str(env.teacher), "--data", str(env.synvid)]
    return [*args, "--out", str(env.synvid / "dec"), "--device", "cpu"], "lies inside the dataset"


# faults: a full disk and CPU memory, raised where the real ones are
@case
def disk_full_writing_a_shard(env):
    import accvideo.synthesize.shards as shards

    def full(tensors, metadata, path):
        Path(path).write_bytes(b"half a shard")  # what a full disk leaves: it must not stay
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    env.monkeypatch.setattr(shards, "write_safetensors", full)
    args = ["synthesize", "--teacher", str(env.teacher), "--prompts", str(env.prompts()), "--out", str(env.tmp / "s")]
    return [*args, *SYNTH], "No space left on device"


@case
def a_synvid_larger_than_the_free_disk(env):  # found at the first shard that did not fit, hours in
    free = 1 << 10  # 1 KB
    env.monkeypatch.setattr(shutil, "disk_usage", lambda _p: shutil._ntuple_diskusage(1 << 30, 1 << 30, free))
    args = ["synthesize", "--teacher", str(env.teacher), "--prompts", str(env.prompts()), "--out", str(env.tmp / "s")]
    # 3 key latents (2 steps) of the tiny Wan's 16 x 2 x 4 x 4 float32 latent (5 frames at 32x32): 3 x 2 KB
    return [*args, *SYNTH], "1 item(s) left (6 KB of latents each) needs about 6 KB more in"


@case
def a_run_whose_saves_cannot_fit_on_the_disk(env):  # found at the first save, checkpoint_every iterations in
    data = env.synvid  # made before the disk is full
    env.monkeypatch.setattr(shutil, "disk_usage", lambda _p: shutil._ntuple_diskusage(1 << 30, 1 << 30, 100 << 10))
    run = env.tmp / "run"
    args = ["distill", "--teacher", str(env.teacher), "--data", str(data), "--out", str(run), *DISTILL]
    return args, "each save of this run needs about"


@case
def disk_full_writing_a_checkpoint(env):
    import torch

    def save(obj, path):  # torch's zip writer on a full disk
        Path(path).write_bytes(b"half a checkpoint")
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 1522816 vs 1522704")

    import accvideo.distill.state as distill_state

    data = env.synvid  # made before the disk is full
    # the disk filled after the start (another writer): the check before the first iteration passed
    env.monkeypatch.setattr(distill_state, "check_free_space", lambda *_a: None)
    env.monkeypatch.setattr(torch, "save", save)
    env.monkeypatch.setattr(shutil, "disk_usage", lambda _p: shutil._ntuple_diskusage(1 << 30, 1 << 30, 0))
    run = env.tmp / "run"
    return ["distill", "--teacher", str(env.teacher), "--data", str(data), "--out", str(run), *DISTILL], "needed"


@case
def cpu_out_of_memory_in_synthesize(env):
    import accvideo.synthesize.run as synthesize_run

    def oom(*_a, **_k):
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried "
            "to allocate 85899345920 bytes. Error code 12 (Cannot allocate memory)"
        )

    env.monkeypatch.setattr(synthesize_run, "sample_latents", oom)
    args = ["synthesize", "--teacher", str(env.teacher), "--prompts", str(env.prompts()), "--out", str(env.tmp / "s")]
    return [*args, *SYNTH], "out of memory (CPU RAM; it asked for 80.0 GB more)"


@case
def cpu_out_of_memory_in_distill(env):
    from accvideo.distill import trainer

    def oom(self):
        raise MemoryError

    env.monkeypatch.setattr(trainer.Distiller, "train_iteration", oom)
    run = env.tmp / "run"
    args = ["distill", "--teacher", str(env.teacher), "--data", str(env.synvid), "--out", str(run), *DISTILL]
    return args, "out of memory (CPU RAM)"


# a fuzzing pass of session 14: what a user types by habit, and inputs damaged in new ways
@case
def a_device_torch_cannot_name(env):
    return _sample_on_device(env, env.variant), "unknown device"


def _sample_on_device(env, device: str) -> list[str]:
    return ["sample", "--model", str(env.teacher), *SMALL[:-2], "--device", device, "--out", str(env.tmp / "c.mp4")]


@case
def a_negative_seed(env):  # "-1 for a random seed", a habit from other tools
    out = str(env.tmp / "out")
    return {
        "prompts": ["prompts", "--n", "2", "--out", str(env.tmp / "p.txt"), "--seed", "-1"],
        "synthesize": [
            *["synthesize", "--teacher", str(env.teacher), "--prompts", str(env.prompts()), "--out", out],
            *[*SYNTH, "--seed", "-1"],
        ],
        "evaluate": ["evaluate", "--model", str(env.teacher), "--prompts", "2", "--out", out, "--seed", "-1"],
        "ablate": ["ablate", "--preset", "quick", "--out", out, "seeds=[0, -1]"],
    }[env.variant], "must be 0 or more"


@case
def prompts_written_into_a_model_folder(env):
    t = env.copy(env.teacher, "teacher")  # a file added there would change the teacher's identity
    return ["prompts", "--n", "2", "--out", str(t / "prompts.txt")], "lies inside the model folder"


@case
def tiny_model_written_inside_a_model_folder(env):
    t = env.copy(env.teacher, "teacher")
    return ["tiny-model", str(t / "sub")], "lies inside the model folder"


@case
def distill_while_another_distill_writes_the_run(env):
    from accvideo.core.files import writer_id

    run = env.student_run()
    live = writer_id().rsplit("-", 1)[0] + f"-{os.getppid()}"  # a live process of this host that is not this one
    (run / ".accvideo-lock").write_text(live)
    args = ["distill", "--teacher", str(env.teacher), "--data", str(env.synvid), "--out", str(run), *DISTILL]
    return args, "is writing"


@case
def a_transformer_folder_without_its_weights(env):
    t = env.copy(env.teacher, "teacher")  # an interrupted download: diffusers also logs it, which stays quiet
    (t / "transformer" / "diffusion_pytorch_model.safetensors").unlink()
    return ["sample", "--model", str(t), *SMALL, "--out", str(env.tmp / "c.mp4")], "config.json but no weights file"


@case
def a_transformer_config_that_is_not_an_object(env):
    t = env.copy(env.teacher, "teacher")
    (t / "transformer" / "config.json").write_text("[]")
    return ["sample", "--model", str(t), "--device", "cpu", "--out", str(env.tmp / "c.mp4")], "must hold a JSON object"


@case
def an_image_past_pils_pixel_limit(env):
    from PIL import Image

    image = env.tmp / "big.png"
    Image.new("RGB", (64, 64)).save(image)
    env.monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # so a small file stands for a 200-megapixel one
    model = env.request.getfixturevalue("tiny_i2v_dir")
    return ["sample", "--model", str(model), "--image", str(image), *SMALL, "--out", str(env.tmp / "c.mp4")], (
        "has more than 2,000 pixels"
    )


@case
def a_checkpoint_that_is_not_a_weights_only_file(env):
    import pickle

    run = env.student_run()
    if env.variant == "pickle":  # torch's own error would advise weights_only=False, which runs the file's code
        (run / "checkpoint.pt").write_bytes(pickle.dumps(Path("somewhere")))
        words = "not a torch file of tensors and plain data"
    else:
        (run / "checkpoint.pt").mkdir()
        words = "is not a file"
    args = ["distill", "--teacher", str(env.teacher), "--data", str(env.synvid), "--out", str(run), *DISTILL]
    return args, words


@case
def a_config_that_refers_to_itself(env):
    config = env.tmp / "loop.yaml"
    config.write_text("steps: &a [*a]\n")
    return ["sample", "--config", str(config), "--out", str(env.tmp / "c.mp4")], "or refers to itself"


@case
def a_config_path_that_is_a_folder(env):
    return ["sample", "--config", str(env.teacher), "--out", str(env.tmp / "c.mp4")], "is not a file"


@case
def a_setting_of_the_wrong_type(env):
    return ["sample", "--model", str(env.teacher), "steps=two", "--out", str(env.tmp / "c.mp4")], "setting steps:"


@case
def evaluate_a_clip_of_nan(env):
    import numpy as np

    from accvideo.evaluate.folder import write_video_folder

    folder = write_video_folder(env.tmp / "clips", np.zeros((2, 17, 64, 64, 3), np.uint8), [("a", 1), ("b", 2)], "npy")
    first = sorted(folder.glob("*.npy"))[0]
    np.save(first, np.full((17, 64, 64, 3), np.nan, np.float32))
    return ["evaluate", "--videos", str(folder), "--out", str(env.tmp / "e")], "NaN or infinite"


@case
def evaluate_float_clips_of_0_to_255(env):  # scored as saturated frames: wrong numbers, exit 0
    import numpy as np

    from accvideo.evaluate.folder import write_video_folder

    folder = write_video_folder(env.tmp / "clips", np.zeros((2, 17, 64, 64, 3), np.uint8), [("a", 1), ("b", 2)], "npy")
    for i, path in enumerate(sorted(folder.glob("*.npy"))):
        np.save(path, np.full((17, 64, 64, 3), 100.0 + i, np.float32))
    return [
        "evaluate",
        "--videos",
        str(folder),
        "--out",
        str(env.tmp / "e"),
    ], "not in [0, 1]; divide 0-255 frames by 255"


@case
def a_distill_run_as_the_teacher(env):  # said "a distill run with no student yet ... rerun its distill command"
    run = env.student_run()
    args = ["distill", "--teacher", str(run), "--data", str(env.synvid), "--out", str(env.tmp / "r2"), *DISTILL]
    return args, f"is a distill run: its student samples (`accvideo sample --model {run}`) but is no teacher pipeline"


@case
def a_distill_run_as_the_data(env):  # named the fix `accvideo synthesize --out RUN`, which that refuses
    run = env.student_run()
    args = ["distill", "--teacher", str(env.teacher), "--data", str(run), "--out", str(env.tmp / "r2"), *DISTILL]
    return args, "is the output of `accvideo distill`, not a SynVid; pass the --out of `accvideo synthesize`"


@case
def a_count_that_would_fill_memory(env):
    if env.variant == "evaluate":
        return ["evaluate", "--model", str(env.teacher), "--prompts", "1000000000", "--out", str(env.tmp / "e")], (
            "at most 100,000"
        )
    args = ["distill", "--teacher", str(env.teacher), "--data", str(env.synvid), "--out", str(env.tmp / "r")]
    return [*args, *DISTILL, "real_data=world", "real_clips=1000000000"], "real_clips must be between 1 and 100,000"


@case
def no_key_steps(env):
    args = ["synthesize", "--teacher", str(env.teacher), "--prompts", str(env.prompts()), "--out", str(env.tmp / "s")]
    return [*args, *SMALL, "--key-steps", "0"], "key_steps must be a positive integer"


@case
def decoder_distill_from_a_missing_clip_folder(env):
    args = ["decoder", "distill", "--teacher", str(env.teacher), "--data", str(env.synvid), "--device", "cpu"]
    return [*args, "holdout=2", "--videos", str(env.tmp / "no-clips"), "--out", str(env.tmp / "dec")], "videos="


@case
def export_out_named_like_a_weights_file(env):
    run = env.student_run()  # it was made a folder called x.safetensors, which no single-file loader opens
    args = ["export", str(run), "--format", "single-file", "--out", str(env.tmp / "x.safetensors")]
    return args, "drop the .safetensors"


@case
def export_given_two_runs(env):
    run = env.student_run()  # which of the two was meant is not ours to guess
    return ["export", str(run), "--run", str(env.teacher), "--out", str(env.tmp / "x")], "RUN given twice"


# a sweep of session 15: paths, text, numbers, environment and damaged inputs from angles not tried before
@case
def steps_past_any_sampler(env):  # 2^62 steps overflowed torch's sizes (a traceback); 10^12 read as out of memory
    steps = "4611686018427387904" if env.variant == "sample" else "1000000000000"
    if env.variant == "sample":
        args = ["sample", "--model", str(env.teacher), *SMALL, "--out", str(env.tmp / "c.mp4")]
    else:
        args = _use_model(env, "synthesize", env.teacher)
    return [*args, "--steps", steps], "steps must be a positive integer of at most 10,000"


@case
def a_frame_rate_the_encoder_cannot_take(env):  # ffmpeg printed its own lines and wrote nothing: a traceback
    if env.variant == "sample":
        args = ["sample", "--model", str(env.teacher), *SMALL, "--out", str(env.tmp / "c.mp4")]
    else:
        args = [*_use_model(env, "synthesize", env.teacher), "--videos"]
    return [*args, "--fps", "9223372036854775807"], "fps must lie in [1, 1,000]"


@case
def a_position_table_that_fits_no_video(env):  # said "use frames of at most -3"
    t = env.copy(env.teacher, "teacher")
    config = json.loads((t / "transformer" / "config.json").read_text())
    (t / "transformer" / "config.json").write_text(json.dumps({**config, "rope_max_seq_len": 0}))
    return _use_model(env, "sample", t), "rope_max_seq_len 0, which fits no video"


@case
def a_model_that_is_another_commands_output(env):  # said "not a diffusers pipeline (no model_index.json)"
    if env.variant == "distill":  # a run stopped before its first checkpoint: no student yet
        folder = env.tmp / "run"
        folder.mkdir()
        mark_folder(folder, "distill")
        (folder / "config.yaml").write_text("iterations: 100\n")
        words = "is a distill run with no student yet"
    else:
        folder, words = env.synvid, "is the output of `accvideo synthesize`, not a model"
    return ["sample", "--model", str(folder), *SMALL, "--out", str(env.tmp / "c.mp4")], words


@case
def a_batch_too_large_to_exist(env):  # torch's "Storage size calculation overflowed": a traceback
    args = ["distill", "--teacher", str(env.teacher), "--data", str(env.synvid), "--out", str(env.tmp / "r")]
    return [*args, *DISTILL, "batch=9223372036854775807"], "too large to exist (its size overflows 64 bits)"


@case
def a_device_this_machine_lacks(env):  # mps read as "cannot load the pipeline ...; re-save or re-download it"
    import torch

    if env.variant == "cuda:7":  # a machine with one GPU: torch's invalid device ordinal, deep in the loader
        env.monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        env.monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    else:
        env.monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    words = {"mps": "has no MPS", "cuda:7": "names GPU 7 but 1 GPU(s) are visible"}[env.variant]
    return _sample_on_device(env, env.variant), words


@case
def a_config_that_sets_a_key_twice(env):  # the last one won silently: 50 steps where the first line said 2
    config = env.tmp / "twice.yaml"
    config.write_text("steps: 2\nguidance: 3\nsteps: 50\n")
    return ["sample", "--config", str(config), "--out", str(env.tmp / "c.mp4")], "sets 'steps' twice (lines 1 and 3)"


@case
def synthesize_while_another_synthesize_writes_the_folder(env):  # both ran: --overwrite removed the other's shards
    from accvideo.core.files import writer_id

    data = env.copy(env.synvid, "syn")
    live = writer_id().rsplit("-", 1)[0] + f"-{os.getppid()}"  # a live process of this host that is not this one
    (data / ".accvideo-lock").write_text(live)
    args = ["synthesize", "--teacher", str(env.teacher), "--prompts", str(env.prompts()), "--out", str(data)]
    return [*args, *SYNTH, "--overwrite"], "another `accvideo synthesize`"


@case
def export_while_another_export_writes_the_folder(env):  # both built, then raced on the renames (ENOTEMPTY)
    from accvideo.core.files import writer_id

    live = writer_id().rsplit("-", 1)[0] + f"-{os.getppid()}"  # a live process of this host that is not this one
    (env.tmp / ".e.accvideo-lock").write_text(live)
    return ["export", str(env.student_run()), "--out", str(env.tmp / "e")], "another `accvideo export`"


def _held_by_a_live_writer(folder: Path) -> Path:
    from accvideo.core.files import writer_id

    (folder / ".accvideo-lock").write_text(writer_id().rsplit("-", 1)[0] + f"-{os.getppid()}")  # live, not us
    return folder


@case
def reading_a_folder_another_command_is_writing(env):  # read what was written so far (or a torn save), silently
    if env.variant == "distill":  # a SynVid still being synthesized: trained on its first items, exit 0
        data = _held_by_a_live_writer(env.copy(env.synvid, "syn"))
        args = ["distill", "--teacher", str(env.teacher), "--data", str(data), "--out", str(env.tmp / "r")]
        return [*args, *DISTILL], "is being written by `accvideo synthesize`"
    if env.variant in ("demo", "ablate"):  # two on one folder raced each other's stages (one ended refused mid-way)
        folder = env.tmp / env.variant
        folder.mkdir()
        mark_folder(_held_by_a_live_writer(folder), env.variant)
        return [env.variant, "--preset", "quick", "--out", str(folder)], f"another `accvideo {env.variant}`"
    if env.variant == "teacher-train":  # two trainings of one teacher interleaved their checkpoints in its work folder
        out = env.tmp / "t"
        work = out.with_name("t.work")
        work.mkdir()
        mark_folder(_held_by_a_live_writer(work), "teacher train")
        return ["teacher", "train", "--preset", "quick", "--out", str(out)], "another `accvideo teacher train`"
    if env.variant == "tiny-model":  # two at once both said "wrote", and one's files replaced the other's
        folder = env.tmp / "m"
        folder.mkdir()
        mark_folder(_held_by_a_live_writer(folder), "tiny-model")
        return ["tiny-model", str(folder), "--seed", "2"], "another `accvideo tiny-model`"
    if env.variant == "sample-out":  # two samples to one clip: their ledger entries crossed, later runs refused
        lock = _held_by_a_live_writer(env.tmp) / ".accvideo-lock"
        lock.rename(env.tmp / ".c.mp4.accvideo-lock")
        args = ["sample", "--model", str(env.teacher), *SMALL, "--out", str(env.tmp / "c.mp4")]
        return args, "another `accvideo sample`"
    run = _held_by_a_live_writer(env.student_run())  # a run being trained: student/ replaced at every save
    if env.variant == "export":
        return ["export", str(run), "--out", str(env.tmp / "e")], "is being written by `accvideo distill`"
    return ["sample", "--model", str(run / "student"), *SMALL, "--out", str(env.tmp / "c.mp4")], (
        "is being written by `accvideo distill`"
    )


@case
def a_transformer_config_with_fewer_blocks_than_its_weights(env):  # loaded 2 of 3 blocks and sampled, silently
    t = env.copy(env.teacher, "teacher")
    config = json.loads((t / "transformer" / "config.json").read_text())
    (t / "transformer" / "config.json").write_text(json.dumps({**config, "num_layers": config["num_layers"] - 1}))
    return _use_model(env, env.variant, t), "config.json does not match its weights"


@case
def a_config_value_of_the_wrong_kind(env):  # built, then a 74-line traceback from layer_norm at the first forward
    t = env.copy(env.teacher, "teacher")
    config = json.loads((t / "transformer" / "config.json").read_text())
    (t / "transformer" / "config.json").write_text(json.dumps({**config, "eps": "a"}))
    return _use_model(env, env.variant, t), 'gives eps "a", where WanTransformer3DModel takes a number'


@case
def frames_past_64_bits(env):  # the 4k+1 line suggested 9223372036854775809 (and height 2^63), past 64 bits
    args = ["sample", "--model", str(env.teacher), *SMALL, "--out", str(env.tmp / "c.mp4")]
    if env.variant == "size":
        return [*args, "--size", "9223372036854775807x32"], "height must be at most 100,000 pixels"
    return [*args, "--frames", "9223372036854775807"], "frames must be at most 10,000"


@case
def an_output_that_is_a_symbolic_link_loop(env):  # Path.resolve's "Symlink loop from ..." RuntimeError: a traceback
    (env.tmp / "l1").symlink_to(env.tmp / "l2")
    (env.tmp / "l2").symlink_to(env.tmp / "l1")
    if env.variant == "export":
        return ["export", str(env.student_run()), "--out", str(env.tmp / "l1")], "is a symbolic-link loop"
    args = ["synthesize", "--teacher", str(env.teacher), "--prompts", str(env.prompts()), "--out", str(env.tmp / "l1")]
    return [*args, *SYNTH], "is a symbolic-link loop"


@case
def an_output_that_is_a_link_to_nothing(env):  # synthesize said "(File exists)"; export wrote through the link
    (env.tmp / "gone").symlink_to(env.tmp / "elsewhere" / "run")
    if env.variant == "export":
        return ["export", str(env.student_run()), "--out", str(env.tmp / "gone")], "(mkdir -p) or choose another"
    if env.variant == "sample":
        (env.tmp / "gone.mp4").symlink_to(env.tmp / "elsewhere.mp4")
        args = ["sample", "--model", str(env.teacher), *SMALL, "--out", str(env.tmp / "gone.mp4")]
        return args, "which does not exist; remove the link"
    args = ["synthesize", "--teacher", str(env.teacher), "--prompts", str(env.prompts())]
    return [*args, "--out", str(env.tmp / "gone" / "sub"), *SYNTH], "is a link to"


@case
def an_output_name_too_long_for_the_file_system(env):  # ENAMETOOLONG from mkdir: a traceback
    args = ["synthesize", "--teacher", str(env.teacher), "--prompts", str(env.prompts())]
    return [*args, "--out", str(env.tmp / ("a" * 300)), *SYNTH], "file name too long"


@case
def a_number_setting_with_no_value(env):  # `steps=` read as null: the --steps 2 given became the model's 50
    args = ["sample", "--model", str(env.teacher), *SMALL, "--out", str(env.tmp / "c.mp4")]
    return [*args, "steps="], "setting steps= has no value"


@case
def a_lora_rank_past_every_layer(env):  # 2^63 - 1 overflowed torch's sizes inside peft: a traceback
    args = ["distill", "--teacher", str(env.teacher), "--data", str(env.synvid), "--out", str(env.tmp / "r")]
    return [*args, *DISTILL, "--lora-rank", "9223372036854775807"], "exceeds the rank of every targeted layer"


@case
def a_nested_setting_given_a_number(env):  # the line named no fix: "bad config for SampleConfig: Merge error: ..."
    return ["sample", "--model", str(env.teacher), "runtime=3", "--out", str(env.tmp / "c.mp4")], (
        "nested ones as runtime.offload=true"
    )


# damaged students (LoRA files, student.json, a full student's config.json)
LORA_FILE = "pytorch_lora_weights.safetensors"


def _lora_student(env, rank: int = 2, layer=lambda name: name) -> Path:
    """A LoRA distill run folder by hand: rank-`rank` adapters (lora_B zero) on the default targets of the tiny
    teacher, in diffusers' names with the metadata distill saves; `layer` renames the layers."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    run = env.student_run()
    shutil.rmtree(run / "student" / "transformer")
    targets = ["to_k", "to_out.0", "to_q", "to_v"]
    tensors = {}
    with safe_open(env.teacher / "transformer" / "diffusion_pytorch_model.safetensors", "pt") as f:
        for key in f.keys():
            name = key.removesuffix(".weight")
            if key.endswith(".weight") and any(name.endswith(f".{t}") for t in targets):
                out, inp = f.get_slice(key).get_shape()
                tensors[f"transformer.{layer(name)}.lora_A.weight"] = torch.ones(rank, inp)
                tensors[f"transformer.{layer(name)}.lora_B.weight"] = torch.zeros(out, rank)
    meta = {"transformer.lora_alpha": float(rank), "transformer.r": rank, "transformer.target_modules": targets}
    save_file(
        tensors, run / "student" / LORA_FILE, metadata={"format": "pt", "lora_adapter_metadata": json.dumps(meta)}
    )
    _edit_student_json(run, lora={"rank": rank, "alpha": float(rank), "targets": targets}, weights=LORA_FILE)
    return run


def _edit_student_json(run: Path, **edits) -> None:
    path = run / "student" / "student.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **edits}))


def _use_student(env, run: Path, verb: str) -> list[str]:
    if verb == "sample":
        return ["sample", "--model", str(run), *SMALL, "--out", str(env.tmp / "c.mp4")]
    return ["export", str(run), "--out", str(env.tmp / "e"), *(["--format", "lora"] if verb == "export-lora" else [])]


@case
def a_lora_file_of_other_layers(env):  # 'attn1' renamed: nothing loaded, the student sampled as its teacher (exit 0)
    run = _lora_student(env, layer=lambda name: name.replace("attn1", "attnX"))
    return _use_student(env, run, env.variant), "12 layer(s) its teacher's transformer lacks (e.g. blocks.0.attnX.to_k)"


@case
def a_full_transformer_in_place_of_the_lora_file(env):  # diffusers' ValueError: Invalid LoRA checkpoint (exit 1)
    run = _lora_student(env)
    shutil.copyfile(env.teacher / "transformer" / "diffusion_pytorch_model.safetensors", run / "student" / LORA_FILE)
    return _use_student(env, run, env.variant), "which is no LoRA weight of a transformer"


@case
def a_lora_file_of_another_rank_or_alpha(env):  # a rank-2 file in a rank-4 student: exported as "rank": 4, exit 0
    run = _lora_student(env)
    what, verb = env.variant.split(":")
    lora = {"rank": 4, "alpha": 4.0} if what == "rank" else {"alpha": 6.0}
    _edit_student_json(run, lora={"rank": 2, "alpha": 2.0, "targets": ["to_k", "to_out.0", "to_q", "to_v"], **lora})
    words = "holds rank-2 LoRA weights" if what == "rank" else "records lora_alpha 2.0 in its lora_adapter_metadata"
    return _use_student(env, run, verb), words


@case
def a_student_json_without_its_teacher(env):  # no identity, no check: another teacher's VAE and text encoder, exit 0
    other = env.copy(env.teacher, "other-teacher")
    flip_last_bit(other / "transformer" / "diffusion_pytorch_model.safetensors")
    run = env.student_run()
    how, verb = env.variant.split(":")
    path = run / "student" / "student.json"
    info = {**json.loads(path.read_text()), "teacher": None, "teacher_dir": str(other)}
    path.write_text(json.dumps({k: v for k, v in info.items() if how == "null" or k != "teacher"}))
    return _use_student(env, run, verb), "student.json is damaged: it records no teacher"


@case
def export_a_student_whose_config_does_not_match_its_weights(env):  # exported, then refused by `sample`
    run = env.student_run()
    config = run / "student" / "transformer" / "config.json"
    held = json.loads(config.read_text())["num_layers"]
    # a billion: built on the meta device for minutes before the comparison
    layers = {"fewer": held - 1, "more": held + 1, "billion": 10**9}[env.variant]
    config.write_text(json.dumps({**json.loads(config.read_text()), "num_layers": layers}))
    words = f"config.json does not match its weights: it gives num_layers {layers}, its weights hold {held} blocks"
    return _use_student(env, run, "export"), f"{words}; restore the config.json or the run folder"


@case
def a_teacher_dir_that_is_not_a_pipeline(env):  # a SynVid folder there was reported as "gone"
    run = env.student_run()
    _edit_student_json(run, teacher_dir=str(env.synvid))
    return _use_student(env, run, env.variant), "is not a diffusers pipeline folder (no model_index.json)"


@case
def a_student_holding_nan_weights(env):  # export copied it (exit 0); sample said "lower --guidance"
    import torch
    from safetensors.torch import load_file, save_file

    what, verb = env.variant.split(":")
    if what == "full":
        run = env.student_run()
        path = run / "student" / "transformer" / "diffusion_pytorch_model.safetensors"
    else:
        run = _lora_student(env)
        path = run / "student" / LORA_FILE
    tensors = load_file(path)
    name = sorted(n for n in tensors if "lora_B" in n or what == "full")[1]
    tensors[name].view(-1)[3] = float("nan") if what == "full" else float("inf")
    meta = {"format": "pt"}
    if what == "lora":
        from safetensors import safe_open

        with safe_open(path, "pt") as f:
            meta = f.metadata()
    save_file({k: v.contiguous() for k, v in tensors.items()}, path, metadata=meta)
    assert not torch.isfinite(tensors[name]).all()
    return _use_student(env, run, verb), f"{name} holds NaN or infinite values"


# --- found by the session 28 audit ---------------------------------------------------------------------------------
@case
def a_torchrun_variable_that_is_no_number(env):
    # synthesize, distill and sample --prompts read WORLD_SIZE with int() (a traceback; the other verbs said it in one
    # line); a RANK or MASTER_PORT that is no number failed inside torch's rendezvous
    prompts = str(env.prompts())
    commands = {
        "synthesize": ["synthesize", "--teacher", str(env.teacher), "--prompts", prompts, *SYNTH],
        "distill": ["distill", "--teacher", str(env.teacher), "--data", str(env.synvid), *DISTILL],
        "sample": ["sample", "--model", str(env.teacher), "--prompts", prompts, *SMALL],
    }
    verb, _, what = env.variant.partition(":")
    if what == "world":
        env.monkeypatch.setenv("WORLD_SIZE", "abc")
        name, value = "WORLD_SIZE", "abc"
    else:
        for key, given in {"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29561"}.items():
            env.monkeypatch.setenv(key, given)
        name, value = {"rank": ("RANK", "x"), "rank-range": ("RANK", "2"), "port": ("MASTER_PORT", "notaport")}[what]
        env.monkeypatch.setenv(name, value)
    return [*commands[verb], "--out", str(env.tmp / "out")], f"{name}={value!r} is not"


@case
def a_clip_name_that_is_only_a_suffix(env):
    # '.mp4' ends in .mp4 but has no suffix: the clip was sampled, then writing it raised a traceback
    out = env.tmp / ("sub/.gif" if env.variant == "gif" else ".mp4")
    return ["sample", "--model", str(env.teacher), *SMALL, "--out", str(out)], "a file name ending in .mp4 or .gif"


@case
def a_jsonl_prompt_holding_a_lone_surrogate(env):
    # JSON's "\ud800" escape: synthesize sampled it, then failed writing the shard's header (a traceback, a marked
    # folder with no shard); sample --prompts sampled it as text
    path = env.tmp / "p.jsonl"
    path.write_text('{"prompt": "a red \\ud800 circle", "seed": 1}\n')
    out = str(env.tmp / "out")
    if env.variant == "sample":
        return ["sample", "--model", str(env.teacher), "--prompts", str(path), *SMALL, "--out", out], "is not UTF-8"
    return ["synthesize", "--teacher", str(env.teacher), "--prompts", str(path), *SYNTH, "--out", out], "is not UTF-8"


@case
def a_jsonl_key_misspelt(env):
    # {"Seed": 7} was ignored: the row took the default seed, silently
    path = env.tmp / "p.jsonl"
    path.write_text(json.dumps({"prompt": "a red circle", env.variant: 7}) + "\n")
    args = ["synthesize", "--teacher", str(env.teacher), "--prompts", str(path), *SYNTH, "--out", str(env.tmp / "o")]
    return args, f"has the key {env.variant!r}; did you mean 'seed'?"


@case
def a_list_flag_holding_no_number(env):
    # the message quoted a fragment ('[1') and never gave the form the flag takes
    args = ["synthesize", "--teacher", str(env.teacher), "--prompts", str(env.prompts()), "--out", str(env.tmp / "o")]
    return [*args, "--key-indices", "0,a"], "--key-indices takes comma-separated int values (e.g. --key-indices 1,2)"


@case
def a_scheduler_shift_that_is_no_positive_number(env):
    # NaN was sampled, then blamed on --guidance ("lower --guidance or check the model's weights")
    t = env.copy(env.teacher, "teacher")
    path = t / "scheduler" / "scheduler_config.json"
    config = json.loads(path.read_text())
    config["shift"] = {"nan": float("nan"), "text": "five", "negative": -1.0}[env.variant.split(":")[1]]
    path.write_text(json.dumps(config))
    if env.variant.startswith("synthesize"):
        args = ["synthesize", "--teacher", str(t), "--prompts", str(env.prompts()), *SYNTH]
    else:
        args = ["sample", "--model", str(t), *SMALL]
    return [*args, "--out", str(env.tmp / "o.mp4" if "sample" in args else env.tmp / "o")], "which is no positive"


@case
def an_output_inside_a_student_folder(env):
    # accepted; the next distill of the run replaced student/ whole and deleted the clip and its YAML
    student = env.student_run() / "student"
    if env.variant == "prompts":
        args = ["sample", "--model", str(env.teacher), "--prompts", str(env.prompts()), *SMALL]
        return [*args, "--out", str(student / "clips")], "lies inside the student folder"
    return ["sample", "--model", str(env.teacher), *SMALL, "--out", str(student / "c.mp4")], "inside the student folder"


@case
def a_clip_into_a_folder_of_sample_prompts(env):
    # accepted; the folder's next `sample --prompts` wrote row 2's clip over it, its .yaml left naming the old prompt
    clips = env.tmp / "clips"
    clips.mkdir()
    mark_folder(clips, "sample")
    return ["sample", "--model", str(env.teacher), *SMALL, "--out", str(clips / "000002.mp4")], (
        "the clip folder of `accvideo sample --prompts`"
    )


VARIANTS = {
    "a_torchrun_variable_that_is_no_number": (
        "synthesize:world",
        "distill:world",
        "sample:world",
        "synthesize:rank",
        "synthesize:rank-range",
        "distill:port",
    ),
    "a_clip_name_that_is_only_a_suffix": ("mp4", "gif"),
    "a_jsonl_prompt_holding_a_lone_surrogate": ("synthesize", "sample"),
    "a_jsonl_key_misspelt": ("Seed", "sed"),
    "a_scheduler_shift_that_is_no_positive_number": ("sample:nan", "synthesize:nan", "sample:negative"),
    "an_output_inside_a_student_folder": ("clip", "prompts"),
    "a_transformer_file_that_is_a_fifo": ("config", "weights"),
    "a_folder_lock_that_is_a_fifo": ("write", "read"),
    "a_lora_file_of_other_layers": ("sample", "export", "export-lora"),
    "a_full_transformer_in_place_of_the_lora_file": ("sample", "export-lora"),
    "a_lora_file_of_another_rank_or_alpha": ("rank:sample", "rank:export-lora", "alpha:sample", "alpha:export"),
    "a_student_json_without_its_teacher": ("null:sample", "deleted:export"),
    "export_a_student_whose_config_does_not_match_its_weights": ("fewer", "more", "billion"),
    "a_teacher_dir_that_is_not_a_pipeline": ("sample", "export"),
    "a_student_json_value_that_cannot_be": tuple(BAD_STUDENT),
    "truncated_transformer_weights": ("sample", "synthesize", "bench"),
    "garbled_transformer_config": ("sample", "synthesize", "bench"),
    "a_setting_that_is_not_finite": ("guidance=nan", "shift=inf", "guidance=inf"),
    "sample_with_a_decoder_json_spec_far_larger_than_its_weights": ("depth", "stage_depth", "width"),
    "a_single_process_command_under_torchrun": ("sample", "export", "evaluate", "no-count", "superscript"),
    "a_setting_that_yaml_cannot_read": ("guidance=[", "seed='3", "guidance=!!python/object:os.system x"),
    "settings_nested_past_the_recursion_limit": ("setting", "config"),
    "a_json_input_nested_past_the_recursion_limit": ("prompts", "model"),
    "a_device_torch_cannot_name": ("gpu", "meta", "CPU"),
    "a_negative_seed": ("prompts", "synthesize", "evaluate", "ablate"),
    "a_checkpoint_that_is_not_a_weights_only_file": ("pickle", "folder"),
    "a_count_that_would_fill_memory": ("evaluate", "distill"),
    "steps_past_any_sampler": ("sample", "synthesize"),
    "a_model_that_is_another_commands_output": ("distill", "synthesize"),
    "a_frame_rate_the_encoder_cannot_take": ("sample", "synthesize"),
    "a_device_this_machine_lacks": ("mps", "cuda:7"),
    "a_transformer_config_with_fewer_blocks_than_its_weights": ("sample", "synthesize", "bench"),
    "a_config_value_of_the_wrong_kind": ("sample", "synthesize"),
    "frames_past_64_bits": ("frames", "size"),
    "an_output_that_is_a_symbolic_link_loop": ("synthesize", "export"),
    "an_output_that_is_a_link_to_nothing": ("synthesize", "export", "sample"),
    "a_student_holding_nan_weights": ("full:sample", "full:export", "lora:sample", "lora:export-lora"),
    "reading_a_folder_another_command_is_writing": (
        "distill",
        "export",
        "sample",
        "sample-out",
        "demo",
        "ablate",
        "teacher-train",
        "tiny-model",
    ),
}


def _params():
    for name in CASES:
        for variant in VARIANTS.get(name, (None,)):
            yield pytest.param(name, variant, id=name if variant is None else f"{name}[{variant}]")


@pytest.mark.parametrize(("name", "variant"), list(_params()))
def test_hostile_input_is_one_line_exit_2_and_touches_nothing(name, variant, tmp_path, request, monkeypatch, capsys):
    env = Env(tmp_path, request, monkeypatch, variant)
    argv, words = CASES[name](env)
    roots = [tmp_path, env.teacher] + ([env.synvid] if env.used_synvid else [])
    before = snapshot(*roots)
    capsys.readouterr()  # what building a session fixture printed is not the command's
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    assert exc.value.code == 2, (out, err)
    assert "Traceback" not in out + err
    # a bar's redraws share a line, split by carriage returns; a line of blanks (a bar erased in a log) is a defect
    lines = [line for line in err.split("\n") if not all(PROGRESS.fullmatch(f) for f in line.split("\r") if f)]
    assert len(lines) == 1 and lines[0].startswith("error: "), repr(err)
    assert words in lines[0], lines[0]
    after = snapshot(*roots)
    assert {p: after.get(p) for p in before} == before  # no pre-existing file modified or removed
    leftovers = [p for p in after if p not in before and p.name.endswith((".part", ".part.mp4"))]
    assert not leftovers  # nothing half-written stays


def test_a_rerun_replaces_a_link_among_its_outputs_and_never_writes_through_it(tmp_path, capsys):
    """world-train-classifier wrote classifier.json and its weights in place: a link there had the user's file it
    points at overwritten (toy1d's JSON and figures alike)."""
    out, notes = tmp_path / "wc", tmp_path / "notes.txt"
    notes.write_bytes(USER_BYTES)
    args = ["world-train-classifier", "--out", str(out), "steps=1", "eval_items=0", "--size", "32x32", "--frames", "5"]
    with pytest.raises(SystemExit) as exc:
        main([*args, "--batch-size", "2"])
    assert exc.value.code in (0, None)
    for name in ("classifier.json", "classifier.safetensors"):
        (out / name).unlink()
        (out / name).symlink_to(notes)
    with pytest.raises(SystemExit) as exc:
        main([*args, "--batch-size", "2"])
    assert exc.value.code in (0, None), capsys.readouterr().err
    assert notes.read_bytes() == USER_BYTES
    assert not (out / "classifier.json").is_symlink() and json.loads((out / "classifier.json").read_text())["config"]


# --- beyond one line: what the guards let through, and whose temporary files a cleanup may remove ----------------


def test_overwrite_redoes_a_damaged_shard_bit_for_bit(synvid, tiny_wan_dir, tmp_path, capsys):
    """`synthesize --overwrite` over a flipped bit regenerates exactly the shard that was there before."""
    data = tmp_path / "syn"
    shutil.copytree(synvid, data)
    shard = data / "shard-000001.safetensors"
    good = shard.read_bytes()
    flip_last_bit(shard)
    args = ["synthesize", "--teacher", str(tiny_wan_dir), "--prompts", str(synvid.parent / "p.txt"), "--out", str(data)]
    with pytest.raises(SystemExit) as exc:
        main([*args, *SYNVID, *SYNVID_BATCH, "--overwrite"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and "kept 1 complete shard(s)" in out and "synthesized 5 item(s) in 1 shard(s)" in out
    assert shard.read_bytes() == good


def test_cleanup_removes_only_dead_writers_temporary_files(tmp_path):
    """A temporary name carries host and pid: a live writer's file is never stale, a dead one's (or our own) is."""
    live = temp_name(tmp_path / "shard-000000.safetensors").name.replace(f"-{os.getpid()}.", f"-{os.getppid()}.")
    dead_pid = max(int(p) for p in os.listdir("/proc") if p.isdigit()) + 100_000  # above every pid in use
    dead = live.replace(f"-{os.getppid()}.", f"-{dead_pid}.")
    ours = temp_name(tmp_path / "shard-000002.safetensors").name
    other_host = ".shard-000003.safetensors.elsewhere-1.part"
    for name in (live, dead, ours, other_host):
        (tmp_path / name).write_bytes(b"x")
    from accvideo.core.files import remove_stale_temps

    assert remove_stale_temps(tmp_path, ".shard-") == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live, other_host])
    assert not is_stale_temp(tmp_path / live) and not is_stale_temp(tmp_path / other_host)


def test_a_killed_video_writers_temporary_clips_are_removed_by_the_rerun(tiny_wan_dir, tmp_path, capsys):
    """Video writers name their temporary file `.NAME.HOST-PID.part.mp4` (the encoder picks the format from the
    suffix), which the cleanup did not recognise: every kill left one for good, beside the clips."""
    from accvideo.core.files import remove_stale_temps, writer_id

    host = writer_id().rsplit("-", 1)[0]
    dead_pid = max(int(p) for p in os.listdir("/proc") if p.isdigit()) + 100_000
    dead, live = f".clip.mp4.{host}-{dead_pid}.part.mp4", f".clip.gif.{host}-{os.getppid()}.part.gif"
    other = f".notes.txt.{host}-{dead_pid}.part"  # another output's: not this clip's to remove
    for name in (dead, live, other, "clip-notes.mp4"):
        (tmp_path / name).write_bytes(b"x")
    assert is_stale_temp(tmp_path / dead) and not is_stale_temp(tmp_path / live)
    assert remove_stale_temps(tmp_path, ".clip.") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live, other, "clip-notes.mp4"])
    # sample's rerun removes what a killed run of the same name left
    out = tmp_path / "s" / "clip.mp4"
    out.parent.mkdir()
    (out.parent / dead).write_bytes(b"x")
    args = [
        "sample",
        "--model",
        str(tiny_wan_dir),
        "--steps",
        "2",
        "--frames",
        "5",
        "--size",
        "32x32",
        "--out",
        str(out),
    ]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 0 and not (out.parent / dead).exists() and out.is_file(), capsys.readouterr().err


def test_a_folder_lock_refuses_a_live_writer_and_takes_over_a_dead_ones(tmp_path):
    """One writer per run folder: a live holder (the parent process) is refused; a dead one's lock is taken over,
    and releasing removes only this writer's lock."""
    from accvideo.core.files import writer_id
    from accvideo.core.outputs import LOCK, FolderLock
    from accvideo.errors import AccVideoError

    host = writer_id().rsplit("-", 1)[0]
    lock = tmp_path / LOCK
    lock.write_text(f"{host}-{os.getppid()}")
    with pytest.raises(AccVideoError, match="is writing"):
        FolderLock(tmp_path, "distill")
    assert lock.read_text() == f"{host}-{os.getppid()}"  # the live writer's lock is left alone
    dead_pid = max(int(p) for p in os.listdir("/proc") if p.isdigit()) + 100_000
    lock.write_text(f"{host}-{dead_pid}")
    held = FolderLock(tmp_path, "distill")
    assert lock.read_text() == writer_id()
    lock.write_text("elsewhere-1")  # since taken by a writer on another host (a shared file system)
    held.release()
    assert lock.read_text() == "elsewhere-1"
    with pytest.raises(AccVideoError, match="is writing"):  # whose liveness this host cannot know
        FolderLock(tmp_path, "distill")
    lock.unlink()
    FolderLock(tmp_path, "distill").release()
    assert not lock.exists()


def test_two_writers_taking_over_one_dead_writers_lock_do_not_both_go_on(tmp_path, monkeypatch):
    """Two reruns that find the same dead writer's lock: the first removed it and made its own, then the second
    removed the first's fresh lock and made its own, and both wrote the folder. The second now sees the lock changed
    under it and is refused as beside a live writer. (The race is replayed in one process: the first rerun takes
    the folder over while the second has judged the old lock stale.)"""
    import accvideo.core.outputs as outputs
    from accvideo.core.files import writer_id
    from accvideo.core.outputs import LOCK, FolderLock
    from accvideo.errors import AccVideoError

    host = writer_id().rsplit("-", 1)[0]
    dead = f"{host}-{max(int(p) for p in os.listdir('/proc') if p.isdigit()) + 100_000}"
    (tmp_path / LOCK).write_text(dead)
    real, first = outputs.is_stale_writer, []

    def judged_stale(holder):
        if holder == writer_id():  # the first rerun's lock: in this replay, another process alive beside it
            return False
        stale = real(holder)
        if holder == dead and not first:  # the second rerun judged the lock stale; the first one is quicker
            first.append("taking over")
            first[0] = FolderLock(tmp_path, "distill")
        return stale

    monkeypatch.setattr(outputs, "is_stale_writer", judged_stale)
    with pytest.raises(AccVideoError, match=r"another `accvideo distill` \(.*\) is writing"):
        FolderLock(tmp_path, "distill")
    assert (tmp_path / LOCK).read_text() == writer_id() and len(first) == 1  # the first's lock, untouched


def _record_many(folder: str, tag: int, n: int) -> None:
    from accvideo.core.outputs import record_file

    for i in range(n):
        path = Path(folder) / f"w{tag}-{i}.txt"
        path.write_text(f"{tag} {i}\n")
        record_file(path, "prompts")


def test_writers_of_different_files_in_one_folder_at_once_keep_every_ledger_entry(tmp_path):
    """The ledger is read, changed and written back by each single-file writer: four processes recording files of
    their own into one folder at once keep all their entries (an unlocked read-modify-write lost some, and the next
    rerun to a lost file was refused as 'not written by accvideo')."""
    from accvideo.core.outputs import LEDGER

    run_forked(_record_many, [(str(tmp_path), tag, 40) for tag in range(4)], 60)
    files = json.loads((tmp_path / LEDGER).read_text())["files"]
    assert sorted(files) == sorted(f"w{tag}-{i}.txt" for tag in range(4) for i in range(40))
    for name, entry in files.items():
        assert entry["sha256"] == hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()


def test_a_rerun_replaces_its_own_outputs_but_not_edited_ones(tmp_path, capsys):
    """The ledger: `prompts` may rewrite its own file; once the user edits it, it is theirs."""
    out = tmp_path / "p.txt"
    for _ in range(2):
        with pytest.raises(SystemExit) as exc:
            main(["prompts", "--n", "3", "--out", str(out)])
        assert exc.value.code == 0
    out.write_text(out.read_text() + "a prompt of my own\n")
    edited = out.read_bytes()
    with pytest.raises(SystemExit) as exc:
        main(["prompts", "--n", "3", "--out", str(out)])
    assert exc.value.code == 2 and "changed since" in capsys.readouterr().err
    assert out.read_bytes() == edited


def test_a_video_writer_refuses_a_bad_rate_and_an_encoder_that_wrote_nothing(tmp_path, monkeypatch):
    """demo's grid reaches write_video with its own fps: the rate is checked there too, and an encoder that failed
    quietly (ffmpeg on an absurd rate wrote no file) is one line, never a rename of nothing (was FileNotFoundError)."""
    import numpy as np

    from accvideo.core import video
    from accvideo.errors import AccVideoError

    frames = np.zeros((5, 16, 16, 3), np.uint8)
    with pytest.raises(AccVideoError, match=r"fps must lie in \[1, 1,000\]"):
        video.write_video(tmp_path / "a.mp4", frames, fps=2**40)
    monkeypatch.setattr(video, "_write_frames", lambda *a: None)
    with pytest.raises(AccVideoError, match="the encoder failed: it wrote no file"):
        video.write_video(tmp_path / "b.mp4", frames, fps=8)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    assert video.write_video(tmp_path / "c.mp4", frames, fps=1000).stat().st_size > 0  # the largest rate still encodes


def test_synthesize_releases_its_folder_lock(tiny_wan_dir, tmp_path, capsys):
    """The lock that refuses a second synthesize is gone when the run ends, so the rerun resumes."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle moving left\n")
    args = ["synthesize", "--teacher", str(tiny_wan_dir), "--prompts", str(prompts), "--out", str(tmp_path / "s")]
    for _ in range(2):
        with pytest.raises(SystemExit) as exc:
            main([*args, *SYNTH])
        assert exc.value.code == 0, capsys.readouterr()
        assert not (tmp_path / "s" / ".accvideo-lock").exists()
    assert "kept 1 complete shard(s)" in capsys.readouterr().out
