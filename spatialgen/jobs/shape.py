"""Shape jobs: complete a shape from sparse SDF samples and write meshes; evaluate against baselines.

Everything inside works in the box units of :mod:`spatialgen.adapters.sdf`; an input's
:class:`~spatialgen.adapters.sdf.Frame` maps the user's units in and the meshes back out.

A grid is decoded coarse to fine (like Occupancy Networks' MISE): the grid at half the
resolution, trilinearly upsampled, is decoded exactly wherever the upsampled distance is within
1.5 coarse cell diagonals of zero. The surface lies only there; elsewhere only the sign matters
for marching cubes and the coarse field gets it right. Memory stays one grid plus one chunk.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from spatialgen.adapters.sdf import Frame, SdfAdapter
from spatialgen.api import Model
from spatialgen.errors import InputError
from spatialgen.io.progress import track

SAMPLE_FILE_SUFFIXES = (".npz", ".csv", ".txt")
MAX_CONTEXT = 16_384  # encoder self-attention over K samples: beyond this, subsample the input
MIN_RESOLUTION, MAX_RESOLUTION = 8, 512  # a 512^3 grid is 0.5 GB; marching cubes needs a few times that
EXACT_BELOW = 48  # grids up to this resolution are decoded exactly everywhere
BAND_LIMIT = 0.85  # refine only where the band is this share of the truncation or less: saturated points stay out of it
BAND_SHARE = 0.25  # about this share of a grid lies in the band (21% for the shipped model at 128^3)
CHUNK = 16_384
MAX_THIN_PLATE = 2048  # samples the thin-plate part of the mean field is fitted to (a random subset above)


@dataclass
class ShapeContext:
    points: np.ndarray  # (K, 3) box units
    sdf: np.ndarray  # (K,) box units, whole (the adapter clips or compresses them for the model)
    frame: Frame  # user units <-> box
    truth: object | None = None  # the input mesh (user units) when INPUT is a mesh
    notes: list[str] = field(default_factory=list)


@dataclass
class ShapeCompletion:
    context: ShapeContext
    meshes: list  # trimesh.Trimesh in the user's units: the mean, or one per sample
    labels: list[str]
    notes: list[str] = field(default_factory=list)


# --- inputs ----------------------------------------------------------------------------------------
def read_shape_context(
    adapter: SdfAdapter, path: str | Path, *, num_samples: int = 512, seed: int = 0, bounds: tuple[float, ...] | None = None
) -> ShapeContext:
    """A closed mesh (K samples drawn from it) or a samples file (points + sdf in user units)."""
    path = Path(path)
    config = adapter.config
    if path.suffix.lower() in SAMPLE_FILE_SUFFIXES:
        return _read_samples_file(adapter, path, bounds)
    if not 1 <= num_samples <= MAX_CONTEXT:
        raise InputError(f"--num-samples must be between 1 and {MAX_CONTEXT}, got {num_samples}")
    from spatialgen.io.mesh import check_closed, read_mesh

    mesh = read_mesh(path)
    check_closed(mesh, path)
    frame = Frame.from_bounds(bounds, config.radius) if bounds else adapter.frame_for(mesh.vertices)
    vertices = frame.to_box(mesh.vertices)
    if bounds and np.abs(vertices).max() > 1:
        raise InputError(f"{path}: the mesh reaches outside the region --bounds gives the model; widen --bounds")
    points, sdf = adapter.draw_samples(vertices, np.asarray(mesh.faces), num_samples, np.random.default_rng(seed))
    context = ShapeContext(points, sdf, frame, truth=mesh)  # whole distances: the adapter clips or compresses them
    context.notes += _sign_notes(context.sdf)
    return context


def _read_samples_file(adapter: SdfAdapter, path: Path, bounds) -> ShapeContext:
    from spatialgen.io.samples import read_samples

    table = read_samples(path, columns=4, npz_keys=("points", "sdf"), what="x, y, z, sdf")
    if len(table) > MAX_CONTEXT:
        raise InputError(f"{path}: {len(table)} samples are more than the {MAX_CONTEXT} the model takes at once; subsample them")
    radius = adapter.config.radius
    frame = Frame.from_bounds(bounds, radius) if bounds else Frame.around(table[:, :3], radius)
    points = frame.to_box(table[:, :3])
    outside = int((np.abs(points) > 1).any(axis=1).sum())
    if outside:
        raise InputError(f"{path}: {outside} sample(s) lie outside the region --bounds gives the model; widen --bounds")
    sdf = table[:, 3] / frame.scale  # box units, whole: the adapter clips or compresses them
    context = ShapeContext(points.astype(np.float32), sdf.astype(np.float32), frame)
    context.notes += _sign_notes(context.sdf)
    return context


def _sign_notes(sdf: np.ndarray) -> list[str]:
    if (sdf > 0).all():
        return [f"all {len(sdf)} samples are outside the surface (sdf > 0)"]
    if (sdf < 0).all():
        return [f"all {len(sdf)} samples are inside the surface (sdf < 0)"]
    return []


# --- decoding --------------------------------------------------------------------------------------
class FieldDecoder:
    """The mean signed distance given one encoded context, at any positions (box units), in chunks.

    With ``thin_plate_weight`` w > 0 the field is (1 - w) x the network's mean + w x a thin-plate
    spline through the same samples, clipped to the truncation like the network's values. The two
    err in different places (the spline is smooth and exact at the samples; the network knows
    what shapes look like), so their blend is closer to the truth than either: on the training
    shapes w = 0.4 raised volumetric IoU at K = 128 and 512 above both (configs/sdf-cgal.toml).
    """

    def __init__(self, model: Model, points: np.ndarray | torch.Tensor, sdf: np.ndarray | torch.Tensor, *, thin_plate_weight: float = 0.0):
        self.model = model
        self.cap = float(model.adapter.value_high.max())  # |mean| <= truncation: the bins end there
        self.memory = model.encode(torch.as_tensor(points).float(), torch.as_tensor(sdf).float().reshape(-1, 1))
        self.thin_plate, self.without_thin_plate = None, None  # the spline, or why the network is alone despite w > 0
        fewest = model.adapter.config.thin_plate_min_samples
        if thin_plate_weight > 0 and len(points) < fewest:
            self.without_thin_plate = f"fewer than {fewest} samples: the mean is the network's alone (a thin-plate spline through so few makes it worse)"
        elif thin_plate_weight > 0:
            self.thin_plate = _thin_plate(points, sdf)
            if self.thin_plate is None:
                self.without_thin_plate = (f"no stable thin-plate spline fits these {len(points)} sample(s) (too few, flat, on a line "
                                           "or nearly coincident): the mean is the network's alone")  # fmt: skip
        self.weight = thin_plate_weight if self.thin_plate is not None else 0.0

    @torch.no_grad()
    def __call__(self, positions: torch.Tensor, *, chunk: int = CHUNK) -> torch.Tensor:
        model, out = self.model, []
        for start in range(0, len(positions), chunk):
            query = model.adapter.normalise_positions(positions[start : start + chunk].float().to(model.device))
            head = model.network.decode(self.memory, query[None])
            out.append(model.in_natural_units(model.network.distribution(head)).mean[0, :, 0].cpu())
        field = torch.cat(out) if out else torch.zeros(0)
        if self.weight > 0 and len(field):
            spline = torch.from_numpy(self.thin_plate(positions.double().numpy())[:, 0]).float().clamp(-self.cap, self.cap)
            field = (1 - self.weight) * field + self.weight * spline
        return field


def _thin_plate(points, sdf):
    """A thin-plate spline through (at most MAX_THIN_PLATE of) the samples (box units), or None
    where the samples cannot hold a trustworthy one: too few, (nearly) flat or on a line, or so
    close together with different distances that the spline swings far beyond any distance in
    the box (it would shift the whole field)."""
    from spatialgen.baselines import fit_rbf

    points = np.asarray(points, np.float64).reshape(-1, 3)
    sdf = np.asarray(sdf, np.float64).reshape(-1, 1)
    if len(points) > MAX_THIN_PLATE:  # the fit solves a K x K system: O(K^3) time, O(K^2) memory
        keep = np.random.default_rng(0).choice(len(points), MAX_THIN_PLATE, replace=False)
        points, sdf = points[keep], sdf[keep]
    spline = fit_rbf(points, sdf)
    if spline is None:
        return None
    spread = np.linalg.svd(points - points.mean(axis=0), compute_uv=False)
    if spread[-1] < 1e-3 * spread[0]:  # flat or linear: the spline is free across the missing direction
        return None
    probes = np.random.default_rng(0).uniform(-1, 1, size=(2000, 3))
    unstable = np.abs(spline(points) - sdf).max() > 1e-4 or np.abs(spline(probes)).max() > 10  # box distances are < 3.5
    return None if unstable else spline


class CountingDecoder:
    """A FieldDecoder that counts the positions it is asked for (benchmarks and tests)."""

    def __init__(self, decoder: FieldDecoder):
        self.decoder, self.queries, self.cap = decoder, 0, decoder.cap

    def __call__(self, positions: torch.Tensor, **kwargs) -> torch.Tensor:
        self.queries += len(positions)
        return self.decoder(positions, **kwargs)


def grid_axis(resolution: int) -> torch.Tensor:
    return torch.linspace(-1, 1, resolution)


def positions_of(index: torch.Tensor, resolution: int) -> torch.Tensor:
    """Flat indices into an (R, R, R) grid -> box positions (N, 3)."""
    axis = grid_axis(resolution)
    i, rest = index // (resolution * resolution), index % (resolution * resolution)
    return torch.stack([axis[i], axis[rest // resolution], axis[rest % resolution]], dim=-1)


def decode_grid(
    decoder: FieldDecoder, resolution: int, *, progress: bool = False, description: str = "decoding", exact_below: int = EXACT_BELOW
) -> np.ndarray:
    """The mean field on an R^3 grid over the box, (R, R, R) float32.

    Up to ``exact_below`` points per axis every point is decoded. Above, a coarser grid (half the
    resolution, made the same way, recursively) is upsampled trilinearly and decoded exactly
    wherever the upsampled distance is within 1.5 coarse cell diagonals of zero: the surface can
    only lie there, and elsewhere only the sign matters, which the coarse field already has.
    """
    passes = _refining_passes(resolution, exact_below, decoder.cap)

    def label(R: int) -> str:  # every pass is named after the grid asked for, not the coarse one it refines
        return f"{description} {resolution}^3" + (f" (pass {_refining_passes(R, exact_below, decoder.cap)} of {passes})" if passes > 1 else "")

    return _decode_refined(decoder, resolution, label=label, progress=progress, exact_below=exact_below)


def _band(coarse_R: int) -> float:
    """Where a surface may lie after upsampling a coarse grid: 1.5 of its cell diagonals (box units)."""
    return 1.5 * math.sqrt(3) * 2 / (coarse_R - 1)


def coarse_resolution(R: int, *, exact_below: int, cap: float) -> int | None:
    """The grid that an R^3 grid is refined from, or None to decode every point of it.

    The predicted distances stop at ``cap`` (the truncation), so a band as wide as that holds
    every point: refining would decode the whole grid on top of the coarse one. Then the coarse
    grid is the smallest whose band is well inside ``cap`` — if that costs less than decoding R^3.
    """
    if R <= exact_below:
        return None
    coarse = (R - 1) // 2 + 1
    if _band(coarse) >= BAND_LIMIT * cap:
        coarse = math.floor(2 * 1.5 * math.sqrt(3) / (BAND_LIMIT * cap)) + 2
    if coarse >= R or coarse**3 + R**3 * BAND_SHARE >= R**3:
        return None
    return coarse


def _decode_refined(decoder: FieldDecoder, R: int, *, label: Callable[[int], str], progress: bool, exact_below: int) -> np.ndarray:
    coarse_R = coarse_resolution(R, exact_below=exact_below, cap=decoder.cap)
    if coarse_R is None:
        return decoder(positions_of(torch.arange(R**3), R)).reshape(R, R, R).numpy()
    coarse = _decode_refined(decoder, coarse_R, label=label, progress=progress, exact_below=exact_below)
    values = F.interpolate(torch.from_numpy(coarse)[None, None], size=(R, R, R), mode="trilinear", align_corners=True)[0, 0]
    band = _band(coarse_R)
    planes = max(1, 4 * CHUNK // (R * R))  # x-planes per slab: a few chunks of queries
    slabs = range(0, R, planes)
    flat = values.view(-1)
    for start in track(slabs, description=label(R), total=len(slabs), enabled=progress):
        slab = flat[start * R * R : min(R, start + planes) * R * R]
        near = torch.nonzero(slab.abs() < band)[:, 0]
        if len(near):
            slab[near] = decoder(positions_of(near + start * R * R, R))
    return values.numpy()


def _refining_passes(resolution: int, exact_below: int, cap: float) -> int:
    """How many band passes ``decode_grid`` makes above its exact coarsest grid."""
    coarse = coarse_resolution(resolution, exact_below=exact_below, cap=cap)
    return 0 if coarse is None else 1 + _refining_passes(coarse, exact_below, cap)


def random_grid_points(resolution: int, count: int, seed: int) -> torch.Tensor:
    """``count`` distinct flat grid indices in random order: the first visits of a random order."""
    total = resolution**3
    return torch.as_tensor(np.random.default_rng(seed).choice(total, size=min(count, total), replace=False))


# --- the job -----------------------------------------------------------------------------------------
def complete_shape(
    model: Model,
    input_path: str | Path,
    *,
    num_samples: int = 512,
    resolution: int = 128,
    samples: int = 0,
    n_autoregressive: int = 512,
    step: int = 8,
    temperature: float = 1.0,
    seed: int = 0,
    bounds: tuple[float, ...] | None = None,
    thin_plate_weight: float | None = None,
    progress: bool = True,
) -> ShapeCompletion:
    """The mean completion (``samples == 0``) or ``samples`` autoregressive completions, as meshes
    in the input's units. Raises before anything is written if any result has no surface.

    The mean blends in a thin-plate spline with ``thin_plate_weight`` (default: the checkpoint's,
    see :class:`FieldDecoder`); samples are the network's own draws, never blended."""
    from spatialgen.sampling import sample_field

    if not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
        raise InputError(f"--resolution must be between {MIN_RESOLUTION} and {MAX_RESOLUTION}, got {resolution}")
    if samples < 0:
        raise InputError(f"--samples must be 0 or more, got {samples}")
    if step < 1:
        raise InputError(f"--step must be at least 1, got {step}")
    if not 0 <= n_autoregressive <= MAX_CONTEXT:
        raise InputError(f"--autoregressive must be between 0 and {MAX_CONTEXT}, got {n_autoregressive}")
    if temperature < 0:
        raise InputError(f"--temperature must be 0 or more, got {temperature}")
    notes = []
    if thin_plate_weight is not None and samples > 0:
        notes.append("--thin-plate applies to the mean completion only: samples are the network's own draws")
    if thin_plate_weight is None:
        thin_plate_weight = model.adapter.config.thin_plate_weight
    if not 0 <= thin_plate_weight <= 1:
        raise InputError(f"--thin-plate must be between 0 and 1, got {thin_plate_weight}")
    context = read_shape_context(model.adapter, input_path, num_samples=num_samples, seed=seed, bounds=bounds)
    context.notes += notes
    points, sdf = torch.as_tensor(context.points), torch.as_tensor(context.sdf)[:, None]
    grids, labels = [], []
    if samples == 0:
        decoder = FieldDecoder(model, points, sdf, thin_plate_weight=thin_plate_weight)
        if decoder.without_thin_plate:
            context.notes.append(decoder.without_thin_plate)
        grids.append(decode_grid(decoder, resolution, progress=progress))
        labels.append("mean completion")
    for index in range(samples):
        sample_seed = int(np.random.SeedSequence([seed, index]).generate_state(1)[0])  # < 2**32 for torch
        visited = random_grid_points(resolution, n_autoregressive, sample_seed)
        at = positions_of(visited, resolution)
        drawn = sample_field(model, points, sdf, at, samples=1, n_autoregressive=len(at), step=step,
                             temperature=temperature, seed=sample_seed, progress=progress)[0]  # fmt: skip
        decoder = FieldDecoder(model, torch.cat([points, at]), torch.cat([sdf, drawn]))
        grid = decode_grid(decoder, resolution, progress=progress, description=f"sample {index + 1}/{samples}")
        grid.reshape(-1)[visited.numpy()] = drawn[:, 0].numpy()
        grids.append(grid)
        labels.append(f"sample {index + 1}")
    result = ShapeCompletion(context, [], labels, notes=list(context.notes))
    for grid, label in zip(grids, labels):
        result.meshes.append(_mesh_in_user_units(grid, context, label, result.notes))
    return result


