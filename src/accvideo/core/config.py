"""Typed, frozen stage configs from YAML plus `key=value` overrides (OmegaConf does the merging)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from accvideo.errors import AccVideoError

C = TypeVar("C")


def load_config(cls: type[C], path: str | Path | None = None, overrides: Sequence[str] = (), *, base: C | None = None,
                **values) -> C:
    """Build a frozen dataclass `cls`: defaults (or a preset `base`) < YAML file < `values` < `key=value` overrides.

    Unknown keys and values of the wrong type are rejected with a one-line AccVideoError.
    """
    try:
        merged = OmegaConf.structured(base if base is not None else cls)
        if path is not None:
            path = Path(path)
            if not path.is_file():
                raise AccVideoError(f"config file {path} does not exist; pass --config an existing YAML file")
            merged = OmegaConf.merge(merged, OmegaConf.load(path))
        merged = OmegaConf.merge(merged, {k: v for k, v in values.items() if v is not None})
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise AccVideoError(f"override {bad[0]!r} is not of the form key=value")
        merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(list(overrides)))
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        msg = str(exc).splitlines()[0]
        raise AccVideoError(f"bad config for {cls.__name__}: {msg}") from None
    except (ValueError, TypeError) as exc:  # raised by a config's own validation
        raise AccVideoError(str(exc)) from None


def to_dict(cfg) -> dict:
    """A config as plain data (paths as strings), for YAML and JSON."""
    def plain(v):
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return {f.name: plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}


def save_config(cfg, path: str | Path, **extra) -> Path:
    """Write a resolved config (plus `extra` facts such as derived values) as YAML."""
    path = Path(path)
    path.write_text(yaml.safe_dump({**to_dict(cfg), **extra}, sort_keys=False))
    return path
