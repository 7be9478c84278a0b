"""Meshes: reading (anything trimesh reads), signed distances (open3d), marching cubes
(scikit-image), export chosen by suffix, and a matplotlib preview. Files are written atomically.

trimesh and open3d are optional (``pip install 'spatialgen[mesh]'``) and imported on first use.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from spatialgen.errors import InputError, MissingDependency, OutputError, shortened
from spatialgen.io.atomic import atomic_path

MESH_SUFFIXES = (".obj", ".ply", ".stl", ".off", ".glb")
_INSTALL = "install the mesh extra: pip install 'spatialgen[mesh]'"


# --- optional libraries ------------------------------------------------------------------------
def require_trimesh():
    try:
        import trimesh
    except ImportError:
        raise MissingDependency(f"trimesh is needed for meshes: {_INSTALL}") from None
    return trimesh


def require_open3d():
    """open3d, with libusb preloaded from the ``libusb-package`` wheel when the system lacks it.

    open3d's wheels link against libusb-1.0.so.0, which minimal Linux images do not have.
    """
    import sys

    if "open3d" in sys.modules:
        return sys.modules["open3d"]
    if sys.platform.startswith("linux") and ctypes.util.find_library("usb-1.0") is None:
        try:
            import libusb_package

            library = libusb_package.get_library_path()
            if library is not None:
                ctypes.CDLL(str(library), mode=ctypes.RTLD_GLOBAL)
        except (ImportError, OSError):
            pass  # the import below says what is missing
    try:
        import open3d
    except ImportError as exc:
        if "libusb" in str(exc):
            raise MissingDependency(
                "open3d needs libusb-1.0: pip install libusb-package (or apt-get install libusb-1.0-0)"
            ) from None
        raise MissingDependency(f"open3d is needed for signed distances ({exc}): {_INSTALL}") from None
    return open3d


# --- reading -----------------------------------------------------------------------------------
def read_mesh(path: str | Path):
    """A mesh file -> one ``trimesh.Trimesh`` (scenes are concatenated; duplicate vertices merged).

    One-line InputError for a missing, unreadable or empty file. Polygonal OFF files, which
    trimesh cannot triangulate under NumPy 2.4, are read by a small fan-triangulating reader.
    """
    trimesh = require_trimesh()
    path = Path(path)
    if not path.is_file():
        raise InputError(f"input not found: {path}")
    try:
        mesh = trimesh.load(str(path), force="mesh", process=True)
    except Exception as exc:  # trimesh raises many types for bad files
        if path.suffix.lower() != ".off":
            raise InputError(f"cannot read {path} as a mesh ({type(exc).__name__}: {shortened(str(exc), 80)})") from None
        vertices, faces = read_off(path)
        mesh = trimesh.Trimesh(vertices, faces, process=True)
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0 or len(mesh.vertices) == 0:
        raise InputError(f"{path} holds no triangles (an empty mesh or a point cloud)")
    if not np.isfinite(mesh.vertices).all():
        raise InputError(f"{path}: vertex coordinates contain NaN or infinite values")
    return mesh


def read_off(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (V, 3) and triangles (F, 3) of an OFF file; polygons become triangle fans."""
    path = Path(path)
    try:
        words = [line.split("#", 1)[0].split() for line in path.read_text(encoding="utf-8", errors="strict").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {path} as an OFF mesh: {exc}") from None
    lines = [line for line in words if line]
    if not lines or not lines[0][0].upper().endswith("OFF"):
        raise InputError(f"{path} is not an OFF file (no OFF header)")
    try:
        if len(lines[0]) > 1:  # "OFF V F E" on one line
            counts, body = lines[0][1:], lines[1:]
        else:
            counts, body = lines[1], lines[2:]
        n_vertices, n_faces = int(counts[0]), int(counts[1])
        vertices = np.array([[float(v) for v in line[:3]] for line in body[:n_vertices]], dtype=np.float64).reshape(-1, 3)
        faces = []
        for line in body[n_vertices : n_vertices + n_faces]:
            count = int(line[0])
            ring = [int(v) for v in line[1 : 1 + count]]
            faces += [(ring[0], ring[i], ring[i + 1]) for i in range(1, count - 1)]
        faces = np.array(faces, dtype=np.int64).reshape(-1, 3)
    except (IndexError, ValueError):
        raise InputError(f"{path} is not a readable OFF file (bad counts or numbers)") from None
    if len(vertices) != n_vertices or (len(faces) and (faces.min() < 0 or faces.max() >= n_vertices)):
        raise InputError(f"{path} is not a readable OFF file (truncated, or faces index missing vertices)")
    return vertices, faces


def check_closed(mesh, path: str | Path) -> None:
    """A signed distance needs an inside: refuse meshes with boundary or non-manifold edges."""
    if not mesh.is_watertight:
        raise InputError(
            f"{path} is not a closed mesh (it has holes or non-manifold edges), so inside and outside and the "
            "SDF sign are undefined: give a samples file instead (.npz with points and sdf, or .csv x,y,z,sdf)"
        )


# --- signed distance -----------------------------------------------------------------------------
def signed_distance(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray, *, rays: int = 3) -> np.ndarray:
    """Signed distance (K,) from a closed triangle mesh to points (K, 3); negative inside.

    open3d's RaycastingScene: the distance to the nearest triangle, the sign from counting ray
    crossings (``rays`` rays vote, so a ray grazing an edge does not flip a sign).
    """
    o3d = require_open3d()
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(np.ascontiguousarray(vertices, dtype=np.float32)),
        o3d.core.Tensor(np.ascontiguousarray(faces, dtype=np.uint32)),
    )
    query = o3d.core.Tensor(np.ascontiguousarray(points, dtype=np.float32))
    return scene.compute_signed_distance(query, nsamples=rays).numpy().astype(np.float32)


