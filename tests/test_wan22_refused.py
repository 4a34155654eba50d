"""Wan 2.2 layouts saved by the Wan 2.1 classes: A14B (two experts, tests/test_wan22_a14b.py), TI2V-5B as text-to-video
(a WanPipeline) and for image input (a WanImageToVideoPipeline, tests/test_wan_ti2v_image.py) are accepted; two experts
with image input (I2V-A14B) are refused with one line, never half-trained."""

import pytest

from accvideo.cli import main


def _save_wan22(out, pipeline=None, **kw):
    """A tiny stock WanPipeline (or `pipeline`) in a Wan 2.2 layout, saved by diffusers itself."""
    from diffusers import WanPipeline

    from accvideo.models.tiny import tiny_wan_pipeline

    base = tiny_wan_pipeline(0)
    parts = dict(
        tokenizer=base.tokenizer,
        text_encoder=base.text_encoder,
        transformer=base.transformer,
        vae=base.vae,
        scheduler=base.scheduler,
    )
    (pipeline or WanPipeline)(**parts, **kw).save_pretrained(str(out), safe_serialization=True)
    return out


@pytest.fixture(scope="module")
def wan22_dirs(tmp_path_factory):
    from diffusers import WanImageToVideoPipeline

    from accvideo.models.tiny import tiny_wan_pipeline

    root = tmp_path_factory.mktemp("wan22")
    second = tiny_wan_pipeline(1).transformer
    return {
        "a14b": _save_wan22(root / "a14b", transformer_2=second, boundary_ratio=0.875),
        "ti2v": _save_wan22(root / "ti2v", WanImageToVideoPipeline, expand_timesteps=True),  # image input
        "ti2v-t2v": _save_wan22(root / "ti2v-t2v", expand_timesteps=True),
        "i2v-a14b": _save_wan22(root / "i2v-a14b", WanImageToVideoPipeline, transformer_2=second, boundary_ratio=0.9),
    }


@pytest.mark.parametrize("variant, words", [("i2v-a14b", "two-expert image input is not supported yet")])
def test_wan22_refused_by_every_loading_command(wan22_dirs, variant, words, tmp_path, capsys):
    folder = str(wan22_dirs[variant])
    (tmp_path / "p.txt").write_text("a red circle\n")
    commands = [
        ["sample", "--model", folder, "--out", str(tmp_path / "c.mp4")],
        ["synthesize", "--teacher", folder, "--prompts", str(tmp_path / "p.txt"), "--out", str(tmp_path / "d")],
        ["bench", "--model", folder, "--out", str(tmp_path / "b")],
    ]
    for args in commands:
        with pytest.raises(SystemExit) as exc:
            main(args)
        err = capsys.readouterr().err.strip()
        assert exc.value.code == 2, (args, err)
        assert len(err.splitlines()) == 1 and words in err and "Wan 2.1 T2V" in err, err
    assert not (tmp_path / "d").exists() or not any((tmp_path / "d").glob("*.safetensors"))
    assert not (tmp_path / "c.mp4").exists()


def test_wan21_layout_still_accepted(tiny_wan_dir):
    from accvideo.models import adapter_class, model_index, unsupported_variant

    index = model_index(tiny_wan_dir)
    assert index["transformer_2"] == [None, None] and unsupported_variant(index) is None
    assert adapter_class(tiny_wan_dir).family == "wan" and adapter_class(tiny_wan_dir).__name__ == "WanAdapter"


def test_wan22_a14b_accepted_by_its_two_expert_adapter(wan22_dirs):
    from accvideo.models import adapter_class, load_adapter, model_index, unsupported_variant
    from accvideo.models.wan_moe import WanMoEAdapter

    folder = wan22_dirs["a14b"]
    assert unsupported_variant(model_index(folder)) is None
    assert adapter_class(folder) is WanMoEAdapter and adapter_class(folder, "wan") is WanMoEAdapter
    adapter = load_adapter(folder)
    assert adapter.boundary_ratio == 0.875 and adapter.pair.transformer_2 is adapter.pipe.transformer_2


def test_wan22_ti2v_text_to_video_and_image_input_accepted(wan22_dirs):
    from accvideo.models import adapter_class, model_index, unsupported_variant
    from accvideo.models.wan_ti2v import WanTI2VAdapter, WanTI2VImageAdapter

    index = model_index(wan22_dirs["ti2v-t2v"])
    assert index["expand_timesteps"] is True and unsupported_variant(index) is None
    assert adapter_class(wan22_dirs["ti2v-t2v"]) is WanTI2VAdapter
    index = model_index(wan22_dirs["ti2v"])
    assert index["_class_name"] == "WanImageToVideoPipeline" and unsupported_variant(index) is None
    assert adapter_class(wan22_dirs["ti2v"]) is WanTI2VImageAdapter and WanTI2VImageAdapter.image_conditioned


def test_wan22_ti2v_image_model_without_an_image_refused_in_one_line(wan22_dirs, tmp_path, capsys):
    folder = str(wan22_dirs["ti2v"])
    (tmp_path / "p.txt").write_text("a red circle\n")
    commands = [
        (["sample", "--model", folder, "--out", str(tmp_path / "c.mp4")], "give it an image with --image"),
        (
            ["synthesize", "--teacher", folder, "--prompts", str(tmp_path / "p.txt"), "--out", str(tmp_path / "d")],
            "prompt 1 of",
        ),
        (["bench", "--model", folder, "--out", str(tmp_path / "b")], "this model is image-to-video"),
    ]
    for args, words in commands:
        with pytest.raises(SystemExit) as exc:
            main(args)
        err = capsys.readouterr().err.strip()
        assert exc.value.code == 2 and len(err.splitlines()) == 1 and words in err, (args, err)
    assert not (tmp_path / "c.mp4").exists()
