"""Typed, frozen stage configs from YAML plus `key=value` overrides (OmegaConf does the merging)."""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import re
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from accvideo.core.files import write_text_atomic
from accvideo.core.inputs import load_yaml_text, read_yaml
from accvideo.core.interrupts import check as check_interrupt
from accvideo.errors import AccVideoError

C = TypeVar("C")


def load_config(
    cls: type[C], path: str | Path | None = None, overrides: Sequence[str] = (), *, base: C | None = None, **values
) -> C:
    """Build a frozen dataclass `cls`: defaults (or a preset `base`) < YAML file < `values` < `key=value` overrides.

    Unknown keys and values of the wrong type are rejected with a one-line AccVideoError. Text is taken literally:
    `${...}` in a prompt is the user's text, never an OmegaConf interpolation.
    """
    source = "the settings"  # what a RecursionError came from
    try:
        merged = OmegaConf.structured(base if base is not None else cls)
        if path is not None:
            path = Path(path).expanduser()  # as every path setting: a quoted '~/c.yaml' reaches us unexpanded
            source = f"config file {path}"
            if not path.exists():
                raise AccVideoError(f"config file {path} does not exist; pass --config an existing YAML file")
            if not path.is_file():
                raise AccVideoError(f"config file {path} is not a file; pass --config a YAML file")
            data = read_yaml(path, "fix the file or drop --config")
            data = {} if data is None else data  # empty, or comments only: no settings
            check_size(data, source)
            loaded = OmegaConf.create(literal(data)) if isinstance(data, dict) else None
            if not isinstance(loaded, DictConfig):
                raise AccVideoError(f"config file {path} must hold a mapping of settings (key: value lines)")
            _check_not_a_record(cls, data, path)
            check_keys(cls, _dotted(OmegaConf.to_container(loaded)), f"key in {path}:")
            merged = OmegaConf.merge(merged, loaded)
        merged = OmegaConf.merge(merged, nest({k: literal(v) for k, v in values.items() if v is not None}))
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise AccVideoError(f"override {bad[0]!r} is not of the form key=value")
        check_keys(cls, [o.split("=", 1)[0] for o in overrides], "setting")
        text = text_keys(cls)
        for override in overrides:  # in order: a later one wins
            key, value = override.split("=", 1)
            source = f"setting {key}"
            if key in text:  # as given: YAML would read `off` or `no` as a boolean, `1e-3` as a number
                merged = OmegaConf.merge(merged, nest({key: literal(_text_value(value))}))
            elif not value.strip():  # read as null: `steps=$STEPS` with STEPS unset dropped the --steps given
                raise AccVideoError(f"setting {key}= has no value; give {key}=VALUE, or {key}=null for its default")
            else:
                parsed = _override_value(key, value)
                check_size(parsed, source)
                merged = OmegaConf.merge(merged, nest({key: literal(parsed)}))
        return check_numbers(OmegaConf.to_object(merged))
    except OmegaConfBaseException as exc:
        check_interrupt()  # a Ctrl-C that broke OmegaConf's state midway is an interruption, not a bad setting
        msg = str(exc).splitlines()[0]
        key = getattr(exc, "full_key", None)
        if key:  # name the setting and what it takes
            raise AccVideoError(f"setting {key}: {msg}; give it a value of its type (--help lists them)") from None
        # a nested setting given a scalar (`runtime=3`), a YAML key that is not text (`null: 3`): no key to name
        raise AccVideoError(
            f"bad config for {cls.__name__}: {msg}; give each setting a value of its type, nested ones as "
            "runtime.offload=true (--help lists them)"
        ) from None
    except RecursionError:  # thousands of nested brackets (an alias inside its own anchor is check_size's)
        raise AccVideoError(f"{source} nests too deeply (thousands of brackets); write it flat") from None
    except (ValueError, TypeError) as exc:  # raised by a config's own validation
        raise AccVideoError(str(exc)) from None


MAX_VALUES = 100_000  # values in a config file or setting once its YAML aliases are expanded


def check_size(data, source: str) -> None:
    """Refuse settings that expand past MAX_VALUES values: a few lines of YAML aliases of aliases ("billion
    laughs") grow exponentially as OmegaConf copies them (minutes and GBs before the unknown key was refused), and an
    alias inside its own anchor (`a: &a [*a]`) never ends. Counted without expanding: it stops at the limit."""
    count, stack = 0, [data]
    while stack:
        value = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise AccVideoError(
                f"{source} holds more than {MAX_VALUES:,} values once its YAML aliases are expanded, or refers to "
                "itself (an alias inside its own anchor); write the settings out without aliases"
            )
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)