def sample_surface(vertices: np.ndarray, faces: np.ndarray, count: int, rng: np.random.Generator):
    """``count`` points uniform by area on the triangles -> points (count, 3), unit normals (count, 3)."""
    triangles = vertices[faces]  # (F, 3, 3)
    cross = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    area = np.linalg.norm(cross, axis=1)
    if area.sum() <= 0:
        raise InputError("the mesh has no surface area")
    chosen = rng.choice(len(faces), size=count, p=area / area.sum())
    u, v = rng.random((2, count))
    flip = u + v > 1
    u, v = np.where(flip, 1 - u, u), np.where(flip, 1 - v, v)
    t = triangles[chosen]
    points = t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])
    normals = cross[chosen] / np.maximum(area[chosen], 1e-30)[:, None]
    return points, normals


# --- marching cubes ------------------------------------------------------------------------------
def surface_from_grid(
    values: np.ndarray,
    *,
    low: float = -1.0,
    high: float = 1.0,
    level: float = 0.0,
    close: bool = True,
    min_piece_fraction: float = 0.005,
):
    """The ``level`` set of a field sampled on a cubic grid -> (trimesh.Trimesh, closed_at_boundary).

    ``values[i, j, k]`` is the field at (x_i, y_j, z_k), with R points per axis from ``low`` to
    ``high``. Outward normals point to larger values (positive outside, like an SDF). With
    ``close``, the grid is padded with a layer of outside values so that a field that is still
    negative at the box's faces gives a closed surface there; the second return value says
    whether that happened. No crossing of ``level`` is an InputError ("no surface found").
    Separate pieces with less than ``min_piece_fraction`` of the total surface area are dropped: they
    are specks where a predicted field grazes the level, not parts of the shape.
    """
    from skimage import measure

    trimesh = require_trimesh()
    values = np.asarray(values, dtype=np.float32)
    R = values.shape[0]
    if values.ndim != 3 or values.shape != (R, R, R) or R < 2:
        raise ValueError(f"values must be a cubic grid (R, R, R) with R >= 2, got {values.shape}")
    if not np.isfinite(values).all():
        raise InputError("the field contains NaN or infinite values")
    lowest, highest = float(values.min()), float(values.max())
    if not lowest < level < highest:
        side = "positive (outside)" if lowest >= level else "negative (inside)"
        raise InputError(f"no surface found: the field is {side} everywhere on the {R}^3 grid")
    spacing = (high - low) / (R - 1)
    # Values within 1% of a cell of the level would put several vertices within float32 rounding
    # of one grid point (they merge in .ply/.stl files and the mesh opens): push them to that margin.
    margin = np.float32(0.01 * spacing)
    values = np.where(np.abs(values - level) < margin, np.where(values >= level, level + margin, level - margin), values)
    boundary = np.concatenate([f.ravel() for f in (values[0], values[-1], values[:, 0], values[:, -1], values[:, :, 0], values[:, :, -1])])
    reaches_boundary = bool((boundary < level).any())
    offset = low
    if close and reaches_boundary:
        # the cap crosses between the last grid points and the pad layer: within one cell of the box's faces
        values = np.pad(values, 1, constant_values=np.float32(level + max(highest - level, spacing)))
        offset = low - spacing
    vertices, faces, _, _ = measure.marching_cubes(values, level=level, spacing=(spacing,) * 3, gradient_direction="descent")
    mesh = trimesh.Trimesh(vertices + offset, faces, process=True)  # (clipping to the box would merge cap vertices)
    mesh.remove_unreferenced_vertices()
    return drop_specks(mesh, min_piece_fraction), close and reaches_boundary


