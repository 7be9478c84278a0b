"""Ship a run's weights as a packaged checkpoint, carrying the committed config that documents them.

A checkpoint fine-tuned in stages holds the last stage's [train] (its runs/ init_from path, its
own step count). The shipped file should instead carry ``configs/NAME.toml``, whose comments
give the lineage and whose ``train.steps`` is the total, so that ``spatialgen train`` on the
embedded config reproduces the recipe. The weights are checked to fit that config first.

    python tools/ship_checkpoint.py runs/video-s2/last.safetensors configs/video-skvideo.toml --steps 5500
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from spatialgen.checkpoint import build_network, read_checkpoint, save_checkpoint
from spatialgen.config import load_config

SHIPPED = Path(__file__).resolve().parent.parent / "data" / "checkpoints"


def ship(run_checkpoint: Path, config_path: Path, steps: int) -> Path:
    from spatialgen.adapters import get_adapter

    run_config, weights, _ = read_checkpoint(run_checkpoint)
    config = load_config(config_path, [])
    if run_config.adapter != config.adapter or run_config.model != config.model:
        raise SystemExit(f"{run_checkpoint} was trained with another [adapter] or [model] than {config_path}")
    if config.train.steps != steps:
        raise SystemExit(f"{config_path} says train.steps = {config.train.steps}, not the {steps} steps trained")
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
    parser.add_argument("--steps", type=int, required=True, help="total steps over all stages")
    args = parser.parse_args()
    print(f"wrote {ship(args.checkpoint, args.config, args.steps)}")


if __name__ == "__main__":
    main()
