"""Conditioning images (image-to-video): read with one-line errors, fitted to the video size, encoded with the prompts.

An image-to-video model (`adapter.image_conditioned`) needs one image per prompt; a text-to-video model takes none.
An image of another size is resized to cover the video and centre-cropped (aspect ratio kept), once, before the
adapter sees it, so every stage (and a stock pipeline given the fitted image) conditions on the same pixels.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

from accvideo.core.adapter import Conditioning
from accvideo.errors import AccVideoError

ORIENTATION = 0x0112  # the EXIF tag
IMAGE_FIX = "pass a PNG or JPEG file"
# 16- and 32-bit grayscale (PNG, TIFF), scaled to 8 bits by their bit depth; PIL's own convert("RGB") clipped them
DEEP_GRAY = {"I;16": 65_535, "I;16L": 65_535, "I;16B": 65_535, "I;16N": 65_535, "I": 2**31 - 1}


@contextmanager
def _opened(path: Path):
    """The image at `path`, opened with PIL's warning about images past MAX_IMAGE_PIXELS silenced: up to twice
    that (PIL's refusal, about 179 million pixels) an image is taken without a word, past it refused."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(path) as im:
            yield im


def _file(path: str | Path) -> Path:
    """`path` expanded, or a one-line error when it is not a regular file (missing, a folder, a FIFO, a device)."""
    path = Path(path).expanduser()
    if not path.is_file():
        if path.exists():  # a FIFO or a device (/dev/zero) exists, but holds no image to read
            what = "is a folder" if path.is_dir() else "is not a regular file"
            raise AccVideoError(f"image {path} {what}; {IMAGE_FIX}")
        raise AccVideoError(f"image {path} does not exist; {IMAGE_FIX} that exists")
    return path


def _oriented_size(im) -> tuple[int, int]:
    """(width, height) as the image is shown: EXIF orientations 5 to 8 turn it a quarter (width and height swap)."""
    w, h = im.size
    return (h, w) if im.getexif().get(ORIENTATION) in (5, 6, 7, 8) else (w, h)


def _gray8(im, path: Path):
    """A 16- or 32-bit integer grayscale image as 8-bit "L", scaled by its bit depth; a float one (mode F) whose
    values lie in [0, 1] scaled by 255; any other float range (or NaN) is ambiguous: a one-line error."""
    import numpy as np
    from PIL import Image

    a = np.asarray(im, dtype=np.float64)
    top = DEEP_GRAY.get(im.mode, 1.0)
    if im.mode == "I" and a.max(initial=0) <= 65_535:  # a 16-bit PNG as older Pillow opens it: 16 bits, not 32
        top = 65_535
    if im.mode == "F" and not (np.isfinite(a).all() and 0 <= a.min(initial=0) and a.max(initial=0) <= 1):
        shown = f"from {a.min():g} to {a.max():g}" if np.isfinite(a).all() else "NaN or infinite"
        raise AccVideoError(
            f"image {path} is a floating-point image whose values are {shown}, not in [0, 1] (no clear range); save "
            "it as an 8- or 16-bit PNG"
        )
    return Image.fromarray(np.rint(np.clip(a, 0, top) * (255 / top)).astype(np.uint8), mode="L")


def to_rgb(im, path: Path):
    """`im` as an RGB image: 8-bit modes as PIL converts them; deep and float grayscale scaled first (_gray8)."""
    return (_gray8(im, path) if im.mode in DEEP_GRAY or im.mode == "F" else im).convert("RGB")


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of the image file at `path` as shown (its EXIF orientation applied), decoded whole, else a
    one-line error naming it: commands call it before loading the model, so a file damaged past its header (or a
    float image of no clear range) is refused then, not after minutes of work (or after the prompt rows before it
    were sampled)."""
    from PIL import Image, UnidentifiedImageError

    path = _file(path)
    try:
        with _opened(path) as im:
            try:
                im.load()
                size = _oriented_size(im)
            except (OSError, ValueError, SyntaxError) as exc:  # a truncated file parses its header, not its pixels
                raise AccVideoError(f"image {path} is damaged ({str(exc)[:80]}); {IMAGE_FIX}") from None
            if im.mode == "F":
                _gray8(im, path)
            return size
    except Image.DecompressionBombError:  # past PIL's guard against images that would fill memory
        raise AccVideoError(
            f"image {path} has more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels; {IMAGE_FIX} of video size "
            "(it is resized to the video's anyway)"
        ) from None
    except (UnidentifiedImageError, OSError) as exc:
        reason = "not an image" if isinstance(exc, UnidentifiedImageError) else (exc.strerror or "unreadable")
        raise AccVideoError(f"image {path} is {reason}; {IMAGE_FIX}") from None


def read_image(path: str | Path):
    """The RGB PIL image at `path`, turned upright as its EXIF orientation says (as diffusers' load_image does);
    one-line errors for a missing, unreadable or damaged file."""
    from PIL import ImageOps

    image_size(path)
    path = Path(path).expanduser()
    try:
        with _opened(path) as im:
            return to_rgb(ImageOps.exif_transpose(im), path)
    except (OSError, ValueError, SyntaxError) as exc:  # a truncated file parses its header but not its pixels
        raise AccVideoError(f"image {path} is damaged ({str(exc)[:80]}); {IMAGE_FIX}") from None


def fit_image(image, height: int, width: int):
    """(image of exactly width x height, whether it was changed): resized to cover, then centre-cropped."""
    from PIL import Image, ImageOps

    if image.size == (width, height):
        return image, False
    return ImageOps.fit(image, (width, height), method=Image.Resampling.LANCZOS, centering=(0.5, 0.5)), True


def load_images(paths: Sequence[str | Path], height: int, width: int) -> tuple[list, list[str]]:
    """(fitted RGB images, one line per image that was resized and cropped, naming its size and the video's)."""
    images, notes = [], []
    for path in paths:
        image = read_image(path)
        fitted, changed = fit_image(image, height, width)
        if changed:
            notes.append(
                f"image {path} is {image.size[0]}x{image.size[1]}: resized and centre-cropped to {width}x{height}"
            )
        images.append(fitted)
    return images, notes


def check_image_use(model, has_images: bool, source: str) -> None:
    """Refuse an image-to-video `model` (an adapter or its class) without images, and a text-to-video one with them;
    `source` says where images come from (e.g. "--image FILE")."""
    wants = bool(getattr(model, "image_conditioned", False))
    if wants and not has_images:
        raise AccVideoError(f"this model is image-to-video (WanImageToVideoPipeline): give it an image with {source}")
    if has_images and not wants:
        raise AccVideoError(
            f"this model is text-to-video and takes no image; drop {source} or pass an image-to-video model"
        )


def encode_conditioning(adapter, prompts: Sequence[str], images: Sequence | None, frames: int, height: int, width: int):
    """The prompts' conditioning, plus the images' (one fitted PIL image per prompt) for an image-to-video model."""
    cond: Conditioning = adapter.encode_prompts(list(prompts))
    if images is not None:
        if len(images) != len(prompts):
            raise AccVideoError(f"{len(images)} images for {len(prompts)} prompts; give one image per prompt")
        cond = {**cond, **adapter.encode_images(list(images), frames, height, width)}
    return cond
