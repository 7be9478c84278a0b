"""Function jobs: complete a 1-D curve from a few points (plot + numbers) and the neural-process
Gaussian-process benchmark (mean log-likelihood per target point)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from spatialgen.adapters.function import (
    KERNELS,
    FunctionAdapter,
    GPHyperparameters,
    draw_gp,
    draw_hyperparameters,
    evaluate_polynomial,
    gp_posterior,
)
from spatialgen.api import Model
from spatialgen.errors import InputError
from spatialgen.io.progress import track

DEMOS = ("polynomial", *KERNELS)
DEMO_POINTS = 8
MAX_POINTS = 4096


@dataclass
class FunctionCompletion:
    x: np.ndarray  # (G,) the plotted grid, in the user's x
    mean: np.ndarray  # (G,)
    std: np.ndarray  # (G,)
    samples: np.ndarray  # (N, G) coherent sample curves
    observed_x: np.ndarray  # (K,)
    observed_y: np.ndarray  # (K,)
    truth: np.ndarray | None = None  # (G,) the demo's function on the grid (a GP draw includes its 0.02 noise)
    title: str = ""
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        numbers = {"x": self.x, "mean": self.mean, "std": self.std, "samples": self.samples,
                   "observed_x": self.observed_x, "observed_y": self.observed_y}  # fmt: skip
        if self.truth is not None:
            numbers["truth"] = self.truth
        return {key: np.asarray(value).round(6).tolist() for key, value in numbers.items()}


class XMapping:
    """The user's x range [a, b] mapped linearly onto the model's [x_low, x_high]."""

    def __init__(self, adapter: FunctionAdapter, x_range: tuple[float, float] | None):
        self.model_range = (adapter.config.x_low, adapter.config.x_high)
        if x_range is not None:
            a, b = x_range
            if not (math.isfinite(a) and math.isfinite(b) and a < b and math.isfinite(b - a) and b - a > 1e-9 * max(abs(a), abs(b), 1)):
                raise InputError(f"--x-range needs two finite numbers A < B, got {a:g} {b:g}")
        self.user_range = x_range or self.model_range

    def to_model(self, x: np.ndarray) -> np.ndarray:
        (a, b), (lo, hi) = self.user_range, self.model_range
        return lo + (np.asarray(x, np.float64) - a) * (hi - lo) / (b - a)

    def check(self, x: np.ndarray, path: Path) -> None:
        a, b = self.user_range
        outside = (x < a) | (x > b)
        if outside.any():
            hint = "pass --x-range A B to map your range onto it" if self.user_range == self.model_range else "widen --x-range"
            raise InputError(f"{path}: {int(outside.sum())} x value(s) lie outside [{a:g}, {b:g}], the range the model covers; {hint}")


def read_points(path: str | Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from spatialgen.io.samples import read_samples

    table = read_samples(path, columns=2, npz_keys=("x", "y"), what="x, y")
    if len(table) > MAX_POINTS:
        raise InputError(f"{path}: {len(table):,} points is more than the {MAX_POINTS:,} a completion can condition on")
    x, y = table[:, 0], table[:, 1]
    notes = []
    unique, counts = np.unique(x, return_counts=True)
    if (counts > 1).any():
        notes.append(f"{int((counts > 1).sum())} x value(s) appear more than once: kept all, as noisy observations")
    return x, y, notes


def demo_points(adapter: FunctionAdapter, family: str, seed: int, grid: torch.Tensor):
    """A random function of ``family`` -> (observed x, observed y, truth on ``grid``)."""
    generator = torch.Generator().manual_seed(seed)
    c = adapter.config
    x = c.x_low + (c.x_high - c.x_low) * torch.rand(DEMO_POINTS, 1, generator=generator, dtype=torch.float64)
    if family == "polynomial":
        coefficients = torch.randn(c.degree + 1, generator=generator, dtype=torch.float64)
        return x[:, 0].numpy(), evaluate_polynomial(coefficients, x)[:, 0].numpy(), evaluate_polynomial(coefficients, grid.double())[:, 0].numpy()
    h = draw_hyperparameters(c, family, generator)
    both = torch.cat([x, grid.double()])
    noisy = draw_gp(both, h, generator)[:, 0]
    return x[:, 0].numpy(), noisy[:DEMO_POINTS].numpy(), noisy[DEMO_POINTS:].numpy()


def complete_function(
    model: Model, input_path: str | Path | None, *, demo: str | None = None, samples: int = 3,
    x_range: tuple[float, float] | None = None, seed: int = 0, grid_points: int = 200,
) -> FunctionCompletion:  # fmt: skip
    """The mean, std and ``samples`` autoregressive sample curves on a grid over the x range."""
    from spatialgen.sampling import mean_field, sample_field

    adapter: FunctionAdapter = model.adapter
    if samples < 0:
        raise InputError(f"--samples must be 0 or more, got {samples}")
    mapping = XMapping(adapter, x_range)
    grid_user = np.linspace(*mapping.user_range, grid_points)
    grid = torch.as_tensor(mapping.to_model(grid_user)).float()[:, None]
    notes, truth = [], None
    if demo is not None:
        if demo not in DEMOS:
            raise InputError(f"--demo must be one of {', '.join(DEMOS)}, got '{demo}'")
        x_model, y, truth = demo_points(adapter, demo, seed, grid)
        x_user = np.interp(x_model, mapping.to_model(np.array(mapping.user_range)), mapping.user_range)
        title = f"a random {demo} function, {len(y)} observed points"
    else:
        x_user, y, notes = read_points(input_path)
        mapping.check(x_user, Path(input_path))
        x_model = mapping.to_model(x_user)
        title = f"{Path(input_path).name}: {len(y)} observed points"
    ctx_x, ctx_y = torch.as_tensor(x_model).float()[:, None], torch.as_tensor(y).float()[:, None]
    field_ = mean_field(model, ctx_x, ctx_y, grid)
    curves = np.zeros((0, grid_points))
    if samples:
        drawn = sample_field(model, ctx_x, ctx_y, grid, samples=samples, n_autoregressive=grid_points, step=1, seed=seed, progress=True)
        curves = drawn[..., 0].numpy()
    return FunctionCompletion(grid_user, field_.mean[:, 0].numpy(), field_.std[:, 0].numpy(), curves,
                              np.asarray(x_user), np.asarray(y), truth, title, notes)  # fmt: skip


def plot_completion(result: FunctionCompletion, out: str | Path) -> None:
    """Observed points, mean, a +-2 std band, the sample curves and the truth when known."""
    from spatialgen.io.plots import figure, save_figure

    plt = figure()
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax.fill_between(result.x, result.mean - 2 * result.std, result.mean + 2 * result.std, color="tab:blue", alpha=0.18, lw=0, label="mean ± 2σ")
    for index, curve in enumerate(result.samples):
        ax.plot(result.x, curve, color="tab:orange", lw=0.9, alpha=0.8, label="samples" if index == 0 else None)
    if result.truth is not None:
        ax.plot(result.x, result.truth, color="black", lw=1.0, ls="--", label="truth")
    ax.plot(result.x, result.mean, color="tab:blue", lw=1.8, label="mean")
    ax.scatter(result.observed_x, result.observed_y, color="black", s=18, zorder=5, label="observed")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(result.title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    save_figure(fig, out)


# --- the Gaussian-process benchmark -------------------------------------------------------------------
@dataclass(frozen=True)
class GPTask:
    h: GPHyperparameters
    x_context: torch.Tensor  # (Nc, 1)
    y_context: torch.Tensor
    x_target: torch.Tensor  # (Nt, 1)
    y_target: torch.Tensor


def benchmark_tasks(adapter: FunctionAdapter, kernel: str, count: int, seed: int) -> list[GPTask]:
    """The TNP protocol: context size ~ U{3..46}, target size ~ U{3..50 - context}, x ~ U(-2, 2),
    one noisy GP draw over context and targets (so targets are disjoint from the context)."""
    generator = torch.Generator().manual_seed(seed * 1000 + KERNELS.index(kernel))
    c = adapter.config
    tasks = []
    for _ in range(count):
        n_context = int(torch.randint(3, 47, (1,), generator=generator))
        n_target = int(torch.randint(3, 50 - n_context + 1, (1,), generator=generator))
        h = draw_hyperparameters(c, kernel, generator)
        x = c.x_low + (c.x_high - c.x_low) * torch.rand(n_context + n_target, 1, generator=generator, dtype=torch.float64)
        y = draw_gp(x, h, generator)
        tasks.append(GPTask(h, x[:n_context], y[:n_context], x[n_context:], y[n_context:]))
    return tasks


def model_log_likelihood(model: Model, task: GPTask) -> float:
    dist = model.predict(task.x_context.float(), task.y_context.float(), task.x_target.float())
    return float(dist.log_prob(task.y_target.float()[None]).mean())


def exact_gp_log_likelihood(task: GPTask) -> float:
    mean, variance = gp_posterior(task.x_context, task.y_context, task.x_target, task.h)
    y = task.y_target[:, 0]
    return float((-0.5 * (math.log(2 * math.pi) + variance.log() + (y - mean) ** 2 / variance)).mean())


def fitted_gp_log_likelihood(task: GPTask) -> float:
    """scikit-learn's GP with the task's kernel family, hyper-parameters fitted on the context."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, ExpSineSquared, Matern, WhiteKernel

    shape = {"rbf": RBF(0.3, (1e-2, 10)), "matern": Matern(0.3, (1e-2, 10), nu=2.5),
             "periodic": ExpSineSquared(0.3, 0.3, (1e-2, 10), (5e-2, 5))}[task.h.kernel]  # fmt: skip
    kernel = ConstantKernel(0.3, (1e-3, 10)) * shape + WhiteKernel(1e-3, (1e-5, 1))
    regressor = GaussianProcessRegressor(kernel, normalize_y=False, n_restarts_optimizer=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        regressor.fit(task.x_context.numpy(), task.y_context[:, 0].numpy())
        mean, std = regressor.predict(task.x_target.numpy(), return_std=True)
    variance = np.maximum(std**2, 1e-12)
    y = task.y_target[:, 0].numpy()
    return float(np.mean(-0.5 * (np.log(2 * np.pi) + np.log(variance) + (y - mean) ** 2 / variance)))


# The figures commonly quoted from the 1-D GP regression table of Nguyen & Grover (2022),
# "Transformer Neural Processes" (target log-likelihood). Not re-measured here, and not re-checked
# against the paper: a search of public sources found no copy of the table to confirm them.
REPORTED = {"TNP-D": {"rbf": 1.39, "matern": 0.95}, "ANP": {"rbf": 0.81, "matern": 0.63}}


def evaluate_function_model(
    model: Model, *, kernels: tuple[str, ...] = KERNELS, tasks: int = 1000, seed: int = 0, fitted_gp: bool = True, progress: bool = True
) -> dict:
    """Mean log-likelihood per target point on a seeded evaluation set per kernel, beside the exact
    GP posterior with the true hyper-parameters (the ceiling) and a per-task fitted GP."""
    adapter: FunctionAdapter = model.adapter
    if adapter.config.dataset != "gp":
        raise InputError("the GP benchmark needs a model trained on Gaussian-process draws (dataset = 'gp')")
    rows = []
    for kernel in kernels:
        scores = {"spatialgen": [], "exact GP (true hyper-parameters)": [], "fitted GP (scikit-learn)": []}
        for task in track(benchmark_tasks(adapter, kernel, tasks, seed), description=f"{kernel} tasks", total=tasks, enabled=progress):
            scores["spatialgen"].append(model_log_likelihood(model, task))
            scores["exact GP (true hyper-parameters)"].append(exact_gp_log_likelihood(task))
            if fitted_gp:
                scores["fitted GP (scikit-learn)"].append(fitted_gp_log_likelihood(task))
        for method, values in scores.items():
            if values:
                rows.append({"kernel": kernel, "method": method, "log_likelihood": float(np.mean(values)),
                             "stderr": float(np.std(values) / math.sqrt(len(values)))})  # fmt: skip
        for method, numbers in REPORTED.items():
            if kernel in numbers:
                rows.append({"kernel": kernel, "method": f"{method} (reported)", "log_likelihood": numbers[kernel], "stderr": None})
    note = ("'reported' rows: the figures commonly quoted from Nguyen & Grover (2022), Transformer Neural "
            "Processes, 1-D GP table; not re-measured here")
    return {"domain": "function", "dataset": "gp", "split": "benchmark", "note": note, "items": tasks, "seed": seed, "tasks_per_kernel": tasks, "rows": rows}
