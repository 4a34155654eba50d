"""Prompt files: .txt (one caption a line) or .jsonl ({"prompt": ..., "seed": ..., "image": ...} a line), read and
written. An "image" (image-to-video models) is a path, relative ones read from the prompt file's folder."""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from accvideo.core.files import file_sha256, write_text_atomic
from accvideo.core.images import image_size
from accvideo.core.inputs import KeyGivenTwice, keys_once, parse_json
from accvideo.errors import AccVideoError
from accvideo.models.defaults import MAX_PROMPT_CHARS
from accvideo.world import item_seed
from accvideo.world.attributes import SPLITS

SUFFIXES = (".txt", ".jsonl")
MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class Item:
    """One item to synthesize: its position in the prompt list (blank lines not counted), text, seed and, for an
    image-to-video model, its image's path."""

    index: int
    prompt: str
    seed: int
    image: str | None = None
    image_sha256: str | None = None  # the image's bytes: a resumed run notices an image replaced under its path


@dataclass(frozen=True)
class PromptList:
    """The items of a prompt file, and how many blank lines were skipped."""

    items: tuple[Item, ...]
    blank_lines: int
    image_sizes: dict[str, tuple[int, int]] = field(default_factory=dict)  # image path -> (width, height)

    @property
    def has_images(self) -> bool:
        return any(it.image is not None for it in self.items)

    def check_images(self, wanted: bool, path: str | Path) -> None:
        """Every item has an image (an image-to-video model: `wanted`) or none has; one line naming the first row
        that breaks the rule."""
        for it in self.items:
            if wanted and it.image is None:
                raise AccVideoError(
                    f"prompt {it.index + 1} of {path} has no image, but the model is image-to-video; write JSONL rows "
                    '{"prompt": "...", "image": "path.png"}'
                )
            if not wanted and it.image is not None:
                raise AccVideoError(
                    f"prompt {it.index + 1} of {path} has an image, but the model is text-to-video and takes none; "
                    'drop the "image" fields or pass an image-to-video model'
                )

    def resized(self, height: int, width: int, among: Sequence[Item] | None = None) -> str | None:
        """One line saying how many images are not width x height (they are resized and centre-cropped), or None;
        only the images of the items `among` when given (the rows a resumed run still makes)."""
        used = None if among is None else {it.image for it in among}
        other = sorted(
            {p for p, size in self.image_sizes.items() if size != (width, height) and (used is None or p in used)}
        )
        if not other:
            return None
        w, h = self.image_sizes[other[0]]
        return (
            f"{len(other)} image(s) are not {width}x{height} (e.g. {other[0]} is {w}x{h}): resized and centre-cropped "
            f"to {width}x{height}"
        )


def not_utf8(raw: bytes, start: int) -> str:
    """What a prompt that is not UTF-8 is, in a prompt file's line or a --prompt alike: the first bad byte."""
    return f"is not UTF-8 (byte 0x{raw[start]:02x} at column {start + 1})"


