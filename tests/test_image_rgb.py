"""RGB images end to end: k-means bins, training on real photo tiles, completion via the CLI."""

from __future__ import annotations

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from spatialgen.cli import app
from spatialgen.config import config_from_dict
from spatialgen.train import train
from tests.conftest import tiny_config_dict


def test_rgb_model_trains_and_completes_a_photo_at_another_size(tmp_path):
    raw = tiny_config_dict(steps=4, max_context=32, queries=32)
    raw["adapter"] = {"name": "image", "dataset": "photos", "height": 16, "width": 16, "channels": 3}
    checkpoint = train(config_from_dict(raw), tmp_path / "run")

    import spatialgen

    model = spatialgen.load(checkpoint, device="cpu")
    centres = model.network.bin_centres
    assert centres.shape == (raw["model"]["bins"], 3) and len(set(map(tuple, centres.tolist()))) == raw["model"]["bins"]

    photo = np.zeros((40, 30, 3), dtype=np.uint8)
    photo[:, :15] = (200, 30, 30)
    source = tmp_path / "photo.png"
    Image.fromarray(photo).save(source)
    out = tmp_path / "panel.png"
    args = ["complete-image", str(source), "--out", str(out), "--checkpoint", str(checkpoint), "--keep", "40",
            "--samples", "2", "--size", "24", "32", "--step", "16"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stderr
    with Image.open(out) as panel:
        assert panel.mode in ("RGB", "RGBA")
