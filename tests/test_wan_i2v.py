"""Wan 2.1 image-to-video against stock diffusers: our sampler's latents equal WanImageToVideoPipeline's."""

import numpy as np
import pytest
import torch
from diffusers import WanImageToVideoPipeline
from PIL import Image
from stock_helpers import stock_latents

from accvideo.core.adapter import ModelAdapter
from accvideo.core.images import encode_conditioning
from accvideo.core.runtime import batch_noise
from accvideo.core.sampling import SamplingPlan, sample_latents
from accvideo.errors import AccVideoError

FRAMES, H, W = 5, 32, 32
PROMPT = "a red circle moving left"


def picture(seed: int, size=(W, H)) -> Image.Image:
    """A smooth random RGB picture (gradients plus a blob), different for every seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : size[1], 0 : size[0]] / max(size)
    chans = [np.sin(rng.uniform(2, 8) * xx + rng.uniform(0, 6)) * np.cos(rng.uniform(2, 8) * yy) for _ in range(3)]
    pixels = ((np.stack(chans, -1) + 1) * 127.5).clip(0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def stock(tiny_i2v_dir):
    pipe = WanImageToVideoPipeline.from_pretrained(str(tiny_i2v_dir))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_is_an_image_conditioned_model_adapter(tiny_i2v):
    assert isinstance(tiny_i2v, ModelAdapter) and tiny_i2v.image_conditioned and tiny_i2v.family == "wan"
    assert tiny_i2v.latent_shape(FRAMES, H, W) == (16, 2, 4, 4)  # the noise channels; 20 condition channels ride along
    cond = encode_conditioning(tiny_i2v, [PROMPT, "a cat"], [picture(1), picture(2)], FRAMES, H, W)
    assert cond["condition"].shape == (2, 20, 2, 4, 4)
    mask = cond["condition"][:, :4]  # the first latent frame is given, the rest is to generate
    assert bool((mask[:, :, 0] == 1).all()) and bool((mask[:, :, 1:] == 0).all())
    assert cond["image_embeds"].shape[:2] == (2, 5)  # CLIP's 4 patches + class token, penultimate layer
    assert not torch.equal(cond["image_embeds"][0], cond["image_embeds"][1])


@pytest.mark.parametrize("guidance", [1.0, 4.0])
def test_sampler_equals_stock_i2v_pipeline(stock, tiny_i2v, guidance):
    image, steps, seed = picture(0), 5, 3
    x0 = batch_noise([seed], tiny_i2v.latent_shape(FRAMES, H, W))
    ref = stock_latents(stock, tiny_i2v, PROMPT, x0, steps, guidance, (FRAMES, H, W), image=image)
    plan = SamplingPlan(stock.scheduler.sigmas, guidance)  # what the stock scheduler used (shift applied)
    cond = encode_conditioning(tiny_i2v, [PROMPT], [image], FRAMES, H, W)
    ours = sample_latents(tiny_i2v, cond, [seed], x0.shape[1:], plan).latents  # uncond: "" with the image kept
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)
    assert (ours - x0).abs().mean() > 0.1  # the solve moved

    other = encode_conditioning(tiny_i2v, [PROMPT], [picture(5)], FRAMES, H, W)
    moved = sample_latents(tiny_i2v, other, [seed], x0.shape[1:], plan).latents
    assert (moved - ours).abs().max() > 1e-3  # the image conditions the result: the comparison is not vacuous


def test_text_model_refuses_images_and_image_model_needs_them(tiny_wan, tiny_i2v):
    with pytest.raises(AccVideoError, match="text-to-video and takes no image"):
        encode_conditioning(tiny_wan, [PROMPT], [picture(0)], FRAMES, H, W)
    x = batch_noise([0], tiny_i2v.latent_shape(FRAMES, H, W))
    with pytest.raises(AccVideoError, match="got no image conditioning"):
        tiny_i2v.velocity(x, torch.tensor([0.5]), tiny_i2v.encode_prompts([PROMPT]))


def test_features_see_the_image(tiny_i2v):
    x = batch_noise([1], tiny_i2v.latent_shape(FRAMES, H, W))
    a = encode_conditioning(tiny_i2v, [PROMPT], [picture(0)], FRAMES, H, W)
    b = encode_conditioning(tiny_i2v, [PROMPT], [picture(4)], FRAMES, H, W)
    fa = tiny_i2v.features(x, torch.tensor([0.5]), a, 1)
    fb = tiny_i2v.features(x, torch.tensor([0.5]), b, 1)
    assert fa.shape == (1, 2 * 2 * 2, 24)  # video tokens only: the condition adds channels, not tokens
    assert (fa - fb).abs().max() > 1e-4


def _gray(image) -> list:
    """The first channel of an RGB PIL image as nested lists."""
    return np.asarray(image)[..., 0].tolist()


def test_deep_and_float_grayscale_images_are_scaled_to_8_bits(tmp_path):
    """A 16-bit PNG (mode I;16) came out almost white and a [0, 1] float TIFF (mode F) black, exit 0: PIL's
    convert("RGB") clips them; they are now scaled by their bit depth (a float one within [0, 1] by 255)."""
    from accvideo.core.images import read_image

    Image.fromarray(np.array([[35, 65522], [32768, 257]], dtype=np.uint16)).save(tmp_path / "g16.png")
    Image.fromarray(np.array([[0, 2**31 - 1], [2**30, -5]], dtype=np.int32)).save(tmp_path / "i32.tif")
    Image.fromarray(np.array([[0.0, 1.0], [0.5, 0.25]], dtype=np.float32)).save(tmp_path / "f.tif")
    assert Image.open(tmp_path / "g16.png").mode == "I;16" and Image.open(tmp_path / "i32.tif").mode == "I"
    assert _gray(read_image(tmp_path / "g16.png")) == [[0, 255], [128, 1]]
    assert _gray(read_image(tmp_path / "i32.tif")) == [[0, 255], [128, 0]]
    assert _gray(read_image(tmp_path / "f.tif")) == [[0, 255], [128, 64]]
    # mode I within 16 bits: a 16-bit PNG as older Pillow opens it (scaled by 2**31 - 1 it came out black)
    Image.fromarray(np.array([[0, 65535], [32768, 257]], dtype=np.int32)).save(tmp_path / "i16.tif")
    assert Image.open(tmp_path / "i16.tif").mode == "I"
    assert _gray(read_image(tmp_path / "i16.tif")) == [[0, 255], [128, 1]]


@pytest.mark.parametrize("values", [[0.0, 2.0], [0.0, float("nan")], [-1.0, 0.5]])
def test_a_float_image_of_no_clear_range_is_refused_in_one_line(tmp_path, values):
    from accvideo.core.images import image_size, read_image

    Image.fromarray(np.array([values], dtype=np.float32)).save(tmp_path / "f.tif")
    for read in (image_size, read_image):
        with pytest.raises(AccVideoError, match=r"is a floating-point image whose values are .*not in \[0, 1\]"):
            read(tmp_path / "f.tif")


def test_8_bit_images_are_read_as_before(tmp_path):
    """Every 8-bit mode converts exactly as PIL's convert("RGB") did."""
    from accvideo.core.images import read_image

    base = picture(3, (24, 16))
    for mode in ("RGB", "L", "P", "RGBA", "1", "CMYK", "LA"):
        path = tmp_path / f"{mode}.{'jpg' if mode == 'CMYK' else 'png'}"
        base.convert(mode).save(path)
        want = np.asarray(Image.open(path).convert("RGB"))
        assert np.array_equal(np.asarray(read_image(path)), want), mode


