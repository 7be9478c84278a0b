"""Image datasets as uint8 arrays (N, H, W) or (N, H, W, 3).

``mnist`` and ``fashion`` are fetched (see :mod:`spatialgen.data.fetch`); ``digits`` (8x8, from
scikit-learn) and ``photos`` (64x64 RGB tiles of scikit-image's bundled photographs) ship with
packages that are already installed, so tests use them with no fetching at all.
"""

from __future__ import annotations

import numpy as np

from spatialgen.data.cache import DataUnavailable
from spatialgen.data.fetch import fetch

# photos used for the "photos" dataset; the last one is held out as its test split
_PHOTOS = ("astronaut", "chelsea", "rocket", "coffee")


def _fetched(name: str, split: str) -> np.ndarray:
    with np.load(fetch(name), allow_pickle=False) as arrays:
        return arrays[f"{split}_images"]


def _digits(split: str) -> np.ndarray:
    from sklearn.datasets import load_digits

    images = np.round(load_digits().images * (255 / 16)).astype(np.uint8)  # (1797, 8, 8), 0..16 -> 0..255
    test = np.arange(len(images)) % 10 == 0
    return images[test] if split == "test" else images[~test]


def _photos(split: str) -> np.ndarray:
    import skimage.data

    names = _PHOTOS[-1:] if split == "test" else _PHOTOS[:-1]
    tiles = []
    for name in names:
        photo = getattr(skimage.data, name)()[..., :3]
        rows, cols = photo.shape[0] // 64, photo.shape[1] // 64
        for r in range(rows):
            for c in range(cols):
                tiles.append(photo[64 * r : 64 * r + 64, 64 * c : 64 * c + 64])
    return np.stack(tiles).astype(np.uint8)


IMAGE_DATASETS = {
    "mnist": lambda split: _fetched("mnist", split),
    "fashion": lambda split: _fetched("fashion", split),
    "digits": _digits,
    "photos": _photos,
}


def load_image_dataset(name: str, split: str) -> np.ndarray:
    if name not in IMAGE_DATASETS:
        raise DataUnavailable(f"unknown image dataset '{name}' (known: {', '.join(IMAGE_DATASETS)})")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got '{split}'")
    return IMAGE_DATASETS[name](split)
