"""The image commands end to end, on the shipped checkpoint and committed real test digits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from spatialgen.cli import app
from spatialgen.errors import InputError
from spatialgen.jobs.common import EXAMPLES_DIR, shipped_checkpoint
from tests.conftest import assert_user_error

DIGIT = EXAMPLES_DIR / "mnist-test-3.png"
PIXELS = EXAMPLES_DIR / "mnist-test-3-pixels.csv"
FAST = ["--samples", "1", "--step", "64"]


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])



def test_help_lists_every_command():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("train", "complete-image", "eval", "data"):
        assert command in result.stdout


def test_complete_image_from_a_png_writes_a_panel(tmp_path):
    out = tmp_path / "panel.png"
    result = invoke("complete-image", DIGIT, "--out", out, "--keep", 64, *FAST)
    assert result.exit_code == 0, result.stderr
    with Image.open(out) as panel:
        assert panel.format == "PNG" and panel.width > 3 * panel.height  # observed, mean, 1 sample, std, truth


def test_complete_image_from_scattered_pixels_at_another_size(tmp_path):
    out = tmp_path / "nested" / "dir" / "panel.png"  # missing directories are created
    result = invoke("complete-image", PIXELS, "--out", out, "--size", 56, 56, *FAST)
    assert result.exit_code == 0, result.stderr
    assert out.is_file()


def test_zero_kept_pixels_gives_unconditional_samples(tmp_path):
    out = tmp_path / "uncond.png"
    result = invoke("complete-image", DIGIT, "--out", out, "--keep", 0, *FAST)
    assert result.exit_code == 0, result.stderr
    assert out.is_file()


def test_the_mean_completion_beats_interpolation_on_a_real_test_digit():
    """64 kept pixels of a held-out digit: the model's mean is closer to the truth than RBF's."""
    import spatialgen
    from spatialgen.baselines import rbf_interpolation
    from spatialgen.metrics import psnr

    model = spatialgen.load(shipped_checkpoint("image-mnist"), device="cpu")
    adapter = model.adapter
    scores = {"model": [], "rbf": []}
    for digit in (2, 3, 7):
        truth = adapter.read_image(EXAMPLES_DIR / f"mnist-test-{digit}.png")  # (1, 28, 28)
        positions, values = adapter.keep_random_pixels(truth, 64, torch.Generator().manual_seed(digit))
        grid = adapter.grid_positions()
        mean = spatialgen.mean_field(model, positions, values, grid).mean.reshape(28, 28).numpy()
        rbf = rbf_interpolation(positions.numpy(), values.numpy(), grid.numpy(), fill=np.zeros(1)).reshape(28, 28)
        scores["model"].append(psnr(mean, truth[0].numpy()))
        scores["rbf"].append(psnr(np.clip(rbf, 0, 1), truth[0].numpy()))
    assert np.mean(scores["model"]) > np.mean(scores["rbf"]) + 1.0, scores


# --- bad input: one line on stderr, exit code 2, nothing written -------------------------------------
def test_missing_input(tmp_path):
    out = tmp_path / "o.png"
    assert_user_error(invoke("complete-image", tmp_path / "nope.png", "--out", out), "not found", not_written=out)


def test_input_that_is_not_an_image(tmp_path):
    fake = tmp_path / "fake.png"
    fake.write_text("this is not a PNG")
    out = tmp_path / "o.png"
    assert_user_error(invoke("complete-image", fake, "--out", out), "cannot read .* as an image", not_written=out)


@pytest.mark.parametrize("keep, pattern", [(785, "more than the 784 pixels"), (-1, "0 or more")])
def test_bad_keep(tmp_path, keep, pattern):
    out = tmp_path / "o.png"
    assert_user_error(invoke("complete-image", DIGIT, "--out", out, "--keep", keep), pattern, not_written=out)


@pytest.mark.parametrize(
    "text, pattern",
    [
        ("x,y,value\n1,2,nan\n", "NaN or infinite"),
        ("x,y,value\n1,2,inf\n", "NaN or infinite"),
        ("1,2\n3,4\n", "expected 3 columns"),
        ("x,y,value\n1,2,0.5\n3,4\n", "different numbers of columns"),
        ("x,y,value\n1,2,abc\n", "not numeric"),
        ("", "no samples"),
        ("x,y,value\n40,2,0.5\n", "outside the model's 28x28 image"),
        ("x,y,value\n1,2,300\n", r"\[0, 1\] or 0-255"),
    ],
)
def test_bad_pixel_files(tmp_path, text, pattern):
    source = tmp_path / "pixels.csv"
    source.write_text(text)
    out = tmp_path / "o.png"
    assert_user_error(invoke("complete-image", source, "--out", out), pattern, not_written=out)


def test_pixel_values_given_as_0_to_255_are_detected_and_said(tmp_path):
    source = tmp_path / "pixels.csv"
    source.write_text("\ufeffx,y,value\n3,4,255\n10,10,0\n12,14,128\n")  # with a UTF-8 BOM
    result = invoke("complete-image", source, "--out", tmp_path / "o.png", *FAST)
    assert result.exit_code == 0, result.stderr
    assert "0-255" in result.stderr + result.stdout


def test_missing_and_corrupt_checkpoints(tmp_path):
    out = tmp_path / "o.png"
    assert_user_error(invoke("complete-image", DIGIT, "--out", out, "--checkpoint", tmp_path / "none.safetensors"), "not found", not_written=out)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(shipped_checkpoint("image-mnist").read_bytes()[:5000])
    assert_user_error(invoke("complete-image", DIGIT, "--out", out, "--checkpoint", corrupt), "not a readable checkpoint", not_written=out)


def test_checkpoint_of_another_domain_is_refused():
    from spatialgen.api import load
    from spatialgen.errors import CheckpointError

    with pytest.raises(CheckpointError, match="is a model for 'image' data, not for 'sdf' data"):
        load(shipped_checkpoint("image-mnist"), expect_adapter="sdf")


def test_output_problems(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_user_error(invoke("complete-image", DIGIT, "--out", blocker / "o.png", *FAST), "not a directory")
    out = tmp_path / "o.xyz"
    assert_user_error(invoke("complete-image", DIGIT, "--out", out), "unsupported output extension", not_written=out)


def test_eval_rejects_bad_context_list(tmp_path):
    assert_user_error(invoke("eval", shipped_checkpoint("image-mnist"), "--context", "16,abc"), "comma-separated integers")
    assert_user_error(invoke("eval", shipped_checkpoint("image-mnist"), "--context", "16,,64"), "empty item")


def test_context_sizes_are_deduplicated_in_order():
    from spatialgen.cli import _parse_ints

    assert _parse_ints("64, 16,64,16", "--context") == (64, 16)


@pytest.mark.parametrize("text", ["+16", "1_6", "\uff11\uff16", "0x10", "9" * 5000])
def test_context_sizes_are_plain_ascii_digits(text):
    from spatialgen.cli import _parse_ints

    with pytest.raises(InputError, match="comma-separated integers"):
        _parse_ints(text, "--context")
    with pytest.raises(InputError, match=">= 0"):
        _parse_ints("16,-1", "--context")
