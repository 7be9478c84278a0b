"""Domain adapters. A plain-dict registry maps a name to the module that defines it; modules are
imported on first use so that heavy optional libraries load only for the domain in use."""

from __future__ import annotations

import importlib
from typing import Any

from spatialgen.adapters.base import Adapter

# name -> (module, adapter class, config class)
_REGISTRY = {
    "image": ("spatialgen.adapters.image", "ImageAdapter", "ImageConfig"),
    "sdf": ("spatialgen.adapters.sdf", "SdfAdapter", "SdfConfig"),
    "video": ("spatialgen.adapters.video", "VideoAdapter", "VideoConfig"),
    "function": ("spatialgen.adapters.function", "FunctionAdapter", "FunctionConfig"),
}


def _lookup(name: str, index: int) -> Any:
    if not isinstance(name, str) or name not in _REGISTRY:
        from spatialgen.errors import ConfigError

        raise ConfigError(f"unknown adapter '{name}' (known: {', '.join(_REGISTRY)})")
    entry = _REGISTRY[name]
    return getattr(importlib.import_module(entry[0]), entry[index])


def adapter_config_class(name: str) -> type:
    return _lookup(name, 2)


def get_adapter(config: Any) -> Adapter:
    """Build the adapter described by an adapter config dataclass (one with a ``name`` field)."""
    return _lookup(config.name, 1)(config)


__all__ = ["Adapter", "adapter_config_class", "get_adapter"]
