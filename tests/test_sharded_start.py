"""Real-size start-up (docs/scale-out.md): distillation loads the transformer alone; a transformer built on the meta
device and filled from its safetensors (whole, or each FSDP2 rank its own rows) equals the one diffusers loads."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from accvideo.core import parallel
from accvideo.distill import Distiller, quick_config, state
from accvideo.errors import AccVideoError
from accvideo.models import load_adapter
from accvideo.models.base import LoadParts
from accvideo.models.identity import LEGACY_PREFIX, PREFIX, teacher_identity
from accvideo.models.tiny import save_tiny_hunyuan

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def hy_dir(tmp_path_factory):
    return save_tiny_hunyuan(tmp_path_factory.mktemp("hy") / "hy", seed=0)


@pytest.mark.parametrize("family", ["wan", "hunyuan"])
def test_empty_transformer_filled_whole_equals_from_pretrained(family, tiny_wan_dir, hy_dir):
    folder = tiny_wan_dir if family == "wan" else hy_dir
    # bf16: the model's float32-kept modules (Wan's norms and time embedder) must stay float32 as diffusers keeps them
    ref = load_adapter(folder, dtype=torch.bfloat16, parts=LoadParts(text=False, vae=False))
    empty = load_adapter(folder, dtype=torch.bfloat16, parts=LoadParts(text=False, vae=False, empty_transformer=True))
    assert all(p.is_meta for p in empty.transformer.parameters())
    assert (empty.device, empty.dtype, empty.latent_shape(9, 32, 32)) == (
        ref.device,
        ref.dtype,
        ref.latent_shape(9, 32, 32),
    )
    files = sorted((folder / "transformer").glob("*.safetensors"))
    assert parallel.load_weights(empty.transformer, files, torch.device("cpu")) == []
    got, want = empty.transformer.state_dict(), ref.transformer.state_dict()
    assert sorted(got) == sorted(want)
    for k in want:
        assert got[k].dtype == want[k].dtype and torch.equal(got[k], want[k]), k
    for (name, b), (_, b_ref) in zip(empty.transformer.named_buffers(), ref.transformer.named_buffers(), strict=True):
        assert torch.equal(b, b_ref), name  # non-persistent (rotary tables): computed at build, kept through the fill
    assert ref.pipe.text_encoder is None and ref.pipe.vae is None and ref.vae is None


def test_sharded_start_equals_whole_load(tiny_wan_dir, tmp_path):
    """2 gloo processes: FSDP2-sharded meta pairs (full and LoRA students) filled rank by rank equal one whole load."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += [str(HERE / "sharded_check.py"), str(tiny_wan_dir), str(tmp_path)]
    proc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert sorted(result) == ["lora0/student", "lora0/teacher", "lora4/student"]
    for part, r in result.items():
        assert r["keys_equal"] and r["unequal"] == [] and r["meta_left"] == [], part
        assert r["tensors"] >= 90, part  # every weight of the 3-block transformer (and the LoRA's A and B)


def test_distill_loads_neither_text_encoders_nor_vae(tiny_wan_dir, synvid, tmp_path):
    d = Distiller(quick_config(teacher=str(tiny_wan_dir), data=str(synvid), out=str(tmp_path / "run")))
    for adapter in (d.pair.teacher, d.pair.student):
        assert adapter.pipe.text_encoder is None and adapter.pipe.vae is None and adapter.vae is None
    assert d.pair.teacher.latent_shape(9, 32, 32) == (16, 3, 4, 4)  # geometry from the VAE's config alone
    # grad_checkpointing=auto: 3 x 2 x 2 tokens x 24 wide stays off, and config.yaml says so
    assert d.cfg.grad_checkpointing == "auto" and d.checkpointing is False
    d.out.mkdir()
    state.write_config(d)
    assert yaml.safe_load((d.out / "config.yaml").read_text())["grad_checkpointing_resolved"] == "off"


def test_grad_checkpointing_auto_follows_tokens_times_width():
    cfg = quick_config()
    assert cfg.checkpointing(32_760, 1_536)  # Wan2.1-1.3B at 480x832x81
    assert not cfg.checkpointing(4_680, 1_536)  # the same model at 480x832x9
    assert quick_config(grad_checkpointing="on").checkpointing(1, 1)
    assert not quick_config(grad_checkpointing="off").checkpointing(32_760, 5_120)
    assert quick_config(grad_checkpointing=True).grad_checkpointing == "on"  # older config.yaml files
    with pytest.raises(ValueError, match="auto, on or off"):
        quick_config(grad_checkpointing="sometimes")


def test_identity_reads_what_defines_the_weights(tiny_wan_dir, tmp_path):
    teacher = shutil.copytree(tiny_wan_dir, tmp_path / "t")
    first = teacher_identity(teacher)
    assert first.startswith(PREFIX) and first == teacher_identity(tiny_wan_dir)  # content, not the path
    weights = teacher / "transformer" / "diffusion_pytorch_model.safetensors"
    os.utime(weights, (1, 1))  # a touch (or a copy that drops times) keeps the identity
    (teacher / ".accvideo-output.json").write_text("{}")  # hidden files are not the teacher
    assert teacher_identity(teacher) == first
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0xFF  # a byte of the last weights changes: the last sampled block holds it
    weights.write_bytes(bytes(data))
    changed = teacher_identity(teacher)
    assert changed != first
    cfg = teacher / "transformer" / "config.json"
    cfg.write_text(cfg.read_text().replace('"num_layers": 3', '"num_layers": 4'))
    assert teacher_identity(teacher) not in (first, changed)
    # an artifact that recorded the older full hash is compared with a full hash
    assert teacher_identity(teacher, like=LEGACY_PREFIX + "0" * 64).startswith(LEGACY_PREFIX)


def test_identity_of_a_large_file_reads_its_header_and_samples(tmp_path):
    from safetensors.torch import save_file

    from accvideo.models import identity

    folder = tmp_path / "m"
    folder.mkdir()
    weights = folder / "w.safetensors"
    save_file({"w": torch.zeros(5 * identity.SMALL_BYTES // 4 // 4, 4)}, str(weights))  # above SMALL_BYTES
    base = teacher_identity(folder)
    size = weights.stat().st_size
    with weights.open("r+b") as f:  # a byte between two sampled blocks: not seen (what the identity does not cover)
        f.seek(size // 2 + identity.BLOCK * 2)
        f.write(b"\x01")
    assert teacher_identity(folder) == base
    with weights.open("r+b") as f:  # a byte in a sampled block (the last of the data)
        f.seek(size - 1)
        f.write(b"\x01")
    assert teacher_identity(folder) != base


def test_students_made_before_the_sampled_identity_still_load(tiny_wan_dir, tmp_path):
    """A student.json with the older every-byte identity is checked with that hash: its own teacher passes, another
    teacher is refused with one line."""
    from accvideo.models.identity import content_sha256
    from accvideo.models.student import check_teacher

    legacy = {"teacher": content_sha256(tiny_wan_dir)}
    assert legacy["teacher"].startswith(LEGACY_PREFIX)
    check_teacher(tmp_path, legacy, tiny_wan_dir)
    with pytest.raises(AccVideoError, match="holds another teacher"):
        check_teacher(tmp_path, {"teacher": LEGACY_PREFIX + "0" * 64}, tiny_wan_dir)
