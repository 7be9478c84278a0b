"""Quality metrics. Images: PSNR, SSIM, bits/dim (discretised, 8-bit)."""

from __future__ import annotations

import math

import numpy as np
import torch


def psnr(prediction: np.ndarray, target: np.ndarray, *, data_range: float = 1.0) -> float:
    mse = float(np.mean((np.asarray(prediction, np.float64) - np.asarray(target, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(data_range**2 / mse)


def ssim(prediction: np.ndarray, target: np.ndarray, *, data_range: float = 1.0) -> float:
    """SSIM of (H, W) or (H, W, C) images; a 7x7 window, shrunk for tiny images."""
    from skimage.metrics import structural_similarity

    prediction, target = np.asarray(prediction, np.float64), np.asarray(target, np.float64)
    window = min(7, *(s if s % 2 else s - 1 for s in target.shape[:2]))
    channel_axis = -1 if target.ndim == 3 else None
    return float(structural_similarity(prediction, target, data_range=data_range, win_size=window, channel_axis=channel_axis))


def bits_per_dim(log_mass: torch.Tensor, value_dims: int) -> float:
    """Mean -log2 probability mass per value dimension, from natural-log masses (one per point)."""
    return float(-log_mass.double().mean() / (value_dims * math.log(2)))
