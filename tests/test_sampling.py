"""Mean fields and autoregressive samples over a grid of queries."""

from __future__ import annotations

import pytest
import torch

from spatialgen.errors import InputError
from spatialgen.sampling import mean_field, sample_field


def scattered(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 2, generator=g) * 7, torch.rand(n, 1, generator=g)  # (x, y) in pixels, values in [0, 1]


@pytest.fixture
def randomised_model(tiny_model):
    """The tiny untrained model with non-zero query/null slots so that every input matters."""
    with torch.no_grad():
        tiny_model.network.query_value.normal_(generator=torch.Generator().manual_seed(0))
    return tiny_model


def test_mean_field_chunked_equals_unchunked(randomised_model):
    ctx_pos, ctx_val = scattered(10)
    grid = randomised_model.adapter.grid_positions(16, 16)  # finer than the training size
    whole = mean_field(randomised_model, ctx_pos, ctx_val, grid)
    chunked = mean_field(randomised_model, ctx_pos, ctx_val, grid, chunk=37)
    assert whole.mean.shape == (256, 1) and whole.std.shape == (256, 1)
    torch.testing.assert_close(chunked.mean, whole.mean, atol=1e-5, rtol=0)
    torch.testing.assert_close(chunked.std, whole.std, atol=1e-5, rtol=0)
    # and it agrees with the batched predict() in natural units
    dist = randomised_model.predict(ctx_pos, ctx_val, grid)
    torch.testing.assert_close(whole.mean, dist.mean[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(whole.std, dist.stddev[0], atol=1e-5, rtol=0)
    assert (whole.std > 0).all() and whole.mean.std() > 1e-4  # not a constant field


def test_mean_field_accepts_lists_numpy_and_empty_context(randomised_model):
    ctx_pos, ctx_val = scattered(4)
    grid = randomised_model.adapter.grid_positions()
    a = mean_field(randomised_model, ctx_pos, ctx_val, grid)
    b = mean_field(randomised_model, ctx_pos.tolist(), ctx_val.numpy(), grid.numpy())
    torch.testing.assert_close(a.mean, b.mean)
    empty = mean_field(randomised_model, torch.zeros(0, 2), torch.zeros(0, 1), grid)
    assert empty.mean.shape == (64, 1) and torch.isfinite(empty.mean).all()
    with pytest.raises(ValueError):
        mean_field(randomised_model, ctx_pos[None].expand(2, -1, -1), ctx_val[None].expand(2, -1, -1), grid)
    with pytest.raises(InputError):
        mean_field(randomised_model, ctx_pos, ctx_val[:3], grid)
    with pytest.raises(InputError):
        mean_field(randomised_model, ctx_pos, ctx_val, torch.zeros(5, 3))


def test_sample_field_shape_and_seeding(randomised_model):
    ctx_pos, ctx_val = scattered(6)
    grid = randomised_model.adapter.grid_positions()
    draws = sample_field(randomised_model, ctx_pos, ctx_val, grid, samples=3, n_autoregressive=10, seed=0)
    assert draws.shape == (3, 64, 1) and torch.isfinite(draws).all()
    again = sample_field(randomised_model, ctx_pos, ctx_val, grid, samples=3, n_autoregressive=10, seed=0)
    torch.testing.assert_close(again, draws, rtol=0, atol=0)
    other = sample_field(randomised_model, ctx_pos, ctx_val, grid, samples=3, n_autoregressive=10, seed=1)
    assert not torch.equal(other, draws)
    # each sample has its own order and noise: the three draws differ from one another
    assert (draws[0] - draws[1]).abs().max() > 1e-3 and (draws[1] - draws[2]).abs().max() > 1e-3


def test_sample_field_without_autoregression_is_the_mean_field(randomised_model):
    ctx_pos, ctx_val = scattered(6)
    grid = randomised_model.adapter.grid_positions()
    draws = sample_field(randomised_model, ctx_pos, ctx_val, grid, samples=2, n_autoregressive=0, chunk=10)
    field = mean_field(randomised_model, ctx_pos, ctx_val, grid)
    torch.testing.assert_close(draws[0], field.mean, atol=1e-5, rtol=0)
    torch.testing.assert_close(draws[1], field.mean, atol=1e-5, rtol=0)


def test_sample_field_steps_temperature_and_empty_context(randomised_model):
    grid = randomised_model.adapter.grid_positions()
    empty_pos, empty_val = torch.zeros(0, 2), torch.zeros(0, 1)
    for step in (1, 3, 64):
        draws = sample_field(randomised_model, empty_pos, empty_val, grid, samples=2, n_autoregressive=7, step=step)
        assert draws.shape == (2, 64, 1) and torch.isfinite(draws).all()
    # every query drawn (n_autoregressive >= Q) at temperature 0: no mean fill-in, still well defined
    cold = sample_field(randomised_model, empty_pos, empty_val, grid, n_autoregressive=1000, step=16, temperature=0)
    assert cold.shape == (1, 64, 1) and torch.isfinite(cold).all()
    for bad in ({"samples": 0}, {"step": 0}, {"n_autoregressive": -1}, {"temperature": -1.0}):
        with pytest.raises(ValueError):
            sample_field(randomised_model, empty_pos, empty_val, grid, **bad)


def test_sample_field_one_step_per_value_matches_manual_autoregression(randomised_model):
    """With step 1, value t is drawn from p(v | context + the t-1 values drawn before it)."""
    model = randomised_model
    ctx_pos, ctx_val = scattered(3)
    grid = model.adapter.grid_positions()[:6]
    seed = 5
    draws = sample_field(model, ctx_pos, ctx_val, grid, n_autoregressive=6, step=1, temperature=0.0, seed=seed)
    # replay: the visiting order comes from the seeded generator; at temperature 0 each draw is the mode
    order = torch.randperm(6, generator=torch.Generator().manual_seed(seed))
    positions, values = ctx_pos.clone(), ctx_val.clone()
    expected = torch.empty(6, 1)
    for index in order.tolist():
        dist = model.predict(positions, values, grid[index : index + 1])
        best = dist.logits[0, 0].argmax()
        value = dist.shift + dist.scale * dist.means[0, 0, best]
        expected[index] = value
        positions = torch.cat([positions, grid[index : index + 1]])
        values = torch.cat([values, value[None]])
    torch.testing.assert_close(draws[0], expected, atol=1e-5, rtol=0)


def test_trained_model_honours_its_context(black_or_white_model):
    """Trained on an all-black and an all-white image, one context pixel decides the whole field."""
    model = black_or_white_model
    grid = model.adapter.grid_positions()
    for colour in (0.0, 1.0):
        ctx_pos, ctx_val = torch.tensor([[3.0, 5.0]]), torch.tensor([[colour]])
        field = mean_field(model, ctx_pos, ctx_val, grid)
        assert (field.mean - colour).abs().mean() < 0.1, field.mean.view(8, 8)
        draws = sample_field(model, ctx_pos, ctx_val, grid, samples=2, n_autoregressive=8, seed=0)
        assert (draws - colour).abs().mean() < 0.15
        # the likelihood of the right colour is far higher than that of the wrong one
        dist = model.predict(ctx_pos, ctx_val, grid)
        right = dist.log_prob(torch.full((1, 64, 1), colour)).mean()
        wrong = dist.log_prob(torch.full((1, 64, 1), 1.0 - colour)).mean()
        assert right > wrong + 2.0
