"""Write data/examples/function-points.csv: 10 noisy points of one RBF Gaussian-process draw
(length-scale 0.4, output scale 0.8, noise 0.02) on x in [-2, 2], seeded.

    python tools/make_function_examples.py
"""

from pathlib import Path

import torch

from spatialgen.adapters.function import GPHyperparameters, draw_gp

OUT = Path(__file__).resolve().parents[1] / "data" / "examples" / "function-points.csv"


def main() -> None:
    generator = torch.Generator().manual_seed(7)
    x = (torch.rand(10, 1, generator=generator, dtype=torch.float64) * 4 - 2).sort(dim=0).values
    y = draw_gp(x, GPHyperparameters("rbf", length=0.4, scale=0.8, period=1.0, noise=0.02), generator)
    OUT.write_text("x,y\n" + "".join(f"{a:.4f},{b:.4f}\n" for a, b in zip(x[:, 0].tolist(), y[:, 0].tolist())))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
