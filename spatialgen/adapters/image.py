"""Images: x = column, y = row in pixels of the training resolution; values in [0, 1].

The field is continuous, so the same model renders at any output size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from spatialgen.adapters.base import Adapter
from spatialgen.errors import InputError
from spatialgen.signals import GridSignals

MAX_CONTEXT = 4096  # context samples per completion: encoder attention is quadratic in their number


@dataclass(frozen=True)
class ImageConfig:
    name: str = "image"
    dataset: str = "mnist"
    height: int = 28
    width: int = 28
    channels: int = 1

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError("channels must be 1 (grayscale) or 3 (RGB)")
        if not (2 <= self.height <= 4096 and 2 <= self.width <= 4096):
            raise ValueError("height and width must be between 2 and 4096")


class ImageAdapter(Adapter):
    name = "image"
    position_dims = 2

    def __init__(self, config: ImageConfig):
        super().__init__(config)
        self.value_dims = config.channels
        self.position_low = torch.zeros(2)
        self.position_high = torch.tensor([config.width - 1.0, config.height - 1.0])
        self.value_low = torch.zeros(config.channels)
        self.value_high = torch.ones(config.channels)

    @property
    def size(self) -> tuple[int, int]:
        return self.config.height, self.config.width

    # --- data ---------------------------------------------------------------------------------
    def dataset_images(self, split: str) -> torch.Tensor:
        """The configured dataset at the training size and channel count: (N, C, H, W) in [0, 1]."""
        from spatialgen.data import load_image_dataset

        return self.to_model_images(load_image_dataset(self.config.dataset, split))

    def to_model_images(self, images: np.ndarray) -> torch.Tensor:
        """uint8 (N, H, W[, 3]) or float in [0, 1] -> (N, C, H, W) float at the training size."""
        array = torch.as_tensor(np.array(images))  # a copy: inputs may be read-only
        array = array.float() / 255 if array.dtype == torch.uint8 else array.float()
        if array.dim() == 3:
            array = array[..., None]
        array = array.permute(0, 3, 1, 2)  # (N, C, H, W)
        if array.shape[1] != self.config.channels:
            array = _convert_channels(array, self.config.channels)
        if tuple(array.shape[-2:]) != self.size:
            array = F.interpolate(array, size=self.size, mode="bilinear", antialias=True, align_corners=False)
        return array.clamp(0, 1)

    def training_source(self, split: str = "train") -> GridSignals:
        return GridSignals(self.dataset_images(split) * 2 - 1, reverse_axes=True)

    def bin_centres(self, bins: int) -> torch.Tensor:
        if self.value_dims == 1:
            return super().bin_centres(bins)
        from spatialgen.model import kmeans_bin_centres

        images = self.dataset_images("train")
        pixels = images.permute(0, 2, 3, 1).reshape(-1, self.value_dims) * 2 - 1
        generator = torch.Generator().manual_seed(0)
        subset = pixels[torch.randperm(len(pixels), generator=generator)[:50_000]]
        return kmeans_bin_centres(subset, bins)

    # --- grids --------------------------------------------------------------------------------
    def grid_positions(self, height: int | None = None, width: int | None = None) -> torch.Tensor:
        """Positions (H*W, 2) as (x, y) in training pixels for an output of the given size, row-major."""
        height, width = height or self.config.height, width or self.config.width
        ys = torch.linspace(0, self.config.height - 1, height)
        xs = torch.linspace(0, self.config.width - 1, width)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        return torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=-1)

    def keep_random_pixels(self, image: torch.Tensor, keep: int, generator: torch.Generator):
        """image (C, H, W) at training size -> positions (K, 2) as (x, y), values (K, C)."""
        C, H, W = image.shape
        if keep < 0:
            raise InputError(f"--keep must be 0 or more, got {keep}")
        if keep > H * W:
            raise InputError(f"--keep {keep} is more than the {H * W} pixels of a {H}x{W} image")
        index = torch.randperm(H * W, generator=generator)[:keep]
        positions = self.grid_positions()[index]
        values = image.reshape(C, -1)[:, index].T
        return positions, values

    # --- user files ---------------------------------------------------------------------------
    def read_image(self, path: str | Path) -> torch.Tensor:
        """An image file -> (C, H, W) in [0, 1] at the training size."""
        import warnings

        from PIL import Image, ImageOps, UnidentifiedImageError

        from spatialgen.io.atomic import require_file

        path = require_file(path)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as handle:
                    array = _to_unit_array(ImageOps.exif_transpose(handle), self.config.channels)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise InputError(f"{path} is too large an image (over {Image.MAX_IMAGE_PIXELS:,} pixels)") from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            raise InputError(f"cannot read {path} as an image: {exc}") from None
        return self.to_model_images(array[None])[0]

    def read_pixels(self, path: str | Path) -> tuple[torch.Tensor, torch.Tensor, str | None]:
        """A CSV/NPZ of scattered pixels (x, y, value...) -> positions (K, 2), values (K, C), note."""
        from spatialgen.io.samples import read_samples

        columns = 2 + self.config.channels
        table = read_samples(path, columns=columns, npz_keys=("points", "values"), what="x, y, value(s)")
        if len(table) > MAX_CONTEXT:
            raise InputError(f"{path}: {len(table):,} pixels is more than the {MAX_CONTEXT:,} a completion can condition on; thin the file")
        positions, values = table[:, :2], table[:, 2:]
        note = None
        if len(values) and values.max() > 1:
            integers = np.allclose(values, np.round(values))
            if values.min() < 0 or values.max() > 255 or not integers:
                raise InputError(
                    f"{path}: pixel values must be in [0, 1] or 0-255 integers, found {values.min():g}..{values.max():g}"
                )
            values = values / 255
            note = "pixel values above 1 found: read them as 0-255 integers"
        if len(values) and values.min() < 0:
            raise InputError(f"{path}: pixel values must be in [0, 1], found {values.min():g}")
        H, W = self.size
        outside = (positions[:, 0] < -0.5) | (positions[:, 0] > W - 0.5) | (positions[:, 1] < -0.5) | (positions[:, 1] > H - 0.5)
        if outside.any():
            raise InputError(f"{path}: {int(outside.sum())} pixel(s) lie outside the model's {W}x{H} image (x 0..{W - 1}, y 0..{H - 1})")
        return torch.as_tensor(positions).float(), torch.as_tensor(values).float(), note


def _to_unit_array(image, channels: int) -> np.ndarray:
    """A PIL image -> float32 (H, W[, 3]) in [0, 1]; 16-bit and float images keep their range."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float32)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        array = array / top
    elif image.mode == "F":
        array = np.asarray(image, dtype=np.float32)
        array = array / 255.0 if array.max() > 1 else array
    else:
        mode = "L" if channels == 1 else "RGB"
        return np.asarray(image.convert(mode), dtype=np.float32) / 255.0
    array = np.clip(array, 0, 1)  # single-channel high-depth image
    return np.repeat(array[..., None], 3, axis=-1) if channels == 3 else array


def _convert_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    if channels == 3:
        return images[:, :1].expand(-1, 3, -1, -1)
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=images.dtype)  # ITU-R 601 luma, as PIL's "L"
    return (images[:, :3] * weights[None, :, None, None]).sum(1, keepdim=True)
