"""Mesh datasets: lists of closed triangle meshes in their own units.

``cgal`` is the closed meshes of CGAL's demo data (fetched, see :mod:`spatialgen.data.fetch`),
split by shape with the committed list ``data/splits/cgal.json``: test shapes are never trained
on. ``primitives`` are procedural shapes made with trimesh (boxes, ellipsoids, cylinders,
capsules, cones, tori, rings; random proportions and orientation): they need no fetching, so
tests use them, and they may be added to a real dataset's *training* split, never its test split.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spatialgen.data.cache import DataUnavailable
from spatialgen.data.fetch import fetch

SPLITS_DIR = Path(__file__).resolve().parents[2] / "data" / "splits"
MESH_DATASETS = ("cgal", "primitives")
PRIMITIVE_TEST_SHAPES = 8  # the primitives dataset's test split (its own seeds, never trained on)


@dataclass(frozen=True)
class NamedMesh:
    name: str
    vertices: np.ndarray  # (V, 3) float64
    faces: np.ndarray  # (F, 3) int64


def load_mesh_dataset(name: str, split: str, *, primitives: int = 0) -> list[NamedMesh]:
    """The meshes of ``split`` ("train" or "test"); ``primitives`` procedural shapes are added to
    "train" (with ``name == "primitives"`` they are the whole training split)."""
    if name not in MESH_DATASETS:
        raise DataUnavailable(f"unknown mesh dataset '{name}' (known: {', '.join(MESH_DATASETS)})")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got '{split}'")
    if name == "primitives":
        return primitive_meshes(PRIMITIVE_TEST_SHAPES, seed=1) if split == "test" else primitive_meshes(primitives, seed=0)
    meshes = cgal_meshes(split)
    if split == "train" and primitives:
        meshes += primitive_meshes(primitives, seed=0)
    return meshes


def cgal_split() -> dict[str, list[str]]:
    path = SPLITS_DIR / "cgal.json"
    try:
        split = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataUnavailable(f"the split list {path} is missing from this checkout") from None
    return {"train": list(split["train"]), "test": list(split["test"])}


def cgal_meshes(split: str) -> list[NamedMesh]:
    names = cgal_split()[split]
    with np.load(fetch("cgal"), allow_pickle=False) as arrays:
        available = set(arrays["names"].tolist())
        missing = [n for n in names if n not in available]
        if missing:
            raise DataUnavailable(f"the cached CGAL meshes lack {', '.join(missing)}: run 'spatialgen data fetch cgal --force'")
        return [NamedMesh(n, arrays[f"vertices_{n}"].astype(np.float64), arrays[f"faces_{n}"].astype(np.int64)) for n in names]


def primitive_meshes(count: int, *, seed: int) -> list[NamedMesh]:
    """``count`` closed procedural shapes; the same (count, seed) always gives the same shapes."""
    import trimesh

    from spatialgen.io.mesh import require_trimesh

    require_trimesh()
    rng = np.random.default_rng(seed)
    kinds = ("box", "ellipsoid", "cylinder", "capsule", "cone", "torus", "ring")
    meshes = []
    for index in range(count):
        kind = kinds[index % len(kinds)]
        a, b, c = rng.uniform(0.25, 1.0, size=3)
        if kind == "box":
            mesh = trimesh.creation.box(extents=(a, b, c))
        elif kind == "ellipsoid":
            mesh = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
            mesh.apply_scale((a, b, c))
        elif kind == "cylinder":
            mesh = trimesh.creation.cylinder(radius=a / 2, height=b * 1.5, sections=48)
        elif kind == "capsule":
            mesh = trimesh.creation.capsule(height=b * 1.5, radius=a / 3, count=(24, 24))
        elif kind == "cone":
            mesh = trimesh.creation.cone(radius=a / 2, height=b * 1.5, sections=48)
        elif kind == "torus":
            mesh = trimesh.creation.torus(major_radius=0.5, minor_radius=0.1 + 0.25 * c, major_sections=48, minor_sections=24)
        else:
            inner = 0.2 + 0.3 * c
            mesh = trimesh.creation.annulus(r_min=inner, r_max=inner + 0.1 + 0.4 * a, height=0.2 + b, sections=48)
        mesh.vertices = mesh.vertices @ random_rotation(rng).T
        meshes.append(NamedMesh(f"{kind}-{seed}-{index}", np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int64)))
    return meshes


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A rotation matrix (3, 3) uniform over SO(3), from a normalised Gaussian quaternion."""
    q = rng.standard_normal(4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])  # fmt: skip