def _mesh_in_user_units(grid: np.ndarray, context: ShapeContext, label: str, notes: list[str]):
    from spatialgen.io.mesh import surface_from_grid

    try:
        mesh, closed_at_box = surface_from_grid(grid)
    except InputError as exc:
        hint = f" ({context.notes[0]})" if context.notes else ""
        raise InputError(f"{label}: {exc}{hint}") from None
    if closed_at_box:
        notes.append(f"{label}: the shape reaches the edge of the region the model sees; it was closed there")
    if not mesh.is_watertight:
        notes.append(f"{label}: the mesh is not watertight")
    mesh.vertices = context.frame.from_box(mesh.vertices)
    return mesh


def output_paths(out: str | Path, count: int) -> list[Path]:
    """OUT for the mean; OUT's stem + _0, _1, ... for ``count`` samples."""
    out = Path(out)
    if count == 0:
        return [out]
    return [out.with_name(f"{out.stem}_{i}{out.suffix}") for i in range(count)]


def write_completion(completion: ShapeCompletion, out: str | Path, *, samples: int, preview: str | Path | None = None, title: str = "") -> list[Path]:
    from spatialgen.io.mesh import render_preview, write_mesh

    paths = output_paths(out, samples)
    for mesh, path in zip(completion.meshes, paths):
        note = _float32_note(mesh, path)
        if note and note not in completion.notes:
            completion.notes.append(note)
        write_mesh(mesh, path)
    if preview is not None:
        context = completion.context
        panels = [(f"{len(context.sdf)} samples", (context.frame.from_box(context.points), context.sdf))]
        panels += list(zip(completion.labels, completion.meshes))
        if context.truth is not None:
            panels.append(("input mesh", context.truth))
        render_preview(panels, preview, title=title)
    return paths


