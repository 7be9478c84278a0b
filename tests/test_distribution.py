"""The binned Gaussian mixture is a proper, normalised density with correct moments and sampling."""

from __future__ import annotations

import math

import pytest
import torch

from spatialgen.distribution import BinnedGaussianMixture


def random_mixture(batch: tuple[int, ...], bins: int, dv: int, *, seed: int, dtype=torch.float64, **affine):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(*batch, bins, generator=g, dtype=dtype) * 2
    means = torch.rand(*batch, bins, dv, generator=g, dtype=dtype) * 2 - 1
    log_var = torch.rand(*batch, bins, generator=g, dtype=dtype) * 4 - 6  # std in [0.05, 0.37]
    return BinnedGaussianMixture(logits=logits, means=means, log_var=log_var, **affine)


def brute_force_log_prob(d: BinnedGaussianMixture, values: torch.Tensor) -> torch.Tensor:
    """log sum_b q_b prod_i N(v_i; shift_i + scale_i m_bi, scale_i^2 var_b), one component at a time."""
    q = torch.softmax(d.logits, -1)
    total = torch.zeros(values.shape[:-1], dtype=torch.float64)
    for b in range(d.logits.shape[-1]):
        loc = d.shift + d.scale * d.means[..., b, :]
        std = d.scale.abs() * torch.exp(0.5 * d.log_var[..., b])[..., None]
        density = torch.distributions.Normal(loc, std).log_prob(values).sum(-1).exp()
        total = total + q[..., b] * density
    return total.log()


AFFINE = [
    {},
    {"shift": torch.tensor([0.5]), "scale": torch.tensor([0.5])},
    {"shift": torch.tensor([3.0]), "scale": torch.tensor([-2.5])},  # a reflection is still a valid map
]


@pytest.mark.parametrize("affine", AFFINE, ids=["identity", "unit-interval", "reflected"])
def test_density_integrates_to_one_1d(affine):
    d = random_mixture((3,), bins=8, dv=1, seed=1, **affine)
    lo, hi = -1.0 - 3.0, 1.0 + 3.0  # normalised units: every component is within 3/0.37 > 8 std of the ends
    u = torch.linspace(lo, hi, 200_001, dtype=torch.float64)
    shift = affine.get("shift", torch.zeros(1)).double()
    scale = affine.get("scale", torch.ones(1)).double()
    v = shift + scale * u  # caller's units
    density = d.log_prob(v[:, None, None].expand(-1, 3, 1)).exp()  # (G, 3)
    order = torch.argsort(v)
    integral = torch.trapezoid(density[order], v[order], dim=0)
    torch.testing.assert_close(integral, torch.ones(3, dtype=torch.float64), atol=1e-6, rtol=0)


def test_density_integrates_to_one_2d():
    d = random_mixture((2,), bins=6, dv=2, seed=2, shift=torch.tensor([0.5, -1.0]), scale=torch.tensor([0.5, 2.0]))
    n = 801
    u = torch.linspace(-3, 3, n, dtype=torch.float64)
    x = 0.5 + 0.5 * u
    y = -1.0 + 2.0 * u
    grid = torch.stack(torch.meshgrid(x, y, indexing="ij"), -1)  # (n, n, 2)
    density = d.log_prob(grid[:, :, None, :].expand(-1, -1, 2, -1)).exp()  # (n, n, 2)
    integral = torch.trapezoid(torch.trapezoid(density, y, dim=1), x, dim=0)
    torch.testing.assert_close(integral, torch.ones(2, dtype=torch.float64), atol=1e-4, rtol=0)


@pytest.mark.parametrize("dv", [1, 3])
def test_log_prob_matches_brute_force(dv):
    shift = torch.linspace(-1, 1, dv, dtype=torch.float64)
    scale = torch.linspace(0.3, 2.0, dv, dtype=torch.float64) * torch.tensor([(-1) ** i for i in range(dv)])
    d = random_mixture((4, 5), bins=7, dv=dv, seed=3, shift=shift, scale=scale)
    g = torch.Generator().manual_seed(4)
    values = shift + scale * (torch.rand(4, 5, dv, generator=g, dtype=torch.float64) * 2.4 - 1.2)
    torch.testing.assert_close(d.log_prob(values), brute_force_log_prob(d, values), rtol=1e-9, atol=1e-9)


