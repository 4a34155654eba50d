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


@pytest.mark.parametrize(
    "text, says",
    [
        ('{"guidance": NaN}', "guidance must be a finite number >= 0; got nan"),  # Python's JSON reads NaN ...
        ('{"guidance_2": 1e999}', "guidance_2 must be a finite number >= 0; got inf"),  # ... and 1e999 as inf
        (
            '{"max_sequence_length": 100000000000000000000}',
            "max_sequence_length must be at most 1,024; got 1" + "0" * 20,
        ),
    ],
)
def test_accvideo_json_refuses_numbers_no_model_can_use(tmp_path, text, says):
    """A NaN guidance was taken and sampled to NaN latents, the error then blaming --guidance, not the file."""
    folder = config_only(tmp_path / "m", 12, 128)
    (folder / "accvideo.json").write_text(text)
    with pytest.raises(AccVideoError) as refused:
        video_defaults(folder, "wan")
    assert str(refused.value) == f"{folder / 'accvideo.json'}: {says}"


@pytest.mark.parametrize(
    "own, says",
    [
        ({"frames": 18}, "frames must be of the form 4k+1 (e.g. 17 or 21); got 18"),
        ({"height": 65}, "height must be a positive multiple of 16 (e.g. 64); got 65"),
        ({"frames": 10**11}, "frames must be at most 10,000 (the teachers make 17 to 129); got 100000000000"),
    ],
)
def test_sample_and_synthesize_name_accvideo_json_for_a_size_it_gave(tiny_wan_dir, tmp_path, capsys, own, says):
    """The size checks named no file, so a user who gave no --frames looked for a flag (10**11 frames: a
    traceback); the line now says where the value came from, and nothing is written."""
    from cli_helpers import run_cli

    teacher = shutil.copytree(tiny_wan_dir, tmp_path / "t")
    (teacher / "accvideo.json").write_text(json.dumps(own))
    (tmp_path / "p.txt").write_text("a red circle\n")
    where = f"{teacher / 'accvideo.json'}, then the built-in model's small clips"
    for args in (
        ["sample", "--model", str(teacher), "--prompt", "a red circle", "--out", str(tmp_path / "c.mp4")],
        ["synthesize", "--teacher", str(teacher), "--prompts", str(tmp_path / "p.txt"), "--out", str(tmp_path / "s")],
    ):
        code, _, err = run_cli(
            [*args, "--steps", "2", "--device", "cpu", *(["--key-steps", "1"] if args[0] == "synthesize" else [])],
            capsys,
        )
        assert code == 2 and err.count("\n") == 1, err
        assert err.startswith(f"error: {says} (") and where in err, err
        assert err.rstrip().endswith("; fix it there or give it on the command line)"), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.txt", "t"]


def test_a_size_given_on_the_command_line_is_refused_without_naming_where_the_others_came_from(
    tiny_wan_dir, tmp_path, capsys
):
    """`--size 8x32` with frames from accvideo.json said "(frames ... from accvideo.json; fix it there ...)": the
    refused height was the user's own."""
    from cli_helpers import run_cli

    teacher = shutil.copytree(tiny_wan_dir, tmp_path / "t")
    (teacher / "accvideo.json").write_text(json.dumps({"frames": 9}))
    args = ["sample", "--model", str(teacher), "--size", "8x32", "--steps", "2", "--out", str(tmp_path / "c.mp4")]
    code, _, err = run_cli(args, capsys)
    assert code == 2 and err == "error: height must be a positive multiple of 16 (e.g. 16); got 8\n"


@pytest.mark.parametrize(
    "text, says",
    [
        ('{"max_sequence_length": 8192}', "max_sequence_length must be at most 1,024; got 8192"),  # 1.2 GB, tiny
        ('{"frames": 5, "fps": 8, "frames": 9}', "gives 'frames' twice; keep one of them"),
        (json.dumps({"negative_prompt": "x" * 20_001}), "negative_prompt must be at most 20,000 characters"),
        ('{"prompt_template": "abc"}', 'prompt_template must be an object {"template": "...{}...", "crop_start"'),
        ('{"prompt_template": {"template": "a {}"}}', "prompt_template must be an object"),  # crop_start missing
        ('{"prompt_template": {"template": 5, "crop_start": 0}}', "prompt_template template must be a string"),
        ('{"prompt_template": {"template": "{x}", "crop_start": 0}}', "must hold exactly one {} (where the prompt"),
        ('{"prompt_template": {"template": "no placeholder", "crop_start": 0}}', "must hold exactly one {}"),
        ('{"prompt_template": {"template": "{} and {}", "crop_start": 0}}', "must hold exactly one {}"),
        (
            '{"prompt_template": {"template": "a { {}", "crop_start": 0}}',
            "prompt_template template cannot be formatted",
        ),
        ('{"prompt_template": {"template": "a {}", "crop_start": -1}}', "crop_start must be an integer >= 0"),
        ('{"prompt_template": {"template": "a {}", "crop_start": 1.5}}', "crop_start must be an integer >= 0"),
    ],
)
def test_accvideo_json_refuses_text_settings_no_pipeline_can_use(tmp_path, text, says):
    """A template without {} dropped every prompt (exit 0); a number, a {x} or no crop_start were tracebacks or
    NaN latents blamed on --guidance; a key given twice kept the last; a 10 MB negative prompt took 3.3 GB."""
    from accvideo.models.hunyuan import text_settings

    folder = config_only(tmp_path / "m", 12, 128)
    (folder / "accvideo.json").write_text(text)
    for read in (lambda: video_defaults(folder, "hunyuanvideo"), lambda: text_settings(folder)):
        with pytest.raises(AccVideoError) as refused:
            read()
        assert str(refused.value).startswith(str(folder / "accvideo.json")) and says in str(refused.value)


