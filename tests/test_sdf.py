"""Shapes end to end: meshes in and out, signed distances, training draws, marching cubes,
metrics, and `complete-shape` / `eval` with a tiny model trained here.

No network: inputs are trimesh primitives written in every format, and the tiny model trains
on the procedural "primitives" dataset (the CGAL meshes are fetched only for real training).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image
from typer.testing import CliRunner

from spatialgen.adapters.sdf import (
    Frame,
    SdfAdapter,
    SdfConfig,
    SdfPools,
    near_surface_points,
    normalised_distances,
    prepare_pools,
    uniform_ball,
)
from spatialgen.cli import app
from spatialgen.config import config_from_dict
from spatialgen.errors import InputError
from spatialgen.io.mesh import MESH_SUFFIXES, read_mesh, render_preview, signed_distance, surface_from_grid, write_mesh
from spatialgen.jobs.shape import MAX_CONTEXT, CountingDecoder, FieldDecoder, decode_grid, positions_of
from spatialgen.metrics import EMPTY_SHAPE_CHAMFER, surface_agreement, volumetric_iou
from tests.conftest import TINY_MODEL, assert_user_error

TRUNCATION = 0.5


@pytest.fixture(autouse=True, scope="module")
def private_cache(tmp_path_factory):
    """Pools and datasets go to a fresh cache, never the user's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SPATIALGEN_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])



def sphere_mesh(radius: float = 3.0, centre=(10.0, -4.0, 2.5)) -> trimesh.Trimesh:
    mesh = trimesh.creation.icosphere(subdivisions=4, radius=radius)
    mesh.apply_translation(centre)
    return mesh


def sphere_field(resolution: int, radius: float, centre=(0.0, 0.0, 0.0)) -> np.ndarray:
    grid = SdfAdapter.grid_positions(resolution).numpy()
    return (np.linalg.norm(grid - np.asarray(centre), axis=1) - radius).reshape((resolution,) * 3)


# --- reading meshes and frames ------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", MESH_SUFFIXES)
def test_every_format_reads_back_closed_and_maps_into_the_box(tmp_path, suffix):
    source = sphere_mesh()
    path = tmp_path / f"sphere{suffix}"
    source.export(path)
    mesh = read_mesh(path)
    assert mesh.is_watertight and len(mesh.faces) == len(source.faces)
    adapter = SdfAdapter(SdfConfig())
    frame = adapter.frame_for(mesh.vertices)
    box = frame.to_box(mesh.vertices)
    assert np.linalg.norm(box, axis=1).max() == pytest.approx(0.9)  # the bounding sphere at radius 0.9
    np.testing.assert_allclose(frame.centre, [10.0, -4.0, 2.5], atol=1e-3)
    np.testing.assert_allclose(frame.from_box(box), mesh.vertices, atol=1e-9)