def drop_specks(mesh, min_piece_fraction: float):
    """``mesh`` without the connected pieces whose area is below that fraction of the total (the
    largest piece always stays)."""
    trimesh = require_trimesh()
    pieces = mesh.split(only_watertight=False)
    if len(pieces) < 2 or min_piece_fraction <= 0:
        return mesh
    areas = [piece.area for piece in pieces]
    largest, total = max(areas), sum(areas)
    kept = [piece for piece, area in zip(pieces, areas) if area >= min_piece_fraction * total or area == largest]
    return trimesh.util.concatenate(kept) if len(kept) < len(pieces) else mesh


# --- writing -------------------------------------------------------------------------------------
def check_mesh_suffix(path: str | Path) -> None:
    path = Path(path)
    if path.suffix.lower() not in MESH_SUFFIXES:
        raise InputError(f"unsupported output extension '{path.suffix or path.name}' for {path} (use {', '.join(MESH_SUFFIXES)})")


def write_mesh(mesh, path: str | Path) -> None:
    """Write ``mesh`` in the format its suffix names (.obj .ply .stl .off .glb), atomically."""
    check_mesh_suffix(path)
    path = Path(path)
    file_type = path.suffix.lower().lstrip(".")
    options = {}
    if file_type in ("obj", "off") and len(mesh.vertices):  # text formats write fixed-point decimals: keep ~8 significant digits
        extent = float(np.ptp(np.asarray(mesh.vertices), axis=0).max())
        if extent > 0:
            options["digits"] = int(np.clip(8 - np.floor(np.log10(extent)), 8 if file_type == "obj" else 10, 60))
    with atomic_path(path) as tmp:
        try:
            mesh.export(str(tmp), file_type=file_type, **options)
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None


# --- preview -------------------------------------------------------------------------------------
_LIGHT = np.array([0.35, -0.45, 0.82]) / np.linalg.norm([0.35, -0.45, 0.82])


def render_preview(
    panels: Sequence[tuple[str, object]], path: str | Path, *, elevation: float = 20, azimuth: float = -60, title: str = ""
) -> None:
    """One PNG of several panels, each ``(title, item)``: a trimesh mesh (shaded) or a pair
    ``(points (K, 3), sdf (K,))`` drawn as dots, red outside and blue inside. No display needed;
    all panels share one view and one scale."""
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    from spatialgen.io.plots import figure, save_figure

    plt = figure()
    extent = [_points_of(item) for _, item in panels]
    every = np.concatenate([e for e in extent if len(e)]) if any(len(e) for e in extent) else np.zeros((1, 3))
    centre = (every.min(0) + every.max(0)) / 2
    half = max(float((every.max(0) - every.min(0)).max()) / 2, 1e-9) * 1.02
    fig = plt.figure(figsize=(2.8 * len(panels), 3.0))
    for index, (name, item) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), index + 1, projection="3d")
        ax.view_init(elev=elevation, azim=azimuth)
        if isinstance(item, tuple):
            points, sdf = (np.asarray(a) for a in item)
            colours = np.where(sdf[:, None] > 0, [[0.85, 0.25, 0.2]], [[0.15, 0.35, 0.85]])
            ax.scatter(points[:, 0], points[:, 1], points[:, 2], s=3, c=colours, depthshade=True, linewidths=0)
        else:
            triangles = np.asarray(item.vertices)[np.asarray(item.faces)]
            shade = 0.25 + 0.75 * np.clip(np.asarray(item.face_normals) @ _LIGHT, 0, 1)
            colour = np.c_[0.55 * shade, 0.68 * shade, 0.85 * shade, np.ones_like(shade)]
            ax.add_collection3d(Poly3DCollection(triangles, facecolors=colour, linewidths=0))
        for setter, c in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), centre):
            setter(c - half, c + half)
        ax.set_box_aspect((1, 1, 1))
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    save_figure(fig, path)


def _points_of(item) -> np.ndarray:
    if isinstance(item, tuple):
        return np.asarray(item[0], dtype=np.float64).reshape(-1, 3)
    return np.asarray(item.vertices, dtype=np.float64).reshape(-1, 3)
