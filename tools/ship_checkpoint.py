"""Ship a run's weights as a packaged checkpoint, carrying the committed config that documents them.

A checkpoint fine-tuned in stages holds the last stage's [train] (its runs/ init_from path, its
own step count). The shipped file should instead carry ``configs/NAME.toml``, whose comments
give the lineage and whose ``train.steps`` is the total, so that ``spatialgen train`` on the
embedded config reproduces the recipe. The weights are checked to fit that config first, and
its ``train.steps`` to match the last step of the staged loss history (tools/append_stage.py).

    python tools/ship_checkpoint.py runs/video-s2/last.safetensors configs/video-skvideo.toml
"""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

from spatialgen.checkpoint import build_network, read_checkpoint, save_checkpoint
from spatialgen.config import load_config

SHIPPED = Path(__file__).resolve().parent.parent / "data" / "checkpoints"


def ship(run_checkpoint: Path, config_path: Path) -> Path:
    from spatialgen.adapters import get_adapter

    run_config, weights, _ = read_checkpoint(run_checkpoint)
    config = load_config(config_path, [])
    if run_config.adapter != config.adapter or run_config.model != config.model:
        raise SystemExit(f"{run_checkpoint} was trained with another [adapter] or [model] than {config_path}")
    history = SHIPPED / f"{config_path.stem}-loss.csv"
    with open(history, newline="") as handle:
        steps = int(list(csv.DictReader(handle))[-1]["step"])
    if config.train.steps != steps:
        raise SystemExit(f"{config_path} says train.steps = {config.train.steps}, but {history} ends at step {steps}")
    adapter = get_adapter(config.adapter)
    network = build_network(config, adapter, bin_centres=weights["bin_centres"])
    network.load_state_dict(weights)
    target = SHIPPED / f"{config_path.stem}.safetensors"
    save_checkpoint(target, network, config, step=steps)
    shutil.copyfile(config_path, SHIPPED / f"{config_path.stem}.toml")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="runs/.../last.safetensors")
    parser.add_argument("config", type=Path, help="configs/NAME.toml (its stem names the shipped file)")
    args = parser.parse_args()
    print(f"wrote {ship(args.checkpoint, args.config)}")


if __name__ == "__main__":
    main()