def test_log_prob_is_stable_far_from_every_component():
    d = random_mixture((2,), bins=4, dv=1, seed=5)
    far = torch.tensor([[30.0], [-30.0]], dtype=torch.float64)
    lp = d.log_prob(far)
    assert torch.isfinite(lp).all() and (lp < -1000).all()


@pytest.mark.parametrize("dv", [1, 2])
def test_mean_and_variance_match_monte_carlo(dv):
    affine = {"shift": torch.full((dv,), 0.5), "scale": torch.full((dv,), 0.5)}
    d = random_mixture((3,), bins=5, dv=dv, seed=6, **affine)
    n = 200_000
    many = BinnedGaussianMixture(
        logits=d.logits.expand(n, -1, -1), means=d.means.expand(n, -1, -1, -1),
        log_var=d.log_var.expand(n, -1, -1), **affine,
    )  # fmt: skip
    draws = many.sample(generator=torch.Generator().manual_seed(7))  # (n, 3, dv)
    assert draws.shape == (n, 3, dv)
    mc_mean, mc_var = draws.mean(0), draws.var(0)
    tolerance = 5 * (d.variance / n).sqrt()  # 5 standard errors of the mean
    assert ((mc_mean - d.mean).abs() < tolerance).all(), (mc_mean, d.mean)
    torch.testing.assert_close(mc_var, d.variance, rtol=0.02, atol=0)
    torch.testing.assert_close(d.stddev, d.variance.sqrt())


def test_sampling_uses_the_standard_deviation_not_the_variance():
    # One component with variance 0.25 (std 0.5): exp(s) noise would give variance 0.0625... or 0.25^2.
    d = BinnedGaussianMixture(logits=torch.zeros(1), means=torch.zeros(1, 1), log_var=torch.tensor([math.log(0.25)]))
    many = BinnedGaussianMixture(
        logits=torch.zeros(50_000, 1), means=torch.zeros(50_000, 1, 1), log_var=d.log_var.expand(50_000, 1)
    )
    draws = many.sample(generator=torch.Generator().manual_seed(0))
    assert abs(draws.var().item() - 0.25) < 0.01
    torch.testing.assert_close(d.variance, torch.tensor([0.25]))


