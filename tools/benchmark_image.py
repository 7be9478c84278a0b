"""Throughput of the shipped image model on this machine: decoding and sampling.

    python tools/benchmark_image.py [--checkpoint data/checkpoints/image-mnist.safetensors]

Reports queries per second for the mean field at several output sizes, and seconds per sample
for autoregressive sampling at several ``step`` values (N' = 256 values drawn, 64 context pixels).
"""

from __future__ import annotations

import argparse
import time

import torch

import spatialgen
from spatialgen.jobs.common import EXAMPLES_DIR, shipped_checkpoint


def timed(function, repeats: int = 3) -> float:
    function()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None)
    args = parser.parse_args()
    model = spatialgen.load(args.checkpoint or shipped_checkpoint("image-mnist"), device="cpu")
    adapter = model.adapter
    image = adapter.read_image(EXAMPLES_DIR / "mnist-test-3.png")
    positions, values = adapter.keep_random_pixels(image, 64, torch.Generator().manual_seed(0))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, model {model.name}")
    print("\nmean field (encode once, decode in chunks)")
    for size in (28, 128, 256):
        grid = adapter.grid_positions(size, size)
        seconds = timed(lambda grid=grid: spatialgen.mean_field(model, positions, values, grid))
        print(f"  {size:>4}x{size:<4} {len(grid) / seconds:>10,.0f} queries/s  ({seconds:.3f} s)")
    print("\nautoregressive sampling, 28x28, N'=256 drawn, 3 samples batched")
    grid = adapter.grid_positions()
    for step in (1, 4, 16):
        seconds = timed(lambda step=step: spatialgen.sample_field(model, positions, values, grid, samples=3, n_autoregressive=256, step=step), repeats=1)
        print(f"  step {step:>2}: {seconds / 3:.2f} s per sample")


if __name__ == "__main__":
    main()