def test_polygonal_off_files_are_triangulated(tmp_path):
    path = tmp_path / "cube.off"
    corners = [(x, y, z) for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    lines = ["OFF", "# a cube of quads", "8 6 12"] + [" ".join(map(str, c)) for c in corners] + [f"4 {' '.join(map(str, q))}" for q in quads]
    path.write_text("\n".join(lines) + "\n")
    mesh = read_mesh(path)
    assert len(mesh.faces) == 12 and mesh.is_watertight and abs(mesh.volume) == pytest.approx(8.0)


def test_frames_refuse_degenerate_boxes():
    with pytest.raises(InputError, match="all at one point"):
        Frame.around(np.ones((5, 3)), 0.9)
    flat = np.random.default_rng(0).uniform(size=(20, 3))
    flat[:, 2] = 0.5
    with pytest.raises(InputError, match="span no volume .* one z"):
        Frame.around(flat, 0.9)
    with pytest.raises(InputError, match="each max must exceed its min"):
        Frame.from_bounds((0, 0, 0, 1, 1, 0), 0.9)
    frame = Frame.from_bounds((0, 0, 0, 2, 2, 2), 0.9)  # the corners land on the sphere of radius 0.9
    assert np.linalg.norm(frame.to_box([2, 2, 2])) == pytest.approx(0.9)


# --- signed distances ---------------------------------------------------------------------------------
def test_sign_convention_negative_inside_and_distances_in_box_units():
    adapter = SdfAdapter(SdfConfig())
    mesh = sphere_mesh()
    frame = adapter.frame_for(mesh.vertices)
    vertices, faces = frame.to_box(mesh.vertices), np.asarray(mesh.faces)
    probes = np.array([[0, 0, 0], [0.5, 0, 0], [0, 0.95, 0], [1, 1, 1.0]])
    expected = np.linalg.norm(probes, axis=1) - 0.9
    np.testing.assert_allclose(signed_distance(vertices, faces, probes), expected, atol=0.01)
    points, sdf = adapter.draw_samples(vertices, faces, 4000, np.random.default_rng(0))
    assert points.shape == (4000, 3) and sdf.shape == (4000,) and np.abs(points).max() <= 1
    np.testing.assert_allclose(sdf, np.linalg.norm(points, axis=1) - 0.9, atol=0.01)
    assert 0.2 < (sdf < 0).mean() < 0.6  # both sides are sampled


def test_the_sample_mix_follows_the_fraction():
    adapter = SdfAdapter(SdfConfig(near_surface_std=(0.01,)))
    mesh = sphere_mesh()
    vertices, faces = adapter.frame_for(mesh.vertices).to_box(mesh.vertices), np.asarray(mesh.faces)
    rng = np.random.default_rng(1)
    _, near = adapter.draw_samples(vertices, faces, 2000, rng, fraction=1.0)
    assert np.abs(near).max() < 0.06 and np.abs(near).mean() < 0.015
    _, mixed = adapter.draw_samples(vertices, faces, 2000, rng, fraction=0.5)
    assert 0.45 < (np.abs(mixed) < 0.05).mean() < 0.6  # half near the surface, plus a few uniform ones
    uniform_points, _ = adapter.draw_samples(vertices, faces, 20000, rng, fraction=0.0)
    np.testing.assert_allclose(uniform_points.mean(0), 0, atol=0.03)
    np.testing.assert_allclose(uniform_points.std(0), 2 / math.sqrt(12), atol=0.03)


# --- training draws -------------------------------------------------------------------------------------
def pools_of(mesh: trimesh.Trimesh, config: SdfConfig, near: int = 4000, uniform: int = 30000) -> SdfPools:
    """Pools of one mesh given in box units."""
    rng = np.random.default_rng(0)
    vertices, faces = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    near_points = near_surface_points(vertices, faces, near, config.near_surface_std, rng)
    uniform_points = uniform_ball(uniform, math.sqrt(3) / config.scale_range[0], rng)
    return SdfPools(near_points[None].astype(np.float32), signed_distance(vertices, faces, near_points)[None],
                    uniform_points[None].astype(np.float32), signed_distance(vertices, faces, uniform_points)[None], config)  # fmt: skip


def test_draws_scale_distances_with_the_shape():
    """A sphere of radius 0.9 scaled by s: |p| - sdf = 0.9 s for every unclipped point of an item."""
    config = SdfConfig(scale_range=(0.6, 1.0))
    source = pools_of(trimesh.creation.icosphere(subdivisions=5, radius=0.9), config)
    positions, values = source.draw(torch.Generator().manual_seed(0), 16, 600)
    assert positions.shape == (16, 600, 3) and values.shape == (16, 600, 1)
    assert positions.abs().max() <= 1 and values.abs().max() <= 1
    scales = []
    for p, v in zip(positions, values[..., 0]):
        unclipped = v.abs() < 1
        implied = p[unclipped].norm(dim=1) - TRUNCATION * v[unclipped]
        assert implied.std() < 0.005, implied.std()
        scales.append(implied.mean().item() / 0.9)
        assert len(torch.unique(p, dim=0)) == len(p)  # distinct points
    assert 0.6 - 0.01 < min(scales) and max(scales) < 1.0 + 0.01 and max(scales) - min(scales) > 0.15


def test_far_context_is_clipped_or_kept_on_a_log_scale():
    d = torch.linspace(-1.5, 1.5, 3001)
    clipped = normalised_distances(d, SdfConfig(truncation=0.1))
    logged = normalised_distances(d, SdfConfig(truncation=0.1, far_context="log"))
    near = d.abs() <= 0.1
    torch.testing.assert_close(clipped[near], d[near] / 0.1)
    torch.testing.assert_close(logged[near], clipped[near])  # identical near the surface: only far values differ
    assert clipped.abs().max() == 1 and torch.equal(logged.sign(), d.sign())
    assert (logged.diff() > 0).all()  # strictly increasing: a farther sample says the surface is farther
    assert logged.abs().max().item() == pytest.approx(1 + math.log(15))
    steps = logged.diff()
    assert steps.max() < 1.01 * steps[len(steps) // 2]  # no jump where the log scale takes over (|d| = t)
    # the adapter applies it to user inputs, the trainer clamps training targets back to [-1, 1]
    adapter = SdfAdapter(SdfConfig(truncation=0.1, far_context="log"))
    torch.testing.assert_close(adapter.normalise_values(d[:, None])[:, 0], logged)
    with pytest.raises(ValueError, match="far_context"):
        SdfConfig(far_context="keep")


def test_training_targets_stay_in_range_when_contexts_do_not():
    from spatialgen.config import TrainConfig
    from spatialgen.train import make_batch

    config = SdfConfig(scale_range=(0.6, 1.0), truncation=0.05, far_context="log")
    source = pools_of(trimesh.creation.icosphere(subdivisions=4, radius=0.9), config)
    batch = make_batch(source, torch.Generator().manual_seed(0), TrainConfig(max_context=200, queries=200, min_context=150), 4)
    assert batch.context_values.abs().max() > 2 and batch.query_values.abs().max() == 1


def box_sdf(points: torch.Tensor, half: torch.Tensor) -> torch.Tensor:
    q = points.abs() - half
    return q.clamp_min(0).norm(dim=-1) + q.max(dim=-1).values.clamp_max(0)


def test_draws_rotate_the_shape():
    half = torch.tensor([0.8, 0.3, 0.15])
    box = trimesh.creation.box(extents=(2 * half).numpy())
    fixed = pools_of(box, SdfConfig(rotate=False, scale_range=(1.0, 1.0)))
    positions, values = fixed.draw(torch.Generator().manual_seed(0), 4, 500)
    expected = box_sdf(positions, half).clamp(-TRUNCATION, TRUNCATION) / TRUNCATION
    torch.testing.assert_close(values[..., 0], expected, atol=2e-3, rtol=0)
    rotated = pools_of(box, SdfConfig(rotate=True, scale_range=(1.0, 1.0)))
    positions, values = rotated.draw(torch.Generator().manual_seed(0), 8, 2000)
    long_axes = []
    for p, v in zip(positions, values[..., 0]):
        inside = p[v < 0]
        eigenvalues, vectors = torch.linalg.eigh(torch.cov(inside.T))
        long_axes.append(vectors[:, -1].abs())
        assert eigenvalues[-1] / eigenvalues[0] > 10  # still the same flat, long box
    long_axes = torch.stack(long_axes)
    assert (long_axes[:, 0] < 0.9).sum() >= 6  # but no longer along x
    assert torch.pdist(long_axes).max() > 0.5  # and each item turned differently


def test_pools_are_prepared_once_and_keyed_by_their_options():
    adapter = SdfAdapter(SdfConfig(dataset="primitives", primitives=2, pool_near_surface=300, pool_uniform=600))
    path = prepare_pools(adapter, "train", progress=False)
    stamp = path.stat().st_mtime_ns
    assert prepare_pools(adapter, "train", progress=False) == path and path.stat().st_mtime_ns == stamp
    other = SdfAdapter(SdfConfig(dataset="primitives", primitives=2, pool_near_surface=301, pool_uniform=600))
    assert prepare_pools(other, "train", progress=False) != path
    source = adapter.training_source("train")
    assert source.near_points.shape == (2, 300, 3) and source.uniform_sdf.shape == (2, 600)
    # the augmentation-only options do not change the pools
    assert prepare_pools(SdfAdapter(SdfConfig(dataset="primitives", primitives=2, pool_near_surface=300, pool_uniform=600,
                                              rotate=False, truncation=0.3, far_context="log")), "train", progress=False) == path  # fmt: skip


def test_primitive_test_shapes_are_not_training_shapes():
    from spatialgen.data.meshes import load_mesh_dataset

    train = load_mesh_dataset("primitives", "train", primitives=8)
    test = load_mesh_dataset("primitives", "test")
    assert not {m.name for m in train} & {m.name for m in test}
    for mesh in train + test:
        assert trimesh.Trimesh(mesh.vertices, mesh.faces).is_watertight


def off_text(mesh: trimesh.Trimesh) -> str:
    lines = ["OFF", f"{len(mesh.vertices)} {len(mesh.faces)} 0"]
    lines += [" ".join(f"{c:.6f}" for c in v) for v in mesh.vertices] + [f"3 {a} {b} {c}" for a, b, c in mesh.faces]
    return "\n".join(lines) + "\n"


def test_the_cgal_fetcher_keeps_closed_meshes_with_enough_vertices(monkeypatch, tmp_path):
    """The Debian download is replaced by a package holding three meshes; nothing is fetched."""
    import importlib
    import io
    import tarfile

    from spatialgen.data.meshes import cgal_meshes
    from spatialgen.errors import DataUnavailable

    holed = trimesh.creation.icosphere(subdivisions=3)
    holed.update_faces(np.arange(len(holed.faces)) != 0)
    members = {"data/meshes/ball.off": off_text(trimesh.creation.icosphere(subdivisions=3)),  # 642 vertices
               "data/meshes/holed.off": off_text(holed), "data/meshes/cube.off": off_text(trimesh.creation.box()),
               "data/meshes/readme.txt": "not a mesh"}  # fmt: skip

    def fake_run(command, cwd, what):
        if command[:2] == ["apt-get", "download"]:
            (cwd / "libcgal-demo_5.5.1-2_all.deb").write_bytes(b"")
        else:  # dpkg -x: the package's data archive
            folder = cwd / "root/usr/share/doc/libcgal-dev"
            folder.mkdir(parents=True)
            with tarfile.open(folder / "data.tar.gz", "w:gz") as archive:
                for name, text in members.items():
                    info = tarfile.TarInfo(name)
                    info.size = len(text.encode())
                    archive.addfile(info, io.BytesIO(text.encode()))

    fetching = importlib.import_module("spatialgen.data.fetch")  # the module, not the function of that name
    monkeypatch.setattr(fetching, "_run", fake_run)
    path = fetching.fetch("cgal", force=True)
    with np.load(path, allow_pickle=False) as arrays:
        assert arrays["names"].tolist() == ["ball"] and arrays["vertices_ball"].shape == (642, 3)
    with pytest.raises(DataUnavailable, match="lack .*spatialgen data fetch cgal --force"):
        cgal_meshes("test")  # the committed split names real CGAL shapes


def test_the_cgal_split_is_disjoint_and_names_real_shapes():
    from spatialgen.data.meshes import cgal_split

    split = cgal_split()
    assert 6 <= len(split["test"]) <= 8 and len(split["train"]) >= 30
    assert not set(split["train"]) & set(split["test"])
    assert {"bunny00", "armadillo"} <= set(split["test"]) | set(split["train"])


# --- marching cubes and export ---------------------------------------------------------------------------
def test_marching_cubes_gives_a_closed_outward_sphere():
    mesh, closed_at_box = surface_from_grid(sphere_field(65, 0.5, centre=(0.1, 0, 0)))
    assert mesh.is_watertight and mesh.is_winding_consistent and not closed_at_box
    assert mesh.volume == pytest.approx(4 / 3 * math.pi * 0.5**3, rel=0.01)  # positive: normals point out
    np.testing.assert_allclose(mesh.vertices.mean(0), [0.1, 0, 0], atol=0.01)


def test_a_shape_cut_by_the_box_is_closed_on_the_box():
    mesh, closed_at_box = surface_from_grid(sphere_field(40, 1.2))
    assert closed_at_box and mesh.is_watertight and mesh.volume > 0
    assert 1.0 <= np.abs(mesh.vertices).max() <= 1 + 2 / 39  # the cap lies within one cell outside the box


def test_specks_are_dropped_but_real_pieces_kept():
    body = sphere_field(65, 0.5, centre=(-0.3, 0, 0))
    speck = sphere_field(65, 0.03, centre=(0.8, 0.8, 0.8))  # 0.4% of the area
    twin = sphere_field(65, 0.3, centre=(0.6, 0, 0))
    mesh, _ = surface_from_grid(np.minimum(body, speck))
    assert len(mesh.split(only_watertight=False)) == 1 and mesh.is_watertight
    np.testing.assert_allclose(mesh.vertices.mean(0), [-0.3, 0, 0], atol=0.01)
    assert len(surface_from_grid(np.minimum(body, speck), min_piece_fraction=0)[0].split(only_watertight=False)) == 2
    assert len(surface_from_grid(np.minimum(body, twin))[0].split(only_watertight=False)) == 2


@pytest.mark.parametrize("sign, side", [(1, "positive"), (-1, "negative")])
def test_no_zero_crossing_says_no_surface(sign, side):
    with pytest.raises(InputError, match=f"no surface found: the field is {side}"):
        surface_from_grid(sign * (np.abs(sphere_field(16, 0.5)) + 0.1))


@pytest.mark.parametrize("suffix", MESH_SUFFIXES)
def test_export_is_watertight_in_every_format(tmp_path, suffix):
    mesh, _ = surface_from_grid(sphere_field(33, 0.6))
    path = tmp_path / "nested" / f"shape{suffix}"
    write_mesh(mesh, path)
    back = trimesh.load(path, force="mesh")
    assert back.is_watertight and back.volume == pytest.approx(mesh.volume, rel=1e-4)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary files left


def test_unknown_output_suffix(tmp_path):
    mesh, _ = surface_from_grid(sphere_field(16, 0.6))
    with pytest.raises(InputError, match="unsupported output extension"):
        write_mesh(mesh, tmp_path / "shape.xyz")


def test_preview_png(tmp_path):
    mesh, _ = surface_from_grid(sphere_field(24, 0.6))
    points = np.random.default_rng(0).uniform(-1, 1, (50, 3))
    render_preview([("samples", (points, np.linalg.norm(points, axis=1) - 0.6)), ("mesh", mesh)], tmp_path / "p.png")
    with Image.open(tmp_path / "p.png") as image:
        assert image.format == "PNG" and image.width > image.height


# --- metrics ----------------------------------------------------------------------------------------------
def test_volumetric_iou():
    a = np.array([1, 1, 0, 0], bool)
    assert volumetric_iou(a, a) == 1 and volumetric_iou(a, ~a) == 0
    assert volumetric_iou(a, np.array([1, 0, 1, 0], bool)) == pytest.approx(1 / 3)


def test_chamfer_and_normal_consistency():
    from spatialgen.io.mesh import sample_surface

    sphere = trimesh.creation.icosphere(subdivisions=5)
    rng = np.random.default_rng(0)
    a = sample_surface(np.asarray(sphere.vertices), np.asarray(sphere.faces), 20000, rng)
    b = sample_surface(np.asarray(sphere.vertices) * 1.1, np.asarray(sphere.faces), 20000, rng)
    same = surface_agreement(*a, *a)
    assert same["chamfer_l1"] == 0 and same["normal_consistency"] == pytest.approx(1)
    apart = surface_agreement(*b, *a, scale=0.5)  # radii 1.1 vs 1: 0.1 apart, reported at half scale
    assert apart["chamfer_l1"] == pytest.approx(0.05, rel=0.1) and apart["normal_consistency"] > 0.98
    empty = surface_agreement(None, None, *a)
    assert empty["chamfer_l1"] == EMPTY_SHAPE_CHAMFER and empty["normal_consistency"] == 0


# --- a tiny trained model, end to end ---------------------------------------------------------------------
def tiny_sdf_config_dict(**train) -> dict:
    base_train = {
        "steps": 300, "batch_size": 8, "learning_rate": 3e-3, "min_learning_rate": 3e-4, "warmup_steps": 10,
        "min_context": 16, "max_context": 64, "queries": 128, "seed": 0, "device": "cpu", "checkpoint_every": 10**6,
        "log_every": 10, "threads": 1,
    }  # fmt: skip
    base_train.update(train)
    adapter = {"name": "sdf", "dataset": "primitives", "primitives": 1, "pool_near_surface": 4000, "pool_uniform": 16000,
               "rotate": False, "scale_range": [1.0, 1.0]}  # fmt: skip
    return {"adapter": adapter, "model": {**TINY_MODEL, "fourier_scale": 1.0}, "train": base_train}  # smoother: learns in 300 steps


@pytest.fixture(scope="module")
def box_checkpoint(tmp_path_factory) -> Path:
    """A tiny model that has learnt one procedural shape (a box), trained with the real trainer."""
    from spatialgen.train import train

    return train(config_from_dict(tiny_sdf_config_dict()), tmp_path_factory.mktemp("sdf-run"))


@pytest.fixture(scope="module")
def box_in_user_units(tmp_path_factory, box_checkpoint):
    """The training box, in other units (x10, moved) and written as an OBJ."""
    from spatialgen.data.meshes import load_mesh_dataset

    shape = load_mesh_dataset("primitives", "train", primitives=1)[0]
    mesh = trimesh.Trimesh(shape.vertices * 10 + np.array([100.0, -50.0, 7.0]), shape.faces)
    path = tmp_path_factory.mktemp("inputs") / "box.obj"
    mesh.export(path)
    return path, mesh


def assert_matches(mesh: trimesh.Trimesh, truth: trimesh.Trimesh) -> None:
    """Closed, in the input's units, and roughly the input shape (the tiny model is rough)."""
    assert mesh.is_watertight
    size = np.ptp(truth.vertices, axis=0).max()
    np.testing.assert_allclose(mesh.center_mass, truth.center_mass, atol=0.15 * size)
    assert 0.4 < mesh.volume / truth.volume < 2.0, (mesh.volume, truth.volume)


@pytest.mark.parametrize("suffix", MESH_SUFFIXES)
def test_complete_shape_from_a_mesh_in_every_format(tmp_path, box_checkpoint, box_in_user_units, suffix):
    source, truth = box_in_user_units
    out = tmp_path / f"completion{suffix}"
    result = invoke("complete-shape", source, "--out", out, "--checkpoint", box_checkpoint, "--resolution", 40, "--num-samples", 256)
    assert result.exit_code == 0, result.stderr
    assert_matches(trimesh.load(out, force="mesh"), truth)


def test_complete_shape_from_samples_files_with_preview(tmp_path, box_checkpoint, box_in_user_units):
    _, truth = box_in_user_units
    from spatialgen.io.mesh import sample_surface

    rng = np.random.default_rng(3)
    on_surface, _ = sample_surface(np.asarray(truth.vertices), np.asarray(truth.faces), 300, rng)
    points = on_surface + rng.normal(scale=0.1, size=on_surface.shape)  # near the surface, in the input's units
    sdf = signed_distance(np.asarray(truth.vertices), np.asarray(truth.faces), points)
    np.savez(tmp_path / "samples.npz", points=points, sdf=sdf)
    np.savetxt(tmp_path / "samples.csv", np.c_[points, sdf], delimiter=",", header="x,y,z,sdf", comments="")
    np.savetxt(tmp_path / "bare.csv", np.c_[points, sdf], delimiter=",")
    for name in ("samples.npz", "samples.csv", "bare.csv"):
        out, preview = tmp_path / f"{name}.ply", tmp_path / f"{name}.png"
        result = invoke("complete-shape", tmp_path / name, "--out", out, "--checkpoint", box_checkpoint,
                        "--resolution", 40, "--preview", preview)  # fmt: skip
        assert result.exit_code == 0, result.stderr
        assert_matches(trimesh.load(out, force="mesh"), truth)
        with Image.open(preview) as image:
            assert image.format == "PNG"


def test_samples_write_distinct_completions(tmp_path, box_checkpoint, box_in_user_units):
    source, _ = box_in_user_units
    out = tmp_path / "shape.stl"
    result = invoke("complete-shape", source, "--out", out, "--checkpoint", box_checkpoint, "--resolution", 24,
                    "--samples", 2, "--autoregressive", 64, "--temperature", 1.0)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert not out.exists()
    first, second = (trimesh.load(tmp_path / f"shape_{i}.stl", force="mesh") for i in (0, 1))
    assert first.is_watertight and second.is_watertight
    assert len(first.vertices) != len(second.vertices) or not np.allclose(first.vertices, second.vertices)


def test_coarse_to_fine_decoding_matches_exact_decoding(box_checkpoint):
    import spatialgen

    model = spatialgen.load(box_checkpoint, device="cpu")
    rng = np.random.default_rng(0)
    decoder = FieldDecoder(model, rng.uniform(-1, 1, (64, 3)), rng.uniform(-0.5, 0.5, 64))
    R = 65
    fast = decode_grid(decoder, R, exact_below=12)  # 65 <- 33 <- 17 <- 14 (exact; 9 would be too coarse for t = 0.5)
    exact = decoder(positions_of(torch.arange(R**3), R)).reshape(R, R, R).numpy()
    near = np.abs(exact) < 0.05
    assert near.any() and (exact < 0).any() and (exact > 0).any()
    np.testing.assert_allclose(fast[near], exact[near], atol=1e-5)  # exact wherever a surface can be
    assert (np.sign(fast) == np.sign(exact)).mean() > 0.999
    chunked = decoder(positions_of(torch.arange(5000), R), chunk=7)
    torch.testing.assert_close(chunked, torch.as_tensor(exact.reshape(-1)[:5000]), atol=1e-5, rtol=0)


def test_a_band_as_wide_as_the_truncation_is_not_refined_but_decoded_from_a_finer_coarse_grid(box_checkpoint):
    import spatialgen
    from spatialgen.jobs.shape import coarse_resolution

    # the shipped model (t = 0.1): 64^3 from 32^3 would refine every point (the band, 0.17, is wider than t)
    assert coarse_resolution(64, exact_below=48, cap=0.1) is None
    assert coarse_resolution(96, exact_below=48, cap=0.1) == 63  # not 48: its band (0.11) holds every point
    assert coarse_resolution(128, exact_below=48, cap=0.1) == 64 and coarse_resolution(256, exact_below=48, cap=0.1) == 128
    model = spatialgen.load(box_checkpoint, device="cpu")  # t = 0.5
    rng = np.random.default_rng(1)
    decoder = CountingDecoder(FieldDecoder(model, rng.uniform(-1, 1, (64, 3)), rng.uniform(-0.5, 0.5, 64)))
    R = 25
    assert coarse_resolution(R, exact_below=12, cap=decoder.cap) == 14  # 13 is too coarse for t = 0.5
    fast = decode_grid(decoder, R, exact_below=12)
    assert decoder.queries < R**3  # cheaper than decoding every point
    exact = decoder(positions_of(torch.arange(R**3), R)).reshape(R, R, R).numpy()
    near = np.abs(exact) < 0.1
    assert near.any()
    np.testing.assert_allclose(fast[near], exact[near], atol=1e-5)


def test_coarse_to_fine_progress_names_the_requested_resolution(box_checkpoint, monkeypatch):
    import spatialgen
    import spatialgen.jobs.shape as shape

    labels = []

    def recording_track(items, *, description, **kwargs):
        labels.append(description)
        return items

    monkeypatch.setattr(shape, "track", recording_track)
    model = spatialgen.load(box_checkpoint, device="cpu")
    rng = np.random.default_rng(0)
    decoder = FieldDecoder(model, rng.uniform(-1, 1, (16, 3)), rng.uniform(-0.5, 0.5, 16))
    decode_grid(decoder, 33, progress=True, exact_below=12)  # 33 <- 17 <- 14 (exact)
    assert labels == ["decoding 33^3 (pass 1 of 2)", "decoding 33^3 (pass 2 of 2)"]


def test_eval_reports_every_method_and_context(box_checkpoint, tmp_path):
    import spatialgen
    from spatialgen.jobs.shape import METHODS, evaluate_sdf_model

    model = spatialgen.load(box_checkpoint, device="cpu")
    report = evaluate_sdf_model(model, contexts=(32, 128), limit=1, resolution=24, points=3000, progress=False)
    assert [(r["context"], r["method"]) for r in report["rows"]] == [(k, m) for k in (32, 128) for m in METHODS]
    for row in report["rows"]:
        assert 0 <= row["iou"] <= 1 and 0 <= row["chamfer_l1"] <= EMPTY_SHAPE_CHAMFER and 0 <= row["normal_consistency"] <= 1
    rbf = {r["context"]: r for r in report["rows"] if r["method"].startswith("rbf")}
    assert rbf[128]["iou"] > 0.5  # a smooth primitive: thin-plate interpolation of 128 samples finds it
    out = tmp_path / "eval.json"
    result = invoke("eval", box_checkpoint, "--context", 32, "--limit", 1, "--json", out)
    assert result.exit_code == 0, result.stderr
    assert "nearest" in result.stdout and out.is_file()  # the table is a result: stdout (progress and notes go to stderr)


def test_the_mean_field_blends_the_network_with_a_thin_plate_spline(box_checkpoint):
    import spatialgen
    from spatialgen.baselines import rbf_interpolation

    model = spatialgen.load(box_checkpoint, device="cpu")
    rng = np.random.default_rng(0)
    points, sdf = rng.uniform(-1, 1, (64, 3)), rng.uniform(-0.7, 0.7, 64)
    queries = torch.as_tensor(rng.uniform(-1, 1, (500, 3)))
    network = FieldDecoder(model, points, sdf)(queries)
    spline = rbf_interpolation(points, sdf[:, None], queries.numpy(), fill=np.ones(1))[:, 0]
    cap = float(model.adapter.config.truncation)
    assert np.abs(spline).max() > cap  # the spline is clipped to the network's range below
    clipped = torch.as_tensor(np.clip(spline, -cap, cap)).float()
    torch.testing.assert_close(FieldDecoder(model, points, sdf, thin_plate_weight=1.0)(queries), clipped, atol=1e-5, rtol=0)
    blended = FieldDecoder(model, points, sdf, thin_plate_weight=0.4)(queries, chunk=37)
    torch.testing.assert_close(blended, 0.6 * network + 0.4 * clipped, atol=1e-5, rtol=0)
    few = FieldDecoder(model, points[:4], sdf[:4], thin_plate_weight=0.4)  # 4 samples cannot hold a 3-D spline's linear term
    assert few.weight == 0 and torch.equal(few(queries), FieldDecoder(model, points[:4], sdf[:4])(queries))


@pytest.mark.parametrize("layout", ["slanted plane", "line", "near pairs"])
def test_no_thin_plate_where_the_samples_cannot_hold_a_stable_one(tmp_path, box_checkpoint, layout):
    rng = np.random.default_rng(1)
    a, b = rng.uniform(-1, 1, (2, 150))
    if layout == "slanted plane":  # a sphere's distances sampled on z = 0.3x - 0.7y + 0.1: the spline is free across the plane
        points = np.c_[a, b, 0.3 * a - 0.7 * b + 0.1]
    elif layout == "line":
        points = np.c_[a, 2 * a, 3 * a] + 0.2
    else:  # pairs 1e-7 apart with distances 0.3 apart: the spline swings far beyond any distance
        first = rng.uniform(-1, 1, (75, 3))
        points = np.r_[first, first + 1e-7]
    sdf = np.linalg.norm(points, axis=1) - 0.5
    if layout == "near pairs":
        sdf[75:] += 0.3
    from spatialgen.jobs.shape import _thin_plate

    assert _thin_plate(points / np.abs(points).max() * 0.9, sdf) is None
    np.savetxt(tmp_path / "s.csv", np.c_[points, sdf], delimiter=",")
    result = invoke("complete-shape", tmp_path / "s.csv", "--out", tmp_path / "o.obj", "--checkpoint", box_checkpoint,
                    "--resolution", 16, "--bounds", -2, -2, -2, 2, 2, 2, "--thin-plate", 0.5)  # fmt: skip
    assert "note: no stable thin-plate spline fits these 150 sample(s)" in result.stdout, (result.stdout, result.stderr)


def test_float32_formats_warn_far_from_the_origin(tmp_path):
    from spatialgen.jobs.shape import _float32_note

    mesh = trimesh.creation.icosphere(subdivisions=1)
    assert _float32_note(mesh, tmp_path / "a.stl") is None
    mesh.vertices += [5e6, 1e7, 0]
    assert "float32" in _float32_note(mesh, tmp_path / "a.glb") and _float32_note(mesh, tmp_path / "a.obj") is None


def test_few_samples_get_the_network_alone(tmp_path, box_checkpoint):
    import dataclasses

    import spatialgen
    from spatialgen.adapters import get_adapter
    from spatialgen.jobs.shape import complete_shape

    model = spatialgen.load(box_checkpoint, device="cpu")
    model.adapter = get_adapter(dataclasses.replace(model.adapter.config, thin_plate_weight=0.5, thin_plate_min_samples=32))
    rng = np.random.default_rng(0)
    points = rng.uniform(-1, 1, (40, 3))
    sdf = np.linalg.norm(points, axis=1) - 0.6
    for count, said in ((20, True), (40, False)):
        np.savetxt(tmp_path / "s.csv", np.c_[points[:count], sdf[:count]], delimiter=",")
        result = complete_shape(model, tmp_path / "s.csv", resolution=16, progress=False)
        assert any(note.startswith("fewer than 32 samples") for note in result.notes) == said, result.notes


def test_a_real_shape_keeps_its_thin_plate():
    from spatialgen.jobs.shape import _thin_plate

    rng = np.random.default_rng(0)
    points = rng.uniform(-1, 1, (300, 3))
    assert _thin_plate(points, np.linalg.norm(points, axis=1) - 0.5) is not None


def test_text_meshes_keep_the_digits_of_tiny_shapes(tmp_path):
    from spatialgen.io.mesh import write_mesh

    mesh = trimesh.creation.icosphere(subdivisions=1)
    mesh.vertices *= 1e-12
    for suffix in ("obj", "off"):
        write_mesh(mesh, tmp_path / f"tiny.{suffix}")
        text = (tmp_path / f"tiny.{suffix}").read_text()
        rows = [line.split()[-3:] for line in text.splitlines() if line.startswith("v ")] if suffix == "obj" else [
            line.split() for line in text.splitlines()[2:2 + len(mesh.vertices)]]  # fmt: skip
        np.testing.assert_allclose(np.array(rows, float), mesh.vertices, rtol=0, atol=1e-19)


def test_eval_reports_the_network_alone_beside_a_blended_mean(box_checkpoint):
    import dataclasses

    import spatialgen
    from spatialgen.adapters import get_adapter
    from spatialgen.jobs.shape import METHODS, NETWORK_ALONE, evaluate_sdf_model

    model = spatialgen.load(box_checkpoint, device="cpu")
    model.adapter = get_adapter(dataclasses.replace(model.adapter.config, thin_plate_weight=0.5))
    report = evaluate_sdf_model(model, contexts=(64,), limit=1, resolution=24, points=3000, progress=False)
    assert [r["method"] for r in report["rows"]] == [METHODS[0], NETWORK_ALONE, *METHODS[1:]]
    assert report["thin_plate_weight"] == 0.5
    blended, alone = (next(r for r in report["per_shape"] if r["method"] == m) for m in (METHODS[0], NETWORK_ALONE))
    assert blended["iou"] != alone["iou"]  # the blend is really another field


def test_thin_plate_option(tmp_path, box_checkpoint, box_in_user_units):
    source, truth = box_in_user_units
    out = tmp_path / "o.ply"
    result = invoke("complete-shape", source, "--out", out, "--checkpoint", box_checkpoint, "--resolution", 32, "--thin-plate", 0.5)
    assert result.exit_code == 0, result.stderr
    assert_matches(trimesh.load(out, force="mesh"), truth)
    result = invoke("complete-shape", source, "--out", tmp_path / "s.ply", "--checkpoint", box_checkpoint, "--resolution", 16,
                    "--samples", 1, "--autoregressive", 16, "--thin-plate", 0.5)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "note: --thin-plate applies to the mean completion only" in result.stdout


# --- bad input: one line on stderr, exit code 2, nothing written -----------------------------------------
def constant_checkpoint(path: Path) -> Path:
    """A tiny model whose prediction is the top bin everywhere: far outside, whatever the input."""
    from spatialgen.checkpoint import save_checkpoint
    from tests.conftest import make_model

    config = config_from_dict(tiny_sdf_config_dict())
    model = make_model(config)
    head, bins = model.network.head, config.model.bins
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.bias[(bins - 1) * 3] = 30.0  # the last bin's logit; layout (bins, 1 + value dims + 1)
    save_checkpoint(path, model.network, config, step=0)
    return path


def test_a_field_without_zero_crossing_says_no_surface_found(tmp_path, box_in_user_units):
    checkpoint = constant_checkpoint(tmp_path / "constant.safetensors")
    source = tmp_path / "outside.csv"
    rng = np.random.default_rng(0)
    source.write_text("x,y,z,sdf\n" + "".join(f"{x},{y},{z},{rng.uniform(0.1, 1)}\n" for x, y, z in rng.uniform(size=(50, 3))))
    out = tmp_path / "o.obj"
    result = invoke("complete-shape", source, "--out", out, "--checkpoint", checkpoint, "--resolution", 16)
    assert_user_error(result, r"no surface found: .* positive .*all 50 samples are outside", not_written=(out,))


def write_text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "name, content, pattern",
    [
        ("nan.csv", "x,y,z,sdf\n0,0,0,nan\n1,1,1,0.5\n", "NaN or infinite"),
        ("columns.csv", "0,0,0\n1,1,1\n", "expected 4 columns"),
        ("empty.csv", "", "no samples"),
        ("one.csv", "x,y,z,sdf\n1,2,3,0.5\n", "all at one point"),
        ("flat.csv", "0,0,0,1\n1,0,0,-1\n0,1,0,1\n1,1,0,-1\n", "span no volume"),
        ("garbage.obj", "this is not a mesh\n", "cannot read|holds no triangles"),
        ("empty.stl", "", "cannot read|holds no triangles"),
    ],
)
def test_bad_inputs(tmp_path, box_checkpoint, name, content, pattern):
    source = write_text(tmp_path / name, content)
    out = tmp_path / "o.ply"
    result = invoke("complete-shape", source, "--out", out, "--checkpoint", box_checkpoint, "--resolution", 16)
    assert_user_error(result, pattern, not_written=(out,))


def test_npz_without_the_sdf_array(tmp_path, box_checkpoint):
    np.savez(tmp_path / "bad.npz", points=np.zeros((3, 3)), values=np.zeros(3))
    out = tmp_path / "o.ply"
    result = invoke("complete-shape", tmp_path / "bad.npz", "--out", out, "--checkpoint", box_checkpoint)
    assert_user_error(result, "missing array.* sdf", not_written=(out,))


def test_an_open_mesh_is_refused_with_a_hint(tmp_path, box_checkpoint):
    mesh = trimesh.creation.icosphere(subdivisions=2)
    mesh.update_faces(np.arange(len(mesh.faces)) != 0)  # punch a hole
    source = tmp_path / "open.ply"
    mesh.export(source)
    out = tmp_path / "o.ply"
    result = invoke("complete-shape", source, "--out", out, "--checkpoint", box_checkpoint)
    assert_user_error(result, "not a closed mesh .* samples file", not_written=(out,))


def test_missing_input_and_bounds_that_cut_the_shape(tmp_path, box_checkpoint, box_in_user_units):
    source, truth = box_in_user_units
    out = tmp_path / "o.ply"
    assert_user_error(invoke("complete-shape", tmp_path / "none.obj", "--out", out, "--checkpoint", box_checkpoint), "not found", not_written=(out,))
    low, high = truth.bounds
    middle = (low + high) / 2
    tight = [*middle - 0.05, *middle + 0.05]
    result = invoke("complete-shape", source, "--out", out, "--checkpoint", box_checkpoint, "--bounds", *tight)
    assert_user_error(result, "outside the region --bounds gives", not_written=(out,))


def test_bounds_rescue_flat_samples(tmp_path, box_checkpoint):
    source = write_text(tmp_path / "flat.csv", "".join(f"{x},{y},0,{math.hypot(x, y) - 0.5}\n" for x in (-1, 0, 1) for y in (-1, 0, 1)))
    out = tmp_path / "o.ply"
    result = invoke("complete-shape", source, "--out", out, "--checkpoint", box_checkpoint, "--resolution", 16,
                    "--bounds", -1, -1, -1, 1, 1, 1)  # fmt: skip
    assert result.exit_code in (0, 2), result.stderr  # the tiny box model may or may not find a surface here
    assert "span no volume" not in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "options, pattern",
    [
        (["--resolution", 1024], "--resolution must be between"),
        (["--resolution", 2], "--resolution must be between"),
        (["--num-samples", 0], "--num-samples must be between 1"),
        (["--num-samples", MAX_CONTEXT + 1], "--num-samples must be between 1"),
        (["--samples", -1], "--samples must be between 0 and 64"),
        (["--temperature", -1], "--temperature must be 0 or more"),
        (["--thin-plate", 1.5], "--thin-plate must be between 0 and 1"),
        (["--thin-plate", "nan"], "--thin-plate must be between 0 and 1"),
        (["--bounds", -1e300, -1e300, -1e300, 1e300, 1e300, 1e300], "--bounds spans more than"),
    ],
)
def test_bad_options(tmp_path, box_checkpoint, box_in_user_units, options, pattern):
    source, _ = box_in_user_units
    out = tmp_path / "o.ply"
    assert_user_error(invoke("complete-shape", source, "--out", out, "--checkpoint", box_checkpoint, *options), pattern, not_written=(out,))


