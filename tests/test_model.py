"""The set encoder + query decoder: shapes, set semantics, masking and query independence."""

from __future__ import annotations

import pytest
import torch

from spatialgen.model import (
    FourierFeatures,
    ModelConfig,
    PixelTransformer,
    kmeans_bin_centres,
    uniform_bin_centres,
)


def make_network(config: ModelConfig, dx: int, dv: int, seed: int = 0) -> PixelTransformer:
    torch.manual_seed(seed)
    centres = uniform_bin_centres(config.bins) if dv == 1 else torch.rand(config.bins, dv) * 2 - 1
    network = PixelTransformer(config, position_dims=dx, value_dims=dv, bin_centres=centres).eval()
    # Random (not zero-initialised) weights everywhere so that no input is ignored by construction.
    with torch.no_grad():
        network.query_value.normal_()
        network.null_token.normal_()
    return network


def inputs(B: int, K: int, Q: int, dx: int, dv: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.rand(B, K, dx, generator=g) * 2 - 1,
        torch.rand(B, K, dv, generator=g) * 2 - 1,
        torch.rand(B, Q, dx, generator=g) * 2 - 1,
    )


@pytest.mark.parametrize("dx,dv", [(1, 1), (2, 1), (2, 3), (3, 1), (3, 3)])
def test_output_shapes(tiny_model_config, dx, dv):
    network = make_network(tiny_model_config, dx, dv)
    B, K, Q, NB = 2, 5, 7, tiny_model_config.bins
    ctx_pos, ctx_val, qry = inputs(B, K, Q, dx, dv)
    with torch.no_grad():
        memory = network.encode(ctx_pos, ctx_val)
        head = network(ctx_pos, ctx_val, qry)
    assert memory.tokens.shape == (B, 1 + K, tiny_model_config.dim) and memory.mask.shape == (B, 1 + K)
    assert head.shape == (B, Q, NB * (dv + 2))
    dist = network.distribution(head)
    assert dist.logits.shape == (B, Q, NB) and dist.means.shape == (B, Q, NB, dv) and dist.log_var.shape == (B, Q, NB)
    assert dist.mean.shape == (B, Q, dv) and dist.variance.shape == (B, Q, dv)
    assert dist.log_prob(torch.zeros(B, Q, dv)).shape == (B, Q)
    assert dist.sample(generator=torch.Generator().manual_seed(0)).shape == (B, Q, dv)
    assert torch.isfinite(head).all() and (dist.variance > 0).all()


def test_bad_bin_centres_and_config_are_rejected(tiny_model_config):
    with pytest.raises(ValueError, match="bin_centres"):
        PixelTransformer(tiny_model_config, position_dims=2, value_dims=3, bin_centres=torch.zeros(16, 1))
    with pytest.raises(ValueError, match="divisible"):
        ModelConfig(dim=30, heads=4)