def _override_value(key: str, value: str):
    """The value of a `key=value` override as YAML reads it, or one line: OmegaConf's YAML error (`steps=[`, a
    stray quote `seed='3`) was a traceback."""
    try:
        return load_yaml_text(value)  # as a config file is read: `seed=010` is 10, as `--seed 010` is
    except yaml.YAMLError as exc:
        what = str(getattr(exc, "problem", None) or exc).splitlines()[0]
        raise AccVideoError(
            f"setting {key}={value} is not a value ({what}); give {key}=VALUE of its type, e.g. a number, "
            f"true, [1, 2] or quoted text (--help lists them)"
        ) from None


def text_keys(cls) -> set[str]:
    """The dotted keys of a config class's settings typed text (str or str | None)."""
    return {key for key, _, tp, _ in walk_fields(cls) if _scalar(tp) == (str, False)}


def _text_value(value: str) -> str | None:
    """A `key=value` override of a text setting: null (or ~) is None, surrounding quotes are dropped, else as is."""
    if value in ("null", "~"):
        return None
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def literal(value):
    """`${` escaped in every string (nested ones too), so OmegaConf keeps the text as given."""
    if isinstance(value, str):
        return value.replace("${", "\\${")
    if isinstance(value, dict):
        return {k: literal(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [literal(v) for v in value]
    return value


INT_LIMIT = 2**63  # what torch (seeds, sizes) and safetensors metadata hold


def check_numbers(cfg: C, prefix: str = "") -> C:
    """Refuse NaN and infinite floats (comparisons in a config's own checks let them through), integers past 64
    bits and negative seeds, in any setting, nested ones too; and a `device` torch cannot name."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            check_numbers(value, f"{prefix}{f.name}.")
            continue
        if f.name == "device" and isinstance(value, str):
            check_device_name(value)
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(v, float) and not math.isfinite(v):
                raise AccVideoError(f"{prefix}{f.name} must be a finite number; got {value}")
            if isinstance(v, int) and not -INT_LIMIT <= v < INT_LIMIT:
                raise AccVideoError(
                    f"{prefix}{f.name} must be a signed 64-bit integer (-2**63 to 2**63 - 1 = {INT_LIMIT - 1}); "
                    f"got {value}"
                )
            if f.name in ("seed", "seeds") and isinstance(v, int) and v < 0:
                raise AccVideoError(
                    f"{prefix}{f.name} must be 0 or more (a fixed seed: a rerun gives the same result); got {value}"
                )
    return cfg


DEVICE_TYPES = ("cpu", "cuda", "mps")


def check_device_name(name: str) -> None:
    """'auto', or a device torch names (cpu, cuda, cuda:1, mps); AccVideoError naming the choices otherwise."""
    import torch

    if name == "auto":
        return
    try:
        kind = torch.device(name).type
    except (RuntimeError, ValueError):
        kind = None
    if kind not in DEVICE_TYPES:
        raise AccVideoError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps")


MAX_THREADS = 4096
MAX_LR = 1.0


def check_lr_ceiling(name: str, value: float) -> None:
    """An AdamW learning rate's upper bound: each step moves a weight by about lr, so a larger one only diverges
    (the run stops at its first NaN), and past about 3e37 torch's AdamW failed with an overflow traceback."""
    if value > MAX_LR:
        raise ValueError(
            f"{name} must be at most {MAX_LR:g} (AdamW moves every weight by about lr a step); got {value}"
        )


def check_threads(threads: int) -> None:
    """A thread count setting: 0 (torch's default) or a positive count; ValueError naming the fix."""
    if not 0 <= threads <= MAX_THREADS:
        raise ValueError(f"threads must be 0 (torch's default) or a count up to {MAX_THREADS}; got {threads}")


def fields_of(cfg, cls: type[C], **changes) -> C:
    """A `cls` made of the fields the two share (a command config <-> the settings it extends), plus `changes`."""
    shared = {f.name for f in dataclasses.fields(cfg)} & {f.name for f in dataclasses.fields(cls)}
    return cls(**{**{name: getattr(cfg, name) for name in shared}, **changes})


def walk_fields(cls, prefix: str = ""):
    """(dotted key, field, type, the class declaring it) of every field of a config class, depth first: a nested
    config's fields (dotted: runtime.offload) come just before the nested field itself (runtime)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            yield from walk_fields(hints[f.name], f"{prefix}{f.name}.")
        yield prefix + f.name, f, hints[f.name], cls


def known_keys(cls) -> list[str]:
    """Every settable key of a config class, nested ones dotted (runtime.offload)."""
    return [key for key, *_ in walk_fields(cls)]


def _check_not_a_record(cls, data: dict, path: Path) -> None:
    """Refuse, naming the fix, the record a command writes beside its output (config.yaml, synvid.yaml, clip.yaml:
    every setting resolved, plus what it found) given as --config: its extra keys read as unknown settings, with a
    misleading "did you mean" ('teacher_identity': 'teacher')."""
    names = {f.name for f in dataclasses.fields(cls)}
    extra = [k for k in data if k not in names]
    if extra and names <= set(data):
        raise AccVideoError(
            f"{path} is the record a command writes beside its output (every setting, plus {', '.join(extra[:3])}"
            f"{', ...' if len(extra) > 3 else ''}); --config takes settings only: copy it without those keys, or "
            "rerun the command that wrote it"
        )


def check_keys(cls, keys: Sequence[str], what: str) -> None:
    """Refuse an unknown key with one line naming the closest known one."""
    known = known_keys(cls)
    for key in keys:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(known)}"
            raise AccVideoError(f"unknown {what} {key!r}{hint}")


def _dotted(tree, prefix: str = "") -> list[str]:
    if not isinstance(tree, dict):
        return []
    keys = []
    for k, v in tree.items():
        keys.append(f"{prefix}{k}")
        keys += _dotted(v, f"{prefix}{k}.")
    return keys


def to_dict(cfg) -> dict:
    """A config as plain data (paths as strings, nested configs as mappings), for YAML and JSON."""

    def plain(v):
        if dataclasses.is_dataclass(v):
            return to_dict(v)
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return {f.name: plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}


def save_config(cfg, path: str | Path, before_replace: Callable[[Path], None] | None = None, **extra) -> Path:
    """Write a resolved config (plus `extra` facts such as derived values) as YAML."""
    return write_text_atomic(path, yaml.safe_dump({**to_dict(cfg), **extra}, sort_keys=False), before_replace)


def check_same_settings(
    saved: dict,
    config: dict,
    path: str | Path,
    defaults: dict | None = None,
    resumable: frozenset = frozenset(),
    elsewhere: str = "another --out",
) -> None:
    """Refuse to continue work at `path` that was made with other settings (`saved`) than `config`; those in
    `resumable` may change. A setting `saved` does not hold was added after it was written: allowed when the asked
    value is its value in `defaults` (the behaviour of the version that wrote it). `elsewhere` is the fix that puts
    the work in another folder."""
    defaults = defaults or {}
    lines, changed, before = [], {}, {}  # one refusal line per differing setting; what the run ran with, by kind
    for key, value in config.items():
        if key in resumable:
            continue
        if key not in saved and key in defaults:
            if value == defaults[key]:
                continue
            before[key] = defaults[key]
            lines.append(
                f"{path} holds a run from before the setting {key} (it ran as {key}={defaults[key]!r}), not "
                f"{value!r}; use {elsewhere}, or {key}={defaults[key]!r} to resume it"
            )
        elif saved.get(key) != value:
            changeable = f"only {', '.join(sorted(resumable))} may change" if resumable else "none may change"
            changed[key] = saved.get(key)
            lines.append(
                f"{path} holds a run with {key}={saved.get(key)!r}, not {value!r}; "
                f"use {elsewhere}, or the run's settings ({changeable})"
            )
    if len(lines) == 1:
        raise AccVideoError(lines[0])
    if lines:  # all at once: a run of an older version whose defaults changed was refused once per setting
        said = [", ".join(f"{k}={v!r} (not {config[k]!r})" for k, v in changed.items())] if changed else []
        if before:
            ran = ", ".join(f"{k}={v!r} (not {config[k]!r})" for k, v in before.items())
            said.append(f"from before the setting{'s' if len(before) > 1 else ''} {', '.join(before)}: it ran as {ran}")
        resume = " ".join(f"{k}={v!r}" for k, v in {**changed, **before}.items())
        raise AccVideoError(
            f"{path} holds a run whose settings differ from the ones given in {len(lines)}: {'; '.join(said)}; "
            f"use {elsewhere}, or resume it with {resume}"
        )


# ---------------------------------------------------------------------------------------------------------------
# Command-line flags generated from a config dataclass: `--field-name VALUE` for every field (nested dataclasses
# flattened: RuntimeOptions' `offload` is `--offload`), no value passed unless the user gave one.


def field_help(cls) -> dict[str, str]:
    """Each field's trailing `# comment` in the class source: the one place a setting is documented."""
    helps: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):  # pragma: no cover - no source shipped
            continue
        for line in source.splitlines():
            match = _FIELD_LINE.match(line)
            if match:
                helps[match.group(1)] = match.group(2).strip()
    return helps


_FIELD_LINE = re.compile(r"^\s{4}(\w+)\s*:[^#]*#\s*(.+)$")


@dataclasses.dataclass(frozen=True)
class Flag:
    """One generated flag: its dotted config key, how to parse the text, and its help."""

    key: str
    option: str
    parse: Callable[[str], object] | None  # None: a switch (--x / --no-x)
    help: str


def _scalar(tp) -> tuple[type | None, bool]:
    """(the base type of an annotation, whether it is a list of it), with `X | None` unwrapped."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    origin = typing.get_origin(tp)
    if origin in (list, tuple) or (args and typing.get_origin(args[0]) in (list, tuple)):
        inner = typing.get_args(tp if origin in (list, tuple) else args[0])
        return (inner[0] if inner else str), True
    if args and origin is not None and origin not in (list, tuple):
        return args[0], False
    return tp, False


def _parser_for(base: type, is_list: bool, option: str) -> Callable[[str], object]:
    def one(text: str):
        try:
            return base(text)
        except ValueError:
            raise AccVideoError(f"{option} takes {base.__name__} values; got {text!r}") from None

    def many(text: str):  # 1,2,3 or 1 2 3; [1,2,3] as the key=value form and --help's defaults show it
        try:
            return [base(t) for t in _unbracket(text).replace(",", " ").split()]
        except ValueError:
            example = {int: "1,2", float: "1.0,0.5"}.get(base, "a,b")
            raise AccVideoError(
                f"{option} takes comma-separated {base.__name__} values (e.g. {option} {example}); got {text!r}"
            ) from None

    return many if is_list else one


def _unbracket(text: str) -> str:
    text = text.strip()
    return text[1:-1] if text.startswith("[") and text.endswith("]") else text


def _default_text(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def config_flags(cls, defaults: dict | None = None) -> list[Flag]:
    """The flags of a config dataclass, nested dataclass fields flattened under their own names; each help ends in
    the value used when the flag is not given: `defaults` (dotted key -> value: a preset's), else the field's."""
    flags: list[Flag] = []
    helps: dict[type, dict[str, str]] = {}
    for key, f, tp, owner in walk_fields(cls):
        if dataclasses.is_dataclass(tp):
            continue  # its fields have their own flags
        if owner not in helps:
            helps[owner] = field_help(owner)
        text = helps[owner].get(f.name, "")
        base, is_list = _scalar(tp)
        option = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else None
        if f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        if defaults is not None and key in defaults:
            default = defaults[key]
        if base is bool and not is_list:
            flags.append(Flag(key, option, None, f"{text} [{'on' if default else 'off'}]".strip()))
            continue
        shown = f" [{_default_text(default)}]" if default not in (None, "", []) else ""
        flags.append(Flag(key, option, _parser_for(base, is_list, option), f"{text}{shown}".strip()))
    return flags


def parse_size_flag(text: str) -> dict:
    """`--size HxW` or `HxWxF` -> height, width (and frames)."""
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) not in (2, 3):
        raise AccVideoError(f"--size must look like HxW or HxWxF (e.g. 64x64, 480x832x81); got {text!r}")
    return dict(zip(("height", "width", "frames"), parts, strict=False))


def nest(flat: dict) -> dict:
    """{'a.b': 1} -> {'a': {'b': 1}}, for OmegaConf."""
    out: dict = {}
    for key, value in flat.items():
        *parents, last = key.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return out
