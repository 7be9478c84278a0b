"""Signed distance fields: x in the box [-1, 1]^3, v = signed distance (negative inside).

Natural units (DESIGN.md): positions in the normalised box, distances in the same scale. A
mesh or a samples file in the user's units is mapped in by a :class:`Frame` (centre + one
uniform scale) that puts the shape's bounding sphere at radius ``radius`` (0.9: a margin to the
box's faces so that surfaces close inside the box); results are mapped back with the same frame.

Values are truncated to [-truncation, truncation]: far from the surface only the sign matters, so
the value bins are spent near it. The shipped model uses 0.1 (as DeepSDF clamps its distances):
its 64 uniform bins are then 0.003 box units wide, a fifth of a cell of a 128^3 grid (the
default 0.5 spends most bins on values far from any surface).

Predictions stay in that range, but with ``far_context = "log"`` the *context* keeps what a
distance beyond it says (how far away the surface is at least) on a log scale, u = +-(1 + ln|d/t|),
which continues u = d/t smoothly: a few far samples then bound the surface as they bound a
thin-plate interpolant.

Training draws come from per-shape pools of SDF samples, computed once with open3d and cached
(see :func:`prepare_pools`): near-surface points (surface points plus Gaussian offsets) and
uniform points. Each draw rotates (uniformly over SO(3)) and scales its shape; distances scale
with the shape, and points that leave the box are replaced by others from the pool.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from spatialgen.adapters.base import Adapter, TrainingSource
from spatialgen.errors import InputError

POOL_FORMAT = 1  # bump when the cached pools' content changes meaning
MAX_EXTENT = 1e100  # user units: beyond, distances and the box's scale overflow (norms of 1e300-wide boxes are inf)


@dataclass(frozen=True)
class SdfConfig:
    name: str = "sdf"
    dataset: str = "cgal"  # "cgal" (real meshes, committed split) or "primitives" (procedural)
    primitives: int = 0  # procedural shapes added to the training split (all of it for "primitives")
    radius: float = 0.9  # shapes are scaled so their bounding sphere has this radius in the box
    truncation: float = 0.5  # |sdf| is clipped here (box units); the value range is [-t, t]
    far_context: str = "clip"  # context distances beyond t: "clip" them to t, or keep them on a "log" scale
    near_surface_fraction: float = 0.5  # share of near-surface samples (mesh inputs; centre for training)
    fraction_jitter: float = 0.3  # training: each item's share is uniform in fraction +- jitter
    near_surface_std: tuple[float, ...] = (0.01, 0.04)  # Gaussian offsets from the surface (box units), one picked per point
    pool_near_surface: int = 50_000  # cached near-surface samples per shape
    pool_uniform: int = 100_000  # cached uniform samples per shape (a ball that covers the box after any augmentation)
    rotate: bool = True  # random rotation per training item
    scale_range: tuple[float, float] = (0.6, 1.0)  # random scale per training item (log-uniform)
    seed: int = 0  # seed of the cached pools
    # Inference only (training ignores it): the mean completion's field is (1 - w) x the network's
    # mean + w x a thin-plate spline through the same samples (clipped to the truncation). 0 = the
    # network alone. The shipped model's w was chosen on training shapes (configs/sdf-cgal.toml).
    thin_plate_weight: float = 0.0
    thin_plate_min_samples: int = 0  # ... only from this many samples on (a spline through very few hurts)

    def __post_init__(self) -> None:
        from spatialgen.data.meshes import MESH_DATASETS

        if self.dataset not in MESH_DATASETS:
            raise ValueError(f"dataset must be one of {', '.join(MESH_DATASETS)}, got '{self.dataset}'")
        if self.dataset == "primitives" and self.primitives < 1:
            raise ValueError("the primitives dataset needs primitives >= 1 (its number of training shapes)")
        if not 0 < self.radius < 1:
            raise ValueError("radius must be in (0, 1): the shape must fit inside the box [-1, 1]^3")
        if self.truncation <= 0:
            raise ValueError("truncation must be positive")
        if self.far_context not in ("clip", "log"):
            raise ValueError(f"far_context must be 'clip' or 'log', got '{self.far_context}'")
        if not 0 <= self.near_surface_fraction <= 1 or self.fraction_jitter < 0:
            raise ValueError("near_surface_fraction must be in [0, 1] and fraction_jitter >= 0")
        if not self.near_surface_std or min(self.near_surface_std) < 0:
            raise ValueError("near_surface_std needs one or more standard deviations >= 0")
        if self.pool_near_surface < 1 or self.pool_uniform < 1:
            raise ValueError("pool sizes must be at least 1")
        if not 0 <= self.thin_plate_weight <= 1:
            raise ValueError(f"thin_plate_weight must be in [0, 1], got {self.thin_plate_weight}")
        if self.thin_plate_min_samples < 0:
            raise ValueError(f"thin_plate_min_samples must be 0 or more, got {self.thin_plate_min_samples}")
        low, high = self.scale_range
        if not 0 < low <= high or high * self.radius >= 1:
            raise ValueError("scale_range must satisfy 0 < low <= high and high * radius < 1")


@dataclass(frozen=True)
class Frame:
    """Maps the user's units to the box: box = (user - centre) / scale; distances divide by scale."""

    centre: np.ndarray  # (3,)
    scale: float  # user units per box unit

    def to_box(self, points: np.ndarray) -> np.ndarray:
        return (np.asarray(points, np.float64) - self.centre) / self.scale

    def from_box(self, points: np.ndarray) -> np.ndarray:
        return self.centre + self.scale * np.asarray(points, np.float64)

    @staticmethod
    def around(points: np.ndarray, radius: float, *, what: str = "the samples") -> Frame:
        """Centre = the bounding box's centre; the farthest point lands at ``radius``."""
        points = np.asarray(points, np.float64)
        low, high = points.min(0), points.max(0)
        centre = (low + high) / 2
        extent = high - low
        if not np.isfinite(extent).all() or extent.max() > MAX_EXTENT:
            raise InputError(f"{what} span more than {MAX_EXTENT:g} units: rescale them (distances too) before completing")
        reach = float(np.linalg.norm(points - centre, axis=1).max())
        if reach <= 0 or not np.isfinite(reach):
            raise InputError(f"degenerate bounding box: {what} are all at one point")
        if extent.min() <= 1e-9 * extent.max():
            axis = "xyz"[int(extent.argmin())]
            raise InputError(f"degenerate bounding box: {what} span no volume (all share one {axis}); give --bounds")
        return Frame(centre, reach / radius)

    @staticmethod
    def from_bounds(bounds: tuple[float, ...], radius: float) -> Frame:
        """``(xmin, ymin, zmin, xmax, ymax, zmax)``: the box's corners land at ``radius``."""
        values = np.asarray(bounds, np.float64)
        if values.shape != (6,) or not np.isfinite(values).all():
            raise InputError("--bounds needs six finite numbers: xmin ymin zmin xmax ymax zmax")
        low, high = values[:3], values[3:]
        if (high <= low).any():
            raise InputError(f"--bounds: each max must exceed its min, got min {low.tolist()} and max {high.tolist()}")
        if not np.isfinite(high - low).all() or (high - low).max() > MAX_EXTENT:
            raise InputError(f"--bounds spans more than {MAX_EXTENT:g} units: rescale the samples (distances too) first")
        return Frame((low + high) / 2, float(np.linalg.norm(high - low) / 2) / radius)


