"""Video jobs: complete a clip from scattered pixels, write it, and evaluate against baselines.

The model is a window of ``frames x height x width`` at the scale of its training pixels. A clip
of any size is covered by windows that overlap by half; each window is completed from the kept
pixels that fall inside it, and the windows are blended with tent weights (highest at a window's
centre), so no seam shows and the density of kept pixels per window is what the model was
trained on. Sampling visits the windows in order, and each window is conditioned on the values
already drawn in the windows before it, so a sampled clip is one coherent draw.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from spatialgen.adapters.video import VideoAdapter
from spatialgen.api import Model
from spatialgen.errors import InputError, shortened
from spatialgen.io.progress import track

PIXEL_FILE_SUFFIXES = (".npz",)
MAX_PIXELS = 64 * 1024 * 1024  # output pixels (T' * H * W); beyond this the clip is refused, not swapped
MAX_CONTEXT_PER_WINDOW = 8192  # encoder attention is quadratic in the kept pixels of one window
MAX_TRILINEAR = 20_000  # kept pixels the trilinear part of the mean is triangulated over: 3-D Delaunay of a dense lattice
                        # grows ~quadratically (16k pixels 7 s, 32k 39 s); that many pixels leave the network little to gain
MIN_HULL_SHARE = 0.5  # blend only where the kept pixels' convex hull covers at least this share of the clip


@dataclass
class VideoContext:
    positions: torch.Tensor  # (K, 3) as (t, y, x) in the clip's frames and pixels
    colours: torch.Tensor  # (K, 3) in [0, 1]
    shape: tuple[int, int, int]  # (T, H, W) of the clip
    fps: float
    truth: np.ndarray | None = None  # uint8 (T, H, W, 3) when INPUT is a video
    notes: list[str] = field(default_factory=list)


@dataclass
class VideoCompletion:
    context: VideoContext
    time_scale: int
    mean: np.ndarray  # (T', H, W, 3) float in [0, 1]
    std: np.ndarray  # (T', H, W, 3)
    samples: list[np.ndarray] = field(default_factory=list)  # each (T', H, W, 3)

    @property
    def fps(self) -> float:
        return self.context.fps * self.time_scale


# --- inputs ----------------------------------------------------------------------------------------
def probe_size(path: str | Path) -> tuple[int, int]:
    """(H, W) of a video file's frames, without decoding it."""
    from spatialgen.io.atomic import require_file
    from spatialgen.io.video import require_av

    path = require_file(path)
    av = require_av()
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{path} has no video stream (audio only or not a video)")
            stream = container.streams.video[0]
            return int(stream.codec_context.height), int(stream.codec_context.width)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"cannot open {path} as a video ({type(exc).__name__}: {shortened(str(exc), 80)})") from None


def read_video_context(
    adapter: VideoAdapter, path: str | Path, *, keep: float | None = None, frames: int | None = None,
    size: tuple[int, int] | None = None, start: float | None = None, stride: int | None = None, seed: int = 0,
) -> VideoContext:  # fmt: skip
    """A video file (keep a random ``keep`` fraction of its pixels, default 5%) or an ``.npz`` of
    scattered pixels.

    A video is decoded from ``start`` seconds, ``frames`` frames (default 16) every ``stride``-th,
    at ``size`` (default: the model's training scale, ``source_height`` rows, width by the aspect
    ratio). A pixels file brings its own shape: those options are ignored with a note.
    """
    from spatialgen.io.video import read_video

    path = Path(path)
    if path.suffix.lower() in PIXEL_FILE_SUFFIXES:
        context = _read_pixel_file(path)
        given = {"--keep": keep, "--frames": frames, "--size": size, "--start": start, "--stride": stride}
        ignored = [flag for flag, value in given.items() if value is not None]
        if ignored:
            verb = "applies" if len(ignored) == 1 else "apply"
            context.notes.append(f"{', '.join(ignored)} {verb} to video files only: {path.name} gives its own pixels and shape")
        return context
    keep = 0.05 if keep is None else keep
    frames = 16 if frames is None else frames
    start = 0.0 if start is None else start
    stride = 1 if stride is None else stride
    if not 0 < keep <= 1:
        raise InputError(f"--keep must be a fraction in (0, 1], got {keep}")
    if size is None:
        height, width = probe_size(path)
        size = adapter.source_size(height, width)
    clip = read_video(path, start=start, frames=frames, stride=stride, size=size)
    _check_pixels(len(clip.frames), *size)
    positions, colours = adapter.keep_random_pixels(clip.frames, keep, torch.Generator().manual_seed(seed))
    return VideoContext(positions, colours, tuple(clip.frames.shape[:3]), clip.fps, truth=clip.frames)


