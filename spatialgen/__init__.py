"""spatialgen: generate spatial signals from sparse samples (PixelTransformer, Tulsiani & Gupta 2021).

    model = spatialgen.load("data/checkpoints/image-mnist.safetensors")
    dist = model.predict(ctx_pos, ctx_val, query_pos)      # natural units, batched (B, K|Q, d)
    dist.mean, dist.variance, dist.log_prob(values), dist.sample(temperature=1.0)
    field = spatialgen.sample_field(model, ctx_pos, ctx_val, query_pos, n_autoregressive=2048)
"""

from spatialgen.adapters import get_adapter
from spatialgen.api import Model, load
from spatialgen.distribution import BinnedGaussianMixture
from spatialgen.sampling import Field, mean_field, sample_field

__version__ = "0.1.0"
__all__ = ["BinnedGaussianMixture", "Field", "Model", "get_adapter", "load", "mean_field", "sample_field"]
