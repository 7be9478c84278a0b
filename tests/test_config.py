"""Config files and --set overrides: typed, frozen, and loud about anything unknown."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from spatialgen.config import (
    Config,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    config_to_toml,
    load_config,
    parse_override,
)
from spatialgen.errors import ConfigError
from spatialgen.model import ModelConfig

MNIST = Path(__file__).resolve().parents[1] / "configs" / "image-mnist.toml"


def test_load_shipped_config():
    config = load_config(MNIST)
    assert isinstance(config, Config)
    assert config.adapter.name == "image" and config.adapter.dataset == "mnist"
    assert (config.adapter.height, config.adapter.width, config.adapter.channels) == (28, 28, 1)
    assert config.model == ModelConfig(
        dim=128, heads=4, encoder_layers=3, decoder_layers=3, fourier_features=64, fourier_scale=2.0, bins=64
    )
    raw = tomllib.loads(MNIST.read_text())
    assert config.train.steps == raw["train"]["steps"] and isinstance(config.train.steps, int)
    assert config.train.learning_rate == raw["train"]["learning_rate"] and config.train.threads == raw["train"]["threads"]
    assert config.train.weight_decay == TrainConfig().weight_decay  # unset keys keep their defaults


def test_overrides_are_typed():
    config = load_config(MNIST, ["train.steps=5", "train.learning_rate=1", "train.device=cpu", "model.fourier_scale=3"])
    assert config.train.steps == 5 and type(config.train.steps) is int
    assert config.train.learning_rate == 1.0 and type(config.train.learning_rate) is float
    assert config.train.device == "cpu"
    assert type(config.model.fourier_scale) is float and config.model.fourier_scale == 3.0
    assert config.adapter.dataset == "mnist"  # untouched
    quoted = load_config(MNIST, ['adapter.dataset="digits"', "adapter.height = 8"])
    assert quoted.adapter.dataset == "digits" and quoted.adapter.height == 8


def test_override_into_a_missing_section_uses_the_defaults(tmp_path):
    path = tmp_path / "small.toml"
    path.write_text('[adapter]\nname = "image"\ndataset = "digits"\n')
    config = load_config(path, ["train.steps=7"])
    assert config.train.steps == 7 and config.model == ModelConfig()


@pytest.mark.parametrize(
    "override,needle",
    [
        ("train.steps=1.5", "train.steps"),
        ("train.steps=true", "train.steps"),  # a bool is not an int
        ("train.steps=abc", "train.steps"),
        ("train.learning_rate=fast", "train.learning_rate"),
        ("train.device=3", "train.device"),
        ("adapter.height=[8]", "adapter.height"),
    ],
)
def test_wrong_type_is_an_error_naming_the_key(override, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load_config(MNIST, [override])


def test_invalid_values_are_config_errors():
    with pytest.raises(ConfigError, match="divisible"):
        load_config(MNIST, ["model.dim=30"])  # 4 heads
    with pytest.raises(ConfigError, match="channels"):
        load_config(MNIST, ["adapter.channels=2"])
    with pytest.raises(ConfigError, match="thin_plate_weight"):
        load_config(MNIST.parent / "sdf-cgal.toml", ["adapter.thin_plate_weight=1.5"])


def test_unknown_key_names_the_key():
    with pytest.raises(ConfigError, match=r"train\.stepz"):
        load_config(MNIST, ["train.stepz=5"])
    with pytest.raises(ConfigError, match=r"model\.depth"):
        config_from_dict({"adapter": {"name": "image"}, "model": {"depth": 3}})


def test_unknown_section_and_adapter():
    with pytest.raises(ConfigError, match="optimizer"):
        load_config(MNIST, ["optimizer.lr=1"])
    with pytest.raises(ConfigError, match="unknown adapter 'audio'"):
        config_from_dict({"adapter": {"name": "audio"}})
    with pytest.raises(ConfigError, match="adapter.name"):
        config_from_dict({"adapter": {"dataset": "mnist"}})


@pytest.mark.parametrize("text", ["train.steps", "steps=5", "train.steps.x=5", ".steps=5", "train.=5"])
def test_bad_override_syntax(text):
    with pytest.raises(ConfigError):
        parse_override(text)


def test_parse_override_values():
    assert parse_override("train.steps=200") == ("train", "steps", 200)
    assert parse_override(" train.device = cuda:1 ") == ("train", "device", "cuda:1")
    assert parse_override("train.learning_rate=1e-3") == ("train", "learning_rate", 1e-3)
    assert parse_override("adapter.dataset=a=b") == ("adapter", "dataset", "a=b")  # only the first '=' splits
    raw = {"train": {"steps": 1}}
    merged = apply_overrides(raw, ["train.steps=2"])
    assert merged["train"]["steps"] == 2 and raw["train"]["steps"] == 1  # input not mutated


def test_configs_are_frozen():
    config = load_config(MNIST)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.train.steps = 3  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.model = ModelConfig()  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.adapter.height = 3  # type: ignore[misc]


def test_round_trip_through_toml():
    config = load_config(MNIST, ["train.steps=11"])
    again = config_from_dict(tomllib.loads(config_to_toml(config)))
    assert again == config
    assert config_from_dict(config.to_dict()) == config


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[adapter\nname = 'image'\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    bom = tmp_path / "bom.toml"
    bom.write_bytes(b"\xef\xbb\xbf[adapter]\nname = 'image'\n")
    assert load_config(bom).adapter.name == "image"
