"""Write the committed example inputs in data/examples/ from the MNIST-5k *test* split.

    python tools/make_examples.py
"""

from pathlib import Path

import numpy as np
from PIL import Image

from spatialgen.data import load_image_dataset
from spatialgen.data.fetch import fetch

OUT = Path(__file__).resolve().parents[1] / "data" / "examples"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with np.load(fetch("mnist")) as arrays:
        images, labels = arrays["test_images"], arrays["test_labels"]
    for digit in (2, 3, 7):
        index = int(np.flatnonzero(labels == digit)[0])
        Image.fromarray(images[index]).save(OUT / f"mnist-test-{digit}.png")
    # 64 scattered pixels of the test "3", as a CSV in pixel units (x = column, y = row, value in [0, 1])
    three = images[int(np.flatnonzero(labels == 3)[0])]
    rng = np.random.default_rng(0)
    flat = rng.choice(28 * 28, size=64, replace=False)
    rows, cols = np.divmod(flat, 28)
    with open(OUT / "mnist-test-3-pixels.csv", "w") as handle:
        handle.write("x,y,value\n")
        handle.writelines(f"{c},{r},{three[r, c] / 255:.4f}\n" for r, c in zip(rows, cols))
    # a small slice of the real test split for offline tests and evaluation smoke runs
    np.savez_compressed(OUT / "mnist-test-100.npz", images=images[:100], labels=labels[:100])
    print(f"wrote examples to {OUT} ({len(load_image_dataset('mnist', 'test'))} test digits available)")


if __name__ == "__main__":
    main()
