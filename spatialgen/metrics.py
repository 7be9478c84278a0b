"""Quality metrics. Images: PSNR, SSIM, bits/dim (discretised, 8-bit). Shapes: volumetric IoU,
Chamfer-L1 and normal consistency as defined by Occupancy Networks (Mescheder et al. 2019)."""

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


def video_ssim(prediction: np.ndarray, target: np.ndarray, *, data_range: float = 1.0) -> float:
    """Mean SSIM over the frames of (T, H, W, C) clips."""
    return float(np.mean([ssim(p, t, data_range=data_range) for p, t in zip(prediction, target)]))


def bits_per_dim(log_mass: torch.Tensor, value_dims: int) -> float:
    """Mean -log2 probability mass per value dimension, from natural-log masses (one per point)."""
    return float(-log_mass.double().mean() / (value_dims * math.log(2)))


# --- shapes (Occupancy Networks' definitions) -----------------------------------------------------
# An empty prediction scores the worst Chamfer-L1 possible in the unit cube and no normal agreement.
EMPTY_SHAPE_CHAMFER = math.sqrt(3)


def volumetric_iou(predicted_inside: np.ndarray, true_inside: np.ndarray) -> float:
    """|A and B| / |A or B| of two occupancy masks over the same (uniformly drawn) points."""
    predicted_inside, true_inside = np.asarray(predicted_inside, bool), np.asarray(true_inside, bool)
    union = np.logical_or(predicted_inside, true_inside).sum()
    return float(np.logical_and(predicted_inside, true_inside).sum() / union) if union else 1.0


def surface_agreement(
    predicted_points: np.ndarray | None,
    predicted_normals: np.ndarray | None,
    true_points: np.ndarray,
    true_normals: np.ndarray,
    *,
    scale: float = 1.0,
) -> dict[str, float]:
    """Chamfer-L1 and normal consistency between two surfaces, each given by points sampled on it
    with unit normals. Distances are multiplied by ``scale`` (pass 1 / the true shape's longest
    bounding-box edge for ONet's unit-cube scale).

    accuracy = mean distance from predicted points to the true surface, completeness = from true
    points to the predicted surface, chamfer_l1 = their mean; normal consistency = the mean
    |cos| between each point's normal and its nearest neighbour's, averaged over both directions.
    """
    from scipy.spatial import cKDTree

    if predicted_points is None or len(predicted_points) == 0:
        return {"chamfer_l1": EMPTY_SHAPE_CHAMFER, "accuracy": EMPTY_SHAPE_CHAMFER,
                "completeness": EMPTY_SHAPE_CHAMFER, "normal_consistency": 0.0}  # fmt: skip
    to_true, nearest_true = cKDTree(true_points).query(predicted_points)
    to_predicted, nearest_predicted = cKDTree(predicted_points).query(true_points)
    accuracy, completeness = float(to_true.mean()) * scale, float(to_predicted.mean()) * scale
    normals_accuracy = np.abs((predicted_normals * true_normals[nearest_true]).sum(-1)).mean()
    normals_completeness = np.abs((true_normals * predicted_normals[nearest_predicted]).sum(-1)).mean()
    return {
        "chamfer_l1": (accuracy + completeness) / 2, "accuracy": accuracy, "completeness": completeness,
        "normal_consistency": float(normals_accuracy + normals_completeness) / 2,
    }  # fmt: skip
