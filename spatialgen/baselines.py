"""Interpolation baselines that see the same samples as the model (scipy)."""

from __future__ import annotations

import numpy as np


def nearest_neighbour(positions: np.ndarray, values: np.ndarray, queries: np.ndarray, *, fill: np.ndarray) -> np.ndarray:
    """Value of the closest sample; ``fill`` (dv,) when there are no samples."""
    from scipy.spatial import cKDTree

    if len(positions) == 0:
        return np.broadcast_to(fill, (len(queries), len(fill))).copy()
    _, index = cKDTree(positions).query(queries)
    return values[index]


def rbf_interpolation(
    positions: np.ndarray, values: np.ndarray, queries: np.ndarray, *, fill: np.ndarray, kernel: str = "thin_plate_spline"
) -> np.ndarray:
    """scipy's RBFInterpolator (thin-plate spline with a linear term); falls back to nearest
    neighbour when there are too few samples for the polynomial term."""
    interpolant = fit_rbf(positions, values, kernel=kernel)
    if interpolant is None:
        return nearest_neighbour(positions, values, queries, fill=fill)
    return interpolant(queries)


def fit_rbf(positions: np.ndarray, values: np.ndarray, *, kernel: str = "thin_plate_spline"):
    """A fitted scipy RBFInterpolator (call it on (N, d) queries), or None when the samples cannot
    hold one: too few for the linear term, or degenerate (e.g. collinear)."""
    from scipy.interpolate import RBFInterpolator

    dims = positions.shape[1] if positions.ndim == 2 else 1
    if len(positions) < dims + 2:
        return None
    try:
        return RBFInterpolator(positions, values, kernel=kernel)
    except np.linalg.LinAlgError:
        return None
