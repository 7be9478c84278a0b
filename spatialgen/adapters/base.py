"""What every domain adapter provides, and the unit conversions they share.

The network only sees positions in [-1, 1]^dx and values in [-1, 1]^dv. An adapter states the
box of its natural units (``position_low/high``, ``value_low/high``) and knows how to draw
training samples from its signals. Everything domain-specific (files, grids, artefacts) lives
in the adapter modules; the core never imports them.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch


class Adapter:
    name: ClassVar[str]
    position_dims: int
    value_dims: int
    position_low: torch.Tensor  # (dx,) natural units mapped to -1
    position_high: torch.Tensor  # (dx,) natural units mapped to +1
    value_low: torch.Tensor  # (dv,)
    value_high: torch.Tensor  # (dv,)

    def __init__(self, config: Any):
        self.config = config

    # --- units -----------------------------------------------------------------------------------
    def normalise_positions(self, positions: torch.Tensor) -> torch.Tensor:
        low, high = self.position_low.to(positions), self.position_high.to(positions)
        return (positions - low) / (high - low) * 2 - 1

    def normalise_values(self, values: torch.Tensor) -> torch.Tensor:
        low, high = self.value_low.to(values), self.value_high.to(values)
        return (values - low) / (high - low) * 2 - 1

    @property
    def value_shift(self) -> torch.Tensor:
        """v = shift + scale * u maps normalised values u back to natural units."""
        return (self.value_low + self.value_high) / 2

    @property
    def value_scale(self) -> torch.Tensor:
        return (self.value_high - self.value_low) / 2

    # --- training ---------------------------------------------------------------------------------
    def training_source(self, split: str = "train") -> TrainingSource:
        raise NotImplementedError

    def bin_centres(self, bins: int) -> torch.Tensor:
        """Initial bin centres (bins, dv) in normalised units: a uniform grid for scalar values."""
        from spatialgen.model import uniform_bin_centres

        if self.value_dims == 1:
            return uniform_bin_centres(bins)
        raise NotImplementedError(f"{self.name} adapter must choose bin centres for {self.value_dims} values")


class TrainingSource:
    """Draws (positions, values) in normalised units from random training signals."""

    target_limit: float | None = None  # None: targets are scored as drawn

    def draw(self, generator: torch.Generator, batch: int, points: int) -> tuple[torch.Tensor, torch.Tensor]:
        """-> positions (batch, points, dx), values (batch, points, dv).

        Values may leave [-1, 1] where the context should learn more than a prediction can hold
        (SDF distances beyond the truncation); such a source sets ``target_limit`` and the trainer
        clamps the targets into [-target_limit, target_limit].
        """
        raise NotImplementedError
