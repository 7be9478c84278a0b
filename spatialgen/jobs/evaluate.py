"""`spatialgen eval`: dispatch on the checkpoint's domain, print a table, write JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

from spatialgen.api import Model
from spatialgen.errors import InputError
from spatialgen.io.atomic import atomic_path


def evaluate(model: Model, *, contexts: tuple[int, ...] | None, limit: int | None, seed: int) -> dict:
    """``contexts=None`` takes the domain's default context sizes."""
    domain = model.config.adapter.name
    if domain == "image":
        from spatialgen.jobs.image import evaluate_image_model

        return evaluate_image_model(model, contexts=contexts or (16, 64, 256), limit=limit, seed=seed)
    if domain == "sdf":
        from spatialgen.jobs.shape import evaluate_sdf_model

        return evaluate_sdf_model(model, contexts=contexts or (128, 512, 2048), limit=limit, seed=seed)
    if domain == "video":
        from spatialgen.jobs.video import evaluate_video_model

        if contexts and not all(0 < k <= 100 for k in contexts):
            raise InputError(f"--context for video models is the percent of pixels kept, 1 to 100, got {','.join(map(str, contexts))}")
        keeps = tuple(k / 100 for k in contexts) if contexts else (0.01, 0.05, 0.10)
        return evaluate_video_model(model, keeps=keeps, limit=limit, seed=seed)
    if domain == "function":
        from spatialgen.jobs.function import evaluate_function_model

        if contexts:  # each benchmark task draws its own number of context points (3 to 47)
            raise InputError("--context does not apply to function models: each task draws its own context size")
        return evaluate_function_model(model, tasks=limit or 1000, seed=seed)
    raise InputError(f"no evaluation is defined for '{domain}' models yet")


def table_columns(rows: list[dict]) -> tuple[str, list[str]]:
    """-> (the grouping column, the metric columns) of a report's rows: the group is the first key,
    "context" (K or a kept fraction) or "kernel" for functions; "method" and "stderr" are not metrics."""
    group = next(iter(rows[0]))
    return group, [key for key in rows[0] if key not in (group, "method", "stderr")]


def print_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()  # results go to stdout; progress and errors to stderr
    if not console.is_terminal:  # a log or pipe has no width: rich's 80 columns would cut method names
        console = Console(width=max(console.width, 160))

    rows = report["rows"]
    group, metrics = table_columns(rows)
    table = Table(title=f"{report['domain']} / {report['dataset']} {report['split']} ({report.get('items', report.get('images', '?'))} items)")
    for column in [group, "method", *metrics]:
        table.add_column(column.replace("_", " "), justify="right" if column != "method" else "left")
    for row in rows:
        table.add_row(str(row[group]), row["method"], *(_format(row[m]) for m in metrics))
    console.print(table)
    if report.get("note"):
        console.print(report["note"])


def _format(value) -> str:
    return "—" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def write_json(report: dict, path: str | Path) -> None:
    """The report as strict JSON: a non-finite number (a perfect PSNR is inf) becomes null."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_finite_or_null(report), indent=2, allow_nan=False) + "\n")


def _finite_or_null(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite_or_null(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(item) for item in value]
    return value
