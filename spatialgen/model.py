"""PixelTransformer: a set encoder over observed samples and a query decoder.

Shapes: B batch, K context samples, Q queries, D model width, dx position dims, dv value dims,
NB output bins. Everything here works in normalised units (positions and values in [-1, 1]);
:mod:`spatialgen.api` maps the caller's units in and out. Nothing here knows about domains.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from spatialgen.distribution import BinnedGaussianMixture


@dataclass(frozen=True)
class ModelConfig:
    dim: int = 128
    heads: int = 4
    encoder_layers: int = 4
    decoder_layers: int = 4
    mlp_ratio: int = 4
    fourier_features: int = 64
    fourier_scale: float = 2.0  # std of the random frequencies (the paper's sigma)
    value_embedding: int = 32
    bins: int = 64
    # Gaussian distance bias in attention, one learnable length per head, initialised from
    # shortest to longest (normalised units). 0 turns it off (the paper's plain attention).
    locality_min_length: float = 0.05
    locality_max_length: float = 1.0
    # Each attention head also returns x_q minus the attention-weighted mean position of what it
    # attended to, projected back into the token: the offset from a query's neighbourhood, which
    # plain attention cannot see (its values do not depend on the query), and which lets a token
    # extrapolate a value with its local gradient (see Attention).
    relative_offsets: bool = False

    def __post_init__(self) -> None:
        for name in ("dim", "heads", "fourier_features", "bins", "value_embedding", "mlp_ratio", "decoder_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.encoder_layers < 0:
            raise ValueError("encoder_layers must be 0 or more")
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by heads ({self.heads})")
        if not (math.isfinite(self.fourier_scale) and self.fourier_scale > 0):
            raise ValueError("fourier_scale must be a positive number")
        low, high = self.locality_min_length, self.locality_max_length
        if not (math.isfinite(low) and math.isfinite(high) and 0 <= low <= high):
            raise ValueError("locality lengths must satisfy 0 <= locality_min_length <= locality_max_length")


class FourierFeatures(nn.Module):
    """[sin 2*pi*xB, cos 2*pi*xB] with a frozen Gaussian matrix B (dx, F)."""

    def __init__(self, *, position_dims: int, features: int, scale: float, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        frequencies = torch.randn(position_dims, features, generator=generator) * scale
        self.register_buffer("frequencies", frequencies)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        angles = 2 * math.pi * positions @ self.frequencies  # (..., F)
        return torch.cat([angles.sin(), angles.cos()], dim=-1)  # (..., 2F)


class Geometry(NamedTuple):
    """Per-token vectors whose dot product is -|x_q - x_k|^2 / 2 (zeros for tokens without a position).

    Appending them to queries and keys adds a Gaussian distance bias to attention logits while
    keeping ``scaled_dot_product_attention`` (memory linear in the sequence length).
    """

    as_query: torch.Tensor  # (B, N, dx+2): [x, -1/2, -|x|^2/2]
    as_key: torch.Tensor  # (B, N, dx+2): [x, |x|^2, 1]

    @staticmethod
    def of(positions: torch.Tensor) -> Geometry:
        squared = (positions**2).sum(-1, keepdim=True)
        ones = torch.ones_like(squared)
        return Geometry(
            as_query=torch.cat([positions, -0.5 * ones, -0.5 * squared], -1),
            as_key=torch.cat([positions, squared, ones], -1),
        )

    @staticmethod
    def cat(parts: list[Geometry]) -> Geometry:
        return Geometry(torch.cat([p.as_query for p in parts], 1), torch.cat([p.as_key for p in parts], 1))


class Attention(nn.Module):
    """Multi-head attention; optionally with a learnable Gaussian distance bias per head, and
    optionally returning each query's offset from the positions it attended to.

    Without a locality prior, attention starts (and in our CPU-length runs stayed) uniform over
    the samples: a query cannot find its neighbours before values are informative, and values
    are not informative before it finds its neighbours. The bias -|x_q - x_k|^2 / (2 l_h^2)
    breaks that deadlock; each head learns its own length l_h (a long one acts globally).

    Offsets: sum_k a_qk (x_q - x_k) = x_q - sum_k a_qk x_k, so appending x_k to the values gives
    each head's offset from its neighbourhood's centroid with the same fused attention call.
    """

    def __init__(self, *, dim: int, heads: int, lengths: tuple[float, float] | None = None, offset_dims: int = 0):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)
        self.offset_dims = offset_dims
        self.offsets = nn.Linear(heads * offset_dims, dim) if offset_dims else None
        if lengths is None or lengths[0] <= 0:
            self.log_precision = None
        else:
            length = torch.logspace(math.log10(lengths[0]), math.log10(lengths[1]), heads)
            self.log_precision = nn.Parameter(-2 * length.log())  # precision = 1 / l^2

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, key_mask: torch.Tensor | None,
        x_geometry: Geometry | None = None, context_geometry: Geometry | None = None,
    ) -> torch.Tensor:  # fmt: skip
        B, N, D = x.shape
        M, hd = context.shape[1], D // self.heads
        q = self.to_q(x).view(B, N, self.heads, hd).transpose(1, 2)  # (B, h, N, hd)
        k, v = self.to_kv(context).view(B, M, 2, self.heads, hd).permute(2, 0, 3, 1, 4)
        scale = 1 / math.sqrt(hd)
        if self.log_precision is not None and x_geometry is not None:
            precision = self.log_precision.exp()[None, :, None, None] / scale  # (1, h, 1, 1)
            q = torch.cat([q, precision * x_geometry.as_query[:, None]], -1)  # (B, h, N, hd+dx+2)
            k = torch.cat([k, context_geometry.as_key[:, None].expand(-1, self.heads, -1, -1)], -1)
        dx = self.offset_dims
        if self.offsets is not None:
            v = torch.cat([v, context_geometry.as_key[:, None, :, :dx].expand(-1, self.heads, -1, -1)], -1)  # (B, h, M, hd+dx)
        mask = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, M), True = attend
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)  # (B, h, N, hd[+dx])
        out = self.out(y[..., :hd].transpose(1, 2).reshape(B, N, D))
        if self.offsets is not None:
            offset = x_geometry.as_query[:, None, :, :dx] - y[..., hd:]  # (B, h, N, dx): x_q - attended centroid
            out = out + self.offsets(offset.transpose(1, 2).reshape(B, N, self.heads * dx))
        return out


class MLP(nn.Module):
    def __init__(self, *, dim: int, ratio: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, ratio * dim), nn.GELU(), nn.Linear(ratio * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Block(nn.Module):
    """Pre-LayerNorm attention + MLP. Self-attention when ``context`` is None, else cross-attention."""

    def __init__(
        self, *, dim: int, heads: int, mlp_ratio: int, cross: bool, lengths: tuple[float, float] | None, offset_dims: int = 0
    ):
        super().__init__()
        self.norm_x = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(dim) if cross else None
        self.attention = Attention(dim=dim, heads=heads, lengths=lengths, offset_dims=offset_dims)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = MLP(dim=dim, ratio=mlp_ratio)

    def forward(
        self, x: torch.Tensor, *, key_mask: torch.Tensor | None, geometry: Geometry,
        context: torch.Tensor | None = None, context_geometry: Geometry | None = None,
    ) -> torch.Tensor:  # fmt: skip
        h = self.norm_x(x)
        if context is None:
            x = x + self.attention(h, h, key_mask, geometry, geometry)
        else:
            x = x + self.attention(h, self.norm_context(context), key_mask, geometry, context_geometry)
        return x + self.mlp(self.norm_mlp(x))


class Memory(NamedTuple):
    """An encoded context: tokens (B, M, D), which are real (B, M) and where they are."""

    tokens: torch.Tensor
    mask: torch.Tensor
    geometry: Geometry

    def expand(self, batch: int) -> Memory:
        """The same context for ``batch`` query sets (from a batch of one)."""
        return Memory(
            self.tokens.expand(batch, -1, -1), self.mask.expand(batch, -1),
            Geometry(*(g.expand(batch, -1, -1) for g in self.geometry)),
        )  # fmt: skip


class PixelTransformer(nn.Module):
    def __init__(self, config: ModelConfig, *, position_dims: int, value_dims: int, bin_centres: torch.Tensor):
        super().__init__()
        if bin_centres.shape != (config.bins, value_dims):
            raise ValueError(f"bin_centres must be ({config.bins}, {value_dims}), got {tuple(bin_centres.shape)}")
        self.config = config
        self.position_dims, self.value_dims = position_dims, value_dims
        D = config.dim
        self.positions = FourierFeatures(
            position_dims=position_dims, features=config.fourier_features, scale=config.fourier_scale
        )
        self.value_embedding = nn.Linear(value_dims, config.value_embedding)
        self.query_value = nn.Parameter(torch.zeros(config.value_embedding))  # learned "unknown value" slot
        self.token = nn.Linear(config.value_embedding + 2 * config.fourier_features, D)
        self.null_token = nn.Parameter(torch.randn(D) * 0.02)  # lets K = 0 work and every row attend somewhere
        lengths = (config.locality_min_length, config.locality_max_length)
        offset_dims = position_dims if config.relative_offsets else 0
        block = dict(dim=D, heads=config.heads, mlp_ratio=config.mlp_ratio, lengths=lengths, offset_dims=offset_dims)
        self.encoder = nn.ModuleList(Block(**block, cross=False) for _ in range(config.encoder_layers))
        self.encoder_norm = nn.LayerNorm(D)
        self.decoder = nn.ModuleList(Block(**block, cross=True) for _ in range(config.decoder_layers))
        self.head_norm = nn.LayerNorm(D)
        self.head = nn.Linear(D, config.bins * (value_dims + 2))
        self.register_buffer("bin_centres", bin_centres.float().clone())
        self.register_buffer("bin_width", _typical_spacing(bin_centres.float()))

    # --- encoder -----------------------------------------------------------------------------
    def encode(
        self, context_positions: torch.Tensor, context_values: torch.Tensor, context_mask: torch.Tensor | None = None
    ) -> Memory:
        """(B, K, dx), (B, K, dv), optional (B, K) bool valid -> Memory of 1+K tokens (null first)."""
        B, K, _ = context_positions.shape
        tokens = self.token(torch.cat([self.value_embedding(context_values), self.positions(context_positions)], -1))
        tokens = torch.cat([self.null_token.expand(B, 1, -1), tokens], dim=1)  # (B, 1+K, D)
        if context_mask is None:
            context_mask = torch.ones(B, K, dtype=torch.bool, device=tokens.device)
        mask = torch.cat([torch.ones(B, 1, dtype=torch.bool, device=tokens.device), context_mask], dim=1)
        attend = None if bool(mask.all()) else mask
        null_geometry = Geometry(*(torch.zeros(B, 1, self.position_dims + 2, device=tokens.device),) * 2)
        geometry = Geometry.cat([null_geometry, Geometry.of(context_positions)])  # the null token has no position
        for block in self.encoder:
            tokens = block(tokens, key_mask=attend, geometry=geometry)
        return Memory(self.encoder_norm(tokens), mask, geometry)

    # --- decoder -----------------------------------------------------------------------------
    def decode(self, memory: Memory, query_positions: torch.Tensor) -> torch.Tensor:
        """Memory of M tokens, query positions (B, Q, dx) -> head outputs (B, Q, NB*(dv+2)).

        Queries attend only to the memory, never to each other, so any chunking of Q gives the
        same numbers.
        """
        B, Q, _ = query_positions.shape
        slot = self.query_value.expand(B, Q, -1)
        x = self.token(torch.cat([slot, self.positions(query_positions)], -1))  # (B, Q, D)
        attend = None if bool(memory.mask.all()) else memory.mask
        geometry = Geometry.of(query_positions)
        for block in self.decoder:
            x = block(x, key_mask=attend, geometry=geometry, context=memory.tokens, context_geometry=memory.geometry)
        return self.head(self.head_norm(x))

    def distribution(self, head_output: torch.Tensor) -> BinnedGaussianMixture:
        """(..., NB*(dv+2)) -> mixture over values in normalised units."""
        NB, dv = self.config.bins, self.value_dims
        raw = head_output.unflatten(-1, (NB, dv + 2))
        logits = raw[..., 0]
        offsets = raw[..., 1 : 1 + dv] * self.bin_width  # offsets in units of one bin's spacing
        # log-variance centred on a bin's width squared, softly kept within e^(+-8) of it
        log_var = 2 * self.bin_width.log() + 8 * torch.tanh(raw[..., 1 + dv] / 8)
        return BinnedGaussianMixture(logits=logits, means=self.bin_centres + offsets, log_var=log_var)

    def forward(
        self,
        context_positions: torch.Tensor,
        context_values: torch.Tensor,
        query_positions: torch.Tensor,
        context_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.decode(self.encode(context_positions, context_values, context_mask), query_positions)


def _typical_spacing(centres: torch.Tensor) -> torch.Tensor:
    """Median nearest-neighbour distance between bin centres: the scale of one bin."""
    if len(centres) < 2:
        return torch.tensor(1.0)
    distances = torch.cdist(centres, centres)
    distances.fill_diagonal_(float("inf"))
    return distances.min(dim=1).values.median().clamp_min(1e-3)


def uniform_bin_centres(bins: int) -> torch.Tensor:
    """Centres of ``bins`` equal bins covering [-1, 1], shape (bins, 1)."""
    edges = torch.linspace(-1, 1, bins + 1)
    return ((edges[:-1] + edges[1:]) / 2)[:, None]


def kmeans_bin_centres(values: torch.Tensor, bins: int, *, iterations: int = 30, seed: int = 0) -> torch.Tensor:
    """k-means centres of ``values`` (N, dv) in normalised units, shape (bins, dv)."""
    generator = torch.Generator().manual_seed(seed)
    values = values.float()
    if len(values) < bins:
        raise ValueError(f"need at least {bins} values for k-means, got {len(values)}")
    centres = _kmeans_plus_plus(values, bins, generator)
    for _ in range(iterations):
        assignment = torch.cdist(values, centres).argmin(dim=1)
        counts = torch.bincount(assignment, minlength=bins).float()
        sums = torch.zeros_like(centres).index_add_(0, assignment, values)
        filled = counts > 0
        centres[filled] = sums[filled] / counts[filled, None]
    return centres


def _kmeans_plus_plus(values: torch.Tensor, bins: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: each new centre is drawn with probability proportional to squared distance."""
    first = torch.randint(len(values), (1,), generator=generator)
    centres = [values[first[0]]]
    closest = ((values - centres[0]) ** 2).sum(-1)
    for _ in range(bins - 1):
        weights = closest if closest.sum() > 0 else torch.ones_like(closest)
        pick = torch.multinomial(weights, 1, generator=generator)[0]
        centres.append(values[pick])
        closest = torch.minimum(closest, ((values - values[pick]) ** 2).sum(-1))
    return torch.stack(centres).clone()
