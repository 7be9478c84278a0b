"""Append one fine-tuning stage's loss.csv to a shipped checkpoint's staged loss history.

A shipped checkpoint trained in stages (``train.init_from``) keeps one loss curve: steps count
on from the previous stage, and a ``stage`` column says which run each row came from. The plot
is redrawn with a line at each stage boundary.

    python tools/append_stage.py data/checkpoints/sdf-cgal-loss.csv runs/sdf-s4/loss.csv \
        --label "4: 8400 steps fine-tune, log"
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from spatialgen.io.atomic import atomic_path


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def staged_history(shipped: list[dict[str, str]], stage: list[dict[str, str]], label: str, first_label: str) -> list[dict[str, str]]:
    """The shipped rows (labelled ``first_label`` if they had no stage) followed by ``stage``'s, steps continued."""
    rows = [{**row, "stage": row.get("stage") or first_label} for row in shipped]
    offset = int(rows[-1]["step"]) if rows else 0
    rows += [{**row, "step": str(int(row["step"]) + offset), "stage": label} for row in stage]
    return rows


def plot(rows: list[dict[str, str]], path: Path, title: str) -> None:
    from spatialgen.io.plots import figure, save_figure

    plt = figure()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    steps = [int(r["step"]) for r in rows]
    losses = [float(r["loss_nats_per_point"]) for r in rows]
    ax.plot(steps, losses, lw=0.6, alpha=0.35, color="tab:blue", label="per logged step")
    window = max(1, len(losses) // 60)
    smooth = [sum(losses[max(0, i - window + 1) : i + 1]) / len(losses[max(0, i - window + 1) : i + 1]) for i in range(len(losses))]
    ax.plot(steps, smooth, lw=1.6, color="tab:blue", label=f"moving mean ({window})")
    for previous, row in zip(rows, rows[1:]):
        if row["stage"] != previous["stage"]:
            ax.axvline(int(previous["step"]), color="grey", lw=0.8, ls="--")
    ax.set_xlabel("step (all stages)")
    ax.set_ylabel("NLL (nats / query point)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shipped", type=Path, help="the shipped checkpoint's loss csv (rewritten)")
    parser.add_argument("stage", type=Path, help="the new stage's runs/.../loss.csv")
    parser.add_argument("--label", required=True, help="the new stage's name in the stage column")
    parser.add_argument("--first-label", default="1", help="stage name for shipped rows that have none")
    args = parser.parse_args()
    rows = staged_history(read_rows(args.shipped), read_rows(args.stage), args.label, args.first_label)
    with atomic_path(args.shipped) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["step", "loss_nats_per_point", "learning_rate", "stage"])
        writer.writeheader()
        writer.writerows({key: row[key] for key in writer.fieldnames} for row in rows)
    picture = args.shipped.with_suffix(".png")
    plot(rows, picture, title=args.shipped.stem.removesuffix("-loss"))
    print(f"wrote {args.shipped} ({len(rows)} rows) and {picture}")


if __name__ == "__main__":
    main()
