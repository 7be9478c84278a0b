"""Dense signals on regular grids (images, volumes, clips), read at continuous positions."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from spatialgen.adapters.base import TrainingSource


def read_grid(grids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Multilinear interpolation of grids (B, C, *spatial) at positions (B, N, dx) in [-1, 1].

    Positions are ordered like the spatial axes (e.g. (y, x) for an image, (t, y, x) for a clip)
    and -1/+1 are the centres of the first/last samples (``align_corners=True``), so every
    position inside the box blends only real samples, never padding.
    """
    B, N, dx = positions.shape
    if grids.dim() != dx + 2:
        raise ValueError(f"grids with {grids.dim() - 2} spatial axes cannot be read at {dx}-D positions")
    # grid_sample wants the last axis as (x, y[, z]) = reversed spatial order
    sample_at = positions.flip(-1).view(B, N, *([1] * (dx - 1)), dx)
    values = F.grid_sample(grids, sample_at, mode="bilinear", padding_mode="border", align_corners=True)
    return values.view(B, grids.shape[1], N).transpose(1, 2)  # (B, N, C)


class GridSignals(TrainingSource):
    """A stack of grids (S, C, *spatial) with values already in normalised units.

    ``reverse_axes`` returns positions as (x, y[, z]) instead of the grid's axis order (y, x):
    images use (x = column, y = row), clips use (t, y, x).
    """

    def __init__(self, grids: torch.Tensor, *, reverse_axes: bool = False):
        self.grids = grids
        self.reverse_axes = reverse_axes

    def draw(self, generator: torch.Generator, batch: int, points: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.randint(len(self.grids), (batch,), generator=generator)
        dx = self.grids.dim() - 2
        positions = torch.rand(batch, points, dx, generator=generator) * 2 - 1
        values = read_grid(self.grids[index], positions)
        return (positions.flip(-1) if self.reverse_axes else positions), values