def test_too_many_samples_in_a_file(tmp_path, box_checkpoint):
    rows = np.random.default_rng(0).uniform(size=(MAX_CONTEXT + 1, 4))
    np.savetxt(tmp_path / "many.csv", rows, delimiter=",")
    out = tmp_path / "o.ply"
    result = invoke("complete-shape", tmp_path / "many.csv", "--out", out, "--checkpoint", box_checkpoint)
    assert_user_error(result, "more than the .* subsample", not_written=(out,))


def test_output_problems(tmp_path, box_checkpoint, box_in_user_units):
    source, _ = box_in_user_units
    out = tmp_path / "o.xyz"
    assert_user_error(invoke("complete-shape", source, "--out", out, "--checkpoint", box_checkpoint), "unsupported output extension", not_written=(out,))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = invoke("complete-shape", source, "--out", blocker / "o.ply", "--checkpoint", box_checkpoint, "--resolution", 16)
    assert_user_error(result, "not a directory")


def test_wrong_or_missing_checkpoint(tmp_path, box_in_user_units):
    source, _ = box_in_user_units
    out = tmp_path / "o.ply"
    result = invoke("complete-shape", source, "--out", out, "--checkpoint", tmp_path / "none.safetensors")
    assert_user_error(result, "checkpoint not found", not_written=(out,))
    from spatialgen.jobs.common import CHECKPOINT_DIR

    image = CHECKPOINT_DIR / "image-mnist.safetensors"
    result = invoke("complete-shape", source, "--out", out, "--checkpoint", image)
    assert_user_error(result, "is a model for 'image' data, not for 'sdf' data", not_written=(out,))


def test_help_lists_complete_shape():
    result = invoke("--help")
    assert result.exit_code == 0 and "complete-shape" in result.stdout