def test_a_template_with_literal_braces_and_one_placeholder_is_taken(tmp_path):
    from accvideo.models.hunyuan import text_settings

    folder = config_only(tmp_path / "m", 12, 128)
    template = {"template": "{{system}} describe: {}", "crop_start": 3}
    (folder / "accvideo.json").write_text(json.dumps({"prompt_template": template, "negative_prompt": "x" * 20_000}))
    assert text_settings(folder)["prompt_template"] == template


def test_accvideo_json_frames_and_size_past_the_position_table_name_the_file(tiny_wan_dir, tmp_path):
    """The rope-limit line (models/base.py) named no file for a frame count accvideo.json gave."""
    teacher = shutil.copytree(tiny_wan_dir, tmp_path / "t")  # rope_max_seq_len 32, patch (1, 2, 2), VAE 4x / 8x
    for own, says in (
        ({"frames": 129}, "frames 129 is too large for this model (more positions than its transformer's "),
        ({"height": 528}, "height 528 is too large for this model"),
        ({"frames": 10_000}, "use frames of at most 125 there"),
    ):
        (teacher / "accvideo.json").write_text(json.dumps(own))
        with pytest.raises(AccVideoError) as refused:
            video_defaults(teacher, "wan")
        assert str(refused.value).startswith(f"{teacher / 'accvideo.json'}: ") and says in str(refused.value)
    (teacher / "accvideo.json").write_text(json.dumps({"frames": 125, "height": 512, "width": 512}))
    assert video_defaults(teacher, "wan")[0]["frames"] == 125  # the largest that fits is taken


WAN21_VAE = {"temperal_downsample": [False, True, True], "dim_mult": [1, 2, 4, 4]}
WAN22_VAE = {**WAN21_VAE, "is_residual": True, "patch_size": 2, "scale_factor_spatial": 16, "scale_factor_temporal": 4}


@pytest.mark.parametrize(
    "cfg, says",
    [
        ({**WAN21_VAE, "scale_factor_temporal": 0}, "gives scale_factor_temporal 0, not a positive integer"),
        ({**WAN21_VAE, "scale_factor_spatial": 0}, "gives scale_factor_spatial 0, not a positive integer"),
        ({**WAN21_VAE, "scale_factor_temporal": True}, "gives scale_factor_temporal True, not a positive integer"),
        ({**WAN21_VAE, "scale_factor_temporal": 3}, "gives scale_factor_temporal 3, but the VAE its layers"),
        ({**WAN21_VAE, "scale_factor_spatial": 16}, "scale_factor_spatial 16, but the VAE its layers describe"),
        ({**WAN22_VAE, "scale_factor_spatial": 8}, "compresses 16x"),
        ({"temperal_downsample": [True, True, True], "scale_factor_temporal": 8}, "compresses time 8x"),
        ({"dim_mult": [], "temperal_downsample": []}, "which describe no Wan VAE"),
    ],
)
def test_a_wan_vae_config_whose_factors_are_not_its_layers_is_refused(cfg, says):
    """A 0 was a ZeroDivisionError; a 3 made 17 frames for --frames 13, exit 0 (the VAE makes 4 per latent)."""
    from accvideo.models.wan import check_vae_factors

    with pytest.raises(AccVideoError) as refused:
        check_vae_factors(cfg, "t/vae/config.json")
    assert str(refused.value).startswith("t/vae/config.json ") and says in str(refused.value)


def test_the_published_wan_vae_configs_are_taken():
    from accvideo.models.wan import check_vae_factors

    assert check_vae_factors({}, "v") == (4, 8)  # AutoencoderKLWan's defaults: Wan 2.1
    assert check_vae_factors({**WAN21_VAE, "dim_mult": [1, 1, 1, 1]}, "v") == (4, 8)  # the tiny test VAE
    assert check_vae_factors(WAN22_VAE, "v") == (4, 16)  # Wan 2.2 TI2V-5B: 2x2 patchify on top
