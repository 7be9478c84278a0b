"""Fields from a trained model: the chunked mean field and autoregressive samples.

Queries never attend to each other, so decoding a grid in chunks is exact. Sampling follows the
paper: visit the grid in a fresh random order per sample, draw the first N' values one ``step``
at a time (each conditioned on the context and every value drawn before it), then fill the rest
with the mean given the context plus the N' drawn values.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from spatialgen.api import ArrayLike, Model
from spatialgen.io.progress import track


@dataclass
class Field:
    """Values on Q query points in natural units."""

    mean: torch.Tensor  # (Q, dv)
    std: torch.Tensor  # (Q, dv)


@torch.no_grad()
def mean_field(
    model: Model,
    context_positions: ArrayLike,
    context_values: ArrayLike,
    query_positions: ArrayLike,
    *,
    chunk: int = 16384,
    progress: bool = False,
) -> Field:
    """Mean and standard deviation at every query (one context, natural units), decoded in chunks."""
    ctx_pos, ctx_val, qry = model.normalised_inputs(context_positions, context_values, query_positions)
    if ctx_pos.shape[0] != 1:
        raise ValueError("mean_field takes one context; loop over a batch")
    memory = model.network.encode(ctx_pos, ctx_val)
    means, stds = [], []
    starts = range(0, qry.shape[1], chunk)
    for start in track(starts, description="decoding", total=len(starts), enabled=progress):
        head = model.network.decode(memory, qry[:, start : start + chunk])
        dist = model.in_natural_units(model.network.distribution(head))
        means.append(dist.mean[0].cpu())
        stds.append(dist.stddev[0].cpu())
    return Field(mean=torch.cat(means), std=torch.cat(stds))


@torch.no_grad()
def sample_field(
    model: Model,
    context_positions: ArrayLike,
    context_values: ArrayLike,
    query_positions: ArrayLike,
    *,
    samples: int = 1,
    n_autoregressive: int = 2048,
    step: int = 1,
    temperature: float = 1.0,
    seed: int = 0,
    chunk: int = 16384,
    progress: bool = False,
) -> torch.Tensor:
    """``samples`` coherent draws of the whole field, (samples, Q, dv) in natural units.

    step = 1 is the paper's exact algorithm; larger steps draw ``step`` values per encoder pass
    (faster, approximate). The samples are batched: each has its own random visiting order.
    """
    if samples < 1 or step < 1 or n_autoregressive < 0 or temperature < 0:
        raise ValueError("samples and step must be >= 1; n_autoregressive and temperature >= 0")
    ctx_pos, ctx_val, qry = model.normalised_inputs(context_positions, context_values, query_positions)
    if ctx_pos.shape[0] != 1:
        raise ValueError("sample_field takes one context; loop over a batch")
    network, device = model.network, model.device
    generator = torch.Generator(device=device).manual_seed(seed)
    Q = qry.shape[1]
    orders = torch.stack([torch.randperm(Q, generator=generator, device=device) for _ in range(samples)])  # (N, Q)
    query = qry[0]  # (Q, dx)
    positions = ctx_pos.expand(samples, -1, -1)  # (N, K, dx) grows as values are drawn
    values = ctx_val.expand(samples, -1, -1)
    result = torch.empty(samples, Q, model.adapter.value_dims, device=device)  # normalised units
    rows = torch.arange(samples, device=device)[:, None]
    drawn = min(n_autoregressive, Q)
    starts = range(0, drawn, step)
    for start in track(starts, description="sampling", total=len(starts), enabled=progress):
        index = orders[:, start : min(start + step, drawn)]  # (N, s)
        memory = network.encode(positions, values)
        new_values = network.distribution(network.decode(memory, query[index])).sample(temperature, generator)
        result[rows, index] = new_values
        positions = torch.cat([positions, query[index]], dim=1)
        values = torch.cat([values, new_values], dim=1)
    rest = orders[:, drawn:]
    if rest.shape[1]:
        memory = network.encode(positions, values)
        for start in range(0, rest.shape[1], chunk):
            index = rest[:, start : start + chunk]
            result[rows, index] = network.distribution(network.decode(memory, query[index])).mean
    return (model.adapter.value_shift.to(device) + model.adapter.value_scale.to(device) * result).cpu()
