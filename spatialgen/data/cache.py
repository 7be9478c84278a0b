from __future__ import annotations

import os
from pathlib import Path

from spatialgen.errors import DataUnavailable  # noqa: F401  (re-exported)


def cache_dir() -> Path:
    root = os.environ.get("SPATIALGEN_CACHE") or Path.home() / ".cache" / "spatialgen"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path
