"""Checkpoints: safetensors weights with the config and adapter name in the metadata.

No pickle: weights are read with safetensors; the trainer's optimiser state (only needed to
resume) is a separate file read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from spatialgen.config import Config, config_from_dict
from spatialgen.errors import CheckpointError, ConfigError, InputError, shortened
from spatialgen.io.atomic import atomic_path, require_file
from spatialgen.model import PixelTransformer

FORMAT = "spatialgen-checkpoint-1"


def save_checkpoint(path: str | Path, model: PixelTransformer, config: Config, *, step: int) -> None:
    from safetensors.torch import save_file

    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "adapter": config.adapter.name,
        "config": json.dumps(config.to_dict()),
        "step": str(step),
    }
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)


def read_checkpoint(path: str | Path) -> tuple[Config, dict[str, torch.Tensor], dict[str, str]]:
    """-> (config, state dict, metadata); one-line CheckpointError for anything unusable."""
    from safetensors import safe_open

    try:
        path = require_file(path, "checkpoint")
    except InputError as exc:
        raise CheckpointError(str(exc)) from None
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            state = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as exc:  # safetensors raises several types for corrupt files
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(exc).__name__}: {shortened(str(exc), 80)})") from None
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a spatialgen checkpoint (no '{FORMAT}' metadata)")
    try:
        config = config_from_dict(json.loads(metadata["config"]))
    except KeyError:
        raise CheckpointError(f"{path}: it stores no config") from None
    except (json.JSONDecodeError, ConfigError) as exc:
        raise CheckpointError(f"{path}: its stored config is unusable: {exc}") from None
    if not all(torch.isfinite(tensor).all() for tensor in state.values() if tensor.is_floating_point()):
        raise CheckpointError(f"{path}: its weights contain NaN or infinite values (a diverged run?)")
    return config, state, metadata


def build_network(config: Config, adapter, *, bin_centres: torch.Tensor | None = None) -> PixelTransformer:
    if bin_centres is None:
        bin_centres = torch.zeros(config.model.bins, adapter.value_dims)  # overwritten by the state dict
    return PixelTransformer(
        config.model, position_dims=adapter.position_dims, value_dims=adapter.value_dims, bin_centres=bin_centres
    )
