"""1-D functions: x in R, v = y in R, both in raw units.

Two families of training signals:

- ``polynomial`` (the paper's): degree-6 polynomials with N(0, 1) coefficients on x in [-1, 1];
- ``gp``: Gaussian-process draws on x in [-2, 2] under the protocol of Transformer Neural
  Processes (Nguyen & Grover, 2022): per draw a kernel (RBF, Matern-5/2 or periodic), length-scale
  ~ U(0.1, 0.6), output scale ~ U(0.1, 1.0), period ~ U(0.1, 0.5) for the periodic kernel, and
  Gaussian observation noise of standard deviation 0.02.

Values are normalised by ``y_limit`` (the value box is [-y_limit, y_limit]); values beyond it are
still modelled (the mixture's Gaussians reach past the outer bins) and the density reported in
raw units includes the normalisation's Jacobian.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from spatialgen.adapters.base import Adapter, TrainingSource

KERNELS = ("rbf", "matern", "periodic")
FAMILIES = ("gp", "polynomial")


@dataclass(frozen=True)
class FunctionConfig:
    name: str = "function"
    dataset: str = "gp"  # "gp" or "polynomial"
    kernels: tuple[str, ...] = KERNELS  # gp: kernels drawn from, uniformly
    x_low: float = -2.0
    x_high: float = 2.0
    y_limit: float = 4.0  # value box [-y_limit, y_limit]
    noise: float = 0.02  # gp: observation noise std
    length_range: tuple[float, float] = (0.1, 0.6)
    scale_range: tuple[float, float] = (0.1, 1.0)
    period_range: tuple[float, float] = (0.1, 0.5)
    degree: int = 6  # polynomial degree

    def __post_init__(self) -> None:
        if self.dataset not in FAMILIES:
            raise ValueError(f"dataset must be one of {', '.join(FAMILIES)}, got '{self.dataset}'")
        unknown = [k for k in self.kernels if k not in KERNELS]
        if unknown or not self.kernels:
            raise ValueError(f"kernels must be one or more of {', '.join(KERNELS)}, got {list(self.kernels)}")
        numbers = (self.x_low, self.x_high, self.y_limit, self.noise, *self.length_range, *self.scale_range, *self.period_range)
        if not all(math.isfinite(v) and abs(v) < 1e6 for v in numbers):
            raise ValueError("every number must be finite and below 1e6 in size")
        if not self.x_low < self.x_high:
            raise ValueError("x_low must be below x_high")
        if not self.y_limit > 0 or self.noise < 0 or self.degree < 0:
            raise ValueError("y_limit must be positive, noise and degree 0 or more")
        for name in ("length_range", "scale_range", "period_range"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"{name} must satisfy 0 < low <= high")


class FunctionAdapter(Adapter):
    name = "function"
    position_dims = 1
    value_dims = 1

    def __init__(self, config: FunctionConfig):
        super().__init__(config)
        self.position_low = torch.tensor([config.x_low])
        self.position_high = torch.tensor([config.x_high])
        self.value_low = torch.tensor([-config.y_limit])
        self.value_high = torch.tensor([config.y_limit])

    def training_source(self, split: str = "train") -> TrainingSource:
        if self.config.dataset == "polynomial":
            return PolynomialSource(self)
        return GaussianProcessSource(self, self.config.kernels)

    def grid(self, count: int = 400, x_range: tuple[float, float] | None = None) -> torch.Tensor:
        low, high = x_range or (self.config.x_low, self.config.x_high)
        return torch.linspace(low, high, count)[:, None]


# --- Gaussian processes ------------------------------------------------------------------------------
@dataclass(frozen=True)
class GPHyperparameters:
    kernel: str
    length: float
    scale: float
    period: float
    noise: float


def kernel_matrix(a: torch.Tensor, b: torch.Tensor, h: GPHyperparameters) -> torch.Tensor:
    """k(a_i, b_j) for a (N, 1), b (M, 1) -> (N, M), without the noise term."""
    distance = (a - b.T).abs()
    if h.kernel == "rbf":
        return h.scale**2 * torch.exp(-0.5 * (distance / h.length) ** 2)
    if h.kernel == "matern":
        r = math.sqrt(5) * distance / h.length
        return h.scale**2 * (1 + r + r**2 / 3) * torch.exp(-r)
    if h.kernel == "periodic":
        return h.scale**2 * torch.exp(-2 * (torch.sin(math.pi * distance / h.period) / h.length) ** 2)
    raise ValueError(f"unknown kernel '{h.kernel}'")


def draw_hyperparameters(config: FunctionConfig, kernel: str, generator: torch.Generator) -> GPHyperparameters:
    def uniform(bounds: tuple[float, float]) -> float:
        return bounds[0] + (bounds[1] - bounds[0]) * float(torch.rand(1, generator=generator, dtype=torch.float64))

    return GPHyperparameters(kernel, uniform(config.length_range), uniform(config.scale_range), uniform(config.period_range), config.noise)


def draw_gp(x: torch.Tensor, h: GPHyperparameters, generator: torch.Generator) -> torch.Tensor:
    """Noisy observations y (N, 1) of one GP draw at x (N, 1) (float64 for a stable Cholesky)."""
    x = x.double()
    covariance = kernel_matrix(x, x, h) + (h.noise**2 + 1e-8) * torch.eye(len(x), dtype=torch.float64)
    factor = torch.linalg.cholesky(covariance)
    return factor @ torch.randn(len(x), 1, generator=generator, dtype=torch.float64)


def gp_posterior(x_context, y_context, x_target, h: GPHyperparameters) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact predictive mean (M,) and variance (M,) of noisy targets given noisy context (float64)."""
    x_context, y_context, x_target = x_context.double(), y_context.double(), x_target.double()
    if len(x_context) == 0:
        prior = kernel_matrix(x_target, x_target, h).diagonal()
        return torch.zeros(len(x_target), dtype=torch.float64), prior + h.noise**2
    k_cc = kernel_matrix(x_context, x_context, h) + (h.noise**2 + 1e-8) * torch.eye(len(x_context), dtype=torch.float64)
    k_tc = kernel_matrix(x_target, x_context, h)
    factor = torch.linalg.cholesky(k_cc)
    alpha = torch.cholesky_solve(y_context.reshape(-1, 1), factor)
    v = torch.cholesky_solve(k_tc.T, factor)
    mean = (k_tc @ alpha)[:, 0]
    variance = kernel_matrix(x_target, x_target, h).diagonal() - (k_tc * v.T).sum(-1) + h.noise**2
    return mean, variance.clamp_min(1e-12)


