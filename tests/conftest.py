"""Shared fixtures: tiny models and configs on real (bundled) data, single-threaded torch."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

from spatialgen.adapters import get_adapter
from spatialgen.api import Model
from spatialgen.checkpoint import build_network
from spatialgen.config import Config, config_from_dict
from spatialgen.model import ModelConfig

TINY_MODEL = {"dim": 32, "heads": 2, "encoder_layers": 1, "decoder_layers": 1, "fourier_features": 16, "bins": 16}


@pytest.fixture(params=[False, True], ids=["plain", "offsets"])
def tiny_model_config(request) -> ModelConfig:
    """The tiny model, without and with relative offsets in attention (every model test runs on both)."""
    return ModelConfig(**TINY_MODEL, relative_offsets=request.param)


def tiny_config_dict(**train) -> dict:
    """A raw config for the image adapter on sklearn's 8x8 digits (no fetching) with a tiny model."""
    base_train = {
        "steps": 6, "batch_size": 4, "learning_rate": 1e-3, "min_learning_rate": 1e-4, "warmup_steps": 2,
        "max_context": 16, "queries": 16, "seed": 0, "device": "cpu", "checkpoint_every": 1000, "log_every": 1,
        "threads": 1,
    }  # fmt: skip
    base_train.update(train)
    return {
        "adapter": {"name": "image", "dataset": "digits", "height": 8, "width": 8, "channels": 1},
        "model": dict(TINY_MODEL),
        "train": base_train,
    }


@pytest.fixture
def tiny_config() -> Config:
    return config_from_dict(tiny_config_dict())


def make_model(config: Config, *, seed: int = 0) -> Model:
    """An untrained tiny :class:`spatialgen.api.Model` on CPU with uniform bin centres."""
    adapter = get_adapter(config.adapter)
    torch.manual_seed(seed)
    network = build_network(config, adapter, bin_centres=adapter.bin_centres(config.model.bins))
    return Model(network, adapter, config, device=torch.device("cpu"))


@pytest.fixture
def tiny_model(tiny_config) -> Model:
    return make_model(tiny_config)


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "ddp: launches two processes with torch.distributed.run (slow; never skipped)")


def train_tiny(grids: torch.Tensor, *, steps: int, out_dir, min_context: int = 0, max_context: int = 32, seed: int = 0):
    """Train a tiny network on ``grids`` (S, 1, 8, 8) in [0, 1] with the real Trainer; -> (Model, history)."""
    from spatialgen.config import TrainConfig
    from spatialgen.signals import GridSignals
    from spatialgen.train import Trainer

    config = config_from_dict(tiny_config_dict())
    train_config = TrainConfig(
        steps=steps, batch_size=8, learning_rate=3e-3, min_learning_rate=3e-4, warmup_steps=10,
        min_context=min_context, max_context=max_context, queries=64, seed=seed, device="cpu",
        checkpoint_every=10**6, log_every=10,
    )  # fmt: skip
    model = make_model(config, seed=seed)
    source = GridSignals(grids * 2 - 1, reverse_axes=True)
    trainer = Trainer(
        train_config, model.network, source, out_dir=out_dir, save=lambda *args: None, device=torch.device("cpu")
    )
    history = trainer.fit()
    return model, history


@pytest.fixture(scope="session")
def black_or_white_model(tmp_path_factory) -> Model:
    """A tiny model trained on two signals, all black and all white: one context pixel says which."""
    grids = torch.stack([torch.zeros(1, 8, 8), torch.ones(1, 8, 8)])
    model, _ = train_tiny(
        grids, steps=200, out_dir=tmp_path_factory.mktemp("black-or-white"), min_context=1, max_context=8
    )
    return model


def assert_user_error(result, pattern: str, *, not_written=()) -> None:
    """The CLI contract for bad input: exit code 2, one ``error:`` line matching ``pattern``, no
    traceback, and nothing written at ``not_written`` (a path or several), no temporary file beside it."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert re.search(pattern, lines[0]), lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    for path in (not_written,) if isinstance(not_written, (str, Path)) else not_written:
        assert not Path(path).exists(), path
        assert not list(Path(path).parent.glob(".spatialgen-*")), "a temporary file was left behind"