class SdfAdapter(Adapter):
    name = "sdf"
    position_dims = 3
    value_dims = 1

    def __init__(self, config: SdfConfig):
        super().__init__(config)
        self.position_low = -torch.ones(3)
        self.position_high = torch.ones(3)
        self.value_low = torch.tensor([-config.truncation])
        self.value_high = torch.tensor([config.truncation])

    def normalise_values(self, values: torch.Tensor) -> torch.Tensor:
        """Context distances (box units) -> normalised units, clipped or log-compressed beyond t."""
        return normalised_distances(values, self.config)

    # --- grids ----------------------------------------------------------------------------------
    @staticmethod
    def grid_positions(resolution: int) -> torch.Tensor:
        """(R^3, 3) points (x, y, z) of an R-per-axis grid spanning the box; x varies slowest."""
        axis = torch.linspace(-1, 1, resolution)
        x, y, z = torch.meshgrid(axis, axis, axis, indexing="ij")
        return torch.stack([x.reshape(-1), y.reshape(-1), z.reshape(-1)], dim=-1)

    # --- meshes -> samples (box units) ----------------------------------------------------------
    def frame_for(self, vertices: np.ndarray) -> Frame:
        return Frame.around(vertices, self.config.radius, what="the mesh's vertices")

    def draw_samples(
        self, vertices: np.ndarray, faces: np.ndarray, count: int, rng: np.random.Generator, *, fraction: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``count`` samples of a closed mesh in box units: a mix of near-surface points and
        points uniform in the box -> points (count, 3), signed distances (count,), not truncated."""
        fraction = self.config.near_surface_fraction if fraction is None else fraction
        n_near = int(round(fraction * count))
        near = near_surface_points(vertices, faces, n_near, self.config.near_surface_std, rng)
        uniform = rng.uniform(-1, 1, size=(count - n_near, 3))
        points = np.concatenate([near, uniform])[rng.permutation(count)]
        points = np.clip(points, -1, 1)  # offsets may step out of the box: keep every sample inside it
        return points.astype(np.float32), signed_distance_box(vertices, faces, points)

    # --- training --------------------------------------------------------------------------------
    def normalised_meshes(self, split: str):
        """The dataset's meshes of ``split``, each mapped into the box by its own frame."""
        from spatialgen.data.meshes import NamedMesh, load_mesh_dataset

        meshes = load_mesh_dataset(self.config.dataset, split, primitives=self.config.primitives)
        return [NamedMesh(m.name, self.frame_for(m.vertices).to_box(m.vertices), m.faces) for m in meshes]

    def training_source(self, split: str = "train") -> SdfPools:
        return SdfPools.load(prepare_pools(self, split), self.config)


def normalised_distances(sdf: torch.Tensor, config: SdfConfig) -> torch.Tensor:
    """d / t inside [-1, 1]; beyond it, clipped to +-1 or (far_context = "log") +-(1 + ln|d / t|).

    Training targets are clamped to [-1, 1] by the trainer (``SdfPools.target_limit``), so only
    the context sees the far part.
    """
    u = sdf / config.truncation
    if config.far_context == "clip":
        return u.clamp(-1, 1)
    return torch.where(u.abs() <= 1, u, u.sign() * (1 + torch.log(u.abs().clamp_min(1))))


# --- SDF of meshes ---------------------------------------------------------------------------------
def signed_distance_box(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray) -> np.ndarray:
    from spatialgen.io.mesh import signed_distance

    return signed_distance(vertices, faces, points)


def near_surface_points(
    vertices: np.ndarray, faces: np.ndarray, count: int, stds: tuple[float, ...], rng: np.random.Generator
) -> np.ndarray:
    """Surface points (uniform by area) moved by Gaussian offsets, each with a std drawn from ``stds``."""
    from spatialgen.io.mesh import sample_surface

    if count == 0:
        return np.zeros((0, 3))
    points, _ = sample_surface(vertices, faces, count, rng)
    std = np.asarray(stds, np.float64)[rng.integers(len(stds), size=count)]
    return points + rng.standard_normal((count, 3)) * std[:, None]


def uniform_ball(count: int, radius: float, rng: np.random.Generator) -> np.ndarray:
    direction = rng.standard_normal((count, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    return direction * radius * rng.random(count)[:, None] ** (1 / 3)


def pool_radius(config: SdfConfig) -> float:
    """Uniform pool points fill a ball that still covers the box after the smallest scaling."""
    return math.sqrt(3) / config.scale_range[0]


# --- cached pools ------------------------------------------------------------------------------------
def pool_key(adapter: SdfAdapter, names: list[str], split: str) -> str:
    c = adapter.config
    fields = {k: v for k, v in asdict(c).items() if k not in ("name", "truncation", "far_context", "near_surface_fraction", "fraction_jitter", "rotate", "thin_plate_weight", "thin_plate_min_samples")}
    fields.update(split=split, names=names, format=POOL_FORMAT, low_scale=c.scale_range[0])
    fields.pop("scale_range")
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


def prepare_pools(adapter: SdfAdapter, split: str, *, progress: bool = True) -> Path:
    """Compute (once) and cache every shape's SDF sample pools; returns the cached ``.npz``.

    Pools are in box units, unrotated and unscaled; truncation and augmentation happen per draw.
    """
    from spatialgen.data.cache import cache_dir
    from spatialgen.io.atomic import atomic_path
    from spatialgen.io.progress import track

    c = adapter.config
    meshes = adapter.normalised_meshes(split)
    if not meshes:
        raise InputError(f"the {c.dataset} dataset has no {split} shapes")
    names = [m.name for m in meshes]
    path = cache_dir() / f"sdf-{c.dataset}-{split}-{pool_key(adapter, names, split)}.npz"
    if path.is_file():
        return path
    arrays: dict[str, list[np.ndarray]] = {"near_points": [], "near_sdf": [], "uniform_points": [], "uniform_sdf": []}
    for index, mesh in enumerate(track(meshes, description=f"SDF samples ({c.dataset} {split})", total=len(meshes), enabled=progress)):
        rng = np.random.default_rng([c.seed, index])
        near = near_surface_points(mesh.vertices, mesh.faces, c.pool_near_surface, c.near_surface_std, rng)
        uniform = uniform_ball(c.pool_uniform, pool_radius(c), rng)
        for kind, points in (("near", near), ("uniform", uniform)):
            arrays[f"{kind}_points"].append(points.astype(np.float32))
            arrays[f"{kind}_sdf"].append(signed_distance_box(mesh.vertices, mesh.faces, points))
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, names=np.array(names), **{k: np.stack(v) for k, v in arrays.items()})
    return path


def random_rotations(generator: torch.Generator, count: int) -> torch.Tensor:
    """(count, 3, 3) rotations uniform over SO(3) (normalised Gaussian quaternions)."""
    q = torch.randn(count, 4, generator=generator)
    w, x, y, z = (q / q.norm(dim=1, keepdim=True)).unbind(1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]  # fmt: skip
    return torch.stack(rows, dim=1).view(count, 3, 3)


class SdfPools(TrainingSource):
    """Draws (positions, values) from cached per-shape pools with rotation + scale augmentation.

    Each item: one random shape, a near-surface share in fraction +- jitter, a random rotation R
    and scale s; a pool point p with distance d becomes (s R p, s d), points leaving the box are
    skipped, values are normalised by :func:`normalised_distances`. Points of one item are distinct and
    shuffled, so any prefix is a random subset (the trainer's context).
    """

    target_limit = 1.0  # far contexts may exceed [-1, 1] (far_context = "log"); predictions do not

    def __init__(self, near_points, near_sdf, uniform_points, uniform_sdf, config: SdfConfig, names: list[str] | None = None):
        self.near_points, self.near_sdf = torch.as_tensor(near_points), torch.as_tensor(near_sdf)
        self.uniform_points, self.uniform_sdf = torch.as_tensor(uniform_points), torch.as_tensor(uniform_sdf)
        self.config = config
        self.names = names or [str(i) for i in range(len(self.near_points))]

    @staticmethod
    def load(path: Path, config: SdfConfig) -> SdfPools:
        with np.load(path, allow_pickle=False) as arrays:
            parts = [arrays[k] for k in ("near_points", "near_sdf", "uniform_points", "uniform_sdf")]
            names = arrays["names"].tolist()
        return SdfPools(*parts, config, names)

    def draw(self, generator: torch.Generator, batch: int, points: int) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        shapes = torch.randint(len(self.near_points), (batch,), generator=generator)
        fraction = (c.near_surface_fraction + (2 * torch.rand(batch, generator=generator) - 1) * c.fraction_jitter).clamp(0, 1)
        n_near = (fraction * points).round().long()
        rotations = random_rotations(generator, batch) if c.rotate else torch.eye(3).expand(batch, 3, 3)
        low, high = math.log(c.scale_range[0]), math.log(c.scale_range[1])
        scales = torch.exp(low + (high - low) * torch.rand(batch, generator=generator))
        positions, values = torch.empty(batch, points, 3), torch.empty(batch, points, 1)
        for b in range(batch):
            s, R, shape = float(scales[b]), rotations[b], int(shapes[b])
            near = self._pick(self.near_points[shape], self.near_sdf[shape], int(n_near[b]), R, s, generator, 1.0)
            inside = min(1.0, 8 / (4 / 3 * math.pi * (pool_radius(c) * s) ** 3))  # expected share inside the box
            far = self._pick(self.uniform_points[shape], self.uniform_sdf[shape], points - int(n_near[b]), R, s, generator, inside)
            order = torch.randperm(points, generator=generator)
            positions[b] = torch.cat([near[0], far[0]])[order]
            values[b, :, 0] = torch.cat([near[1], far[1]])[order]
        return positions, normalised_distances(values, c)

    @staticmethod
    def _pick(pool_points, pool_sdf, count, R, s, generator, expected_share):
        """``count`` pool points that stay in the box after p -> s R p (distances -> s d), distinct
        unless the pool holds fewer than ``count`` such points (then it is cycled through again)."""
        if count == 0:
            return torch.zeros(0, 3), torch.zeros(0)
        kept_points, kept_sdf, have = [], [], 0
        block = int(1.2 * count / expected_share) + 16
        while have < count:
            order, found = torch.randperm(len(pool_points), generator=generator), 0
            for start in range(0, len(order), block):
                index = order[start : start + block]
                moved = s * pool_points[index] @ R.T
                keep = (moved.abs() <= 1).all(dim=1)
                kept_points.append(moved[keep][: count - have])
                kept_sdf.append(s * pool_sdf[index][keep][: count - have])
                have += len(kept_points[-1])
                found += int(keep.sum())
                if have >= count:
                    break
            if found == 0:
                raise RuntimeError("no point of this SDF pool stays inside the box after augmentation")
        return torch.cat(kept_points), torch.cat(kept_sdf)