class GaussianProcessSource(TrainingSource):
    """Each item: one kernel and hyper-parameters, x ~ U(x_low, x_high), noisy GP values."""

    def __init__(self, adapter: FunctionAdapter, kernels: tuple[str, ...]):
        self.adapter, self.kernels = adapter, kernels

    def draw(self, generator: torch.Generator, batch: int, points: int) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.adapter.config
        positions, values = torch.empty(batch, points, 1), torch.empty(batch, points, 1)
        for b in range(batch):
            kernel = self.kernels[int(torch.randint(len(self.kernels), (1,), generator=generator))]
            h = draw_hyperparameters(c, kernel, generator)
            x = c.x_low + (c.x_high - c.x_low) * torch.rand(points, 1, generator=generator)
            positions[b], values[b] = x, draw_gp(x, h, generator).float()
        return self.adapter.normalise_positions(positions), self.adapter.normalise_values(values)


# --- polynomials -------------------------------------------------------------------------------------
class PolynomialSource(TrainingSource):
    """Each item: a degree-``degree`` polynomial with N(0, 1) coefficients, x ~ U(x_low, x_high)."""

    def __init__(self, adapter: FunctionAdapter):
        self.adapter = adapter

    def draw(self, generator: torch.Generator, batch: int, points: int) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.adapter.config
        x = c.x_low + (c.x_high - c.x_low) * torch.rand(batch, points, 1, generator=generator)
        coefficients = torch.randn(batch, 1, c.degree + 1, generator=generator)
        y = evaluate_polynomial(coefficients, x)
        return self.adapter.normalise_positions(x), self.adapter.normalise_values(y)


def evaluate_polynomial(coefficients: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """sum_i c_i x^i for coefficients (..., D+1) and x (..., N, 1) -> (..., N, 1)."""
    powers = x ** torch.arange(coefficients.shape[-1], dtype=x.dtype)  # (..., N, D+1)
    return (powers * coefficients).sum(-1, keepdim=True)