def _read_pixel_file(path: Path) -> VideoContext:
    from spatialgen.io.samples import read_npz_arrays

    arrays = read_npz_arrays(path, ("points", "colors", "shape"))
    points, colours, shape = arrays["points"], arrays["colors"], arrays["shape"]
    if points.ndim != 2 or points.shape[1] != 3 or colours.shape != points.shape:
        raise InputError(f"{path}: 'points' and 'colors' must both be (K, 3), got {points.shape} and {colours.shape}")
    if shape.shape != (3,) or not np.isfinite(shape).all() or (shape < 1).any() or not np.allclose(shape, np.round(shape)):
        raise InputError(f"{path}: 'shape' must be three positive integers (T, H, W), got {shape.tolist()}")
    if len(points) == 0:
        raise InputError(f"{path}: no pixels in the file")
    for name, array in (("points", points), ("colors", colours)):
        if not np.issubdtype(array.dtype, np.number) or not np.isfinite(array.astype(np.float64)).all():
            raise InputError(f"{path}: '{name}' contains NaN, infinite or non-numeric values")
    T, H, W = (int(v) for v in np.round(shape))
    _check_pixels(T, H, W, pixel_file=True)
    limits = np.array([T - 1, H - 1, W - 1], np.float64)
    outside = ((points < 0) | (points > limits)).any(axis=1)
    if outside.any():
        raise InputError(f"{path}: {int(outside.sum())} point(s) lie outside shape {T}x{H}x{W} (t 0..{T - 1}, y 0..{H - 1}, x 0..{W - 1})")
    notes = []
    if colours.dtype == np.uint8:
        colours = colours / 255.0
    elif colours.min() < 0 or colours.max() > 1:
        if colours.min() < 0 or colours.max() > 255 or not np.allclose(colours, np.round(colours)):
            raise InputError(f"{path}: colors must be uint8 or floats in [0, 1], found {colours.min():g}..{colours.max():g}")
        colours = colours / 255.0
        notes.append("colors above 1 found: read them as 0-255 integers")
    return VideoContext(torch.as_tensor(points).float(), torch.as_tensor(colours).float(), (T, H, W), 25.0, notes=notes)


def _check_pixels(T: int, H: int, W: int, time_scale: int = 1, *, pixel_file: bool = False) -> None:
    count = ((T - 1) * time_scale + 1) * H * W
    if count > MAX_PIXELS:
        hints = ["a smaller --time-scale"] if time_scale > 1 else []
        hints.append("a smaller shape in the pixels file" if pixel_file else "a smaller --size or fewer --frames")
        hint = " or ".join(hints)
        raise InputError(f"a {T}x{H}x{W} clip (x{time_scale} in time) is {count:,} pixels, more than {MAX_PIXELS:,}: use {hint}")


