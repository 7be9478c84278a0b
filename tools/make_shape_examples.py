"""Write the committed shape examples in data/examples/ from CGAL *test* shapes (never trained on).

    python tools/make_shape_examples.py

- ``cow.off``: a closed test mesh, for ``complete-shape`` in its mesh (demo / evaluation) mode.
- ``bull-512.npz`` / ``bull-512.csv``: 512 signed-distance samples of the test bull in a user's
  own units (the mesh scaled to 100 units long, as if measured in millimetres): ``points``
  (512, 3) and ``sdf`` (512,), half near the surface and half uniform in its bounding box.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spatialgen.adapters import get_adapter
from spatialgen.adapters.sdf import SdfConfig
from spatialgen.data.meshes import load_mesh_dataset
from spatialgen.io.mesh import require_trimesh

OUT = Path(__file__).resolve().parents[1] / "data" / "examples"
USER_LENGTH = 100.0  # the samples file's longest bounding-box edge, in the user's units


def main() -> None:
    trimesh = require_trimesh()
    OUT.mkdir(parents=True, exist_ok=True)
    meshes = {m.name: m for m in load_mesh_dataset("cgal", "test")}
    cow = meshes["cow"]
    trimesh.Trimesh(cow.vertices, cow.faces, process=False).export(str(OUT / "cow.off"))

    adapter = get_adapter(SdfConfig())
    bull = meshes["bull"]
    frame = adapter.frame_for(bull.vertices)
    box_points, box_sdf = adapter.draw_samples(frame.to_box(bull.vertices), bull.faces, 512, np.random.default_rng(0))
    user_scale = USER_LENGTH / float(np.ptp(bull.vertices, axis=0).max())  # user units per mesh unit
    points = frame.from_box(box_points) * user_scale
    sdf = box_sdf * frame.scale * user_scale
    np.savez(OUT / "bull-512.npz", points=points.astype(np.float32), sdf=sdf.astype(np.float32))
    with open(OUT / "bull-512.csv", "w") as handle:
        handle.write("x,y,z,sdf\n")
        handle.writelines(f"{x:.4f},{y:.4f},{z:.4f},{d:.4f}\n" for (x, y, z), d in zip(points, sdf))
    inside = int((sdf < 0).sum())
    print(f"wrote cow.off and bull-512.npz/.csv ({inside} of 512 samples inside) to {OUT}")


if __name__ == "__main__":
    main()
