"""Your own model family (docs/own-model.md): an adapter class that an installed package names in the
`accvideo.adapters` entry-point group is used by every command, and generic code takes it without branching on
its name. The plugin here is a package on sys.path with a dist-info, as `pip install` leaves one."""

from __future__ import annotations

import json
import shutil
import sys
import textwrap

import pytest
from cli_helpers import run_cli
from safetensors.torch import load_file

import accvideo.models as models
from accvideo.synthesize import SynVidDataset

SMALL = ["--steps", "4", "--key-steps", "2", "--frames", "5", "--size", "32x32", "--device", "cpu"]
PLUGIN = '''
from accvideo.models.wan import WanAdapter


class ToyVideoAdapter(WanAdapter):
    """A pipeline class of its own that saves the Wan 2.1 components (a subclass of WanPipeline, say)."""

    family = "toyvideo"
    pipeline_class = "ToyVideoPipeline"
    loads_as = "WanPipeline"
    lora_targets = ("to_q", "to_v")
'''


def install_plugin(root, monkeypatch, module: str, entry: str = "toyvideo_plugin:ToyVideoAdapter") -> None:
    """A package `toyvideo_plugin` with its entry point, importable from `root`; the registry is restored after."""
    (root / "toyvideo_plugin").mkdir(parents=True)
    (root / "toyvideo_plugin" / "__init__.py").write_text(textwrap.dedent(module))
    info = root / "toyvideo_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toyvideo-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[accvideo.adapters]\ntoyvideo = {entry}\n")
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delitem(sys.modules, "toyvideo_plugin", raising=False)  # another test's package of that name
    monkeypatch.setattr(models, "ADAPTERS", dict(models.ADAPTERS))
    monkeypatch.setattr(models, "VARIANTS", list(models.VARIANTS))
    monkeypatch.setattr(models, "_plugins", {})


def own_teacher(tiny_wan_dir, tmp_path):
    """The tiny Wan saved under a pipeline class accvideo does not know."""
    teacher = tmp_path / "toy-teacher"
    shutil.copytree(tiny_wan_dir, teacher)
    index = json.loads((teacher / "model_index.json").read_text())
    (teacher / "model_index.json").write_text(json.dumps({**index, "_class_name": "ToyVideoPipeline"}))
    return teacher


def test_a_family_of_your_own_synthesizes_distils_and_samples_as_its_stock_twin(
    tiny_wan_dir, tmp_path, capsys, monkeypatch
):
    teacher = own_teacher(tiny_wan_dir, tmp_path)
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle moving left\na blue square moving up\n")
    synthesize = ["synthesize", "--prompts", str(prompts), *SMALL]

    code, _, err = run_cli([*synthesize, "--teacher", str(teacher), "--out", str(tmp_path / "toy-syn")], capsys)
    assert code == 2 and "ToyVideoPipeline, which accvideo does not support" in err and "own-model.md" in err

    install_plugin(tmp_path / "site", monkeypatch, PLUGIN)
    for folder, syn in ((teacher, "toy-syn"), (tiny_wan_dir, "wan-syn")):
        code, _, err = run_cli([*synthesize, "--teacher", str(folder), "--out", str(tmp_path / syn)], capsys)
        assert code == 0, err
    toy, wan = (load_file(next((tmp_path / s).glob("shard-*.safetensors"))) for s in ("toy-syn", "wan-syn"))
    assert toy.keys() == wan.keys() and all(toy[k].equal(wan[k]) for k in toy)  # the same teacher, bit for bit
    assert SynVidDataset(tmp_path / "toy-syn").settings.family == "toyvideo"

    run = tmp_path / "run"
    distill = ["distill", "--teacher", str(teacher), "--data", str(tmp_path / "toy-syn"), "--out", str(run)]
    code, _, err = run_cli(
        [*distill, "iterations=1", "batch=2", "head_channels=8", "lora_rank=2", "device=cpu"], capsys
    )
    assert code == 0, err
    student = json.loads((run / "student" / "student.json").read_text())
    assert student["family"] == "toyvideo" and student["lora"]["targets"] == ["to_q", "to_v"]  # the plugin's

    code, _, err = run_cli(
        ["sample", "--model", str(run), "--prompt", "a red circle", "--out", str(tmp_path / "c.mp4")], capsys
    )
    assert code == 0 and (tmp_path / "c.mp4").stat().st_size > 0, err
    # export writes folders that a stock pipeline loads; for a class of your own it refuses before writing
    code, _, err = run_cli(["export", str(run), "--out", str(tmp_path / "exported")], capsys)
    assert code == 2 and err.count("\n") == 1 and "ToyVideoPipeline" in err and not (tmp_path / "exported").exists()


@pytest.mark.parametrize(
    ("module", "entry", "line"),
    [
        ("import not_installed_anywhere\n", "toyvideo_plugin:Adapter", "does not import (No module named"),
        ("Adapter = 3\n", "toyvideo_plugin:Adapter", "is not a class"),
        ("class Adapter:\n    family = 'x'\n", "toyvideo_plugin:Adapter", "lacks pipeline_class, components"),
        (PLUGIN.replace('"ToyVideoPipeline"', '"WanPipeline"'), None, "would replace the built-in one of WanPipeline"),
    ],
    ids=["import-error", "not-a-class", "not-an-adapter", "replaces-a-built-in"],
)
def test_a_broken_plugin_is_one_line_naming_it(tiny_wan_dir, tmp_path, capsys, monkeypatch, module, entry, line):
    """Said when a folder needs a plugin; a folder of a built-in class never loads one, so it still samples."""
    install_plugin(tmp_path / "site", monkeypatch, module, *([entry] if entry else []))
    sample = ["sample", *SMALL[:2], "--frames", "5", "--size", "32x32", "--device", "cpu"]
    code, _, err = run_cli(
        [*sample, "--model", str(own_teacher(tiny_wan_dir, tmp_path)), "--out", str(tmp_path / "c.mp4")], capsys
    )
    assert code == 2 and err.count("\n") == 1 and line in err, err
    assert not (tmp_path / "c.mp4").exists()
    code, _, err = run_cli([*sample, "--model", str(tiny_wan_dir), "--out", str(tmp_path / "wan.mp4")], capsys)
    assert code == 0, err
