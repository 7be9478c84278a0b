"""Plots written with matplotlib's Agg backend (no display needed), atomically."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from spatialgen.io.atomic import atomic_path


def figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, *, dpi: int = 120) -> None:
    plt = figure()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=Path(path).suffix.lstrip(".") or "png")
    plt.close(fig)


def plot_loss(
    history: Sequence[tuple[int, float, float]], path: str | Path, *, title: str = "training loss", stage_ends: Sequence[int] = ()
) -> None:
    """(step, loss, learning rate) rows -> a PNG; ``stage_ends`` draws a dashed line where a fine-tuning stage ended."""
    plt = figure()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps = [row[0] for row in history]
    losses = [row[1] for row in history]
    ax.plot(steps, losses, lw=0.8, alpha=0.4, color="tab:blue", label="per logged step")
    window = max(1, len(losses) // 50)
    if window > 1:
        smooth = [sum(losses[max(0, i - window + 1) : i + 1]) / len(losses[max(0, i - window + 1) : i + 1]) for i in range(len(losses))]
        ax.plot(steps, smooth, lw=1.6, color="tab:blue", label=f"moving mean ({window})")
    for step in stage_ends:
        ax.axvline(step, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("step")
    ax.set_ylabel("NLL (nats / query point, normalised units)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)
