"""Videos: streaming decode of anything PyAV opens, and writers chosen by OUT's suffix.

Clips are uint8 arrays (T, H, W, 3). Decoding keeps only the frames asked for, already resized,
so a long or large file is never held whole. PyAV (``pip install 'spatialgen[video]'``) is
imported on first use. Every file is written atomically; a directory of PNG frames is written
into a temporary directory beside it and renamed into place.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from spatialgen.errors import InputError, MissingDependency, OutputError, shortened
from spatialgen.io.atomic import _umask, atomic_path, check_writable, require_file

VIDEO_SUFFIXES = (".mp4", ".gif", ".webm")  # or a directory of PNG frames (OUT ending in / or without suffix)
_INSTALL = "install the video extra: pip install 'spatialgen[video]'"


def require_av():
    try:
        import av
    except ImportError:
        raise MissingDependency(f"PyAV is needed for videos: {_INSTALL}") from None
    return av


@dataclass(frozen=True)
class Clip:
    """Decoded frames and where they came from."""

    frames: np.ndarray  # (T, H, W, 3) uint8
    fps: float  # frames per second of the clip (the file's rate divided by the stride)
    source_size: tuple[int, int]  # (H, W) of the file's frames before resizing


# --- reading ---------------------------------------------------------------------------------------
def read_video(
    path: str | Path,
    *,
    start: float = 0.0,
    frames: int | None = None,
    stride: int = 1,
    size: tuple[int, int] | None = None,
) -> Clip:
    """Decode ``frames`` frames (all if None), every ``stride``-th from ``start`` seconds, each
    centre-cropped to the aspect ratio of ``size`` = (H, W) and resized to it.

    One-line InputError for a missing or unreadable file, a file without a video stream, or a
    file with fewer frames than asked for.
    """
    if start < 0 or not np.isfinite(start):
        raise InputError(f"--start must be 0 or more seconds, got {start}")
    if stride < 1:
        raise InputError(f"--stride (the frame stride) must be at least 1, got {stride}")
    if frames is not None and frames < 1:
        raise InputError(f"--frames must be at least 1, got {frames}")
    if size is not None and (min(size) < 2 or max(size) > 4096):
        raise InputError(f"--size must be between 2 and 4096 pixels per side, got {size[0]} {size[1]}")
    path = require_file(path)
    av = require_av()
    kept, fps, source = [], None, None
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{path} has no video stream (audio only or not a video)")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            rate = float(stream.average_rate or stream.guessed_rate or 25)
            fps = rate / stride
            for index, image in enumerate(_frames_from(container, stream, start)):
                if index % stride:
                    continue
                source = image.shape[:2]
                kept.append(_fit(image, size))
                if frames is not None and len(kept) == frames:
                    break
    except InputError:
        raise
    except Exception as exc:  # av.error.* and friends for broken or non-media files
        raise InputError(f"cannot decode {path} as a video ({type(exc).__name__}: {shortened(str(exc), 80)})") from None
    if not kept:
        raise InputError(f"{path} has no frames after {start:g} s")
    if frames is not None and len(kept) < frames:
        raise InputError(
            f"{path} has only {len(kept)} frame(s) from {start:g} s with stride {stride}, fewer than the {frames} asked for"
        )
    return Clip(np.stack(kept), fps, tuple(source))


def _frames_from(container, stream, start: float) -> Iterator[np.ndarray]:
    """RGB frames (H, W, 3) whose time is at least ``start`` seconds."""
    if start > 0:
        container.seek(int(start / stream.time_base), stream=stream, backward=True, any_frame=False)
    for frame in container.decode(stream):
        if frame.time is not None and frame.time < start - 1e-6:
            continue
        yield frame.to_ndarray(format="rgb24")


def _fit(image: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Centre-crop to the aspect ratio of ``size`` and resize (area filter)."""
    if size is None:
        return image
    from PIL import Image

    H, W = size
    h, w = image.shape[:2]
    if w * H > h * W:  # too wide: crop columns
        keep = max(1, round(h * W / H))
        image = image[:, (w - keep) // 2 : (w - keep) // 2 + keep]
    elif w * H < h * W:  # too tall: crop rows
        keep = max(1, round(w * H / W))
        image = image[(h - keep) // 2 : (h - keep) // 2 + keep]
    if image.shape[:2] == (H, W):
        return np.ascontiguousarray(image)
    return np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((W, H), Image.Resampling.BOX))


# --- writing ---------------------------------------------------------------------------------------
def is_frame_directory(path: str | Path) -> bool:
    """OUT names a directory of PNG frames when it ends in a separator or has no suffix."""
    text = str(path)
    return text.endswith(("/", os.sep)) or Path(text).suffix == ""


def check_video_output(path: str | Path) -> None:
    """Refuse an unknown suffix or an unwritable place before any work is done."""
    if is_frame_directory(path):
        target = Path(path)
        if target.exists() and not target.is_dir():
            raise OutputError(f"cannot write frames into {target}: it is a file")
        if target.is_dir() and any(target.iterdir()):
            raise OutputError(f"cannot write frames into {target}: the directory is not empty")
        check_writable(target.parent / f"{target.name}.png")  # the place for it (the directory itself is made at the end)
        return
    if Path(path).suffix.lower() not in VIDEO_SUFFIXES:
        raise InputError(f"unsupported output extension '{Path(path).suffix}' for {path} (use {', '.join(VIDEO_SUFFIXES)} or a directory/)")
    check_writable(path)


def write_video(frames: np.ndarray, path: str | Path, *, fps: float) -> Path:
    """Write uint8 frames (T, H, W, 3): .mp4 (H.264), .webm (VP8), .gif, or a directory of PNG frames."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    if not (np.isfinite(fps) and fps > 0):
        raise InputError(f"--fps must be a positive number, got {fps}")
    check_video_output(path)
    if is_frame_directory(path):
        return _write_frame_directory(frames, Path(path))
    path = Path(path)
    suffix = path.suffix.lower()
    with atomic_path(path) as tmp:
        try:
            if suffix == ".gif":
                _write_gif(frames, tmp, fps)
            else:
                _write_encoded(frames, tmp, fps, codec="libx264" if suffix == ".mp4" else "libvpx")
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def _write_encoded(frames: np.ndarray, path: Path, fps: float, *, codec: str) -> None:
    """H.264 in yuv420p (what every player takes) needs even sides; for an odd side it is written
    as yuv444p instead, so the file keeps exactly the asked-for size. VP8 takes any size."""
    av = require_av()
    T, H, W, _ = frames.shape
    rate = Fraction(fps).limit_denominator(1000)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = W, H
        stream.pix_fmt = "yuv420p" if codec != "libx264" or (H % 2 == 0 and W % 2 == 0) else "yuv444p"
        if codec == "libx264":
            stream.options = {"crf": "18"}
        else:
            stream.bit_rate = max(200_000, int(H * W * fps * 0.5))
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _write_gif(frames: np.ndarray, path: Path, fps: float) -> None:
    from PIL import Image

    images = [Image.fromarray(image) for image in frames]
    duration = max(20, round(1000 / fps))  # ms per frame; viewers clamp shorter delays
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0)


def _write_frame_directory(frames: np.ndarray, target: Path) -> Path:
    from PIL import Image

    if target.is_dir() and any(target.iterdir()):
        raise OutputError(f"cannot write frames into {target}: the directory is not empty")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".spatialgen-frames-", dir=target.parent))
    try:
        for index, image in enumerate(frames):
            Image.fromarray(image).save(tmp / f"frame_{index:04d}.png")
        os.chmod(tmp, 0o777 & ~_umask())
        if target.is_dir():
            target.rmdir()  # empty (checked above)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