def utf8_lines(raw: bytes, path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of a text file's bytes read as UTF-8, a byte-order mark at its start dropped (it is legal
    there and no part of a line); a line that is no UTF-8 is one line naming it (prompt files, manifests)."""
    for lineno, line in enumerate(raw.splitlines(), start=1):
        try:
            yield lineno, line.decode("utf-8-sig" if lineno == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise AccVideoError(
                f"line {lineno} of {path} {not_utf8(line, exc.start)}; re-save the file as UTF-8"
            ) from None


def too_long(prompt: str) -> str:
    """What a prompt past MAX_PROMPT_CHARS is told (a 1 MB line took 21 s and 575 MB; the text encoders read its
    first few hundred tokens)."""
    return (
        f"is {len(prompt):,} characters; a prompt holds at most {MAX_PROMPT_CHARS:,} (the text encoders read its "
        "first few hundred tokens)"
    )


def check_prompt(prompt: str, setting: str = "--prompt", *, blank: bool = False) -> None:
    """A prompt given as a setting, refused as a prompt file's line is: blank (unless `blank`: a negative prompt), or
    not UTF-8 (its bytes reach Python as surrogate escapes, and were sampled as the text '\\udcff'); ValueError
    naming the setting."""
    if not blank and not prompt.strip():
        raise ValueError(
            f"{setting} {prompt!r} has no prompt string (it is blank); give the clip's text, e.g. {setting} \"a red "
            'circle moving left"'
        )
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ValueError(f"{setting} {too_long(prompt)}")
    try:
        raw = prompt.encode("utf-8", "surrogateescape")  # the bytes given
    except UnicodeEncodeError:  # a surrogate no byte makes (a YAML escape): as UTF-8 would hold it, which is invalid
        raw = prompt.encode("utf-8", "surrogatepass")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{setting} {not_utf8(raw, exc.start)}; give the prompt as UTF-8 text") from None


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise AccVideoError(f"prompt file {path} must end in .txt (one prompt a line) or .jsonl; got {suffix!r}")
    return suffix


def _jsonl_image(row: dict, lineno: int, path: Path) -> str | None:
    """The row's "image" as a path (relative ones against the prompt file's folder)."""
    image = row.get("image")
    if image is None:
        return None
    if not isinstance(image, str) or not image.strip():
        raise AccVideoError(f'line {lineno} of {path}: "image" must be a file path string; got {image!r}')
    full = Path(image).expanduser()  # absolute, so a resumed run from another folder names the same image
    return str((full if full.is_absolute() else path.parent / full).absolute())


def is_seed(value) -> bool:
    """A seed as a JSON row gives it: an integer in [0, 2^63) (not a bool, not 3.0)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SEED


# the keys a .jsonl row is read for; others (a manifest's "file", "sha256") are left alone
JSONL_KEYS = ("prompt", "seed", "image")


def _jsonl_item(text: str, lineno: int, path: Path) -> tuple[str, int | None, str | None]:
    try:
        row = parse_json(text, object_pairs_hook=keys_once)
    except KeyGivenTwice as exc:
        raise AccVideoError(f"line {lineno} of {path} gives {exc.args[0]!r} twice; keep one of them") from None
    except json.JSONDecodeError as exc:
        raise AccVideoError(f"line {lineno} of {path} is not JSON ({exc.msg}); write one JSON object a line") from None
    prompt = row.get("prompt") if isinstance(row, dict) else None
    if not isinstance(prompt, str) or not prompt.strip():
        raise AccVideoError(f'line {lineno} of {path} has no "prompt" string; write {{"prompt": "...", "seed": 1}}')
    for key in row:  # a misspelt key ("Seed") was ignored: the row took the default seed, silently
        close = [k for k in JSONL_KEYS if key.lower() == k] or difflib.get_close_matches(key, JSONL_KEYS, 1, 0.75)
        if key not in JSONL_KEYS and close:
            raise AccVideoError(f"line {lineno} of {path} has the key {key!r}; did you mean {close[0]!r}?")
    try:  # JSON's \ud800 escape is a lone surrogate no UTF-8 holds: sampled, then refused by the shard's header
        check_prompt(prompt, f'line {lineno} of {path}: its "prompt"')
    except ValueError as exc:
        raise AccVideoError(str(exc)) from None
    seed = row.get("seed")
    if seed is not None and not is_seed(seed):
        raise AccVideoError(f"line {lineno} of {path}: seed must be an integer in [0, 2^63); got {seed!r}")
    return prompt.strip(), seed, _jsonl_image(row, lineno, path)


