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
from spatialgen.io.plots import plot_loss


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def staged_history(shipped: list[dict[str, str]], stage: list[dict[str, str]], label: str, first_label: str) -> list[dict[str, str]]:
    """The shipped rows (labelled ``first_label`` if they had no stage) followed by ``stage``'s, steps continued."""
    rows = [{**row, "stage": row.get("stage") or first_label} for row in shipped]
    offset = int(rows[-1]["step"]) if rows else 0
    rows += [{**row, "step": str(int(row["step"]) + offset), "stage": label} for row in stage]
    return rows


def stage_ends(rows: list[dict[str, str]]) -> list[int]:
    """The last step of every stage but the final one."""
    return [int(previous["step"]) for previous, row in zip(rows, rows[1:]) if row["stage"] != previous["stage"]]


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
    history = [(int(r["step"]), float(r["loss_nats_per_point"]), float(r["learning_rate"])) for r in rows]
    plot_loss(history, picture, title=args.shipped.stem.removesuffix("-loss"), stage_ends=stage_ends(rows))
    print(f"wrote {args.shipped} ({len(rows)} rows) and {picture}")


if __name__ == "__main__":
    main()
