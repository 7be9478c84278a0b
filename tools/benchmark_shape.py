"""Time of a mean shape completion on this machine: coarse-to-fine decoding and marching cubes.

    python tools/benchmark_shape.py [--checkpoint data/checkpoints/sdf-cgal.safetensors] [--shape bunny00]

Draws K SDF samples from a test mesh of the checkpoint's dataset, then reports for each grid
resolution the queries actually decoded (coarse to fine), the decoding time (the network and, with
the checkpoint's thin_plate_weight, the thin-plate spline it blends in) and the marching-cubes
time. Issue 3's target: the whole 128^3 mean completion in <= 30 s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import spatialgen
from spatialgen.io.mesh import surface_from_grid
from spatialgen.jobs.common import shipped_checkpoint
from spatialgen.jobs.shape import CountingDecoder, FieldDecoder, decode_grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--shape", default=None, help="a test shape's name (default: the first)")
    parser.add_argument("--samples", type=int, default=512, help="K, SDF samples drawn from the mesh")
    args = parser.parse_args()
    model = spatialgen.load(args.checkpoint or shipped_checkpoint("sdf-cgal"), device="cpu")
    adapter = model.adapter
    meshes = adapter.normalised_meshes("test")
    shape = next(m for m in meshes if m.name == args.shape) if args.shape else meshes[0]
    points, sdf = adapter.draw_samples(shape.vertices, shape.faces, args.samples, np.random.default_rng(0))
    weight = adapter.config.thin_plate_weight
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, model {model.name}, shape {shape.name}, K={args.samples}, "
          f"thin-plate weight {weight}")  # fmt: skip
    for resolution in (64, 96, 128, 256):
        start = time.perf_counter()
        decoder = CountingDecoder(FieldDecoder(model, points, sdf, thin_plate_weight=weight))
        grid = decode_grid(decoder, resolution)
        decoded = time.perf_counter()
        mesh, _ = surface_from_grid(grid)
        done = time.perf_counter()
        print(f"  {resolution:>4}^3: {decoder.queries:>10,} queries ({decoder.queries / resolution**3:.1%} of the grid), "
              f"decode {decoded - start:6.2f} s, marching cubes {done - decoded:5.2f} s, {len(mesh.faces):,} faces")  # fmt: skip


if __name__ == "__main__":
    main()
