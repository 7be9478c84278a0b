"""1-D functions: GP draws and posteriors, the benchmark protocol, polynomials, `complete-function`
and `eval` with a tiny model trained here."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from spatialgen.adapters.function import (
    KERNELS,
    FunctionAdapter,
    FunctionConfig,
    GPHyperparameters,
    draw_gp,
    evaluate_polynomial,
    gp_posterior,
    kernel_matrix,
)
from spatialgen.cli import app
from spatialgen.config import config_from_dict
from spatialgen.jobs.function import benchmark_tasks, exact_gp_log_likelihood
from tests.conftest import TINY_MODEL, assert_user_error


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])



# --- Gaussian processes --------------------------------------------------------------------------------
@pytest.mark.parametrize("kernel", KERNELS)
def test_kernels_are_positive_definite_with_the_right_scale(kernel):
    h = GPHyperparameters(kernel, length=0.3, scale=0.7, period=0.4, noise=0.02)
    x = torch.linspace(-2, 2, 60, dtype=torch.float64)[:, None]
    matrix = kernel_matrix(x, x, h)
    assert torch.linalg.eigvalsh(matrix + 1e-9 * torch.eye(60)).min() > -1e-9
    np.testing.assert_allclose(matrix.diagonal(), 0.49, rtol=1e-12)
    draws = torch.stack([draw_gp(x, h, torch.Generator().manual_seed(i)) for i in range(400)])
    assert draws.var(0).mean().item() == pytest.approx(0.49 + 0.02**2, rel=0.15)


def test_posterior_matches_scikit_learn():
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    h = GPHyperparameters("rbf", length=0.4, scale=0.8, period=1.0, noise=0.02)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(20, 1, generator=generator, dtype=torch.float64) * 4 - 2
    y = draw_gp(x, h, generator)
    queries = torch.linspace(-2, 2, 7, dtype=torch.float64)[:, None]
    mean, variance = gp_posterior(x, y, queries, h)
    fixed = ConstantKernel(0.64, "fixed") * RBF(0.4, "fixed") + WhiteKernel(0.02**2 + 1e-8, "fixed")
    sk_mean, sk_std = GaussianProcessRegressor(fixed, optimizer=None).fit(x.numpy(), y[:, 0].numpy()).predict(queries.numpy(), return_std=True)
    np.testing.assert_allclose(mean.numpy(), sk_mean, atol=1e-6)
    np.testing.assert_allclose(variance.numpy(), sk_std**2, rtol=1e-4, atol=1e-8)


def test_benchmark_tasks_follow_the_protocol_and_are_seeded():
    adapter = FunctionAdapter(FunctionConfig())
    tasks = benchmark_tasks(adapter, "matern", 200, seed=0)
    for task in tasks:
        n_context, n_target = len(task.x_context), len(task.x_target)
        assert 3 <= n_context <= 46 and 3 <= n_target <= 50 - n_context
        assert task.x_context.abs().max() <= 2 and task.x_target.abs().max() <= 2
        assert 0.1 <= task.h.length <= 0.6 and 0.1 <= task.h.scale <= 1.0 and task.h.noise == 0.02
    again = benchmark_tasks(adapter, "matern", 3, seed=0)
    assert all(torch.equal(a.y_target, b.y_target) for a, b in zip(tasks, again))
    assert {len(t.x_context) for t in tasks} >= {3, 46} or len({len(t.x_context) for t in tasks}) > 30
    # the ceiling is finite and far above a standard normal's -1.42 per point
    assert np.mean([exact_gp_log_likelihood(t) for t in tasks[:50]]) > 0


def test_polynomials_are_evaluated_like_numpy():
    coefficients = torch.tensor([0.5, -1.0, 2.0, 0.0, 0.3, -0.7, 1.1], dtype=torch.float64)
    x = torch.linspace(-1, 1, 9, dtype=torch.float64)[:, None]
    expected = np.polynomial.polynomial.polyval(x[:, 0].numpy(), coefficients.numpy())
    np.testing.assert_allclose(evaluate_polynomial(coefficients, x)[:, 0].numpy(), expected, rtol=1e-12)
    adapter = FunctionAdapter(FunctionConfig(dataset="polynomial", x_low=-1, x_high=1, y_limit=8))
    positions, values = adapter.training_source().draw(torch.Generator().manual_seed(0), 4, 30)
    assert positions.shape == (4, 30, 1) and positions.abs().max() <= 1
    assert values.std() > 0.05


# --- a tiny model trained on GP draws ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def gp_checkpoint(tmp_path_factory) -> Path:
    from spatialgen.train import train

    raw = {
        "adapter": {"name": "function", "dataset": "gp", "kernels": ["rbf"]},
        "model": dict(TINY_MODEL, fourier_scale=1.0),
        "train": {"steps": 150, "batch_size": 8, "learning_rate": 3e-3, "min_learning_rate": 3e-4, "warmup_steps": 10,
                  "min_context": 3, "max_context": 30, "queries": 30, "seed": 0, "device": "cpu",
                  "checkpoint_every": 1000, "log_every": 10, "threads": 1},
    }  # fmt: skip
    return train(config_from_dict(raw), tmp_path_factory.mktemp("function-run"))


def test_training_learns_more_than_the_prior(gp_checkpoint):
    import spatialgen
    from spatialgen.jobs.function import model_log_likelihood

    model = spatialgen.load(gp_checkpoint, device="cpu")
    tasks = benchmark_tasks(model.adapter, "rbf", 40, seed=1)
    trained = np.mean([model_log_likelihood(model, t) for t in tasks])
    # a Gaussian with the marginal variance of the data (scale^2 ~ 0.37 on average) scores about -0.9
    assert trained > -0.9, trained
    ceiling = np.mean([exact_gp_log_likelihood(t) for t in tasks])
    assert trained < ceiling + 0.05  # no model beats the true posterior (up to the estimate's noise)


def test_complete_function_from_a_csv_and_every_demo(gp_checkpoint, tmp_path):
    points = tmp_path / "points.csv"
    points.write_text("x,y\n-1.5,0.2\n-0.5,0.8\n0.1,0.4\n0.1,0.45\n1.2,-0.6\n")
    out, numbers = tmp_path / "curve.png", tmp_path / "curve.json"
    result = invoke("complete-function", points, "--out", out, "--checkpoint", gp_checkpoint, "--json", numbers, "--samples", 2)
    assert result.exit_code == 0, result.stderr
    assert "more than once" in result.stdout  # duplicated x is noise, not an error
    data = json.loads(numbers.read_text())
    assert len(data["samples"]) == 2 and len(data["mean"]) == len(data["x"]) == 200
    assert all(s > 0 for s in data["std"])
    # coherent curves: neighbouring grid values move together, unlike independent draws per point
    wiggle = np.abs(np.diff(np.array(data["samples"]) - np.array(data["mean"]), axis=1)).mean()
    assert wiggle < 0.8 * 1.13 * np.mean(data["std"]), wiggle  # 1.13 std: independent Gaussians' mean |difference|
    for demo in ("rbf", "matern", "periodic", "polynomial"):
        out = tmp_path / f"{demo}.png"
        result = invoke("complete-function", "--demo", demo, "--out", out, "--checkpoint", gp_checkpoint, "--samples", 1)
        assert result.exit_code == 0, result.stderr
        assert out.is_file()


def test_x_range_maps_user_units(gp_checkpoint, tmp_path):
    points = tmp_path / "years.csv"
    points.write_text("1990,3\n2000,4\n2010,3.5\n")
    assert_user_error(invoke("complete-function", points, "--out", tmp_path / "a.png", "--checkpoint", gp_checkpoint), "--x-range")
    numbers = tmp_path / "years.json"
    result = invoke("complete-function", points, "--out", tmp_path / "b.png", "--checkpoint", gp_checkpoint, "--x-range", 1985, 2015, "--json", numbers)
    assert result.exit_code == 0, result.stderr
    data = json.loads(numbers.read_text())
    assert data["x"][0] == pytest.approx(1985) and data["x"][-1] == pytest.approx(2015)


@pytest.mark.parametrize(
    "content, pattern",
    [("x,y\n1,nan\n", "NaN"), ("x,y\n1,abc\n", "not numeric"), ("", "no samples"), ("x,y\n1,2,3\n", "expected 2 columns")],
)
def test_bad_point_files(gp_checkpoint, tmp_path, content, pattern):
    points = tmp_path / "bad.csv"
    points.write_text(content)
    out = tmp_path / "o.png"
    assert_user_error(invoke("complete-function", points, "--out", out, "--checkpoint", gp_checkpoint), pattern)
    assert not out.exists()


def test_input_or_demo_but_not_both(gp_checkpoint, tmp_path):
    assert_user_error(invoke("complete-function", "--out", tmp_path / "o.png", "--checkpoint", gp_checkpoint), "either")
    assert_user_error(invoke("complete-function", "--demo", "cubic", "--out", tmp_path / "o.png", "--checkpoint", gp_checkpoint), "--demo must be one of")


def test_eval_prints_the_benchmark_table(gp_checkpoint, tmp_path):
    out = tmp_path / "gp.json"
    result = invoke("eval", gp_checkpoint, "--limit", 5, "--json", out)
    assert result.exit_code == 0, result.stderr
    report = json.loads(out.read_text())
    methods = {(r["kernel"], r["method"]) for r in report["rows"]}
    for kernel in KERNELS:
        assert (kernel, "spatialgen") in methods and (kernel, "exact GP (true hyper-parameters)") in methods
    assert ("rbf", "ANP (reported)") in methods and "not re-measured" in report["note"]
    assert all(math.isfinite(r["log_likelihood"]) for r in report["rows"])