def test_context_is_a_set(tiny_model_config):
    network = make_network(tiny_model_config, dx=2, dv=3)
    ctx_pos, ctx_val, qry = inputs(2, 11, 9, 2, 3)
    perm = torch.randperm(11, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = network(ctx_pos, ctx_val, qry)
        shuffled = network(ctx_pos[:, perm], ctx_val[:, perm], qry)
        # the test could not fail if the context were ignored: a different context must change the output
        other = network(ctx_pos, ctx_val.flip(1), qry)
    torch.testing.assert_close(shuffled, out, atol=1e-5, rtol=0)
    assert (other - out).abs().max() > 1e-3


def test_chunked_decoding_equals_unchunked(tiny_model_config):
    network = make_network(tiny_model_config, dx=2, dv=1)
    ctx_pos, ctx_val, qry = inputs(2, 6, 10, 2, 1)
    with torch.no_grad():
        memory = network.encode(ctx_pos, ctx_val)
        whole = network.decode(memory, qry)
        halves = torch.cat([network.decode(memory, qry[:, :4]), network.decode(memory, qry[:, 4:])], 1)
        singles = torch.cat([network.decode(memory, qry[:, i : i + 1]) for i in range(10)], 1)
    torch.testing.assert_close(halves, whole, atol=1e-5, rtol=0)
    torch.testing.assert_close(singles, whole, atol=1e-5, rtol=0)


def test_queries_are_independent(tiny_model_config):
    network = make_network(tiny_model_config, dx=2, dv=1)
    ctx_pos, ctx_val, qry = inputs(1, 6, 8, 2, 1)
    moved = qry.clone()
    moved[0, 3] = torch.tensor([0.9, -0.7])
    with torch.no_grad():
        a, b = network(ctx_pos, ctx_val, qry), network(ctx_pos, ctx_val, moved)
    others = [i for i in range(8) if i != 3]
    torch.testing.assert_close(b[:, others], a[:, others], atol=1e-6, rtol=0)
    assert (b[:, 3] - a[:, 3]).abs().max() > 1e-3  # the moved query itself did change


@pytest.mark.parametrize("dx,dv", [(1, 1), (2, 3)])
def test_empty_context(tiny_model_config, dx, dv):
    network = make_network(tiny_model_config, dx, dv)
    _, _, qry = inputs(3, 0, 5, dx, dv)
    with torch.no_grad():
        memory = network.encode(torch.zeros(3, 0, dx), torch.zeros(3, 0, dv))
        head = network(torch.zeros(3, 0, dx), torch.zeros(3, 0, dv), qry)
    assert memory.tokens.shape == (3, 1, tiny_model_config.dim) and memory.mask.all()
    assert head.shape == (3, 5, tiny_model_config.bins * (dv + 2)) and torch.isfinite(head).all()
    dist = network.distribution(head)
    assert torch.isfinite(dist.log_prob(torch.zeros(3, 5, dv))).all()


def test_padded_context_with_mask_equals_unpadded(tiny_model_config):
    network = make_network(tiny_model_config, dx=2, dv=1)
    ctx_pos, ctx_val, qry = inputs(2, 8, 6, 2, 1)
    sizes = [5, 8]  # item 0 has 3 padding tokens, item 1 none
    garbage = torch.Generator().manual_seed(9)
    padded_pos, padded_val = ctx_pos.clone(), ctx_val.clone()
    padded_pos[0, 5:] = torch.randn(3, 2, generator=garbage) * 5
    padded_val[0, 5:] = torch.randn(3, 1, generator=garbage) * 5
    # and two extra all-padding tokens for both items
    padded_pos = torch.cat([padded_pos, torch.randn(2, 2, 2, generator=garbage) * 5], 1)
    padded_val = torch.cat([padded_val, torch.randn(2, 2, 1, generator=garbage) * 5], 1)
    mask = torch.arange(10)[None, :] < torch.tensor(sizes)[:, None]
    with torch.no_grad():
        batched = network(padded_pos, padded_val, qry, mask)
        for i, K in enumerate(sizes):
            alone = network(ctx_pos[i : i + 1, :K], ctx_val[i : i + 1, :K], qry[i : i + 1])
            torch.testing.assert_close(batched[i : i + 1], alone, atol=1e-5, rtol=0)
        # the garbage is not ignored by accident: unmasked, it changes the output
        unmasked = network(padded_pos, padded_val, qry)
    assert (unmasked - batched).abs().max() > 1e-3


def test_fully_masked_context_equals_empty_context(tiny_model_config):
    network = make_network(tiny_model_config, dx=2, dv=1)
    ctx_pos, ctx_val, qry = inputs(2, 4, 5, 2, 1)
    mask = torch.tensor([[False] * 4, [True] * 4])
    with torch.no_grad():
        masked = network(ctx_pos, ctx_val, qry, mask)
        empty = network(torch.zeros(1, 0, 2), torch.zeros(1, 0, 1), qry[:1])
        full = network(ctx_pos[1:], ctx_val[1:], qry[1:])
    assert torch.isfinite(masked).all()
    torch.testing.assert_close(masked[:1], empty, atol=1e-5, rtol=0)
    torch.testing.assert_close(masked[1:], full, atol=1e-5, rtol=0)


def test_gradients_reach_every_parameter(tiny_model_config):
    network = make_network(tiny_model_config, dx=2, dv=1).train()
    ctx_pos, ctx_val, qry = inputs(2, 6, 5, 2, 1)
    mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3])
    loss = -network.distribution(network(ctx_pos, ctx_val, qry, mask)).log_prob(torch.zeros(2, 5, 1)).mean()
    loss.backward()
    missing = [n for n, p in network.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    assert not any(n.endswith("frequencies") for n, _ in network.named_parameters())  # Fourier matrix is frozen


def test_fourier_features_are_fixed_and_bounded():
    a = FourierFeatures(position_dims=3, features=8, scale=2.0)
    b = FourierFeatures(position_dims=3, features=8, scale=2.0)
    torch.testing.assert_close(a.frequencies, b.frequencies)  # seeded: the same in every process
    x = torch.rand(4, 3) * 2 - 1
    f = a(x)
    assert f.shape == (4, 16)
    torch.testing.assert_close(f[:, :8] ** 2 + f[:, 8:] ** 2, torch.ones(4, 8))


def test_uniform_and_kmeans_bin_centres():
    centres = uniform_bin_centres(4)
    torch.testing.assert_close(centres, torch.tensor([[-0.75], [-0.25], [0.25], [0.75]]))
    # k-means: deterministic, and its centres are a fixed point of Lloyd's step (each is the mean of its points)
    g = torch.Generator().manual_seed(0)
    truth = torch.tensor([[-0.8, -0.8, 0.0], [0.0, 0.5, 0.5], [0.7, -0.2, 0.9], [0.5, 0.5, -0.5]])
    points = torch.cat([c + 0.05 * torch.randn(300, 3, generator=g) for c in truth])
    found = kmeans_bin_centres(points, 6)
    assert found.shape == (6, 3)
    torch.testing.assert_close(kmeans_bin_centres(points, 6), found, rtol=0, atol=0)
    assignment = torch.cdist(points, found).argmin(1)
    for k in range(6):
        assert (assignment == k).any()
        torch.testing.assert_close(found[k], points[assignment == k].mean(0), atol=1e-5, rtol=0)
    # k-means++ seeding puts a centre in every well-separated cluster
    for centre in truth:
        assert torch.cdist(centre[None], found).min() < 0.1
    three = kmeans_bin_centres(torch.cat([c + 0.01 * torch.randn(200, 3, generator=g) for c in truth[:3]]), 3)
    assert torch.cdist(truth[:3], three).min(dim=1).values.max() < 0.05
    with pytest.raises(ValueError):
        kmeans_bin_centres(points[:2], 3)


def test_geometry_vectors_give_the_negative_half_squared_distance():
    from spatialgen.model import Geometry

    g = torch.Generator().manual_seed(0)
    queries, keys = torch.rand(2, 5, 3, generator=g) * 2 - 1, torch.rand(2, 7, 3, generator=g) * 2 - 1
    bias = Geometry.of(queries).as_query @ Geometry.of(keys).as_key.transpose(1, 2)  # (2, 5, 7)
    torch.testing.assert_close(bias, -0.5 * torch.cdist(queries, keys) ** 2, atol=1e-5, rtol=0)


def test_locality_bias_makes_attention_prefer_near_samples(tiny_model_config):
    """With the distance bias, a query's prediction depends more on a near sample than a far one."""
    from dataclasses import replace

    # no encoder layers: the query's own attention is all there is (the null token, which sees every
    # sample in the encoder, is a deliberate global path)
    config = replace(tiny_model_config, encoder_layers=0, locality_min_length=0.05, locality_max_length=0.05)
    network = PixelTransformer(config, position_dims=1, value_dims=1, bin_centres=uniform_bin_centres(config.bins)).eval()
    ctx_pos = torch.tensor([[[-0.9], [0.9]]])
    query = torch.tensor([[[-0.88]]])
    with torch.no_grad():
        base = network(ctx_pos, torch.tensor([[[0.0], [0.0]]]), query)
        near = network(ctx_pos, torch.tensor([[[1.0], [0.0]]]), query)
        far = network(ctx_pos, torch.tensor([[[0.0], [1.0]]]), query)
    assert (near - base).abs().max() > 20 * (far - base).abs().max()


def test_relative_offsets_are_the_query_minus_the_attended_centroid():
    from spatialgen.model import Attention, Geometry

    attention = Attention(dim=4, heads=1, lengths=None, offset_dims=2)
    with torch.no_grad():
        for layer in (attention.to_q, attention.out):
            layer.weight.zero_()
            layer.bias.zero_()  # q = 0: uniform attention; the value path contributes nothing
        attention.offsets.weight.copy_(torch.eye(4, 2))
        attention.offsets.bias.zero_()
    keys = torch.tensor([[[0.2, -0.4], [0.6, 0.0], [-0.5, 0.1]]])
    queries = torch.tensor([[[0.9, 0.9], [-1.0, 0.5]]])
    tokens = torch.randn(1, 3, 4)
    out = attention(torch.randn(1, 2, 4), tokens, None, Geometry.of(queries), Geometry.of(keys))
    torch.testing.assert_close(out[..., :2], queries - keys.mean(1, keepdim=True))
    torch.testing.assert_close(out[..., 2:], torch.zeros(1, 2, 2))
