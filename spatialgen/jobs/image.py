"""Image jobs: complete an image from scattered pixels; evaluate against interpolation baselines."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from spatialgen.adapters.image import ImageAdapter
from spatialgen.api import Model
from spatialgen.baselines import nearest_neighbour, rbf_interpolation
from spatialgen.errors import InputError
from spatialgen.io.progress import track
from spatialgen.metrics import bits_per_dim, psnr, ssim
from spatialgen.sampling import mean_field, sample_field

PIXEL_FILE_SUFFIXES = (".csv", ".npz")


@dataclass
class ImageCompletion:
    observed_positions: torch.Tensor  # (K, 2) x, y in training pixels
    observed_values: torch.Tensor  # (K, C)
    mean: np.ndarray  # (H, W, C) at the output size
    std: np.ndarray  # (H, W, C)
    samples: list[np.ndarray] = field(default_factory=list)  # each (H, W, C)
    truth: np.ndarray | None = None  # (h, w, C) at the training size
    notes: list[str] = field(default_factory=list)


def read_context(adapter: ImageAdapter, path: Path, keep: int, seed: int):
    """An image file (keep K random pixels) or a pixel file -> positions, values, truth, notes."""
    if path.suffix.lower() in PIXEL_FILE_SUFFIXES:
        positions, values, note = adapter.read_pixels(path)
        return positions, values, None, [note] if note else []
    image = adapter.read_image(path)  # (C, H, W)
    positions, values = adapter.keep_random_pixels(image, keep, torch.Generator().manual_seed(seed))
    return positions, values, image.permute(1, 2, 0).numpy(), []


def complete_image(
    model: Model,
    input_path: str | Path,
    *,
    keep: int = 64,
    samples: int = 3,
    size: tuple[int, int] | None = None,
    seed: int = 0,
    n_autoregressive: int | None = None,
    step: int = 4,
    temperature: float = 1.0,
    progress: bool = True,
) -> ImageCompletion:
    adapter = model.adapter
    if keep < 0:
        raise InputError(f"--keep must be 0 or more, got {keep}")
    if samples < 0:
        raise InputError(f"--samples must be 0 or more, got {samples}")
    if size is not None and (min(size) < 1 or size[0] * size[1] > 4096 * 4096):
        raise InputError(f"--size must be between 1x1 and 4096x4096, got {size[0]}x{size[1]}")
    if step < 1:
        raise InputError(f"--step must be at least 1, got {step}")
    if n_autoregressive is not None and n_autoregressive < 0:
        raise InputError(f"--autoregressive must be 0 or more, got {n_autoregressive}")
    if temperature < 0:
        raise InputError(f"--temperature must be 0 or more, got {temperature}")
    positions, values, truth, notes = read_context(adapter, Path(input_path), keep, seed)
    height, width = size or adapter.size
    grid = adapter.grid_positions(height, width)
    field_ = mean_field(model, positions, values, grid, progress=progress)
    shape = (height, width, adapter.value_dims)
    result = ImageCompletion(positions, values, field_.mean.reshape(shape).numpy(), field_.std.reshape(shape).numpy(), truth=truth, notes=notes)
    if samples:
        drawn = adapter.size[0] * adapter.size[1] if n_autoregressive is None else n_autoregressive
        fields = sample_field(model, positions, values, grid, samples=samples, n_autoregressive=drawn, step=step,
                              temperature=temperature, seed=seed, progress=progress)  # fmt: skip
        result.samples = [f.reshape(shape).clamp(0, 1).numpy() for f in fields]
    return result


def observed_image(adapter: ImageAdapter, positions: torch.Tensor, values: torch.Tensor) -> np.ndarray:
    """The observed pixels on a blue 'unknown' background, (H, W, 3) at the training size."""
    H, W = adapter.size
    canvas = np.zeros((H, W, 3), dtype=np.float32)
    canvas[:] = (0.13, 0.22, 0.45)
    cols = positions[:, 0].round().long().clamp(0, W - 1).numpy()
    rows = positions[:, 1].round().long().clamp(0, H - 1).numpy()
    colours = values.numpy()
    canvas[rows, cols] = colours if colours.shape[1] == 3 else np.repeat(colours, 3, axis=1)
    return canvas


def write_panel(adapter: ImageAdapter, completion: ImageCompletion, out: str | Path, *, title: str = "") -> None:
    """observed | mean | samples | std | truth, one PNG (or any suffix matplotlib writes)."""
    from spatialgen.io.plots import figure, save_figure

    tiles = [("observed", observed_image(adapter, completion.observed_positions, completion.observed_values), None)]
    tiles.append(("mean", completion.mean, None))
    tiles += [(f"sample {i + 1}", s, None) for i, s in enumerate(completion.samples)]
    tiles.append(("std", completion.std.mean(-1), "magma"))
    if completion.truth is not None:
        tiles.append(("ground truth", completion.truth, None))
    plt = figure()
    fig, axes = plt.subplots(1, len(tiles), figsize=(1.9 * len(tiles), 2.2), squeeze=False)
    for ax, (name, tile, cmap) in zip(axes[0], tiles):
        tile = np.asarray(tile)
        if tile.ndim == 3 and tile.shape[-1] == 1:
            tile = tile[..., 0]
        ax.imshow(np.clip(tile, 0, None if cmap else 1), cmap=cmap or ("gray" if tile.ndim == 2 else None),
                  vmin=0, vmax=None if cmap else 1, interpolation="nearest")  # fmt: skip
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    save_figure(fig, out)


# --- evaluation -------------------------------------------------------------------------------
METHODS = ("spatialgen", "rbf (thin-plate)", "nearest neighbour")


@torch.no_grad()
def evaluate_image_model(
    model: Model, *, contexts: tuple[int, ...] = (16, 64, 256), limit: int | None = None, seed: int = 0,
    batch: int = 50, progress: bool = True,
) -> dict:  # fmt: skip
    """PSNR/SSIM of the mean image and discretised bits/dim on the test split, beside baselines.

    Each test image gets the same K random context pixels for every method (seeded per image).
    bits/dim is over the unobserved pixels, 8-bit discretised.
    """
    adapter = model.adapter
    images = adapter.dataset_images("test")
    if limit:
        images = images[:limit]
    N, C, H, W = images.shape
    for K in contexts:
        if not 0 <= K <= H * W:
            raise InputError(f"context size {K} is outside 0..{H * W}")
    grid = adapter.grid_positions()  # (HW, 2)
    pixels = images.permute(0, 2, 3, 1).reshape(N, H * W, C)
    fill = pixels.mean(dim=(0, 1)).numpy()
    rows = []
    for K in contexts:
        scores = {method: {"psnr": [], "ssim": []} for method in METHODS}
        log_mass = []
        for start in track(range(0, N, batch), description=f"eval K={K}", total=-(-N // batch), enabled=progress):
            chunk = pixels[start : start + batch]
            B = len(chunk)
            index = torch.stack([torch.randperm(H * W, generator=torch.Generator().manual_seed(seed * 100_003 + start + b)) for b in range(B)])
            ctx_index, hidden = index[:, :K], index[:, K:]
            ctx_pos, ctx_val = grid[ctx_index], torch.gather(chunk, 1, ctx_index[..., None].expand(-1, -1, C))
            dist = model.predict(ctx_pos, ctx_val, grid.expand(B, -1, -1))
            masses = dist.log_prob_discretised(chunk.to(model.device), bin_width=1 / 255, low=0.0, high=1.0).cpu()
            log_mass.append(torch.gather(masses, 1, hidden))
            means = dist.mean.cpu().clamp(0, 1)
            for b in range(B):
                truth = chunk[b].reshape(H, W, C).numpy()
                p, v = ctx_pos[b].numpy(), ctx_val[b].numpy()
                predictions = {
                    "spatialgen": means[b].numpy(),
                    "rbf (thin-plate)": np.clip(rbf_interpolation(p, v, grid.numpy(), fill=fill), 0, 1),
                    "nearest neighbour": nearest_neighbour(p, v, grid.numpy(), fill=fill),
                }
                for method, prediction in predictions.items():
                    image = prediction.reshape(H, W, C)
                    scores[method]["psnr"].append(psnr(image, truth))
                    scores[method]["ssim"].append(ssim(image[..., 0] if C == 1 else image, truth[..., 0] if C == 1 else truth))
        bpd = bits_per_dim(torch.cat(log_mass, dim=1), C) if K < H * W else None
        for method in METHODS:
            rows.append({
                "context": K, "method": method,
                "psnr": float(np.mean(scores[method]["psnr"])), "ssim": float(np.mean(scores[method]["ssim"])),
                "bits_per_dim": bpd if method == "spatialgen" else None,
            })  # fmt: skip
    return {"domain": "image", "dataset": adapter.config.dataset, "split": "test", "images": N, "seed": seed, "rows": rows}
