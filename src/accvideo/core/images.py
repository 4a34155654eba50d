"""Conditioning images (image-to-video): read with one-line errors, fitted to the video size, encoded with the prompts.

An image-to-video model (`adapter.image_conditioned`) needs one image per prompt; a text-to-video model takes none.
An image of another size is resized to cover the video and centre-cropped (aspect ratio kept), once, before the
adapter sees it, so every stage (and a stock pipeline given the fitted image) conditions on the same pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from accvideo.core.adapter import Conditioning
from accvideo.errors import AccVideoError

IMAGE_FIX = "pass a PNG or JPEG file"


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of the image file at `path`, decoded whole, else a one-line error naming it: commands call it
    before loading the model, so a file damaged past its header is refused then, not after minutes of work (or
    after the prompt rows before it were sampled)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path).expanduser()
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise AccVideoError(f"image {path} {what}; {IMAGE_FIX} that exists")
    try:
        with Image.open(path) as im:
            size = tuple(im.size)
            try:
                im.load()
            except (OSError, ValueError, SyntaxError) as exc:  # a truncated file parses its header, not its pixels
                raise AccVideoError(f"image {path} is damaged ({str(exc)[:80]}); {IMAGE_FIX}") from None
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
    """The RGB PIL image at `path`; one-line errors for a missing, unreadable or damaged file."""
    from PIL import Image

    image_size(path)
    path = Path(path).expanduser()
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, ValueError) as exc:  # a truncated file parses its header but not its pixels
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
