"""Typed, frozen configuration: TOML files in ``configs/`` -> dataclasses.

A config has three sections. ``[adapter]`` names the domain adapter and its options (each
adapter declares its own dataclass), ``[model]`` is :class:`spatialgen.model.ModelConfig` and
``[train]`` is :class:`TrainConfig`. Unknown keys are an error that names the key, and
``--set section.key=value`` overrides are parsed as TOML literals and type-checked.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spatialgen.errors import ConfigError, InputError
from spatialgen.model import ModelConfig


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000
    batch_size: int = 8
    learning_rate: float = 3e-4
    min_learning_rate: float = 3e-5
    warmup_steps: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    min_context: int = 0  # |S| is log-uniform in [max(min_context, 1), max_context]; 0 allows K = 0
    max_context: int = 256
    queries: int = 512
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 500
    log_every: int = 10
    threads: int = 0  # torch intra-op threads on CPU; 0 = torch's default
    init_from: str = ""  # start from these weights (fine-tuning: fresh optimizer and schedule); "" = random

    def __post_init__(self) -> None:
        at_least = {"steps": 1, "batch_size": 1, "max_context": 1, "queries": 1, "checkpoint_every": 1,
                    "log_every": 1, "min_context": 0, "warmup_steps": 0, "threads": 0, "seed": 0}  # fmt: skip
        for name, low in at_least.items():
            if getattr(self, name) < low:
                raise ValueError(f"{name} must be at least {low}, got {getattr(self, name)}")
        if self.seed >= 2**63:
            raise ValueError("seed must be below 2**63")
        if self.min_context > self.max_context:
            raise ValueError("min_context must not exceed max_context")
        for name in ("learning_rate", "grad_clip"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ValueError(f"{name} must be a positive finite number, got {getattr(self, name)}")
        for name in ("min_learning_rate", "weight_decay"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {getattr(self, name)}")
        if not _valid_device(self.device):
            raise ValueError(f"device must be auto, cpu, cuda, cuda:N or mps, got '{self.device}'")


def _valid_device(name: str) -> bool:
    return name in ("auto", "cpu", "cuda", "mps") or (name.startswith("cuda:") and name[5:].isdigit())


@dataclass(frozen=True)
class Config:
    adapter: Any  # the adapter's own frozen dataclass (it has a ``name`` field)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {
            "adapter": dataclasses.asdict(self.adapter),
            "model": dataclasses.asdict(self.model),
            "train": dataclasses.asdict(self.train),
        }


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check ``value`` against a dataclass field annotation; ints widen to floats, lists to tuples."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: {value!r} is not a {annotation}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item_types = typing.get_args(annotation)
        if len(item_types) == 2 and item_types[1] is Ellipsis:
            return tuple(_coerce(v, item_types[0], where) for v in value)
        if len(item_types) != len(value):
            raise ConfigError(f"{where}: expected {len(item_types)} values, got {len(value)}")
        return tuple(_coerce(v, t, where) for v, t in zip(value, item_types))
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if annotation in (int, float, str) and (
        not isinstance(value, annotation) or (annotation is int and isinstance(value, bool))
    ):
        raise ConfigError(f"{where}: expected {annotation.__name__}, got {value!r}")
    return value


def build_dataclass(cls: type, values: dict[str, Any], section: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in known:
            raise ConfigError(f"unknown key '{section}.{key}' (known: {', '.join(sorted(known))})")
    kwargs = {k: _coerce(v, hints[k], f"{section}.{k}") for k, v in values.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[{section}]: {exc}") from None


def config_from_dict(raw: dict[str, Any]) -> Config:
    from spatialgen.adapters import adapter_config_class

    if not isinstance(raw, dict):
        raise ConfigError("a config must be a table with [adapter], [model] and [train] sections")
    for section, values in raw.items():
        if section not in ("adapter", "model", "train"):
            raise ConfigError(f"unknown section '[{section}]' (known: adapter, model, train)")
        if not isinstance(values, dict):
            raise ConfigError(f"'{section}' must be a [{section}] table, not {values!r}")
    adapter_raw = dict(raw.get("adapter", {}))
    if "name" not in adapter_raw:
        raise ConfigError("missing key 'adapter.name'")
    adapter_cls = adapter_config_class(adapter_raw["name"])
    return Config(
        adapter=build_dataclass(adapter_cls, adapter_raw, "adapter"),
        model=build_dataclass(ModelConfig, dict(raw.get("model", {})), "model"),
        train=build_dataclass(TrainConfig, dict(raw.get("train", {})), "train"),
    )


def parse_override(text: str) -> tuple[str, str, Any]:
    """``"train.steps=200"`` -> ``("train", "steps", 200)``; values are TOML literals (bare words are strings)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' is not of the form section.key=value")
    path, literal = text.split("=", 1)
    parts = path.strip().split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"override key '{path}' must be section.key, e.g. train.steps")
    try:
        value = tomllib.loads(f"v = {literal.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = literal.strip()  # a bare word such as `cpu`
    return parts[0], parts[1], value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for section, values in raw.items():
        if not isinstance(values, dict):
            raise ConfigError(f"'{section}' must be a [{section}] table, not {values!r}")
    merged = {section: dict(values) for section, values in raw.items()}
    for text in overrides:
        section, key, value = parse_override(text)
        merged.setdefault(section, {})[key] = value
    return merged


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    from spatialgen.io.atomic import require_file

    try:
        path = require_file(path, "config file")
        raw = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except InputError as exc:
        raise ConfigError(str(exc)) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    return config_from_dict(apply_overrides(raw, overrides or []))


def config_to_toml(config: Config) -> str:
    import tomli_w

    return tomli_w.dumps(config.to_dict())
