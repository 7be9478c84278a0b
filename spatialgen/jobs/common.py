"""Pieces shared by the jobs: shipped checkpoints and loading with a domain check."""

from __future__ import annotations

from pathlib import Path

from spatialgen.api import Model, load
from spatialgen.errors import CheckpointError

REPO_ROOT = Path(__file__).resolve().parents[2]
CHECKPOINT_DIR = REPO_ROOT / "data" / "checkpoints"
EXAMPLES_DIR = REPO_ROOT / "data" / "examples"


def shipped_checkpoint(name: str) -> Path:
    """data/checkpoints/<name>.safetensors of this checkout (an editable install)."""
    path = CHECKPOINT_DIR / f"{name}.safetensors"
    if not path.is_file():
        raise CheckpointError(f"the shipped checkpoint {path} is missing; pass --checkpoint or train one with 'spatialgen train'")
    return path


def load_for(adapter: str, checkpoint: str | Path | None, default: str, *, device: str = "auto") -> Model:
    return load(checkpoint or shipped_checkpoint(default), device=device, expect_adapter=adapter)
