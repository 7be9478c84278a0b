"""The binned Gaussian mixture: p(v) = sum_b q_b N(v; m_b, exp(s_b) I), a proper density.

Values may carry an affine map from the normalised units the network works in to the caller's
units (``v = shift + scale * u``); densities include its Jacobian, so ``log_prob`` is always the
natural-log density of the values as given.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_LOG_2PI = math.log(2 * math.pi)


class BinnedGaussianMixture:
    """Batch shape (...), NB components, dv value dims.

    logits (..., NB), means (..., NB, dv), log_var (..., NB) in normalised units; shift and
    scale (dv,) map normalised values u to the caller's values v = shift + scale * u.
    """

    def __init__(
        self,
        *,
        logits: torch.Tensor,
        means: torch.Tensor,
        log_var: torch.Tensor,
        shift: torch.Tensor | None = None,
        scale: torch.Tensor | None = None,
    ):
        self.logits, self.means, self.log_var = logits, means, log_var
        dv = means.shape[-1]
        self.shift = torch.zeros(dv, device=means.device) if shift is None else shift.to(means)
        self.scale = torch.ones(dv, device=means.device) if scale is None else scale.to(means)

    @property
    def value_dims(self) -> int:
        return self.means.shape[-1]

    def in_units(self, *, shift: torch.Tensor, scale: torch.Tensor) -> BinnedGaussianMixture:
        """The same distribution, reported in units v = shift + scale * u."""
        return BinnedGaussianMixture(logits=self.logits, means=self.means, log_var=self.log_var, shift=shift, scale=scale)

    def _normalise(self, values: torch.Tensor) -> torch.Tensor:
        return (values.to(self.means) - self.shift) / self.scale

    # --- densities -----------------------------------------------------------------------------
    def log_prob(self, values: torch.Tensor) -> torch.Tensor:
        """Natural-log density of ``values`` (..., dv) in the caller's units -> (...)."""
        u = self._normalise(values)[..., None, :]  # (..., 1, dv)
        dv = self.value_dims
        squared = ((u - self.means) ** 2).sum(-1)  # (..., NB)
        component = -0.5 * (squared * torch.exp(-self.log_var) + dv * (self.log_var + _LOG_2PI))
        log_q = F.log_softmax(self.logits, dim=-1)
        return torch.logsumexp(log_q + component, dim=-1) - self.scale.abs().log().sum()

    def log_prob_discretised(self, values: torch.Tensor, *, bin_width: float, low: float, high: float) -> torch.Tensor:
        """Log of the probability mass of the quantisation cell around ``values`` (caller's units).

        8-bit data in [0, 1] use ``bin_width=1/255, low=0, high=1``: each value stands for the cell
        [v - w/2, v + w/2], and the first and last cells extend to -inf and +inf (as in PixelCNN++),
        so the masses of all 256^dv cells sum to 1.
        """
        v = values.to(self.means)[..., None, :]  # (..., 1, dv) caller's units
        centre = self.shift + self.scale * self.means  # (..., NB, dv)
        std = (self.scale.abs() * torch.exp(0.5 * self.log_var)[..., None]).clamp_min(1e-12)
        upper = torch.where(v >= high - bin_width / 2, torch.full_like(v, math.inf), v + bin_width / 2)
        lower = torch.where(v <= low + bin_width / 2, torch.full_like(v, -math.inf), v - bin_width / 2)
        log_mass = _log_normal_interval((lower - centre) / std, (upper - centre) / std).sum(-1)  # (..., NB)
        return torch.logsumexp(F.log_softmax(self.logits, dim=-1) + log_mass, dim=-1)

    # --- moments -------------------------------------------------------------------------------
    @property
    def probs(self) -> torch.Tensor:
        return torch.softmax(self.logits, dim=-1)

    @property
    def mean(self) -> torch.Tensor:
        """(..., dv) in the caller's units."""
        return self.shift + self.scale * (self.probs[..., None] * self.means).sum(-2)

    @property
    def variance(self) -> torch.Tensor:
        """Per-dimension variance (..., dv) in the caller's units (law of total variance)."""
        q = self.probs[..., None]
        mean = (q * self.means).sum(-2)
        second = (q * (self.means**2 + self.log_var.exp()[..., None])).sum(-2)
        return self.scale**2 * (second - mean**2).clamp_min(0)

    @property
    def stddev(self) -> torch.Tensor:
        return self.variance.sqrt()

    # --- sampling ------------------------------------------------------------------------------
    def sample(self, temperature: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """One draw per batch element (..., dv). Temperature divides the logits and multiplies the std.

        temperature 0 gives the mode of the most likely bin (deterministic).
        """
        if temperature < 0:
            raise ValueError("temperature must be >= 0")
        batch = self.logits.shape[:-1]
        flat_logits = self.logits.reshape(-1, self.logits.shape[-1])
        if temperature == 0:
            choice = flat_logits.argmax(-1)
        else:
            choice = torch.multinomial(torch.softmax(flat_logits / temperature, -1), 1, generator=generator)[:, 0]
        means = self.means.reshape(-1, *self.means.shape[-2:])
        rows = torch.arange(len(choice), device=choice.device)
        picked = means[rows, choice]  # (N, dv)
        std = torch.exp(0.5 * self.log_var.reshape(len(choice), -1)[rows, choice])[:, None]
        noise = torch.randn(picked.shape, generator=generator, device=picked.device, dtype=picked.dtype)
        u = picked + temperature * std * noise
        return (self.shift + self.scale * u).reshape(*batch, self.value_dims)

    def __getitem__(self, index) -> BinnedGaussianMixture:
        return BinnedGaussianMixture(
            logits=self.logits[index], means=self.means[index], log_var=self.log_var[index],
            shift=self.shift, scale=self.scale,
        )  # fmt: skip

    @staticmethod
    def cat(parts: list[BinnedGaussianMixture], dim: int) -> BinnedGaussianMixture:
        """Concatenate along a batch dimension (non-negative ``dim``)."""
        first = parts[0]
        return BinnedGaussianMixture(
            logits=torch.cat([p.logits for p in parts], dim),
            means=torch.cat([p.means for p in parts], dim),
            log_var=torch.cat([p.log_var for p in parts], dim),
            shift=first.shift, scale=first.scale,
        )  # fmt: skip


def _log_normal_interval(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log(Phi(b) - Phi(a)) for standard-normal bounds a < b, stable in both tails."""
    # Work in the tail where the CDF difference is not a difference of two numbers near 1.
    flip = (a + b) > 0
    lo = torch.where(flip, -b, a)
    hi = torch.where(flip, -a, b)
    log_hi = torch.special.log_ndtr(hi)
    log_lo = torch.special.log_ndtr(lo)
    # log(exp(log_hi) - exp(log_lo)) = log_hi + log1p(-exp(log_lo - log_hi))
    diff = (log_lo - log_hi).clamp_max(-1e-12)
    return log_hi + torch.log(-torch.expm1(diff))