def read_prompts(path: str | Path, base_seed: int = 0) -> PromptList:
    """Items of a prompt file; text-file items (and JSONL rows without a seed) get item_seed(base_seed, index)."""
    path = Path(path).expanduser()
    kind = _kind(path)
    if path.exists() and not path.is_dir() and not path.is_file():  # reading a FIFO waited for a writer forever
        raise AccVideoError(
            f"prompt file {path} is not a regular file (a FIFO or a device); write the prompts to a file (a run "
            "reads them again to resume)"
        )
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise AccVideoError(
            f"prompt file {path} does not exist; write one with `accvideo prompts --out {path}`"
        ) from None
    except OSError as exc:
        raise AccVideoError(f"cannot read prompt file {path} ({exc.strerror}); check the path") from None
    items: list[Item] = []
    sizes: dict[str, tuple[int, int]] = {}
    digests: dict[str, str] = {}
    blank = 0
    for lineno, text in utf8_lines(raw, path):
        text = text.strip()
        if not text:
            blank += 1
            continue
        prompt, seed, image = _jsonl_item(text, lineno, path) if kind == ".jsonl" else (text, None, None)
        if len(prompt) > MAX_PROMPT_CHARS:
            raise AccVideoError(f"line {lineno} of {path}: the prompt {too_long(prompt)}")
        if image is not None and image not in sizes:  # the header only: missing or non-image files fail here
            try:
                sizes[image] = image_size(image)
            except AccVideoError as exc:
                where = "relative paths are read from the prompt file's folder"
                raise AccVideoError(f"line {lineno} of {path}: {exc} ({where})") from None
            digests[image] = file_sha256(image)
        index = len(items)
        seed = item_seed(base_seed, index) if seed is None else seed
        items.append(Item(index, prompt, seed, image, None if image is None else digests[image]))
    if not items:
        raise AccVideoError(f"prompt file {path} holds no prompts; write one prompt a line (or `accvideo prompts`)")
    return PromptList(tuple(items), blank, sizes)


def write_prompts(
    path: str | Path,
    prompts: Sequence[tuple[str, int]],
    images: Sequence[str] | None = None,
    before_replace: Callable[[Path], None] | None = None,
) -> Path:
    """Write (prompt, seed) pairs: .txt keeps the prompts only, .jsonl the seeds too (and each row's `images` path,
    relative to the file's folder, for an image-to-video teacher); atomic."""
    path = Path(path).expanduser()
    kind = _kind(path)
    if images is not None and (kind == ".txt" or len(images) != len(prompts)):
        raise ValueError("images go with a .jsonl prompt file, one per prompt")
    for prompt, _ in prompts:
        if "\n" in prompt or not prompt.strip():
            raise AccVideoError(f"prompt {prompt!r} is blank or spans lines; it cannot be one line of {path}")
    if kind == ".txt":
        lines = [p for p, _ in prompts]
    else:
        rows = [{"prompt": p, "seed": int(s)} for p, s in prompts]
        for row, image in zip(rows, images or (), strict=False):
            row["image"] = str(image)
        lines = [json.dumps(row, ensure_ascii=False) for row in rows]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, "".join(line + "\n" for line in lines), before_replace)
    except OSError as exc:
        raise AccVideoError(f"cannot write {path} ({exc.strerror}); choose another --out") from None
    return path


MAX_PROMPTS = 10_000_000  # one file of captions; split larger sets across files


@dataclass(frozen=True)
class PromptsConfig:
    """`accvideo prompts`: N captions of the built-in world, for `accvideo synthesize --prompts`."""

    n: int | None = None  # how many prompts (required)
    out: str = "prompts.txt"  # .txt (one caption a line) or .jsonl (with each item's seed)
    split: str = "train"  # train, heldout = test (held-out captions, unseen noises), val (tuning seeds), all
    seed: int = 0  # seed of the order and of the per-item seeds

    def __post_init__(self):
        if self.n is None:
            raise ValueError("--n is required: how many prompts to write (e.g. --n 64)")
        if not 1 <= self.n <= MAX_PROMPTS:
            raise ValueError(f"--n must be at least 1 and at most {MAX_PROMPTS:,} (how many prompts); got {self.n}")
        if self.split not in SPLITS:
            raise ValueError(f"--split must be one of {', '.join(SPLITS)}; got {self.split!r}")