def _float32_note(mesh, path: Path) -> str | None:
    """.ply, .stl and .glb store float32 vertices (7 significant digits): far from the origin,
    relative to the shape's size, they snap to a coarse lattice. Say so; .obj keeps them."""
    if path.suffix.lower() not in (".ply", ".stl", ".glb") or not len(mesh.vertices):
        return None
    vertices = np.asarray(mesh.vertices)
    extent = float(np.ptp(vertices, axis=0).max())
    if extent > 0 and np.abs(vertices).max() > 1e4 * extent:
        return f"{path.suffix.lower()} stores float32: this shape lies far from the origin for its size and its vertices lose precision (use .obj)"
    return None


# --- evaluation --------------------------------------------------------------------------------------
METHODS = ("spatialgen", "rbf (thin-plate)", "nearest neighbour")
NETWORK_ALONE = "spatialgen, network alone"  # a row of its own when the mean blends in a thin-plate spline


def evaluate_sdf_model(
    model: Model, *, contexts: tuple[int, ...] = (128, 512, 2048), limit: int | None = None, seed: int = 0,
    resolution: int = 64, points: int = 100_000, progress: bool = True,
) -> dict:  # fmt: skip
    """IoU, Chamfer-L1 and normal consistency (ONet's definitions) on the test shapes, beside RBF
    (thin-plate) and nearest-neighbour interpolation of the same K samples (given the untruncated
    distances, their best case); seconds per shape.

    Each shape is in the box (bounding sphere at ``radius``); IoU over ``points`` uniform points
    in the box; Chamfer over ``points`` surface points per mesh, in units of the true shape's
    longest bounding-box edge (ONet's unit cube). Meshes come from marching cubes at ``resolution``.
    """
    from spatialgen.io.mesh import sample_surface, signed_distance
    from spatialgen.metrics import surface_agreement, volumetric_iou

    adapter = model.adapter
    meshes = adapter.normalised_meshes("test")[:limit] if limit else adapter.normalised_meshes("test")
    for K in contexts:
        if not 1 <= K <= MAX_CONTEXT:
            raise InputError(f"context size {K} is outside 1..{MAX_CONTEXT}")
    grid = positions_of(torch.arange(resolution**3), resolution).numpy()
    weight = adapter.config.thin_plate_weight
    methods = (METHODS[0], NETWORK_ALONE, *METHODS[1:]) if weight > 0 else METHODS
    scores = {(K, m): {"iou": [], "chamfer_l1": [], "normal_consistency": [], "seconds": [], "failures": 0} for K in contexts for m in methods}
    per_shape = []
    for index, shape in enumerate(track(meshes, description="eval shapes", total=len(meshes), enabled=progress)):
        rng = np.random.default_rng([seed, index])
        probe = rng.uniform(-1, 1, size=(points, 3))
        true_inside = signed_distance(shape.vertices, shape.faces, probe) < 0
        true_points, true_normals = sample_surface(shape.vertices, shape.faces, points, rng)
        unit = 1 / float(np.ptp(shape.vertices, axis=0).max())
        for K in contexts:
            ctx_points, raw_sdf = adapter.draw_samples(shape.vertices, shape.faces, K, np.random.default_rng([seed, index, K]))
            for method in methods:
                start = time.perf_counter()  # every method gets the distances whole (the model's adapter clips or compresses them)
                field_at, values = _method_field(method, model, ctx_points, raw_sdf, grid, resolution, weight)
                mesh = _surface_or_none(values)
                seconds = time.perf_counter() - start  # the time to make the mesh
                inside = field_at(probe) < 0
                if mesh is None:
                    predicted = (None, None)
                    scores[(K, method)]["failures"] += 1
                else:
                    predicted = sample_surface(np.asarray(mesh.vertices), np.asarray(mesh.faces), points, rng)
                agreement = surface_agreement(*predicted, true_points, true_normals, scale=unit)
                row = {"iou": volumetric_iou(inside, true_inside), "chamfer_l1": agreement["chamfer_l1"],
                       "normal_consistency": agreement["normal_consistency"], "seconds": seconds}  # fmt: skip
                for key, value in row.items():
                    scores[(K, method)][key].append(value)
                per_shape.append({"shape": shape.name, "context": K, "method": method, **row})
    rows = [
        {"context": K, "method": method, **{k: float(np.mean(v)) for k, v in s.items() if k != "failures"}, "no_surface": s["failures"]}
        for (K, method), s in scores.items()
    ]
    return {
        "domain": "sdf", "dataset": adapter.config.dataset, "split": "test", "items": len(meshes), "seed": seed,
        "resolution": resolution, "points": points, "shapes": [m.name for m in meshes], "thin_plate_weight": weight,
        "rows": rows, "per_shape": per_shape,
    }  # fmt: skip


def _method_field(method: str, model: Model, points: np.ndarray, sdf: np.ndarray, grid: np.ndarray, resolution: int, weight: float):
    """-> (a function positions (N, 3) -> signed distances (N,), the field on the grid (R, R, R))."""
    from spatialgen.baselines import nearest_neighbour, rbf_interpolation

    if method in (METHODS[0], NETWORK_ALONE):
        decoder = FieldDecoder(model, points, sdf, thin_plate_weight=weight if method == METHODS[0] else 0.0)
        return (lambda queries: decoder(torch.as_tensor(queries)).numpy()), decode_grid(decoder, resolution)
    interpolate = rbf_interpolation if method.startswith("rbf") else nearest_neighbour
    fill = np.full(1, model.adapter.config.truncation)  # used only without samples: "outside"

    def field_at(queries: np.ndarray) -> np.ndarray:
        return interpolate(points.astype(np.float64), sdf[:, None].astype(np.float64), queries, fill=fill)[:, 0]

    return field_at, field_at(grid).reshape((resolution,) * 3)


def _surface_or_none(values: np.ndarray):
    from spatialgen.io.mesh import surface_from_grid

    try:
        return surface_from_grid(values)[0]
    except InputError:
        return None
