"""Family defaults (models/defaults.py): the command's value > accvideo.json > published defaults of a real-width
transformer > the built-in's 17x64x64; tiny test models keep their small clips."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from accvideo.errors import AccVideoError
from accvideo.models.defaults import WAN_NEGATIVE_PROMPT, fill_video, video_defaults
from accvideo.sample.config import SampleConfig
from accvideo.synthesize.config import SynthConfig


def config_only(folder, heads: int, dim: int):
    """A folder with just the transformer's config.json (what the defaults read), of `heads` x `dim` width."""
    (folder / "transformer").mkdir(parents=True)
    (folder / "transformer" / "config.json").write_text(
        json.dumps({"num_attention_heads": heads, "attention_head_dim": dim})
    )
    return folder


def test_tiny_and_builtin_models_keep_small_clips(tiny_wan_dir):
    from accvideo.core.runtime import resolve_model

    for folder in (tiny_wan_dir, resolve_model("builtin")):
        values, source = video_defaults(folder, "wan")
        assert values == {"frames": 17, "height": 64, "width": 64, "negative_prompt": "", "fps": 8}
        assert "built-in" in source


@pytest.mark.parametrize(
    ("family", "heads", "dim", "want"),
    [
        ("wan", 12, 128, (81, 480, 832, WAN_NEGATIVE_PROMPT, 16)),  # Wan2.1-T2V-1.3B
        ("wan", 40, 128, (81, 480, 832, WAN_NEGATIVE_PROMPT, 16)),  # Wan2.1-T2V-14B (and each Wan 2.2 A14B expert)
        ("wan2.2-ti2v", 24, 128, (121, 704, 1280, WAN_NEGATIVE_PROMPT, 24)),  # Wan2.2-TI2V-5B
        ("hunyuanvideo", 24, 128, (129, 544, 960, "", 24)),
        ("wan", 12, 64, (17, 64, 64, "", 8)),  # not a published width: the small clips
        ("wan2.2-ti2v", 12, 128, (17, 64, 64, "", 8)),  # a Wan 2.1 width is not TI2V's
    ],
)
def test_real_width_transformers_get_their_published_defaults(tmp_path, family, heads, dim, want):
    folder = config_only(tmp_path / "m", heads, dim)
    values, _ = video_defaults(folder, family)
    assert tuple(values[k] for k in ("frames", "height", "width", "negative_prompt", "fps")) == want
    for config in (SynthConfig, SampleConfig):
        cfg, _ = fill_video(config(), folder, family)
        assert (cfg.frames, cfg.height, cfg.width, cfg.negative_prompt, cfg.fps) == want
    given, source = fill_video(SynthConfig(frames=9, height=32, width=48, negative_prompt="x", fps=5), folder, family)
    assert (given.frames, given.height, given.width, given.negative_prompt, given.fps, source) == (
        9,
        32,
        48,
        "x",
        5,
        None,
    )
    _, source = fill_video(SynthConfig(frames=9, height=32, width=48, fps=5), folder, family)
    assert source.startswith("negative prompt from ")  # only what the command left out is said to be a default
    _, source = fill_video(SynthConfig(frames=9), folder, family)
    assert source.startswith("size, negative prompt and fps from ")


def test_accvideo_json_overrides_the_family(tmp_path):
    folder = config_only(tmp_path / "m", 12, 128)
    (folder / "accvideo.json").write_text(json.dumps({"frames": 33, "negative_prompt": "blurry", "fps": 12}))
    cfg, source = fill_video(SampleConfig(width=640), folder, "wan")
    assert (cfg.frames, cfg.height, cfg.width, cfg.negative_prompt, cfg.fps) == (33, 480, 640, "blurry", 12)
    assert "accvideo.json" in source and "Wan 2.1 published" in source
    (folder / "accvideo.json").write_text(json.dumps({"frames": "many"}))
    with pytest.raises(AccVideoError, match="frames must be a positive integer"):
        video_defaults(folder, "wan")
    (folder / "accvideo.json").write_text(json.dumps({"fps": 5000}))
    with pytest.raises(AccVideoError, match="fps must be at most 1,000"):
        video_defaults(folder, "wan")


def test_sample_prints_and_records_the_folders_settings(tiny_wan_dir, tmp_path, capsys):
    from accvideo.cli import main

    teacher = shutil.copytree(tiny_wan_dir, tmp_path / "t")
    (teacher / "accvideo.json").write_text(
        json.dumps({"frames": 5, "height": 32, "width": 32, "guidance": 2.5, "fps": 12})
    )
    out = tmp_path / "c" / "clip.mp4"
    with pytest.raises(SystemExit) as done:
        main(["sample", "--model", str(teacher), "--steps", "2", "--device", "cpu", "--out", str(out)])
    assert done.value.code == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("settings:"))
    assert "5 frames at 32x32 (12 fps)" in line and "guidance 2.5" in line and "accvideo.json" in line
    clip = yaml.safe_load(out.with_suffix(".yaml").read_text())
    assert clip["resolved_size"] == [5, 32, 32] and clip["resolved_guidance"] == 2.5 and clip["fps"] == 12
    import imageio_ffmpeg

    meta = next(imageio_ffmpeg.read_frames(str(out)))
    assert meta["fps"] == 12  # the MP4 plays at the folder's frame rate
