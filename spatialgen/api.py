"""The public model object: a trained network plus the adapter that knows its units."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from spatialgen.adapters import Adapter, get_adapter
from spatialgen.checkpoint import build_network, read_checkpoint
from spatialgen.config import Config
from spatialgen.distribution import BinnedGaussianMixture
from spatialgen.errors import CheckpointError, InputError, shortened
from spatialgen.model import PixelTransformer
from spatialgen.train import resolve_device

ArrayLike = Any  # numpy array, torch tensor or nested lists


class Model:
    """A trained PixelTransformer in its adapter's natural units (see DESIGN.md, "Units")."""

    def __init__(self, network: PixelTransformer, adapter: Adapter, config: Config, *, device: torch.device):
        self.network = network.to(device).eval()
        self.adapter = adapter
        self.config = config
        self.device = device

    @property
    def name(self) -> str:
        return f"{self.config.adapter.name}-{getattr(self.config.adapter, 'dataset', 'custom')}"

    # --- unit handling ----------------------------------------------------------------------------
    def _as_batched(self, array: ArrayLike, dims: int, what: str) -> torch.Tensor:
        tensor = torch.as_tensor(np.asarray(array, dtype=np.float32) if not torch.is_tensor(array) else array)
        tensor = tensor.float()
        if tensor.dim() == 2:
            tensor = tensor[None]
        if tensor.dim() != 3 or tensor.shape[-1] != dims:
            raise InputError(f"{what} must be (B, N, {dims}) or (N, {dims}), got {tuple(tensor.shape)}")
        if not torch.isfinite(tensor).all():
            raise InputError(f"{what} contains NaN or infinite values")
        return tensor.to(self.device)

    def normalised_inputs(self, context_positions, context_values, query_positions=None):
        a = self.adapter
        ctx_pos = a.normalise_positions(self._as_batched(context_positions, a.position_dims, "context positions"))
        ctx_val = a.normalise_values(self._as_batched(context_values, a.value_dims, "context values"))
        if ctx_pos.shape[:2] != ctx_val.shape[:2]:
            raise InputError(f"{ctx_pos.shape[1]} context positions but {ctx_val.shape[1]} context values")
        if query_positions is None:
            return ctx_pos, ctx_val
        qry = a.normalise_positions(self._as_batched(query_positions, a.position_dims, "query positions"))
        return ctx_pos, ctx_val, qry

    def in_natural_units(self, distribution: BinnedGaussianMixture) -> BinnedGaussianMixture:
        return distribution.in_units(shift=self.adapter.value_shift.to(self.device), scale=self.adapter.value_scale.to(self.device))

    # --- queries ----------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, context_positions: ArrayLike, context_values: ArrayLike):
        """Encode a context once (natural units) for many decodes with ``network.decode``."""
        ctx_pos, ctx_val = self.normalised_inputs(context_positions, context_values)
        return self.network.encode(ctx_pos, ctx_val)

    @torch.no_grad()
    def predict(self, context_positions: ArrayLike, context_values: ArrayLike, query_positions: ArrayLike) -> BinnedGaussianMixture:
        """p(value | context) at every query: a mixture over values in natural units, batch (B, Q).

        Contexts may be empty (K = 0). For large grids use :func:`spatialgen.mean_field`, which
        decodes in chunks instead of holding every query's mixture at once.
        """
        ctx_pos, ctx_val, qry = self.normalised_inputs(context_positions, context_values, query_positions)
        if ctx_pos.shape[0] != qry.shape[0]:
            raise InputError(f"batch sizes differ: {ctx_pos.shape[0]} contexts, {qry.shape[0]} query sets")
        memory = self.network.encode(ctx_pos, ctx_val)
        return self.in_natural_units(self.network.distribution(self.network.decode(memory, qry)))


def load(path: str | Path, *, device: str = "auto", expect_adapter: str | None = None) -> Model:
    """Load a checkpoint; it carries its config and adapter, so nothing else is needed."""
    config, state, _ = read_checkpoint(path)
    if expect_adapter is not None and config.adapter.name != expect_adapter:
        raise CheckpointError(f"{path} is a model for {config.adapter.name!r} data, not for {expect_adapter!r} data")
    adapter = get_adapter(config.adapter)
    network = build_network(config, adapter)
    try:
        network.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not match its config ({shortened(str(exc).splitlines()[0], 100)})") from None
    return Model(network, adapter, config, device=resolve_device(device))
