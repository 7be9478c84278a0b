from __future__ import annotations

import os
from pathlib import Path

from spatialgen.errors import DataUnavailable  # noqa: F401  (re-exported)


def cache_dir() -> Path:
    root = os.environ.get("SPATIALGEN_CACHE") or Path.home() / ".cache" / "spatialgen"
    path = Path(root).expanduser()  # a quoted '~/...' in the variable means the home directory too
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataUnavailable(f"cannot use the data cache {path} (set SPATIALGEN_CACHE to a writable directory): {exc.strerror or exc}") from None
    return path
