"""Print the Markdown table of an evaluation report written by ``spatialgen eval --json``.

    python tools/results_table.py data/checkpoints/image-mnist-eval.json

The README's result tables are pasted from this output, so they carry exactly the measured numbers.
"""

from __future__ import annotations

import json
import sys

from spatialgen.jobs.evaluate import table_columns


def markdown(report: dict) -> str:
    rows = report["rows"]
    group, metrics = table_columns(rows)
    header = [group, "method", *metrics]
    lines = ["| " + " | ".join(h.replace("_", " ") for h in header) + " |", "|" + "---|" * len(header)]
    best, counts = {}, {}
    for metric in metrics:
        lower_is_better = metric in ("chamfer_l1", "bits_per_dim", "seconds", "no_surface")
        for row in rows:
            value = row.get(metric)
            if isinstance(value, (int, float)) and "reported" not in row["method"] and not row["method"].startswith("exact"):
                key = (row[group], metric)
                counts[key] = counts.get(key, 0) + 1
                if key not in best or (value < best[key] if lower_is_better else value > best[key]):
                    best[key] = value
    for row in rows:
        cells = [str(row[group]), row["method"]]
        for metric in metrics:
            value = row.get(metric)
            digits = 4 if metric == "chamfer_l1" else 3  # Chamfer distances differ in the fourth decimal
            text = "—" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)
            if metric not in ("seconds", "no_surface") and value is not None and best.get((row[group], metric)) == value and counts[(row[group], metric)] > 1:
                text = f"**{text}**"
            if metric == "log_likelihood" and row.get("stderr"):
                text += f" ± {row['stderr']:.3f}"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    for path in sys.argv[1:]:
        with open(path) as handle:
            print(markdown(json.load(handle)))
        print()


if __name__ == "__main__":
    main()
