"""Scattered-sample files: CSV (optional header, UTF-8 with or without BOM) or NPZ of plain arrays."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import numpy as np

from spatialgen.errors import InputError
from spatialgen.io.atomic import require_file


def read_samples(path: str | Path, *, columns: int, npz_keys: tuple[str, str], what: str) -> np.ndarray:
    """Read a (K, columns) float table; NPZ files hold ``npz_keys`` = (positions, values) arrays.

    Rejects missing files, non-numeric cells, wrong column counts and NaN/inf with one-line errors.
    """
    path = require_file(path)
    table = _read_npz(path, npz_keys) if path.suffix.lower() == ".npz" else _read_csv(path)
    if table.ndim != 2 or table.shape[1] != columns:
        got = table.shape[1] if table.ndim == 2 else "?"
        raise InputError(f"{path}: expected {columns} columns ({what}), found {got}")
    if not np.isfinite(table).all():
        bad = int((~np.isfinite(table)).any(axis=1).sum())
        raise InputError(f"{path}: {bad} row(s) contain NaN or infinite values")
    return table


def _read_csv(path: Path) -> np.ndarray:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a UTF-8 text CSV file") from None
    # (line number, cells) of the non-blank lines
    try:
        rows = [(n, row) for n, row in enumerate(csv.reader(io.StringIO(text)), start=1) if any(c.strip() for c in row)]
    except csv.Error as exc:
        raise InputError(f"{path}: not a readable CSV file ({exc})") from None
    if rows and not any(_is_number(cell) for cell in rows[0][1]):
        rows = rows[1:]  # a header: a first line with no numbers at all
    if not rows:
        raise InputError(f"{path}: no samples in the file")
    widths = {len(row) for _, row in rows}
    if len(widths) != 1:
        raise InputError(f"{path}: rows have different numbers of columns ({sorted(widths)})")
    for line, row in rows:
        if not all(_is_number(cell) for cell in row):
            shown = ",".join(row)[:60].encode("unicode_escape").decode("ascii")
            raise InputError(f"{path}: line {line} is not numeric: {shown}")
    return np.array([[float(cell) for cell in row] for _, row in rows], dtype=np.float64)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def read_npz_arrays(path: str | Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The named arrays of an NPZ archive of plain numeric arrays (never unpickled)."""
    path = require_file(path)
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise InputError(f"{path}: an .npy array, not an NPZ archive with {', '.join(repr(k) for k in keys)}")
        with loaded as archive:
            missing = [key for key in keys if key not in archive.files]
            if missing:
                raise InputError(f"{path}: missing array(s) {', '.join(missing)} (found: {', '.join(archive.files) or 'none'})")
            arrays = {key: np.asarray(archive[key]) for key in keys}
    except InputError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, AttributeError) as exc:
        raise InputError(f"{path}: not a readable NPZ of plain arrays ({type(exc).__name__})") from None
    for key, array in arrays.items():
        if array.dtype.kind not in "iuf":
            raise InputError(f"{path}: array '{key}' must be numeric, got {array.dtype}")
    return arrays


def _read_npz(path: Path, keys: tuple[str, str]) -> np.ndarray:
    positions, values = read_npz_arrays(path, keys).values()
    if values.ndim == 1:
        values = values[:, None]
    if positions.ndim != 2 or values.ndim != 2 or len(positions) != len(values):
        raise InputError(f"{path}: '{keys[0]}' must be (K, d) and '{keys[1]}' (K,) or (K, c) with the same K")
    if len(positions) == 0:
        raise InputError(f"{path}: no samples in the file")
    return np.concatenate([positions, values], axis=1).astype(np.float64)