def test_temperature_zero_is_the_most_likely_bins_centre():
    d = random_mixture((6,), bins=9, dv=2, seed=8, shift=torch.tensor([1.0, 2.0]), scale=torch.tensor([3.0, 4.0]))
    a = d.sample(temperature=0.0, generator=torch.Generator().manual_seed(1))
    b = d.sample(temperature=0.0, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    best = d.logits.argmax(-1)
    expected = d.shift + d.scale * d.means[torch.arange(6), best]
    torch.testing.assert_close(a, expected)


def test_temperature_scales_spread_and_sampling_is_seeded():
    d = random_mixture((20_000,), bins=5, dv=1, seed=9)
    g = lambda s: torch.Generator().manual_seed(s)
    torch.testing.assert_close(d.sample(generator=g(3)), d.sample(generator=g(3)), rtol=0, atol=0)
    assert not torch.equal(d.sample(generator=g(3)), d.sample(generator=g(4)))
    # low temperature concentrates on the most likely bin: draws sit nearer that bin's mean
    best_mean = d.means[torch.arange(20_000), d.logits.argmax(-1)]
    cold = (d.sample(0.1, generator=g(5)) - best_mean).abs().mean()
    warm = (d.sample(1.0, generator=g(5)) - best_mean).abs().mean()
    assert cold < 0.5 * warm
    with pytest.raises(ValueError):
        d.sample(-0.5)


def _cells(levels: int) -> torch.Tensor:
    return torch.arange(levels, dtype=torch.float64) / (levels - 1)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_discretised_masses_over_256_levels_sum_to_one(dtype):
    # The network's units are [-1, 1]; 8-bit values k/255 are reported in [0, 1].
    affine = {"shift": torch.tensor([0.5]), "scale": torch.tensor([0.5])}
    d = random_mixture((5,), bins=16, dv=1, seed=10, dtype=dtype, **affine)
    # include components outside the value range and very narrow ones
    d.means[0, :3] = torch.tensor([[-1.5], [1.4], [1.0]], dtype=dtype)
    d.log_var[1] = -14.0
    values = _cells(256).to(dtype)[:, None, None].expand(-1, 5, 1)
    log_mass = d.log_prob_discretised(values, bin_width=1 / 255, low=0.0, high=1.0)  # (256, 5)
    assert torch.isfinite(log_mass).all()
    total = torch.logsumexp(log_mass.double(), dim=0).exp()  # float32 cell edges round: ~1e-7 per edge
    torch.testing.assert_close(
        total, torch.ones(5, dtype=torch.float64), atol=5e-5 if dtype == torch.float32 else 1e-9, rtol=0
    )


def test_discretised_masses_sum_to_one_2d():
    affine = {"shift": torch.tensor([0.5, 0.5]), "scale": torch.tensor([0.5, 0.5])}
    d = random_mixture((3,), bins=8, dv=2, seed=11, **affine)
    levels = _cells(16)
    grid = torch.stack(torch.meshgrid(levels, levels, indexing="ij"), -1).reshape(-1, 1, 2).expand(-1, 3, 2)
    log_mass = d.log_prob_discretised(grid, bin_width=1 / 15, low=0.0, high=1.0)  # (256, 3)
    total = torch.logsumexp(log_mass, dim=0).exp()
    torch.testing.assert_close(total, torch.ones(3, dtype=torch.float64), atol=1e-9, rtol=0)


def test_discretised_mass_is_density_times_width_for_a_broad_density():
    d = BinnedGaussianMixture(
        logits=torch.tensor([0.0, 1.0], dtype=torch.float64),
        means=torch.tensor([[-0.2], [0.3]], dtype=torch.float64),
        log_var=torch.tensor([math.log(0.3**2), math.log(0.4**2)], dtype=torch.float64),
        shift=torch.tensor([0.5]), scale=torch.tensor([0.5]),
    )  # fmt: skip
    v = torch.tensor([[100 / 255], [128 / 255], [200 / 255]], dtype=torch.float64)
    w = 1 / 255
    mass = d.log_prob_discretised(v, bin_width=w, low=0.0, high=1.0)
    torch.testing.assert_close(mass, d.log_prob(v) + math.log(w), atol=1e-4, rtol=0)


def test_discretised_mass_in_the_far_tail_is_finite_and_tiny():
    # A component 40 std away from a cell: the naive Phi(b) - Phi(a) underflows to log(0).
    d = BinnedGaussianMixture(
        logits=torch.zeros(1), means=torch.tensor([[-0.9]]), log_var=torch.tensor([math.log(0.01**2)]),
        shift=torch.tensor([0.5]), scale=torch.tensor([0.5]),
    )  # fmt: skip
    lp = d.log_prob_discretised(torch.tensor([0.6]), bin_width=1 / 255, low=0.0, high=1.0)
    assert torch.isfinite(lp) and lp < -1000


def test_indexing_and_cat_keep_the_distribution():
    d = random_mixture((4, 6), bins=5, dv=2, seed=12, shift=torch.tensor([1.0, 0.0]), scale=torch.tensor([2.0, 1.0]))
    parts = [d[:, :2], d[:, 2:]]
    joined = BinnedGaussianMixture.cat(parts, dim=1)
    torch.testing.assert_close(joined.mean, d.mean)
    torch.testing.assert_close(joined.variance, d.variance)
    torch.testing.assert_close(d[1].mean, d.mean[1])
    v = torch.zeros(4, 6, 2, dtype=torch.float64)
    torch.testing.assert_close(joined.log_prob(v), d.log_prob(v))
    # in_units changes only the reported units
    moved = d.in_units(shift=torch.tensor([0.0, 0.0]), scale=torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(d.mean, d.shift + d.scale * moved.mean)
