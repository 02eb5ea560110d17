"""Score a segmentation or a detection against ground truth.

Both helpers solve a one-to-one assignment (Hungarian algorithm,
:func:`scipy.optimize.linear_sum_assignment`) so that one predicted object can
never be credited for two true ones, and return the usual detection scores.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree


def _scores(tp: int, n_pred: int, n_true: int) -> dict[str, float]:
    fp = n_pred - tp
    fn = n_true - tp
    precision = tp / n_pred if n_pred else (1.0 if n_true == 0 else 0.0)
    recall = tp / n_true if n_true else (1.0 if n_pred == 0 else 0.0)
    denom = 2 * tp + fp + fn
    f1 = 2 * tp / denom if denom else 1.0
    return {
        "tp": int(tp),
        "fp": int(fp),
        "fn": int(fn),
        "n_pred": int(n_pred),
        "n_true": int(n_true),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
    }


def _overlaps(pred, truth):
    """Overlapping (pred, truth) object pairs: indices into the unique labels, overlap
    pixels, the objects' areas, and the numbers of predicted and true objects."""
    pred = np.asarray(pred)
    truth = np.asarray(truth)
    if pred.shape != truth.shape:
        raise ValueError(f"pred and truth shapes differ: {pred.shape} vs {truth.shape}")
    p_ids, p_inv = np.unique(pred.ravel(), return_inverse=True)
    t_ids, t_inv = np.unique(truth.ravel(), return_inverse=True)
    # contingency table via pair codes (sparse-friendly, no Python loop)
    codes = p_inv.astype(np.int64) * len(t_ids) + t_inv
    pair, counts = np.unique(codes, return_counts=True)
    pi, ti = np.divmod(pair, len(t_ids))
    p_area = np.bincount(p_inv, minlength=len(p_ids))
    t_area = np.bincount(t_inv, minlength=len(t_ids))
    keep = (p_ids[pi] != 0) & (t_ids[ti] != 0)
    return (pi[keep], ti[keep], counts[keep], p_area, t_area,
            int(np.count_nonzero(p_ids)), int(np.count_nonzero(t_ids)))


def matched_area_errors(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Relative area error ``pred_area / true_area - 1`` of every pair matched at IoU > 0.5.

    Above 0.5 a pair is unique without an assignment. Returns one value per
    matched pair (float64, in no particular order; empty when none match).

    Examples
    --------
    >>> t = np.zeros((10, 10), int); t[1:5, 1:6] = 1
    >>> p = np.zeros((10, 10), int); p[1:5, 1:5] = 3  # 16 px against 20: IoU 0.8
    >>> np.round(matched_area_errors(p, t), 3).tolist()
    [-0.2]
    """
    pi, ti, inter, p_area, t_area, _, _ = _overlaps(pred, truth)
    good = inter / (p_area[pi] + t_area[ti] - inter) > 0.5
    return p_area[pi[good]] / t_area[ti[good]] - 1.0


def match_labels(pred: np.ndarray, truth: np.ndarray, *, iou: float = 0.5) -> dict[str, float]:
    """Match two label images one-to-one by intersection over union.

    Parameters
    ----------
    pred, truth : ndarray of int, same shape (2-D or 3-D)
        Label images, 0 is background. Labels need not be consecutive.
    iou : float
        A pair counts as a true positive when its IoU is at least this
        (strictly above 0.5 makes the matching unique without assignment;
        lower values use the optimal assignment).

    Returns
    -------
    dict
        ``tp``, ``fp``, ``fn``, ``n_pred``, ``n_true``, ``precision``,
        ``recall``, ``f1`` and ``mean_iou`` (mean IoU of the matched pairs,
        NaN when there are none).

    Examples
    --------
    >>> t = np.zeros((8, 8), int); t[1:4, 1:4] = 1; t[5:8, 5:8] = 2
    >>> p = np.zeros((8, 8), int); p[1:4, 1:4] = 7
    >>> r = match_labels(p, t); (r["tp"], r["fn"], r["f1"])
    (1, 1, 0.6666666666666666)
    """
    pi, ti, inter, p_area, t_area, n_pred, n_true = _overlaps(pred, truth)
    ious = inter / (p_area[pi] + t_area[ti] - inter)
    good = ious >= iou
    if not np.any(good):
        out = _scores(0, n_pred, n_true)
        out["mean_iou"] = float("nan")
        return out
    pi, ti, ious = pi[good], ti[good], ious[good]
    rows, r_idx = np.unique(pi, return_inverse=True)
    cols, c_idx = np.unique(ti, return_inverse=True)
    cost = np.zeros((len(rows), len(cols)))
    cost[r_idx, c_idx] = -ious
    r, c = linear_sum_assignment(cost)
    matched = -cost[r, c]
    matched = matched[matched > 0]
    out = _scores(len(matched), n_pred, n_true)
    out["mean_iou"] = float(matched.mean()) if len(matched) else float("nan")
    return out


def match_points(pred_yx, truth_yx, *, max_dist: float) -> dict[str, float]:
    """Match two point sets one-to-one within a distance.

    Parameters
    ----------
    pred_yx, truth_yx : array-like, shape (N, D) and (M, D)
        Coordinates in any unit (µm for spinalquant tables).
    max_dist : float
        Largest distance, in the same unit, at which two points can match.

    Returns
    -------
    dict
        ``tp``, ``fp``, ``fn``, ``n_pred``, ``n_true``, ``precision``,
        ``recall``, ``f1`` and ``mean_dist`` of the matched pairs.

    Examples
    --------
    >>> r = match_points([[0, 0], [10, 10]], [[1, 0]], max_dist=2)
    >>> (r["tp"], r["fp"], r["fn"])
    (1, 1, 0)
    """
    p = np.asarray(pred_yx, dtype=float).reshape(-1, np.shape(truth_yx)[-1] if np.size(truth_yx) else 2)
    t = np.asarray(truth_yx, dtype=float).reshape(-1, p.shape[1])
    if len(p) == 0 or len(t) == 0:
        out = _scores(0, len(p), len(t))
        out["mean_dist"] = float("nan")
        return out
    tree = cKDTree(t)
    # structured array (i: truth index, j: pred index, v: distance); keeps zeros
    dist = tree.sparse_distance_matrix(cKDTree(p), max_dist, output_type="ndarray")
    if len(dist) == 0:
        out = _scores(0, len(p), len(t))
        out["mean_dist"] = float("nan")
        return out
    big = max_dist * 10.0 + 1.0
    rows, r_idx = np.unique(dist["i"], return_inverse=True)
    cols, c_idx = np.unique(dist["j"], return_inverse=True)
    cost = np.full((len(rows), len(cols)), big)
    cost[r_idx, c_idx] = dist["v"]
    r, c = linear_sum_assignment(cost)
    d = cost[r, c]
    d = d[d <= max_dist]
    out = _scores(len(d), len(p), len(t))
    out["mean_dist"] = float(d.mean()) if len(d) else float("nan")
    return out