def test_exif_orientation_is_applied(tmp_path):
    """A JPEG with orientation 6 (turn a quarter clockwise to show) was used sideways; diffusers' load_image turns
    it upright (ImageOps.exif_transpose), and so does accvideo now: its size is the upright one too."""
    from accvideo.core.images import image_size, read_image

    a = np.zeros((16, 32, 3), np.uint8)
    a[:, :16] = 255  # stored: left half white
    image = Image.fromarray(a)
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(tmp_path / "o6.jpg", exif=exif, quality=95)
    shown = np.asarray(read_image(tmp_path / "o6.jpg"))[..., 0].astype(int)
    assert image_size(tmp_path / "o6.jpg") == (16, 32) and shown.shape == (32, 16)
    assert shown[:16].mean() > 250 and shown[16:].mean() < 5  # shown: top half white


def test_an_image_past_pils_warning_size_is_read_without_a_word(tmp_path, monkeypatch):
    """Between PIL's MAX_IMAGE_PIXELS and twice that, PIL printed its "decompression bomb DOS attack" warning
    twice on stderr (the image was taken); it is taken silently now (past twice that: refused, one line)."""
    import warnings

    from accvideo.core.images import read_image

    Image.new("1", (40, 40)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1,600 pixels stand for 100 million
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # every warning recorded, as a default run prints each
        assert read_image(tmp_path / "big.png").size == (40, 40)
    assert [str(w.message) for w in caught] == []