# --- windows ---------------------------------------------------------------------------------------
def window_starts(length: int, window: int) -> list[int]:
    """Starts of windows of ``window`` that cover ``length`` and overlap by about half."""
    if length <= window:
        return [0]
    stride = max(1, window // 2)
    starts = list(range(0, length - window + 1, stride))
    return starts if starts[-1] == length - window else [*starts, length - window]


def tent(coordinates: torch.Tensor, start: float, window: int, single: bool) -> torch.Tensor:
    """Blending weight along one axis: 1 at the window's centre, 0.05 at its edges."""
    if single:
        return torch.ones_like(coordinates)
    u = (coordinates - start) / max(window - 1, 1)  # 0..1 across the window
    return (1 - 1.9 * (u - 0.5).abs()).clamp_min(0.05)


@dataclass(frozen=True)
class Window:
    start: tuple[int, int, int]  # (t0, y0, x0) in clip units
    rows: tuple[slice, slice, slice]  # the output grid's indices inside the window
    weight: torch.Tensor  # (T_w', H_w, W_w) blending weights


def windows_for(shape: tuple[int, int, int], window: tuple[int, int, int], time_scale: int) -> list[Window]:
    T, H, W = shape
    axes = [torch.linspace(0, T - 1, (T - 1) * time_scale + 1), torch.arange(H).float(), torch.arange(W).float()]
    per_axis = [window_starts(length, size) for length, size in zip(shape, window)]
    result = []
    for start in itertools.product(*per_axis):
        rows, weights = [], []
        for axis, (coords, s, size, _length) in enumerate(zip(axes, start, window, shape)):
            inside = torch.nonzero((coords >= s - 1e-6) & (coords <= s + size - 1 + 1e-6))[:, 0]
            rows.append(slice(int(inside[0]), int(inside[-1]) + 1))
            weights.append(tent(coords[inside], s, size, single=len(per_axis[axis]) == 1))
        weight = weights[0][:, None, None] * weights[1][None, :, None] * weights[2][None, None, :]
        result.append(Window(tuple(start), tuple(rows), weight))
    return result


def _inside(positions: torch.Tensor, start: tuple[int, int, int], window: tuple[int, int, int]) -> torch.Tensor:
    low = torch.tensor(start, dtype=positions.dtype)
    high = low + torch.tensor(window, dtype=positions.dtype) - 1
    return ((positions >= low - 1e-6) & (positions <= high + 1e-6)).all(dim=1)


def _grid_of(window: Window, axes: list[torch.Tensor]) -> torch.Tensor:
    t, y, x = (axis[rows] for axis, rows in zip(axes, window.rows))
    grid = torch.stack(torch.meshgrid(t, y, x, indexing="ij"), dim=-1)
    return grid.reshape(-1, 3) - torch.tensor(window.start, dtype=grid.dtype)


# --- the job -----------------------------------------------------------------------------------------
def complete_video(
    model: Model, context: VideoContext, *, samples: int = 0, time_scale: int = 1, n_autoregressive: int = 256,
    step: int = 16, temperature: float = 1.0, seed: int = 0, trilinear_weight: float | None = None, progress: bool = True,
) -> VideoCompletion:  # fmt: skip
    """The mean clip (and its per-pixel std) and ``samples`` sampled clips, window by window.

    The mean blends in trilinear interpolation of the kept pixels with ``trilinear_weight``
    (default: the checkpoint's): the network and the interpolant err in different places, so the
    blend is closer to the truth than either. The std and the samples are the network's alone."""
    from spatialgen.sampling import mean_field, sample_field

    check_options(samples=samples, time_scale=time_scale, step=step, n_autoregressive=n_autoregressive, temperature=temperature)
    if trilinear_weight is None:
        trilinear_weight = model.adapter.config.trilinear_weight
    if not 0 <= trilinear_weight <= 1:
        raise InputError(f"--trilinear must be between 0 and 1, got {trilinear_weight}")
    _check_pixels(*context.shape, time_scale, pixel_file=context.truth is None)
    adapter: VideoAdapter = model.adapter
    T, H, W = context.shape
    axes = [torch.linspace(0, T - 1, (T - 1) * time_scale + 1), torch.arange(H).float(), torch.arange(W).float()]
    windows = windows_for(context.shape, adapter.window, time_scale)
    out_shape = (len(axes[0]), H, W)
    total = torch.zeros(*out_shape, 1)
    mean, var = torch.zeros(*out_shape, 3), torch.zeros(*out_shape, 3)
    for window in track(windows, description="decoding windows", total=len(windows), enabled=progress):
        keep = _inside(context.positions, window.start, adapter.window)
        ctx_pos = _limit(context.positions[keep] - torch.tensor(window.start, dtype=torch.float32), context)
        field_ = mean_field(model, ctx_pos, context.colours[keep][: len(ctx_pos)], _grid_of(window, axes))
        shape = (*window.weight.shape, 3)
        weight = window.weight[..., None]
        total[window.rows] += weight
        mean[window.rows] += weight * field_.mean.reshape(shape)
        var[window.rows] += weight * field_.std.reshape(shape) ** 2
    mean = (mean / total).clamp(0, 1).numpy()
    if trilinear_weight > 0 and len(context.positions) > MAX_TRILINEAR:
        context.notes.append(f"more than {MAX_TRILINEAR:,} kept pixels: the mean is the network's alone (no trilinear blend)")
    elif trilinear_weight > 0:
        interpolated = trilinear_clip(context.positions.numpy(), context.colours.numpy(), context.shape, time_scale=time_scale,
                                      min_hull_share=MIN_HULL_SHARE)  # fmt: skip
        if interpolated is None:
            context.notes.append("the kept pixels span no volume in (t, y, x) (one frame, row or line, or too few): "
                                 "the mean is the network's alone (no trilinear blend)")  # fmt: skip
        else:
            mean = (1 - trilinear_weight) * mean + trilinear_weight * interpolated
    result = VideoCompletion(context, time_scale, mean, (var / total).sqrt().numpy())
    for index in range(samples):
        drawn_pos, drawn_val = [context.positions], [context.colours]
        clip, weights = torch.zeros(*out_shape, 3), torch.zeros(*out_shape, 1)
        for number, window in enumerate(track(windows, description=f"sample {index + 1}/{samples}", total=len(windows), enabled=progress)):
            positions, colours = torch.cat(drawn_pos), torch.cat(drawn_val)
            keep = _inside(positions, window.start, adapter.window)
            ctx_pos = _limit(positions[keep] - torch.tensor(window.start, dtype=torch.float32), context)
            queries = _grid_of(window, axes)
            window_seed = int(np.random.SeedSequence([seed, index, number]).generate_state(1)[0])
            values = sample_field(model, ctx_pos, colours[keep][: len(ctx_pos)], queries, samples=1, seed=window_seed,
                                  n_autoregressive=n_autoregressive, step=step, temperature=temperature)[0]  # fmt: skip
            order = torch.randperm(len(queries), generator=torch.Generator().manual_seed(window_seed))[:n_autoregressive]
            drawn_pos.append(queries[order] + torch.tensor(window.start, dtype=torch.float32))  # condition later windows
            drawn_val.append(values[order])
            weight = window.weight[..., None]
            clip[window.rows] += weight * values.reshape(*window.weight.shape, 3)
            weights[window.rows] += weight
        result.samples.append((clip / weights).clamp(0, 1).numpy())
    return result


def check_options(*, samples: int, time_scale: int, step: int, n_autoregressive: int, temperature: float) -> None:
    """Refuse bad numbers before anything is decoded."""
    if samples < 0:
        raise InputError(f"--samples must be 0 or more, got {samples}")
    if time_scale < 1:
        raise InputError(f"--time-scale must be at least 1, got {time_scale}")
    if step < 1:
        raise InputError(f"--step must be at least 1, got {step}")
    if n_autoregressive < 0:
        raise InputError(f"--autoregressive must be 0 or more, got {n_autoregressive}")
    if not 0 <= temperature < float("inf"):
        raise InputError(f"--temperature must be a finite number >= 0, got {temperature}")


def _limit(positions: torch.Tensor, context: VideoContext) -> torch.Tensor:
    if len(positions) > MAX_CONTEXT_PER_WINDOW:
        note = f"a window holds more than {MAX_CONTEXT_PER_WINDOW} kept pixels: only the first {MAX_CONTEXT_PER_WINDOW} are used"
        if note not in context.notes:
            context.notes.append(note)
        return positions[:MAX_CONTEXT_PER_WINDOW]
    return positions


# --- outputs -----------------------------------------------------------------------------------------
def to_uint8(clip: np.ndarray) -> np.ndarray:
    return np.round(np.clip(clip, 0, 1) * 255).astype(np.uint8)


def observed_clip(context: VideoContext, time_scale: int) -> np.ndarray:
    """The kept pixels on a dark grey background, (T', H, W, 3) uint8 (shown on their own frames)."""
    T, H, W = context.shape
    clip = np.full(((T - 1) * time_scale + 1, H, W, 3), 40, np.uint8)
    index = np.round(context.positions.numpy()).astype(int)
    clip[index[:, 0] * time_scale, index[:, 1], index[:, 2]] = to_uint8(context.colours.numpy())
    return clip


def panel_clip(result: VideoCompletion) -> np.ndarray:
    """observed | mean | sample (if any) | ground truth (if known), side by side, uint8."""
    context = result.context
    parts = [observed_clip(context, result.time_scale), to_uint8(result.mean)]
    if result.samples:
        parts.append(to_uint8(result.samples[0]))
    if context.truth is not None:
        parts.append(np.repeat(context.truth, result.time_scale, axis=0)[: len(result.mean)])
    gap = np.full((*parts[0].shape[:2], 2, 3), 255, np.uint8)
    return np.concatenate([p for part in parts for p in (part, gap)][:-1], axis=2)


def output_paths(out: str | Path, count: int) -> list[Path]:
    """OUT for one clip; OUT's stem + _0, _1, ... for ``count`` samples (directories: name + _i/)."""
    text = str(out)
    if count == 0:
        return [Path(out)]
    from spatialgen.io.video import is_frame_directory

    if is_frame_directory(text):
        base = Path(text.rstrip("/"))
        return [Path(f"{base}_{i}/") for i in range(count)]
    out = Path(out)
    return [out.with_name(f"{out.stem}_{i}{out.suffix}") for i in range(count)]


def write_completion(result: VideoCompletion, out: str | Path, *, panel: bool = False, fps: float | None = None) -> list[Path]:
    """The mean clip (or, with samples, each sample; or the panel) at ``fps`` (default: the input's x time scale)."""
    from spatialgen.io.video import write_video

    rate = fps or result.fps
    if panel:
        return [write_video(panel_clip(result), out, fps=rate)]
    if not result.samples:
        return [write_video(to_uint8(result.mean), out, fps=rate)]
    paths = output_paths(out, len(result.samples))
    return [write_video(to_uint8(sample), path, fps=rate) for sample, path in zip(result.samples, paths)]


# --- evaluation --------------------------------------------------------------------------------------
METHODS = ("spatialgen", "trilinear (scipy)", "nearest neighbour")
NETWORK_ALONE = "spatialgen, network alone"  # a row of its own when the mean blends in trilinear interpolation


def test_clips(adapter: VideoAdapter, frames: int) -> list[tuple[str, np.ndarray]]:
    """Non-overlapping ``frames``-long pieces of every clip's test range, at the training scale."""
    pieces = []
    for name, clip in adapter.dataset_clips("test"):
        for first in range(0, len(clip) - frames + 1, frames):
            pieces.append((f"{name}@{first}", clip[first : first + frames]))
    return pieces


def evaluate_video_model(
    model: Model, *, keeps: tuple[float, ...] = (0.01, 0.05, 0.10), frames: int = 16, limit: int | None = None,
    seed: int = 0, progress: bool = True,
) -> dict:  # fmt: skip
    """PSNR and SSIM of the mean clip from a ``keep`` fraction of pixels, beside trilinear
    (Delaunay) and nearest-neighbour interpolation of the same pixels, on the test split. When the
    checkpoint blends trilinear interpolation into its mean, the network alone gets a row too."""
    import time

    from spatialgen.metrics import psnr, video_ssim

    for keep in keeps:
        if not 0 < keep <= 1:
            raise InputError(f"keep fractions must be in (0, 1], got {keep}")
    adapter: VideoAdapter = model.adapter
    clips = test_clips(adapter, frames)[:limit] if limit else test_clips(adapter, frames)
    weight = adapter.config.trilinear_weight
    methods = (METHODS[0], NETWORK_ALONE, *METHODS[1:]) if weight > 0 else METHODS
    scores = {(k, m): {"psnr": [], "ssim": [], "seconds": []} for k in keeps for m in methods}
    for index, (_name, truth) in enumerate(track(clips, description="eval clips", total=len(clips), enabled=progress)):
        target = truth.astype(np.float64) / 255
        for keep in keeps:
            positions, colours = adapter.keep_random_pixels(truth, keep, torch.Generator().manual_seed(seed * 1000 + index))
            context = VideoContext(positions, colours, tuple(truth.shape[:3]), 25.0, truth=truth)
            clips_of, seconds_of = {}, {}
            for method in (NETWORK_ALONE, *METHODS[1:]):  # the blend is made from the first two
                started = time.perf_counter()
                if method == NETWORK_ALONE:
                    clips_of[method] = complete_video(model, context, trilinear_weight=0.0, progress=False).mean
                else:
                    clips_of[method] = _interpolate(method, positions.numpy(), colours.numpy(), truth.shape[:3])
                seconds_of[method] = time.perf_counter() - started
            blended = (1 - weight) * clips_of[NETWORK_ALONE] + weight * clips_of[METHODS[1]]  # as complete_video makes it
            clips_of[METHODS[0]] = blended
            seconds_of[METHODS[0]] = seconds_of[NETWORK_ALONE] + (seconds_of[METHODS[1]] if weight > 0 else 0.0)
            for method in methods:
                clip = np.clip(clips_of[method], 0, 1)
                entry = scores[(keep, method)]
                entry["psnr"].append(psnr(clip, target))
                entry["ssim"].append(video_ssim(clip, target))
                entry["seconds"].append(seconds_of[method])
    rows = [{"context": f"{keep:.0%}", "method": method, **{k: float(np.mean(v)) for k, v in s.items()}} for (keep, method), s in scores.items()]
    return {"domain": "video", "dataset": adapter.config.dataset, "split": "test", "items": len(clips), "frames": frames,
            "clips": [name for name, _ in clips], "seed": seed, "trilinear_weight": weight, "rows": rows}  # fmt: skip


def trilinear_clip(
    positions: np.ndarray, colours: np.ndarray, shape: tuple[int, int, int], *, time_scale: int = 1, min_hull_share: float | None = None
) -> np.ndarray | None:
    """Trilinear (Delaunay) interpolation of scattered pixels over a clip's grid, (T', H, W, 3);
    nearest neighbour outside the pixels' convex hull, or everywhere when they cannot be
    triangulated (the baseline). With ``min_hull_share``, None instead when they cannot be
    triangulated or their hull covers less than that share of the grid."""
    from scipy.interpolate import LinearNDInterpolator
    from scipy.spatial import QhullError

    from spatialgen.baselines import nearest_neighbour

    T, H, W = shape
    grid = VideoAdapter.grid_positions(T, H, W, time_scale=time_scale).numpy()
    out_shape = ((T - 1) * time_scale + 1, H, W, 3)
    fill = np.full(3, 0.5)
    try:
        linear = LinearNDInterpolator(positions, colours)(grid)  # NaN outside the samples' convex hull
    except (QhullError, ValueError):  # too few, coplanar or collinear samples for a triangulation
        return None if min_hull_share is not None else nearest_neighbour(positions, colours, grid, fill=fill).reshape(out_shape)
    outside = np.isnan(linear).any(axis=1)
    if min_hull_share is not None and 1 - outside.mean() < min_hull_share:
        return None
    if outside.any():
        linear[outside] = nearest_neighbour(positions, colours, grid[outside], fill=fill)
    return linear.reshape(out_shape)


def _interpolate(method: str, positions: np.ndarray, colours: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    from spatialgen.baselines import nearest_neighbour

    if method.startswith("nearest"):
        T, H, W = shape
        grid = VideoAdapter.grid_positions(T, H, W).numpy()
        return nearest_neighbour(positions, colours, grid, fill=np.full(3, 0.5)).reshape(T, H, W, 3)
    return trilinear_clip(positions, colours, shape)
